#include "client/client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/sha256.h"
#include "common/text_frames.h"

namespace modeldock::client {
namespace {

// Largest response accepted (a ListModels page of 1000 models with many labels is large).
constexpr int kMaxReceiveMessageBytes = 64 << 20;

// True if every value is k/255 for an integer k in 0..255, i.e. survives a uint8 round trip.
bool FitsUint8(const std::vector<float>& values) {
  for (float v : values) {
    const float scaled = v * 255.0f;
    if (!(scaled >= 0.0f && scaled <= 255.0f)) return false;
    if (std::nearbyint(scaled) / 255.0f != v) return false;
  }
  return true;
}

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share their numbering (both follow google.rpc.Code).
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

Client::Client(const ClientOptions& options) : options_(options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options_.tls_ca.empty() || !options_.tls_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    for (auto [path, out] : {std::pair{&options_.tls_ca, &ssl.pem_root_certs},
                             std::pair{&options_.tls_cert, &ssl.pem_cert_chain},
                             std::pair{&options_.tls_key, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      std::optional<std::string> pem = ReadWholeFile(*path);
      if (!pem) {
        setup_error_ = absl::FailedPreconditionError(absl::StrCat("cannot read TLS file ", *path));
        continue;
      }
      *out = std::move(*pem);
    }
    if ((options_.tls_cert.empty()) != (options_.tls_key.empty())) {
      setup_error_ = absl::InvalidArgumentError("--tls-cert and --tls-key go together");
    }
    credentials = grpc::SslCredentials(ssl);
  }
  channel_ = grpc::CreateCustomChannel(options_.address, credentials, args);
  stub_ = v1::ModelDockService::NewStub(channel_);
  health_stub_ = grpc::health::v1::Health::NewStub(channel_);
}

Client::Client(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options)
    : options_(options), channel_(std::move(channel)) {
  stub_ = v1::ModelDockService::NewStub(channel_);
  health_stub_ = grpc::health::v1::Health::NewStub(channel_);
}

void Client::SetDeadline(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options_.timeout));
  if (!options_.api_key.empty()) {
    context->AddMetadata("authorization", "Bearer " + options_.api_key);
  }
  if (!options_.request_id.empty()) context->AddMetadata("x-request-id", options_.request_id);
}

absl::StatusOr<v1::CreateApiKeyResponse> Client::CreateApiKey(v1::ApiKeyRole role,
                                                              const std::string& name) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::CreateApiKeyRequest request;
  request.set_role(role);
  request.set_name(name);
  v1::CreateApiKeyResponse response;
  grpc::Status status = stub_->CreateApiKey(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ListApiKeysResponse> Client::ListApiKeys() {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListApiKeysResponse response;
  grpc::Status status = stub_->ListApiKeys(&context, v1::ListApiKeysRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::Status Client::RevokeApiKey(const std::string& id) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::RevokeApiKeyRequest request;
  request.set_id(id);
  v1::RevokeApiKeyResponse response;
  return FromGrpcStatus(stub_->RevokeApiKey(&context, request, &response));
}

absl::StatusOr<v1::Model> Client::RegisterRemote(const v1::ModelSpec& spec) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::RegisterRemoteModelRequest request;
  *request.mutable_spec() = spec;
  v1::RegisterRemoteModelResponse response;
  grpc::Status status = stub_->RegisterRemoteModel(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.model();
}

absl::StatusOr<v1::RegisterModelResponse> Client::Register(const std::string& path,
                                                           const v1::ModelSpec& spec,
                                                           const ProgressCallback& progress) {
  if (!setup_error_.ok()) return setup_error_;
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open model file ", path));
  const int64_t size = static_cast<int64_t>(file.tellg());
  file.seekg(0);
  auto sha256 = Sha256::OfFile(path);
  if (!sha256.ok()) return sha256.status();

  grpc::ClientContext context;
  SetDeadline(&context);
  v1::RegisterModelResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::RegisterModelRequest>> writer =
      stub_->RegisterModel(&context, &response);
  v1::RegisterModelRequest request;
  v1::RegisterModelHeader* header = request.mutable_header();
  *header->mutable_spec() = spec;
  header->set_size_bytes(size);
  header->set_sha256(*sha256);
  // A failed Write means the server already answered; Finish() returns its status.
  bool open = writer->Write(request);
  std::string buffer(kChunkBytes, '\0');
  int64_t sent = 0;
  while (open && sent < size) {
    file.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = file.gcount();
    if (got <= 0) break;  // the file shrank while uploading; the server reports the truncation
    request.set_chunk(buffer.data(), static_cast<size_t>(got));
    open = writer->Write(request);
    sent += got;
    if (open && progress) progress(sent, size);
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::Model> Client::Get(const std::string& model) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::GetModelRequest request;
  request.set_model(model);
  v1::GetModelResponse response;
  grpc::Status status = stub_->GetModel(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.model();
}

absl::StatusOr<v1::ListNearestModelsResponse> Client::Nearest(const std::string& model, int k) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListNearestModelsRequest request;
  request.set_model(model);
  request.set_k(k);
  v1::ListNearestModelsResponse response;
  grpc::Status status = stub_->ListNearestModels(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ListModelsResponse> Client::List(const v1::ListModelsRequest& request) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListModelsResponse response;
  grpc::Status status = stub_->ListModels(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<std::vector<std::string>> Client::Delete(const std::string& model,
                                                        bool all_versions) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::DeleteModelRequest request;
  request.set_model(model);
  request.set_all_versions(all_versions);
  v1::DeleteModelResponse response;
  grpc::Status status = stub_->DeleteModel(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  if (response.ids().empty()) return std::vector<std::string>{response.id()};
  return std::vector<std::string>(response.ids().begin(), response.ids().end());
}

absl::StatusOr<v1::Model> Client::Watch(const std::string& model,
                                        const WatchCallback& on_change) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::WatchModelRequest request;
  request.set_model(model);
  std::unique_ptr<grpc::ClientReader<v1::WatchModelResponse>> reader =
      stub_->WatchModel(&context, request);
  v1::WatchModelResponse message;
  v1::Model last;
  bool got_any = false;
  while (reader->Read(&message)) {
    last = message.model();
    got_any = true;
    if (on_change) on_change(last);
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  if (!got_any) return absl::InternalError("WatchModel ended without sending a state");
  return last;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Client::Health(
    const std::string& service) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health_stub_->Check(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.status();
}

// Fills a dataset header (shape, labels, encoding) from `dataset`; returns the sample bytes.
// Images read from 8-bit files go as one byte per value, a quarter of the float32 size.
absl::StatusOr<std::string> Client::EncodeDataset(const Dataset& dataset,
                                                  v1::RecommendHeader* header) {
  if (dataset.is_text()) return EncodeTextDataset(dataset, header);
  const Tensor& samples = dataset.samples;
  if (samples.shape.size() < 2 || !samples.IsConsistent()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset samples have shape ", ShapeToString(samples.shape), " and ",
                     samples.values.size(), " values; expected [N, ...sample shape]"));
  }
  header->clear_sample_shape();
  for (int64_t d : samples.SampleShape()) header->add_sample_shape(d);
  header->set_num_samples(samples.Rows());
  header->clear_labels();
  for (int32_t label : dataset.labels) header->add_labels(label);
  header->clear_class_names();
  for (const std::string& name : dataset.class_names) header->add_class_names(name);
  header->clear_inline_data();
  const bool tabular = header->task() == v1::TASK_KIND_TABULAR_CLASSIFICATION ||
                       header->task() == v1::TASK_KIND_AUDIO_CLASSIFICATION ||
                       (header->task() == v1::TASK_KIND_UNSPECIFIED && samples.shape.size() == 2);
  std::string data;
  if (!tabular && FitsUint8(samples.values)) {
    header->set_encoding(v1::SAMPLE_ENCODING_UINT8);
    data.resize(samples.values.size());
    for (size_t i = 0; i < samples.values.size(); ++i) {
      data[i] = static_cast<char>(static_cast<uint8_t>(std::nearbyint(samples.values[i] * 255)));
    }
  } else {
    header->set_encoding(v1::SAMPLE_ENCODING_FLOAT32);
    data.resize(samples.values.size() * sizeof(float));
    std::memcpy(data.data(), samples.values.data(), data.size());
  }
  // Small datasets go inline in the header.
  if (static_cast<int64_t>(data.size()) <= kChunkBytes) {
    header->set_inline_data(data);
    data.clear();
  }
  return data;
}

absl::StatusOr<std::string> Client::EncodeTextDataset(const Dataset& dataset,
                                                      v1::RecommendHeader* header) {
  header->clear_sample_shape();
  header->set_task(v1::TASK_KIND_TEXT_CLASSIFICATION);
  header->set_encoding(v1::SAMPLE_ENCODING_UTF8_TEXT);
  header->set_num_samples(static_cast<int64_t>(dataset.texts.size()));
  header->clear_labels();
  for (int32_t label : dataset.labels) header->add_labels(label);
  header->clear_class_names();
  for (const std::string& name : dataset.class_names) header->add_class_names(name);
  header->clear_inline_data();
  std::string data = EncodeTexts(dataset.texts);
  header->set_text_bytes(static_cast<int64_t>(data.size()));
  if (static_cast<int64_t>(data.size()) <= kChunkBytes) {
    header->set_inline_data(data);
    data.clear();
  }
  return data;
}

namespace {

// Writes `request` (a header) and then `data` in chunks on a client stream; returns the status.
template <typename Request>
grpc::Status WriteStream(grpc::ClientWriter<Request>* writer, Request& request,
                         const std::string& data) {
  bool open = writer->Write(request);
  for (size_t offset = 0; open && offset < data.size(); offset += kChunkBytes) {
    request.set_chunk(data.data() + offset, std::min<size_t>(kChunkBytes, data.size() - offset));
    open = writer->Write(request);
  }
  writer->WritesDone();
  return writer->Finish();
}

}  // namespace

absl::StatusOr<v1::RecommendResponse> Client::Recommend(const Dataset& dataset,
                                                        const v1::RecommendHeader& options) {
  if (!setup_error_.ok()) return setup_error_;
  v1::RecommendRequest request;
  *request.mutable_header() = options;
  auto data = EncodeDataset(dataset, request.mutable_header());
  if (!data.ok()) return data.status();
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::RecommendResponse response;
  auto writer = stub_->Recommend(&context, &response);
  grpc::Status status = WriteStream(writer.get(), request, *data);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<Client::TuneOutput> Client::Tune(
    const Dataset& dataset, const v1::TuneHeader& options,
    const std::function<void(const v1::TuneProgress&)>& on_progress) {
  if (!setup_error_.ok()) return setup_error_;
  v1::TuneRequest request;
  *request.mutable_header() = options;
  auto data = EncodeDataset(dataset, request.mutable_header()->mutable_dataset());
  if (!data.ok()) return data.status();
  grpc::ClientContext context;
  SetDeadline(&context);
  const double budget = options.budget_seconds() > 0 ? options.budget_seconds() : 120;
  const int k = options.top_k() > 0 ? options.top_k() : 3;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.timeout + absl::Seconds(2 * budget) +
                                                  absl::Seconds(30) * k));
  auto stream = stub_->Tune(&context);
  bool open = stream->Write(request);
  for (size_t offset = 0; open && offset < data->size(); offset += kChunkBytes) {
    request.set_chunk(data->data() + offset, std::min<size_t>(kChunkBytes, data->size() - offset));
    open = stream->Write(request);
  }
  stream->WritesDone();
  TuneOutput out;
  bool have_result = false;
  v1::TuneResponse response;
  while (stream->Read(&response)) {
    if (response.has_progress()) {
      if (on_progress) on_progress(response.progress());
    } else if (response.has_result()) {
      out.result = std::move(*response.mutable_result());
      have_result = true;
    } else {
      out.model.append(response.model_chunk());
    }
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  if (!have_result) return absl::InternalError("the server sent no tune result");
  if (static_cast<int64_t>(out.model.size()) != out.result.model_size_bytes() ||
      Sha256::Of(out.model) != out.result.model_sha256()) {
    return absl::DataLossError(absl::StrCat("the tuned model arrived damaged: ", out.model.size(),
                                            " of ", out.result.model_size_bytes(), " bytes"));
  }
  return out;
}

absl::StatusOr<v1::ReportOutcomeResponse> Client::ReportOutcome(
    const Dataset& dataset, v1::TaskKind task, const std::vector<v1::Outcome>& outcomes,
    v1::OutcomeSource source) {
  if (!setup_error_.ok()) return setup_error_;
  v1::ReportOutcomeRequest request;
  v1::ReportOutcomeHeader* header = request.mutable_header();
  header->mutable_dataset()->set_task(task);
  auto data = EncodeDataset(dataset, header->mutable_dataset());
  if (!data.ok()) return data.status();
  for (const v1::Outcome& o : outcomes) *header->add_outcomes() = o;
  header->set_source(source);
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ReportOutcomeResponse response;
  auto writer = stub_->ReportOutcome(&context, &response);
  grpc::Status status = WriteStream(writer.get(), request, *data);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::Model> Client::Update(const v1::UpdateModelRequest& request) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::UpdateModelResponse response;
  grpc::Status status = stub_->UpdateModel(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.model();
}

absl::StatusOr<v1::ListAuditLogResponse> Client::AuditLog(int limit) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListAuditLogRequest request;
  request.set_limit(limit);
  v1::ListAuditLogResponse response;
  grpc::Status status = stub_->ListAuditLog(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ListRecordsResponse> Client::ListRecords(const std::string& model, int limit) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListRecordsRequest request;
  request.set_model(model);
  request.set_limit(limit);
  v1::ListRecordsResponse response;
  grpc::Status status = stub_->ListRecords(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::TrainingJob> Client::TrainAlignment(bool wait) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::TrainAlignmentRequest request;
  request.set_wait(wait);
  v1::TrainAlignmentResponse response;
  grpc::Status status = stub_->TrainAlignment(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.job();
}

absl::StatusOr<v1::ScrubReport> Client::Scrub(bool wait) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ScrubRequest request;
  request.set_wait(wait);
  v1::ScrubResponse response;
  grpc::Status status = stub_->Scrub(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.report();
}

absl::StatusOr<v1::ListAlignmentsResponse> Client::ListAlignments() {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ListAlignmentsResponse response;
  grpc::Status status = stub_->ListAlignments(&context, v1::ListAlignmentsRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::Status Client::UseAlignment(int64_t version) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::UseAlignmentRequest request;
  request.set_version(version);
  v1::UseAlignmentResponse response;
  return FromGrpcStatus(stub_->UseAlignment(&context, request, &response));
}

}  // namespace modeldock::client
