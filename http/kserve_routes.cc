// The KServe v2 (Open Inference Protocol) HTTP/REST endpoints: each one translates its JSON
// into the matching inference.GRPCInferenceService call on the in-process channel
// (server/kserve_service.cc serves it), so both protocols run the same code behind them.
#include <grpcpp/grpcpp.h>

#include <exception>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "http/routes.h"
#include "kserve/inference.grpc.pb.h"

namespace modeldock::http {
namespace {

constexpr char kModelPath[] = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";

absl::Status FromGrpc(const grpc::Status& status) { return client::FromGrpcStatus(status); }

std::unique_ptr<inference::GRPCInferenceService::Stub> Stub(const Call& call) {
  return inference::GRPCInferenceService::NewStub(call.channel);
}

absl::Status Live(Call& call, const httplib::Request&, httplib::Response& response) {
  grpc::ClientContext context;
  PrepareContext(call, &context);
  inference::ServerLiveResponse live;
  if (auto s = Stub(call)->ServerLive(&context, {}, &live); !s.ok()) return FromGrpc(s);
  SendJson(response, live.live() ? 200 : 503, json{{"live", live.live()}});
  return absl::OkStatus();
}

absl::Status Ready(Call& call, const httplib::Request&, httplib::Response& response) {
  grpc::ClientContext context;
  PrepareContext(call, &context);
  inference::ServerReadyResponse ready;
  if (auto s = Stub(call)->ServerReady(&context, {}, &ready); !s.ok()) return FromGrpc(s);
  SendJson(response, ready.ready() ? 200 : 503, json{{"ready", ready.ready()}});
  return absl::OkStatus();
}

absl::Status ServerMetadata(Call& call, const httplib::Request&, httplib::Response& response) {
  grpc::ClientContext context;
  PrepareContext(call, &context);
  inference::ServerMetadataResponse meta;
  if (auto s = Stub(call)->ServerMetadata(&context, {}, &meta); !s.ok()) return FromGrpc(s);
  SendJson(response, 200,
           json{{"name", meta.name()},
                {"version", meta.version()},
                {"extensions", std::vector<std::string>(meta.extensions().begin(),
                                                        meta.extensions().end())}});
  return absl::OkStatus();
}

json TensorMetadata(const inference::ModelMetadataResponse::TensorMetadata& tensor) {
  return json{{"name", tensor.name()},
              {"datatype", tensor.datatype()},
              {"shape", std::vector<int64_t>(tensor.shape().begin(), tensor.shape().end())}};
}

absl::Status ModelMetadata(Call& call, const httplib::Request& request,
                           httplib::Response& response) {
  grpc::ClientContext context;
  PrepareContext(call, &context);
  inference::ModelMetadataRequest ask;
  ask.set_name(request.matches[1].str());
  ask.set_version(request.matches[2].str());
  inference::ModelMetadataResponse meta;
  if (auto s = Stub(call)->ModelMetadata(&context, ask, &meta); !s.ok()) return FromGrpc(s);
  json inputs = json::array(), outputs = json::array();
  for (const auto& input : meta.inputs()) inputs.push_back(TensorMetadata(input));
  for (const auto& output : meta.outputs()) outputs.push_back(TensorMetadata(output));
  SendJson(response, 200,
           json{{"name", meta.name()},
                {"versions", std::vector<std::string>(meta.versions().begin(),
                                                      meta.versions().end())},
                {"platform", meta.platform()},
                {"inputs", inputs},
                {"outputs", outputs}});
  return absl::OkStatus();
}

// 200 when the model is READY, 400 otherwise (as Triton answers), with {"name", "ready"}.
absl::Status ModelReady(Call& call, const httplib::Request& request,
                        httplib::Response& response) {
  grpc::ClientContext context;
  PrepareContext(call, &context);
  inference::ModelReadyRequest ask;
  ask.set_name(request.matches[1].str());
  ask.set_version(request.matches[2].str());
  inference::ModelReadyResponse ready;
  if (auto s = Stub(call)->ModelReady(&context, ask, &ready); !s.ok()) return FromGrpc(s);
  SendJson(response, ready.ready() ? 200 : 400,
           json{{"name", ask.name()}, {"ready", ready.ready()}});
  return absl::OkStatus();
}

// Appends the numbers of `data` (flat or nested row-major arrays) to `out`.
absl::Status Flatten(const json& data, std::vector<double>* out) {
  if (data.is_number()) {
    out->push_back(data.get<double>());
    return absl::OkStatus();
  }
  if (!data.is_array()) return absl::InvalidArgumentError("tensor data must be numbers");
  for (const json& item : data) {
    if (absl::Status s = Flatten(item, out); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// {"id", "inputs": [{"name", "shape", "datatype", "data"}], "outputs": [{"name"}]} -> proto.
absl::Status InferRequestOf(const json& body, inference::ModelInferRequest* out) {
  if (!body.is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
  out->set_id(body.value("id", ""));
  if (!body.contains("inputs") || !body["inputs"].is_array()) {
    return absl::InvalidArgumentError("'inputs' (an array of tensors) is required");
  }
  for (const json& input : body["inputs"]) {
    auto* tensor = out->add_inputs();
    tensor->set_name(input.value("name", ""));
    tensor->set_datatype(input.value("datatype", ""));
    for (int64_t d : input.value("shape", std::vector<int64_t>{})) tensor->add_shape(d);
    std::vector<double> values;
    if (absl::Status s = Flatten(input.value("data", json::array()), &values); !s.ok()) return s;
    if (tensor->datatype() == "UINT8") {
      for (double v : values) {
        if (!(v >= 0 && v <= 255) || v != static_cast<uint32_t>(v)) {
          return absl::InvalidArgumentError("UINT8 data must be integers in 0..255");
        }
        tensor->mutable_contents()->add_uint_contents(static_cast<uint32_t>(v));
      }
    } else {
      for (double v : values) tensor->mutable_contents()->add_fp32_contents(static_cast<float>(v));
    }
  }
  if (body.contains("outputs")) {
    for (const json& output : body["outputs"]) out->add_outputs()->set_name(output.value("name", ""));
  }
  return absl::OkStatus();
}

absl::Status Infer(Call& call, const httplib::Request& request, httplib::Response& response) {
  if (request.has_header("Inference-Header-Content-Length")) {
    return absl::UnimplementedError("the binary tensor data extension is not supported; send JSON");
  }
  inference::ModelInferRequest ask;
  try {
    if (absl::Status s = InferRequestOf(json::parse(request.body), &ask); !s.ok()) return s;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the body is not a valid request: ", e.what()));
  }
  ask.set_model_name(request.matches[1].str());
  ask.set_model_version(request.matches[2].str());
  grpc::ClientContext context;
  PrepareContext(call, &context);
  inference::ModelInferResponse answer;
  if (auto s = Stub(call)->ModelInfer(&context, ask, &answer); !s.ok()) return FromGrpc(s);
  json outputs = json::array();
  for (const auto& output : answer.outputs()) {
    outputs.push_back(json{
        {"name", output.name()},
        {"datatype", output.datatype()},
        {"shape", std::vector<int64_t>(output.shape().begin(), output.shape().end())},
        {"data", std::vector<float>(output.contents().fp32_contents().begin(),
                                    output.contents().fp32_contents().end())}});
  }
  SendJson(response, 200,
           json{{"model_name", answer.model_name()},
                {"model_version", answer.model_version()},
                {"id", answer.id()},
                {"outputs", outputs}});
  return absl::OkStatus();
}

}  // namespace

void AddKServeRoutes(httplib::Server& server, std::shared_ptr<const RouteContext> context) {
  const std::string model = kModelPath;
  server.Get("/v2/health/live", Route(context, Live, ErrorStyle::kKServe));
  server.Get("/v2/health/ready", Route(context, Ready, ErrorStyle::kKServe));
  server.Get("/v2", Route(context, ServerMetadata, ErrorStyle::kKServe));
  server.Get(model, Route(context, ModelMetadata, ErrorStyle::kKServe));
  server.Get(model + "/ready", Route(context, ModelReady, ErrorStyle::kKServe));
  server.Post(model + "/infer", Route(context, Infer, ErrorStyle::kKServe));
}

}  // namespace modeldock::http
