// modeldock-worker: runs uploaded models for the server, one job at a time, over the Unix socket
// it inherits as fd 3. Started only by sandbox::WorkerPool. Before it touches a model it locks
// itself down (see ConfineProcess); the server enforces time limits and kills it when needed.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "encoder/black_box.h"
#include "sandbox/wire.h"

namespace modeldock::sandbox {
namespace {

struct WorkerArgs {
  int fd = 3;
  int64_t memory_mb = 0;  // 0 = no address-space limit
  int torch_threads = 1;
  pid_t parent = 0;
  bool isolate_network = true;
  bool seccomp = true;
  std::string root;  // empty directory to chroot into (needs the user namespace)
};

bool ParseArgs(int argc, char** argv, WorkerArgs* args) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](int64_t* out) { return i + 1 < argc && absl::SimpleAtoi(argv[++i], out); };
    int64_t v = 0;
    if (arg == "--fd" && value(&v)) {
      args->fd = static_cast<int>(v);
    } else if (arg == "--memory-mb" && value(&v)) {
      args->memory_mb = v;
    } else if (arg == "--torch-threads" && value(&v)) {
      args->torch_threads = static_cast<int>(v);
    } else if (arg == "--parent" && value(&v)) {
      args->parent = static_cast<pid_t>(v);
    } else if (arg == "--no-network-isolation") {
      args->isolate_network = false;
    } else if (arg == "--root" && i + 1 < argc) {
      args->root = argv[++i];
    } else if (arg == "--no-seccomp") {
      args->seccomp = false;
    } else {
      return false;
    }
  }
  return true;
}

// Closes every descriptor but stdio and the job socket: the server's database, listening
// sockets and blobs are not the worker's business.
void CloseInheritedFds(int keep) {
  std::vector<int> fds;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = 0;
    if (absl::SimpleAtoi(entry.path().filename().string(), &fd) && fd > 2 && fd != keep) {
      fds.push_back(fd);
    }
  }
  for (int fd : fds) close(fd);  // includes the directory iterator's own fd, already closed
}

// Denies syscalls a model never needs: new sockets (no network even where namespaces are not
// available), exec, new processes (threads stay allowed), tracing, mounts and namespaces.
// x86_64 only; elsewhere the worker runs without this filter (logged).
absl::Status InstallSeccompFilter() {
#if defined(__x86_64__)
  const int denied[] = {
      SYS_socket, SYS_socketpair, SYS_connect, SYS_bind, SYS_listen, SYS_accept, SYS_accept4,
      SYS_execve, SYS_execveat, SYS_fork, SYS_vfork, SYS_ptrace, SYS_process_vm_readv,
      SYS_process_vm_writev, SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_unshare,
      SYS_setns, SYS_kexec_load, SYS_init_module, SYS_finit_module, SYS_bpf,
      SYS_perf_event_open, SYS_keyctl, SYS_add_key, SYS_request_key, SYS_userfaultfd,
      SYS_io_uring_setup};
  std::vector<sock_filter> program;
  auto add = [&](sock_filter f) { program.push_back(f); };
  add(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  add(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  add(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  add(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));  // x32 ABI numbers
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  for (int nr : denied) {
    add(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
  }
  // clone3's flags live in memory the filter cannot read: ENOSYS makes glibc fall back to clone.
  add(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1));
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
  // clone: threads (CLONE_THREAD) only.
  add(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3));
  add(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])));
  add(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0));
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
    return absl::UnavailableError(absl::StrCat("seccomp: ", strerror(errno)));
  }
  return absl::OkStatus();
#else
  return absl::UnimplementedError("seccomp filter is written for x86_64 only");
#endif
}

// Locks the process down before any model code runs. Returns what is in force, for the log.
std::string ConfineProcess(const WorkerArgs& args) {
  std::vector<std::string> in_force;
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // the server's death takes its workers with it
  if (args.parent != 0 && getppid() != args.parent) _exit(0);
  CloseInheritedFds(args.fd);
  bool in_namespace = false;
  if (args.isolate_network) {
    // A new user namespace lets an unprivileged process own an empty network namespace (only a
    // down loopback): the model cannot reach any network. Must run while single-threaded.
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) {
      in_namespace = true;
      in_force.push_back("no network (own network namespace)");
    } else {
      in_force.push_back(absl::StrCat("network namespace unavailable (", strerror(errno), ")"));
    }
  }
  rlimit none{0, 0};
  setrlimit(RLIMIT_CORE, &none);
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  // Sanitizer builds reserve terabytes of shadow address space: no address-space limit there.
  const bool limit_memory = false;
  in_force.push_back("no address-space limit (sanitizer build)");
#else
  const bool limit_memory = args.memory_mb > 0;
#endif
  if (limit_memory) {
    rlim_t bytes = static_cast<rlim_t>(args.memory_mb) << 20;
    rlimit as{bytes, bytes};
    if (setrlimit(RLIMIT_AS, &as) == 0) {
      in_force.push_back(absl::StrCat("address space <= ", args.memory_mb, " MiB"));
    }
  }
  rlimit files{256, 256};
  setrlimit(RLIMIT_NOFILE, &files);
  // LibTorch reads CPU features from /proc and /sys on first use: before the root goes.
  encoder::SetTorchThreads(args.torch_threads);
  encoder::WarmUpTorch();
  if (!args.root.empty() && in_namespace) {
    // Models arrive as descriptors: an empty root hides every file of the host.
    if (chroot(args.root.c_str()) == 0 && chdir("/") == 0) {
      in_force.push_back("empty filesystem root");
    } else {
      in_force.push_back(absl::StrCat("filesystem visible (chroot: ", strerror(errno), ")"));
    }
  } else {
    in_force.push_back("filesystem visible (needs the user namespace)");
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) in_force.push_back("no new privileges");
  if (args.seccomp) {
    absl::Status s = InstallSeccompFilter();
    in_force.push_back(s.ok() ? "seccomp (no sockets, exec or processes)"
                              : absl::StrCat("seccomp unavailable (", s.message(), ")"));
  }
  return absl::StrJoin(in_force, "; ");
}

// Loaded models by cache key; the server says which to drop (JobRequest::unload).
class ModelCache {
 public:
  encoder::BlackBoxModel* Find(const std::string& key) {
    auto it = models_.find(key);
    return it == models_.end() ? nullptr : it->second.get();
  }
  void Put(const std::string& key, std::unique_ptr<encoder::BlackBoxModel> model) {
    models_[key] = std::move(model);
  }
  void Drop(const std::string& key) { models_.erase(key); }

 private:
  std::unordered_map<std::string, std::unique_ptr<encoder::BlackBoxModel>> models_;
};

// The whole file behind a descriptor the server passed (closed afterwards).
absl::StatusOr<std::string> ReadModelFile(int fd) {
  if (fd < 0) return absl::InternalError("no model file was passed with the job");
  struct stat info;
  if (fstat(fd, &info) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("fstat: ", strerror(errno)));
  }
  std::string bytes(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      close(fd);
      return absl::InternalError("the model file ended early");
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  return bytes;
}

encoder::OutputLimits ToLimits(const WireLimits& w) {
  encoder::OutputLimits limits;
  limits.max_classes = w.max_classes;
  limits.max_feature_dim = w.max_feature_dim;
  limits.max_bytes_per_sample = w.max_bytes_per_sample;
  limits.max_layers = static_cast<int>(w.max_layers);
  return limits;
}

void SetStatus(const absl::Status& status, JobResponse* response) {
  response->code = static_cast<int32_t>(status.code());
  response->message = std::string(status.message());
}

JobResponse Admit(const JobRequest& request, int model_fd) {
  JobResponse response;
  encoder::AdmissionOptions options;
  options.max_bytes = request.max_model_bytes;
  options.test_batch = static_cast<int>(request.test_batch);
  options.limits = ToLimits(request.limits);
  auto bytes = ReadModelFile(model_fd);
  if (!bytes.ok()) {
    SetStatus(bytes.status(), &response);
    return response;
  }
  auto report = encoder::CheckAdmissionOfBytes(*bytes, "the uploaded file", request.input_shape,
                                               static_cast<int>(request.num_classes), options);
  if (!report.ok()) {
    SetStatus(report.status(), &response);
    return response;
  }
  response.has_embed = report->has_embed;
  response.feature_dim = report->feature_dim;
  response.num_outputs = report->num_outputs;
  response.layer_names = report->layer_names;
  response.layer_dims = report->layer_dims;
  response.millis = report->millis;
  return response;
}

JobResponse Run(const JobRequest& request, int model_fd, ModelCache& cache) {
  JobResponse response;
  const auto start = std::chrono::steady_clock::now();
  encoder::BlackBoxModel* model = request.model_key.empty() ? nullptr : cache.Find(request.model_key);
  std::unique_ptr<encoder::BlackBoxModel> uncached;
  response.cache_hit = model != nullptr;
  if (model != nullptr) {
    if (model_fd >= 0) close(model_fd);
  } else {
    auto bytes = ReadModelFile(model_fd);
    if (!bytes.ok()) {
      SetStatus(bytes.status(), &response);
      return response;
    }
    encoder::TorchScriptOptions options;
    options.input_shape = request.input_shape;
    options.batch_size = static_cast<int>(request.batch_size);
    options.limits = ToLimits(request.limits);
    auto loaded = encoder::LoadTorchScriptModelFromBytes(*bytes, "the model file", options);
    if (!loaded.ok()) {
      SetStatus(loaded.status(), &response);
      return response;
    }
    model = loaded->get();
    if (request.model_key.empty()) {
      uncached = std::move(*loaded);
    } else {
      cache.Put(request.model_key, std::move(*loaded));
    }
  }
  const bool want_layers = !request.layer_dims.empty();
  if (want_layers && !model->has_layers()) {
    SetStatus(absl::FailedPreconditionError("the model no longer exports embed_layers"), &response);
    return response;
  }
  auto outputs = model->Run(request.samples, request.want_features, want_layers);
  if (!outputs.ok()) {
    SetStatus(outputs.status(), &response);
    return response;
  }
  absl::Status s = encoder::CheckOutputs(
      *outputs, request.samples.Rows(), request.num_classes,
      request.want_features && model->has_embed() ? request.feature_dim : 0, request.layer_dims,
      ToLimits(request.limits));
  if (!s.ok()) {
    SetStatus(s, &response);
    return response;
  }
  response.logits = std::move(outputs->logits);
  response.features = std::move(outputs->features);
  response.layers = std::move(outputs->layers);
  response.millis =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return response;
}

int Serve(const WorkerArgs& args) {
  ModelCache cache;
  // The server sends at most a probe set or a query's samples; 2^33 floats is a sanity bound.
  constexpr uint64_t kMaxRequestFloats = uint64_t{1} << 33;
  while (true) {
    int model_fd = -1;
    absl::Status marker = ReceiveJobMarker(args.fd, &model_fd);
    if (!marker.ok()) return absl::IsUnavailable(marker) ? 0 : 2;  // server gone
    auto request = ReadRequest(args.fd, kMaxRequestFloats, nullptr);
    if (!request.ok()) {
      if (model_fd >= 0) close(model_fd);
      return absl::IsUnavailable(request.status()) ? 0 : 2;
    }
    for (const std::string& key : request->unload) cache.Drop(key);
    JobResponse response;
    try {
      response = request->kind == JobKind::kAdmit ? Admit(*request, model_fd)
                                                  : Run(*request, model_fd, cache);
    } catch (const std::bad_alloc&) {
      SetStatus(absl::ResourceExhaustedError("out of memory"), &response);
    } catch (const std::exception& e) {
      SetStatus(absl::InternalError(absl::StrCat("worker error: ", e.what())), &response);
    }
    if (response.code == static_cast<int32_t>(absl::StatusCode::kResourceExhausted) &&
        args.memory_mb > 0) {
      response.message += absl::StrCat(" (worker memory limit ", args.memory_mb, " MiB)");
    }
    if (!WriteResponse(args.fd, response, nullptr).ok()) return 0;
  }
}

}  // namespace
}  // namespace modeldock::sandbox

int main(int argc, char** argv) {
  using namespace modeldock::sandbox;
  WorkerArgs args;
  if (!ParseArgs(argc, argv, &args)) {
    fprintf(stderr,
            "usage: modeldock-worker [--fd N] [--memory-mb MB] [--torch-threads N] [--parent PID]"
            " [--no-network-isolation] [--no-seccomp]\n"
            "Started by modeldock-server; runs uploaded models in a confined process.\n");
    return 64;
  }
  signal(SIGPIPE, SIG_IGN);
  const std::string confinement = ConfineProcess(args);
  // Hello: tells the pool the worker is up and what confines it.
  JobResponse hello;
  hello.message = confinement;
  if (!WriteResponse(args.fd, hello, nullptr).ok()) return 0;
  return Serve(args);
}
