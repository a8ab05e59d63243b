#include "server/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace modeldock::server {
namespace {

// Label values: backslash, quote and newline escaped (text format 0.0.4).
std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string Number(double v) { return absl::StrFormat("%.9g", v); }

void Family(std::string* out, const char* name, const char* type, const char* help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void Sample(std::string* out, const std::string& name, const std::string& labels, double value) {
  absl::StrAppend(out, name, labels.empty() ? "" : "{" + labels + "}", " ", Number(value), "\n");
}

}  // namespace

const char* StatusCodeName(int code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
}

void MetricsRegistry::RecordRpc(const std::string& method, const std::string& code,
                                double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++calls_[{method, code}];
  Histogram& h = latency_[method];
  ++h.count;
  h.sum += seconds;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      ++h.counts[i];
      break;
    }
  }
}

namespace {

// Model files verified before runs and the last scrub (issue 28).
void RenderIntegrity(const dock::DockStats& s, std::string* out) {
  Family(out, "modeldock_blob_verifications_total", "counter",
         "Model file checks before a run: hashed, or answered from the verified-state cache.");
  Sample(out, "modeldock_blob_verifications_total", "how=\"hashed\"",
         static_cast<double>(s.blob_verifications - s.blob_verifications_cached));
  Sample(out, "modeldock_blob_verifications_total", "how=\"cached\"",
         static_cast<double>(s.blob_verifications_cached));
  Family(out, "modeldock_blob_hashed_bytes_total", "counter",
         "Bytes of model files hashed (checks before runs and scrubs).");
  Sample(out, "modeldock_blob_hashed_bytes_total", "", static_cast<double>(s.blob_bytes_hashed));
  Family(out, "modeldock_blobs_bad_total", "counter",
         "Checks that found a model file missing, truncated or changed.");
  Sample(out, "modeldock_blobs_bad_total", "", static_cast<double>(s.blobs_found_bad));
  Family(out, "modeldock_blobs_restored_total", "counter",
         "Bad model files replaced by a good copy from a mirror.");
  Sample(out, "modeldock_blobs_restored_total", "", static_cast<double>(s.blobs_restored));
  Family(out, "modeldock_scrubs_total", "counter", "Scrubs finished since start.");
  Sample(out, "modeldock_scrubs_total", "", static_cast<double>(s.scrubs_done));
  const dock::ScrubResult& last = s.last_scrub;
  Family(out, "modeldock_scrub_last_finished_seconds", "gauge",
         "When the last scrub finished (Unix time; 0 = none since start).");
  Sample(out, "modeldock_scrub_last_finished_seconds", "",
         static_cast<double>(last.finished_unix_ms) / 1000.0);
  Family(out, "modeldock_scrub_last_blobs", "gauge",
         "Model files the last finished scrub checked, by result.");
  for (auto [result, n] : {std::pair{"ok", last.blobs_ok}, {"bad", last.blobs_bad},
                           {"restored", last.blobs_restored}}) {
    Sample(out, "modeldock_scrub_last_blobs", absl::StrCat("result=\"", result, "\""),
           static_cast<double>(n));
  }
  Family(out, "modeldock_scrub_last_bad_features", "gauge",
         "Stored probe feature rows the last scrub found not matching their checksum.");
  Sample(out, "modeldock_scrub_last_bad_features", "", static_cast<double>(last.features_bad));
}

}  // namespace

std::string MetricsRegistry::Render(const dock::DockStats& s) const {
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Family(&out, "modeldock_rpc_total", "counter", "gRPC calls handled, by method and status code.");
    for (const auto& [key, count] : calls_) {
      Sample(&out, "modeldock_rpc_total",
             absl::StrCat("method=\"", Escape(key.first), "\",code=\"", Escape(key.second), "\""),
             static_cast<double>(count));
    }
    Family(&out, "modeldock_rpc_duration_seconds", "histogram",
           "gRPC call latency from the call's start to its status, by method.");
    for (const auto& [method, h] : latency_) {
      const std::string m = absl::StrCat("method=\"", Escape(method), "\"");
      int64_t cumulative = 0;
      for (size_t i = 0; i < kBuckets.size(); ++i) {
        cumulative += h.counts[i];
        Sample(&out, "modeldock_rpc_duration_seconds_bucket",
               absl::StrCat(m, ",le=\"", Number(kBuckets[i]), "\""),
               static_cast<double>(cumulative));
      }
      Sample(&out, "modeldock_rpc_duration_seconds_bucket", absl::StrCat(m, ",le=\"+Inf\""),
             static_cast<double>(h.count));
      Sample(&out, "modeldock_rpc_duration_seconds_sum", m, h.sum);
      Sample(&out, "modeldock_rpc_duration_seconds_count", m, static_cast<double>(h.count));
    }
  }
  Family(&out, "modeldock_models", "gauge", "Registered models by state.");
  for (auto [state, n] : {std::pair{"PENDING", s.models_pending}, {"PROBING", s.models_probing},
                          {"READY", s.models_ready}, {"FAILED", s.models_failed}}) {
    Sample(&out, "modeldock_models", absl::StrCat("state=\"", state, "\""), n);
  }
  Family(&out, "modeldock_registrations_total", "counter",
         "Registrations since start: admitted (stored) or rejected.");
  Sample(&out, "modeldock_registrations_total", "outcome=\"admitted\"",
         static_cast<double>(s.registrations_admitted));
  Sample(&out, "modeldock_registrations_total", "outcome=\"rejected\"",
         static_cast<double>(s.registrations_rejected));
  Family(&out, "modeldock_probes_total", "counter", "Probing jobs finished since start.");
  Sample(&out, "modeldock_probes_total", "outcome=\"ready\"", static_cast<double>(s.probes_done));
  Sample(&out, "modeldock_probes_total", "outcome=\"failed\"",
         static_cast<double>(s.probes_failed));
  Family(&out, "modeldock_probe_seconds_total", "counter", "Time spent probing models that became READY.");
  Sample(&out, "modeldock_probe_seconds_total", "", s.probe_seconds);
  Family(&out, "modeldock_probe_queue", "gauge", "Models waiting to be probed.");
  Sample(&out, "modeldock_probe_queue", "", s.probe_queue);
  Family(&out, "modeldock_recommendations_total", "counter", "Recommendations answered.");
  Sample(&out, "modeldock_recommendations_total", "", static_cast<double>(s.recommends));
  Family(&out, "modeldock_stage_seconds_total", "counter",
         "Time spent in each recommend stage, summed over recommendations.");
  Sample(&out, "modeldock_stage_seconds_total", "stage=\"1\"", s.stage1_seconds);
  Sample(&out, "modeldock_stage_seconds_total", "stage=\"2\"", s.stage2_seconds);
  Family(&out, "modeldock_index_vectors", "gauge", "Knowledge vectors in the FAISS index.");
  Sample(&out, "modeldock_index_vectors", "", static_cast<double>(s.index_vectors));
  Family(&out, "modeldock_cache_requests_total", "counter",
         "Cache lookups by cache (outputs: model outputs on query datasets; proxy: compressed "
         "probe features) and result.");
  for (auto [cache, hits, misses] :
       {std::tuple{"outputs", s.output_cache_hits, s.output_cache_misses},
        std::tuple{"proxy", s.proxy_cache_hits, s.proxy_cache_misses}}) {
    Sample(&out, "modeldock_cache_requests_total",
           absl::StrCat("cache=\"", cache, "\",result=\"hit\""), static_cast<double>(hits));
    Sample(&out, "modeldock_cache_requests_total",
           absl::StrCat("cache=\"", cache, "\",result=\"miss\""), static_cast<double>(misses));
  }
  Family(&out, "modeldock_workers", "gauge", "Model worker processes.");
  Sample(&out, "modeldock_workers", "", s.workers);
  Family(&out, "modeldock_worker_waiting_jobs", "gauge", "Jobs waiting for a free model worker.");
  Sample(&out, "modeldock_worker_waiting_jobs", "", s.workers_waiting_jobs);
  Family(&out, "modeldock_worker_jobs_total", "counter", "Jobs run by model workers.");
  Sample(&out, "modeldock_worker_jobs_total", "", static_cast<double>(s.worker_jobs));
  Family(&out, "modeldock_worker_restarts_total", "counter",
         "Model workers killed (limits, cancellation) or lost, and replaced.");
  Sample(&out, "modeldock_worker_restarts_total", "", static_cast<double>(s.worker_restarts));
  Family(&out, "modeldock_outcome_records", "gauge", "Reported fine-tune outcomes stored.");
  Sample(&out, "modeldock_outcome_records", "", static_cast<double>(s.outcome_records));
  Family(&out, "modeldock_serving_alignment", "gauge",
         "Trained ranker version serving recommendations (0 = untrained).");
  Sample(&out, "modeldock_serving_alignment", "", static_cast<double>(s.serving_alignment));
  RenderIntegrity(s, &out);
  return out;
}

}  // namespace modeldock::server
