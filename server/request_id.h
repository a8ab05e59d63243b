// Request ids: every call gets one ("r-" + 8 hex digits). It is sent back to the client as the
// "x-request-id" trailing metadata, appended to error messages ("(request r-...)"), and printed
// in every log line written on the call's thread (the %* flag of the server's log pattern).
#ifndef MODELDOCK_SERVER_REQUEST_ID_H_
#define MODELDOCK_SERVER_REQUEST_ID_H_

#include <map>
#include <memory>
#include <string>
#include <utility>

#include <grpcpp/support/string_ref.h>

#include "common/request_context.h"
#include "spdlog/pattern_formatter.h"

namespace modeldock::server {

inline constexpr char kRequestIdHeader[] = "x-request-id";

// A new id, "r-" + 8 hex digits.
std::string NewRequestId();
// An id a client may choose (sent as "x-request-id"): 1 to 64 of [A-Za-z0-9._-].
bool IsValidRequestId(const std::string& id);

// A call's id: the client's "x-request-id" when it sent a valid one (the HTTP front door passes
// its request's id this way), else a new one. The authorization interceptor chooses it and
// adds it to the call's trailing metadata.
std::string ChooseRequestId(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata);

// Sets the calling thread's request id for the life of a call (CallScope holds one); the
// engine carries it into the threads that work for the call (common/request_context.h).
class RequestScope {
 public:
  explicit RequestScope(std::string id) : id_(id), scope_(std::move(id)) {}
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;
  const std::string& id() const { return id_; }

 private:
  std::string id_;
  ScopedRequestId scope_;
};

// spdlog flag: "[r-1a2b3c4d] " while a call runs on the thread, nothing otherwise.
class RequestIdFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& message, const std::tm& time,
              spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override;
};

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_REQUEST_ID_H_
