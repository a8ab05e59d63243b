#include "sandbox/wire.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace modeldock::sandbox {
namespace {

constexpr uint32_t kMagic = 0x4d445731;  // "MDW1"
constexpr int kPollMillis = 25;

// Waits until `fd` is ready for `events`, calling `check` between waits.
absl::Status WaitReady(int fd, short events, const WaitCheck& check) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, check ? kPollMillis : -1);
    if (n < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
    if (n > 0) return absl::OkStatus();  // readable, writable, or hung up (the read says which)
    if (check) {
      if (absl::Status s = check(); !s.ok()) return s;
    }
  }
}

absl::Status ReadExact(int fd, char* out, uint64_t bytes, const WaitCheck& check) {
  while (bytes > 0) {
    if (absl::Status s = WaitReady(fd, POLLIN, check); !s.ok()) return s;
    ssize_t n = recv(fd, out, bytes, MSG_DONTWAIT);
    if (n == 0) return absl::UnavailableError("the peer closed the connection");
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("read: ", strerror(errno)));
    }
    out += n;
    bytes -= static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteExact(int fd, std::vector<iovec> parts, const WaitCheck& check) {
  size_t first = 0;
  while (first < parts.size()) {
    if (parts[first].iov_len == 0) {
      ++first;
      continue;
    }
    if (absl::Status s = WaitReady(fd, POLLOUT, check); !s.ok()) return s;
    msghdr message{};
    message.msg_iov = parts.data() + first;
    message.msg_iovlen = std::min<size_t>(parts.size() - first, 64);
    ssize_t n = sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("write: ", strerror(errno)));
    }
    size_t left = static_cast<size_t>(n);
    while (first < parts.size() && left >= parts[first].iov_len) {
      left -= parts[first].iov_len;
      ++first;
    }
    if (left > 0) {
      parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + left;
      parts[first].iov_len -= left;
    }
  }
  return absl::OkStatus();
}

// Head encoding: little-endian fixed-width integers, length-prefixed strings and lists.
class HeadWriter {
 public:
  void U64(uint64_t v) { out_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void F64(double v) { out_.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void Str(const std::string& s) {
    U64(s.size());
    out_.append(s);
  }
  void Shape(const std::vector<int64_t>& shape) {
    U64(shape.size());
    for (int64_t d : shape) I64(d);
  }
  void Ints(const std::vector<int64_t>& values) { Shape(values); }
  void Labels(const std::vector<int32_t>& labels) {
    U64(labels.size());
    for (int32_t l : labels) I64(l);
  }
  void Epoch(const WireTuneEpoch& e) {
    I64(e.epoch);
    F64(e.train_loss);
    F64(e.val_accuracy);
    I64(e.val_correct);
    F64(e.millis);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class HeadReader {
 public:
  explicit HeadReader(std::string_view in) : in_(in) {}
  bool U64(uint64_t* v) { return Raw(v, sizeof *v); }
  bool I64(int64_t* v) { return Raw(v, sizeof *v); }
  bool F64(double* v) { return Raw(v, sizeof *v); }
  bool Bool(bool* v) {
    uint64_t x;
    if (!U64(&x) || x > 1) return false;
    *v = x == 1;
    return true;
  }
  bool Str(std::string* s) {
    uint64_t n;
    if (!U64(&n) || n > in_.size()) return false;
    s->assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  // A tensor shape: at most 8 non-negative dimensions whose product fits in 2^40 elements.
  bool Shape(std::vector<int64_t>* shape) {
    uint64_t n;
    if (!U64(&n) || n > 8) return false;
    shape->resize(n);
    int64_t elements = 1;
    for (int64_t& d : *shape) {
      if (!I64(&d) || d < 0 || d > (int64_t{1} << 40)) return false;
      if (d > 0 && elements > (int64_t{1} << 40) / d) return false;
      elements *= d;
    }
    return true;
  }
  // A list of at most kMaxLayers non-negative integers (layer widths).
  bool Ints(std::vector<int64_t>* values) {
    uint64_t n;
    if (!U64(&n) || n > static_cast<uint64_t>(kMaxLayers)) return false;
    values->resize(n);
    for (int64_t& v : *values) {
      if (!I64(&v) || v < 0) return false;
    }
    return true;
  }
  // Class labels: at most kMaxTuneLabels values in [0, 2^31).
  bool Labels(std::vector<int32_t>* labels) {
    uint64_t n;
    if (!U64(&n) || n > kMaxTuneLabels || n > in_.size() / 8) return false;
    labels->resize(n);
    for (int32_t& l : *labels) {
      int64_t v;
      if (!I64(&v) || v < 0 || v > std::numeric_limits<int32_t>::max()) return false;
      l = static_cast<int32_t>(v);
    }
    return true;
  }
  bool Epoch(WireTuneEpoch* e) {
    return I64(&e->epoch) && F64(&e->train_loss) && F64(&e->val_accuracy) &&
           I64(&e->val_correct) && F64(&e->millis);
  }
  bool Done() const { return in_.empty(); }

 private:
  bool Raw(void* v, size_t bytes) {
    if (in_.size() < bytes) return false;
    std::memcpy(v, in_.data(), bytes);
    in_.remove_prefix(bytes);
    return true;
  }
  std::string_view in_;
};

absl::Status BadHead(const char* what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed worker ", what, " head"));
}

uint64_t Elements(const std::vector<int64_t>& shape) {
  if (shape.empty()) return 0;  // "no tensor"
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

absl::Status ReadTensorValues(int fd, Tensor* t, uint64_t* remaining, const WaitCheck& check) {
  const uint64_t n = Elements(t->shape);
  if (n > *remaining) return absl::InvalidArgumentError("frame holds fewer values than its shapes");
  t->values.resize(n);
  *remaining -= n;
  return ReadFloats(fd, t->values.data(), n, check);
}

}  // namespace

absl::Status SendJobMarker(int fd, int attached_fd, const WaitCheck& check) {
  char marker = 'J';
  iovec part{&marker, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  if (attached_fd >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &attached_fd, sizeof(int));
  }
  while (true) {
    if (absl::Status s = WaitReady(fd, POLLOUT, check); !s.ok()) return s;
    ssize_t n = sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == 1) return absl::OkStatus();
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    return absl::UnavailableError(absl::StrCat("write: ", strerror(errno)));
  }
}

absl::Status ReceiveJobMarker(int fd, int* attached_fd) {
  *attached_fd = -1;
  char marker = 0;
  iovec part{&marker, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return absl::UnavailableError("the peer closed the connection");
  if (n < 0) return absl::UnavailableError(absl::StrCat("read: ", strerror(errno)));
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS &&
        header->cmsg_len == CMSG_LEN(sizeof(int))) {
      std::memcpy(attached_fd, CMSG_DATA(header), sizeof(int));
    }
  }
  if (marker != 'J') {
    if (*attached_fd >= 0) close(*attached_fd);
    *attached_fd = -1;
    return absl::InvalidArgumentError("not a job marker");
  }
  return absl::OkStatus();
}

absl::Status WriteFrame(int fd, const std::string& head, const std::vector<const Tensor*>& tensors,
                        const WaitCheck& check) {
  uint64_t floats = 0;
  for (const Tensor* t : tensors) floats += t->values.size();
  char prefix[16];
  const uint32_t magic = kMagic;
  const uint32_t head_bytes = static_cast<uint32_t>(head.size());
  std::memcpy(prefix, &magic, 4);
  std::memcpy(prefix + 4, &head_bytes, 4);
  std::memcpy(prefix + 8, &floats, 8);
  std::vector<iovec> parts;
  parts.push_back({prefix, sizeof prefix});
  parts.push_back({const_cast<char*>(head.data()), head.size()});
  for (const Tensor* t : tensors) {
    parts.push_back({const_cast<float*>(t->values.data()), t->values.size() * sizeof(float)});
  }
  return WriteExact(fd, std::move(parts), check);
}

absl::StatusOr<std::string> ReadHead(int fd, uint64_t max_floats, uint64_t* float_count,
                                     const WaitCheck& check, uint32_t max_head_bytes) {
  char prefix[16];
  if (absl::Status s = ReadExact(fd, prefix, sizeof prefix, check); !s.ok()) return s;
  uint32_t magic, head_bytes;
  std::memcpy(&magic, prefix, 4);
  std::memcpy(&head_bytes, prefix + 4, 4);
  std::memcpy(float_count, prefix + 8, 8);
  if (magic != kMagic || head_bytes > max_head_bytes) {
    return absl::InvalidArgumentError("not a modeldock worker frame");
  }
  if (*float_count > max_floats) {
    return absl::ResourceExhaustedError(absl::StrCat("a frame of ", *float_count,
                                                     " values is over the limit of ", max_floats));
  }
  std::string head(head_bytes, '\0');
  if (absl::Status s = ReadExact(fd, head.data(), head_bytes, check); !s.ok()) return s;
  return head;
}

absl::Status ReadFloats(int fd, float* out, uint64_t count, const WaitCheck& check) {
  return ReadExact(fd, reinterpret_cast<char*>(out), count * sizeof(float), check);
}

std::string EncodeRequestHead(const JobRequest& r, const std::vector<std::string>* unload,
                              int64_t batch_cap) {
  auto capped = [batch_cap](int64_t batch) {
    return batch_cap > 0 ? std::min(batch, batch_cap) : batch;
  };
  HeadWriter w;
  w.U64(static_cast<uint64_t>(r.kind));
  w.Str(r.model_path);
  w.Str(r.model_key);
  w.Shape(r.input_shape);
  w.I64(r.num_classes);
  w.I64(r.feature_dim);
  w.U64(r.want_features ? 1 : 0);
  w.Ints(r.layer_dims);
  w.I64(capped(r.batch_size));
  w.I64(capped(r.test_batch));
  w.I64(r.max_model_bytes);
  w.I64(r.limits.max_classes);
  w.I64(r.limits.max_feature_dim);
  w.I64(r.limits.max_bytes_per_sample);
  w.I64(r.limits.max_layers);
  const std::vector<std::string>& drop = unload != nullptr ? *unload : r.unload;
  w.U64(drop.size());
  for (const std::string& key : drop) w.Str(key);
  w.Shape(r.samples.shape);
  w.U64(static_cast<uint64_t>(r.input_kind));
  w.U64(r.texts.size());
  for (const std::string& text : r.texts) w.Str(text);
  w.I64(r.tune.max_epochs);
  w.F64(r.tune.budget_seconds);
  w.I64(r.tune.patience);
  w.U64(r.tune.optimizer);
  w.F64(r.tune.learning_rate);
  w.F64(r.tune.momentum);
  w.F64(r.tune.weight_decay);
  w.U64(r.tune.seed);
  w.Labels(r.labels);
  w.Labels(r.val_labels);
  w.Shape(r.val_samples.shape);
  return w.Take();
}

absl::StatusOr<JobRequest> DecodeRequestHead(std::string_view head) {
  HeadReader in(head);
  JobRequest r;
  uint64_t kind, unload;
  if (!in.U64(&kind) || kind < 1 || kind > 3) return BadHead("request");
  r.kind = static_cast<JobKind>(kind);
  if (!in.Str(&r.model_path) || !in.Str(&r.model_key) || !in.Shape(&r.input_shape) ||
      !in.I64(&r.num_classes) || !in.I64(&r.feature_dim) || !in.Bool(&r.want_features) ||
      !in.Ints(&r.layer_dims) || !in.I64(&r.batch_size) || !in.I64(&r.test_batch) ||
      !in.I64(&r.max_model_bytes) || !in.I64(&r.limits.max_classes) ||
      !in.I64(&r.limits.max_feature_dim) || !in.I64(&r.limits.max_bytes_per_sample) ||
      !in.I64(&r.limits.max_layers) || !in.U64(&unload) || unload > 100000) {
    return BadHead("request");
  }
  r.unload.resize(unload);
  for (std::string& key : r.unload) {
    if (!in.Str(&key)) return BadHead("request");
  }
  uint64_t input_kind = 0, texts = 0;
  if (!in.Shape(&r.samples.shape) || !in.U64(&input_kind) || input_kind > 1 ||
      !in.U64(&texts) || texts > kMaxTexts) {
    return BadHead("request");
  }
  r.input_kind = static_cast<WireInputKind>(input_kind);
  // Each string takes at least its 8-byte length: a count past the head's end is refused before
  // anything is allocated for it.
  if (texts > head.size() / 8) return BadHead("request");
  r.texts.resize(texts);
  for (std::string& text : r.texts) {
    if (!in.Str(&text)) return BadHead("request");
  }
  WireTuneOptions& t = r.tune;
  if (!in.I64(&t.max_epochs) || !in.F64(&t.budget_seconds) || !in.I64(&t.patience) ||
      !in.U64(&t.optimizer) || !in.F64(&t.learning_rate) || !in.F64(&t.momentum) ||
      !in.F64(&t.weight_decay) || !in.U64(&t.seed) || !in.Labels(&r.labels) ||
      !in.Labels(&r.val_labels) || !in.Shape(&r.val_samples.shape)) {
    return BadHead("request");
  }
  if (!in.Done()) return BadHead("request");
  if (r.input_kind == WireInputKind::kText && !r.samples.shape.empty()) return BadHead("request");
  return r;
}

std::string EncodeResponseHead(const JobResponse& r) {
  HeadWriter w;
  w.I64(r.code);
  w.Str(r.message);
  w.U64(r.has_embed ? 1 : 0);
  w.I64(r.feature_dim);
  w.I64(r.num_outputs);
  w.U64(r.layer_names.size());
  for (const std::string& name : r.layer_names) w.Str(name);
  w.Ints(r.layer_dims);
  w.F64(r.millis);
  w.U64(r.cache_hit ? 1 : 0);
  w.I64(r.batch_size);
  w.Shape(r.logits.shape);
  w.Shape(r.features.shape);
  w.U64(r.layers.size());
  for (const Tensor& layer : r.layers) w.Shape(layer.shape);
  w.U64(r.progress ? 1 : 0);
  w.U64(r.epochs.size());
  for (const WireTuneEpoch& e : r.epochs) w.Epoch(e);
  w.I64(r.best_epoch);
  w.F64(r.best_accuracy);
  w.I64(r.train_samples);
  w.I64(r.val_samples);
  w.Str(r.stop_reason);
  w.Str(r.tuned_model);
  return w.Take();
}

absl::StatusOr<JobResponse> DecodeResponseHead(std::string_view head) {
  HeadReader in(head);
  JobResponse r;
  int64_t code;
  uint64_t names = 0, layers = 0;
  if (!in.I64(&code) || code < 0 || code > 16 || !in.Str(&r.message) || !in.Bool(&r.has_embed) ||
      !in.I64(&r.feature_dim) || !in.I64(&r.num_outputs) || !in.U64(&names) || names > static_cast<uint64_t>(kMaxLayers)) {
    return BadHead("response");
  }
  r.layer_names.resize(names);
  for (std::string& name : r.layer_names) {
    if (!in.Str(&name)) return BadHead("response");
  }
  if (!in.Ints(&r.layer_dims) || !in.F64(&r.millis) || !in.Bool(&r.cache_hit) ||
      !in.I64(&r.batch_size) || !in.Shape(&r.logits.shape) || !in.Shape(&r.features.shape) || !in.U64(&layers) ||
      layers > static_cast<uint64_t>(kMaxLayers)) {
    return BadHead("response");
  }
  r.layers.resize(layers);
  for (Tensor& layer : r.layers) {
    if (!in.Shape(&layer.shape)) return BadHead("response");
  }
  uint64_t epochs = 0;
  if (!in.Bool(&r.progress) || !in.U64(&epochs) || epochs > kMaxTuneEpochs) {
    return BadHead("response");
  }
  r.epochs.resize(epochs);
  for (WireTuneEpoch& e : r.epochs) {
    if (!in.Epoch(&e)) return BadHead("response");
  }
  if (!in.I64(&r.best_epoch) || !in.F64(&r.best_accuracy) || !in.I64(&r.train_samples) ||
      !in.I64(&r.val_samples) || !in.Str(&r.stop_reason) || !in.Str(&r.tuned_model)) {
    return BadHead("response");
  }
  if (!in.Done()) return BadHead("response");
  r.code = static_cast<int32_t>(code);
  return r;
}

absl::StatusOr<JobRequest> ReadRequest(int fd, uint64_t max_floats, const WaitCheck& check) {
  uint64_t floats = 0;
  auto head = ReadHead(fd, max_floats, &floats, check, kMaxTextHeadBytes);
  if (!head.ok()) return head.status();
  auto request = DecodeRequestHead(*head);
  if (!request.ok()) return request.status();
  if (Elements(request->samples.shape) + Elements(request->val_samples.shape) != floats) {
    return absl::InvalidArgumentError("request values do not match the samples' shape");
  }
  if (absl::Status s = ReadTensorValues(fd, &request->samples, &floats, check); !s.ok()) return s;
  if (absl::Status s = ReadTensorValues(fd, &request->val_samples, &floats, check); !s.ok()) {
    return s;
  }
  return request;
}

absl::StatusOr<JobResponse> ReadResponse(int fd, uint64_t max_floats, const WaitCheck& check,
                                         uint32_t max_head_bytes) {
  uint64_t floats = 0;
  auto head = ReadHead(fd, max_floats, &floats, check, max_head_bytes);
  if (!head.ok()) return head.status();
  auto response = DecodeResponseHead(*head);
  if (!response.ok()) return response.status();
  uint64_t expected = Elements(response->logits.shape) + Elements(response->features.shape);
  for (const Tensor& layer : response->layers) expected += Elements(layer.shape);
  if (expected != floats) {
    return absl::InvalidArgumentError("response values do not match the outputs' shapes");
  }
  if (absl::Status s = ReadTensorValues(fd, &response->logits, &floats, check); !s.ok()) return s;
  if (absl::Status s = ReadTensorValues(fd, &response->features, &floats, check); !s.ok()) return s;
  for (Tensor& layer : response->layers) {
    if (absl::Status s = ReadTensorValues(fd, &layer, &floats, check); !s.ok()) return s;
  }
  return response;
}

absl::Status WriteRequest(int fd, const JobRequest& request, const WaitCheck& check,
                          const std::vector<std::string>* unload, int64_t batch_cap) {
  return WriteFrame(fd, EncodeRequestHead(request, unload, batch_cap),
                    {&request.samples, &request.val_samples}, check);
}

absl::Status WriteResponse(int fd, const JobResponse& response, const WaitCheck& check) {
  std::vector<const Tensor*> tensors = {&response.logits, &response.features};
  for (const Tensor& layer : response.layers) tensors.push_back(&layer);
  return WriteFrame(fd, EncodeResponseHead(response), tensors, check);
}

}  // namespace modeldock::sandbox
