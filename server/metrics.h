// Prometheus metrics of a running server: RPC counts and latency histograms by method and status
// code (recorded by a gRPC server interceptor, so every handler is covered), and the dock's own
// figures (dock::DockStats) read at scrape time. Kept and encoded (text format 0.0.4) by
// prometheus-cpp's core library (Debian prometheus-cpp-dev); served at /metrics by the HTTP
// front door (http/; --http-listen, or --metrics-listen for /metrics alone), not by
// prometheus-cpp's own civetweb exposer.
#ifndef MODELDOCK_SERVER_METRICS_H_
#define MODELDOCK_SERVER_METRICS_H_

#include <array>
#include <memory>
#include <string>

#include "dock/dock.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace modeldock::server {

class MetricsRegistry {
 public:
  // Upper bounds (seconds) of the RPC latency histogram buckets; +Inf is implied.
  static constexpr std::array<double, 13> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                      1,     2.5,  5,     10,   30,  60};

  MetricsRegistry();

  // `method` is the full gRPC method ("/modeldock.v1.ModelDockService/GetModel"); `code` the
  // status code's name ("OK", "NOT_FOUND").
  void RecordRpc(const std::string& method, const std::string& code, double seconds);

  // The whole exposition: RPC series, then `stats`. The RPC families appear once a call was
  // recorded (prometheus-cpp leaves out a family with no series).
  std::string Render(const dock::DockStats& stats) const;

 private:
  // The RPC series, kept between scrapes; the dock's figures go to a registry made per scrape.
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* calls_;     // method, code
  prometheus::Family<prometheus::Histogram>* latency_;  // method
};

// Status code name as gRPC spells it ("OK", "INVALID_ARGUMENT", ...).
const char* StatusCodeName(int code);

}  // namespace modeldock::server

#endif  // MODELDOCK_SERVER_METRICS_H_
