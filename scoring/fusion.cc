#include "scoring/fusion.h"

#include <algorithm>
#include <cmath>

#include "scoring/proxy.h"

namespace modeldock::scoring {

std::vector<double> WeightedRankFusion(const std::vector<std::vector<double>>& lists,
                                       const std::vector<double>& weights) {
  if (lists.empty()) return {};
  const size_t n = lists[0].size();
  std::vector<double> weighted_sum(n, 0.0), weight_sum(n, 0.0);
  for (size_t m = 0; m < lists.size(); ++m) {
    std::vector<size_t> measured;
    std::vector<double> values;
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(lists[m][i])) continue;
      measured.push_back(i);
      values.push_back(lists[m][i]);
    }
    const std::vector<double> ranks = Ranks(values);
    for (size_t j = 0; j < measured.size(); ++j) {
      weighted_sum[measured[j]] += weights[m] * ranks[j] / static_cast<double>(measured.size());
      weight_sum[measured[j]] += weights[m];
    }
  }
  std::vector<double> fused(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    if (weight_sum[i] > 0) fused[i] = weighted_sum[i] / weight_sum[i];
  }
  return fused;
}

}  // namespace modeldock::scoring
