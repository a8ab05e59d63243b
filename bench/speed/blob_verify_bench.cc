// What verifying a model file before each run costs (issue 28): BlobStore::Verify hashing a
// file (SHA-256 through OpenSSL, the first run of a model after a start or a change, and every
// file in a scrub) against the cached check of a hot model (fstat + a map lookup), at 1, 16 and
// 128 MiB. Files are written once per size into a temporary blob store (in /dev/shm when it
// exists, so the figures are the hash's, not the disk's; a cold page cache adds the disk's read
// time); the Verify calls are what is timed.
//
//   blob_verify_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "common/sha256.h"
#include "dock/blob_store.h"

namespace modeldock::dock {
namespace {

namespace fs = std::filesystem;

struct Blobs {
  fs::path root;
  std::unique_ptr<BlobStore> store;
  std::map<int64_t, std::string> sha_by_mib;
  ~Blobs() {
    store.reset();
    fs::remove_all(root);
  }
};

Blobs& TheBlobs() {
  static Blobs blobs;
  if (blobs.store) return blobs;
  const fs::path dir = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
  blobs.root = dir / absl::StrCat("modeldock-blob-bench-", ::getpid());
  auto store = BlobStore::Create(blobs.root.string());
  if (!store.ok()) {
    fprintf(stderr, "%s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  blobs.store = std::move(*store);
  return blobs;
}

// The digest of a seeded file of `mib` MiB in the store (written on first use).
const std::string& BlobOf(int64_t mib) {
  Blobs& blobs = TheBlobs();
  auto it = blobs.sha_by_mib.find(mib);
  if (it != blobs.sha_by_mib.end()) return it->second;
  std::string bytes(static_cast<size_t>(mib) << 20, '\0');
  std::mt19937_64 rng(28 + mib);
  for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&bytes[i], &v, 8);
  }
  const std::string sha = Sha256::Of(bytes);
  const std::string temp = blobs.store->NewTempPath();
  std::ofstream(temp, std::ios::binary) << bytes;
  bool existed = false;
  if (!blobs.store->Adopt(temp, sha, &existed).ok()) std::exit(1);
  return blobs.sha_by_mib[mib] = sha;
}

// A forced check: the file is read and hashed every time.
void BM_VerifyHash(benchmark::State& state) {
  const int64_t mib = state.range(0);
  const std::string& sha = BlobOf(mib);
  VerifyOptions options;
  options.force = true;
  for (auto _ : state) {
    if (absl::Status s = TheBlobs().store->Verify(sha, mib << 20, options); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
  }
  state.SetBytesProcessed(state.iterations() * (mib << 20));
}

// A hot model: verified once, then answered from the (device, inode, size, mtime) cache.
void BM_VerifyCached(benchmark::State& state) {
  const int64_t mib = state.range(0);
  const std::string& sha = BlobOf(mib);
  if (!TheBlobs().store->Verify(sha, mib << 20).ok()) std::exit(1);
  for (auto _ : state) {
    if (absl::Status s = TheBlobs().store->Verify(sha, mib << 20); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
  }
}

BENCHMARK(BM_VerifyHash)->Arg(1)->Arg(16)->Arg(128)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_VerifyCached)->Arg(1)->Arg(16)->Arg(128)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace modeldock::dock

BENCHMARK_MAIN();
