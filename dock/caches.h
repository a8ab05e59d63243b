// In-memory caches of the recommend path: model outputs on query datasets keyed by content hash,
// compressed probe features and recent run failures (run costs: run_costs.h). (Loaded models live in
// the workers.)
#ifndef MODELDOCK_DOCK_CACHES_H_
#define MODELDOCK_DOCK_CACHES_H_

#include <cstdint>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "encoder/black_box.h"

namespace modeldock::dock {

// Least-recently-used map from key to shared value, bounded by a cost budget.
template <typename Value>
class LruCache {
 public:
  explicit LruCache(int64_t budget) : budget_(budget) {}

  std::shared_ptr<Value> Get(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) {
      ++misses_;
      return nullptr;
    }
    ++hits_;
    order_.splice(order_.begin(), order_, it->second.position);
    return it->second.value;
  }

  // Whether `key` is cached (does not count as a use).
  bool Contains(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    return map_.count(key) > 0;
  }

  void Put(const std::string& key, std::shared_ptr<Value> value, int64_t cost) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cost > budget_) return;  // would evict everything for one entry
    EraseLocked(key);
    order_.push_front(key);
    map_[key] = Entry{std::move(value), cost, order_.begin()};
    used_ += cost;
    while (used_ > budget_ && !order_.empty()) EraseLocked(order_.back());
  }

  // Removes every key starting with `prefix` (a deleted model's entries).
  void ErasePrefix(const std::string& prefix) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = order_.begin(); it != order_.end();) {
      std::string key = *it++;
      if (key.compare(0, prefix.size(), prefix) == 0) EraseLocked(key);
    }
  }

  int64_t hits() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return hits_;
  }
  int64_t misses() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return misses_;
  }

 private:
  struct Entry {
    std::shared_ptr<Value> value;
    int64_t cost;
    std::list<std::string>::iterator position;
  };
  void EraseLocked(const std::string& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return;
    used_ -= it->second.cost;
    order_.erase(it->second.position);
    map_.erase(it);
  }

  mutable std::mutex mutex_;
  int64_t budget_;
  int64_t used_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
  std::list<std::string> order_;
  std::unordered_map<std::string, Entry> map_;
};

// Runs that hit a limit (wall time, CPU time, memory) on a dataset, by output-cache key (model
// file and dataset): later calls on the same dataset skip the model for `ttl` and say why,
// instead of paying the limit again on every call (on a dock of large models a repeated query
// would otherwise take minutes each time).
class RecentFailures {
 public:
  explicit RecentFailures(absl::Duration ttl) : ttl_(ttl) {}
  void Record(const std::string& key, const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mutex_);
    const absl::Time now = absl::Now();
    if (failures_.size() >= kMaxEntries) {
      for (auto it = failures_.begin(); it != failures_.end();) {
        it = now - it->second.second > ttl_ ? failures_.erase(it) : std::next(it);
      }
      if (failures_.size() >= kMaxEntries) failures_.clear();
    }
    failures_[key] = {status, now};
  }
  // The failure recorded for `key` less than ttl ago, and when.
  std::optional<std::pair<absl::Status, absl::Time>> Get(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = failures_.find(key);
    if (it == failures_.end()) return std::nullopt;
    if (absl::Now() - it->second.second > ttl_) {
      failures_.erase(it);
      return std::nullopt;
    }
    return it->second;
  }
  absl::Duration ttl() const { return ttl_; }

 private:
  static constexpr size_t kMaxEntries = 10000;
  const absl::Duration ttl_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::pair<absl::Status, absl::Time>> failures_;
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_CACHES_H_
