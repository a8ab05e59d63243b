// Shared by the HTTP route files: the wrapper every route runs in (request id, API key, the
// forwarding client, errors as JSON) and the gRPC-status -> HTTP-status mapping.
#ifndef MODELDOCK_HTTP_ROUTES_H_
#define MODELDOCK_HTTP_ROUTES_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/json_output.h"
#include "http/http_server.h"
#include "httplib.h"

namespace modeldock::http {

using client::json;

// google.rpc.Code -> HTTP status as Google's API design guide maps them (errors chapter):
// INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE 400; UNAUTHENTICATED 401;
// PERMISSION_DENIED 403; NOT_FOUND 404; ALREADY_EXISTS, ABORTED 409; RESOURCE_EXHAUSTED 429;
// CANCELLED 499; UNKNOWN, INTERNAL, DATA_LOSS 500; UNIMPLEMENTED 501; UNAVAILABLE 503;
// DEADLINE_EXCEEDED 504.
int HttpStatusFor(absl::StatusCode code);

// What every route gets besides the request: the options and a channel to the gRPC service.
struct RouteContext {
  std::shared_ptr<grpc::Channel> channel;
  HttpOptions options;
};

// One HTTP request as the gRPC service sees it: a client that sends its key and request id.
struct Call {
  std::string request_id;
  std::string api_key;  // "" without an Authorization header
  std::unique_ptr<client::Client> client;
  std::shared_ptr<grpc::Channel> channel;
  absl::Duration timeout;
};

// Deadline, key and request id of `call` on a context of a stub other than client's (KServe).
void PrepareContext(const Call& call, grpc::ClientContext* context);

// How a route's errors look: {"code", "message", "request_id"} (the /v1 API), or
// {"error": message} (the KServe v2 HTTP protocol's error object).
enum class ErrorStyle { kApi, kKServe };

void SendJson(httplib::Response& response, int status, const json& body);
// Body {"code": "NOT_FOUND", "message": ..., "request_id": ...}.
void SendError(httplib::Response& response, const absl::Status& status,
               const std::string& request_id);

using RouteHandler =
    std::function<absl::Status(Call& call, const httplib::Request&, httplib::Response&)>;
using UploadRouteHandler = std::function<absl::Status(
    Call& call, const httplib::Request&, httplib::Response&, const httplib::ContentReader&)>;

// Runs `handler` with the request's id (its valid X-Request-Id, else a new one; echoed as
// X-Request-Id) and key ("Authorization: Bearer KEY"; any other authorization is 401), turning
// a returned error or an escaped exception into the error body.
httplib::Server::Handler Route(std::shared_ptr<const RouteContext> context, RouteHandler handler,
                               ErrorStyle style = ErrorStyle::kApi);
httplib::Server::HandlerWithContentReader UploadRoute(std::shared_ptr<const RouteContext> context,
                                                      UploadRouteHandler handler);

// The /v1 REST API (rest_routes.cc).
void AddRestRoutes(httplib::Server& server, std::shared_ptr<const RouteContext> context);
// The /v1 routes of the audit log, outcome records, alignments and scrub (learning_routes.cc).
void AddLearningRoutes(httplib::Server& server, std::shared_ptr<const RouteContext> context);
// The KServe v2 HTTP/REST protocol under /v2 (kserve_routes.cc).
void AddKServeRoutes(httplib::Server& server, std::shared_ptr<const RouteContext> context);

}  // namespace modeldock::http

#endif  // MODELDOCK_HTTP_ROUTES_H_
