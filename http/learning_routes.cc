// The /v1 routes of learning and administration: the audit log, outcome records, the ranker's
// alignments (train, list, use) and the storage scrub. Each makes the modeldock.v1 call the CLI
// would make (`audit`, `records`, `train`, `alignments`, `alignments use`, `admin scrub`) and
// answers with the CLI's --json document; roles are the gRPC service's (admin for all but the
// records and the alignments' list).
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "http/routes.h"

namespace modeldock::http {
namespace {

// A query parameter "limit" (0 when absent) and nothing else but `others`; INVALID_ARGUMENT
// naming an unknown parameter or a limit that is not an integer.
absl::StatusOr<int> LimitOf(const httplib::Request& request,
                            std::initializer_list<const char*> others = {}) {
  int limit = 0;
  for (const auto& [key, value] : request.params) {
    if (key == "limit") {
      if (!absl::SimpleAtoi(value, &limit)) {
        return absl::InvalidArgumentError(
            absl::StrCat("limit must be an integer (0 = 100, at most 10000); got '", value, "'"));
      }
      continue;
    }
    bool known = false;
    for (const char* other : others) known = known || key == other;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat("unknown query parameter '", key, "'"));
    }
  }
  return limit;
}

// The body {"wait": bool} of train and scrub; an empty body waits not.
absl::StatusOr<bool> WaitOf(const httplib::Request& request) {
  if (request.body.empty()) return false;
  try {
    const json body = json::parse(request.body);
    if (!body.is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
    for (const auto& [key, value] : body.items()) {
      if (key != "wait") {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown key '", key, "' (the body is {\"wait\": true|false})"));
      }
      if (!value.is_boolean()) return absl::InvalidArgumentError("wait must be true or false");
    }
    return body.value("wait", false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the body is not valid JSON: ", e.what()));
  }
}

// GET /v1/audit?limit=N (admin): newest first.
absl::Status AuditLog(Call& call, const httplib::Request& request, httplib::Response& response) {
  auto limit = LimitOf(request);
  if (!limit.ok()) return limit.status();
  auto log = call.client->AuditLog(*limit);
  if (!log.ok()) return log.status();
  SendJson(response, 200, client::AuditLogToJson(*log));
  return absl::OkStatus();
}

// GET /v1/records?model=NAME&limit=N: stored outcomes, newest first.
absl::Status Records(Call& call, const httplib::Request& request, httplib::Response& response) {
  auto limit = LimitOf(request, {"model"});
  if (!limit.ok()) return limit.status();
  auto records = call.client->ListRecords(request.get_param_value("model"), *limit);
  if (!records.ok()) return records.status();
  SendJson(response, 200, client::RecordsToJson(*records));
  return absl::OkStatus();
}

// POST /v1/train {"wait": bool} (admin): the training job (state "running" unless waited for).
absl::Status Train(Call& call, const httplib::Request& request, httplib::Response& response) {
  auto wait = WaitOf(request);
  if (!wait.ok()) return wait.status();
  auto job = call.client->TrainAlignment(*wait);
  if (!job.ok()) return job.status();
  SendJson(response, 200, client::TrainingJobToJson(*job));
  return absl::OkStatus();
}

// GET /v1/alignments: the trained versions, the serving one and the last training job.
absl::Status Alignments(Call& call, const httplib::Request& request,
                        httplib::Response& response) {
  if (!request.params.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown query parameter '", request.params.begin()->first, "'"));
  }
  auto list = call.client->ListAlignments();
  if (!list.ok()) return list.status();
  SendJson(response, 200, client::AlignmentsToJson(*list));
  return absl::OkStatus();
}

// POST /v1/alignments/{version}:use (admin): serves that version from the next recommendation
// on (0 = untrained).
absl::Status UseAlignment(Call& call, const httplib::Request& request,
                          httplib::Response& response) {
  int64_t version = 0;
  if (!absl::SimpleAtoi(request.matches[1].str(), &version)) {
    return absl::InvalidArgumentError("the version must be an integer");
  }
  if (absl::Status s = call.client->UseAlignment(version); !s.ok()) return s;
  SendJson(response, 200, json{{"serving_version", version}});
  return absl::OkStatus();
}

// POST /v1/scrub {"wait": bool} (admin): every stored model file re-hashed.
absl::Status Scrub(Call& call, const httplib::Request& request, httplib::Response& response) {
  auto wait = WaitOf(request);
  if (!wait.ok()) return wait.status();
  auto report = call.client->Scrub(*wait);
  if (!report.ok()) return report.status();
  SendJson(response, 200, client::ScrubReportToJson(*report));
  return absl::OkStatus();
}

}  // namespace

void AddLearningRoutes(httplib::Server& server, std::shared_ptr<const RouteContext> context) {
  server.Get("/v1/audit", Route(context, AuditLog));
  server.Get("/v1/records", Route(context, Records));
  server.Post("/v1/train", Route(context, Train));
  server.Get("/v1/alignments", Route(context, Alignments));
  server.Post(R"(/v1/alignments/(\d+):use)", Route(context, UseAlignment));
  server.Post("/v1/scrub", Route(context, Scrub));
}

}  // namespace modeldock::http
