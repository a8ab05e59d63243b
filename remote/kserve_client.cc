#include "remote/kserve_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kserve/inference.grpc.pb.h"
#include "remote/credentials.h"
#include "remote/kserve_http_client.h"

namespace modeldock::remote {
namespace {

// Largest response accepted: a batch of outputs (64 samples x 100k classes x 4 bytes fits).
constexpr int kMaxResponseBytes = 64 << 20;

bool Transient(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

std::string Describe(const RemoteTarget& target) {
  return absl::StrCat("remote model '", target.model,
                      target.version.empty() ? "" : absl::StrCat("' version '", target.version),
                      "' at ", target.endpoint);
}

absl::Status FromGrpc(const grpc::Status& status, const RemoteTarget& target, const char* call) {
  const grpc::StatusCode code = status.error_code();
  if (code == grpc::StatusCode::UNAUTHENTICATED || code == grpc::StatusCode::PERMISSION_DENIED) {
    // The remote server refused this dock, not the dock's caller: passing its code on would
    // tell the caller that their own key is wrong.
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(target), ": ", call, " refused this dock's credentials (",
        code == grpc::StatusCode::UNAUTHENTICATED ? "UNAUTHENTICATED" : "PERMISSION_DENIED", ": ",
        status.error_message(), "); give the endpoint a token or certificate in the server's "
        "--remote-credentials file"));
  }
  return absl::Status(static_cast<absl::StatusCode>(code),
                      absl::StrCat(Describe(target), ": ", call, " failed: ",
                                   status.error_message().empty() ? "no message"
                                                                  : status.error_message()));
}

class GrpcKServeClient : public KServeClient {
 public:
  GrpcKServeClient(const std::string& endpoint, const ChannelSecurity& security)
      : bearer_token_file_(security.bearer_token_file), bearer_token_(security.bearer_token) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxResponseBytes);
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (security.tls) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = security.root_certs_pem;
      ssl.pem_cert_chain = security.cert_chain_pem;
      ssl.pem_private_key = security.private_key_pem;
      credentials = grpc::SslCredentials(ssl);
    }
    stub_ = inference::GRPCInferenceService::NewStub(
        grpc::CreateCustomChannel(endpoint, credentials, args));
  }

  absl::StatusOr<RemoteMetadata> Metadata(const RemoteTarget& target,
                                          absl::Time deadline) override {
    grpc::ClientContext context;
    Prepare(context, deadline);
    inference::ModelMetadataRequest request;
    request.set_name(target.model);
    request.set_version(target.version);
    inference::ModelMetadataResponse response;
    grpc::Status status = stub_->ModelMetadata(&context, request, &response);
    if (!status.ok()) return FromGrpc(status, target, "ModelMetadata");
    RemoteMetadata out;
    out.versions.assign(response.versions().begin(), response.versions().end());
    out.platform = response.platform();
    for (const auto& t : response.inputs()) {
      out.inputs.push_back({t.name(), t.datatype(), {t.shape().begin(), t.shape().end()}});
    }
    for (const auto& t : response.outputs()) {
      out.outputs.push_back({t.name(), t.datatype(), {t.shape().begin(), t.shape().end()}});
    }
    return out;
  }

  absl::StatusOr<Tensor> Infer(const RemoteTarget& target, const Tensor& samples,
                               absl::Time deadline, const InferOptions& options,
                               const std::function<bool()>& cancelled) override {
    if (!samples.IsConsistent() || samples.shape.size() < 2 || samples.Rows() == 0) {
      return absl::InvalidArgumentError("samples must be a non-empty consistent [N, ...] tensor");
    }
    const int64_t n = samples.Rows();
    const int64_t row = samples.RowSize();
    const int64_t batch = std::max(1, options.batch_size);
    Tensor out;
    for (int64_t start = 0; start < n; start += batch) {
      if (cancelled && cancelled()) return absl::CancelledError("remote inference cancelled");
      const int64_t b = std::min(batch, n - start);
      inference::ModelInferRequest request;
      request.set_model_name(target.model);
      request.set_model_version(target.version);
      auto* input = request.add_inputs();
      input->set_name("input");
      input->set_datatype("FP32");
      input->add_shape(b);
      for (size_t d = 1; d < samples.shape.size(); ++d) input->add_shape(samples.shape[d]);
      request.add_raw_input_contents(
          reinterpret_cast<const char*>(samples.values.data() + start * row),
          static_cast<size_t>(b * row) * sizeof(float));
      inference::ModelInferResponse response;
      absl::Duration wait = options.backoff;
      grpc::Status status;
      for (int attempt = 1;; ++attempt) {
        grpc::ClientContext context;
        Prepare(context, deadline);
        status = stub_->ModelInfer(&context, request, &response);
        if (status.ok() || !Transient(status.error_code()) || attempt >= options.attempts ||
            absl::Now() + wait >= deadline) {
          break;
        }
        std::this_thread::sleep_for(absl::ToChronoMilliseconds(wait));
        wait *= 2;
      }
      if (!status.ok()) return FromGrpc(status, target, "ModelInfer");
      absl::Status s = AppendOutput(target, response, b, n, &out);
      if (!s.ok()) return s;
    }
    return out;
  }

 private:
  void Prepare(grpc::ClientContext& context, absl::Time deadline) {
    context.set_deadline(absl::ToChronoTime(deadline));
    const std::string token = BearerToken();
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  }

  std::string BearerToken() {
    std::lock_guard<std::mutex> lock(token_mutex_);
    if (!bearer_token_file_.empty()) {
      std::optional<std::string> token = ReadBearerToken(bearer_token_file_);
      if (token && !token->empty()) bearer_token_ = std::move(*token);
    }
    return bearer_token_;
  }

  // The response's first output, FP32 [b, K] from raw bytes or fp32_contents, appended to `out`.
  static absl::Status AppendOutput(const RemoteTarget& target,
                                   const inference::ModelInferResponse& response, int64_t b,
                                   int64_t n, Tensor* out) {
    if (response.outputs_size() < 1) {
      return absl::FailedPreconditionError(
          absl::StrCat(Describe(target), " returned no output tensor"));
    }
    const auto& output = response.outputs(0);
    if (output.datatype() != "FP32") {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " returned a ", output.datatype(), " output; the dock needs FP32"));
    }
    if (output.shape_size() != 2 || output.shape(0) != b || output.shape(1) <= 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " returned shape [", absl::StrJoin(output.shape(), ", "), "] for ", b,
          " samples; expected [", b, ", K]"));
    }
    const int64_t width = output.shape(1);
    if (out->shape.empty()) {
      out->shape = {n, width};
      out->values.reserve(static_cast<size_t>(n * width));
    } else if (out->shape[1] != width) {
      return absl::FailedPreconditionError(absl::StrCat(
          Describe(target), " returned width ", width, " after ", out->shape[1]));
    }
    const size_t count = static_cast<size_t>(b * width);
    if (response.raw_output_contents_size() > 0) {
      const std::string& raw = response.raw_output_contents(0);
      if (raw.size() != count * sizeof(float)) {
        return absl::FailedPreconditionError(absl::StrCat(
            Describe(target), " returned ", raw.size(), " raw bytes for a [", b, ", ", width,
            "] FP32 output"));
      }
      const size_t at = out->values.size();
      out->values.resize(at + count);
      std::memcpy(out->values.data() + at, raw.data(), raw.size());
    } else {
      const auto& values = output.contents().fp32_contents();
      if (static_cast<size_t>(values.size()) != count) {
        return absl::FailedPreconditionError(absl::StrCat(
            Describe(target), " returned ", values.size(), " values for a [", b, ", ", width,
            "] output"));
      }
      out->values.insert(out->values.end(), values.begin(), values.end());
    }
    return absl::OkStatus();
  }

  const std::string bearer_token_file_;
  std::mutex token_mutex_;
  std::string bearer_token_;  // the last token read (guarded by token_mutex_)
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

}  // namespace

bool IsHttpEndpoint(const std::string& endpoint) {
  return absl::StartsWith(endpoint, "http://") || absl::StartsWith(endpoint, "https://");
}

std::unique_ptr<KServeClient> KServeClient::Connect(const std::string& endpoint,
                                                   const ChannelSecurity& security) {
  if (IsHttpEndpoint(endpoint)) return ConnectHttp(endpoint, security);
  return std::make_unique<GrpcKServeClient>(endpoint, security);
}

}  // namespace modeldock::remote
