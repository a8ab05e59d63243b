#include "dock/kserve_runner.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "encoder/black_box.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

absl::StatusOr<std::unique_ptr<KServeRunner>> KServeRunner::Create(const DockOptions& o) {
  remote::RemoteCredentials credentials;
  // Endpoints not in the credentials file: the server-wide --remote-tls* setting.
  auto fallback = remote::ReadCredentialFiles(
      {o.remote_tls, o.remote_tls_ca_path, o.remote_tls_cert_path, o.remote_tls_key_path, ""},
      {"--remote-tls-ca", "--remote-tls-cert", "--remote-tls-key", ""});
  if (!fallback.ok()) return fallback.status();
  credentials.fallback = std::move(*fallback);
  if (!o.remote_credentials_path.empty()) {
    auto endpoints = remote::ReadCredentialsFile(o.remote_credentials_path);
    if (!endpoints.ok()) return endpoints.status();
    credentials.endpoints = std::move(*endpoints);
    for (const auto& [endpoint, security] : credentials.endpoints) {
      if (!security.bearer_token.empty() && !security.tls) {
        spdlog::warn("remote credentials: the bearer token for {} is sent without TLS", endpoint);
      }
    }
    spdlog::info("remote credentials: {} endpoint(s) from {}", credentials.endpoints.size(),
                 o.remote_credentials_path);
  }
  return std::unique_ptr<KServeRunner>(new KServeRunner(std::move(credentials)));
}

remote::KServeClient* KServeRunner::Client(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::unique_ptr<remote::KServeClient>& client = clients_[endpoint];
  if (client == nullptr) client = remote::KServeClient::Connect(endpoint, credentials_.For(endpoint));
  return client.get();
}

absl::StatusOr<RunOutputs> KServeRunner::Run(const ModelRecord& record, const Tensor& samples,
                                             const RunRequest& request) {
  // The remote server sees the model's declared input shape, as a worker would adapt it.
  const Tensor* input = &samples;
  Tensor adapted;
  if (samples.SampleShape() != record.spec.input_shape) {
    auto a = encoder::AdaptInputs(samples, record.spec.input_shape);
    if (!a.ok()) return a.status();
    adapted = *std::move(a);
    input = &adapted;
  }
  const remote::RemoteTarget target{record.spec.remote_endpoint, record.spec.remote_model,
                                    record.spec.remote_version};
  const absl::Time start = absl::Now();
  auto outputs = Client(target.endpoint)
                     ->Infer(target, *input, start + request.time_limit, remote::InferOptions(),
                             [&] { return request.cancelled && request.cancelled(); });
  if (!outputs.ok()) return outputs.status();
  if (outputs->shape[1] != OutputWidth(record)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "remote model '", record.spec.name, "' returned ", outputs->shape[1],
        " outputs per sample; it was admitted with ", OutputWidth(record)));
  }
  for (float v : outputs->values) {
    if (!std::isfinite(v)) {
      return absl::FailedPreconditionError(
          absl::StrCat("remote model '", record.spec.name, "' returned NaN/Inf"));
    }
  }
  RunOutputs result;
  result.logits = *std::move(outputs);
  result.millis = absl::ToDoubleMilliseconds(absl::Now() - start);
  return result;
}

}  // namespace modeldock::dock
