// The changes made to a saved VectorIndex since its snapshot, as an append-only log beside it
// (PATH.log next to the snapshot PATH that VectorIndex::Save writes). A registration appends
// one record of a few hundred bytes instead of rewriting the whole index file; the owner folds
// the log into a new snapshot (compaction) when it has grown, as Milvus/knowhere fold their
// growing segments. Loading is snapshot + replay.
//
// Crash safety: each record is [magic][payload length][payload][SHA-256 of the payload], written
// with one write() and flushed (fdatasync) before Append returns. A record cut short by a crash,
// or one whose checksum does not match, ends the replay: the records before it are applied, the
// rest reported (the dock then rebuilds a stale index from its store at start, as it did with a
// bad snapshot). Replaying a log over a snapshot that already holds its changes (a crash
// between a compaction's snapshot and the log's reset) gives the same index: upserts set the
// same values in the same order, and removing an absent id is skipped.
#ifndef MODELDOCK_INDEX_INDEX_LOG_H_
#define MODELDOCK_INDEX_INDEX_LOG_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "index/vector_index.h"

namespace modeldock::index {

class IndexLog {
 public:
  // The log of the snapshot at `index_path` (the file `index_path` + ".log").
  explicit IndexLog(std::string index_path);

  // Appends one change, flushed before returning. The log file is created on first use.
  absl::Status AppendUpsert(const std::string& id, const std::vector<float>& vector);
  absl::Status AppendRemove(const std::string& id);

  struct Replay {
    int64_t applied = 0;           // records applied, in order
    int64_t skipped_removals = 0;  // removals of ids the index did not hold (already applied)
    int64_t ignored_bytes = 0;     // a torn or corrupt tail, not applied
    std::string ignored_reason;    // why the tail was ignored; "" when none was
  };
  // Applies the log's records to `index` in order; no log file is an empty log. A torn or
  // corrupt tail is reported and cut off the file (appends then follow the good records). Sets
  // records() to the number of records read. Errors: the file cannot be read (its status), or
  // a checksummed record the index refuses (wrong dimension: the log belongs to another index;
  // DATA_LOSS naming the record).
  absl::StatusOr<Replay> ReplayInto(VectorIndex* index);

  // Records in the log: those read by ReplayInto plus those appended since (0 after Reset).
  int64_t records() const;
  // Empties the log, once a new snapshot holds its changes.
  absl::Status Reset();

  const std::string& path() const { return log_path_; }

 private:
  absl::Status Append(const std::string& payload);

  const std::string log_path_;
  mutable std::mutex mutex_;  // guards records_ and the file's appends
  int64_t records_ = 0;
};

}  // namespace modeldock::index

#endif  // MODELDOCK_INDEX_INDEX_LOG_H_
