// WorkerPool's jobs (worker_pool.h): one job on a slot under its limits (wall time, CPU time,
// memory), the retry at half the batch after a memory kill, and the admission and run calls.
// The slots themselves are in worker_pool.cc.
#include "sandbox/worker_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
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

namespace modeldock::sandbox {

using internal::DescribeExit;
using internal::kMemoryPayload;

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

std::string Millis(absl::Duration d) { return absl::FormatDuration(d); }

}  // namespace

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

absl::Status WorkerPool::TakeSlot(int index, SlotView* view) {
  Slot& slot = slots_[index];  // ours while busy; its fields change only under mutex_
  pid_t pid;
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
  std::lock_guard<std::mutex> lock(mutex_);
  view->pid = slot.pid;
  view->fd = slot.fd;
  view->cgroup = slot.cgroup;
  view->unload = std::move(slot.unload);
  slot.unload.clear();
  ++jobs_;
  return absl::OkStatus();
}

absl::StatusOr<JobResponse> WorkerPool::Exchange(int fd, int model_fd, const JobRequest& request,
                                                 const WaitCheck& check,
                                                 std::vector<std::string>* unload,
                                                 int64_t batch_cap, uint64_t max_floats,
                                                 const TuneProgressFn& progress) {
  absl::Status sent = SendJobMarker(fd, model_fd, check);
  if (model_fd >= 0) close(model_fd);  // the worker holds its own copy now
  if (sent.ok()) sent = WriteRequest(fd, request, check, unload, batch_cap);
  if (!sent.ok()) return sent;
  // A tune's result carries the tuned archive in its head: up to the model size limit more.
  const uint32_t head_limit =
      request.kind == JobKind::kTune
          ? static_cast<uint32_t>((1 << 20) + std::clamp<int64_t>(request.max_model_bytes, 0,
                                                                  int64_t{1} << 30))
          : (1u << 20);
  absl::StatusOr<JobResponse> response = ReadResponse(fd, max_floats, check, head_limit);
  // Progress frames (tune jobs, one epoch each) come before the result.
  // The limits are checked between frames too: frames that keep arriving faster than the poll
  // interval never let the reads wait.
  while (response.ok() && response->progress) {
    if (progress && !response->epochs.empty()) progress(response->epochs.front());
    if (absl::Status limit = check(); !limit.ok()) return limit;
    response = ReadResponse(fd, max_floats, check, head_limit);
  }
  return response;
}

absl::StatusOr<JobResponse> WorkerPool::Execute(int index, const JobRequest& request,
                                                const JobLimits& limits,
                                                const CancelCheck& cancelled,
                                                uint64_t max_floats, int64_t batch_cap,
                                                absl::Time job_start,
                                                const TuneProgressFn& progress) {
  SlotView taken;
  if (absl::Status s = TakeSlot(index, &taken); !s.ok()) return s;
  Slot& slot = slots_[index];
  const pid_t pid = taken.pid;
  const std::string& cgroup = taken.cgroup;
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
  absl::StatusOr<JobResponse> response = Exchange(taken.fd, model_fd, request, check,
                                                  &taken.unload, batch_cap, max_floats, progress);
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

}  // namespace modeldock::sandbox
