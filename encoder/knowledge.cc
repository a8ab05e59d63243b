// SelectGrid, the untrained set encoder and ClusterLabels: plain C++, no torch.
#include "encoder/knowledge.h"
#include "encoder/util_internal.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace modeldock::encoder {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Uniform in (0, 1] from 53 random bits; the standard distributions are implementation-defined,
// and the encoder's parameters must be the same everywhere (they define the index's space).
double Uniform01(std::mt19937_64& rng) {
  return static_cast<double>((rng() >> 11) + 1) * (1.0 / 9007199254740992.0);
}

// Standard normal by Box-Muller (one value per call, so the sequence is easy to reproduce).
double StandardNormal(std::mt19937_64& rng) {
  const double u1 = Uniform01(rng);
  const double u2 = Uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

// Scales `v` to unit length; a zero vector stays zero.
void Normalize(std::vector<double>* v) {
  double norm = 0;
  for (double x : *v) norm += x * x;
  norm = std::sqrt(norm);
  if (norm > 0) {
    for (double& x : *v) x /= norm;
  }
}

// ---------------------------------------------------------------------------------------------
// Untrained encoder: random Fourier features (Rahimi & Recht) of a Gaussian kernel. With
// phi(e) = sqrt(2/D) cos(W e + b), W ~ N(0, 1/sigma^2), b ~ U[0, 2 pi), E[<phi(a), phi(b)>] =
// exp(-|a - b|^2 / (2 sigma^2)), so the inner product of two normalised mean feature vectors is
// a normalised mean kernel similarity between the two sets.

class UntrainedEncoder : public KnowledgeEncoder {
 public:
  UntrainedEncoder(int embedding_dim, const UntrainedEncoderOptions& options)
      : embedding_dim_(embedding_dim), options_(options) {
    const int d = options_.dim;
    const int de = embedding_dim_;
    // G ~ N(0, 1) depends only on (seed, embedding_dim, dim); W = G / sigma.
    std::mt19937_64 rng(options_.seed);
    w_.resize(static_cast<size_t>(d) * de);
    for (double& x : w_) x = StandardNormal(rng) / options_.sigma;
    b_.resize(d);
    for (double& x : b_) x = 2.0 * kPi * Uniform01(rng);
  }

  int dim() const override { return options_.dim; }

  std::string Describe() const override {
    return absl::StrCat("untrained-rff-kme(embedding_dim=", embedding_dim_,
                        ", dim=", options_.dim, ", seed=", options_.seed,
                        ", sigma=", options_.sigma, ", node_weight=1, boundary_weight=",
                        options_.boundary_weight, ", rng=mt19937_64/box-muller)");
  }

  absl::StatusOr<std::vector<float>> EncodeModel(const KnowledgeGrid& grid,
                                                 const Tensor& probe_embeddings) const override {
    if (absl::Status s = CheckEmbeddings(probe_embeddings, "probe"); !s.ok()) return s;
    const int64_t p = probe_embeddings.Rows();
    std::vector<std::vector<double>> points;
    std::vector<double> weights;
    // Mean of the unit-normalised embeddings of `indices`, re-normalised.
    auto add_mean = [&](const std::vector<int32_t>& indices, double weight) -> absl::Status {
      if (indices.empty() || weight <= 0) return absl::OkStatus();
      std::vector<double> mean(embedding_dim_, 0.0);
      for (int32_t i : indices) {
        if (i < 0 || i >= p) {
          return absl::InvalidArgumentError(
              absl::StrCat("grid index ", i, " outside the probe set of ", p, " samples"));
        }
        std::vector<double> e = Row(probe_embeddings, i);
        Normalize(&e);
        for (int j = 0; j < embedding_dim_; ++j) mean[j] += e[j];
      }
      Normalize(&mean);
      points.push_back(std::move(mean));
      weights.push_back(weight);
      return absl::OkStatus();
    };
    for (const std::vector<int32_t>& nodes : grid.nodes) {
      if (absl::Status s = add_mean(nodes, 1.0); !s.ok()) return s;
    }
    // Each unordered pair once (boundary[j][i] mirrors boundary[i][j]).
    for (size_t i = 0; i < grid.boundary.size(); ++i) {
      for (size_t j = i + 1; j < grid.boundary[i].size(); ++j) {
        if (absl::Status s = add_mean(grid.boundary[i][j], options_.boundary_weight); !s.ok()) {
          return s;
        }
      }
    }
    if (points.empty()) return absl::InvalidArgumentError("the knowledge grid has no nodes");
    return MeanFeature(points, weights);
  }

  absl::StatusOr<std::vector<float>> EncodeQuery(const Tensor& query_embeddings,
                                                 const std::vector<int32_t>& labels,
                                                 int num_classes) const override {
    if (absl::Status s = CheckEmbeddings(query_embeddings, "query"); !s.ok()) return s;
    const int64_t n = query_embeddings.Rows();
    if (static_cast<int64_t>(labels.size()) != n) {
      return absl::InvalidArgumentError(
          absl::StrCat("got ", labels.size(), " labels for ", n, " query embeddings"));
    }
    if (num_classes <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("num_classes must be positive, got ", num_classes));
    }
    std::vector<std::vector<double>> sums(num_classes, std::vector<double>(embedding_dim_, 0.0));
    std::vector<int64_t> counts(num_classes, 0);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t c = labels[i];
      if (c < 0 || c >= num_classes) {
        return absl::InvalidArgumentError(
            absl::StrCat("label ", c, " of sample ", i, " outside 0..", num_classes - 1));
      }
      std::vector<double> e = Row(query_embeddings, i);
      Normalize(&e);
      for (int j = 0; j < embedding_dim_; ++j) sums[c][j] += e[j];
      ++counts[c];
    }
    std::vector<std::vector<double>> prototypes;
    for (int c = 0; c < num_classes; ++c) {
      if (counts[c] == 0) continue;
      Normalize(&sums[c]);
      prototypes.push_back(std::move(sums[c]));
    }
    if (prototypes.empty()) return absl::InvalidArgumentError("the query has no samples");
    return MeanFeature(prototypes, std::vector<double>(prototypes.size(), 1.0));
  }

 private:
  absl::Status CheckEmbeddings(const Tensor& t, const char* what) const {
    return internal::CheckEmbeddingMatrix(t, embedding_dim_, what, "the encoder");
  }

  std::vector<double> Row(const Tensor& t, int64_t i) const {
    const float* r = t.Row(i);
    return std::vector<double>(r, r + embedding_dim_);
  }

  // L2-normalised weighted mean of phi over the set.
  absl::StatusOr<std::vector<float>> MeanFeature(const std::vector<std::vector<double>>& points,
                                                 const std::vector<double>& weights) const {
    const int d = options_.dim;
    const double scale = std::sqrt(2.0 / d);
    std::vector<double> acc(d, 0.0);
    for (size_t s = 0; s < points.size(); ++s) {
      for (int r = 0; r < d; ++r) {
        const double* w = w_.data() + static_cast<size_t>(r) * embedding_dim_;
        double dot = b_[r];
        for (int j = 0; j < embedding_dim_; ++j) dot += w[j] * points[s][j];
        acc[r] += weights[s] * scale * std::cos(dot);
      }
    }
    Normalize(&acc);
    std::vector<float> out(acc.begin(), acc.end());
    if (std::all_of(out.begin(), out.end(), [](float x) { return x == 0.0f; })) {
      return absl::InternalError("the knowledge vector is zero");
    }
    return out;
  }

  int embedding_dim_;
  UntrainedEncoderOptions options_;
  std::vector<double> w_;  // [dim, embedding_dim]
  std::vector<double> b_;  // [dim]
};

}  // namespace

KnowledgeGrid SelectGrid(const Tensor& probe_logits, const GridOptions& options) {
  KnowledgeGrid grid;
  if (probe_logits.shape.size() != 2 || !probe_logits.IsConsistent()) return grid;
  const int64_t p = probe_logits.shape[0];
  const int k = static_cast<int>(probe_logits.shape[1]);
  grid.num_classes = k;
  grid.nodes.assign(k, {});
  grid.boundary.assign(k, std::vector<std::vector<int32_t>>(k));
  if (p == 0 || k == 0) return grid;

  // Softmax in double, and each sample's top-2 classes (ties: lower class index first).
  std::vector<double> prob(p * k);
  std::vector<int> top1(p), top2(p, -1);
  for (int64_t i = 0; i < p; ++i) {
    const float* z = probe_logits.Row(i);
    double* q = prob.data() + i * k;
    const double zmax = *std::max_element(z, z + k);
    double total = 0;
    for (int c = 0; c < k; ++c) total += q[c] = std::exp(static_cast<double>(z[c]) - zmax);
    for (int c = 0; c < k; ++c) q[c] /= total;
    int a = 0;
    for (int c = 1; c < k; ++c) {
      if (q[c] > q[a]) a = c;
    }
    int b = -1;
    for (int c = 0; c < k; ++c) {
      if (c != a && (b < 0 || q[c] > q[b])) b = c;
    }
    top1[i] = a;
    top2[i] = b;
  }

  // Nodes: samples predicted as c by confidence, then (if too few) the other samples most
  // probable for c, so that every class has nodes.
  const int64_t want_nodes = std::min<int64_t>(std::max(0, options.nodes_per_class), p);
  std::vector<int32_t> order(p);
  for (int c = 0; c < k; ++c) {
    std::iota(order.begin(), order.end(), 0);
    auto before = [&](int32_t x, int32_t y) {
      const bool px = top1[x] == c, py = top1[y] == c;
      if (px != py) return px;
      const double qx = prob[x * k + c], qy = prob[y * k + c];
      if (qx != qy) return qx > qy;
      return x < y;
    };
    std::partial_sort(order.begin(), order.begin() + want_nodes, order.end(), before);
    grid.nodes[c].assign(order.begin(), order.begin() + want_nodes);
  }

  // Boundary: samples whose top-2 classes are {i, j}, smallest margin first.
  if (k >= 2 && options.boundary_per_pair > 0) {
    std::vector<std::vector<int32_t>> buckets(static_cast<size_t>(k) * k);
    for (int64_t i = 0; i < p; ++i) {
      const int lo = std::min(top1[i], top2[i]), hi = std::max(top1[i], top2[i]);
      buckets[static_cast<size_t>(lo) * k + hi].push_back(static_cast<int32_t>(i));
    }
    auto margin = [&](int32_t i) { return prob[i * k + top1[i]] - prob[i * k + top2[i]]; };
    for (int lo = 0; lo < k; ++lo) {
      for (int hi = lo + 1; hi < k; ++hi) {
        std::vector<int32_t>& b = buckets[static_cast<size_t>(lo) * k + hi];
        if (b.empty()) continue;
        const size_t keep = std::min<size_t>(options.boundary_per_pair, b.size());
        std::partial_sort(b.begin(), b.begin() + keep, b.end(), [&](int32_t x, int32_t y) {
          const double mx = margin(x), my = margin(y);
          if (mx != my) return mx < my;
          return x < y;
        });
        b.resize(keep);
        grid.boundary[lo][hi] = b;
        grid.boundary[hi][lo] = b;
      }
    }
  }
  return grid;
}

std::unique_ptr<KnowledgeEncoder> MakeUntrainedEncoder(int embedding_dim,
                                                       const UntrainedEncoderOptions& options) {
  // Out-of-range parameters fall back to the defaults (Describe() shows what is used).
  UntrainedEncoderOptions o = options;
  const UntrainedEncoderOptions defaults;
  if (o.dim <= 0) o.dim = defaults.dim;
  if (!(o.sigma > 0) || !std::isfinite(o.sigma)) o.sigma = defaults.sigma;
  if (!(o.boundary_weight >= 0) || !std::isfinite(o.boundary_weight)) {
    o.boundary_weight = defaults.boundary_weight;
  }
  return std::make_unique<UntrainedEncoder>(std::max(1, embedding_dim), o);
}

std::vector<int32_t> ClusterLabels(const Tensor& embeddings, int k, uint64_t seed) {
  const int64_t n = embeddings.Rows();
  if (n == 0 || !embeddings.IsConsistent()) return {};
  k = static_cast<int>(std::min<int64_t>(std::max(1, k), n));
  const int64_t d = embeddings.RowSize();
  if (d == 0) return std::vector<int32_t>(n, 0);
  auto dist2 = [&](const float* a, const double* c) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) {
      const double t = a[j] - c[j];
      s += t * t;
    }
    return s;
  };

  // k-means++ seeding.
  std::mt19937_64 rng(seed);
  std::vector<double> centers;
  centers.reserve(k * d);
  auto add_center = [&](int64_t i) {
    const float* r = embeddings.Row(i);
    centers.insert(centers.end(), r, r + d);
  };
  add_center(std::min<int64_t>(static_cast<int64_t>(Uniform01(rng) * n), n - 1));
  std::vector<double> nearest(n, std::numeric_limits<double>::infinity());
  for (int c = 1; c < k; ++c) {
    const double* last = centers.data() + (c - 1) * d;
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      nearest[i] = std::min(nearest[i], dist2(embeddings.Row(i), last));
      total += nearest[i];
    }
    if (total <= 0) break;  // fewer distinct points than k
    const double target = Uniform01(rng) * total;
    double cumulative = 0;
    int64_t pick = n - 1;
    for (int64_t i = 0; i < n; ++i) {
      cumulative += nearest[i];
      if (cumulative >= target && nearest[i] > 0) {
        pick = i;
        break;
      }
    }
    add_center(pick);
  }
  k = static_cast<int>(centers.size() / d);

  // Lloyd iterations until no assignment changes; an emptied cluster keeps its center.
  std::vector<int32_t> assign(n, -1);
  for (int iter = 0; iter < 100; ++iter) {
    bool changed = false;
    for (int64_t i = 0; i < n; ++i) {
      int best = 0;
      double best_d = dist2(embeddings.Row(i), centers.data());
      for (int c = 1; c < k; ++c) {
        const double dc = dist2(embeddings.Row(i), centers.data() + c * d);
        if (dc < best_d) {
          best_d = dc;
          best = c;
        }
      }
      if (assign[i] != best) {
        assign[i] = best;
        changed = true;
      }
    }
    if (!changed) break;
    std::vector<double> sums(static_cast<size_t>(k) * d, 0.0);
    std::vector<int64_t> counts(k, 0);
    for (int64_t i = 0; i < n; ++i) {
      const float* r = embeddings.Row(i);
      double* s = sums.data() + assign[i] * d;
      for (int64_t j = 0; j < d; ++j) s[j] += r[j];
      ++counts[assign[i]];
    }
    for (int c = 0; c < k; ++c) {
      if (counts[c] == 0) continue;
      for (int64_t j = 0; j < d; ++j) centers[c * d + j] = sums[c * d + j] / counts[c];
    }
  }

  // Renumber by first appearance so labels do not depend on the seeding order.
  std::vector<int32_t> relabel(k, -1);
  int32_t next = 0;
  for (int32_t& a : assign) {
    if (relabel[a] < 0) relabel[a] = next++;
    a = relabel[a];
  }
  return assign;
}

namespace internal {

std::string LastLineFirst(std::string message) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  const size_t newline = message.rfind('\n');
  if (newline == std::string::npos) return message;
  return absl::StrCat(message.substr(newline + 1), "\n", message.substr(0, newline));
}

absl::Status CheckEmbeddingMatrix(const Tensor& t, int64_t width, const char* what,
                                  const char* owner) {
  if (t.shape.size() != 2 || !t.IsConsistent()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " embeddings must be a [N, D] tensor"));
  }
  if (t.shape[1] != width) {
    return absl::InvalidArgumentError(absl::StrCat(what, " embeddings have width ", t.shape[1],
                                                   ", ", owner, " expects ", width));
  }
  return absl::OkStatus();
}

}  // namespace internal
Tensor FeatureGridLogits(const Tensor& features, int k) {
  const int64_t n = features.Rows();
  const int64_t d = features.RowSize();
  Tensor normalised = features;
  normalised.shape = {n, d};
  for (int64_t i = 0; i < n; ++i) {
    float* row = normalised.values.data() + i * d;
    double norm = 0;
    for (int64_t j = 0; j < d; ++j) norm += static_cast<double>(row[j]) * row[j];
    norm = std::sqrt(norm);
    if (norm > 0) {
      for (int64_t j = 0; j < d; ++j) row[j] = static_cast<float>(row[j] / norm);
    }
  }
  std::vector<int32_t> labels = ClusterLabels(normalised, k);
  const int clusters = labels.empty() ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
  std::vector<double> centres(static_cast<size_t>(clusters) * d, 0.0);
  std::vector<int64_t> counts(clusters, 0);
  for (int64_t i = 0; i < n; ++i) {
    ++counts[labels[i]];
    for (int64_t j = 0; j < d; ++j) centres[labels[i] * d + j] += normalised.values[i * d + j];
  }
  for (int c = 0; c < clusters; ++c) {
    for (int64_t j = 0; j < d; ++j) centres[c * d + j] /= std::max<int64_t>(counts[c], 1);
  }
  Tensor logits({n, clusters}, {});
  logits.values.resize(static_cast<size_t>(n) * clusters);
  for (int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < clusters; ++c) {
      double dist = 0;
      for (int64_t j = 0; j < d; ++j) {
        const double t = normalised.values[i * d + j] - centres[c * d + j];
        dist += t * t;
      }
      logits.values[i * clusters + c] = static_cast<float>(-dist);
    }
  }
  return logits;
}

}  // namespace modeldock::encoder
