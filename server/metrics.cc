#include "server/metrics.h"

#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "prometheus/gauge.h"
#include "prometheus/text_serializer.h"

namespace modeldock::server {
namespace {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Labels;
using prometheus::Registry;

// A family of the dock's figures, in the per-scrape registry: counters are set by one
// increment from zero, gauges by Set.
class Figures {
 public:
  explicit Figures(Registry* registry) : registry_(registry) {}
  prometheus::Family<Counter>& Counters(const char* name, const char* help) {
    return prometheus::BuildCounter().Name(name).Help(help).Register(*registry_);
  }
  prometheus::Family<Gauge>& Gauges(const char* name, const char* help) {
    return prometheus::BuildGauge().Name(name).Help(help).Register(*registry_);
  }
  void Counter1(const char* name, const char* help, double value) {
    Counters(name, help).Add({}).Increment(value);
  }
  void Gauge1(const char* name, const char* help, double value) {
    Gauges(name, help).Add({}).Set(value);
  }

 private:
  Registry* registry_;
};

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

MetricsRegistry::MetricsRegistry()
    : registry_(std::make_shared<Registry>()),
      calls_(&prometheus::BuildCounter()
                  .Name("modeldock_rpc_total")
                  .Help("gRPC calls handled, by method and status code.")
                  .Register(*registry_)),
      latency_(&prometheus::BuildHistogram()
                    .Name("modeldock_rpc_duration_seconds")
                    .Help("gRPC call latency from the call's start to its status, by method.")
                    .Register(*registry_)) {}

void MetricsRegistry::RecordRpc(const std::string& method, const std::string& code,
                                double seconds) {
  calls_->Add({{"method", method}, {"code", code}}).Increment();
  latency_
      ->Add({{"method", method}},
            prometheus::Histogram::BucketBoundaries(kBuckets.begin(), kBuckets.end()))
      .Observe(seconds);
}

namespace {

double D(int64_t v) { return static_cast<double>(v); }

// Model files verified before runs and the last scrub (issue 28).
void AddIntegrity(const dock::DockStats& s, Figures* f) {
  auto& verifications = f->Counters(
      "modeldock_blob_verifications_total",
      "Model file checks before a run: hashed, or answered from the verified-state cache.");
  verifications.Add({{"how", "hashed"}})
      .Increment(D(s.blob_verifications - s.blob_verifications_cached));
  verifications.Add({{"how", "cached"}}).Increment(D(s.blob_verifications_cached));
  f->Counter1("modeldock_blob_hashed_bytes_total",
              "Bytes of model files hashed (checks before runs and scrubs).",
              D(s.blob_bytes_hashed));
  f->Counter1("modeldock_blobs_bad_total",
              "Checks that found a model file missing, truncated or changed.",
              D(s.blobs_found_bad));
  f->Counter1("modeldock_blobs_restored_total",
              "Bad model files replaced by a good copy from a mirror.", D(s.blobs_restored));
  f->Counter1("modeldock_scrubs_total", "Scrubs finished since start.", D(s.scrubs_done));
  const dock::ScrubResult& last = s.last_scrub;
  f->Gauge1("modeldock_scrub_last_finished_seconds",
            "When the last scrub finished (Unix time; 0 = none since start).",
            D(last.finished_unix_ms) / 1000.0);
  auto& blobs = f->Gauges("modeldock_scrub_last_blobs",
                          "Model files the last finished scrub checked, by result.");
  for (auto [result, n] : {std::pair{"ok", last.blobs_ok}, {"bad", last.blobs_bad},
                           {"restored", last.blobs_restored}}) {
    blobs.Add({{"result", result}}).Set(D(n));
  }
  f->Gauge1("modeldock_scrub_last_bad_features",
            "Stored probe feature rows the last scrub found not matching their checksum.",
            D(last.features_bad));
}

// Models, registrations, probing and recommendations.
void AddModels(const dock::DockStats& s, Figures* f) {
  auto& models = f->Gauges("modeldock_models", "Registered models by state.");
  for (auto [state, n] : {std::pair{"PENDING", s.models_pending}, {"PROBING", s.models_probing},
                          {"READY", s.models_ready}, {"FAILED", s.models_failed}}) {
    models.Add({{"state", state}}).Set(D(n));
  }
  auto& registrations = f->Counters("modeldock_registrations_total",
                                    "Registrations since start: admitted (stored) or rejected.");
  registrations.Add({{"outcome", "admitted"}}).Increment(D(s.registrations_admitted));
  registrations.Add({{"outcome", "rejected"}}).Increment(D(s.registrations_rejected));
  auto& probes = f->Counters("modeldock_probes_total", "Probing jobs finished since start.");
  probes.Add({{"outcome", "ready"}}).Increment(D(s.probes_done));
  probes.Add({{"outcome", "failed"}}).Increment(D(s.probes_failed));
  f->Counter1("modeldock_probe_seconds_total", "Time spent probing models that became READY.",
              s.probe_seconds);
  f->Gauge1("modeldock_probe_queue", "Models waiting to be probed.", D(s.probe_queue));
  f->Counter1("modeldock_recommendations_total", "Recommendations answered.", D(s.recommends));
  auto& stages = f->Counters("modeldock_stage_seconds_total",
                             "Time spent in each recommend stage, summed over recommendations.");
  stages.Add({{"stage", "1"}}).Increment(s.stage1_seconds);
  stages.Add({{"stage", "2"}}).Increment(s.stage2_seconds);
}

// The index, caches, workers and the learning loop.
void AddRuns(const dock::DockStats& s, Figures* f) {
  f->Gauge1("modeldock_index_vectors", "Knowledge vectors in the FAISS index.",
            D(s.index_vectors));
  auto& cache = f->Counters(
      "modeldock_cache_requests_total",
      "Cache lookups by cache (outputs: model outputs on query datasets; proxy: compressed "
      "probe features) and result.");
  for (auto [name, hits, misses] :
       {std::tuple{"outputs", s.output_cache_hits, s.output_cache_misses},
        std::tuple{"proxy", s.proxy_cache_hits, s.proxy_cache_misses}}) {
    cache.Add({{"cache", name}, {"result", "hit"}}).Increment(D(hits));
    cache.Add({{"cache", name}, {"result", "miss"}}).Increment(D(misses));
  }
  f->Gauge1("modeldock_workers", "Model worker processes.", D(s.workers));
  f->Gauge1("modeldock_worker_waiting_jobs", "Jobs waiting for a free model worker.",
            D(s.workers_waiting_jobs));
  f->Counter1("modeldock_worker_jobs_total", "Jobs run by model workers.", D(s.worker_jobs));
  f->Counter1("modeldock_worker_restarts_total",
              "Model workers killed (limits, cancellation) or lost, and replaced.",
              D(s.worker_restarts));
  f->Gauge1("modeldock_outcome_records", "Reported fine-tune outcomes stored.",
            D(s.outcome_records));
  f->Gauge1("modeldock_serving_alignment",
            "Trained ranker version serving recommendations (0 = untrained).",
            D(s.serving_alignment));
}

}  // namespace

std::string MetricsRegistry::Render(const dock::DockStats& s) const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  Registry figures_registry;
  Figures figures(&figures_registry);
  AddModels(s, &figures);
  AddRuns(s, &figures);
  AddIntegrity(s, &figures);
  for (prometheus::MetricFamily& family : figures_registry.Collect()) {
    families.push_back(std::move(family));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace modeldock::server
