// The protocol between the server and its modeldock-worker processes, over one Unix stream
// socket per worker. A frame is a small binary head (the job or its result, tensor shapes
// included) followed by the tensors' raw float32 values, so that samples and outputs cross
// without an encoding step: the values are written straight from, and read straight into, the
// Tensor buffers.
//
// Frame: magic u32 | head length u32 | float count u64 | head bytes | float count float32s.
#ifndef MODELDOCK_SANDBOX_WIRE_H_
#define MODELDOCK_SANDBOX_WIRE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace modeldock::sandbox {

// A bound on embed_layers' layers in a frame (the dock's --max-layers is at most this).
inline constexpr int64_t kMaxLayers = 64;

// kTune: fine-tune the model on labelled samples (encoder/fine_tune.h); the worker sends a
// progress frame (JobResponse::progress, one epoch row) after every epoch, then the result.
enum class JobKind : uint32_t { kAdmit = 1, kRun = 2, kTune = 3 };

// Bounds on a tune job's frames.
inline constexpr uint64_t kMaxTuneEpochs = 10000;
inline constexpr uint64_t kMaxTuneLabels = uint64_t{1} << 24;

// What the model takes (mirrors encoder::InputKind): tensors of samples, or UTF-8 texts.
enum class WireInputKind : uint32_t { kTensor = 0, kText = 1 };

// Text frame bounds: texts travel in the request head as a count and length-prefixed strings.
inline constexpr uint64_t kMaxTexts = 1 << 20;
inline constexpr uint32_t kMaxTextHeadBytes = 256u << 20;

// Bounds on a model's outputs (mirrors encoder::OutputLimits; this library links no torch).
struct WireLimits {
  int64_t max_classes = 100000;
  int64_t max_feature_dim = 65536;
  int64_t max_bytes_per_sample = 1ll << 20;
  int64_t max_layers = 8;
};

// A tune job's schedule (mirrors encoder::FineTuneOptions; batch_size is JobRequest's).
struct WireTuneOptions {
  int64_t max_epochs = 10;
  double budget_seconds = 60;
  int64_t patience = 3;
  uint64_t optimizer = 0;  // 0 Adam, 1 SGD
  double learning_rate = 1e-3;
  double momentum = 0.9;
  double weight_decay = 0;
  uint64_t seed = 0;
};

// One row of a tune's epoch table (mirrors encoder::TuneEpoch).
struct WireTuneEpoch {
  int64_t epoch = 0;
  double train_loss = 0;
  double val_accuracy = 0;
  int64_t val_correct = 0;
  double millis = 0;
};

struct JobRequest {
  JobKind kind = JobKind::kRun;
  std::string model_path;
  std::string model_key;  // the worker's cache key (the file's SHA-256); empty = do not cache
  WireInputKind input_kind = WireInputKind::kTensor;
  std::vector<int64_t> input_shape;  // empty for text
  int64_t num_classes = 0;  // declared K
  int64_t feature_dim = 0;  // admitted D for runs; 0 = no features expected
  bool want_features = false;
  // Runs of a model that exports embed_layers: its admitted layer widths (empty = no layers wanted).
  std::vector<int64_t> layer_dims;
  int64_t batch_size = 256;     // run
  int64_t test_batch = 4;       // admission
  int64_t max_model_bytes = 0;  // admission
  WireLimits limits;
  // Models the worker drops from its cache before this job (the server decides what stays hot).
  std::vector<std::string> unload;
  Tensor samples;  // run only (tensor models)
  std::vector<std::string> texts;  // run only (text models)
  // Tune only: `samples` with `labels` is the train split, `val_samples` with `val_labels` the
  // validation split; num_classes the new head's width; batch_size the training batch.
  std::vector<int32_t> labels;
  Tensor val_samples;
  std::vector<int32_t> val_labels;
  WireTuneOptions tune;
};

// The rows a run job asks for: its texts for a text model, else its samples.
inline int64_t RequestRows(const JobRequest& request) {
  return request.input_kind == WireInputKind::kText ? static_cast<int64_t>(request.texts.size())
                                                    : request.samples.Rows();
}

struct JobResponse {
  int32_t code = 0;  // absl::StatusCode
  std::string message;
  // Admission.
  bool has_embed = false;
  int64_t feature_dim = 0;
  int64_t num_outputs = 0;
  std::vector<std::string> layer_names;  // embed_layers: names and widths; empty without
  std::vector<int64_t> layer_dims;
  // Run.
  Tensor logits;
  Tensor features;
  std::vector<Tensor> layers;  // when the request asked for layers
  double millis = 0;     // time the worker spent on the job
  bool cache_hit = false;  // the model was already loaded
  // The batch the model ran at: smaller than asked after an allocation failed (halved, retried).
  int64_t batch_size = 0;
  // Tune: a progress frame (progress = true) holds the epoch just done in `epochs`; the result
  // holds the whole table, the best epoch and the tuned archive.
  bool progress = false;
  std::vector<WireTuneEpoch> epochs;
  int64_t best_epoch = 0;
  double best_accuracy = 0;
  int64_t train_samples = 0;
  int64_t val_samples = 0;
  std::string stop_reason;
  std::string tuned_model;
};

// Called while a read or write waits (every few tens of milliseconds); a non-OK status aborts the
// transfer with that status. Null = wait without limit.
using WaitCheck = std::function<absl::Status()>;

// Writes a frame: `head` and then the values of `tensors` in order.
absl::Status WriteFrame(int fd, const std::string& head, const std::vector<const Tensor*>& tensors,
                        const WaitCheck& check);

// Reads a frame's head; the float count follows in *float_count (at most max_floats, else
// RESOURCE_EXHAUSTED). UNAVAILABLE when the peer closed the socket. Heads are at most 1 MiB,
// except requests (which carry a text model's texts): max_head_bytes.
absl::StatusOr<std::string> ReadHead(int fd, uint64_t max_floats, uint64_t* float_count,
                                     const WaitCheck& check, uint32_t max_head_bytes = 1u << 20);
// Reads exactly `count` floats into `out`.
absl::Status ReadFloats(int fd, float* out, uint64_t count, const WaitCheck& check);

// Every job starts with a one-byte marker that may carry a descriptor (SCM_RIGHTS): the model's
// file, opened read-only by the server, so that the worker needs no filesystem of its own.
absl::Status SendJobMarker(int fd, int attached_fd, const WaitCheck& check);
// Receives the marker; *attached_fd is the descriptor passed with it, or -1. UNAVAILABLE when the
// peer closed the socket.
absl::Status ReceiveJobMarker(int fd, int* attached_fd);

// Heads. Decoders validate every length against the bytes available (INVALID_ARGUMENT).
// `batch_cap` > 0 caps the batch_size and test_batch sent.
std::string EncodeRequestHead(const JobRequest& request,
                              const std::vector<std::string>* unload = nullptr,
                              int64_t batch_cap = 0);
absl::StatusOr<JobRequest> DecodeRequestHead(std::string_view head);
std::string EncodeResponseHead(const JobResponse& response);
absl::StatusOr<JobResponse> DecodeResponseHead(std::string_view head);

// Reads a whole request or response (head and tensor values) from `fd`.
absl::StatusOr<JobRequest> ReadRequest(int fd, uint64_t max_floats, const WaitCheck& check);
// A response head is at most max_head_bytes (a tune's result carries the tuned archive).
absl::StatusOr<JobResponse> ReadResponse(int fd, uint64_t max_floats, const WaitCheck& check,
                                         uint32_t max_head_bytes = 1u << 20);
// `unload`, when given, replaces request.unload, and `batch_cap` > 0 caps its batch sizes (so the
// caller's request is sent as is, without copying its samples).
absl::Status WriteRequest(int fd, const JobRequest& request, const WaitCheck& check,
                          const std::vector<std::string>* unload = nullptr,
                          int64_t batch_cap = 0);
absl::Status WriteResponse(int fd, const JobResponse& response, const WaitCheck& check);

}  // namespace modeldock::sandbox

#endif  // MODELDOCK_SANDBOX_WIRE_H_
