// TMI (Xu & Kang, ICCV 2023): class-conditional differential entropy by the Kozachenko-Leonenko
// kNN estimator under the L-infinity norm. See ../shared/METHODS.md.
#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissException.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "scoring/internal.h"
#include "scoring/metrics.h"

namespace modeldock::scoring {
namespace {

constexpr double kEulerGamma = 0.57721566490153286061;
// Distances below this are raised to it (the reference code's min_dist = 1.0): it keeps
// log(2 r) bounded for duplicates and tightly clustered features.
constexpr double kMinDistance = 1.0;

// Digamma at a positive integer: psi(n) = H_{n-1} - gamma.
double DigammaInt(int64_t n) {
  double harmonic = 0.0;
  for (int64_t j = 1; j < n; ++j) harmonic += 1.0 / static_cast<double>(j);
  return harmonic - kEulerGamma;
}

double LinfDistance(const double* a, const double* b, int64_t d) {
  double m = 0.0;
  for (int64_t j = 0; j < d; ++j) m = std::max(m, std::abs(a[j] - b[j]));
  return m;
}

// Sum over the class's samples of log(2 max(r_i, 1)), r_i = L-inf distance to the k-th nearest
// other sample of the class. FAISS finds the k+1 nearest (the sample itself among them) in
// float32; the distances are then recomputed in float64 from the centred features.
double SumLogDistances(const internal::Matrix& x, const std::vector<int64_t>& members, int k) {
  const int64_t n = static_cast<int64_t>(members.size());
  const int64_t d = x.cols;
  std::vector<float> points(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    const double* row = x.Row(members[i]);
    for (int64_t j = 0; j < d; ++j) points[i * d + j] = static_cast<float>(row[j]);
  }
  faiss::IndexFlat index(d, faiss::METRIC_Linf);
  index.add(n, points.data());
  const int64_t kk = k + 1;
  std::vector<float> distances(static_cast<size_t>(n * kk));
  std::vector<faiss::Index::idx_t> ids(static_cast<size_t>(n * kk));
  index.search(n, points.data(), kk, distances.data(), ids.data());

  double sum = 0.0;
  std::vector<double> candidates;
  for (int64_t i = 0; i < n; ++i) {
    candidates.clear();
    for (int64_t r = 0; r < kk; ++r) {
      const faiss::Index::idx_t id = ids[i * kk + r];
      // Drop the sample itself; with duplicates it may be missing from the list, in which case
      // all k+1 neighbours are at the same (zero) distance anyway.
      if (id == i || id < 0) continue;
      candidates.push_back(LinfDistance(x.Row(members[i]), x.Row(members[id]), d));
    }
    std::sort(candidates.begin(), candidates.end());
    const double r_k = candidates[static_cast<size_t>(k - 1)];
    sum += std::log(2.0 * std::max(r_k, kMinDistance));
  }
  return sum;
}

}  // namespace

// Choices where METHODS.md is silent:
// - classes with n_c <= k are left out of both the sum and the mean (the reference code counts
//   empty and single-sample classes as 0 in the mean and drops 2..k-sample ones as non-finite);
// - if no class has more than k samples the query is rejected with INVALID_ARGUMENT.
absl::StatusOr<double> Tmi(const Tensor& features, const std::vector<int32_t>& labels,
                           int num_classes, const TmiOptions& options) {
  if (options.k < 1) {
    return absl::InvalidArgumentError(absl::StrCat("TMI needs k >= 1, got ", options.k));
  }
  auto data = internal::Prepare(features, labels, num_classes, "features");
  if (!data.ok()) return data.status();
  internal::Matrix& x = data->x;
  internal::CentreColumns(x);  // global centring only: no scaling, no normalisation

  const int64_t n = x.rows;
  const double d = static_cast<double>(x.cols);
  const int k = options.k;
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(data->num_classes()));
  for (int64_t i = 0; i < n; ++i) members[data->labels[i]].push_back(i);

  const double psi_k = DigammaInt(k);
  double total = 0.0;
  int used = 0;
  try {
    for (const std::vector<int64_t>& m : members) {
      const int64_t n_c = static_cast<int64_t>(m.size());
      if (n_c <= k) continue;
      const double h_c =
          -psi_k + DigammaInt(n_c) + d / static_cast<double>(n_c) * SumLogDistances(x, m, k);
      total += static_cast<double>(n_c) / static_cast<double>(n) * h_c;
      ++used;
    }
  } catch (const faiss::FaissException& e) {
    return absl::InternalError(absl::StrCat("TMI kNN search failed: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("TMI kNN search failed: ", e.what()));
  }
  if (used == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("TMI needs a class with more than k = ", k, " samples"));
  }
  return total / used;
}

}  // namespace modeldock::scoring
