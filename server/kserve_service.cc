#include "server/kserve_service.h"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/service.h"
#include "spdlog/spdlog.h"

namespace modeldock::server {
namespace {

constexpr char kInputName[] = "input";
constexpr char kOutputName[] = "output";
// ModelMetadata's platform: an uploaded model is a TorchScript file run by LibTorch in the
// dock's workers; a remote model runs on another KServe v2 server whose framework the dock does
// not know (it forwards the tensors), so it says that instead of naming a framework.
constexpr char kLocalPlatform[] = "pytorch_torchscript";
constexpr char kRemotePlatform[] = "remote_kserve_v2";

// The protocol names a model by name and optional version; the dock by NAME or NAME@VERSION.
std::string ModelRef(const std::string& name, const std::string& version) {
  return version.empty() ? name : absl::StrCat(name, "@", version);
}

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// The request's single input as a float Tensor (from its contents or raw_input_contents).
// FP32 values go as they are; UINT8 values v (pixels) become v / 255, as the dock's uint8
// samples do everywhere (RecommendHeader SAMPLE_ENCODING_UINT8).
grpc::Status ReadInput(const inference::ModelInferRequest& request, Tensor* out) {
  if (request.inputs_size() != 1) {
    return Invalid(absl::StrCat("modeldock models take exactly one input tensor ('", kInputName,
                                "'); got ", request.inputs_size()));
  }
  const auto& input = request.inputs(0);
  const bool uint8 = input.datatype() == "UINT8";
  if (input.datatype() != "FP32" && !uint8) {
    return Invalid(absl::StrCat("input '", input.name(), "' has datatype ", input.datatype(),
                                "; modeldock models take FP32 (or UINT8 pixels, scaled by 1/255)"));
  }
  if (input.shape_size() < 2) {
    return Invalid(absl::StrCat("input shape must be [N, ...]; got ",
                                absl::StrJoin(input.shape(), ", ")));
  }
  int64_t elements = 1;
  for (int64_t d : input.shape()) {
    if (d <= 0 || elements > (int64_t{1} << 31) / d) {
      return Invalid(absl::StrCat("input shape [", absl::StrJoin(input.shape(), ", "),
                                  "] is empty, negative or too large"));
    }
    elements *= d;
  }
  if (input.shape(0) > kMaxInferRows) {
    return Invalid(absl::StrCat("at most ", kMaxInferRows, " samples per ModelInfer call; got ",
                                input.shape(0)));
  }
  out->shape.assign(input.shape().begin(), input.shape().end());
  if (request.raw_input_contents_size() > 0) {
    if (request.raw_input_contents_size() != 1 || input.has_contents()) {
      return Invalid("give the input either as contents or as one raw_input_contents entry");
    }
    const std::string& raw = request.raw_input_contents(0);
    const size_t value_bytes = uint8 ? 1 : sizeof(float);
    if (raw.size() != static_cast<size_t>(elements) * value_bytes) {
      return Invalid(absl::StrCat("raw_input_contents holds ", raw.size(), " bytes; shape [",
                                  absl::StrJoin(input.shape(), ", "), "] ", input.datatype(),
                                  " needs ", elements * static_cast<int64_t>(value_bytes)));
    }
    out->values.resize(static_cast<size_t>(elements));
    if (uint8) {
      for (size_t i = 0; i < raw.size(); ++i) {
        out->values[i] = static_cast<unsigned char>(raw[i]) / 255.0f;
      }
    } else {
      std::memcpy(out->values.data(), raw.data(), raw.size());
    }
  } else if (uint8) {
    const auto& values = input.contents().uint_contents();
    if (values.size() != elements) {
      return Invalid(absl::StrCat("uint_contents holds ", values.size(), " values; shape [",
                                  absl::StrJoin(input.shape(), ", "), "] needs ", elements));
    }
    out->values.resize(static_cast<size_t>(elements));
    for (int64_t i = 0; i < elements; ++i) {
      if (values[i] > 255) return Invalid("UINT8 values must be in 0..255");
      out->values[i] = static_cast<float>(values[i]) / 255.0f;
    }
  } else {
    const auto& values = input.contents().fp32_contents();
    if (values.size() != elements) {
      return Invalid(absl::StrCat("fp32_contents holds ", values.size(), " values; shape [",
                                  absl::StrJoin(input.shape(), ", "), "] needs ", elements));
    }
    out->values.assign(values.begin(), values.end());
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status KServeServiceImpl::ServerLive(grpc::ServerContext* /*context*/,
                                           const inference::ServerLiveRequest* /*request*/,
                                           inference::ServerLiveResponse* response) {
  response->set_live(true);
  return grpc::Status::OK;
}

grpc::Status KServeServiceImpl::ServerReady(grpc::ServerContext* /*context*/,
                                            const inference::ServerReadyRequest* /*request*/,
                                            inference::ServerReadyResponse* response) {
  response->set_ready(ready_);
  return grpc::Status::OK;
}

grpc::Status KServeServiceImpl::ModelReady(grpc::ServerContext* context,
                                           const inference::ModelReadyRequest* request,
                                           inference::ModelReadyResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  auto record = dock_->GetModel(ModelRef(request->name(), request->version()));
  if (!record.ok() && !absl::IsNotFound(record.status())) return ToGrpcStatus(record.status());
  response->set_ready(record.ok() && record->state == dock::ModelState::kReady);
  return grpc::Status::OK;
}

grpc::Status KServeServiceImpl::ServerMetadata(grpc::ServerContext* /*context*/,
                                               const inference::ServerMetadataRequest* /*request*/,
                                               inference::ServerMetadataResponse* response) {
  response->set_name("modeldock");
  response->set_version(MODELDOCK_VERSION);
  return grpc::Status::OK;
}

grpc::Status KServeServiceImpl::ModelMetadata(grpc::ServerContext* context,
                                              const inference::ModelMetadataRequest* request,
                                              inference::ModelMetadataResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  auto record = dock_->GetModel(ModelRef(request->name(), request->version()));
  if (!record.ok()) return ToGrpcStatus(record.status());
  response->set_name(record->spec.name);
  response->add_versions(record->spec.version);
  response->set_platform(dock::IsRemote(record->spec) ? kRemotePlatform : kLocalPlatform);
  auto* input = response->add_inputs();
  input->set_name(kInputName);
  input->set_datatype("FP32");
  input->add_shape(-1);
  for (int64_t d : record->spec.input_shape) input->add_shape(d);
  auto* output = response->add_outputs();
  output->set_name(kOutputName);
  output->set_datatype("FP32");
  output->add_shape(-1);
  output->add_shape(record->spec.kind == dock::ModelKind::kFeatureExtractor
                        ? record->feature_dim
                        : static_cast<int64_t>(record->spec.class_labels.size()));
  return grpc::Status::OK;
}

grpc::Status KServeServiceImpl::ModelInfer(grpc::ServerContext* context,
                                           const inference::ModelInferRequest* request,
                                           inference::ModelInferResponse* response) {
  CallScope call(*authorizer_, context);
  if (!call.ok()) return call.status();
  for (const auto& wanted : request->outputs()) {
    if (wanted.name() != kOutputName) {
      return Invalid(absl::StrCat("modeldock models have one output, '", kOutputName,
                                  "'; asked for '", wanted.name(), "'"));
    }
  }
  Tensor samples;
  if (grpc::Status s = ReadInput(*request, &samples); !s.ok()) return s;
  auto result = dock_->Infer(ModelRef(request->model_name(), request->model_version()), samples,
                             [context] { return context->IsCancelled(); });
  if (!result.ok()) return ToGrpcStatus(result.status());
  const auto& [record, outputs] = *result;
  response->set_model_name(record.spec.name);
  response->set_model_version(record.spec.version);
  response->set_id(request->id());
  auto* output = response->add_outputs();
  output->set_name(kOutputName);
  output->set_datatype("FP32");
  for (int64_t d : outputs.shape) output->add_shape(d);
  // Answered in the form the request used (raw bytes are what high-throughput clients send).
  if (request->raw_input_contents_size() > 0) {
    response->add_raw_output_contents(reinterpret_cast<const char*>(outputs.values.data()),
                                      outputs.values.size() * sizeof(float));
  } else {
    output->mutable_contents()->mutable_fp32_contents()->Add(outputs.values.begin(),
                                                             outputs.values.end());
  }
  return grpc::Status::OK;
}

}  // namespace modeldock::server
