#include "dock/query_rows.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

namespace modeldock::dock {

Tensor TakeRows(const Tensor& t, const std::vector<int64_t>& rows) {
  Tensor out;
  out.shape = t.shape;
  out.shape[0] = static_cast<int64_t>(rows.size());
  out.values.reserve(rows.size() * t.RowSize());
  for (int64_t r : rows) out.values.insert(out.values.end(), t.Row(r), t.Row(r) + t.RowSize());
  return out;
}

std::vector<int32_t> TakeLabels(const std::vector<int32_t>& labels,
                                const std::vector<int64_t>& rows) {
  std::vector<int32_t> out;
  out.reserve(rows.size());
  for (int64_t r : rows) out.push_back(labels[r]);
  return out;
}

Dataset TakeDatasetRows(const Dataset& data, const std::vector<int64_t>& rows) {
  Dataset out;
  out.samples = TakeRows(data.samples, rows);
  if (data.is_text()) {
    out.texts.reserve(rows.size());
    for (int64_t r : rows) out.texts.push_back(data.texts[r]);
  }
  if (data.labelled()) out.labels = TakeLabels(data.labels, rows);
  out.class_names = data.class_names;
  out.notes = data.notes;
  return out;
}

std::vector<int64_t> StratifiedSample(const std::vector<int32_t>& labels, int64_t target,
                                      uint64_t seed) {
  const int64_t n = static_cast<int64_t>(labels.size());
  std::vector<int64_t> out;
  if (target >= n) {
    out.resize(n);
    for (int64_t i = 0; i < n; ++i) out[i] = i;
    return out;
  }
  std::map<int32_t, std::vector<int64_t>> by_class;
  for (int64_t i = 0; i < n; ++i) by_class[labels[i]].push_back(i);
  std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
  for (auto& [label, rows] : by_class) {
    const int64_t n_c = static_cast<int64_t>(rows.size());
    const int64_t share = std::llround(static_cast<double>(target) * n_c / n);
    const int64_t take = std::min(n_c, std::max<int64_t>(share, std::min<int64_t>(n_c, 2)));
    std::shuffle(rows.begin(), rows.end(), rng);
    out.insert(out.end(), rows.begin(), rows.begin() + take);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace modeldock::dock
