// Stage-1 index speed: modeldock::index::VectorIndex ("Flat" and "HNSW32") at 10^4, 10^5 and
// 10^6 synthetic knowledge vectors.
//
//   index_bench --benchmark_out=index.json --benchmark_out_format=json
//   index_bench --sizes=10000,100000 --ef_search=128 --benchmark_filter=HNSW
//
// Data: L2-normalised 256-d vectors from a seeded mixture of 300 Gaussian clusters with random
// weights and spreads (real knowledge vectors cluster by source task and architecture; uniform
// random vectors would make HNSW look better than it is). Queries are fresh draws from the same
// mixture, never indexed vectors.
//
// For every size and index the benchmarks run in this order (Google Benchmark keeps the
// registration order):
//   Build/<index>/<n>          n Upserts through the public API (one vector per call, as the
//                              dock did before UpsertBatch), 1 iteration; counters: vectors/s,
//                              process RSS after.
//   BuildBatch/<index>/<n>     one UpsertBatch of the n vectors (one FAISS add, OpenMP-parallel
//                              in FAISS; the dock's rebuild from stored vectors), 1 iteration;
//                              the (id, vector) list is made before the clock starts; CPU time
//                              is the whole process's (all OpenMP threads). Counters
//                              as Build, plus recall@10 (and filtered recall@10) of the
//                              batch-built index against the Flat answers. If Build/<index>/<n>
//                              did not run (e.g. --benchmark_filter leaves it out) the
//                              batch-built index is the one Search/SearchFiltered measure.
//   Search/<index>/<n>         Search(query, k=10), queries cycled from a pool of 1000;
//                              HNSW also reports recall@10 against the Flat index's exact answer
//                              over 200 queries.
//   SearchFiltered/<index>/<n> the same with an allowed set holding 25% of the ids (fixed,
//                              seeded), recall@10 against an exact scan of that subset.
// The Flat index of a size is kept until the HNSW index of that size has been measured (it
// provides the exact answers), then both are freed. The 10^6 HNSW build one vector per call
// takes over 90 minutes; to measure HNSW at 10^6 through the batch only:
//   index_bench --sizes=1000000 --factories=Flat,HNSW32
//     --benchmark_filter='Build/Flat/|BuildBatch/HNSW32/|Search|Release'
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "benchmark/benchmark.h"
#include "index/vector_index.h"

namespace modeldock::index {
namespace {

constexpr int kDim = 256;
constexpr int kClusters = 300;
constexpr int kTopK = 10;
constexpr int kQueryPool = 1000;
constexpr int kRecallQueries = 200;
constexpr double kAllowedFraction = 0.25;
constexpr uint32_t kDataSeed = 20240601;
constexpr uint32_t kQuerySeed = 7;
constexpr uint32_t kFilterSeed = 11;

// Command-line settings (parsed before Google Benchmark's own flags).
struct Settings {
  std::vector<int64_t> sizes = {10000, 100000, 1000000};
  int ef_search = 128;
  std::vector<std::string> factories = {"Flat", "HNSW32"};
};
Settings& GetSettings() {
  static Settings settings;
  return settings;
}

// A seeded mixture of Gaussian clusters on the unit sphere.
class Mixture {
 public:
  explicit Mixture(uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    centers_.resize(kClusters);
    for (auto& c : centers_) {
      c.resize(kDim);
      for (float& x : c) x = normal(rng);
      Normalize(c);
    }
    // Per-dimension spread 0.02..0.08: noise norm 0.32..1.28 against a unit center, from tight
    // families of near-identical models to loose ones.
    for (int i = 0; i < kClusters; ++i) spread_.push_back(0.02 + 0.06 * uniform(rng));
    std::vector<double> weights;
    for (int i = 0; i < kClusters; ++i) weights.push_back(0.1 + uniform(rng));
    pick_ = std::discrete_distribution<int>(weights.begin(), weights.end());
  }

  // Fills `out` (n x kDim, row-major) with draws seeded by `seed`.
  void Sample(uint32_t seed, int64_t n, std::vector<float>* out) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    out->resize(static_cast<size_t>(n) * kDim);
    for (int64_t i = 0; i < n; ++i) {
      const int c = pick_(rng);
      float* v = out->data() + i * kDim;
      for (int d = 0; d < kDim; ++d) {
        v[d] = centers_[c][d] + static_cast<float>(spread_[c]) * normal(rng);
      }
      NormalizeRow(v);
    }
  }

 private:
  static void Normalize(std::vector<float>& v) { NormalizeRow(v.data()); }
  static void NormalizeRow(float* v) {
    double norm = 0;
    for (int d = 0; d < kDim; ++d) norm += static_cast<double>(v[d]) * v[d];
    const float inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (int d = 0; d < kDim; ++d) v[d] *= inv;
  }

  std::vector<std::vector<float>> centers_;
  std::vector<double> spread_;
  std::discrete_distribution<int> pick_;
};

std::string Id(int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "model-%08lld", static_cast<long long>(i));
  return buf;
}

double RssMiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  }
  return 0;
}

// Everything kept for one size.
struct SizeState {
  std::vector<float> data;  // freed after the last build of this size (or at Release)
  std::vector<std::vector<float>> queries;
  std::unordered_set<std::string> allowed;
  std::map<std::string, std::unique_ptr<VectorIndex>> indexes;
  // Exact top-k ids per recall query (from the Flat index), unfiltered and filtered.
  std::vector<std::set<std::string>> truth;
  std::vector<std::set<std::string>> truth_filtered;
  int builds_left = 0;
};

std::map<int64_t, SizeState>& States() {
  static std::map<int64_t, SizeState> states;
  return states;
}

SizeState& Prepare(int64_t n) {
  SizeState& s = States()[n];
  if (!s.queries.empty()) return s;
  Mixture mixture(kDataSeed);
  mixture.Sample(kDataSeed + static_cast<uint32_t>(n), n, &s.data);
  std::vector<float> q;
  mixture.Sample(kQuerySeed, kQueryPool, &q);
  for (int i = 0; i < kQueryPool; ++i) {
    s.queries.emplace_back(q.begin() + i * kDim, q.begin() + (i + 1) * kDim);
  }
  std::mt19937 rng(kFilterSeed);
  std::bernoulli_distribution keep(kAllowedFraction);
  for (int64_t i = 0; i < n; ++i) {
    if (keep(rng)) s.allowed.insert(Id(i));
  }
  s.builds_left = 2 * static_cast<int>(GetSettings().factories.size());  // Build, BuildBatch
  return s;
}

std::set<std::string> HitIds(const std::vector<SearchHit>& hits) {
  std::set<std::string> ids;
  for (const SearchHit& h : hits) ids.insert(h.id);
  return ids;
}

// Mean fraction of the exact top-k found by `index` over the recall queries.
double Recall(const VectorIndex& index, const SizeState& s, bool filtered,
              benchmark::State& state) {
  const auto& truth = filtered ? s.truth_filtered : s.truth;
  if (truth.empty()) return -1;
  double found = 0, total = 0;
  for (int i = 0; i < kRecallQueries; ++i) {
    auto hits = index.Search(s.queries[i], kTopK, filtered ? &s.allowed : nullptr);
    if (!hits.ok()) {
      state.SkipWithError(hits.status().ToString().c_str());
      return -1;
    }
    for (const std::string& id : HitIds(*hits)) found += truth[i].count(id);
    total += truth[i].size();
  }
  return found / total;
}

IndexOptions Options(const std::string& factory) {
  IndexOptions options;
  options.dim = kDim;
  options.factory = factory;
  options.search_breadth = factory == "Flat" ? 0 : GetSettings().ef_search;
  return options;
}

// The exact answers for recall, from the first Flat index built for this size.
void ComputeTruth(const VectorIndex& flat, SizeState& s) {
  if (!s.truth.empty()) return;
  for (int i = 0; i < kRecallQueries; ++i) {
    s.truth.push_back(HitIds(*flat.Search(s.queries[i], kTopK)));
    s.truth_filtered.push_back(HitIds(*flat.Search(s.queries[i], kTopK, &s.allowed)));
  }
}

void BuildCounters(benchmark::State& state, const std::string& factory, int64_t n) {
  state.counters["vectors_per_s"] = benchmark::Counter(
      static_cast<double>(n), benchmark::Counter::kIsRate);
  state.counters["rss_mib_after"] = RssMiB();
  // FAISS's default; IndexOptions has no knob for it (the factory string cannot set it).
  if (factory.rfind("HNSW", 0) == 0) state.counters["ef_construction"] = 40;
}

void BM_Build(benchmark::State& state, std::string factory, int64_t n) {
  SizeState& s = Prepare(n);
  const IndexOptions options = Options(factory);
  for (auto _ : state) {
    auto index = VectorIndex::Create(options);
    if (!index.ok()) {
      state.SkipWithError(index.status().ToString().c_str());
      return;
    }
    std::vector<float> v(kDim);
    for (int64_t i = 0; i < n; ++i) {
      std::copy(s.data.begin() + i * kDim, s.data.begin() + (i + 1) * kDim, v.begin());
      if (absl::Status st = (*index)->Upsert(Id(i), v); !st.ok()) {
        state.SkipWithError(st.ToString().c_str());
        return;
      }
    }
    s.indexes[factory] = std::move(*index);
  }
  BuildCounters(state, factory, n);
  if (--s.builds_left == 0) std::vector<float>().swap(s.data);
  if (factory == "Flat") ComputeTruth(*s.indexes[factory], s);
}

void BM_BuildBatch(benchmark::State& state, std::string factory, int64_t n) {
  SizeState& s = Prepare(n);
  if (s.data.empty()) {
    state.SkipWithError("vectors already freed");
    return;
  }
  const IndexOptions options = Options(factory);
  std::vector<std::pair<std::string, std::vector<float>>> entries;
  entries.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    entries.emplace_back(Id(i), std::vector<float>(s.data.begin() + i * kDim,
                                                   s.data.begin() + (i + 1) * kDim));
  }
  std::unique_ptr<VectorIndex> built;
  for (auto _ : state) {
    auto index = VectorIndex::Create(options);
    if (!index.ok()) {
      state.SkipWithError(index.status().ToString().c_str());
      return;
    }
    if (absl::Status st = (*index)->UpsertBatch(entries); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
    built = std::move(*index);
  }
  std::vector<std::pair<std::string, std::vector<float>>>().swap(entries);
  BuildCounters(state, factory, n);
  if (--s.builds_left == 0) std::vector<float>().swap(s.data);
  if (factory == "Flat") ComputeTruth(*built, s);
  state.counters["recall_at_10"] = Recall(*built, s, false, state);
  state.counters["recall_at_10_filtered"] = Recall(*built, s, true, state);
  if (factory != "Flat") state.counters["ef_search"] = GetSettings().ef_search;
  // Searched by Search/SearchFiltered only if the one-by-one build did not run.
  if (!s.indexes.count(factory)) s.indexes[factory] = std::move(built);
}

void BM_Search(benchmark::State& state, std::string factory, int64_t n, bool filtered) {
  SizeState& s = States()[n];
  auto it = s.indexes.find(factory);
  if (it == s.indexes.end()) {
    state.SkipWithError("index was not built (filtered out or failed)");
    return;
  }
  const VectorIndex& index = *it->second;
  const std::unordered_set<std::string>* allowed = filtered ? &s.allowed : nullptr;
  size_t q = 0;
  for (auto _ : state) {
    auto hits = index.Search(s.queries[q], kTopK, allowed);
    benchmark::DoNotOptimize(hits);
    if (!hits.ok() || hits->size() != static_cast<size_t>(kTopK)) {
      state.SkipWithError("search failed or returned fewer than k hits");
      return;
    }
    q = (q + 1) % s.queries.size();
  }
  state.counters["k"] = kTopK;
  state.counters["n"] = static_cast<double>(n);
  if (filtered) state.counters["allowed"] = static_cast<double>(s.allowed.size());
  if (factory != "Flat") {
    state.counters["ef_search"] = GetSettings().ef_search;
    state.counters["recall_at_10"] = Recall(index, s, filtered, state);
  } else {
    state.counters["recall_at_10"] = 1.0;  // exact by construction
  }
}

// Frees both indexes of a size once its last benchmark ran (10^6 x 2 structures ~ 5 GiB).
void BM_Release(benchmark::State& state, int64_t n) {
  for (auto _ : state) {
  }
  States().erase(n);
  state.counters["rss_mib_after"] = RssMiB();
}

void Register() {
  const Settings& settings = GetSettings();
  for (int64_t n : settings.sizes) {
    for (const std::string& factory : settings.factories) {
      const std::string suffix = absl::StrCat(factory, "/", n);
      benchmark::RegisterBenchmark(("Build/" + suffix).c_str(), BM_Build, factory, n)
          ->Iterations(1)
          ->Unit(benchmark::kSecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark(("BuildBatch/" + suffix).c_str(), BM_BuildBatch, factory, n)
          ->Iterations(1)
          ->Unit(benchmark::kSecond)
          ->UseRealTime()
          ->MeasureProcessCPUTime();  // CPU of all of FAISS's OpenMP threads
      benchmark::RegisterBenchmark(("Search/" + suffix).c_str(), BM_Search, factory, n, false)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark(("SearchFiltered/" + suffix).c_str(), BM_Search, factory, n,
                                   true)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
    benchmark::RegisterBenchmark(absl::StrCat("Release/", n).c_str(), BM_Release, n)
        ->Iterations(1);
  }
}

// Consumes --sizes=a,b,c --ef_search=N --factories=Flat,HNSW32 from argv.
bool ParseOwnFlags(int* argc, char** argv) {
  Settings& settings = GetSettings();
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    std::string arg = argv[i];
    auto value = [&arg](const std::string& flag) -> const char* {
      return arg.rfind(flag + "=", 0) == 0 ? arg.c_str() + flag.size() + 1 : nullptr;
    };
    if (const char* v = value("--sizes")) {
      settings.sizes.clear();
      for (absl::string_view part : absl::StrSplit(v, ',')) {
        int64_t n;
        if (!absl::SimpleAtoi(part, &n) || n < kTopK) {
          std::fprintf(stderr, "bad --sizes entry '%s'\n", std::string(part).c_str());
          return false;
        }
        settings.sizes.push_back(n);
      }
    } else if (const char* v = value("--ef_search")) {
      if (!absl::SimpleAtoi(v, &settings.ef_search) || settings.ef_search <= 0) {
        std::fprintf(stderr, "bad --ef_search '%s'\n", v);
        return false;
      }
    } else if (const char* v = value("--factories")) {
      settings.factories = absl::StrSplit(v, ',');
      if (settings.factories.empty() || settings.factories[0] != "Flat") {
        std::fprintf(stderr, "--factories must start with Flat (it provides the exact answers)\n");
        return false;
      }
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  return true;
}

}  // namespace
}  // namespace modeldock::index

int main(int argc, char** argv) {
  if (!modeldock::index::ParseOwnFlags(&argc, argv)) return 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  modeldock::index::Register();
  benchmark::AddCustomContext("dim", std::to_string(modeldock::index::kDim));
  benchmark::AddCustomContext("clusters", std::to_string(modeldock::index::kClusters));
  benchmark::AddCustomContext("hnsw_ef_search",
                              std::to_string(modeldock::index::GetSettings().ef_search));
  benchmark::AddCustomContext("hnsw_ef_construction", "40 (FAISS default, not settable)");
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) {
    benchmark::AddCustomContext("load_avg", absl::StrCat(load[0], " ", load[1], " ", load[2]));
  }
  const char* omp = std::getenv("OMP_NUM_THREADS");
  benchmark::AddCustomContext("omp_num_threads", omp != nullptr ? omp : "(unset)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
