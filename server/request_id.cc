#include "server/request_id.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <random>

#include "absl/strings/str_format.h"

namespace modeldock::server {
namespace {

thread_local std::string current_request_id;

std::string NewRequestId() {
  // A random start, then a counter: unique within a process, hard to confuse across restarts.
  static std::atomic<uint32_t> next{std::random_device{}()};
  return absl::StrFormat("r-%08x", next.fetch_add(1));
}

}  // namespace

RequestScope::RequestScope(grpc::ServerContext* context) : id_(NewRequestId()) {
  current_request_id = id_;
  context->AddTrailingMetadata(kRequestIdHeader, id_);
}

RequestScope::~RequestScope() { current_request_id.clear(); }

const std::string& CurrentRequestId() { return current_request_id; }

void RequestIdFlag::format(const spdlog::details::log_msg& /*message*/, const std::tm& /*time*/,
                           spdlog::memory_buf_t& dest) {
  if (current_request_id.empty()) return;
  dest.push_back('[');
  dest.append(current_request_id.data(), current_request_id.data() + current_request_id.size());
  dest.push_back(']');
  dest.push_back(' ');
}

std::unique_ptr<spdlog::custom_flag_formatter> RequestIdFlag::clone() const {
  return std::make_unique<RequestIdFlag>();
}

}  // namespace modeldock::server
