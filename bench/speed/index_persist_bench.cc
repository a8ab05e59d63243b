// What keeping the stage-1 index on disk costs per registration (issue 22 item 5), at 1,000 and
// 10,000 models of 256-d knowledge vectors (the untrained space's width):
//   BM_SaveWholeIndex  the old way: every change rewrites the whole index file (VectorIndex::Save:
//                      checksummed, written to a temporary file, fsync'd and renamed)
//   BM_AppendToLog     the new way (dock/knowledge_space.cc Persist): the change is appended to
//                      the index's log (index/index_log.h, fdatasync'd), and the log is folded
//                      into a new snapshot when it holds max(256, size/4) records; the snapshots
//                      are timed too, so the figure is the amortised cost
// Each iteration is one Upsert of a new vector over an existing id plus its persistence. The
// files live in the data directory's file system (here the build directory's), since fsync's
// cost is the point.
//
//   index_persist_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "index/index_log.h"
#include "index/vector_index.h"

namespace modeldock::index {
namespace {

namespace fs = std::filesystem;
constexpr int kDim = 256;

std::vector<float> RandomVector(std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(kDim);
  for (float& x : v) x = normal(rng);
  return v;
}

struct Fixture {
  fs::path dir;
  std::string path;
  std::unique_ptr<VectorIndex> index;
  explicit Fixture(int64_t models) {
    dir = fs::current_path() / absl::StrCat("index-persist-bench-", ::getpid());
    fs::create_directories(dir);
    path = (dir / "knowledge.index").string();
    IndexOptions options;
    options.dim = kDim;
    index = std::move(*VectorIndex::Create(options));
    std::mt19937 rng(1);
    std::vector<std::pair<std::string, std::vector<float>>> entries;
    for (int64_t i = 0; i < models; ++i) entries.emplace_back(absl::StrCat("m-", i), RandomVector(rng));
    if (!index->UpsertBatch(entries).ok() || !index->Save(path).ok()) std::abort();
  }
  ~Fixture() { fs::remove_all(dir); }
};

void BM_SaveWholeIndex(benchmark::State& state) {
  Fixture f(state.range(0));
  std::mt19937 rng(2);
  int64_t i = 0;
  for (auto _ : state) {
    const std::string id = absl::StrCat("m-", i++ % state.range(0));
    if (!f.index->Upsert(id, RandomVector(rng)).ok() || !f.index->Save(f.path).ok()) std::abort();
  }
  state.counters["file_MB"] = static_cast<double>(fs::file_size(f.path)) / 1e6;
}

void BM_AppendToLog(benchmark::State& state) {
  Fixture f(state.range(0));
  IndexLog log(f.path);
  std::mt19937 rng(2);
  int64_t i = 0, snapshots = 0;
  const int64_t threshold = std::max<int64_t>(256, state.range(0) / 4);
  for (auto _ : state) {
    const std::string id = absl::StrCat("m-", i++ % state.range(0));
    const std::vector<float> v = RandomVector(rng);
    if (!f.index->Upsert(id, v).ok() || !log.AppendUpsert(id, v).ok()) std::abort();
    if (log.records() >= threshold) {
      if (!f.index->Save(f.path).ok() || !log.Reset().ok()) std::abort();
      ++snapshots;
    }
  }
  state.counters["snapshots"] = static_cast<double>(snapshots);
}

BENCHMARK(BM_SaveWholeIndex)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_AppendToLog)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace
}  // namespace modeldock::index

BENCHMARK_MAIN();
