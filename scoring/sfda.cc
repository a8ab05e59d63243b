// SFDA (Shao et al., ECCV 2022; TencentARC/SFDA metrics.py): regularised Fisher discriminant
// fit, ConfMix self-challenge, refit; score = mean p(y_i | x_i).
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "scoring/internal.h"
#include "scoring/metrics.h"

namespace modeldock::scoring {
namespace {

constexpr int kPowerIterations = 3;
constexpr double kMinShrinkage = 1e-10;

// The reference's estimate of the largest eigenvalue of a symmetric PSD A: a few power steps
// from A's row sums, returning x^T A y for the last two normalised iterates.
double LargestEigenvalueEstimate(const internal::Matrix& a) {
  const int64_t n = a.rows;
  auto mul = [&](const std::vector<double>& v) {
    std::vector<double> out(static_cast<size_t>(n), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const double* row = a.Row(i);
      double s = 0.0;
      for (int64_t j = 0; j < n; ++j) s += row[j] * v[j];
      out[i] = s;
    }
    return out;
  };
  auto normalise = [](std::vector<double>& v) {
    double norm = 0.0;
    for (double e : v) norm += e * e;
    norm = std::sqrt(norm);
    if (norm == 0.0) return false;
    for (double& e : v) e /= norm;
    return true;
  };
  std::vector<double> x(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) x[i] += a.At(i, j);
  }
  std::vector<double> y;
  for (int it = 0; it < kPowerIterations; ++it) {
    y = mul(x);
    if (!normalise(y)) return 0.0;
    x = mul(y);
    if (!normalise(x)) return 0.0;
  }
  const std::vector<double> ay = mul(y);
  double result = 0.0;
  for (int64_t i = 0; i < n; ++i) result += x[i] * ay[i];
  return result;
}

struct FisherFit {
  internal::Matrix prob;   // [N, K] softmax of the discriminant scores
  internal::Matrix means;  // [K, D] class means of the fitted features
  double shrinkage = 0.0;
};

// One regularised LDA fit and its posteriors on the same samples. shrinkage < 0 picks the
// reference's adaptive strength max(exp(-5 lambda_max(Sw)), 1e-10).
//
// The reference solves the generalised eigenproblem Sb v = l Sw' v (Sw' = shrunk within-class
// covariance) and keeps ALL eigenvectors, so coef = means V V^T = means Sw'^{-1}: the between-
// class scatter cancels and a Cholesky solve with Sw' gives the same classifier.
absl::StatusOr<FisherFit> FitAndPredict(const internal::Matrix& x,
                                        const internal::LabelledData& data, double shrinkage) {
  const int64_t n = x.rows;
  const int64_t d = x.cols;
  const int num_c = data.num_classes();
  FisherFit fit;
  fit.means = internal::Matrix(num_c, d);
  for (int64_t i = 0; i < n; ++i) {
    double* m = fit.means.Row(data.labels[i]);
    const double* row = x.Row(i);
    for (int64_t j = 0; j < d; ++j) m[j] += row[j];
  }
  for (int c = 0; c < num_c; ++c) {
    for (int64_t j = 0; j < d; ++j) fit.means.At(c, j) /= static_cast<double>(data.counts[c]);
  }
  // Sw = sum_c prior_c Cov_c (biased) = (1/N) sum_i (x_i - m_{y_i})(x_i - m_{y_i})^T.
  internal::Matrix within(n, d);
  for (int64_t i = 0; i < n; ++i) {
    const double* row = x.Row(i);
    const double* m = fit.means.Row(data.labels[i]);
    double* w = within.Row(i);
    for (int64_t j = 0; j < d; ++j) w[j] = row[j] - m[j];
  }
  internal::Matrix sw = internal::Gram(within, 1.0 / static_cast<double>(n));
  if (shrinkage < 0.0) {
    shrinkage = std::max(std::exp(-5.0 * LargestEigenvalueEstimate(sw)), kMinShrinkage);
  }
  fit.shrinkage = shrinkage;
  double mu = 0.0;
  for (int64_t j = 0; j < d; ++j) mu += sw.At(j, j);
  mu /= static_cast<double>(d);
  for (double& v : sw.data) v *= 1.0 - shrinkage;
  for (int64_t j = 0; j < d; ++j) sw.At(j, j) += shrinkage * mu;

  auto coef = internal::SolveSpd(sw, fit.means);  // [K, D], row c = Sw'^{-1} m_c
  if (!coef.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SFDA: regularised within-class covariance is singular (features without within-class "
        "variance?): ",
        coef.status().message()));
  }
  std::vector<double> intercept(static_cast<size_t>(num_c));
  for (int c = 0; c < num_c; ++c) {
    double dot = 0.0;
    for (int64_t j = 0; j < d; ++j) dot += fit.means.At(c, j) * coef->At(c, j);
    intercept[c] =
        -0.5 * dot + std::log(static_cast<double>(data.counts[c]) / static_cast<double>(n));
  }
  fit.prob = internal::MulABt(x, *coef);
  for (int64_t i = 0; i < n; ++i) {
    double* row = fit.prob.Row(i);
    for (int c = 0; c < num_c; ++c) row[c] += intercept[c];
    const double top = *std::max_element(row, row + num_c);
    double sum = 0.0;
    for (int c = 0; c < num_c; ++c) {
      row[c] = std::exp(row[c] - top);
      sum += row[c];
    }
    for (int c = 0; c < num_c; ++c) row[c] /= sum;
  }
  return fit;
}

}  // namespace

// Choices where METHODS.md is silent (as in the reference code unless said otherwise):
// - the first fit picks the shrinkage max(exp(-5 lambda), 1e-10), lambda = 3-step power
//   estimate of the largest eigenvalue of Sw; the refit reuses it;
// - ConfMix: p_i = softmax over classes of the first fit's probabilities (the reference's
//   "softening"), taken at the true class; x_i <- p_i x_i + (1 - p_i) o_{y_i}, where o_c is the
//   mean of the other classes' means (first-fit means);
// - the score is mean_i p(y_i | x_i) after the refit, without the log;
// - classes without samples are dropped (the reference would misindex them).
// The result is only as good as Sw' is conditioned: with N - K < D and a tiny shrinkage the
// solve (like the reference's eigh) is dominated by round-off.
absl::StatusOr<double> Sfda(const Tensor& features, const std::vector<int32_t>& labels,
                            int num_classes) {
  auto data = internal::Prepare(features, labels, num_classes, "features");
  if (!data.ok()) return data.status();
  const internal::Matrix& x = data->x;
  const int64_t n = x.rows;
  const int64_t d = x.cols;
  const int num_c = data->num_classes();

  auto first = FitAndPredict(x, *data, -1.0);
  if (!first.ok()) return first.status();

  std::vector<double> sum_means(static_cast<size_t>(d), 0.0);
  for (int c = 0; c < num_c; ++c) {
    for (int64_t j = 0; j < d; ++j) sum_means[j] += first->means.At(c, j);
  }
  internal::Matrix mixed(n, d);
  for (int64_t i = 0; i < n; ++i) {
    const int y = data->labels[i];
    const double* prob = first->prob.Row(i);
    double soft_sum = 0.0;
    for (int c = 0; c < num_c; ++c) soft_sum += std::exp(prob[c]);
    const double p = std::exp(prob[y]) / soft_sum;
    const double* row = x.Row(i);
    double* out = mixed.Row(i);
    for (int64_t j = 0; j < d; ++j) {
      const double outer = (sum_means[j] - first->means.At(y, j)) / (num_c - 1);
      out[j] = p * row[j] + (1.0 - p) * outer;
    }
  }

  auto second = FitAndPredict(mixed, *data, first->shrinkage);
  if (!second.ok()) return second.status();
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += second->prob.At(i, data->labels[i]);
  return total / static_cast<double>(n);
}

}  // namespace modeldock::scoring
