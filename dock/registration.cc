// Registration: an upload streamed to a temp file, checked (size, SHA-256, admission in a
// worker) and only then adopted into the blob store and inserted PENDING; a remote model admitted
// through its KServe v2 server. Versions of one name belong to the key that registered it.
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/audio.h"
#include "common/sha256.h"
#include "dock/dock_impl.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace fs = std::filesystem;

namespace {

// Streams the upload to a temp file, hashing as it goes.
class UploadImpl : public Upload {
 public:
  UploadImpl(ModelSpec spec, int64_t declared_size, std::string sha256, std::string temp_path)
      : spec_(std::move(spec)),
        declared_size_(declared_size),
        expected_sha256_(std::move(sha256)),
        temp_path_(std::move(temp_path)),
        out_(temp_path_, std::ios::binary | std::ios::trunc) {}

  ~UploadImpl() override {
    out_.close();
    // Nothing of a failed upload stays behind (an adopted one was moved away already).
    std::error_code ec;
    fs::remove(temp_path_, ec);
  }

  absl::Status Write(std::string_view bytes) override {
    if (written_ + static_cast<int64_t>(bytes.size()) > declared_size_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "upload is larger than the declared size_bytes ", declared_size_, " (got at least ",
          written_ + static_cast<int64_t>(bytes.size()), " bytes)"));
    }
    out_.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out_) return absl::ResourceExhaustedError("cannot write the upload to disk (disk full?)");
    hash_.Update(bytes);
    written_ += static_cast<int64_t>(bytes.size());
    return absl::OkStatus();
  }

  ModelSpec spec_;
  std::string owner_key_id_;
  int64_t declared_size_;
  std::string expected_sha256_;
  std::string temp_path_;
  std::ofstream out_;
  Sha256 hash_;
  int64_t written_ = 0;
};

// A registration the registry refused for its name or version (checked again under its lock),
// counted as rejected; other failures (disk, store) are not the registration's fault.
bool IsNameRefusal(const absl::Status& status) {
  return absl::IsAlreadyExists(status) || absl::IsPermissionDenied(status) ||
         absl::IsInvalidArgument(status);
}

// The admission job of an uploaded file at `path` (its limits are the runner's).
sandbox::JobRequest AdmissionJob(const ModelSpec& spec, const std::string& path) {
  sandbox::JobRequest admission;
  admission.kind = sandbox::JobKind::kAdmit;
  admission.model_path = path;
  admission.input_shape = spec.input_shape;
  if (spec.task == TaskKind::kTextClassification) {
    admission.input_kind = sandbox::WireInputKind::kText;
  }
  admission.num_classes = static_cast<int64_t>(spec.class_labels.size());  // 0: extractor
  return admission;
}

// The PENDING row of an admitted upload.
ModelRecord AdmittedRecord(const ModelSpec& spec, const std::string& sha256, int64_t size_bytes,
                           const sandbox::AdmitResult& report, const std::string& owner_key_id) {
  ModelRecord record;
  record.id = NewModelId();
  record.spec = spec;
  record.state = ModelState::kPending;
  record.state_reason = "admitted; waiting to be probed";
  record.sha256 = sha256;
  record.size_bytes = size_bytes;
  // A feature extractor's forward output is its features (has_embed stays false: no separate
  // embed is run); feature_dim is their width.
  record.has_embed = spec.kind == ModelKind::kClassifier && report.has_embed;
  record.feature_dim = report.feature_dim;
  for (size_t l = 0; l < report.layer_names.size() && l < report.layer_dims.size(); ++l) {
    record.layers.push_back({report.layer_names[l], report.layer_dims[l]});
  }
  record.created_unix_ms = NowUnixMs();
  record.revision = 1;
  record.owner_key_id = owner_key_id;
  return record;
}

}  // namespace

absl::Status ValidateSpec(const ModelSpec& spec) {
  if (spec.name.empty() || spec.name.size() > 128) {
    return absl::InvalidArgumentError("model name must have 1 to 128 characters");
  }
  if (!std::isalnum(static_cast<unsigned char>(spec.name[0]))) {
    return absl::InvalidArgumentError(
        absl::StrCat("model name '", spec.name, "' must start with a letter or digit"));
  }
  for (char c : spec.name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "model name '", spec.name, "' may contain only letters, digits, '.', '_' and '-'"));
    }
  }
  const std::string shape = ShapeToString(spec.input_shape);
  for (int64_t d : spec.input_shape) {
    if (d <= 0) return absl::InvalidArgumentError(absl::StrCat("input shape ", shape, " has a non-positive dimension"));
  }
  if (spec.task == TaskKind::kImageClassification) {
    if (spec.input_shape.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image models declare input_shape [C, H, W] (e.g. 1,28,28); got '", shape, "'"));
    }
    if (spec.input_shape[0] != 1 && spec.input_shape[0] != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("image models take 1 (grey) or 3 (RGB) channels; got ", spec.input_shape[0]));
    }
    if (spec.input_shape[1] > 1024 || spec.input_shape[2] > 1024) {
      return absl::InvalidArgumentError(absl::StrCat("input shape ", shape, " exceeds 1024x1024"));
    }
  } else if (spec.task == TaskKind::kAudioClassification) {
    if (spec.input_shape.size() != 1 || spec.input_shape[0] < kAudioRate / 10 ||
        spec.input_shape[0] > kMaxAudioSamples) {
      return absl::InvalidArgumentError(absl::StrCat(
          "audio models declare input_shape [T]: T samples of 16 kHz mono audio, 1600 (0.1 s) "
          "to ", kMaxAudioSamples, " (30 s), e.g. 16000 for one second; got '", shape, "'"));
    }
  } else if (spec.task == TaskKind::kTextClassification) {
    if (!spec.input_shape.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "text models take strings and declare no input_shape; got '", shape, "'"));
    }
  } else if (spec.input_shape.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tabular models declare input_shape [F] (number of features); got '", shape, "'"));
  }
  if (spec.kind == ModelKind::kFeatureExtractor) {
    if (!spec.class_labels.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a feature extractor declares no class labels (forward returns features [N, D]); got ",
          spec.class_labels.size(), " (register it as a classifier if forward returns logits)"));
    }
  } else if (spec.class_labels.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a classifier declares at least 2 class labels (one per output logit); got ",
        spec.class_labels.size(), " (a headless model that returns features is registered as a "
        "feature extractor)"));
  }
  for (const std::string& label : spec.class_labels) {
    if (label.empty()) return absl::InvalidArgumentError("class labels must not be empty");
  }
  if (spec.description.size() > 8192) return absl::InvalidArgumentError("description exceeds 8192 bytes");
  if (spec.tags.size() > 64) return absl::InvalidArgumentError("at most 64 tags");
  for (const std::string& tag : spec.tags) {
    if (tag.empty() || tag.size() > 64) return absl::InvalidArgumentError("tags must have 1 to 64 characters");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Upload>> DockImpl::BeginRegistration(
    const ModelSpec& spec, int64_t size_bytes, const std::string& sha256,
    const std::string& owner_key_id) {
  if (absl::Status s = ValidateSpec(spec); !s.ok()) return s;
  if (size_bytes <= 0) return absl::InvalidArgumentError("size_bytes must be > 0");
  if (size_bytes > options_.max_model_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "model file is ", size_bytes, " bytes; this dock accepts at most ",
        options_.max_model_bytes, " bytes (server flag --max-model-mb)"));
  }
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError("sha256 must be 64 lower-case hex digits");
  }
  if (IsRemote(spec)) {
    return absl::InvalidArgumentError("a remote model is registered with RegisterRemote, not uploaded");
  }
  if (absl::Status s = registry_->CheckNewVersion(spec, owner_key_id); !s.ok()) return s;
  auto upload = std::make_unique<UploadImpl>(spec, size_bytes, sha256, blobs_->NewTempPath());
  upload->owner_key_id_ = owner_key_id;
  return std::unique_ptr<Upload>(std::move(upload));
}

absl::StatusOr<RegisterResult> DockImpl::FinishRegistration(std::unique_ptr<Upload> upload_base) {
  auto* upload = static_cast<UploadImpl*>(upload_base.get());
  upload->out_.close();
  if (upload->written_ != upload->declared_size_) {
    return absl::InvalidArgumentError(absl::StrCat("upload truncated: got ", upload->written_,
                                                   " of ", upload->declared_size_, " bytes"));
  }
  std::string actual = upload->hash_.HexDigest();
  if (actual != upload->expected_sha256_) {
    return absl::DataLossError(absl::StrCat("uploaded bytes have SHA-256 ", actual,
                                            " but the header declared ", upload->expected_sha256_,
                                            "; the file was corrupted or changed in transit"));
  }
  const ModelSpec& spec = upload->spec_;
  sandbox::JobRequest admission = AdmissionJob(spec, upload->temp_path_);
  admission.max_model_bytes = options_.max_model_bytes;
  auto report = sandbox_->Admit(spec.name, std::move(admission));
  if (!report.ok()) {
    ++registrations_rejected_;
    spdlog::info("registration of '{}' rejected: {}", spec.name, report.status().ToString());
    return absl::Status(report.status().code(),
                        absl::StrCat("model '", spec.name, "' failed admission: ",
                                     report.status().message()));
  }

  const ModelRecord record =
      AdmittedRecord(spec, actual, upload->written_, *report, upload->owner_key_id_);
  RegisterResult result;
  // Blob first, row second; the name checked again under the registry lock: another upload of
  // this name may have finished since BeginRegistration checked (two keys could otherwise both
  // own a new name).
  // On success the temp file is the blob's now (moved, or removed as a duplicate); otherwise the
  // upload's destructor removes it.
  if (absl::Status s = registry_->Add(record, upload->temp_path_, &result.deduplicated);
      !s.ok()) {
    if (IsNameRefusal(s)) ++registrations_rejected_;
    return s;
  }
  // Adopt replaced a bad stored copy with these bytes: its other models may run again.
  if (result.deduplicated) RequeueRepaired(actual, "the same bytes were uploaded again");
  spdlog::info("registered model '{}' as {} ({} bytes, sha256 {}{}, embed: {})", spec.name,
               record.id, record.size_bytes, actual.substr(0, 12),
               result.deduplicated ? ", same bytes already stored" : "",
               record.has_embed ? absl::StrCat(record.feature_dim, "-d") : "no");
  result.model = record;
  ++registrations_admitted_;
  Audit(record.owner_key_id, "register", record.id,
        absl::StrCat(DisplayName(record), " (", ModelKindName(spec.kind), ", ", record.size_bytes,
                     " bytes)"));
  probes_->Enqueue(record.id);
  return result;
}

absl::StatusOr<RegisterResult> DockImpl::RegisterRemote(const ModelSpec& spec,
                                                        const std::string& owner_key_id) {
  if (!IsRemote(spec) || spec.remote_model.empty()) {
    return absl::InvalidArgumentError(
        "a remote model needs its endpoint (HOST:PORT or http[s]://HOST:PORT) and its model "
        "name there");
  }
  if (absl::Status s = ValidateSpec(spec); !s.ok()) return s;
  if (spec.task == TaskKind::kTextClassification) {
    return absl::UnimplementedError(
        "remote text models are not supported yet: the dock calls remote models with one FP32 "
        "input (register the TorchScript file instead)");
  }
  if (absl::Status s = registry_->CheckNewVersion(spec, owner_key_id); !s.ok()) return s;
  const remote::RemoteTarget target{spec.remote_endpoint, spec.remote_model, spec.remote_version};
  const absl::Time deadline = absl::Now() + options_.sandbox.admission_time_limit;
  auto rejected = [&](const absl::Status& status) {
    ++registrations_rejected_;
    spdlog::info("remote registration of '{}' rejected: {}", spec.name, status.ToString());
    return absl::Status(status.code(), absl::StrCat("model '", spec.name, "' failed admission: ",
                                                    status.message()));
  };
  // Admission, as for an upload: what the server says the model takes, then a seeded test batch.
  remote::KServeClient* client = remote_->Client(spec.remote_endpoint);
  auto metadata = client->Metadata(target, deadline);
  if (!metadata.ok()) return rejected(metadata.status());
  if (metadata->inputs.size() != 1 || metadata->inputs[0].datatype != "FP32") {
    return rejected(absl::FailedPreconditionError(absl::StrCat(
        "it declares ", metadata->inputs.size(), " input(s)",
        metadata->inputs.empty() ? "" : absl::StrCat(" (first ", metadata->inputs[0].datatype, ")"),
        "; the dock calls models with one FP32 input")));
  }
  const std::vector<int64_t>& declared = metadata->inputs[0].shape;
  if (declared.size() == spec.input_shape.size() + 1) {
    for (size_t d = 0; d < spec.input_shape.size(); ++d) {
      if (declared[d + 1] != -1 && declared[d + 1] != spec.input_shape[d]) {
        return rejected(absl::FailedPreconditionError(absl::StrCat(
            "its input is [", absl::StrJoin(declared, ", "), "]; registered as ",
            ShapeToString(spec.input_shape), " per sample")));
      }
    }
  }
  Tensor batch({4}, {});
  batch.shape.insert(batch.shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  batch.values.resize(batch.NumElements());
  std::mt19937 rng(42);
  for (float& v : batch.values) v = static_cast<float>(rng() >> 8) * (1.0f / 16777216.0f);
  auto outputs = client->Infer(target, batch, deadline, remote::InferOptions(), nullptr);
  if (!outputs.ok()) return rejected(outputs.status());
  const int64_t width = outputs->shape[1];
  const bool extractor = spec.kind == ModelKind::kFeatureExtractor;
  if (!extractor && width != static_cast<int64_t>(spec.class_labels.size())) {
    return rejected(absl::FailedPreconditionError(absl::StrCat(
        "it returned ", width, " outputs per sample but ", spec.class_labels.size(),
        " labels are declared")));
  }
  if (width > (extractor ? options_.sandbox.max_feature_dim : options_.sandbox.max_classes)) {
    return rejected(absl::FailedPreconditionError(
        absl::StrCat("it returned ", width, " outputs per sample, over the dock's limit")));
  }
  for (float v : outputs->values) {
    if (!std::isfinite(v)) {
      return rejected(absl::FailedPreconditionError("it returned NaN/Inf on the test batch"));
    }
  }

  ModelRecord record;
  record.id = NewModelId();
  record.spec = spec;
  record.state = ModelState::kPending;
  record.state_reason = "admitted; waiting to be probed";
  // No file: the digest names the remote model (caches are keyed by it).
  record.sha256 = Sha256::Of(absl::StrCat("remote|", spec.remote_endpoint, "|", spec.remote_model,
                                          "|", spec.remote_version));
  record.size_bytes = 0;
  record.has_embed = false;
  record.feature_dim = extractor ? width : 0;
  record.created_unix_ms = NowUnixMs();
  record.revision = 1;
  record.owner_key_id = owner_key_id;
  // Checked again under the registry lock, as for uploads: admission took time.
  bool deduplicated = false;
  if (absl::Status s = registry_->Add(record, /*temp_path=*/"", &deduplicated); !s.ok()) {
    if (IsNameRefusal(s)) ++registrations_rejected_;
    return s;
  }
  spdlog::info("registered remote model '{}' as {} ({} model '{}')", spec.name, record.id,
               spec.remote_endpoint, spec.remote_model);
  ++registrations_admitted_;
  Audit(record.owner_key_id, "register", record.id,
        absl::StrCat(DisplayName(record), " (remote ", spec.remote_endpoint, " model ",
                     spec.remote_model, ")"));
  probes_->Enqueue(record.id);
  RegisterResult result;
  result.model = record;
  return result;
}

}  // namespace modeldock::dock
