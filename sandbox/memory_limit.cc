#include "sandbox/memory_limit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "spdlog/spdlog.h"

namespace modeldock::sandbox {
namespace {

// The value in kB of a "Name:   123 kB" line of /proc/PID/status, or 0 when absent.
int64_t StatusKiB(absl::string_view text, absl::string_view name) {
  size_t at = text.find(name);
  if (at == absl::string_view::npos) return 0;
  absl::string_view rest = text.substr(at + name.size());
  rest = rest.substr(0, rest.find('\n'));
  rest = absl::StripSuffix(absl::StripAsciiWhitespace(rest), "kB");
  int64_t kib = 0;
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib) ? kib : 0;
}

std::string ReadSmallFile(const std::string& path, bool* ok) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  *ok = static_cast<bool>(in) || in.eof();
  return text.str();
}

absl::Status WriteFile(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(path, ": ", strerror(errno)));
  ssize_t n = write(fd, value.data(), value.size());
  const int error = errno;
  close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return absl::FailedPreconditionError(
        absl::StrCat("writing '", value, "' to ", path, ": ", strerror(error)));
  }
  return absl::OkStatus();
}

bool HasWord(const std::string& text, absl::string_view word) {
  for (absl::string_view w : absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (w == word) return true;
  }
  return false;
}

}  // namespace

int64_t ResidentBytes(pid_t pid) {
  // /proc/PID/status is one small read; statm cannot tell shared memory from library pages.
  int fd = open(absl::StrCat("/proc/", pid, "/status").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buffer[4096];
  ssize_t n = read(fd, buffer, sizeof(buffer));
  close(fd);
  if (n <= 0) return -1;
  absl::string_view text(buffer, static_cast<size_t>(n));
  return (StatusKiB(text, "RssAnon:") + StatusKiB(text, "RssShmem:")) * 1024;
}

std::string FormatMiB(int64_t bytes) {
  if (bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

int64_t AddressSpaceBackstop(int64_t memory_limit_bytes) {
  if (memory_limit_bytes <= 0) return 0;
  return std::max<int64_t>(4 * memory_limit_bytes, memory_limit_bytes + (int64_t{4} << 30));
}

absl::StatusOr<std::unique_ptr<WorkerCgroups>> WorkerCgroups::Detect(
    const std::string& mountinfo, const std::string& self_cgroup) {
  // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER_OPTIONS".
  std::ifstream mounts(mountinfo);
  std::string line, mount_point, mount_root;
  while (mount_point.empty() && std::getline(mounts, line)) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
    std::vector<std::string> fields = absl::StrSplit(line.substr(0, dash), ' ');
    if (fields.size() >= 5) {
      mount_root = fields[3];
      mount_point = fields[4];
    }
  }
  if (mount_point.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("cgroup v2 is not mounted (", mountinfo, ")"));
  }
  std::ifstream cgroups(self_cgroup);
  std::string path;
  while (std::getline(cgroups, line)) {
    if (absl::StartsWith(line, "0::")) path = line.substr(3);
  }
  if (path.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("this process has no cgroup v2 path in ", self_cgroup));
  }
  if (mount_root != "/" && absl::StartsWith(path, mount_root)) path = path.substr(mount_root.size());
  std::string dir = mount_point;
  if (path != "/") absl::StrAppend(&dir, path);
  return Open(dir);
}

absl::StatusOr<std::unique_ptr<WorkerCgroups>> WorkerCgroups::Open(const std::string& parent) {
  bool ok = false;
  const std::string controllers = ReadSmallFile(parent + "/cgroup.controllers", &ok);
  if (!ok) {
    return absl::FailedPreconditionError(
        absl::StrCat(parent, " is not a cgroup v2 directory (no cgroup.controllers)"));
  }
  if (!HasWord(controllers, "memory")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cgroup v2 offers no memory controller in ", parent, " (controllers: ",
        absl::StripAsciiWhitespace(controllers), ")"));
  }
  if (access(parent.c_str(), W_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cgroup ", parent, " is not writable by this user (", strerror(errno), ")"));
  }
  const std::string subtree = ReadSmallFile(parent + "/cgroup.subtree_control", &ok);
  if (!HasWord(subtree, "memory")) {
    // Fails (EBUSY) in a cgroup that holds processes and is not the root: a delegated cgroup
    // (systemd's Delegate=yes) with the server in a leaf of its own is what works.
    if (absl::Status s = WriteFile(parent + "/cgroup.subtree_control", "+memory"); !s.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot enable the memory controller for children of cgroup ", parent, ": ",
          s.message()));
    }
  }
  return std::unique_ptr<WorkerCgroups>(new WorkerCgroups(parent));
}

absl::StatusOr<std::string> WorkerCgroups::Add(pid_t pid, int64_t limit_bytes) const {
  const std::string dir = absl::StrCat(parent_, "/modeldock-worker-", pid);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
  }
  absl::Status s = WriteFile(dir + "/memory.max", absl::StrCat(limit_bytes));
  // Without swap accounting the file is absent; with it, swapping must not stretch the limit.
  if (s.ok() && access((dir + "/memory.swap.max").c_str(), F_OK) == 0) {
    s = WriteFile(dir + "/memory.swap.max", "0");
  }
  if (s.ok()) s = WriteFile(dir + "/cgroup.procs", absl::StrCat(pid));
  if (!s.ok()) {
    rmdir(dir.c_str());
    return s;
  }
  return dir;
}

bool WorkerCgroups::OomKilled(const std::string& cgroup_dir) {
  std::ifstream in(cgroup_dir + "/memory.events");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill" && value > 0) return true;
  }
  return false;
}

void WorkerCgroups::Remove(const std::string& cgroup_dir) {
  if (cgroup_dir.empty()) return;
  if (rmdir(cgroup_dir.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cannot remove the worker cgroup {}: {}", cgroup_dir, strerror(errno));
  }
}

}  // namespace modeldock::sandbox
