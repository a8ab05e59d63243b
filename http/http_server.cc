#include "http/http_server.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "http/routes.h"
#include "http/web_files.h"
#include "server/grpc_server.h"  // SplitHostPort
#include "server/request_id.h"
#include "spdlog/spdlog.h"

namespace modeldock::http {
namespace {

// Set while the acceptor thread itself serves a connection the queue had no room for: every
// request on it is answered 503 (pre-routing handler) and the connection closed.
thread_local bool shedding = false;

// cpp-httplib's own pool queues without bound. This one runs `threads` workers and lets at
// most `max_queued` accepted connections wait; past that, the connection is served on the
// acceptor thread with `shedding` set, which answers it 503 at once (bounded by the read
// timeout) instead of letting the queue grow.
class BoundedTaskQueue : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(int threads, int max_queued) : max_queued_(max_queued) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (static_cast<int>(jobs_.size()) < max_queued_) {
        jobs_.push_back(std::move(fn));
        ready_.notify_one();
        return;
      }
    }
    spdlog::warn("HTTP: {} connections waiting; answering a new one 503", max_queued_);
    shedding = true;
    fn();
    shedding = false;
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping, nothing left
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      fn();
    }
  }

  const int max_queued_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// The request's id: its X-Request-Id when valid, else a new one.
std::string RequestIdOf(const httplib::Request& request) {
  std::string sent = request.get_header_value("X-Request-Id");
  return server::IsValidRequestId(sent) ? sent : server::NewRequestId();
}

// Builds the call of one request; UNAUTHENTICATED for an authorization that is not a bearer key.
absl::Status StartCall(const RouteContext& context, const httplib::Request& request, Call* call) {
  client::ClientOptions options;
  options.timeout = context.options.call_timeout;
  options.request_id = call->request_id;
  if (request.has_header("Authorization")) {
    const std::string value = request.get_header_value("Authorization");
    if (value.rfind("Bearer ", 0) != 0 || value.size() == 7) {
      return absl::UnauthenticatedError("the Authorization header must be 'Bearer <key>'");
    }
    options.api_key = value.substr(7);
  }
  call->api_key = options.api_key;
  call->channel = context.channel;
  call->timeout = options.timeout;
  call->client = std::make_unique<client::Client>(context.channel, options);
  return absl::OkStatus();
}

template <typename Body>
void RunRoute(const RouteContext& context, const httplib::Request& request,
              httplib::Response& response, ErrorStyle style, const Body& body) {
  Call call;
  call.request_id = RequestIdOf(request);
  response.set_header("X-Request-Id", call.request_id);
  absl::Status status = StartCall(context, request, &call);
  if (status.ok()) {
    try {
      status = body(call);
    } catch (const std::exception& e) {
      status = absl::InternalError(absl::StrCat("internal error: ", e.what()));
    }
  }
  if (!status.ok() && style == ErrorStyle::kKServe) {
    SendJson(response, HttpStatusFor(status.code()), json{{"error", std::string(status.message())}});
  } else if (!status.ok()) {
    SendError(response, status, call.request_id);
  }
  spdlog::debug("[{}] HTTP {} {} -> {}", call.request_id, request.method, request.path,
                response.status);
}

absl::Status CheckOptions(const HttpOptions& options, std::string* host, int* port) {
  if (!server::SplitHostPort(options.listen, host, port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP listen address '", options.listen, "' is not HOST:PORT"));
  }
  if (options.threads < 1 || options.max_queued < 0) {
    return absl::InvalidArgumentError("HTTP threads must be >= 1 and max_queued >= 0");
  }
  if (options.tls_cert.empty() != options.tls_key.empty() ||
      (!options.tls_client_ca.empty() && options.tls_cert.empty())) {
    return absl::InvalidArgumentError("TLS needs both a certificate and its key");
  }
  std::error_code error;
  std::filesystem::create_directories(options.spool_dir, error);
  if (options.spool_dir.empty() || error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the HTTP spool directory '", options.spool_dir, "'"));
  }
  return absl::OkStatus();
}

// Plaintext, or TLS from the PEM files (client certificates required with tls_client_ca).
absl::StatusOr<std::unique_ptr<httplib::Server>> MakeServer(const HttpOptions& options) {
  if (options.tls_cert.empty()) return std::make_unique<httplib::Server>();
  auto tls_server = std::make_unique<httplib::SSLServer>(
      options.tls_cert.c_str(), options.tls_key.c_str(),
      options.tls_client_ca.empty() ? nullptr : options.tls_client_ca.c_str());
  if (!tls_server->is_valid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot use the TLS files ", options.tls_cert, ", ", options.tls_key,
        options.tls_client_ca.empty() ? "" : ", " + options.tls_client_ca));
  }
  return tls_server;
}

// The bounded queue, size and time limits, the 503 of a shed connection, and JSON bodies for
// the errors cpp-httplib answers itself (no route 404, body too large 413).
void InstallHandlers(const HttpOptions& options, httplib::Server* server) {
  const int threads = options.threads;
  const int max_queued = options.max_queued;
  server->new_task_queue = [threads, max_queued] {
    return new BoundedTaskQueue(threads, max_queued);
  };
  server->set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
  server->set_read_timeout(30, 0);
  server->set_pre_routing_handler([](const httplib::Request& request,
                                     httplib::Response& response) {
    if (!shedding) return httplib::Server::HandlerResponse::Unhandled;
    const std::string id = RequestIdOf(request);
    response.set_header("X-Request-Id", id);
    response.set_header("Connection", "close");
    SendError(response, absl::UnavailableError("the server is busy; retry later"), id);
    return httplib::Server::HandlerResponse::Handled;
  });
  server->set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;
    const std::string id = RequestIdOf(request);
    response.set_header("X-Request-Id", id);
    const int code = response.status;
    SendError(response,
              code == 404   ? absl::NotFoundError(absl::StrCat("no route ", request.method, " ",
                                                               request.path))
              : code == 413 ? absl::ResourceExhaustedError("request body too large")
                            : absl::InvalidArgumentError(absl::StrCat("HTTP error ", code)),
              id);
    response.status = code;
  });
}

// /v1, /v2 and the page's files (unless metrics_only), and /metrics.
void AddRoutes(std::shared_ptr<const RouteContext> context, httplib::Server* server) {
  const HttpOptions& options = context->options;
  if (!options.metrics_only) {
    AddRestRoutes(*server, context);
    AddLearningRoutes(*server, context);
    AddKServeRoutes(*server, context);
    for (const WebFile& file : WebFiles()) {
      server->Get(file.path, [&file](const httplib::Request&, httplib::Response& response) {
        response.set_content(reinterpret_cast<const char*>(file.data), file.size,
                             file.content_type);
        // The page loads its own script and style only, and talks to this server only.
        response.set_header("Content-Security-Policy", "default-src 'self'");
        response.set_header("X-Content-Type-Options", "nosniff");
      });
    }
  }
  if (options.metrics) {
    auto metrics = options.metrics;
    server->Get("/metrics", [metrics](const httplib::Request&, httplib::Response& response) {
      response.set_content(metrics(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }
}

}  // namespace

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;  // UNKNOWN, INTERNAL, DATA_LOSS
  }
}

void SendJson(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(body.dump(2) + "\n", "application/json");
}

void SendError(httplib::Response& response, const absl::Status& status,
               const std::string& request_id) {
  SendJson(response, HttpStatusFor(status.code()),
           json{{"code", absl::StatusCodeToString(status.code())},
                {"message", std::string(status.message())},
                {"request_id", request_id}});
}

void PrepareContext(const Call& call, grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(call.timeout));
  if (!call.api_key.empty()) context->AddMetadata("authorization", "Bearer " + call.api_key);
  context->AddMetadata(server::kRequestIdHeader, call.request_id);
}

httplib::Server::Handler Route(std::shared_ptr<const RouteContext> context,
                               RouteHandler handler, ErrorStyle style) {
  return [context, handler, style](const httplib::Request& request,
                                   httplib::Response& response) {
    RunRoute(*context, request, response, style,
             [&](Call& call) { return handler(call, request, response); });
  };
}

httplib::Server::HandlerWithContentReader UploadRoute(std::shared_ptr<const RouteContext> context,
                                                      UploadRouteHandler handler) {
  return [context, handler](const httplib::Request& request, httplib::Response& response,
                            const httplib::ContentReader& reader) {
    RunRoute(*context, request, response, ErrorStyle::kApi,
             [&](Call& call) { return handler(call, request, response, reader); });
  };
}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    std::shared_ptr<grpc::Channel> channel, const HttpOptions& options) {
  std::string host;
  int port = 0;
  if (absl::Status s = CheckOptions(options, &host, &port); !s.ok()) return s;
  std::unique_ptr<HttpServer> out(new HttpServer());
  auto server = MakeServer(options);
  if (!server.ok()) return server.status();
  out->server_ = std::move(*server);
  out->tls_ = !options.tls_cert.empty();
  InstallHandlers(options, out->server_.get());
  auto context = std::make_shared<RouteContext>();
  context->channel = std::move(channel);
  context->options = options;
  AddRoutes(context, out->server_.get());

  httplib::Server& bound = *out->server_;
  const std::string bind_host =
      host.size() > 2 && host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  out->port_ = port == 0 ? bound.bind_to_any_port(bind_host)
                         : (bound.bind_to_port(bind_host, port) ? port : -1);
  if (out->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen,
                                               " for HTTP (address in use or not local?)"));
  }
  out->address_ = absl::StrCat(host, ":", out->port_);
  auto finished = std::make_shared<std::atomic<bool>>(false);
  out->thread_ = std::thread([&bound, finished] {
    bound.listen_after_bind();
    *finished = true;
  });
  // Stop() before the loop runs would not reach it; wait until it does (it starts at once).
  while (!bound.is_running() && !*finished) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (*finished) {
    out->thread_.join();
    return absl::UnavailableError(absl::StrCat("HTTP listener on ", options.listen, " stopped"));
  }
  return out;
}

void HttpServer::Stop() {
  if (stopped_ || server_ == nullptr) return;
  stopped_ = true;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace modeldock::http
