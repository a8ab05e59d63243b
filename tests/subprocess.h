// Runs a program as a child process and captures its exit status, stdout and stderr (used to
// test the CLI and stock tools as a user would run them).
#ifndef MODELDOCK_TESTS_SUBPROCESS_H_
#define MODELDOCK_TESTS_SUBPROCESS_H_

#include <fcntl.h>
#include <spawn.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_server.h"

namespace modeldock::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 if it did not exit normally (killed, or could not start)
  std::string out;
  std::string err;
};

// A started child process; its stdout/stderr go to files that can be read while it runs.
struct ChildProcess {
  pid_t pid = -1;
  std::string out_path;
  std::string err_path;
};

// Starts argv[0] with argv, stdin from /dev/null and stdout/stderr into files under `work_dir`;
// `env` entries ("NAME=value") replace or extend the child's environment.
inline ChildProcess StartProcess(const std::vector<std::string>& argv,
                                 const std::string& work_dir,
                                 const std::vector<std::string>& env = {}) {
  static int counter = 0;
  const std::string stem = work_dir + "/proc" + std::to_string(++counter);
  ChildProcess child;
  child.out_path = stem + ".out";
  child.err_path = stem + ".err";
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    bool overridden = false;
    for (const std::string& extra : env) {
      overridden |= entry.compare(0, extra.find('=') + 1, extra, 0, extra.find('=') + 1) == 0;
    }
    if (!overridden) envp.push_back(*e);
  }
  for (const std::string& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  // posix_spawn rather than fork: fork runs the parent's atfork handlers, and OpenBLAS's
  // (blas_thread_shutdown_) can deadlock joining its worker threads in a multithreaded parent
  // (seen in CI once the dock used BLAS while probing). posix_spawn runs no handlers.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, child.out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, child.err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data()) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  child.pid = pid;
  return child;
}

// Waits for `child` to exit; one still running after `limit` is killed (exit_code -1), so a
// hang fails the test instead of blocking ctest.
inline ProcessResult WaitProcess(const ChildProcess& child,
                                 std::chrono::seconds limit = std::chrono::seconds(300)) {
  ProcessResult result;
  if (child.pid < 0) return result;
  const auto give_up = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (waitpid(child.pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up) {
      kill(child.pid, SIGKILL);
      waitpid(child.pid, &status, 0);
      status = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (status != -1 && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.out = ReadFile(child.out_path);
  result.err = ReadFile(child.err_path);
  return result;
}

// StartProcess + WaitProcess.
inline ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& work_dir,
                                const std::vector<std::string>& env = {},
                                std::chrono::seconds limit = std::chrono::seconds(300)) {
  return WaitProcess(StartProcess(argv, work_dir, env), limit);
}

}  // namespace modeldock::testing

#endif  // MODELDOCK_TESTS_SUBPROCESS_H_
