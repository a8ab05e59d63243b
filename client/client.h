// A small C++ client for modeldock.v1 over one gRPC channel, used by the modeldock CLI, the
// end-to-end tests and the benchmarks. Every call has a deadline; errors come back as
// absl::Status with the gRPC status code carried over 1:1 (same names: NOT_FOUND, ...).
#ifndef MODELDOCK_CLIENT_CLIENT_H_
#define MODELDOCK_CLIENT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "modeldock/v1/modeldock.grpc.pb.h"

namespace modeldock::client {

// Size of the data messages in RegisterModel and Recommend streams (the server's maximum).
inline constexpr int64_t kChunkBytes = 1 << 20;

struct ClientOptions {
  std::string address = "127.0.0.1:50051";
  // Deadline of each call (for Watch: of the whole stream).
  absl::Duration timeout = absl::Seconds(120);
  // TLS: PEM file of the CA that signed the server's certificate (empty = plaintext), and for
  // mutual TLS the client's certificate chain and key.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // Sent as "authorization: Bearer <api_key>" on every call when not empty.
  std::string api_key;
  // Sent as "x-request-id" on every call when not empty: the server then logs the call and
  // names it in errors under this id (the HTTP front door passes its own request's id).
  std::string request_id;
};

class Client {
 public:
  // Called after each chunk is sent: bytes sent so far and the total.
  using ProgressCallback = std::function<void(int64_t sent, int64_t total)>;
  // Called for each state update of a watched model.
  using WatchCallback = std::function<void(const v1::Model& model)>;

  // Channels connect lazily, so creating a client never fails; an unreachable server shows up
  // as UNAVAILABLE on the first call. Unreadable TLS files are reported by the first call too
  // (FAILED_PRECONDITION naming the file).
  explicit Client(const ClientOptions& options);
  // Over an existing channel (e.g. a server's in-process channel); options.address and the
  // TLS files are not used.
  Client(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);

  // Uploads a TorchScript file (SHA-256 computed first, then 1 MiB chunks).
  absl::StatusOr<v1::RegisterModelResponse> Register(const std::string& path,
                                                     const v1::ModelSpec& spec,
                                                     const ProgressCallback& progress = nullptr);
  // A model that stays on a KServe v2 inference server (spec.remote set).
  absl::StatusOr<v1::Model> RegisterRemote(const v1::ModelSpec& spec);
  absl::StatusOr<v1::Model> Get(const std::string& model);
  // A READY model's nearest models in its knowledge space, best first (k = 0: the server's 5).
  absl::StatusOr<v1::ListNearestModelsResponse> Nearest(const std::string& model, int k);
  // API keys (admin).
  absl::StatusOr<v1::CreateApiKeyResponse> CreateApiKey(v1::ApiKeyRole role,
                                                        const std::string& name);
  absl::StatusOr<v1::ListApiKeysResponse> ListApiKeys();
  absl::Status RevokeApiKey(const std::string& id);
  // One page as the request describes it.
  absl::StatusOr<v1::ListModelsResponse> List(const v1::ListModelsRequest& request);
  // Returns the deleted model's id.
  // The ids deleted: one version, or with all_versions every version of the name.
  absl::StatusOr<std::vector<std::string>> Delete(const std::string& model,
                                                  bool all_versions = false);
  // Streams state changes until READY or FAILED; returns the last state.
  absl::StatusOr<v1::Model> Watch(const std::string& model,
                                  const WatchCallback& on_change = nullptr);
  // grpc.health.v1 Check of `service` ("" = the whole server).
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service = "");
  // Sends `dataset` with the options of `options` (its shape, sample and label fields are
  // filled from the dataset). Image values that are all multiples of 1/255 go as UINT8.
  absl::StatusOr<v1::RecommendResponse> Recommend(const Dataset& dataset,
                                                  const v1::RecommendHeader& options);
  absl::StatusOr<v1::Model> Update(const v1::UpdateModelRequest& request);
  absl::StatusOr<v1::ListAuditLogResponse> AuditLog(int limit);
  // Learning from outcomes: reports accuracies of models fine-tuned on `dataset`.
  absl::StatusOr<v1::ReportOutcomeResponse> ReportOutcome(const Dataset& dataset,
                                                          v1::TaskKind task,
                                                          const std::vector<v1::Outcome>& outcomes,
                                                          v1::OutcomeSource source);
  absl::StatusOr<v1::ListRecordsResponse> ListRecords(const std::string& model, int limit);
  // Rank, then tune: sends `dataset` (labelled) with the options of `options`; `on_progress`
  // gets every epoch of every candidate as it ends. The call's deadline is the client's timeout
  // plus twice the budget plus 30 s per candidate. The winner's tuned file is checked against
  // the size and SHA-256 the result names (DATA_LOSS otherwise).
  struct TuneOutput {
    v1::TuneResult result;
    std::string model;  // the winner's tuned TorchScript file; empty when every candidate failed
  };
  absl::StatusOr<TuneOutput> Tune(const Dataset& dataset, const v1::TuneHeader& options,
                                  const std::function<void(const v1::TuneProgress&)>& on_progress);
  absl::StatusOr<v1::TrainingJob> TrainAlignment(bool wait);
  // Re-hashes every stored model file (admin); with `wait`, returns the finished report.
  absl::StatusOr<v1::ScrubReport> Scrub(bool wait);
  absl::StatusOr<v1::ListAlignmentsResponse> ListAlignments();
  absl::Status UseAlignment(int64_t version);

  const ClientOptions& options() const { return options_; }

 private:
  void SetDeadline(grpc::ClientContext* context) const;
  static absl::StatusOr<std::string> EncodeDataset(const Dataset& dataset,
                                                   v1::RecommendHeader* header);
  // A text dataset: framed UTF-8 texts (SAMPLE_ENCODING_UTF8_TEXT).
  static absl::StatusOr<std::string> EncodeTextDataset(const Dataset& dataset,
                                                       v1::RecommendHeader* header);

  ClientOptions options_;
  absl::Status setup_error_;  // an unreadable TLS file, reported by every call
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ModelDockService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
};

// grpc::Status -> absl::Status, code kept 1:1.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace modeldock::client

#endif  // MODELDOCK_CLIENT_CLIENT_H_
