// Every translation between modeldock.v1 messages and the engine's types (dock/types.h), in
// both directions: the request decoders check what the engine cannot (shapes, enums, limits)
// and fill its query structs; the encoders fill the responses. No gRPC calls and no engine
// behind them, so that they can be fuzzed (fuzz/) and unit-tested without a server. A handler
// in service.cc reads: decode -> engine call -> encode.
#ifndef MODELDOCK_SERVER_PROTO_CONVERSION_H_
#define MODELDOCK_SERVER_PROTO_CONVERSION_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dock/types.h"
#include "modeldock/v1/modeldock.pb.h"

namespace modeldock::server {

// ListModels page size when the request says 0, and the largest one served.
inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

// ---- Enums and specs, proto -> engine.
// An unspecified task is inferred from the rank of the per-sample shape ([F] or [C, H, W]).
absl::StatusOr<dock::TaskKind> FromProto(v1::TaskKind task, size_t shape_rank);
absl::StatusOr<dock::ModelState> FromProto(v1::ModelState state);
// METRIC_UNSPECIFIED is the server's default, kFusion.
absl::StatusOr<dock::Metric> FromProto(v1::Metric metric);
absl::StatusOr<dock::ModelSpec> FromProto(const v1::ModelSpec& spec);

// ---- Engine -> proto (exposed for tests and the CLI's JSON output).
v1::ModelState ToProto(dock::ModelState state);
v1::TaskKind ToProto(dock::TaskKind task);
v1::Metric ToProto(dock::Metric metric);
v1::RecommendMode ToProto(dock::RecommendMode mode);
void ToProto(const dock::ModelRecord& record, v1::Model* out);
v1::ApiKey ToProto(const dock::ApiKeyInfo& key);
void ToProto(const dock::AlignmentVersion& version, v1::AlignmentVersion* out);
void ToProto(const dock::TrainingStatus& job, v1::TrainingJob* out);
void ToProto(const dock::ScrubResult& result, v1::ScrubReport* out);

// ---- Requests -> engine queries.
absl::StatusOr<dock::ModelSpec> DecodeRemoteModel(const v1::RegisterRemoteModelRequest& request);

struct ListModelsQuery {
  dock::ListFilter filter;
  int page_size = kDefaultPageSize;
};
absl::StatusOr<ListModelsQuery> DecodeListModels(const v1::ListModelsRequest& request);

// The model named and how many neighbours (INVALID_ARGUMENT: no model, k outside [0, 100]).
struct NearestQuery {
  std::string model;
  int k = 0;
};
absl::StatusOr<NearestQuery> DecodeListNearest(const v1::ListNearestModelsRequest& request);
// The model named and the changes asked for (tags are replaced as a whole).
absl::StatusOr<dock::ModelUpdate> DecodeUpdateModel(const v1::UpdateModelRequest& request);

absl::StatusOr<dock::ApiKeyRole> DecodeApiKeyRole(v1::ApiKeyRole role);

// A Recommend in two steps, around the reading of its sample data: the header's checks and
// options (before), then the samples, labels and the remaining options (after; `data` holds
// exactly ExpectedQueryBytes(header) bytes).
absl::StatusOr<dock::RecommendQuery> DecodeRecommendHeader(const v1::RecommendHeader& header);
absl::Status DecodeRecommendData(const v1::RecommendHeader& header, const std::string& data,
                                 dock::RecommendQuery* query);

// A ReportOutcome the same way (the dataset is an image or tabular RecommendHeader).
absl::StatusOr<dock::OutcomeReport> DecodeOutcomeHeader(const v1::ReportOutcomeHeader& header);
absl::Status DecodeOutcomeData(const v1::ReportOutcomeHeader& header, const std::string& data,
                               dock::OutcomeReport* report);

// A Tune the same way: the header's checks and options, then the labelled dataset.
absl::StatusOr<dock::TuneQuery> DecodeTuneHeader(const v1::TuneHeader& header);
absl::Status DecodeTuneData(const v1::TuneHeader& header, const std::string& data,
                            dock::TuneQuery* query);

// ---- Engine results -> responses.
void Encode(const dock::ModelPage& page, v1::ListModelsResponse* out);
void Encode(const std::vector<dock::NearestModel>& nearest, v1::ListNearestModelsResponse* out);
void Encode(const std::vector<dock::AuditEntry>& entries, v1::ListAuditLogResponse* out);
// Everything but the timings the transport measures (receive and total).
void Encode(const dock::RecommendResult& result, v1::RecommendResponse* out);
void Encode(const dock::OutcomeReportResult& result, v1::ReportOutcomeResponse* out);
void Encode(const dock::TuneProgressEvent& event, v1::TuneProgress* out);
// Everything but model_sha256 (the transport hashes the file it sends).
void Encode(const dock::TuneResult& result, v1::TuneResult* out);
void Encode(const dock::RecordList& records, v1::ListRecordsResponse* out);
void Encode(const dock::AlignmentList& list, v1::ListAlignmentsResponse* out);

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_PROTO_CONVERSION_H_
