#include "scoring/proxy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "scoring/linalg.h"

namespace modeldock::scoring {
namespace {

// Rows scaled to unit L2 norm (zero rows stay zero), as float64.
internal::Matrix UnitRows(const Tensor& t, int64_t begin, int64_t end) {
  const int64_t d = t.RowSize();
  internal::Matrix m(end - begin, d);
  for (int64_t i = begin; i < end; ++i) {
    const float* row = t.Row(i);
    double norm = 0;
    for (int64_t j = 0; j < d; ++j) norm += static_cast<double>(row[j]) * row[j];
    norm = norm > 0 ? 1.0 / std::sqrt(norm) : 0.0;
    for (int64_t j = 0; j < d; ++j) m.At(i - begin, j) = row[j] * norm;
  }
  return m;
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> NearestProbes(const Tensor& query_keys,
                                                   const Tensor& probe_keys, int k) {
  if (!query_keys.IsConsistent() || !probe_keys.IsConsistent() || query_keys.shape.size() < 2 ||
      probe_keys.shape.size() < 2 || query_keys.RowSize() != probe_keys.RowSize()) {
    return absl::InvalidArgumentError(
        absl::StrCat("proxy keys must be [N, D] and [P, D]; got ", ShapeToString(query_keys.shape),
                     " and ", ShapeToString(probe_keys.shape)));
  }
  const int64_t n = query_keys.Rows(), p = probe_keys.Rows();
  if (k < 1 || k > p) {
    return absl::InvalidArgumentError(absl::StrCat("k must be in 1..", p, "; got ", k));
  }
  const internal::Matrix probes = UnitRows(probe_keys, 0, p);
  std::vector<int32_t> out(static_cast<size_t>(n * k));
  std::vector<int32_t> order(static_cast<size_t>(p));
  constexpr int64_t kBlock = 256;  // bounds the [block, P] similarity matrix
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t end = std::min(n, begin + kBlock);
    const internal::Matrix sim = internal::MulABt(UnitRows(query_keys, begin, end), probes);
    for (int64_t i = begin; i < end; ++i) {
      const double* s = sim.Row(i - begin);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [s](int32_t a, int32_t b) {
        return s[a] > s[b] || (s[a] == s[b] && a < b);
      });
      std::copy(order.begin(), order.begin() + k, out.begin() + i * k);
    }
  }
  return out;
}

Tensor GatherProxy(const Tensor& probe_values, const std::vector<int32_t>& neighbours, int k) {
  const int64_t d = probe_values.RowSize();
  const int64_t n = static_cast<int64_t>(neighbours.size()) / k;
  Tensor out({n, d}, std::vector<float>(static_cast<size_t>(n * d), 0.0f));
  std::vector<double> sum(static_cast<size_t>(d));
  for (int64_t i = 0; i < n; ++i) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int j = 0; j < k; ++j) {
      const float* row = probe_values.Row(neighbours[static_cast<size_t>(i * k + j)]);
      for (int64_t c = 0; c < d; ++c) sum[c] += row[c];
    }
    for (int64_t c = 0; c < d; ++c) out.values[i * d + c] = static_cast<float>(sum[c] / k);
  }
  return out;
}

Tensor ClassProbabilities(const Tensor& logits) {
  const int64_t n = logits.Rows(), k = logits.RowSize();
  internal::Matrix m(n, k);
  for (int64_t i = 0; i < n * k; ++i) m.data[i] = logits.values[i];
  internal::SoftmaxRows(m);
  Tensor out({n, k}, std::vector<float>(static_cast<size_t>(n * k)));
  for (int64_t i = 0; i < n * k; ++i) out.values[i] = static_cast<float>(m.data[i]);
  return out;
}

absl::StatusOr<Tensor> CompressFeatures(const Tensor& features, int dim) {
  if (!features.IsConsistent() || features.shape.size() != 2 || features.Rows() < 2 || dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CompressFeatures needs [P >= 2, D] features and dim >= 1; got ",
        ShapeToString(features.shape), ", dim ", dim));
  }
  const int64_t p = features.Rows(), d = features.RowSize();
  internal::Matrix x(p, d);
  for (int64_t i = 0; i < p * d; ++i) x.data[i] = features.values[i];
  auto projected = internal::PrincipalComponents(std::move(x), dim);
  if (!projected.ok()) return projected.status();
  const int64_t keep = projected->cols;
  Tensor out({p, keep}, std::vector<float>(static_cast<size_t>(p * keep)));
  for (size_t i = 0; i < out.values.size(); ++i) out.values[i] = static_cast<float>(projected->data[i]);
  return out;
}

Tensor DropNullComponents(const Tensor& compressed) {
  const int64_t p = compressed.Rows(), d = compressed.RowSize();
  if (p == 0 || d <= 1) return compressed;
  std::vector<double> sum_squares(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < p; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      const double v = compressed.values[i * d + j];
      sum_squares[j] += v * v;
    }
  }
  int64_t keep = 1;
  while (keep < d && sum_squares[keep] > 1e-10 * sum_squares[0]) ++keep;
  if (keep == d) return compressed;
  Tensor out({p, keep}, std::vector<float>(static_cast<size_t>(p * keep)));
  for (int64_t i = 0; i < p; ++i) {
    std::copy_n(compressed.values.begin() + i * d, keep, out.values.begin() + i * keep);
  }
  return out;
}

std::vector<double> Ranks(const std::vector<double>& values) {
  const size_t n = values.size();
  auto key = [&](size_t i) { return std::isfinite(values[i]) ? values[i] : -HUGE_VAL; };
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  std::vector<double> ranks(n);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && key(order[j + 1]) == key(order[i])) ++j;
    const double mean_rank = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t t = i; t <= j; ++t) ranks[order[t]] = mean_rank;
    i = j + 1;
  }
  return ranks;
}

std::vector<double> RankFusion(const std::vector<std::vector<double>>& score_lists) {
  if (score_lists.empty()) return {};
  std::vector<double> fused(score_lists[0].size(), 0.0);
  for (const auto& list : score_lists) {
    const std::vector<double> r = Ranks(list);
    for (size_t i = 0; i < fused.size(); ++i) fused[i] += r[i] / static_cast<double>(score_lists.size());
  }
  return fused;
}

}  // namespace modeldock::scoring
