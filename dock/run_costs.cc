#include "dock/run_costs.h"

#include <algorithm>
#include <cmath>

namespace modeldock::dock {
namespace {

// Below this spread of sizes the runs cannot tell a fixed part from a rate.
constexpr double kMinRowsSpread = 1.5;

double Median(std::vector<double> values) {
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid),
                   values.end());
  double median = values[mid];
  if (values.size() % 2 == 0) {
    median = (median + *std::max_element(values.begin(),
                                         values.begin() + static_cast<std::ptrdiff_t>(mid))) /
             2;
  }
  return median;
}

}  // namespace

RunCostFit FitRunCost(const std::vector<MeasuredRun>& runs, double default_fixed_millis,
                      bool* identified) {
  if (identified != nullptr) *identified = false;
  if (runs.empty()) return {default_fixed_millis, 0};
  double min_rows = runs[0].rows, max_rows = runs[0].rows;
  double mean_rows = 0, mean_millis = 0;
  for (const MeasuredRun& run : runs) {
    min_rows = std::min(min_rows, run.rows);
    max_rows = std::max(max_rows, run.rows);
    mean_rows += run.rows;
    mean_millis += run.millis;
  }
  const auto n = static_cast<double>(runs.size());
  mean_rows /= n;
  mean_millis /= n;
  if (min_rows > 0 && max_rows >= kMinRowsSpread * min_rows) {
    double covariance = 0, variance = 0;
    for (const MeasuredRun& run : runs) {
      covariance += (run.rows - mean_rows) * (run.millis - mean_millis);
      variance += (run.rows - mean_rows) * (run.rows - mean_rows);
    }
    const double rate = covariance / variance;
    const double fixed = mean_millis - rate * mean_rows;
    if (rate > 0 && fixed >= 0) {
      if (identified != nullptr) *identified = true;
      return {fixed, rate};
    }
  }
  // One size (or a fit that says a larger run is cheaper): the assumed fixed part, the rest a
  // rate.
  const double fixed = std::min(default_fixed_millis, mean_millis / 2);
  return {fixed, mean_rows > 0 ? (mean_millis - fixed) / mean_rows : 0};
}

double RunCostSnapshot::Millis(const std::string& id, double rows,
                               double probe_millis_per_row) const {
  if (auto it = fitted.find(id); it != fitted.end()) return it->second.Millis(rows);
  return default_fixed_millis + probe_rate_scale * probe_millis_per_row * rows;
}

void RunCosts::Record(const std::string& model_id, MeasuredRun run,
                      double probe_millis_per_row) {
  if (!(run.rows > 0) || !std::isfinite(run.millis) || run.millis < 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  ModelRuns& model = models_[model_id];
  model.runs.push_back(run);
  if (model.runs.size() > kMaxRunsPerModel) model.runs.erase(model.runs.begin());
  model.probe_millis_per_row = probe_millis_per_row;
}

RunCostSnapshot RunCosts::Snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  RunCostSnapshot snapshot;
  // Models whose runs identify both parts first (their fit does not depend on the default);
  // the others take the median of those fixed parts as theirs.
  std::vector<double> identified_fixed;
  std::vector<const std::string*> unidentified;
  for (const auto& [id, model] : models_) {
    bool identified = false;
    const RunCostFit fit = FitRunCost(model.runs, kDefaultFixedMillis, &identified);
    if (identified) {
      snapshot.fitted[id] = fit;
      identified_fixed.push_back(fit.fixed_millis);
    } else {
      unidentified.push_back(&id);
    }
  }
  snapshot.default_fixed_millis =
      identified_fixed.empty() ? kDefaultFixedMillis : Median(identified_fixed);
  for (const std::string* id : unidentified) {
    snapshot.fitted[*id] = FitRunCost(models_.at(*id).runs, snapshot.default_fixed_millis);
  }
  std::vector<double> scales;
  for (const auto& [id, model] : models_) {
    if (model.probe_millis_per_row > 0) {
      scales.push_back(snapshot.fitted.at(id).millis_per_row / model.probe_millis_per_row);
    }
  }
  if (!scales.empty()) snapshot.probe_rate_scale = Median(scales);
  return snapshot;
}

void RunCosts::Erase(const std::string& model_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_.erase(model_id);
}

}  // namespace modeldock::dock
