#pragma once

// The embedded Store: one SQLite file in WAL mode with durable (fsync'd)
// commits, plus an in-memory ring of recent changes that feeds watches.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
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
// revision, so revisions keep increasing across restarts; table `identity`
// holds the store's id and creation time, written with the schema when the
// store is created.
//
// Integrity: a missing file is a new store; an existing file must pass
// SQLite's integrity_check, hold the whole schema and the identity record,
// and have a write-ahead log that SQLite will read in full, or Open refuses
// it (DataLoss "store PATH is damaged: ..."), so a truncated, emptied or
// damaged store is never served as if it held no data. At run time an
// SQLITE_CORRUPT/NOTADB answer marks the store damaged (Health() fails from
// then on) and SQLITE_FULL / ENOSPC / EDQUOT becomes ResourceExhausted "the
// data directory is full: DIR ..." until a write succeeds again.
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
    // Largest size of the database file in pages of 4 KiB (0: no limit);
    // writes beyond it fail as when the disk is full.
    int64_t max_pages = 0;
  };

  // What Check found.
  struct CheckReport {
    std::string path;
    bool exists = false;
    // Another process (a running tidald) has the store open: the check read
    // it through SQLite and did not scan the write-ahead log itself.
    bool live = false;
    std::string store_id;
    std::string created_at;
    int64_t revision = 0;
    int64_t keys = 0;
    int64_t bytes = 0;                      // database file
    int64_t wal_bytes = 0;                  // write-ahead log
    std::vector<std::string> problems;      // the store is damaged
    std::vector<std::string> damaged_keys;  // "KEY: why" for values that fail
    bool ok() const {
      return exists && problems.empty() && damaged_keys.empty();
    }
  };
  // Says whether a stored value is sound (for Check: OK, or why not).
  using ValueCheck = std::function<absl::Status(const KeyValue&)>;

  // Checks the store at `path` without changing it: the write-ahead log (when
  // no other process has the store open), SQLite's integrity_check, the
  // schema, the identity record, and every value with `check_value` when
  // given. Errors only when the check itself cannot run.
  static absl::StatusOr<CheckReport> Check(const std::string& path,
                                           const ValueCheck& check_value = {});

  // Copies the store at `path` to `dest` with SQLite's online backup API (a
  // consistent snapshot, safe while a tidald uses the store), after checking
  // the store, and verifies the copy before it appears at `dest`.
  // DataLoss when the store is damaged (nothing is written).
  static absl::StatusOr<CheckReport> Backup(const std::string& path,
                                            const std::string& dest);

  // Replaces the store at `path` with the backup at `backup` once the backup
  // passes Check. The replaced files are kept as PATH.replaced-TIME[-wal],
  // named in *kept. FailedPrecondition while a process has the store open;
  // DataLoss when the backup is damaged (nothing is changed).
  static absl::StatusOr<CheckReport> Restore(const std::string& backup,
                                             const std::string& path,
                                             std::string* kept = nullptr);

  // Opens the database at `path`, creating a new store when no file is
  // there. Errors: Unavailable when the file cannot be opened,
  // FailedPrecondition when another process has it open or its schema is
  // newer than this binary's, DataLoss when it is damaged or not a Tidal
  // store.
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
  absl::StatusOr<ListResult> ListAfter(const std::string& prefix,
                                       const std::string& after,
                                       int64_t limit) override;
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(
      const std::string& prefix, int64_t from_version) override;
  absl::StatusOr<int64_t> CurrentVersion() override;
  // Reads the store's revision and identity in one read transaction (and,
  // while the data directory is full, commits a one-row write to see whether
  // it still is). DataLoss once the store was found damaged.
  absl::Status Health() override;

  const std::string& path() const { return path_; }
  const std::string& store_id() const { return store_id_; }

 private:
  // One queued Txn call (group commit).
  struct Writer;

  SqliteStore(std::string path, Options options, int lock_fd,
              std::unique_ptr<sqlite_internal::Connection> writer,
              int64_t revision, std::string store_id);

  // Queues `w` for the group commit and waits for its result.
  absl::StatusOr<int64_t> Submit(Writer* w);

  // Notes a failure that says the store is damaged or full (logged, and
  // reported by Health()); returns `s`.
  absl::Status Observe(absl::Status s);

  // Commits `batch` in one SQLite transaction, filling each writer's result.
  // Called only by the writer at the head of the queue.
  void CommitBatch(const std::vector<Writer*>& batch);

  absl::StatusOr<std::unique_ptr<sqlite_internal::Connection>> AcquireReader();
  void ReleaseReader(std::unique_ptr<sqlite_internal::Connection> conn);

  // Constant after construction.
  const std::string path_;
  const Options options_;
  const int lock_fd_;
  const std::string store_id_;
  const std::shared_ptr<sqlite_internal::WatchHub> hub_;

  // Only touched by the current group-commit leader (and the destructor).
  std::unique_ptr<sqlite_internal::Connection> writer_;

  // The last committed revision.
  std::atomic<int64_t> revision_;

  absl::Mutex queue_mu_;
  std::deque<Writer*> queue_ ABSL_GUARDED_BY(queue_mu_);

  // DataLoss (sticky) or ResourceExhausted (until a commit succeeds).
  absl::Mutex fault_mu_;
  absl::Status fault_ ABSL_GUARDED_BY(fault_mu_);

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<sqlite_internal::Connection>> readers_
      ABSL_GUARDED_BY(pool_mu_);
};

}  // namespace tidal
