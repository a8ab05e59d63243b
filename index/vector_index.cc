// VectorIndex over FAISS 1.7.3.
//
// Design:
// - Every vector is kept in `entries_` (id -> vector, slot). The FAISS index holds them at
//   positions ("slots") 0..n-1, so FAISS labels are slot numbers and no IndexIDMap is needed
//   (IndexIDMap in 1.7.3 rejects SearchParameters, hence IDSelectors).
// - Upsert appends a new slot; replacing or removing an id only marks its old slot dead
//   (tombstone). Searches skip dead slots through an IDSelector. When more than a quarter of
//   the slots are dead the FAISS index is rebuilt from `entries_` and swapped in. This covers
//   HNSW, which cannot remove vectors at all.
// - UpsertBatch appends all its slots with one FAISS add: FAISS parallelises a batch add with
//   OpenMP, and FAISS 1.7.3's HNSW add sets up a lock per vertex of the whole index and an
//   ntotal-sized visited table on every call, so one vector per add is O(n^2). When the batch
//   makes a rebuild due (tombstones, training) or the index is empty, it builds the new
//   structure from `entries_` plus the batch instead (also one add) and swaps it in.
// - Factories that need training (IVF, PQ, PCA...) are served by an interim exact IndexFlatIP
//   until enough vectors exist (39 per IVF list, FAISS's own minimum without a warning; 9984
//   for other trained structures); then the real index is trained on all vectors and swapped
//   in. A training failure keeps the interim index and doubles the threshold.
// - Rebuilds happen outside the exclusive lock: writers serialise on write_mu_, build the new
//   index while searches continue on the old one, then swap under the exclusive lock.
// - Filtered searches (allowed set) use an IDSelector for Flat/HNSW/IVF (supported by 1.7.3);
//   a small or very selective allowed set, or a FAISS answer with too few hits (HNSW/IVF can
//   miss members of a selective filter), falls back to an exact scan of the allowed vectors.
#include "index/vector_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace modeldock::index {
namespace {

using idx_t = faiss::Index::idx_t;
using Entries = std::vector<std::pair<std::string, std::vector<float>>>;

constexpr char kMagic[8] = {'M', 'D', 'V', 'I', 'N', 'D', 'E', 'X'};
constexpr uint32_t kFormatVersion = 1;
constexpr size_t kDigestChars = 64;
// Filtered searches over at most this many allowed vectors (or under 10% of the index) scan
// them exactly: cheaper than a filtered graph walk and always exact.
constexpr size_t kExactScanMax = 256;
constexpr int64_t kIvfTrainPerList = 39;
constexpr int64_t kOtherTrainMin = 39 * 256;

enum class Kind { kFlat, kHnsw, kIvf, kOther };

Kind KindOf(const faiss::Index* index) {
  if (dynamic_cast<const faiss::IndexFlat*>(index)) return Kind::kFlat;
  if (dynamic_cast<const faiss::IndexHNSW*>(index)) return Kind::kHnsw;
  if (dynamic_cast<const faiss::IndexIVF*>(index)) return Kind::kIvf;
  return Kind::kOther;
}

// Selects slots whose byte in `mask` is non-zero.
class MaskSelector : public faiss::IDSelector {
 public:
  explicit MaskSelector(const std::vector<char>& mask) : mask_(mask) {}
  bool is_member(idx_t id) const override {
    return id >= 0 && id < static_cast<idx_t>(mask_.size()) && mask_[id] != 0;
  }

 private:
  const std::vector<char>& mask_;
};

absl::Status CheckVector(const std::vector<float>& v, int dim, const char* what) {
  if (static_cast<int>(v.size()) != dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has dimension ", v.size(), ", the index has ", dim));
  }
  for (float x : v) {
    if (!std::isfinite(x)) {
      return absl::InvalidArgumentError(absl::StrCat(what, " has a non-finite value"));
    }
  }
  return absl::OkStatus();
}

float Dot(const float* a, const float* b, int dim) {
  float s = 0;
  for (int i = 0; i < dim; ++i) s += a[i] * b[i];
  return s;
}

bool HitBefore(const SearchHit& a, const SearchHit& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.id < b.id;
}

void HashEntry(Sha256& sha, const std::string& id, const std::vector<float>& v) {
  uint64_t n = id.size();
  sha.Update(&n, sizeof(n));
  sha.Update(id);
  n = v.size();
  sha.Update(&n, sizeof(n));
  sha.Update(v.data(), v.size() * sizeof(float));
}

// --- little binary writer/reader for the saved file (native little-endian) ---

class Writer {
 public:
  template <typename T>
  void Pod(const T& v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void Bytes(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void Str(const std::string& s) {
    Pod<uint64_t>(s.size());
    out_ += s;
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  Reader(const char* p, size_t n) : p_(p), end_(p + n) {}
  template <typename T>
  bool Pod(T* v) {
    if (static_cast<size_t>(end_ - p_) < sizeof(T)) return false;
    std::memcpy(v, p_, sizeof(T));
    p_ += sizeof(T);
    return true;
  }
  bool Bytes(void* dst, size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    std::memcpy(dst, p_, n);
    p_ += n;
    return true;
  }
  bool Str(std::string* s) {
    uint64_t n;
    if (!Pod(&n) || static_cast<uint64_t>(end_ - p_) < n) return false;
    s->assign(p_, n);
    p_ += n;
    return true;
  }
  bool done() const { return p_ == end_; }

 private:
  const char* p_;
  const char* end_;
};

absl::Status WriteFileAtomically(const std::string& path, const std::string& data) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".", counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", tmp));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      absl::Status st = absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", tmp));
      ::close(fd);
      ::unlink(tmp.c_str());
      return st;
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    absl::Status st = absl::ErrnoToStatus(errno, absl::StrCat("cannot flush ", tmp));
    ::unlink(tmp.c_str());
    return st;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status st = absl::ErrnoToStatus(errno, absl::StrCat("cannot rename to ", path));
    ::unlink(tmp.c_str());
    return st;
  }
  // Make the rename itself durable.
  std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos
                                       ? 0
                                       : path.find_last_of('/'));
  if (dir.empty()) dir = path.find('/') == 0 ? "/" : ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

struct Entry {
  std::vector<float> vector;
  int64_t slot = -1;
};

// A FAISS index with the ids of its slots.
struct Structure {
  std::unique_ptr<faiss::Index> index;
  Kind kind = Kind::kFlat;
  bool interim = false;  // exact stand-in while the real index awaits training
  std::vector<std::string> slot_ids;
};

class FaissVectorIndex : public VectorIndex {
 public:
  explicit FaissVectorIndex(const IndexOptions& options) : options_(options) {}

  // Sets the training threshold from the factory; INVALID_ARGUMENT for a bad factory.
  absl::Status Init() {
    try {
      std::unique_ptr<faiss::Index> probe(faiss::index_factory(
          options_.dim, options_.factory.c_str(), faiss::METRIC_INNER_PRODUCT));
      if (dynamic_cast<faiss::IndexIDMap*>(probe.get())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "index factory \"", options_.factory, "\": IDMap is managed by modeldock, omit it"));
      }
      if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(probe.get())) {
        train_threshold_ = std::max<int64_t>(1, kIvfTrainPerList * ivf->nlist);
      } else {
        train_threshold_ = kOtherTrainMin;
      }
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad index factory \"", options_.factory, "\": ", e.what()));
    }
    return absl::OkStatus();
  }

  // Builds a FAISS index over all current entries, or, with `batch`, over the entries as they
  // will be once the (validated, duplicate-free) batch is upserted: its vectors win over
  // entries_. Called with write_mu_ held (or before the object is shared), so entries_ is
  // stable.
  absl::StatusOr<Structure> Build(const Entries* batch = nullptr) {
    Structure s;
    std::vector<float> data;
    std::unordered_set<std::string_view> replaced;
    if (batch != nullptr) {
      for (const auto& [id, v] : *batch) {
        if (entries_.count(id)) replaced.insert(id);
      }
    }
    const size_t total =
        entries_.size() + (batch != nullptr ? batch->size() - replaced.size() : 0);
    data.reserve(total * options_.dim);
    s.slot_ids.reserve(total);
    for (const auto& [id, e] : entries_) {
      if (replaced.count(id)) continue;
      data.insert(data.end(), e.vector.begin(), e.vector.end());
      s.slot_ids.push_back(id);
    }
    if (batch != nullptr) {
      for (const auto& [id, v] : *batch) {
        data.insert(data.end(), v.begin(), v.end());
        s.slot_ids.push_back(id);
      }
    }
    const idx_t n = static_cast<idx_t>(s.slot_ids.size());
    try {
      s.index.reset(faiss::index_factory(options_.dim, options_.factory.c_str(),
                                         faiss::METRIC_INNER_PRODUCT));
      if (!s.index->is_trained) {
        bool trained = false;
        if (n >= train_threshold_) {
          try {
            s.index->train(n, data.data());
            trained = true;
          } catch (const faiss::FaissException& e) {
            // Keep serving exactly; try again with more data.
            train_threshold_ *= 2;
          }
        }
        if (!trained) {
          s.index = std::make_unique<faiss::IndexFlatIP>(options_.dim);
          s.interim = true;
        }
      }
      ApplySearchBreadth(s.index.get());
      if (n > 0) s.index->add(n, data.data());
    } catch (const std::exception& e) {  // FaissException, or bad_alloc for a big build
      return absl::InternalError(absl::StrCat("building FAISS index \"", options_.factory,
                                              "\" failed: ", e.what()));
    }
    s.kind = KindOf(s.index.get());
    return s;
  }

  void Install(Structure s) {
    index_ = std::move(s.index);
    kind_ = s.kind;
    interim_ = s.interim;
    slot_ids_ = std::move(s.slot_ids);
    live_.assign(slot_ids_.size(), 1);
    for (size_t i = 0; i < slot_ids_.size(); ++i) {
      if (slot_ids_[i].empty()) {
        live_[i] = 0;
      } else {
        entries_[slot_ids_[i]].slot = static_cast<int64_t>(i);
      }
    }
    dead_ = std::count(live_.begin(), live_.end(), 0);
  }

  absl::Status Upsert(const std::string& id, const std::vector<float>& vector) override {
    if (id.empty()) return absl::InvalidArgumentError("empty id");
    if (absl::Status st = CheckVector(vector, options_.dim, ("vector of " + id).c_str());
        !st.ok()) {
      return st;
    }
    std::lock_guard<std::mutex> write_lock(write_mu_);
    {
      std::unique_lock<std::shared_mutex> lock(mu_);
      try {
        index_->add(1, vector.data());
      } catch (const faiss::FaissException& e) {
        DiscardPartialAdd();
        return absl::InternalError(absl::StrCat("FAISS add of ", id, " failed: ", e.what()));
      }
      auto it = entries_.find(id);
      if (it != entries_.end()) KillSlot(it->second.slot);
      Entry& e = entries_[id];
      e.vector = vector;
      e.slot = static_cast<int64_t>(slot_ids_.size());
      slot_ids_.push_back(id);
      live_.push_back(1);
      fingerprint_.clear();
    }
    return MaybeRebuild();
  }

  absl::Status UpsertBatch(const Entries& batch) override {
    if (batch.empty()) return absl::OkStatus();
    std::unordered_map<std::string_view, size_t> position;  // id -> index in the batch
    position.reserve(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const auto& [id, v] = batch[i];
      if (id.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("batch entry ", i, " has an empty id"));
      }
      const std::string what = absl::StrCat("vector of ", id, " (batch entry ", i, ")");
      if (absl::Status st = CheckVector(v, options_.dim, what.c_str()); !st.ok()) return st;
      auto [it, inserted] = position.emplace(id, i);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("id ", id, " occurs twice in the batch (",
                                                       "entries ", it->second, " and ", i, ")"));
      }
    }

    std::lock_guard<std::mutex> write_lock(write_mu_);
    // Only writers change the members read here, and they hold write_mu_.
    size_t replaced = 0;
    for (const auto& [id, v] : batch) replaced += entries_.count(id);
    const size_t live_after = entries_.size() + batch.size() - replaced;
    const bool compact = (dead_ + replaced) * 4 > slot_ids_.size() + batch.size();
    const bool train = interim_ && static_cast<int64_t>(live_after) >= train_threshold_;
    if (entries_.empty() || compact || train) {
      // Build the final structure outside mu_ (one add of everything), then swap it in.
      auto built = Build(&batch);
      if (!built.ok()) return built.status();  // nothing changed
      std::unique_lock<std::shared_mutex> lock(mu_);
      for (const auto& [id, v] : batch) entries_[id].vector = v;
      Install(std::move(*built));
      fingerprint_.clear();
      return absl::OkStatus();
    }

    std::vector<float> data;
    data.reserve(batch.size() * options_.dim);
    for (const auto& [id, v] : batch) data.insert(data.end(), v.begin(), v.end());
    {
      std::unique_lock<std::shared_mutex> lock(mu_);
      try {
        index_->add(static_cast<idx_t>(batch.size()), data.data());
      } catch (const std::exception& e) {  // FaissException, or bad_alloc for a big batch
        DiscardPartialAdd();
        return absl::InternalError(absl::StrCat("FAISS add of a batch of ", batch.size(),
                                                " vectors failed: ", e.what()));
      }
      for (const auto& [id, v] : batch) {
        auto it = entries_.find(id);
        if (it != entries_.end()) KillSlot(it->second.slot);
        Entry& e = entries_[id];
        e.vector = v;
        e.slot = static_cast<int64_t>(slot_ids_.size());
        slot_ids_.push_back(id);
        live_.push_back(1);
      }
      fingerprint_.clear();
    }
    return MaybeRebuild();  // not due by the test above; kept as the invariant's guard
  }

  absl::Status Remove(const std::string& id) override {
    std::lock_guard<std::mutex> write_lock(write_mu_);
    {
      std::unique_lock<std::shared_mutex> lock(mu_);
      auto it = entries_.find(id);
      if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("no vector for ", id));
      KillSlot(it->second.slot);
      entries_.erase(it);
      fingerprint_.clear();
    }
    return MaybeRebuild();
  }

  absl::StatusOr<std::vector<SearchHit>> Search(
      const std::vector<float>& query, int k,
      const std::unordered_set<std::string>* allowed) const override {
    if (k <= 0) return absl::InvalidArgumentError(absl::StrCat("k must be positive, got ", k));
    if (absl::Status st = CheckVector(query, options_.dim, "query"); !st.ok()) return st;
    std::shared_lock<std::shared_mutex> lock(mu_);

    // Candidate slots: the allowed ones, or all live ones.
    std::vector<char> allowed_mask;
    std::vector<const std::string*> allowed_ids;
    size_t eligible = entries_.size();
    if (allowed != nullptr) {
      allowed_mask.assign(slot_ids_.size(), 0);
      for (const std::string& id : *allowed) {
        auto it = entries_.find(id);
        if (it == entries_.end()) continue;
        allowed_mask[it->second.slot] = 1;
        allowed_ids.push_back(&it->first);
      }
      eligible = allowed_ids.size();
    }
    if (eligible == 0) return std::vector<SearchHit>{};
    const int kk = static_cast<int>(std::min<size_t>(k, eligible));

    const bool exact_structure = kind_ == Kind::kFlat;
    if (allowed != nullptr && !exact_structure &&
        (eligible <= kExactScanMax || eligible * 10 < entries_.size() || kind_ == Kind::kOther)) {
      return ExactScan(query, kk, allowed_ids);
    }
    if (allowed == nullptr && dead_ > 0 && kind_ == Kind::kOther) {
      return ExactScan(query, kk, AllIds());
    }

    const std::vector<char>* mask = allowed != nullptr ? &allowed_mask : (dead_ > 0 ? &live_ : nullptr);
    MaskSelector selector(mask != nullptr ? *mask : live_);
    faiss::IDSelector* sel = mask != nullptr ? &selector : nullptr;
    std::vector<float> scores(kk);
    std::vector<idx_t> labels(kk, -1);
    try {
      if (kind_ == Kind::kHnsw) {
        faiss::SearchParametersHNSW params;
        int breadth = options_.search_breadth > 0
                          ? options_.search_breadth
                          : static_cast<const faiss::IndexHNSW*>(index_.get())->hnsw.efSearch;
        params.efSearch = std::max(breadth, kk);
        params.sel = sel;
        index_->search(1, query.data(), kk, scores.data(), labels.data(), &params);
      } else if (kind_ == Kind::kIvf) {
        faiss::SearchParametersIVF params;
        params.nprobe = static_cast<const faiss::IndexIVF*>(index_.get())->nprobe;
        params.sel = sel;
        index_->search(1, query.data(), kk, scores.data(), labels.data(), &params);
      } else if (sel != nullptr) {
        faiss::SearchParameters params;
        params.sel = sel;
        index_->search(1, query.data(), kk, scores.data(), labels.data(), &params);
      } else {
        index_->search(1, query.data(), kk, scores.data(), labels.data());
      }
    } catch (const faiss::FaissException& e) {
      return absl::InternalError(absl::StrCat("FAISS search failed: ", e.what()));
    }
    std::vector<SearchHit> hits;
    hits.reserve(kk);
    for (int i = 0; i < kk; ++i) {
      idx_t slot = labels[i];
      if (slot < 0 || slot >= static_cast<idx_t>(slot_ids_.size()) || !live_[slot]) continue;
      if (mask != nullptr && !(*mask)[slot]) continue;
      hits.push_back({slot_ids_[slot], scores[i]});
    }
    if (static_cast<int>(hits.size()) < kk) {
      // Approximate structures can miss filtered members; the exact scan cannot.
      return ExactScan(query, kk, allowed != nullptr ? allowed_ids : AllIds());
    }
    std::stable_sort(hits.begin(), hits.end(), HitBefore);
    return hits;
  }

  absl::Status Save(const std::string& path) const override {
    Writer w;
    {
      std::shared_lock<std::shared_mutex> lock(mu_);
      w.Bytes(kMagic, sizeof(kMagic));
      w.Pod<uint32_t>(kFormatVersion);
      w.Pod<uint32_t>(static_cast<uint32_t>(options_.dim));
      w.Str(options_.factory);
      w.Pod<uint64_t>(entries_.size());
      for (const auto& [id, e] : entries_) {
        w.Str(id);
        w.Bytes(e.vector.data(), e.vector.size() * sizeof(float));
      }
      w.Pod<uint8_t>(interim_ ? 1 : 0);
      w.Pod<uint64_t>(slot_ids_.size());
      for (const std::string& id : slot_ids_) w.Str(id);
      faiss::VectorIOWriter faiss_out;
      try {
        faiss::write_index(index_.get(), &faiss_out);
      } catch (const faiss::FaissException& e) {
        return absl::InternalError(absl::StrCat("serialising FAISS index failed: ", e.what()));
      }
      w.Pod<uint64_t>(faiss_out.data.size());
      w.Bytes(faiss_out.data.data(), faiss_out.data.size());
    }
    std::string digest = Sha256::Of(w.out());
    w.out() += digest;
    return WriteFileAtomically(path, w.out());
  }

  // Parses a saved file into this (fresh) object. DATA_LOSS for anything unreadable.
  absl::Status Deserialize(const std::string& path, const std::string& data) {
    auto corrupt = [&path](const std::string& what) {
      return absl::DataLossError(absl::StrCat("index file ", path, " is corrupt: ", what));
    };
    if (data.size() < sizeof(kMagic) + kDigestChars ||
        std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
      return corrupt("not a modeldock index file");
    }
    const size_t body = data.size() - kDigestChars;
    if (Sha256::Of(std::string_view(data.data(), body)) != data.substr(body)) {
      return corrupt("checksum mismatch");
    }
    Reader r(data.data() + sizeof(kMagic), body - sizeof(kMagic));
    uint32_t version = 0, dim = 0;
    std::string factory;
    if (!r.Pod(&version)) return corrupt("truncated header");
    if (version != kFormatVersion) {
      return corrupt(absl::StrCat("unsupported format version ", version));
    }
    if (!r.Pod(&dim) || !r.Str(&factory)) return corrupt("truncated header");
    if (static_cast<int>(dim) != options_.dim) {
      return absl::FailedPreconditionError(absl::StrCat(
          "index file ", path, " has dimension ", dim, ", expected ", options_.dim));
    }
    uint64_t n = 0;
    if (!r.Pod(&n)) return corrupt("truncated entry count");
    for (uint64_t i = 0; i < n; ++i) {
      std::string id;
      std::vector<float> v(dim);
      if (!r.Str(&id) || !r.Bytes(v.data(), v.size() * sizeof(float))) {
        return corrupt("truncated entries");
      }
      entries_[id].vector = std::move(v);
    }
    uint8_t interim = 0;
    uint64_t n_slots = 0;
    if (!r.Pod(&interim) || !r.Pod(&n_slots)) return corrupt("truncated slot table");
    Structure s;
    s.interim = interim != 0;
    std::unordered_set<std::string> slotted;
    for (uint64_t i = 0; i < n_slots; ++i) {
      std::string id;
      if (!r.Str(&id)) return corrupt("truncated slot table");
      if (!id.empty()) {
        if (!entries_.count(id)) return corrupt("slot names an unknown id");
        if (!slotted.insert(id).second) return corrupt("id in two slots");
      }
      s.slot_ids.push_back(std::move(id));
    }
    if (slotted.size() != entries_.size()) return corrupt("slot table does not match entries");
    uint64_t faiss_size = 0;
    if (!r.Pod(&faiss_size)) return corrupt("truncated FAISS section");
    faiss::VectorIOReader faiss_in;
    faiss_in.data.resize(faiss_size);
    if (!r.Bytes(faiss_in.data.data(), faiss_size) || !r.done()) {
      return corrupt("bad FAISS section size");
    }
    if (factory != options_.factory) {
      // Configured structure changed: rebuild from the stored vectors.
      auto built = Build();
      if (!built.ok()) return built.status();
      Install(std::move(*built));
      return absl::OkStatus();
    }
    try {
      s.index.reset(faiss::read_index(&faiss_in));
    } catch (const faiss::FaissException& e) {
      return corrupt(absl::StrCat("FAISS index unreadable: ", e.what()));
    }
    if (s.index->d != options_.dim || s.index->ntotal != static_cast<idx_t>(n_slots)) {
      return corrupt("FAISS index does not match the slot table");
    }
    ApplySearchBreadth(s.index.get());
    s.kind = KindOf(s.index.get());
    Install(std::move(s));
    return absl::OkStatus();
  }

  size_t size() const override {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return entries_.size();
  }
  int dim() const override { return options_.dim; }
  bool Contains(const std::string& id) const override {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return entries_.count(id) > 0;
  }

  std::vector<std::pair<std::string, std::vector<float>>> Contents() const override {
    std::shared_lock<std::shared_mutex> lock(mu_);
    std::vector<std::pair<std::string, std::vector<float>>> out;
    out.reserve(entries_.size());
    for (const auto& [id, e] : entries_) out.emplace_back(id, e.vector);
    return out;
  }

  std::string Fingerprint() const override {
    std::shared_lock<std::shared_mutex> lock(mu_);
    std::lock_guard<std::mutex> fp_lock(fingerprint_mu_);
    if (fingerprint_.empty()) {
      Sha256 sha;
      for (const auto& [id, e] : entries_) HashEntry(sha, id, e.vector);
      fingerprint_ = sha.HexDigest();
    }
    return fingerprint_;
  }

 private:
  void ApplySearchBreadth(faiss::Index* index) const {
    if (options_.search_breadth <= 0) return;
    if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index)) {
      hnsw->hnsw.efSearch = options_.search_breadth;
    } else if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index)) {
      ivf->nprobe = std::min<size_t>(options_.search_breadth, ivf->nlist);
    }
  }

  // After a failed add: FAISS may hold some of the vectors. Their slots get no id (dead), so
  // slot numbers keep matching FAISS labels. Called with mu_ held exclusively.
  void DiscardPartialAdd() {
    while (static_cast<idx_t>(slot_ids_.size()) < index_->ntotal) {
      slot_ids_.emplace_back();
      live_.push_back(0);
      ++dead_;
    }
  }

  void KillSlot(int64_t slot) {
    slot_ids_[slot].clear();
    live_[slot] = 0;
    ++dead_;
  }

  // Rebuild-and-swap when tombstones pile up or the real index can now be trained. Called with
  // write_mu_ held and mu_ not held: searches go on against the old index meanwhile.
  absl::Status MaybeRebuild() {
    const bool compact = dead_ * 4 > slot_ids_.size();
    const bool train = interim_ && static_cast<int64_t>(entries_.size()) >= train_threshold_;
    if (!compact && !train) return absl::OkStatus();
    auto built = Build();
    if (!built.ok()) return built.status();  // the old index stays valid
    std::unique_lock<std::shared_mutex> lock(mu_);
    Install(std::move(*built));
    return absl::OkStatus();
  }

  std::vector<const std::string*> AllIds() const {
    std::vector<const std::string*> ids;
    ids.reserve(entries_.size());
    for (const auto& [id, e] : entries_) ids.push_back(&id);
    return ids;
  }

  std::vector<SearchHit> ExactScan(const std::vector<float>& query, int k,
                                   const std::vector<const std::string*>& ids) const {
    std::vector<SearchHit> hits;
    hits.reserve(ids.size());
    for (const std::string* id : ids) {
      hits.push_back({*id, Dot(query.data(), entries_.at(*id).vector.data(), options_.dim)});
    }
    const size_t n = std::min<size_t>(k, hits.size());
    std::partial_sort(hits.begin(), hits.begin() + n, hits.end(), HitBefore);
    hits.resize(n);
    return hits;
  }

  const IndexOptions options_;
  mutable std::shared_mutex mu_;  // guards everything below; searches share it
  std::mutex write_mu_;           // serialises writers, held across rebuilds

  std::map<std::string, Entry> entries_;  // sorted: the fingerprint walks it in order
  std::unique_ptr<faiss::Index> index_;
  Kind kind_ = Kind::kFlat;
  bool interim_ = false;
  std::vector<std::string> slot_ids_;  // slot -> id, "" when dead
  std::vector<char> live_;             // slot -> alive
  size_t dead_ = 0;
  int64_t train_threshold_ = 0;  // only touched by writers

  mutable std::mutex fingerprint_mu_;
  mutable std::string fingerprint_;  // cache, cleared by writes
};

absl::Status ValidateOptions(const IndexOptions& options) {
  if (options.dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("dim must be positive, got ", options.dim));
  }
  if (options.search_breadth < 0) {
    return absl::InvalidArgumentError("search_breadth must not be negative");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<VectorIndex>> VectorIndex::Create(const IndexOptions& options) {
  if (absl::Status st = ValidateOptions(options); !st.ok()) return st;
  auto index = std::make_unique<FaissVectorIndex>(options);
  if (absl::Status st = index->Init(); !st.ok()) return st;
  auto built = index->Build();
  if (!built.ok()) return built.status();
  index->Install(std::move(*built));
  return std::unique_ptr<VectorIndex>(std::move(index));
}

absl::StatusOr<std::unique_ptr<VectorIndex>> VectorIndex::Load(const std::string& path,
                                                               const IndexOptions& options) {
  if (absl::Status st = ValidateOptions(options); !st.ok()) return st;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("no index file at ", path));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat("cannot open index file ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read index file ", path));
  auto index = std::make_unique<FaissVectorIndex>(options);
  if (absl::Status st = index->Init(); !st.ok()) return st;
  if (absl::Status st = index->Deserialize(path, buffer.str()); !st.ok()) return st;
  return std::unique_ptr<VectorIndex>(std::move(index));
}

std::string VectorIndex::FingerprintOf(
    const std::vector<std::pair<std::string, std::vector<float>>>& entries) {
  // Sorted by id; a repeated id keeps its last vector, as repeated Upserts would.
  std::map<std::string, const std::vector<float>*> sorted;
  for (const auto& [id, v] : entries) sorted[id] = &v;
  Sha256 sha;
  for (const auto& [id, v] : sorted) HashEntry(sha, id, *v);
  return sha.HexDigest();
}

}  // namespace modeldock::index
