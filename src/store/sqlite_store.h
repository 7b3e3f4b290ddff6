#pragma once

// The embedded Store: one SQLite file in WAL mode with durable (fsync'd)
// commits, plus an in-memory ring of recent changes that feeds watches.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace tidal {

namespace sqlite_internal {
class Connection;
class WatchHub;
}  // namespace sqlite_internal

// SqliteStore implements Store over a single SQLite database file.
//
// Layout: table `kv` (key BLOB primary key, value, resource_version,
// create_version) holds current values; table `meta` holds the store
// revision, so revisions keep increasing across restarts.
//
// Writes use one writer connection with group commit: concurrent Txn calls
// queue up, and the first in line commits a batch of them in one SQLite
// transaction (each txn still gets its own revision and its own precondition
// check; a failing txn writes nothing). Reads use a pool of reader
// connections, so they never wait for a commit's fsync.
//
// Watches are served from an in-memory ring of the most recent changes
// (bounded by Options::watch_history_events and watch_history_bytes). A watch
// that starts before the oldest retained revision (for example after a
// restart), or that falls so far behind that the events it still needs are
// evicted, fails with OutOfRange and must re-list.
//
// Thread-safe. A process holds an exclusive lock on the file while open.
class SqliteStore : public Store {
 public:
  struct Options {
    // Bounds on the watch ring; the oldest whole revisions are evicted when
    // either is exceeded.
    int64_t watch_history_events = 50000;
    int64_t watch_history_bytes = 16 << 20;
    // How long SQLite waits for a lock held by another connection.
    int busy_timeout_ms = 5000;
    // How long Open waits for the store's lock file before giving up (a
    // child forked by a just-killed tidald holds it until it execs).
    absl::Duration lock_wait = absl::ZeroDuration();
    // Upper bound on txns committed together in one SQLite transaction.
    int max_group_commit = 256;
  };

  // Opens (creating if needed) the database at `path`. Errors: Unavailable
  // when the file cannot be opened, FailedPrecondition when another process
  // has it open, DataLoss when it is not a Tidal store.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const std::string& path, Options options);
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const std::string& path) {
    return Open(path, Options());
  }

  // Closes the database; open watches then fail with Cancelled.
  ~SqliteStore() override;

  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  absl::StatusOr<int64_t> Txn(const std::vector<Op>& ops) override;
  absl::StatusOr<KeyValue> Get(const std::string& key) override;
  absl::StatusOr<ListResult> List(const std::string& prefix,
                                  int64_t limit = 0) override;
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(
      const std::string& prefix, int64_t from_version) override;
  absl::StatusOr<int64_t> CurrentVersion() override;

  const std::string& path() const { return path_; }

 private:
  // One queued Txn call (group commit).
  struct Writer;

  SqliteStore(std::string path, Options options, int lock_fd,
              std::unique_ptr<sqlite_internal::Connection> writer,
              int64_t revision);

  // Commits `batch` in one SQLite transaction, filling each writer's result.
  // Called only by the writer at the head of the queue.
  void CommitBatch(const std::vector<Writer*>& batch);

  absl::StatusOr<std::unique_ptr<sqlite_internal::Connection>> AcquireReader();
  void ReleaseReader(std::unique_ptr<sqlite_internal::Connection> conn);

  // Constant after construction.
  const std::string path_;
  const Options options_;
  const int lock_fd_;
  const std::shared_ptr<sqlite_internal::WatchHub> hub_;

  // Only touched by the current group-commit leader (and the destructor).
  std::unique_ptr<sqlite_internal::Connection> writer_;

  // The last committed revision.
  std::atomic<int64_t> revision_;

  absl::Mutex queue_mu_;
  std::deque<Writer*> queue_ ABSL_GUARDED_BY(queue_mu_);

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<sqlite_internal::Connection>> readers_
      ABSL_GUARDED_BY(pool_mu_);
};

}  // namespace tidal
