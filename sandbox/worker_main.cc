// modeldock-worker: runs uploaded models for the server, one job at a time, over the Unix socket
// it inherits as fd 3. Started only by sandbox::WorkerPool. Before it touches a model it locks
// itself down (see ConfineProcess); the server enforces time limits and kills it when needed.
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "encoder/black_box.h"
#include "encoder/fine_tune.h"
#include "sandbox/syscall_filter.h"
#include "sandbox/wire.h"

namespace modeldock::sandbox {
namespace {

struct WorkerArgs {
  int fd = 3;
  int64_t memory_mb = 0;         // the pool's memory limit (for messages); 0 = none
  int64_t address_space_mb = 0;  // RLIMIT_AS, a backstop; 0 = none
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
    } else if (arg == "--address-space-mb" && value(&v)) {
      args->address_space_mb = v;
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
  const bool limit_memory = args.address_space_mb > 0;
#endif
  // Memory used is limited from outside (cgroup or the pool's polling); the address space only
  // as a backstop, generous enough for what LibTorch and glibc reserve without using.
  if (limit_memory) {
    rlim_t bytes = static_cast<rlim_t>(args.address_space_mb) << 20;
    rlimit as{bytes, bytes};
    if (setrlimit(RLIMIT_AS, &as) == 0) {
      in_force.push_back(absl::StrCat("address space <= ", args.address_space_mb, " MiB"));
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
    absl::Status s = InstallSyscallFilter();
    in_force.push_back(s.ok() ? "seccomp (no sockets, exec or processes)"
                              : absl::StrCat("seccomp unavailable (", s.message(), ")"));
  }
  return absl::StrJoin(in_force, "; ");
}

// Loaded models by cache key; the server says which to drop (JobRequest::unload).
struct LoadedModel {
  std::unique_ptr<encoder::BlackBoxModel> model;
  int64_t load_batch = 0;  // the batch it was loaded with (its own batching)
  int64_t batch = 0;       // the largest batch known to fit (smaller after an allocation failed)
};

class ModelCache {
 public:
  LoadedModel* Find(const std::string& key) {
    auto it = models_.find(key);
    return it == models_.end() ? nullptr : &it->second;
  }
  LoadedModel* Put(const std::string& key, LoadedModel model) {
    return &(models_[key] = std::move(model));
  }
  void Drop(const std::string& key) { models_.erase(key); }

 private:
  std::unordered_map<std::string, LoadedModel> models_;
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

encoder::InputKind ToInputKind(WireInputKind kind) {
  return kind == WireInputKind::kText ? encoder::InputKind::kText : encoder::InputKind::kTensor;
}

// An allocation failed inside the model (LibTorch or std::bad_alloc; encoder/black_box.cc), as
// opposed to other RESOURCE_EXHAUSTED refusals such as a file over the size limit.
bool IsOutOfMemory(const absl::Status& status) {
  return absl::IsResourceExhausted(status) && absl::StrContains(status.message(), "out of memory");
}

void SetStatus(const absl::Status& status, JobResponse* response) {
  response->code = static_cast<int32_t>(status.code());
  response->message = std::string(status.message());
}

JobResponse Admit(const JobRequest& request, int model_fd) {
  JobResponse response;
  encoder::AdmissionOptions options;
  options.max_bytes = request.max_model_bytes;
  options.limits = ToLimits(request.limits);
  options.input_kind = ToInputKind(request.input_kind);
  auto bytes = ReadModelFile(model_fd);
  if (!bytes.ok()) {
    SetStatus(bytes.status(), &response);
    return response;
  }
  // An allocation that fails on the test batch is tried again at half the batch, down to one.
  absl::StatusOr<encoder::AdmissionReport> report;
  for (int64_t batch = std::max<int64_t>(1, request.test_batch);; batch /= 2) {
    options.test_batch = static_cast<int>(batch);
    response.batch_size = batch;
    report = encoder::CheckAdmissionOfBytes(*bytes, "the uploaded file", request.input_shape,
                                            static_cast<int>(request.num_classes), options);
    if (report.ok() || !IsOutOfMemory(report.status()) || batch <= 1) break;
  }
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

// Rows [start, start + count) of a [N, ...] tensor.
Tensor SliceRows(const Tensor& samples, int64_t start, int64_t count) {
  Tensor part;
  part.shape = samples.shape;
  part.shape[0] = count;
  const int64_t row = samples.RowSize();
  part.values.assign(samples.values.begin() + start * row,
                     samples.values.begin() + (start + count) * row);
  return part;
}

// Appends the rows of `part` ([b, W]) to `all` ([n, W], shapeless at first).
absl::Status AppendRows(const Tensor& part, Tensor* all) {
  if (part.shape.empty()) return absl::OkStatus();
  if (all->shape.empty()) {
    all->shape = {0, part.shape.size() > 1 ? part.shape[1] : 1};
  } else if (part.shape.size() != 2 || part.shape[1] != all->shape[1]) {
    return absl::FailedPreconditionError("the model's output width changed between batches");
  }
  all->shape[0] += part.shape[0];
  all->values.insert(all->values.end(), part.values.begin(), part.values.end());
  return absl::OkStatus();
}

// The model on `samples` in batches of at most `batch` rows.
absl::StatusOr<encoder::ModelOutputs> RunInBatches(const LoadedModel& loaded, const Tensor& samples,
                                                   bool want_features, bool want_layers,
                                                   int64_t batch) {
  const int64_t n = samples.Rows();
  // Its own batching is as small: no copies.
  if (batch >= n || batch >= loaded.load_batch) {
    return loaded.model->Run(samples, want_features, want_layers);
  }
  encoder::ModelOutputs all;
  for (int64_t start = 0; start < n; start += batch) {
    auto part = loaded.model->Run(SliceRows(samples, start, std::min(batch, n - start)),
                                  want_features, want_layers);
    if (!part.ok()) return part.status();
    absl::Status s = AppendRows(part->logits, &all.logits);
    if (s.ok()) s = AppendRows(part->features, &all.features);
    if (all.layers.empty()) all.layers.resize(part->layers.size());
    if (s.ok() && part->layers.size() != all.layers.size()) {
      s = absl::FailedPreconditionError("embed_layers changed its number of layers");
    }
    for (size_t l = 0; s.ok() && l < part->layers.size(); ++l) {
      s = AppendRows(part->layers[l], &all.layers[l]);
    }
    if (!s.ok()) return s;
  }
  return all;
}

// RunInBatches, again at half the batch after an allocation failed, down to one row; *batch
// ends as the batch that ran (or failed last).
absl::StatusOr<encoder::ModelOutputs> RunHalving(const LoadedModel& loaded, const Tensor& samples,
                                                 bool want_features, bool want_layers,
                                                 int64_t* batch) {
  *batch = std::max<int64_t>(1, std::min(*batch, samples.Rows()));
  while (true) {
    auto outputs = RunInBatches(loaded, samples, want_features, want_layers, *batch);
    if (outputs.ok() || !IsOutOfMemory(outputs.status()) || *batch <= 1) {
      return outputs;
    }
    *batch /= 2;
  }
}

// The cached model, or the one loaded from the file the server passed (cached under its key).
absl::StatusOr<LoadedModel*> FindOrLoad(const JobRequest& request, int model_fd,
                                        ModelCache& cache, LoadedModel* uncached) {
  LoadedModel* loaded = request.model_key.empty() ? nullptr : cache.Find(request.model_key);
  if (loaded != nullptr) {
    if (model_fd >= 0) close(model_fd);
    return loaded;
  }
  auto bytes = ReadModelFile(model_fd);
  if (!bytes.ok()) return bytes.status();
  encoder::TorchScriptOptions options;
  options.input_kind = ToInputKind(request.input_kind);
  options.input_shape = request.input_shape;
  options.batch_size = static_cast<int>(std::max<int64_t>(1, request.batch_size));
  options.limits = ToLimits(request.limits);
  auto model = encoder::LoadTorchScriptModelFromBytes(*bytes, "the model file", options);
  if (!model.ok()) return model.status();
  LoadedModel fresh{std::move(*model), options.batch_size, options.batch_size};
  if (request.model_key.empty()) {
    *uncached = std::move(fresh);
    return uncached;
  }
  return cache.Put(request.model_key, std::move(fresh));
}

JobResponse Run(const JobRequest& request, int model_fd, ModelCache& cache) {
  JobResponse response;
  const auto start = std::chrono::steady_clock::now();
  response.cache_hit = !request.model_key.empty() && cache.Find(request.model_key) != nullptr;
  LoadedModel uncached;
  auto loaded = FindOrLoad(request, model_fd, cache, &uncached);
  if (!loaded.ok()) {
    SetStatus(loaded.status(), &response);
    return response;
  }
  LoadedModel& model = **loaded;
  const bool want_layers = !request.layer_dims.empty();
  if (want_layers && !model.model->has_layers()) {
    SetStatus(absl::FailedPreconditionError("the model no longer exports embed_layers"), &response);
    return response;
  }
  const bool text = request.input_kind == WireInputKind::kText;
  if (text != (model.model->input_kind() == encoder::InputKind::kText)) {
    SetStatus(absl::InvalidArgumentError("the job's input kind is not the model's"), &response);
    return response;
  }
  int64_t batch = std::min(std::max<int64_t>(1, request.batch_size), model.batch);
  const int64_t rows = RequestRows(request);
  // Texts run at the model's load batch (its own batching), without halving.
  auto outputs = text ? model.model->RunText(request.texts, request.want_features, want_layers)
                      : RunHalving(model, request.samples, request.want_features, want_layers,
                                   &batch);
  response.batch_size = batch;
  if (!outputs.ok()) {
    SetStatus(outputs.status(), &response);
    return response;
  }
  model.batch = std::min(model.batch, batch);  // the next job starts at what fitted
  absl::Status s = encoder::CheckOutputs(
      *outputs, rows, request.num_classes,
      request.want_features && model.model->has_embed() ? request.feature_dim : 0,
      request.layer_dims, ToLimits(request.limits));
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

WireTuneEpoch ToWire(const encoder::TuneEpoch& e) {
  return {e.epoch, e.train_loss, e.val_accuracy, e.val_correct, e.millis};
}

// Fine-tunes the model (encoder::FineTune), writing a progress frame to `out_fd` after every
// epoch; the returned response is the result.
JobResponse Tune(const JobRequest& request, int model_fd, int out_fd) {
  JobResponse response;
  const auto start = std::chrono::steady_clock::now();
  auto bytes = ReadModelFile(model_fd);
  if (!bytes.ok()) {
    SetStatus(bytes.status(), &response);
    return response;
  }
  encoder::FineTuneData data;
  data.train_samples = request.samples;
  data.train_labels = request.labels;
  data.val_samples = request.val_samples;
  data.val_labels = request.val_labels;
  data.num_classes = static_cast<int>(request.num_classes);
  encoder::FineTuneOptions options;
  options.max_epochs = static_cast<int>(request.tune.max_epochs);
  options.budget = absl::Seconds(request.tune.budget_seconds);
  options.patience = static_cast<int>(request.tune.patience);
  options.optimizer =
      request.tune.optimizer == 1 ? encoder::TuneOptimizer::kSgd : encoder::TuneOptimizer::kAdam;
  options.learning_rate = request.tune.learning_rate;
  options.momentum = request.tune.momentum;
  options.weight_decay = request.tune.weight_decay;
  options.batch_size = static_cast<int>(std::max<int64_t>(1, request.batch_size));
  options.seed = request.tune.seed;
  auto result = encoder::FineTune(
      *bytes, "the model file", request.input_shape, data, options,
      [&](const encoder::TuneEpoch& e) {
        JobResponse frame;
        frame.progress = true;
        frame.epochs.push_back(ToWire(e));
        // A server that stopped reading kills the worker: a failed write needs no handling here
        // (the result's write fails too and ends the worker's loop).
        WriteResponse(out_fd, frame, nullptr).IgnoreError();
      });
  if (!result.ok()) {
    SetStatus(result.status(), &response);
    return response;
  }
  for (const encoder::TuneEpoch& e : result->epochs) response.epochs.push_back(ToWire(e));
  response.best_epoch = result->best_epoch;
  response.best_accuracy = result->best_accuracy;
  response.train_samples = result->train_samples;
  response.val_samples = result->val_samples;
  response.stop_reason = result->stop_reason;
  response.tuned_model = std::move(result->tuned_model);
  response.millis =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return response;
}

// " (at a batch of 1 sample; worker address space capped at 6144 MiB, the backstop of the worker
// memory limit 1536 MiB (--worker-memory-mb))": which limits an allocation failure ran into.
std::string DescribeMemoryLimits(const WorkerArgs& args, int64_t batch) {
  std::string what = " (";
  if (batch > 0) absl::StrAppend(&what, "at a batch of ", batch, batch == 1 ? " sample; " : " samples; ");
  // The pool's limit on memory used kills the worker from outside: an allocation that fails
  // inside hit the address-space backstop, or the host ran out.
  if (args.address_space_mb > 0) {
    absl::StrAppend(&what, "worker address space capped at ", args.address_space_mb,
                    " MiB, the backstop of");
  } else {
    absl::StrAppend(&what, "the host is out of memory; under");
  }
  absl::StrAppend(&what, args.memory_mb > 0 ? absl::StrCat(" the worker memory limit ", args.memory_mb,
                                                          " MiB (--worker-memory-mb))")
                                            : " no worker memory limit)");
  return what;
}

// Receives one job, runs it and answers. Returns the worker's exit code when it should stop
// (the server is gone or sent garbage), nullopt to wait for the next job.
std::optional<int> ServeOneJob(const WorkerArgs& args, ModelCache& cache) {
  // The server sends at most a probe set or a query's samples; 2^33 floats is a sanity bound.
  constexpr uint64_t kMaxRequestFloats = uint64_t{1} << 33;
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
    if (request->kind == JobKind::kAdmit) {
      response = Admit(*request, model_fd);
    } else if (request->kind == JobKind::kTune) {
      response = Tune(*request, model_fd, args.fd);
    } else {
      response = Run(*request, model_fd, cache);
    }
  } catch (const std::bad_alloc&) {
    SetStatus(absl::ResourceExhaustedError("the job ran out of memory"), &response);
  } catch (const std::exception& e) {
    SetStatus(absl::InternalError(absl::StrCat("worker error: ", e.what())), &response);
  }
  if (IsOutOfMemory(absl::Status(static_cast<absl::StatusCode>(response.code),
                                 response.message))) {
    // Which limit: the address-space backstop, else the host's memory (the pool's own limit
    // on memory used kills the worker from outside instead).
    response.message += DescribeMemoryLimits(args, response.batch_size);
  }
  if (!WriteResponse(args.fd, response, nullptr).ok()) return 0;
  return std::nullopt;
}

// Waits up to `timeout_ms` for the next job's first bytes; false when none came.
bool JobArrivesWithin(int fd, int timeout_ms) {
  pollfd pending = {fd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&pending, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  return rc != 0;  // an error or a hang-up is for ReceiveJobMarker to report
}

int Serve(const WorkerArgs& args) {
  ModelCache cache;
  // The thresholds set in main keep freed blocks on the heap while jobs follow each other (a
  // probe or a query runs as several jobs; trimming after each one made the text and audio e2e
  // tests 50-60 % slower). Once no job has come for a second, the heap goes back to the system:
  // what a worker holds counts against its memory limit.
  constexpr int kIdleBeforeTrimMs = 1000;
  while (true) {
    if (!JobArrivesWithin(args.fd, kIdleBeforeTrimMs)) malloc_trim(0);
    const std::optional<int> exit_code = ServeOneJob(args, cache);
    if (exit_code) return *exit_code;
  }
}

}  // namespace
}  // namespace modeldock::sandbox

int main(int argc, char** argv) {
  using namespace modeldock::sandbox;
  WorkerArgs args;
  if (argc == 2 && std::string(argv[1]) == "--version") {
    printf("modeldock-worker %s\n", MODELDOCK_VERSION);
    return 0;
  }
  if (!ParseArgs(argc, argv, &args)) {
    fprintf(stderr,
            "usage: modeldock-worker [--fd N] [--memory-mb MB] [--address-space-mb MB]"
            " [--torch-threads N] [--parent PID] [--root DIR]"
            " [--no-network-isolation] [--no-seccomp]\n"
            "Started by modeldock-server; runs uploaded models in a confined process.\n");
    return 64;
  }
  signal(SIGPIPE, SIG_IGN);
  // glibc serves blocks of 128 KiB and more with mmap and hands them back with munmap, raising
  // that threshold only as it sees large blocks freed: the first model a worker runs faulted in
  // every page of every batch's tensors again (perf: a third of its time in page faults; a text
  // model's first probe 9.4-11.7 s, 1.2-1.6 s once the threshold had grown). Fixed thresholds
  // keep blocks under 256 MiB on the heap for the next batch; a free heap top beyond 512 MiB is
  // still returned, and all of it once the worker is idle (Serve; docs/BENCHMARKS.md, "CI time").
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  try {
    const std::string confinement = ConfineProcess(args);
    // Hello: tells the pool the worker is up and what confines it.
    JobResponse hello;
    hello.message = confinement;
    if (!WriteResponse(args.fd, hello, nullptr).ok()) return 0;
    return Serve(args);
  } catch (const std::exception& e) {
    // Jobs catch their own; this is the worker's own code failing (the pool reports the exit).
    fprintf(stderr, "modeldock-worker: %s\n", e.what());
    return 70;
  }
}
