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
#include "spdlog/spdlog.h"

extern char** environ;

namespace modeldock::sandbox {

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return -1;
  // Fields after the command name (which may contain spaces) start at the last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

namespace {

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

std::string Millis(absl::Duration d) { return absl::FormatDuration(d); }

constexpr char kOverloadedPayload[] = "modeldock.sandbox/overloaded";
constexpr char kMemoryPayload[] = "modeldock.sandbox/memory";

}  // namespace

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
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // The server's stdout belongs to its "listening on" line: worker output goes to stderr.
  posix_spawn_file_actions_adddup2(&actions, 2, 1);
  posix_spawn_file_actions_adddup2(&actions, child_end, 3);

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
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // OpenMP follows the worker's torch thread count. OpenBLAS starts its threads when the
  // library loads, and a multi-threaded process cannot enter a new user namespace: one thread.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    if (entry.rfind("OMP_NUM_THREADS=", 0) == 0 || entry.rfind("OPENBLAS_NUM_THREADS=", 0) == 0) {
      continue;
    }
    env_strings.push_back(std::move(entry));
  }
  env_strings.push_back(absl::StrCat("OMP_NUM_THREADS=", options_.torch_threads));
  env_strings.push_back("OPENBLAS_NUM_THREADS=1");
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
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
  close(child_end);
  if (rc != 0) {
    close(fds[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot start ", options_.worker_binary, ": ", strerror(rc)));
  }
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

absl::Status WorkerPool::MemoryExceeded(int64_t used, const std::string& cgroup) const {
  const std::string limit = FormatMiB(options_.memory_limit_bytes);
  absl::Status status = absl::ResourceExhaustedError(
      cgroup.empty()
          ? absl::StrCat("the model job exceeded the worker memory limit: ", FormatMiB(used),
                         " resident > ", limit, " (--worker-memory-mb); the worker was killed")
          : absl::StrCat("the model job exceeded the worker memory limit: cgroup memory.max ",
                         limit, " (--worker-memory-mb); the kernel killed the worker"));
  status.SetPayload(kMemoryPayload, absl::Cord("1"));
  return status;
}

absl::StatusOr<JobResponse> WorkerPool::Execute(int index, const JobRequest& request,
                                                const JobLimits& limits,
                                                const CancelCheck& cancelled,
                                                uint64_t max_floats, int64_t batch_cap,
                                                absl::Time job_start,
                                                const TuneProgressFn& progress) {
  Slot& slot = slots_[index];  // ours while busy; its fields change only under mutex_
  pid_t pid;
  int fd;
  std::string cgroup;
  std::vector<std::string> unload;  // sent with this job
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pid = slot.pid;
    int status = 0;
    if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
      // It died while idle (killed from outside): start a fresh one instead of failing the job.
      spdlog::warn("model worker {} died while idle: {}", pid, DescribeExit(status));
      slot.pid = -1;
      Kill(slot);
      ++restarts_;
      pid = -1;
    }
  }
  if (pid < 0) {
    if (absl::Status s = Spawn(slot); !s.ok()) {
      Release(index, false);
      return s;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pid = slot.pid;
    fd = slot.fd;
    cgroup = slot.cgroup;
    unload = std::move(slot.unload);
    slot.unload.clear();
    ++jobs_;
  }
  const absl::Time start = absl::Now();
  const double cpu_start = ProcessCpuSeconds(pid);
  const double cpu_limit = absl::ToDoubleSeconds(limits.cpu);
  // Without a cgroup the pool is the memory limit: the worker's resident memory, every check.
  const int64_t memory_limit = cgroup.empty() ? options_.memory_limit_bytes : 0;
  absl::Status aborted;
  absl::Time next_cpu_check = start;
  WaitCheck check = [&]() -> absl::Status {
    const absl::Time now = absl::Now();
    if (cancelled && cancelled()) {
      aborted = absl::CancelledError("the request was cancelled; its model job was stopped");
    } else if (now - job_start > limits.wall) {
      aborted = absl::DeadlineExceededError(absl::StrCat(
          "the model job exceeded its wall-time limit of ", Millis(limits.wall),
          "; the worker was killed"));
    } else if (int64_t resident = memory_limit > 0 ? ResidentBytes(pid) : 0;
               resident > memory_limit) {
      aborted = MemoryExceeded(resident, "");
    } else if (now >= next_cpu_check) {
      next_cpu_check = now + absl::Milliseconds(100);
      double used = ProcessCpuSeconds(pid) - cpu_start;
      if (used > cpu_limit) {
        aborted = absl::ResourceExhaustedError(absl::StrCat(
            "the model job exceeded its CPU-time limit of ", Millis(limits.cpu),
            " (used ", absl::FormatDuration(absl::Seconds(used)), "); the worker was killed"));
      }
    }
    return aborted;
  };
  // The model's file goes over as a read-only descriptor: the worker has no filesystem view.
  absl::Status sent = absl::OkStatus();
  int model_fd = -1;
  if (!request.model_path.empty()) {
    model_fd = open(request.model_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (model_fd < 0) {
      const int error = errno;
      Release(index, true);
      if (error == ENOENT) {
        return absl::NotFoundError("the model's file is gone (the model was deleted)");
      }
      return absl::UnavailableError(
          absl::StrCat("cannot open ", request.model_path, ": ", strerror(error)));
    }
  }
  sent = SendJobMarker(fd, model_fd, check);
  if (model_fd >= 0) close(model_fd);
  if (sent.ok()) sent = WriteRequest(fd, request, check, &unload, batch_cap);
  // A tune's result carries the tuned archive in its head: up to the model size limit more.
  const uint32_t head_limit =
      request.kind == JobKind::kTune
          ? static_cast<uint32_t>((1 << 20) + std::clamp<int64_t>(request.max_model_bytes, 0,
                                                                  int64_t{1} << 30))
          : (1u << 20);
  absl::StatusOr<JobResponse> response =
      sent.ok() ? ReadResponse(fd, max_floats, check, head_limit)
                : absl::StatusOr<JobResponse>(sent);
  // Progress frames (tune jobs, one epoch each) come before the result.
  // The limits are checked between frames too: frames that keep arriving faster than the poll
  // interval never let the reads wait.
  while (response.ok() && response->progress) {
    if (progress && !response->epochs.empty()) progress(response->epochs.front());
    if (absl::Status limit = check(); !limit.ok()) {
      response = limit;
      break;
    }
    response = ReadResponse(fd, max_floats, check, head_limit);
  }
  if (!response.ok()) {
    if (!aborted.ok()) {
      spdlog::warn("model worker {} killed: {}", pid, std::string(aborted.message()));
      Release(index, false);
      return aborted;
    }
    if (absl::IsUnavailable(response.status())) return WorkerDied(index, pid, cgroup);
    Release(index, false);
    return absl::InternalError(
        absl::StrCat("model worker protocol error: ", response.status().message()));
  }
  // A failed allocation may leave the worker's heap in any state: start a fresh one.
  const bool keep = response->code != static_cast<int32_t>(absl::StatusCode::kResourceExhausted);
  if (keep && request.kind == JobKind::kRun && !request.model_key.empty() && response->code == 0) {
    std::error_code ec;
    auto bytes = std::filesystem::file_size(request.model_path, ec);
    std::lock_guard<std::mutex> lock(mutex_);
    NoteLoaded(slot, request.model_key, 2 * static_cast<int64_t>(ec ? 0 : bytes) + (1 << 20));
  }
  Release(index, keep);
  return response;
}

absl::Status WorkerPool::WorkerDied(int index, pid_t pid, const std::string& cgroup) {
  Slot& slot = slots_[index];
  int status = 0;
  std::string how = "lost";
  const bool reaped = waitpid(pid, &status, 0) == pid;
  if (reaped) how = DescribeExit(status);
  // The kernel's OOM killer within the worker's cgroup: the memory limit, not a crash.
  const bool out_of_memory = !cgroup.empty() && WorkerCgroups::OomKilled(cgroup);
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping = stopping_;
    if (reaped) slot.pid = -1;  // Release must not kill a recycled pid
    ++restarts_;
  }
  Release(index, false);
  if (stopping) return absl::UnavailableError("the server is shutting down");
  if (out_of_memory) {
    absl::Status exceeded = MemoryExceeded(options_.memory_limit_bytes, cgroup);
    spdlog::warn("model worker {} killed: {}", pid, std::string(exceeded.message()));
    return exceeded;
  }
  spdlog::warn("model worker {} died during a job: {}", pid, how);
  // ABORTED: the job may be retried once (a crash can be the host's, not the model's).
  return absl::AbortedError(absl::StrCat("the worker running the model died: ", how));
}

absl::StatusOr<JobResponse> WorkerPool::ExecuteHalving(const JobRequest& request,
                                                       const JobLimits& limits,
                                                       const CancelCheck& cancelled,
                                                       uint64_t max_floats) {
  const bool run = request.kind == JobKind::kRun;
  int64_t batch = std::max<int64_t>(1, run ? request.batch_size : request.test_batch);
  if (run) {
    batch = std::min(batch, std::max<int64_t>(1, RequestRows(request)));
    std::lock_guard<std::mutex> lock(mutex_);
    auto fitted = fitted_batch_.find(request.model_key);
    if (!request.model_key.empty() && fitted != fitted_batch_.end()) {
      batch = std::min(batch, fitted->second);
    }
  }
  const int64_t asked = batch;
  const absl::Time start = absl::Now();
  std::vector<int64_t> tried;
  absl::Status killed;  // the last kill for memory
  // The memory limit named with the batches tried (and kept recognisable).
  auto exceeded = [&](const absl::Status& kill, const std::string& more) {
    absl::Status failed(kill.code(), absl::StrCat(kill.message(), " (at batches of ",
                                                  absl::StrJoin(tried, ", "), " samples", more,
                                                  ")"));
    failed.SetPayload(kMemoryPayload, absl::Cord("1"));
    return failed;
  };
  while (true) {
    auto slot = Acquire(run ? request.model_key : "", cancelled);
    if (!slot.ok()) return slot.status();
    tried.push_back(batch);
    // The retries share the job's wall time: it counts from `start`.
    auto response = Execute(*slot, request, limits, cancelled, max_floats, batch, start);
    if (!killed.ok() && absl::IsDeadlineExceeded(response.status())) {
      return exceeded(killed, "; the wall-time limit ended the retries");
    }
    if (response.ok() || !IsMemoryExceeded(response.status())) {
      // A smaller batch fitted (here or in the worker): the model's next jobs start there.
      if (run && !request.model_key.empty() && response.ok() && response->code == 0) {
        const int64_t ran_at = response->batch_size > 0 ? response->batch_size : batch;
        if (ran_at < asked) {
          std::lock_guard<std::mutex> lock(mutex_);
          fitted_batch_[request.model_key] = ran_at;
        }
      }
      return response;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++memory_kills_;
    }
    killed = response.status();
    if (batch <= 1) return exceeded(killed, "");
    if (absl::Now() - start >= limits.wall) {
      return exceeded(killed, "; the wall-time limit ended the retries");
    }
    batch /= 2;
    spdlog::warn("{}: {}; retrying at a batch of {} on a fresh worker",
                 request.model_key.empty() ? request.model_path : request.model_key,
                 std::string(killed.message()), batch);
  }
}

bool WorkerPool::IsMemoryExceeded(const absl::Status& status) {
  return status.GetPayload(kMemoryPayload).has_value();
}

absl::StatusOr<AdmitResult> WorkerPool::Admit(const JobRequest& request, const JobLimits& limits,
                                              const CancelCheck& cancelled) {
  if (request.kind != JobKind::kAdmit) return absl::InvalidArgumentError("not an admission job");
  auto response = ExecuteHalving(request, limits, cancelled, 0);
  if (!response.ok()) return response.status();
  if (response->code != 0) {
    return absl::Status(static_cast<absl::StatusCode>(response->code), response->message);
  }
  AdmitResult result;
  result.has_embed = response->has_embed;
  result.feature_dim = response->feature_dim;
  result.num_outputs = response->num_outputs;
  result.layer_names = std::move(response->layer_names);
  result.layer_dims = std::move(response->layer_dims);
  result.millis = response->millis;
  return result;
}

absl::StatusOr<RunResult> WorkerPool::Run(const JobRequest& request, const JobLimits& limits,
                                          const CancelCheck& cancelled) {
  if (request.kind != JobKind::kRun) return absl::InvalidArgumentError("not a run job");
  const uint64_t rows = static_cast<uint64_t>(RequestRows(request));
  uint64_t width = static_cast<uint64_t>(request.num_classes) +
                   (request.want_features ? static_cast<uint64_t>(request.feature_dim) : 0);
  for (int64_t d : request.layer_dims) width += static_cast<uint64_t>(d);
  auto response = ExecuteHalving(request, limits, cancelled, rows * width);
  if (!response.ok()) return response.status();
  if (response->code != 0) {
    return absl::Status(static_cast<absl::StatusCode>(response->code), response->message);
  }
  // The worker runs model code: what it sends back is checked, not trusted.
  bool layers_ok = response->layers.size() == request.layer_dims.size();
  for (size_t l = 0; layers_ok && l < response->layers.size(); ++l) {
    layers_ok = response->layers[l].shape ==
                std::vector<int64_t>{static_cast<int64_t>(rows), request.layer_dims[l]};
  }
  if (!layers_ok) {
    return absl::InternalError(absl::StrCat("model worker returned ", response->layers.size(),
                                            " layers, not the ", request.layer_dims.size(),
                                            " [", rows, ", D] layers asked for"));
  }
  RunResult result;
  result.logits = std::move(response->logits);
  result.features = std::move(response->features);
  result.layers = std::move(response->layers);
  result.millis = response->millis;
  result.cache_hit = response->cache_hit;
  result.batch_size = response->batch_size;
  return result;
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
