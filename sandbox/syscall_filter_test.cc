// The worker's syscall filter, installed in a forked child: every denied call fails with EPERM
// (clone3 with ENOSYS), processes cannot be made but threads can, and on x86_64 a call through
// the x32 ABI kills the process.
#include "sandbox/syscall_filter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

namespace modeldock::sandbox {
namespace {

// Runs `body` in a child with the filter installed; returns the child's wait status and what it
// wrote to `report` (one line per unexpected result).
int RunFiltered(const std::function<std::string()>& body, std::string* report) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return -1;
  pid_t child = fork();
  if (child == 0) {
    close(pipe_fds[0]);
    std::string out;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) out = "no-new-privs failed\n";
    absl::Status installed = InstallSyscallFilter();
    out += installed.ok() ? body() : std::string(installed.message()) + "\n";
    if (write(pipe_fds[1], out.data(), out.size()) < 0) _exit(3);
    _exit(0);
  }
  close(pipe_fds[1]);
  char buffer[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) report->append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  return status;
}

// "name: returned R errno E (wanted -1 / EPERM)" unless the call failed with `want`.
std::string Expect(const std::string& name, long rc, int want) {
  const int error = errno;
  if (rc == -1 && error == want) return "";
  return name + ": returned " + std::to_string(rc) + " errno " + strerror(error) + " (wanted " +
         strerror(want) + ")\n";
}

TEST(SyscallFilterTest, EveryDeniedCallFailsWithEperm) {
  std::string report;
  int status = RunFiltered(
      [] {
        std::string out;
        for (const std::string& name : DeniedSyscalls()) {
          const int nr = seccomp_syscall_resolve_name(name.c_str());
          if (nr < 0) continue;  // not a call of this architecture
          // fork and vfork would make a process if the filter let them through: tested below.
          if (name == "fork" || name == "vfork") continue;
          // Arguments no kernel accepts: without the filter each fails otherwise (EBADF,
          // EFAULT, EINVAL...), so only the filter gives EPERM.
          errno = 0;
          long rc = syscall(nr, -1L, 0L, 0L, 0L, 0L, 0L);
          out += Expect(name, rc, EPERM);
        }
        errno = 0;
        out += Expect("socket(AF_UNIX)", socket(AF_UNIX, SOCK_STREAM, 0), EPERM);
        errno = 0;
        out += Expect("unshare(CLONE_NEWNET)", unshare(CLONE_NEWNET), EPERM);
        errno = 0;
        char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
        out += Expect("execv(/bin/true)", execv("/bin/true", argv), EPERM);
        return out;
      },
      &report);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(report, "");
}

TEST(SyscallFilterTest, ThreadsAreAllowedProcessesAreNot) {
  std::string report;
  int status = RunFiltered(
      [] {
        std::string out;
        errno = 0;
        pid_t pid = fork();  // glibc: clone without CLONE_THREAD
        if (pid == 0) _exit(0);
        out += Expect("fork()", pid, EPERM);
#ifdef SYS_fork
        errno = 0;
        long raw = syscall(SYS_fork);
        if (raw == 0) _exit(0);
        out += Expect("SYS_fork", raw, EPERM);
#endif
        errno = 0;
        out += Expect("clone3", syscall(SYS_clone3, nullptr, 0), ENOSYS);
        int value = 0;
        std::thread thread([&] { value = 42; });  // clone3 refused, clone with CLONE_THREAD
        thread.join();
        if (value != 42) out += "a thread did not run\n";
        return out;
      },
      &report);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(report, "");
}

#if defined(__x86_64__)
TEST(SyscallFilterTest, AnotherAbiKillsTheProcess) {
  std::string report;
  int status = RunFiltered(
      [] {
        syscall(0x40000000 | SYS_getpid);  // the x32 ABI's getpid
        return std::string("still alive after an x32 call\n");
      },
      &report);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) << status << " " << report;
}
#endif

}  // namespace
}  // namespace modeldock::sandbox
