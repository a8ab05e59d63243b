#include "sandbox/syscall_filter.h"

#include <sched.h>
#include <seccomp.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace modeldock::sandbox {
namespace {

struct ContextDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

absl::Status Failed(const std::string& what, int rc) {
  return absl::UnavailableError(absl::StrCat("seccomp: ", what, ": ", strerror(-rc)));
}

}  // namespace

const std::vector<std::string>& DeniedSyscalls() {
  static const std::vector<std::string> kDenied = {
      "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
      "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv",
      "process_vm_writev", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
      "kexec_load", "init_module", "finit_module", "bpf", "perf_event_open", "keyctl",
      "add_key", "request_key", "userfaultfd", "io_uring_setup"};
  return kDenied;
}

absl::Status InstallSyscallFilter() {
  Context ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (ctx == nullptr) return absl::UnavailableError("seccomp: seccomp_init failed");
  // Only the native ABI: another architecture's calls (x32 numbers on x86_64 included) kill.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc != 0) return Failed("bad-architecture action", rc);
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1);
  if (rc != 0) return Failed("thread synchronisation", rc);
  for (const std::string& name : DeniedSyscalls()) {
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // not a call of this architecture
    rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0);
    // A negative number is a call this architecture lacks (aarch64 has no fork): nothing to deny.
    if (rc != 0 && nr >= 0) return Failed(absl::StrCat("denying ", name), rc);
  }
  // clone3's flags live in memory the filter cannot read: ENOSYS makes glibc fall back to clone.
  rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc != 0) return Failed("clone3", rc);
  // clone: threads (CLONE_THREAD) only.
  rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                        SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
  if (rc != 0) return Failed("clone without CLONE_THREAD", rc);
  rc = seccomp_load(ctx.get());
  if (rc != 0) return Failed("loading the filter", rc);
  return absl::OkStatus();
}

}  // namespace modeldock::sandbox
