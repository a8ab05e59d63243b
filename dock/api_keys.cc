// The dock's audit log and API keys: keys are stored as salted SHA-256 hashes of their secrets
// (dock/metadata_store.h's key table); the audit log records who changed which model.
#include <sys/random.h>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "dock/dock_impl.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {

void DockImpl::Audit(const std::string& actor, const std::string& action,
                     const std::string& target, const std::string& detail) {
  AuditEntry entry;
  entry.unix_ms = NowUnixMs();
  entry.actor = actor;
  entry.action = action;
  entry.target = target;
  entry.detail = detail;
  // The change already happened; a failed audit write is logged, not turned into a failure.
  if (absl::Status s = audit_->AppendAudit(entry); !s.ok()) {
    spdlog::error("audit log: {} {} {}: {}", action, target, detail, s.ToString());
  }
}

absl::StatusOr<std::vector<AuditEntry>> DockImpl::AuditLog(int limit) {
  return audit_->Audit(limit <= 0 ? 100 : limit);
}

namespace {

std::string RandomHex(int bytes) {
  std::string raw(static_cast<size_t>(bytes), '\0');
  size_t got = 0;
  while (got < raw.size()) {
    ssize_t n = getrandom(raw.data() + got, raw.size() - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex.push_back(kHex[c >> 4]);
    hex.push_back(kHex[c & 0xf]);
  }
  return hex;
}

// Equal-length strings compared without an early exit (no timing hint about the hash).
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

ApiKeyInfo ToInfo(const ApiKeyRow& row) {
  ApiKeyInfo info;
  info.id = row.id;
  info.name = row.name;
  info.role = static_cast<ApiKeyRole>(row.role);
  info.created_unix_ms = row.created_unix_ms;
  info.revoked = row.revoked;
  return info;
}

}  // namespace

const char* ApiKeyRoleName(ApiKeyRole role) {
  switch (role) {
    case ApiKeyRole::kConsumer: return "consumer";
    case ApiKeyRole::kProvider: return "provider";
    case ApiKeyRole::kAdmin: return "admin";
  }
  return "unknown";
}

absl::StatusOr<NewApiKey> DockImpl::CreateApiKey(ApiKeyRole role, const std::string& name) {
  if (role != ApiKeyRole::kConsumer && role != ApiKeyRole::kProvider &&
      role != ApiKeyRole::kAdmin) {
    return absl::InvalidArgumentError("role must be consumer, provider or admin");
  }
  if (name.size() > 200) return absl::InvalidArgumentError("key name is longer than 200 characters");
  ApiKeyRow row;
  row.id = RandomHex(6);
  row.name = name;
  row.role = static_cast<int>(role);
  row.salt = RandomHex(16);
  const std::string secret = RandomHex(32);
  row.hash = Sha256::Of(row.salt + secret);
  row.created_unix_ms = NowUnixMs();
  if (absl::Status s = keys_->InsertKey(row); !s.ok()) return s;
  spdlog::info("API key {} ('{}', {}) created", row.id, name, ApiKeyRoleName(role));
  return NewApiKey{ToInfo(row), absl::StrCat("mdk_", row.id, "_", secret)};
}

absl::StatusOr<std::vector<ApiKeyInfo>> DockImpl::ListApiKeys() {
  auto rows = keys_->Keys();
  if (!rows.ok()) return rows.status();
  std::vector<ApiKeyInfo> keys;
  for (const ApiKeyRow& row : *rows) keys.push_back(ToInfo(row));
  return keys;
}

absl::Status DockImpl::RevokeApiKey(const std::string& id) {
  absl::Status s = keys_->RevokeKey(id);
  if (s.ok()) spdlog::info("API key {} revoked", id);
  return s;
}

absl::StatusOr<ApiKeyInfo> DockImpl::Authenticate(const std::string& secret) {
  // "mdk_<id>_<secret>": the id finds the row, the salted hash checks the secret.
  const absl::Status unknown = absl::UnauthenticatedError(
      "unknown or revoked API key (send 'authorization: Bearer <key>'; an admin creates keys "
      "with `modeldock keys create`)");
  if (secret.size() < 6 || secret.compare(0, 4, "mdk_") != 0) return unknown;
  const size_t split = secret.find('_', 4);
  if (split == std::string::npos) return unknown;
  auto rows = keys_->Keys(secret.substr(4, split - 4));
  if (!rows.ok()) return rows.status();
  if (rows->empty() || rows->front().revoked) return unknown;
  const ApiKeyRow& row = rows->front();
  if (!ConstantTimeEquals(Sha256::Of(row.salt + secret.substr(split + 1)), row.hash)) {
    return unknown;
  }
  return ToInfo(row);
}

}  // namespace modeldock::dock
