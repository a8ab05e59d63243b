// Prometheus metrics of a running server: RPC counts and latency histograms by method and status
// code (recorded by a gRPC server interceptor, so every handler is covered), and the dock's own
// figures (dock::DockStats) rendered at scrape time. Served as text format 0.0.4 at /metrics
// by the HTTP front door (http/; --http-listen, or --metrics-listen for /metrics alone).
#ifndef MODELDOCK_SERVER_METRICS_H_
#define MODELDOCK_SERVER_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "dock/dock.h"

namespace modeldock::server {

class MetricsRegistry {
 public:
  // Upper bounds (seconds) of the RPC latency histogram buckets; +Inf is implied.
  static constexpr std::array<double, 13> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                      1,     2.5,  5,     10,   30,  60};

  // `method` is the full gRPC method ("/modeldock.v1.ModelDockService/GetModel"); `code` the
  // status code's name ("OK", "NOT_FOUND").
  void RecordRpc(const std::string& method, const std::string& code, double seconds);

  // The whole exposition: RPC series, then `stats`.
  std::string Render(const dock::DockStats& stats) const;

 private:
  struct Histogram {
    std::array<int64_t, kBuckets.size()> counts{};  // per bucket, not cumulative
    int64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, int64_t> calls_;  // (method, code) -> count
  std::map<std::string, Histogram> latency_;                      // method -> histogram
};

// Status code name as gRPC spells it ("OK", "INVALID_ARGUMENT", ...).
const char* StatusCodeName(int code);

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_METRICS_H_
