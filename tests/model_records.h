// Model rows for the store tests (metadata_store_test, caching_store_test): one record builder
// with values that are hard to round-trip, and one exact description of every field, so that a
// field added to ModelRecord is added to the comparisons in one place.
#ifndef MODELDOCK_TESTS_MODEL_RECORDS_H_
#define MODELDOCK_TESTS_MODEL_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dock/dock.h"

namespace modeldock::testing {

// A PENDING classifier with quotes and non-ASCII text, a size past 32 bits and two layers.
inline dock::ModelRecord TestRecord(const std::string& id, const std::string& name,
                                    const std::string& version, int64_t created) {
  dock::ModelRecord r;
  r.id = id;
  r.spec.name = name;
  r.spec.version = version;
  r.spec.description = "a model \"quoted\", 'single', ünïcode";
  r.spec.task = dock::TaskKind::kImageClassification;
  r.spec.input_shape = {1, 28, 28};
  r.spec.class_labels = {"T-shirt/top", "Pullover"};
  r.spec.license = "CC0-1.0";
  r.spec.tags = {"fashion", "small"};
  r.spec.kind = dock::ModelKind::kClassifier;
  r.state = dock::ModelState::kPending;
  r.state_reason = "queued";
  r.sha256 = "sha-" + id;
  r.size_bytes = 5'000'000'000;  // past 32 bits
  r.has_embed = true;
  r.feature_dim = 64;
  r.layers = {{"conv1", 128}, {"embed", 64}};
  r.created_unix_ms = created;
  r.probe_millis = 0;
  r.revision = 1;
  return r;
}

// Every field of a record as text (strings quoted and escaped, lists bracketed), so that two
// records are equal exactly when their descriptions are, and a difference reads field by field.
inline std::string DescribeRecord(const dock::ModelRecord& r) {
  auto quoted = [](const std::string& s) { return absl::StrCat("\"", absl::CHexEscape(s), "\""); };
  auto strings = [&](const std::vector<std::string>& v) {
    std::vector<std::string> q;
    for (const std::string& s : v) q.push_back(quoted(s));
    return absl::StrCat("[", absl::StrJoin(q, ","), "]");
  };
  std::vector<std::string> layers;
  for (const dock::ModelLayer& l : r.layers) layers.push_back(absl::StrCat(quoted(l.name), ":", l.dim));
  return absl::StrCat(
      "{id=", quoted(r.id), " name=", quoted(r.spec.name), " version=", quoted(r.spec.version),
      " description=", quoted(r.spec.description), " task=", static_cast<int>(r.spec.task),
      " shape=[", absl::StrJoin(r.spec.input_shape, ","), "]",
      " labels=", strings(r.spec.class_labels), " license=", quoted(r.spec.license),
      " tags=", strings(r.spec.tags), " kind=", static_cast<int>(r.spec.kind),
      " remote=", quoted(r.spec.remote_endpoint), "/", quoted(r.spec.remote_model), "/",
      quoted(r.spec.remote_version), " state=", static_cast<int>(r.state),
      " reason=", quoted(r.state_reason), " sha=", quoted(r.sha256), " size=", r.size_bytes,
      " embed=", r.has_embed, " dim=", r.feature_dim, " layers=[", absl::StrJoin(layers, ","),
      "] created=", r.created_unix_ms, " probe_ms=", r.probe_millis, " revision=", r.revision,
      " owner=", quoted(r.owner_key_id), "}");
}

}  // namespace modeldock::testing

#endif  // MODELDOCK_TESTS_MODEL_RECORDS_H_
