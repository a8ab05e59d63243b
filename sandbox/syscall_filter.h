// The worker's system-call filter (seccomp, built with libseccomp for the machine's own
// architecture): a model gets no new sockets (so no network, even where namespaces are not
// available), no exec, no new processes (threads stay allowed), no tracing, mounts, namespaces,
// kernel modules, BPF, perf events, keyrings, userfaultfd or io_uring. A denied call fails with
// EPERM (clone3 with ENOSYS, so that glibc falls back to clone, whose flags the filter can read);
// a call from another architecture's ABI (x32, or 32-bit calls on a 64-bit kernel) kills the
// process.
#ifndef MODELDOCK_SANDBOX_SYSCALL_FILTER_H_
#define MODELDOCK_SANDBOX_SYSCALL_FILTER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace modeldock::sandbox {

// The calls denied with EPERM, by name (those the architecture does not have are skipped).
const std::vector<std::string>& DeniedSyscalls();

// Installs the filter on the calling process (all its threads: SECCOMP_FILTER_FLAG_TSYNC).
// Needs no-new-privileges (or CAP_SYS_ADMIN) first. UNAVAILABLE with libseccomp's reason.
absl::Status InstallSyscallFilter();

}  // namespace modeldock::sandbox

#endif  // MODELDOCK_SANDBOX_SYSCALL_FILTER_H_
