// WorkerPool's slots (worker_pool.h): starting the pool, spawning, killing and handing out the
// worker processes, and what each keeps loaded. Running a job on a slot is in
// worker_pool_jobs.cc, tune jobs in worker_pool_tune.cc.
#include "sandbox/worker_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sandbox/worker_pool_internal.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace modeldock::sandbox {

namespace internal {

std::string DescribeExit(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    std::string what = absl::StrCat("killed by signal ", sig, " (", strsignal(sig), ")");
    if (sig == SIGSYS) absl::StrAppend(&what, ": a forbidden system call (seccomp)");
    if (sig == SIGKILL) absl::StrAppend(&what, ": out of memory, or killed from outside");
    return what;
  }
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  return "stopped";
}

}  // namespace internal

using internal::DescribeExit;
using internal::kOverloadedPayload;

bool WorkerPool::IsOverloaded(const absl::Status& status) {
  return status.GetPayload(kOverloadedPayload).has_value();
}

bool WorkerPool::IsLoaded(const std::string& model_key) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Slot& s : slots_) {
    for (const auto& entry : s.loaded) {
      if (entry.first == model_key) return true;
    }
  }
  return false;
}

WorkerPool::WorkerPool(const PoolOptions& options) : options_(options) {
  slots_.resize(std::max(1, options_.workers));
}

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Start(const PoolOptions& options) {
  if (access(options.worker_binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model worker binary ", options.worker_binary, " is missing or not executable (",
        strerror(errno), "); build it (modeldock-worker) or pass --worker-binary"));
  }
  if (options.workers < 1) return absl::InvalidArgumentError("workers must be >= 1");
  std::unique_ptr<WorkerPool> pool(new WorkerPool(options));
  // An empty directory the workers make their root (where the kernel lets them): models arrive
  // as descriptors, so a worker needs no files at all.
  std::string root = (std::filesystem::temp_directory_path() / "modeldock-worker-root-XXXXXX").string();
  if (mkdtemp(root.data()) != nullptr) {
    chmod(root.c_str(), 0555);
    pool->root_dir_ = root;
  }
  // Memory actually used: a cgroup per worker where the host delegates one, else polling.
  if (options.memory_limit_bytes > 0) {
    const std::string limit = FormatMiB(options.memory_limit_bytes);
    std::string why_not = "not asked for";
    if (options.use_cgroup) {
      auto cgroups = WorkerCgroups::Detect();
      if (cgroups.ok()) {
        pool->cgroups_ = std::move(*cgroups);
      } else {
        why_not = std::string(cgroups.status().message());
      }
    }
    pool->memory_limit_ =
        pool->cgroups_ != nullptr
            ? absl::StrCat("cgroup v2 memory.max ", limit, " per worker under ",
                           pool->cgroups_->parent())
            : absl::StrCat("resident memory <= ", limit, " per worker, polled every 25 ms (no ",
                           "cgroup: ", why_not, ")");
  } else {
    pool->memory_limit_ = "no memory limit";
  }
  const int64_t backstop = pool->AddressSpaceLimit();
  if (backstop > 0) {
    absl::StrAppend(&pool->memory_limit_, "; address space <= ", FormatMiB(backstop),
                    " as a backstop");
  }
  // All workers now: a broken binary or host fails at start-up, and the first recommendation
  // does not pay for starting LibTorch in a new process (~0.3 s each).
  for (Slot& slot : pool->slots_) {
    if (absl::Status s = pool->Spawn(slot); !s.ok()) return s;
  }
  spdlog::info("model workers: {} x modeldock-worker ({} torch thread(s)); memory: {}; "
               "confinement: {}",
               options.workers, options.torch_threads, pool->memory_limit_, pool->confinement_);
  return pool;
}

int64_t WorkerPool::AddressSpaceLimit() const {
  if (options_.address_space_limit_bytes < 0) return 0;
  if (options_.address_space_limit_bytes > 0) return options_.address_space_limit_bytes;
  return AddressSpaceBackstop(options_.memory_limit_bytes);
}

WorkerPool::~WorkerPool() {
  Shutdown();
  if (!root_dir_.empty()) rmdir(root_dir_.c_str());
}

std::vector<std::string> WorkerPool::WorkerArguments() const {
  std::vector<std::string> args = {options_.worker_binary,
                                   "--fd", "3",
                                   "--memory-mb", absl::StrCat(options_.memory_limit_bytes >> 20),
                                   "--address-space-mb", absl::StrCat(AddressSpaceLimit() >> 20),
                                   "--torch-threads", absl::StrCat(options_.torch_threads),
                                   "--parent", absl::StrCat(getpid())};
  if (!options_.isolate_network) args.push_back("--no-network-isolation");
  if (!root_dir_.empty()) {
    args.push_back("--root");
    args.push_back(root_dir_);
  }
  if (!options_.seccomp) args.push_back("--no-seccomp");
  return args;
}

std::vector<std::string> WorkerPool::WorkerEnvironment() const {
  // OpenMP follows the worker's torch thread count. OpenBLAS starts its threads when the
  // library loads, and a multi-threaded process cannot enter a new user namespace: one thread.
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    if (entry.rfind("OMP_NUM_THREADS=", 0) == 0 || entry.rfind("OPENBLAS_NUM_THREADS=", 0) == 0) {
      continue;
    }
    env.push_back(std::move(entry));
  }
  env.push_back(absl::StrCat("OMP_NUM_THREADS=", options_.torch_threads));
  env.push_back("OPENBLAS_NUM_THREADS=1");
  return env;
}

absl::StatusOr<pid_t> WorkerPool::StartWorkerProcess(int child_end) const {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // The server's stdout belongs to its "listening on" line: worker output goes to stderr.
  posix_spawn_file_actions_adddup2(&actions, 2, 1);
  posix_spawn_file_actions_adddup2(&actions, child_end, 3);
  std::vector<std::string> args = WorkerArguments();
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = WorkerEnvironment();
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  // The server may block signals in its threads (it waits for SIGTERM with sigwait): the worker
  // starts with none blocked and default handlers.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, options_.worker_binary.c_str(), &actions, &attributes, argv.data(),
                       envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot start ", options_.worker_binary, ": ", strerror(rc)));
  }
  return pid;
}

absl::Status WorkerPool::Spawn(Slot& slot) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("socketpair: ", strerror(errno)));
  }
  // The child's end becomes its fd 3 (dup2 clears close-on-exec; a same-number dup2 would not).
  int child_end = fds[1];
  if (child_end == 3) {
    child_end = fcntl(fds[1], F_DUPFD_CLOEXEC, 4);
    close(fds[1]);
  }
  absl::StatusOr<pid_t> started = StartWorkerProcess(child_end);
  close(child_end);
  if (!started.ok()) {
    close(fds[0]);
    return started.status();
  }
  const pid_t pid = *started;
  // The hello frame says the worker is up and what confines it.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  auto hello = ReadResponse(fds[0], 0, [&]() -> absl::Status {
    if (absl::Now() > deadline) return absl::DeadlineExceededError("no hello within 60 s");
    return absl::OkStatus();
  });
  std::string cgroup;
  if (hello.ok() && cgroups_ != nullptr) {
    // Moved in once it is up: what it allocated before (LibTorch's start) stays charged where
    // it was, which the limit can spare.
    auto added = cgroups_->Add(pid, options_.memory_limit_bytes);
    if (added.ok()) {
      cgroup = *added;
    } else {
      spdlog::warn("model worker {}: no cgroup ({}); its resident memory is polled instead", pid,
                   std::string(added.status().message()));
    }
  }
  if (!hello.ok()) {
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(fds[0]);
    return absl::UnavailableError(absl::StrCat("model worker did not start: ",
                                               hello.status().message(), " (",
                                               DescribeExit(status), ")"));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  slot.pid = pid;
  slot.fd = fds[0];
  slot.cgroup = std::move(cgroup);
  confinement_ = hello->message;
  return absl::OkStatus();
}

void WorkerPool::Kill(Slot& slot) {
  if (slot.pid > 0) {
    kill(slot.pid, SIGKILL);
    int status = 0;
    waitpid(slot.pid, &status, 0);
  }
  WorkerCgroups::Remove(slot.cgroup);
  slot.cgroup.clear();
  if (slot.fd >= 0) close(slot.fd);
  slot.pid = -1;
  slot.fd = -1;
  slot.loaded.clear();
  slot.unload.clear();
}

absl::StatusOr<int> WorkerPool::Acquire(const std::string& model_key,
                                        const CancelCheck& cancelled) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (waiting_ >= options_.max_waiting) {
    absl::Status overloaded = absl::ResourceExhaustedError(absl::StrCat(
        "all ", slots_.size(), " model workers are busy and ", waiting_,
        " jobs are waiting; retry in a few seconds"));
    overloaded.SetPayload(kOverloadedPayload, absl::Cord("1"));
    return overloaded;
  }
  ++waiting_;
  while (true) {
    if (stopping_) {
      --waiting_;
      return absl::UnavailableError("the server is shutting down");
    }
    int best = -1;
    for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
      const Slot& s = slots_[i];
      if (s.busy) continue;
      bool has_model = !model_key.empty() &&
                       std::any_of(s.loaded.begin(), s.loaded.end(),
                                   [&](const auto& entry) { return entry.first == model_key; });
      if (has_model) {
        best = i;
        break;
      }
      // Otherwise a running worker with the fewest models loaded (starting one costs time).
      if (best < 0 || (slots_[best].pid < 0 && s.pid >= 0) ||
          ((slots_[best].pid < 0) == (s.pid < 0) && s.loaded.size() < slots_[best].loaded.size())) {
        best = i;
      }
    }
    if (best >= 0) {
      slots_[best].busy = true;
      --waiting_;
      return best;
    }
    if (cancelled && cancelled()) {
      --waiting_;
      return absl::CancelledError("cancelled while waiting for a model worker");
    }
    free_.wait_for(lock, std::chrono::milliseconds(25));
  }
}

void WorkerPool::Release(int slot, bool keep_process) {
  std::lock_guard<std::mutex> lock(mutex_);
  Slot& s = slots_[slot];
  if (!keep_process || stopping_) {
    if (s.pid > 0 && !stopping_) ++restarts_;
    Kill(s);
  }
  s.busy = false;
  free_.notify_all();
}

void WorkerPool::NoteLoaded(Slot& slot, const std::string& key, int64_t cost) {
  auto it = std::find_if(slot.loaded.begin(), slot.loaded.end(),
                         [&](const auto& entry) { return entry.first == key; });
  if (it != slot.loaded.end()) slot.loaded.erase(it);
  slot.loaded.emplace_front(key, cost);
  int64_t total = 0;
  for (const auto& entry : slot.loaded) total += entry.second;
  while (total > options_.model_cache_bytes && slot.loaded.size() > 1) {
    total -= slot.loaded.back().second;
    slot.unload.push_back(slot.loaded.back().first);
    slot.loaded.pop_back();
  }
}

void WorkerPool::Forget(const std::string& model_key) {
  std::lock_guard<std::mutex> lock(mutex_);
  fitted_batch_.erase(model_key);
  for (Slot& s : slots_) {
    auto it = std::find_if(s.loaded.begin(), s.loaded.end(),
                           [&](const auto& entry) { return entry.first == model_key; });
    if (it != s.loaded.end()) {
      s.loaded.erase(it);
      s.unload.push_back(model_key);
    }
  }
}

PoolStats WorkerPool::Stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  PoolStats stats;
  stats.workers = static_cast<int>(slots_.size());
  for (const Slot& s : slots_) stats.pids.push_back(s.pid);
  stats.jobs = jobs_;
  stats.restarts = restarts_;
  stats.waiting = waiting_;
  stats.confinement = confinement_;
  stats.memory_limit = memory_limit_;
  stats.memory_kills = memory_kills_;
  return stats;
}

void WorkerPool::Shutdown() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
  for (Slot& s : slots_) {
    if (s.busy) {
      // Its job's thread sees the socket close, reaps the worker and returns UNAVAILABLE.
      if (s.pid > 0) kill(s.pid, SIGKILL);
    } else {
      Kill(s);
    }
  }
  free_.notify_all();
}

}  // namespace modeldock::sandbox
