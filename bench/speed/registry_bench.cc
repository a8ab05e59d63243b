// The registry in memory against the SQLite store it caches: ListAll (every Recommend,
// ListModels, Stats-free reads), FindVersions (resolving a NAME) and Get (resolving an id) at
// 1,000 and 10,000 model rows.
//
//   registry_bench --benchmark_out=registry.json --benchmark_out_format=json
//   registry_bench --sizes=1000 --benchmark_filter=ListAll
//
// Rows: realistic registrations (10 class labels, 3 tags, a 90-character description, two
// embed layers, an owner on every other row), inserted once per size into a SQLite file (in
// /dev/shm when it exists: the inserts commit one by one with synchronous=FULL); the reads are
// what is timed. `sqlite/<n>` calls the SQLite store (every row read and its JSON parsed),
// `cached/<n>` the CachingModelTable over its model table (a copy of every record out of the
// map).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "benchmark/benchmark.h"
#include "dock/caching_store.h"
#include "dock/metadata_store.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;

std::vector<int> g_sizes = {1000, 10000};

struct Registry {
  fs::path path;
  std::unique_ptr<MetadataStore> sqlite;
  std::unique_ptr<CachingModelTable> cached;  // over sqlite's model table
  ~Registry() {
    cached.reset();
    sqlite.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path.string() + suffix);
  }
};

ModelRecord MakeRecord(int i) {
  ModelRecord r;
  r.id = absl::StrCat("m-", 100000 + i);
  r.spec.name = absl::StrCat("model-", i / 2);  // two versions per name
  r.spec.version = absl::StrCat("1.", i % 2);
  r.spec.description = absl::StrCat("A convolutional classifier fine-tuned on task ", i,
                                    " of the benchmark zoo, with an embed(x) layer.");
  r.spec.input_shape = {1, 28, 28};
  for (int c = 0; c < 10; ++c) r.spec.class_labels.push_back(absl::StrCat("class-", c));
  r.spec.license = "CC0-1.0";
  r.spec.tags = {"fashion", "bench", absl::StrCat("group-", i % 7)};
  r.state = ModelState::kReady;
  r.state_reason = "probed on 1000 samples in 812 ms; indexed";
  r.sha256 = absl::StrCat("0123456789abcdef0123456789abcdef0123456789abcdef0123", 100000 + i);
  r.size_bytes = 1 << 20;
  r.has_embed = true;
  r.feature_dim = 64;
  r.layers = {{"conv2", 128}, {"embed", 64}};
  r.created_unix_ms = 1'700'000'000'000 + i;
  r.probe_millis = 812;
  r.revision = 3;
  return r;
}

Registry& RegistryOf(int n) {
  static std::map<int, std::unique_ptr<Registry>> registries;
  auto& slot = registries[n];
  if (slot) return *slot;
  slot = std::make_unique<Registry>();
  const fs::path dir = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
  slot->path = dir / absl::StrCat("modeldock-registry-bench-", ::getpid(), "-", n, ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(slot->path.string() + suffix);
  auto inner = OpenMetadataStore(slot->path.string());
  if (!inner.ok()) {
    fprintf(stderr, "cannot open %s: %s\n", slot->path.c_str(), inner.status().ToString().c_str());
    std::exit(1);
  }
  ApiKeyRow key;
  key.id = "k-bench";
  key.name = "bench";
  key.role = static_cast<int>(ApiKeyRole::kProvider);
  if (!(*inner)->InsertKey(key).ok()) std::exit(1);
  for (int i = 0; i < n; ++i) {
    const ModelRecord r = MakeRecord(i);
    if (absl::Status s = (*inner)->Insert(r); !s.ok()) {
      fprintf(stderr, "insert: %s\n", s.ToString().c_str());
      std::exit(1);
    }
    if (i % 2 == 0 && !(*inner)->SetOwner(r.id, key.id).ok()) std::exit(1);
  }
  slot->sqlite = std::move(*inner);
  auto cached = CachingModelTable::Create(slot->sqlite.get());
  if (!cached.ok()) std::exit(1);
  slot->cached = std::move(*cached);
  return *slot;
}

ModelTable* StoreOf(Registry& registry, bool cached) {
  return cached ? static_cast<ModelTable*>(registry.cached.get()) : registry.cached->inner();
}

void BM_ListAll(benchmark::State& state, bool cached) {
  const int n = static_cast<int>(state.range(0));
  ModelTable* store = StoreOf(RegistryOf(n), cached);
  for (auto _ : state) {
    auto all = store->ListAll();
    if (!all.ok() || static_cast<int>(all->size()) != n) {
      state.SkipWithError("ListAll failed");
      break;
    }
    benchmark::DoNotOptimize(all->data());
  }
  state.counters["rows/s"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_FindVersions(benchmark::State& state, bool cached) {
  const int n = static_cast<int>(state.range(0));
  ModelTable* store = StoreOf(RegistryOf(n), cached);
  uint64_t i = 0;
  for (auto _ : state) {
    auto versions = store->FindVersions(absl::StrCat("model-", (i++ * 7919) % (n / 2)));
    if (!versions.ok() || versions->size() != 2) {
      state.SkipWithError("FindVersions failed");
      break;
    }
    benchmark::DoNotOptimize(versions->data());
  }
}

void BM_Get(benchmark::State& state, bool cached) {
  const int n = static_cast<int>(state.range(0));
  ModelTable* store = StoreOf(RegistryOf(n), cached);
  uint64_t i = 0;
  for (auto _ : state) {
    auto record = store->Get(absl::StrCat("m-", 100000 + (i++ * 7919) % n));
    if (!record.ok()) {
      state.SkipWithError("Get failed");
      break;
    }
    benchmark::DoNotOptimize(record->id.data());
  }
}

void Register() {
  for (int n : g_sizes) {
    for (bool cached : {false, true}) {
      const char* kind = cached ? "cached" : "sqlite";
      benchmark::RegisterBenchmark(absl::StrCat("ListAll/", kind).c_str(), BM_ListAll, cached)
          ->Arg(n)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(absl::StrCat("FindVersions/", kind).c_str(), BM_FindVersions,
                                   cached)
          ->Arg(n)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(absl::StrCat("Get/", kind).c_str(), BM_Get, cached)
          ->Arg(n)
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace
}  // namespace modeldock::dock

int main(int argc, char** argv) {
  // --sizes=1000,10000 (ours; the rest is Google Benchmark's).
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--sizes=", 0) == 0) {
      modeldock::dock::g_sizes.clear();
      for (absl::string_view part : absl::StrSplit(arg.substr(8), ',')) {
        int n = 0;
        if (!absl::SimpleAtoi(part, &n) || n < 2) {
          fprintf(stderr, "bad --sizes entry '%s'\n", std::string(part).c_str());
          return 2;
        }
        modeldock::dock::g_sizes.push_back(n);
      }
      continue;
    }
    rest.push_back(argv[i]);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  modeldock::dock::Register();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
