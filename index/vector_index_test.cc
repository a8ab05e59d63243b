#include "index/vector_index.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "gtest/gtest.h"

namespace modeldock::index {
namespace {

constexpr int kDim = 32;

std::vector<float> RandomUnitVector(std::mt19937& rng, int dim = kDim) {
  std::normal_distribution<float> normal;
  std::vector<float> v(dim);
  double norm = 0;
  for (float& x : v) {
    x = normal(rng);
    norm += x * x;
  }
  for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

std::string Id(int i) { return "model-" + std::to_string(i); }

// Brute-force exact inner-product search over the reference contents.
class Oracle {
 public:
  void Upsert(const std::string& id, const std::vector<float>& v) { entries_[id] = v; }
  void Remove(const std::string& id) { entries_.erase(id); }
  size_t size() const { return entries_.size(); }
  const std::map<std::string, std::vector<float>>& entries() const { return entries_; }

  std::vector<SearchHit> Search(const std::vector<float>& q, int k,
                                const std::unordered_set<std::string>* allowed = nullptr) const {
    std::vector<SearchHit> hits;
    for (const auto& [id, v] : entries_) {
      if (allowed && !allowed->count(id)) continue;
      double s = 0;
      for (size_t i = 0; i < v.size(); ++i) s += static_cast<double>(q[i]) * v[i];
      hits.push_back({id, static_cast<float>(s)});
    }
    std::sort(hits.begin(), hits.end(), [](const SearchHit& a, const SearchHit& b) {
      return a.score != b.score ? a.score > b.score : a.id < b.id;
    });
    if (static_cast<int>(hits.size()) > k) hits.resize(k);
    return hits;
  }

  std::vector<std::pair<std::string, std::vector<float>>> AsPairs() const {
    return {entries_.begin(), entries_.end()};
  }

 private:
  std::map<std::string, std::vector<float>> entries_;
};

std::unique_ptr<VectorIndex> MakeIndex(const std::string& factory, int breadth = 0) {
  IndexOptions options;
  options.dim = kDim;
  options.factory = factory;
  options.search_breadth = breadth;
  auto index = VectorIndex::Create(options);
  EXPECT_TRUE(index.ok()) << index.status();
  return std::move(*index);
}

void Fill(VectorIndex& index, Oracle& oracle, std::mt19937& rng, int first, int count) {
  for (int i = first; i < first + count; ++i) {
    std::vector<float> v = RandomUnitVector(rng);
    ASSERT_TRUE(index.Upsert(Id(i), v).ok());
    oracle.Upsert(Id(i), v);
  }
}

// Exact comparison: same ids in the same order, scores within 1e-5.
void ExpectExact(const VectorIndex& index, const Oracle& oracle, std::mt19937& rng, int queries,
                 int k, const std::unordered_set<std::string>* allowed = nullptr) {
  for (int q = 0; q < queries; ++q) {
    std::vector<float> query = RandomUnitVector(rng);
    auto got = index.Search(query, k, allowed);
    ASSERT_TRUE(got.ok()) << got.status();
    std::vector<SearchHit> want = oracle.Search(query, k, allowed);
    ASSERT_EQ(got->size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ((*got)[i].id, want[i].id) << "query " << q << " rank " << i;
      EXPECT_NEAR((*got)[i].score, want[i].score, 1e-5);
    }
  }
}

// Mean recall@k of the index against the oracle; also checks scores and the filter.
double Recall(const VectorIndex& index, const Oracle& oracle, std::mt19937& rng, int queries,
              int k, const std::unordered_set<std::string>* allowed = nullptr) {
  int found = 0, total = 0;
  for (int q = 0; q < queries; ++q) {
    std::vector<float> query = RandomUnitVector(rng);
    auto got = index.Search(query, k, allowed);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return 0;
    std::vector<SearchHit> want = oracle.Search(query, k, allowed);
    EXPECT_EQ(got->size(), want.size());
    std::unordered_set<std::string> want_ids;
    for (const SearchHit& h : want) want_ids.insert(h.id);
    const auto& all = oracle.entries();
    for (size_t i = 0; i < got->size(); ++i) {
      const SearchHit& h = (*got)[i];
      if (allowed) {
        EXPECT_TRUE(allowed->count(h.id)) << h.id;
      }
      if (i > 0) {
        EXPECT_GE((*got)[i - 1].score, h.score);
      }
      auto it = all.find(h.id);
      EXPECT_NE(it, all.end()) << h.id;
      if (it != all.end()) {
        double s = 0;
        for (int d = 0; d < kDim; ++d) s += static_cast<double>(query[d]) * it->second[d];
        EXPECT_NEAR(h.score, s, 1e-5);  // real inner products, not negated distances
      }
      found += want_ids.count(h.id);
    }
    total += static_cast<int>(want.size());
  }
  return static_cast<double>(found) / total;
}

std::string TempPath(const std::string& name) {
  std::string dir = ::testing::TempDir();
  if (!dir.empty() && dir.back() != '/') dir += '/';
  return dir + "vector_index_test_" + std::to_string(getpid()) + "_" + name;
}

TEST(VectorIndexTest, FlatMatchesExactOracle) {
  std::mt19937 rng(1);
  auto index = MakeIndex("Flat");
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 500);
  EXPECT_EQ(index->size(), 500u);
  EXPECT_EQ(index->dim(), kDim);
  EXPECT_TRUE(index->Contains(Id(7)));
  EXPECT_FALSE(index->Contains("nope"));
  ExpectExact(*index, oracle, rng, 20, 10);
  ExpectExact(*index, oracle, rng, 3, 1);
}

TEST(VectorIndexTest, FewerVectorsThanK) {
  std::mt19937 rng(2);
  auto index = MakeIndex("Flat");
  Oracle oracle;
  auto empty = index->Search(RandomUnitVector(rng), 5);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  Fill(*index, oracle, rng, 0, 3);
  ExpectExact(*index, oracle, rng, 5, 10);
}

TEST(VectorIndexTest, UpsertReplaces) {
  std::mt19937 rng(3);
  auto index = MakeIndex("Flat");
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 200);
  // Replace many ids (enough to trigger compactions) and check against the oracle each round.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 200; i += 2) {
      std::vector<float> v = RandomUnitVector(rng);
      ASSERT_TRUE(index->Upsert(Id(i), v).ok());
      oracle.Upsert(Id(i), v);
    }
    EXPECT_EQ(index->size(), 200u);
    ExpectExact(*index, oracle, rng, 10, 10);
  }
  // The vector itself is its own best match with score |v|^2 = 1.
  std::vector<float> v = RandomUnitVector(rng);
  ASSERT_TRUE(index->Upsert(Id(5), v).ok());
  auto hits = index->Search(v, 1);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].id, Id(5));
  EXPECT_NEAR((*hits)[0].score, 1.0f, 1e-5);
}

TEST(VectorIndexTest, Remove) {
  std::mt19937 rng(4);
  auto index = MakeIndex("Flat");
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 100);
  EXPECT_EQ(index->Remove("missing").code(), absl::StatusCode::kNotFound);
  for (int i = 0; i < 100; i += 3) {
    ASSERT_TRUE(index->Remove(Id(i)).ok());
    oracle.Remove(Id(i));
  }
  EXPECT_EQ(index->Remove(Id(0)).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(index->Contains(Id(3)));
  EXPECT_EQ(index->size(), oracle.size());
  ExpectExact(*index, oracle, rng, 10, 100);  // k above size: every survivor, in order
  // Remove all, then re-add.
  for (const auto& [id, v] : oracle.AsPairs()) ASSERT_TRUE(index->Remove(id).ok());
  EXPECT_EQ(index->size(), 0u);
  auto none = index->Search(RandomUnitVector(rng), 3);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  Oracle fresh;
  Fill(*index, fresh, rng, 1000, 20);
  ExpectExact(*index, fresh, rng, 5, 5);
}

TEST(VectorIndexTest, FlatAllowedSetMatchesOracle) {
  std::mt19937 rng(5);
  auto index = MakeIndex("Flat");
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 400);
  std::unordered_set<std::string> half, few, unknown;
  for (int i = 0; i < 400; ++i) {
    if (rng() % 2) half.insert(Id(i));
  }
  few = {Id(3), Id(99), Id(250), "not-indexed"};
  unknown = {"a", "b"};
  ExpectExact(*index, oracle, rng, 10, 10, &half);
  ExpectExact(*index, oracle, rng, 5, 10, &few);
  auto hits = index->Search(RandomUnitVector(rng), 10, &few);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 3u);
  hits = index->Search(RandomUnitVector(rng), 10, &unknown);
  ASSERT_TRUE(hits.ok());
  EXPECT_TRUE(hits->empty());
  // With tombstones present as well.
  for (int i = 0; i < 400; i += 7) {
    ASSERT_TRUE(index->Remove(Id(i)).ok());
    oracle.Remove(Id(i));
  }
  ExpectExact(*index, oracle, rng, 10, 10, &half);
}

TEST(VectorIndexTest, HnswRecall) {
  std::mt19937 rng(6);
  auto index = MakeIndex("HNSW32", 64);
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 3000);
  EXPECT_GE(Recall(*index, oracle, rng, 50, 10), 0.95);

  // Replacements and removals go through tombstones and rebuilds.
  for (int i = 0; i < 1200; ++i) {
    if (i % 2 == 0) {
      ASSERT_TRUE(index->Remove(Id(i)).ok());
      oracle.Remove(Id(i));
    } else {
      std::vector<float> v = RandomUnitVector(rng);
      ASSERT_TRUE(index->Upsert(Id(i), v).ok());
      oracle.Upsert(Id(i), v);
    }
  }
  EXPECT_EQ(index->size(), oracle.size());
  EXPECT_GE(Recall(*index, oracle, rng, 50, 10), 0.95);

  std::unordered_set<std::string> half, few;
  for (const auto& [id, v] : oracle.entries()) {
    if (rng() % 2) half.insert(id);
  }
  EXPECT_GE(Recall(*index, oracle, rng, 50, 10, &half), 0.95);
  for (int i = 1; i < 200; i += 2) few.insert(Id(i));
  ExpectExact(*index, oracle, rng, 10, 10, &few);  // small allowed sets are scanned exactly
}

TEST(VectorIndexTest, IvfTrainsLazilyAndStaysCorrect) {
  std::mt19937 rng(7);
  // nprobe = nlist: every list is probed, so results are exact once trained too.
  auto index = MakeIndex("IVF4,Flat", 4);
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 100);  // below 39 * 4: interim exact index
  ExpectExact(*index, oracle, rng, 10, 10);
  Fill(*index, oracle, rng, 100, 300);  // trained now
  ExpectExact(*index, oracle, rng, 10, 10);
  std::unordered_set<std::string> half;
  for (int i = 0; i < 400; i += 2) half.insert(Id(i));
  ExpectExact(*index, oracle, rng, 10, 10, &half);
  for (int i = 0; i < 400; i += 3) {
    ASSERT_TRUE(index->Remove(Id(i)).ok());
    oracle.Remove(Id(i));
  }
  ExpectExact(*index, oracle, rng, 10, 10);
}

TEST(VectorIndexTest, InvalidArguments) {
  std::mt19937 rng(8);
  auto index = MakeIndex("Flat");
  EXPECT_EQ(index->Upsert("a", std::vector<float>(kDim - 1)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> bad = RandomUnitVector(rng);
  bad[3] = NAN;
  EXPECT_EQ(index->Upsert("a", bad).code(), absl::StatusCode::kInvalidArgument);
  bad[3] = INFINITY;
  EXPECT_EQ(index->Upsert("a", bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->Upsert("", RandomUnitVector(rng)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->size(), 0u);
  EXPECT_EQ(index->Search(RandomUnitVector(rng), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->Search(std::vector<float>(3), 1).status().code(),
            absl::StatusCode::kInvalidArgument);

  IndexOptions options;
  options.dim = kDim;
  options.factory = "NoSuchIndex";
  EXPECT_EQ(VectorIndex::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.factory = "IDMap,Flat";
  EXPECT_EQ(VectorIndex::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.factory = "Flat";
  options.dim = 0;
  EXPECT_EQ(VectorIndex::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(VectorIndexTest, FingerprintIndependentOfStructureAndOrder) {
  std::mt19937 rng(9);
  auto flat = MakeIndex("Flat");
  auto hnsw = MakeIndex("HNSW32");
  Oracle oracle;
  for (int i = 0; i < 50; ++i) oracle.Upsert(Id(i), RandomUnitVector(rng));
  auto pairs = oracle.AsPairs();
  for (const auto& [id, v] : pairs) ASSERT_TRUE(flat->Upsert(id, v).ok());
  for (auto it = pairs.rbegin(); it != pairs.rend(); ++it) {
    ASSERT_TRUE(hnsw->Upsert(it->first, it->second).ok());
  }
  const std::string fp = flat->Fingerprint();
  EXPECT_EQ(fp.size(), 64u);
  EXPECT_EQ(fp, hnsw->Fingerprint());
  EXPECT_EQ(fp, VectorIndex::FingerprintOf(pairs));
  std::vector<std::pair<std::string, std::vector<float>>> reversed(pairs.rbegin(), pairs.rend());
  EXPECT_EQ(fp, VectorIndex::FingerprintOf(reversed));

  // Any change shows.
  std::vector<float> changed = pairs[0].second;
  changed[0] += 1e-3f;
  ASSERT_TRUE(flat->Upsert(pairs[0].first, changed).ok());
  EXPECT_NE(flat->Fingerprint(), fp);
  ASSERT_TRUE(flat->Upsert(pairs[0].first, pairs[0].second).ok());
  EXPECT_EQ(flat->Fingerprint(), fp);
  ASSERT_TRUE(flat->Remove(pairs[1].first).ok());
  EXPECT_NE(flat->Fingerprint(), fp);
  EXPECT_NE(VectorIndex::FingerprintOf({}), fp);
  EXPECT_EQ(MakeIndex("Flat")->Fingerprint(), VectorIndex::FingerprintOf({}));
}

void RoundTrip(const std::string& factory, int breadth, int seed) {
  std::mt19937 rng(seed);
  auto index = MakeIndex(factory, breadth);
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 600);
  for (int i = 0; i < 600; i += 9) {  // leave tombstones in the saved structure
    ASSERT_TRUE(index->Remove(Id(i)).ok());
    oracle.Remove(Id(i));
  }
  const std::string path = TempPath(factory + ".idx");
  ASSERT_TRUE(index->Save(path).ok());
  IndexOptions options;
  options.dim = kDim;
  options.factory = factory;
  options.search_breadth = breadth;
  auto loaded = VectorIndex::Load(path, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->size(), index->size());
  EXPECT_EQ((*loaded)->Fingerprint(), index->Fingerprint());
  EXPECT_EQ((*loaded)->Fingerprint(), VectorIndex::FingerprintOf(oracle.AsPairs()));
  for (int q = 0; q < 20; ++q) {
    std::vector<float> query = RandomUnitVector(rng);
    auto a = index->Search(query, 10);
    auto b = (*loaded)->Search(query, 10);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->size(), b->size());
    for (size_t i = 0; i < a->size(); ++i) {
      EXPECT_EQ((*a)[i].id, (*b)[i].id);
      EXPECT_FLOAT_EQ((*a)[i].score, (*b)[i].score);
    }
  }
  // The loaded index keeps working.
  Fill(**loaded, oracle, rng, 1000, 10);
  EXPECT_EQ((*loaded)->Fingerprint(), VectorIndex::FingerprintOf(oracle.AsPairs()));
  std::filesystem::remove(path);
}

TEST(VectorIndexTest, SaveLoadRoundTripFlat) { RoundTrip("Flat", 0, 10); }
TEST(VectorIndexTest, SaveLoadRoundTripHnsw) { RoundTrip("HNSW32", 64, 11); }
TEST(VectorIndexTest, SaveLoadRoundTripIvf) { RoundTrip("IVF8,Flat", 8, 12); }

TEST(VectorIndexTest, LoadWithOtherFactoryRebuilds) {
  std::mt19937 rng(13);
  auto index = MakeIndex("HNSW32");
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 300);
  const std::string path = TempPath("other.idx");
  ASSERT_TRUE(index->Save(path).ok());
  IndexOptions options;
  options.dim = kDim;  // factory "Flat"
  auto loaded = VectorIndex::Load(path, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->Fingerprint(), index->Fingerprint());
  ExpectExact(**loaded, oracle, rng, 10, 10);
  options.dim = kDim + 1;
  EXPECT_EQ(VectorIndex::Load(path, options).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::filesystem::remove(path);
}

TEST(VectorIndexTest, LoadMissingAndCorrupt) {
  IndexOptions options;
  options.dim = kDim;
  EXPECT_EQ(VectorIndex::Load(TempPath("missing.idx"), options).status().code(),
            absl::StatusCode::kNotFound);

  std::mt19937 rng(14);
  auto index = MakeIndex("Flat");
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 50);
  const std::string path = TempPath("corrupt.idx");
  ASSERT_TRUE(index->Save(path).ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(bytes.size(), 200u);
  auto write = [&path](const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  write(flipped);
  EXPECT_EQ(VectorIndex::Load(path, options).status().code(), absl::StatusCode::kDataLoss);
  write(bytes.substr(0, bytes.size() - 100));
  EXPECT_EQ(VectorIndex::Load(path, options).status().code(), absl::StatusCode::kDataLoss);
  write("");
  EXPECT_EQ(VectorIndex::Load(path, options).status().code(), absl::StatusCode::kDataLoss);
  write(std::string(500, 'x'));
  EXPECT_EQ(VectorIndex::Load(path, options).status().code(), absl::StatusCode::kDataLoss);
  write(bytes);  // intact again
  EXPECT_TRUE(VectorIndex::Load(path, options).ok());
  // No temp files left behind by Save.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    if (e.path().filename().string().rfind(std::filesystem::path(path).filename().string() + ".tmp", 0) == 0) ++files;
  }
  EXPECT_EQ(files, 0);
  std::filesystem::remove(path);
}

TEST(VectorIndexTest, ConcurrentSearchesAndUpserts) {
  for (const char* factory : {"Flat", "HNSW32"}) {
    SCOPED_TRACE(factory);
    std::mt19937 rng(15);
    auto index = MakeIndex(factory, 64);
    Oracle oracle;
    Fill(*index, oracle, rng, 0, 500);

    // Each writer owns an id range and a pre-drawn sequence of vectors.
    constexpr int kWriters = 2, kPerWriter = 300;
    std::vector<std::vector<std::pair<std::string, std::vector<float>>>> ops(kWriters);
    for (int w = 0; w < kWriters; ++w) {
      for (int i = 0; i < kPerWriter; ++i) {
        // Half new ids, half replacements of the initial ones (forces rebuilds).
        int id = i % 2 ? 1000 * (w + 1) + i : w * 250 + i / 2;
        ops[w].push_back({Id(id), RandomUnitVector(rng)});
      }
    }
    std::vector<std::vector<float>> queries;
    for (int i = 0; i < 50; ++i) queries.push_back(RandomUnitVector(rng));

    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        for (const auto& [id, v] : ops[w]) {
          if (!index->Upsert(id, v).ok()) ++failures;
        }
      });
    }
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&] {
        for (int pass = 0; pass < 4; ++pass) {
          for (const auto& q : queries) {
            auto hits = index->Search(q, 10);
            if (!hits.ok() || hits->size() != 10) ++failures;
            for (size_t i = 1; hits.ok() && i < hits->size(); ++i) {
              if ((*hits)[i - 1].score < (*hits)[i].score) ++failures;
            }
            (void)index->Fingerprint();
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    for (const auto& writer_ops : ops) {
      for (const auto& [id, v] : writer_ops) oracle.Upsert(id, v);
    }
    EXPECT_EQ(index->size(), oracle.size());
    EXPECT_EQ(index->Fingerprint(), VectorIndex::FingerprintOf(oracle.AsPairs()));
    if (std::string(factory) == "Flat") {
      ExpectExact(*index, oracle, rng, 20, 10);
    } else {
      EXPECT_GE(Recall(*index, oracle, rng, 50, 10), 0.95);
    }
  }
}

std::vector<std::pair<std::string, std::vector<float>>> RandomBatch(std::mt19937& rng, int first,
                                                                    int count) {
  std::vector<std::pair<std::string, std::vector<float>>> batch;
  for (int i = first; i < first + count; ++i) batch.push_back({Id(i), RandomUnitVector(rng)});
  return batch;
}

void AddToOracle(Oracle& oracle,
                 const std::vector<std::pair<std::string, std::vector<float>>>& batch) {
  for (const auto& [id, v] : batch) oracle.Upsert(id, v);
}

// Same queries against two indexes: same ids in the same order, same scores.
void ExpectSameResults(const VectorIndex& a, const VectorIndex& b, std::mt19937& rng, int queries,
                       int k, const std::unordered_set<std::string>* allowed = nullptr) {
  for (int q = 0; q < queries; ++q) {
    std::vector<float> query = RandomUnitVector(rng);
    auto ha = a.Search(query, k, allowed);
    auto hb = b.Search(query, k, allowed);
    ASSERT_TRUE(ha.ok() && hb.ok());
    ASSERT_EQ(ha->size(), hb->size());
    for (size_t i = 0; i < ha->size(); ++i) {
      EXPECT_EQ((*ha)[i].id, (*hb)[i].id) << "query " << q << " rank " << i;
      EXPECT_FLOAT_EQ((*ha)[i].score, (*hb)[i].score);
    }
  }
}

TEST(VectorIndexTest, BatchMatchesOneByOneOnFlat) {
  std::mt19937 rng(16);
  auto batch = RandomBatch(rng, 0, 700);
  auto one_by_one = MakeIndex("Flat");
  for (const auto& [id, v] : batch) ASSERT_TRUE(one_by_one->Upsert(id, v).ok());
  auto batched = MakeIndex("Flat");
  ASSERT_TRUE(batched->UpsertBatch(batch).ok());
  Oracle oracle;
  AddToOracle(oracle, batch);
  EXPECT_EQ(batched->size(), 700u);
  EXPECT_TRUE(batched->Contains(Id(699)));
  EXPECT_EQ(batched->Fingerprint(), one_by_one->Fingerprint());
  EXPECT_EQ(batched->Fingerprint(), VectorIndex::FingerprintOf(batch));
  ExpectExact(*batched, oracle, rng, 20, 10);
  ExpectExact(*batched, oracle, rng, 3, 700);  // the full order
  ExpectSameResults(*batched, *one_by_one, rng, 20, 10);
  std::unordered_set<std::string> third;
  for (int i = 0; i < 700; i += 3) third.insert(Id(i));
  ExpectExact(*batched, oracle, rng, 10, 10, &third);

  // A second batch appends to a non-empty index (one add into the live structure).
  auto more = RandomBatch(rng, 700, 100);
  for (const auto& [id, v] : more) ASSERT_TRUE(one_by_one->Upsert(id, v).ok());
  ASSERT_TRUE(batched->UpsertBatch(more).ok());
  AddToOracle(oracle, more);
  EXPECT_EQ(batched->size(), 800u);
  ExpectExact(*batched, oracle, rng, 20, 10);
  ExpectSameResults(*batched, *one_by_one, rng, 20, 10);
  EXPECT_EQ(batched->Fingerprint(), one_by_one->Fingerprint());
}

TEST(VectorIndexTest, BatchReplacesExistingIds) {
  std::mt19937 rng(17);
  auto index = MakeIndex("Flat");
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 400);
  // Few replacements (appended with tombstones) mixed with new ids, then many (compaction).
  for (int replace_every : {20, 2, 1}) {
    SCOPED_TRACE(replace_every);
    std::vector<std::pair<std::string, std::vector<float>>> batch;
    for (int i = 0; i < 400; i += replace_every) batch.push_back({Id(i), RandomUnitVector(rng)});
    for (int i = 0; i < 10; ++i) batch.push_back({Id(1000 * replace_every + i), RandomUnitVector(rng)});
    ASSERT_TRUE(index->UpsertBatch(batch).ok());
    AddToOracle(oracle, batch);
    EXPECT_EQ(index->size(), oracle.size());
    EXPECT_EQ(index->Fingerprint(), VectorIndex::FingerprintOf(oracle.AsPairs()));
    ExpectExact(*index, oracle, rng, 10, 10);
    ExpectExact(*index, oracle, rng, 2, static_cast<int>(oracle.size()));  // no stale copies
  }
  // The replaced vector is its own best match, the old one is gone.
  std::vector<float> v = RandomUnitVector(rng);
  std::vector<float> old = oracle.entries().at(Id(5));
  ASSERT_TRUE(index->UpsertBatch({{Id(5), v}, {Id(6), RandomUnitVector(rng)}}).ok());
  auto hits = index->Search(v, 1);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].id, Id(5));
  EXPECT_NEAR((*hits)[0].score, 1.0f, 1e-5);
  std::unordered_set<std::string> only5 = {Id(5)};
  hits = index->Search(old, 5, &only5);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 1u);  // one live copy of Id(5), scored with the new vector
  double dot = 0;
  for (int d = 0; d < kDim; ++d) dot += static_cast<double>(old[d]) * v[d];
  EXPECT_NEAR((*hits)[0].score, dot, 1e-5);
  // Remove after a batch replacement leaves nothing behind.
  ASSERT_TRUE(index->Remove(Id(5)).ok());
  hits = index->Search(v, 5, &only5);
  ASSERT_TRUE(hits.ok());
  EXPECT_TRUE(hits->empty());
}

TEST(VectorIndexTest, BatchInvalidArgumentsChangeNothing) {
  std::mt19937 rng(18);
  auto index = MakeIndex("Flat");
  Oracle oracle;
  Fill(*index, oracle, rng, 0, 20);
  const std::string fp = index->Fingerprint();

  EXPECT_TRUE(index->UpsertBatch({}).ok());
  EXPECT_EQ(index->size(), 20u);

  auto batch = RandomBatch(rng, 100, 5);
  batch[3].second.resize(kDim - 1);
  absl::Status st = index->UpsertBatch(batch);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "vector of " + Id(103) + " (batch entry 3) has dimension " +
                              std::to_string(kDim - 1) + ", the index has " +
                              std::to_string(kDim));

  batch = RandomBatch(rng, 100, 5);
  batch[4].first = Id(101);
  st = index->UpsertBatch(batch);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "id " + Id(101) + " occurs twice in the batch (entries 1 and 4)");

  batch = RandomBatch(rng, 100, 5);
  batch[2].second[0] = NAN;
  st = index->UpsertBatch(batch);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "vector of " + Id(102) + " (batch entry 2) has a non-finite value");

  batch = RandomBatch(rng, 100, 5);
  batch[0].first.clear();
  st = index->UpsertBatch(batch);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "batch entry 0 has an empty id");

  // All or nothing: the valid entries of the rejected batches were not added.
  EXPECT_EQ(index->size(), 20u);
  EXPECT_FALSE(index->Contains(Id(100)));
  EXPECT_EQ(index->Fingerprint(), fp);
  ExpectExact(*index, oracle, rng, 5, 10);

  // Same on an empty index (the build-and-swap path).
  auto empty = MakeIndex("HNSW32");
  batch = RandomBatch(rng, 0, 5);
  batch[1].first = Id(0);
  EXPECT_EQ(empty->UpsertBatch(batch).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_TRUE(empty->UpsertBatch({}).ok());
  EXPECT_EQ(empty->Fingerprint(), VectorIndex::FingerprintOf({}));
}

TEST(VectorIndexTest, HnswThroughBatch) {
  std::mt19937 rng(19);
  auto index = MakeIndex("HNSW32", 64);
  Oracle oracle;
  auto batch = RandomBatch(rng, 0, 3000);
  ASSERT_TRUE(index->UpsertBatch(batch).ok());  // empty index: build and swap
  AddToOracle(oracle, batch);
  EXPECT_EQ(index->size(), 3000u);
  EXPECT_GE(Recall(*index, oracle, rng, 50, 10), 0.95);

  batch = RandomBatch(rng, 3000, 500);  // append into the live graph
  for (int i = 0; i < 300; i += 3) batch.push_back({Id(i), RandomUnitVector(rng)});
  ASSERT_TRUE(index->UpsertBatch(batch).ok());
  AddToOracle(oracle, batch);
  EXPECT_EQ(index->size(), 3500u);
  EXPECT_EQ(index->Fingerprint(), VectorIndex::FingerprintOf(oracle.AsPairs()));
  EXPECT_GE(Recall(*index, oracle, rng, 50, 10), 0.95);

  batch.clear();  // replace half: compaction (rebuild) through the batch
  for (int i = 0; i < 3500; i += 2) batch.push_back({Id(i), RandomUnitVector(rng)});
  ASSERT_TRUE(index->UpsertBatch(batch).ok());
  AddToOracle(oracle, batch);
  EXPECT_EQ(index->size(), 3500u);
  EXPECT_EQ(index->Fingerprint(), VectorIndex::FingerprintOf(oracle.AsPairs()));
  EXPECT_GE(Recall(*index, oracle, rng, 50, 10), 0.95);
  std::unordered_set<std::string> few;
  for (int i = 0; i < 200; i += 2) few.insert(Id(i));  // all of them replaced
  ExpectExact(*index, oracle, rng, 10, 10, &few);
}

TEST(VectorIndexTest, IvfTrainsThroughBatch) {
  // nprobe = nlist: every list is probed, so results are exact once trained too.
  std::mt19937 rng(20);
  auto index = MakeIndex("IVF4,Flat", 4);
  Oracle oracle;
  auto batch = RandomBatch(rng, 0, 100);  // below 39 * 4: interim exact index
  ASSERT_TRUE(index->UpsertBatch(batch).ok());
  AddToOracle(oracle, batch);
  ExpectExact(*index, oracle, rng, 10, 10);
  batch = RandomBatch(rng, 100, 40);  // still below: appended to the interim index
  ASSERT_TRUE(index->UpsertBatch(batch).ok());
  AddToOracle(oracle, batch);
  ExpectExact(*index, oracle, rng, 10, 10);
  batch = RandomBatch(rng, 140, 260);  // crosses the threshold: trained on all 400
  for (int i = 0; i < 50; i += 5) batch.push_back({Id(i), RandomUnitVector(rng)});
  ASSERT_TRUE(index->UpsertBatch(batch).ok());
  AddToOracle(oracle, batch);
  EXPECT_EQ(index->size(), 400u);
  ExpectExact(*index, oracle, rng, 10, 10);
  batch = RandomBatch(rng, 400, 100);  // into the trained IVF
  ASSERT_TRUE(index->UpsertBatch(batch).ok());
  AddToOracle(oracle, batch);
  ExpectExact(*index, oracle, rng, 10, 10);
  std::unordered_set<std::string> half;
  for (int i = 0; i < 500; i += 2) half.insert(Id(i));
  ExpectExact(*index, oracle, rng, 10, 10, &half);
  EXPECT_EQ(index->Fingerprint(), VectorIndex::FingerprintOf(oracle.AsPairs()));

  // The trained structure survives a save/load round trip (it is not the interim Flat).
  const std::string path = TempPath("ivf_batch.idx");
  ASSERT_TRUE(index->Save(path).ok());
  IndexOptions options;
  options.dim = kDim;
  options.factory = "IVF4,Flat";
  options.search_breadth = 4;
  auto loaded = VectorIndex::Load(path, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameResults(*index, **loaded, rng, 10, 10);
  std::filesystem::remove(path);

  // Training really happens: with nprobe 1 of 4 lists the trained IVF misses neighbours,
  // the interim exact index cannot.
  auto probe1 = MakeIndex("IVF4,Flat", 1);
  Oracle probe1_oracle;
  batch = RandomBatch(rng, 0, 150);  // below 39 * 4
  ASSERT_TRUE(probe1->UpsertBatch(batch).ok());
  AddToOracle(probe1_oracle, batch);
  EXPECT_EQ(Recall(*probe1, probe1_oracle, rng, 30, 10), 1.0);
  batch = RandomBatch(rng, 150, 250);
  ASSERT_TRUE(probe1->UpsertBatch(batch).ok());
  AddToOracle(probe1_oracle, batch);
  EXPECT_LT(Recall(*probe1, probe1_oracle, rng, 30, 10), 0.95);
  // A first batch above the threshold trains straight away.
  auto fresh = MakeIndex("IVF4,Flat", 1);
  Oracle fresh_oracle;
  batch = RandomBatch(rng, 0, 400);
  ASSERT_TRUE(fresh->UpsertBatch(batch).ok());
  AddToOracle(fresh_oracle, batch);
  EXPECT_EQ(fresh->size(), 400u);
  EXPECT_LT(Recall(*fresh, fresh_oracle, rng, 30, 10), 0.95);
}

TEST(VectorIndexTest, ConcurrentSearchesAndBatches) {
  for (const char* factory : {"Flat", "HNSW32"}) {
    SCOPED_TRACE(factory);
    std::mt19937 rng(21);
    auto index = MakeIndex(factory, 64);
    Oracle oracle;
    auto initial = RandomBatch(rng, 0, 500);
    ASSERT_TRUE(index->UpsertBatch(initial).ok());
    AddToOracle(oracle, initial);

    // Each writer owns an id range: batches of new ids (appended) and of replacements (some
    // large enough to force rebuild-and-swap).
    constexpr int kWriters = 2, kBatches = 6;
    std::vector<std::vector<std::vector<std::pair<std::string, std::vector<float>>>>> ops(kWriters);
    for (int w = 0; w < kWriters; ++w) {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<std::pair<std::string, std::vector<float>>> batch;
        if (b % 2 == 0) {
          batch = RandomBatch(rng, 1000 * (w + 1) + 50 * b, 50);
        } else {
          for (int i = w * 250; i < w * 250 + 40 * b; ++i) {
            batch.push_back({Id(i), RandomUnitVector(rng)});
          }
        }
        ops[w].push_back(std::move(batch));
      }
    }
    std::vector<std::vector<float>> queries;
    for (int i = 0; i < 50; ++i) queries.push_back(RandomUnitVector(rng));

    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        for (const auto& batch : ops[w]) {
          if (!index->UpsertBatch(batch).ok()) ++failures;
        }
      });
    }
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&] {
        for (int pass = 0; pass < 4; ++pass) {
          for (const auto& q : queries) {
            auto hits = index->Search(q, 10);
            if (!hits.ok() || hits->size() != 10) ++failures;
            for (size_t i = 1; hits.ok() && i < hits->size(); ++i) {
              if ((*hits)[i - 1].score < (*hits)[i].score) ++failures;
            }
            (void)index->Fingerprint();
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    for (const auto& writer_ops : ops) {
      for (const auto& batch : writer_ops) AddToOracle(oracle, batch);
    }
    EXPECT_EQ(index->size(), oracle.size());
    EXPECT_EQ(index->Fingerprint(), VectorIndex::FingerprintOf(oracle.AsPairs()));
    if (std::string(factory) == "Flat") {
      ExpectExact(*index, oracle, rng, 20, 10);
    } else {
      EXPECT_GE(Recall(*index, oracle, rng, 50, 10), 0.95);
    }
  }
}

}  // namespace
}  // namespace modeldock::index
