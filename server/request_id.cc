#include "server/request_id.h"

#include <atomic>
#include <random>
#include <utility>

#include "absl/strings/str_format.h"

namespace modeldock::server {

std::string ChooseRequestId(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  auto sent = metadata.find(kRequestIdHeader);
  if (sent != metadata.end()) {
    std::string id(sent->second.data(), sent->second.size());
    if (IsValidRequestId(id)) return id;
  }
  return NewRequestId();
}

std::string NewRequestId() {
  // A random start, then a counter: unique within a process, hard to confuse across restarts.
  static std::atomic<uint32_t> next{std::random_device{}()};
  return absl::StrFormat("r-%08x", next.fetch_add(1));
}

bool IsValidRequestId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void RequestIdFlag::format(const spdlog::details::log_msg& /*message*/, const std::tm& /*time*/,
                           spdlog::memory_buf_t& dest) {
  const std::string& id = CurrentRequestId();
  if (id.empty()) return;
  dest.push_back('[');
  dest.append(id.data(), id.data() + id.size());
  dest.push_back(']');
  dest.push_back(' ');
}

std::unique_ptr<spdlog::custom_flag_formatter> RequestIdFlag::clone() const {
  return std::make_unique<RequestIdFlag>();
}

}  // namespace modeldock::server
