// The TorchScript alignment behind KnowledgeEncoder (contract in alignment.h).
#include "encoder/alignment.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "encoder/util_internal.h"

namespace modeldock::encoder {
namespace {

// The error line of a c10::Error first, without the C++ backtrace.
std::string ShortTorchMessage(const char* what) { return internal::LastLineFirst(what); }

absl::Status CheckEmbeddings(const Tensor& t, int embedding_dim, const char* what) {
  return internal::CheckEmbeddingMatrix(t, embedding_dim, what, "the alignment");
}

// The encode_model inputs for `grid` (layout in alignment.h).
absl::StatusOr<std::vector<c10::IValue>> GridInputs(const KnowledgeGrid& grid,
                                                    const Tensor& embeddings) {
  const int64_t k = grid.num_classes;
  const int64_t p = embeddings.Rows();
  const int64_t de = embeddings.shape[1];
  if (k <= 0 || static_cast<int64_t>(grid.nodes.size()) != k) {
    return absl::InvalidArgumentError(absl::StrCat("the knowledge grid has ", grid.nodes.size(),
                                                   " node lists for ", k, " classes"));
  }
  if (!grid.boundary.empty() && static_cast<int64_t>(grid.boundary.size()) != k) {
    return absl::InvalidArgumentError("the knowledge grid's boundary must be empty or K x K");
  }
  int64_t dn = 1, db = 1;
  for (int64_t i = 0; i < k; ++i) {
    if (grid.nodes[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("class ", i, " has no node samples"));
    }
    dn = std::max<int64_t>(dn, grid.nodes[i].size());
    if (grid.boundary.empty()) continue;
    if (static_cast<int64_t>(grid.boundary[i].size()) != k) {
      return absl::InvalidArgumentError("the knowledge grid's boundary must be empty or K x K");
    }
    for (int64_t j = 0; j < k; ++j) {
      if (j != i) db = std::max<int64_t>(db, grid.boundary[i][j].size());
    }
  }
  at::Tensor nodes = torch::zeros({k, dn, de});
  at::Tensor node_mask = torch::zeros({k, dn});
  at::Tensor boundary = torch::zeros({k, k, db, de});
  at::Tensor boundary_mask = torch::zeros({k, k, db});
  // Copies the embeddings of `indices` into consecutive rows of `dst` and sets their mask.
  auto fill = [&](const std::vector<int32_t>& indices, float* dst, float* mask) -> absl::Status {
    for (size_t s = 0; s < indices.size(); ++s) {
      const int32_t i = indices[s];
      if (i < 0 || i >= p) {
        return absl::InvalidArgumentError(
            absl::StrCat("grid index ", i, " outside the probe set of ", p, " samples"));
      }
      std::copy(embeddings.Row(i), embeddings.Row(i) + de, dst + s * de);
      mask[s] = 1.0f;
    }
    return absl::OkStatus();
  };
  for (int64_t i = 0; i < k; ++i) {
    absl::Status s = fill(grid.nodes[i], nodes.data_ptr<float>() + i * dn * de,
                          node_mask.data_ptr<float>() + i * dn);
    if (!s.ok()) return s;
    for (int64_t j = 0; j < k && !grid.boundary.empty(); ++j) {
      if (j == i) continue;
      const int64_t cell = i * k + j;
      s = fill(grid.boundary[i][j], boundary.data_ptr<float>() + cell * db * de,
               boundary_mask.data_ptr<float>() + cell * db);
      if (!s.ok()) return s;
    }
  }
  return std::vector<c10::IValue>{nodes, node_mask, boundary, boundary_mask};
}

// Mean embedding per class with samples, in class order: [C, De].
absl::StatusOr<at::Tensor> Prototypes(const Tensor& embeddings, const std::vector<int32_t>& labels,
                                      int num_classes) {
  const int64_t n = embeddings.Rows();
  const int64_t de = embeddings.shape[1];
  if (static_cast<int64_t>(labels.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("got ", labels.size(), " labels for ", n, " query embeddings"));
  }
  if (num_classes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be positive, got ", num_classes));
  }
  std::vector<double> sums(static_cast<size_t>(num_classes) * de, 0.0);
  std::vector<int64_t> counts(num_classes, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = labels[i];
    if (c < 0 || c >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", c, " of sample ", i, " outside 0..", num_classes - 1));
    }
    const float* row = embeddings.Row(i);
    for (int64_t j = 0; j < de; ++j) sums[c * de + j] += row[j];
    ++counts[c];
  }
  std::vector<float> values;
  for (int c = 0; c < num_classes; ++c) {
    if (counts[c] == 0) continue;
    for (int64_t j = 0; j < de; ++j) values.push_back(static_cast<float>(sums[c * de + j] / counts[c]));
  }
  if (values.empty()) return absl::InvalidArgumentError("the query has no samples");
  const int64_t rows = static_cast<int64_t>(values.size()) / de;
  return torch::tensor(values).reshape({rows, de});
}

class TorchScriptKnowledgeEncoder : public KnowledgeEncoder {
 public:
  TorchScriptKnowledgeEncoder(torch::jit::Module module, int dim, int embedding_dim,
                              std::string sha256)
      : module_(std::move(module)),
        dim_(dim),
        embedding_dim_(embedding_dim),
        sha256_(std::move(sha256)) {}

  int dim() const override { return dim_; }

  std::string Describe() const override {
    return absl::StrCat("torchscript-alignment(sha256=", sha256_, ", dim=", dim_,
                        ", embedding_dim=", embedding_dim_, ")");
  }

  absl::StatusOr<std::vector<float>> EncodeModel(const KnowledgeGrid& grid,
                                                 const Tensor& probe_embeddings) const override {
    if (absl::Status s = CheckEmbeddings(probe_embeddings, embedding_dim_, "probe"); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::vector<c10::IValue>> inputs = GridInputs(grid, probe_embeddings);
    if (!inputs.ok()) return inputs.status();
    return Run("encode_model", *std::move(inputs));
  }

  absl::StatusOr<std::vector<float>> EncodeQuery(const Tensor& query_embeddings,
                                                 const std::vector<int32_t>& labels,
                                                 int num_classes) const override {
    if (absl::Status s = CheckEmbeddings(query_embeddings, embedding_dim_, "query"); !s.ok()) {
      return s;
    }
    absl::StatusOr<at::Tensor> prototypes = Prototypes(query_embeddings, labels, num_classes);
    if (!prototypes.ok()) return prototypes.status();
    return Run("encode_query", {*prototypes});
  }

 private:
  // Runs a method and returns its L2-normalised output; FAILED_PRECONDITION if it raises or
  // returns anything but a finite, non-zero float vector of dim_.
  absl::StatusOr<std::vector<float>> Run(const char* method,
                                         std::vector<c10::IValue> inputs) const {
    std::vector<double> v;
    try {
      std::lock_guard<std::mutex> lock(mu_);
      c10::InferenceMode guard;
      const c10::IValue out = module_.get_method(method)(std::move(inputs));
      if (!out.isTensor()) {
        return absl::FailedPreconditionError(
            absl::StrCat(method, " returned a ", out.tagKind(), ", expected a float tensor"));
      }
      const at::Tensor& t = out.toTensor();
      if (!t.is_floating_point() || t.dim() != 1 || t.size(0) != dim_) {
        return absl::FailedPreconditionError(absl::StrCat(
            method, " returned a ", c10::toString(t.scalar_type()), " tensor of shape [",
            absl::StrJoin(t.sizes(), ", "), "], expected float [", dim_, "]"));
      }
      const at::Tensor d = t.to(torch::kFloat64).contiguous();
      v.assign(d.data_ptr<double>(), d.data_ptr<double>() + dim_);
    } catch (const c10::Error& e) {
      return absl::FailedPreconditionError(
          absl::StrCat(method, " raised an error: ", ShortTorchMessage(e.what_without_backtrace())));
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError(
          absl::StrCat(method, " raised an error: ", ShortTorchMessage(e.what())));
    }
    double norm = 0;
    for (double x : v) {
      if (!std::isfinite(x)) {
        return absl::FailedPreconditionError(absl::StrCat(method, " returned non-finite values"));
      }
      norm += x * x;
    }
    norm = std::sqrt(norm);
    if (norm == 0) return absl::FailedPreconditionError(absl::StrCat(method, " returned zero"));
    std::vector<float> result(dim_);
    for (int i = 0; i < dim_; ++i) result[i] = static_cast<float>(v[i] / norm);
    return result;
  }

  mutable std::mutex mu_;
  mutable torch::jit::Module module_;  // guarded by mu_ (methods run under it)
  const int dim_;
  const int embedding_dim_;
  const std::string sha256_;
};

// Runs both methods once on seeded data of the caller's embedding width (classes with 1 or 2
// nodes, empty and full boundary cells), so that a mismatch surfaces at load, not at the first
// registration.
absl::Status DummyCall(const KnowledgeEncoder& encoder, int embedding_dim) {
  std::mt19937_64 rng(20250101);
  constexpr int kProbe = 8;
  std::vector<float> values(static_cast<size_t>(kProbe) * embedding_dim);
  for (float& x : values) x = static_cast<float>((rng() >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  const Tensor embeddings({kProbe, embedding_dim}, values);
  KnowledgeGrid grid;
  grid.num_classes = 3;
  grid.nodes = {{0, 1}, {2, 3}, {4}};
  grid.boundary.assign(3, std::vector<std::vector<int32_t>>(3));
  grid.boundary[0][1] = grid.boundary[1][0] = {5, 6};
  grid.boundary[1][2] = grid.boundary[2][1] = {7};
  if (auto v = encoder.EncodeModel(grid, embeddings); !v.ok()) return v.status();
  if (auto v = encoder.EncodeQuery(embeddings, {0, 0, 1, 1, 2, 2, 2, 0}, 3); !v.ok()) {
    return v.status();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<KnowledgeEncoder>> LoadTorchScriptKnowledgeEncoder(
    const std::string& path, int embedding_dim) {
  if (embedding_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("embedding_dim must be positive, got ", embedding_dim));
  }
  absl::StatusOr<std::string> sha = Sha256::OfFile(path);
  if (!sha.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the alignment module ", path, ": ", sha.status().message()));
  }
  int dim = 0;
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
    module.eval();
    for (const char* method : {"encode_model", "encode_query"}) {
      if (!module.find_method(method).has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat("alignment module ", path, " has no method ", method));
      }
    }
    if (!module.hasattr("dim") || !module.attr("dim").isInt() || module.attr("dim").toInt() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "alignment module ", path, " needs a positive int attribute 'dim' (the vector width)"));
    }
    dim = static_cast<int>(module.attr("dim").toInt());
    if (module.hasattr("embedding_dim") && module.attr("embedding_dim").isInt() &&
        module.attr("embedding_dim").toInt() != embedding_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          "alignment ", path, " expects ", module.attr("embedding_dim").toInt(),
          "-d embeddings but the reference encoder gives ", embedding_dim, "-d"));
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot load the alignment module ", path,
                                                   ": ", ShortTorchMessage(e.what_without_backtrace())));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load the alignment module ", path, ": ", ShortTorchMessage(e.what())));
  }
  auto encoder = std::make_unique<TorchScriptKnowledgeEncoder>(std::move(module), dim,
                                                               embedding_dim, *std::move(sha));
  if (absl::Status s = DummyCall(*encoder, embedding_dim); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alignment module ", path, " fails on a seeded dummy grid with ", embedding_dim,
        "-d embeddings (does it expect another embedding width?): ", s.message()));
  }
  return std::unique_ptr<KnowledgeEncoder>(std::move(encoder));
}

}  // namespace modeldock::encoder
