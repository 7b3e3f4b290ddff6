#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "store/store.h"

namespace tidal::testing {

class MemoryWatch;

// An in-memory Store with etcd semantics: a store-wide revision bumped once
// per committed Txn, all-or-nothing transactions with per-key CAS
// preconditions, ordered List and prefix watches. Every change is kept in a
// history so watches can start from any revision still in it; a watcher whose
// unread backlog grows past `max_backlog` events gets OutOfRange (as does a
// watch starting before Compact()). Thread-safe.
class MemoryStore : public Store {
 public:
  explicit MemoryStore(size_t max_backlog = 10000);
  // What a store committed: its data, revision and change history.
  struct Snapshot;
  // A store that continues from `from` (nullptr: an empty one), as a
  // reopened store continues from its files.
  MemoryStore(std::shared_ptr<const Snapshot> from, size_t max_backlog);
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;
  ~MemoryStore() override;

  absl::StatusOr<int64_t> Txn(const std::vector<Op>& ops) override;
  absl::StatusOr<KeyValue> Get(const std::string& key) override;
  absl::StatusOr<ListResult> List(const std::string& prefix,
                                  int64_t limit = 0) override;
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(
      const std::string& prefix, int64_t from_version) override;
  absl::StatusOr<int64_t> CurrentVersion() override;

  // Test controls.
  // Drops the change history up to the current revision: watches starting
  // before it get OutOfRange.
  void Compact();
  // Makes every following Txn fail with `status` (OK to clear).
  void FailTxns(absl::Status status);
  // Number of committed transactions.
  int64_t txn_count();
  // Number of open watches.
  int watch_count();
  // What the store committed so far, for a MemoryStore(snapshot, ...).
  std::shared_ptr<const Snapshot> TakeSnapshot();

 private:
  friend class MemoryWatch;
  // The state, shared with open watches so a watch may outlive the store.
  struct Core;
  std::shared_ptr<Core> core_;
};

}  // namespace tidal::testing
