// How a worker's memory is limited: by what it actually uses, not by its address space.
//
// Where the host delegates a cgroup v2 with the memory controller to the server, each worker
// gets a child cgroup whose `memory.max` is the limit (the kernel reclaims, then kills). Elsewhere
// (cgroup v2 not mounted, or without a memory controller, or not writable: the case on the
// build machines) the pool polls the worker's resident memory while it runs a job and kills it
// past the limit. A generous address-space cap (RLIMIT_AS) stays as a backstop against a single
// huge allocation that would outrun the polling.
#ifndef MODELDOCK_SANDBOX_MEMORY_LIMIT_H_
#define MODELDOCK_SANDBOX_MEMORY_LIMIT_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace modeldock::sandbox {

// Memory a process's own allocations hold: RssAnon + RssShmem from /proc/PID/status (the
// file-backed pages of its libraries are left out: the kernel can drop them). -1 if it is gone.
int64_t ResidentBytes(pid_t pid);

// "1536 MiB", "1536.4 MiB": in the unit of --worker-memory-mb, one decimal when not whole.
std::string FormatMiB(int64_t bytes);

// The address-space backstop for a memory limit: 4 x the limit, and at least the limit + 4 GiB
// (LibTorch's mappings, glibc arenas and thread stacks are reserved, not used). 0 for no limit.
int64_t AddressSpaceBackstop(int64_t memory_limit_bytes);

// Child cgroups (v2) with memory.max for workers, under a parent cgroup this process may manage.
class WorkerCgroups {
 public:
  // The cgroup this process is in, if the host lets it give children a memory limit: cgroup v2
  // mounted (read from `mountinfo`), this process's v2 path (from `self_cgroup`), the memory
  // controller offered there and enabled for children (enabled here if it can be), and writable.
  // FAILED_PRECONDITION saying which of these fails. The paths are parameters for tests.
  static absl::StatusOr<std::unique_ptr<WorkerCgroups>> Detect(
      const std::string& mountinfo = "/proc/self/mountinfo",
      const std::string& self_cgroup = "/proc/self/cgroup");
  // Uses `parent` as the parent cgroup (checked like Detect's).
  static absl::StatusOr<std::unique_ptr<WorkerCgroups>> Open(const std::string& parent);

  // Makes `parent/modeldock-worker-PID` with memory.max = limit_bytes (and no swap where the
  // kernel has swap accounting) and moves `pid` into it. Returns the cgroup's directory.
  absl::StatusOr<std::string> Add(pid_t pid, int64_t limit_bytes) const;
  // Whether the kernel killed a process of the cgroup for memory (memory.events: oom_kill > 0).
  static bool OomKilled(const std::string& cgroup_dir);
  // Removes an empty worker cgroup (after its process was reaped); errors are logged.
  static void Remove(const std::string& cgroup_dir);

  const std::string& parent() const { return parent_; }

 private:
  explicit WorkerCgroups(std::string parent) : parent_(std::move(parent)) {}
  std::string parent_;
};

}  // namespace modeldock::sandbox

#endif  // MODELDOCK_SANDBOX_MEMORY_LIMIT_H_
