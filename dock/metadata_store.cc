#include "dock/metadata_store.h"

#include <algorithm>

#include "dock/postgres_store.h"
#include "dock/sqlite_store.h"

namespace modeldock::dock {

const char* ModelChangeName(ModelChange change) {
  switch (change) {
    case ModelChange::kReady: return "ready";
    case ModelChange::kVectorChanged: return "vector";
    case ModelChange::kDeleted: return "deleted";
    case ModelChange::kRecordChanged: return "record";
  }
  return "unknown";
}

bool IsPostgresUrl(std::string_view url_or_path) {
  return url_or_path.rfind("postgresql://", 0) == 0 || url_or_path.rfind("postgres://", 0) == 0;
}

absl::StatusOr<std::unique_ptr<MetadataStore>> OpenMetadataStore(const std::string& url_or_path) {
  if (IsPostgresUrl(url_or_path)) return PostgresMetadataStore::Open(url_or_path);
  return SqliteMetadataStore::Open(url_or_path);
}

std::string RedactUrl(std::string_view url_or_path) {
  if (!IsPostgresUrl(url_or_path)) return std::string(url_or_path);
  std::string url(url_or_path);
  // user:secret@host — the authority ends at the first '/' or '?' after the scheme.
  const size_t authority = url.find("://") + 3;
  const size_t authority_end = std::min(url.find('/', authority), url.find('?', authority));
  const size_t at = url.rfind('@', authority_end);
  if (at != std::string::npos && at >= authority) {
    const size_t colon = url.find(':', authority);
    if (colon < at) url.replace(colon + 1, at - colon - 1, "***");
  }
  // ?password=secret&...
  for (size_t key = url.find("password=", authority); key != std::string::npos;
       key = url.find("password=", key + 1)) {
    if (url[key - 1] != '?' && url[key - 1] != '&') continue;
    const size_t value = key + 9;
    url.replace(value, std::min(url.find('&', value), url.size()) - value, "***");
  }
  return url;
}

}  // namespace modeldock::dock
