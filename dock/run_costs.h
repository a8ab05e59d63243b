// What running a model on query samples costs, learned from stage 2's own runs: the latency
// budget's estimates (stage2_budget.cc) read them.
#ifndef MODELDOCK_DOCK_RUN_COSTS_H_
#define MODELDOCK_DOCK_RUN_COSTS_H_

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace modeldock::dock {

// One measured run: its samples and its milliseconds (a share of wall time, load excluded).
struct MeasuredRun {
  double rows = 0;
  double millis = 0;
};

// A run's cost as a fixed part (dispatching the job, moving the samples, setting the model up)
// plus a rate per sample. A single rate (the cost before) folds the fixed part of a small run
// into the rate and then multiplies it by every sample of a large query: estimates 1.4-3.4
// times the measured time (BENCHMARKS 2p).
struct RunCostFit {
  double fixed_millis = 0;
  double millis_per_row = 0;
  double Millis(double rows) const { return fixed_millis + millis_per_row * rows; }
};

// Least squares over `runs` when their sizes differ enough to tell the two parts apart (the
// largest at least 1.5 times the smallest); else, or when that fit is negative in either part,
// `default_fixed_millis` (at most half the runs' mean time) is taken as the fixed part and the
// rest is the rate. `identified` (optional) says whether the runs themselves gave the fit.
RunCostFit FitRunCost(const std::vector<MeasuredRun>& runs, double default_fixed_millis,
                      bool* identified = nullptr);

// Every model's fitted cost at one moment, and what a model that has not run yet is assumed to
// cost.
struct RunCostSnapshot {
  std::unordered_map<std::string, RunCostFit> fitted;
  // The median fixed part over models whose runs identified it; kDefaultFixedMillis before.
  double default_fixed_millis = 0;
  // The median of (fitted rate / the model's probing rate) over models that have run: how far
  // a probe run's time per sample (taken at registration, with loading and every layer) is from
  // a stage-2 run's; 1 before any model has run.
  double probe_rate_scale = 1;

  // Milliseconds to run model `id` on `rows` samples; `probe_millis_per_row` is its probing
  // time over its probe samples, used when it has not run here.
  double Millis(const std::string& id, double rows, double probe_millis_per_row) const;
};

// The runs of each model, bounded to its most recent kMaxRunsPerModel. Thread-safe.
class RunCosts {
 public:
  // The fixed part assumed until some model's runs identify it (the 40 small zoo2 models ran
  // at 14-16 ms per run plus 0.16 ms per sample on 2 cores in BENCHMARKS 2p's runs).
  static constexpr double kDefaultFixedMillis = 10;
  static constexpr size_t kMaxRunsPerModel = 8;

  // `probe_millis_per_row`: the model's probing rate (its probe time over its probe samples).
  void Record(const std::string& model_id, MeasuredRun run, double probe_millis_per_row);
  RunCostSnapshot Snapshot() const;
  void Erase(const std::string& model_id);

 private:
  struct ModelRuns {
    std::vector<MeasuredRun> runs;  // oldest first
    double probe_millis_per_row = 0;
  };
  mutable std::mutex mutex_;
  std::unordered_map<std::string, ModelRuns> models_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_RUN_COSTS_H_
