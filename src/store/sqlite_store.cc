#include "store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <unordered_map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "store/sqlite_integrity.h"
#include "store/txn_check.h"

namespace tidal {
namespace sqlite_internal {

namespace {

// Most events one Next() call returns.
constexpr size_t kMaxWatchBatch = 1000;
// Rough per-event overhead counted against watch_history_bytes.
constexpr int64_t kEventOverheadBytes = 96;

}  // namespace

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string msg = absl::StrCat("sqlite ", what, ": ",
                                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  const int sys = db ? sqlite3_system_errno(db) : 0;
  if ((rc & 0xff) == SQLITE_FULL ||
      ((rc & 0xff) == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT))) {
    const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
    std::string path = file ? file : "";
    std::string dir = std::filesystem::path(path).parent_path().string();
    return absl::ResourceExhaustedError(absl::StrCat(
        "the data directory is full: ", dir.empty() ? "." : dir, " (writing ",
        path, ": ", sys == EDQUOT ? "disk quota exceeded" : sqlite3_errstr(rc),
        "); free space there, then retry"));
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return absl::UnavailableError(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(msg);
    default:
      return absl::InternalError(msg);
  }
}

namespace {

std::string ColumnBlob(sqlite3_stmt* stmt, int col) {
  const void* data = sqlite3_column_blob(stmt, col);
  int n = sqlite3_column_bytes(stmt, col);
  return data ? std::string(static_cast<const char*>(data), n) : std::string();
}

void BindBlob(sqlite3_stmt* stmt, int idx, const std::string& s) {
  // A zero-length blob must not be bound as NULL.
  sqlite3_bind_blob(stmt, idx, s.empty() ? "" : s.data(),
                    static_cast<int>(s.size()), SQLITE_STATIC);
}

// Resets a cached statement when it goes out of scope.
class StmtScope {
 public:
  explicit StmtScope(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~StmtScope() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_;
};

}  // namespace

// One SQLite connection and its cached prepared statements. Not thread-safe:
// the store hands each connection to one thread at a time.
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& path, int busy_timeout_ms) {
    sqlite3* db = nullptr;
    // Never SQLITE_OPEN_CREATE: a store file that vanished must not come
    // back empty (Open creates new stores itself).
    int rc =
        sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      absl::Status s = SqliteError(db, rc, absl::StrCat("open ", path));
      sqlite3_close_v2(db);
      return s;
    }
    auto conn = std::unique_ptr<Connection>(new Connection(db));
    sqlite3_busy_timeout(db, busy_timeout_ms);
    return conn;
  }

  ~Connection() {
    for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  sqlite3* db() const { return db_; }

  absl::Status Exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc == SQLITE_OK) return absl::OkStatus();
    sqlite3_free(err);
    return SqliteError(db_, rc, sql);
  }

  // Returns the cached statement for `sql` (a string literal).
  absl::StatusOr<sqlite3_stmt*> Prepare(const char* sql) {
    auto it = stmts_.find(sql);
    if (it != stmts_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt,
                                nullptr);
    if (rc != SQLITE_OK)
      return SqliteError(db_, rc, absl::StrCat("prepare ", sql));
    stmts_.emplace(sql, stmt);
    return stmt;
  }

  // Steps a statement that returns no rows.
  absl::Status Run(sqlite3_stmt* stmt) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return absl::OkStatus();
    return SqliteError(db_, rc, sqlite3_sql(stmt));
  }

  // Steps a query: true on a row, false when done.
  absl::StatusOr<bool> Step(sqlite3_stmt* stmt) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, sqlite3_sql(stmt));
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* const db_;
  std::unordered_map<const char*, sqlite3_stmt*> stmts_;
};

namespace {

constexpr char kSelectVersion[] =
    "SELECT resource_version, create_version FROM kv WHERE key = ?1";
constexpr char kSelectFull[] =
    "SELECT value, resource_version, create_version FROM kv WHERE key = ?1";
constexpr char kUpsert[] =
    "INSERT OR REPLACE INTO kv (key, value, resource_version, create_version) "
    "VALUES (?1, ?2, ?3, ?4)";
constexpr char kDelete[] = "DELETE FROM kv WHERE key = ?1";
constexpr char kSelectRevision[] = "SELECT revision FROM meta WHERE id = 1";
constexpr char kUpdateRevision[] = "UPDATE meta SET revision = ?1 WHERE id = 1";
constexpr char kListRange[] =
    "SELECT key, value, resource_version, create_version FROM kv "
    "WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3";
constexpr char kListFrom[] =
    "SELECT key, value, resource_version, create_version FROM kv "
    "WHERE key >= ?1 ORDER BY key LIMIT ?2";

absl::StatusOr<int64_t> ReadRevision(Connection* conn) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn->Prepare(kSelectRevision));
  StmtScope scope(stmt);
  ASSIGN_OR_RETURN(bool row, conn->Step(stmt));
  if (!row) return absl::DataLossError("store meta row is missing");
  return sqlite3_column_int64(stmt, 0);
}

}  // namespace

// The in-memory ring of recent changes and its waiting watchers. Shared by
// the store and its watches (a watch may outlive the store). Thread-safe.
class WatchHub {
 public:
  WatchHub(int64_t start_revision, int64_t max_events, int64_t max_bytes)
      : max_events_(std::max<int64_t>(1, max_events)),
        max_bytes_(std::max<int64_t>(1, max_bytes)),
        compacted_rev_(start_revision) {}

  // Appends the events of newly committed revisions, in revision order.
  void Publish(std::vector<WatchEvent> events) {
    if (events.empty()) return;
    absl::MutexLock lock(&mu_);
    for (auto& ev : events) {
      bytes_ += EventBytes(ev);
      ring_.push_back(std::move(ev));
    }
    while (!ring_.empty() &&
           (static_cast<int64_t>(ring_.size()) > max_events_ ||
            bytes_ > max_bytes_)) {
      // Evict whole revisions so a retained revision is always complete.
      int64_t rev = ring_.front().kv.resource_version;
      while (!ring_.empty() && ring_.front().kv.resource_version == rev) {
        bytes_ -= EventBytes(ring_.front());
        ring_.pop_front();
        ++base_seq_;
      }
      compacted_rev_ = rev;
    }
    cv_.SignalAll();
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    cv_.SignalAll();
  }

  static absl::StatusOr<std::unique_ptr<Watch>> NewWatch(
      std::shared_ptr<WatchHub> hub, const std::string& prefix, int64_t from);

 private:
  friend class HubWatch;

  static int64_t EventBytes(const WatchEvent& ev) {
    return static_cast<int64_t>(ev.kv.key.size() + ev.kv.value.size()) +
           kEventOverheadBytes;
  }

  const int64_t max_events_;
  const int64_t max_bytes_;

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<WatchEvent> ring_ ABSL_GUARDED_BY(mu_);
  // Sequence number of ring_.front(); counts every event ever published.
  int64_t base_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Every revision > compacted_rev_ is retained in full.
  int64_t compacted_rev_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// A watch reading the hub's ring through its own cursor. One reader at a
// time; Cancel() from any thread.
class HubWatch : public Watch {
 public:
  HubWatch(std::shared_ptr<WatchHub> hub, std::string prefix, int64_t from,
           int64_t next_seq)
      : hub_(std::move(hub)),
        prefix_(std::move(prefix)),
        from_(from),
        last_rev_(from),
        next_seq_(next_seq) {}

  ~HubWatch() override = default;

  absl::StatusOr<std::vector<WatchEvent>> Next(
      absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    WatchHub& h = *hub_;
    absl::MutexLock lock(&h.mu_);
    bool timed_out = false;
    while (true) {
      if (cancelled_ || h.closed_)
        return absl::CancelledError("watch cancelled");
      if (!error_.ok()) return error_;
      if (next_seq_ < h.base_seq_) {
        error_ = absl::OutOfRangeError(
            store_internal::WatchTooOld(last_rev_, h.compacted_rev_ + 1));
        return error_;
      }
      std::vector<WatchEvent> out;
      const int64_t end = h.base_seq_ + static_cast<int64_t>(h.ring_.size());
      while (next_seq_ < end && out.size() < kMaxWatchBatch) {
        const WatchEvent& ev = h.ring_[next_seq_ - h.base_seq_];
        // Never split a revision across batches once the batch is full.
        if (out.size() + 1 >= kMaxWatchBatch && !out.empty() &&
            ev.kv.resource_version != out.back().kv.resource_version) {
          break;
        }
        ++next_seq_;
        if (ev.kv.resource_version > from_ &&
            absl::StartsWith(ev.kv.key, prefix_)) {
          out.push_back(ev);
        }
      }
      if (!out.empty()) {
        last_rev_ = out.back().kv.resource_version;
        return out;
      }
      if (timed_out) return out;
      timed_out = h.cv_.WaitWithDeadline(&h.mu_, deadline);
    }
  }

  void Cancel() override {
    absl::MutexLock lock(&hub_->mu_);
    cancelled_ = true;
    hub_->cv_.SignalAll();
  }

 private:
  const std::shared_ptr<WatchHub> hub_;
  const std::string prefix_;
  const int64_t from_;

  // Guarded by hub_->mu_.
  int64_t last_rev_;
  int64_t next_seq_;
  bool cancelled_ = false;
  absl::Status error_;
};

absl::StatusOr<std::unique_ptr<Watch>> WatchHub::NewWatch(
    std::shared_ptr<WatchHub> hub, const std::string& prefix, int64_t from) {
  int64_t next_seq;
  {
    absl::MutexLock lock(&hub->mu_);
    if (hub->closed_) return absl::CancelledError("store closed");
    if (from < hub->compacted_rev_) {
      return absl::OutOfRangeError(
          store_internal::WatchTooOld(from, hub->compacted_rev_ + 1));
    }
    auto it = std::upper_bound(hub->ring_.begin(), hub->ring_.end(), from,
                               [](int64_t rev, const WatchEvent& ev) {
                                 return rev < ev.kv.resource_version;
                               });
    next_seq = hub->base_seq_ + (it - hub->ring_.begin());
  }
  return std::unique_ptr<Watch>(
      new HubWatch(std::move(hub), prefix, from, next_seq));
}

}  // namespace sqlite_internal

using sqlite_internal::Connection;
using sqlite_internal::StmtScope;
using sqlite_internal::WatchHub;

struct SqliteStore::Writer {
  const std::vector<Op>* ops = nullptr;
  // A write probe (Health() while the disk is full): commits a one-row write
  // that changes no key and no revision.
  bool probe = false;
  absl::StatusOr<int64_t> result = absl::InternalError("not committed");
  bool done = false;
  absl::CondVar cv;
};

namespace {

constexpr char kCreateSchema[] =
    "CREATE TABLE IF NOT EXISTS kv ("
    "  key BLOB PRIMARY KEY NOT NULL,"
    "  value BLOB NOT NULL,"
    "  resource_version INTEGER NOT NULL,"
    "  create_version INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS meta ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  revision INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta (id, revision) VALUES (1, 0);";
constexpr char kCreateIdentity[] =
    "CREATE TABLE identity ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  store_id TEXT NOT NULL,"
    "  created_at TEXT NOT NULL,"
    "  probe INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO identity (id, store_id, created_at) VALUES (1, ?1, ?2);";
constexpr char kProbeWrite[] =
    "UPDATE identity SET probe = probe + 1 WHERE id = 1";

// Runs the statements in `sql` (one at a time), binding ?1 and ?2 to `a` and
// `b` where they appear.
absl::Status ExecBound(sqlite3* db, const char* sql, const std::string& a = "",
                       const std::string& b = "") {
  const char* tail = sql;
  while (tail != nullptr && *tail != '\0') {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, tail, -1, &stmt, &tail);
    if (rc != SQLITE_OK) return sqlite_internal::SqliteError(db, rc, "prepare");
    if (stmt == nullptr) break;  // trailing whitespace
    if (sqlite3_bind_parameter_count(stmt) >= 1)
      sqlite3_bind_text(stmt, 1, a.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_bind_parameter_count(stmt) >= 2)
      sqlite3_bind_text(stmt, 2, b.c_str(), -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(stmt);
    std::string text = sqlite3_sql(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      return sqlite_internal::SqliteError(db, rc, text);
  }
  return absl::OkStatus();
}

// Creates a new store at `path` whole: the schema and the identity record are
// written to PATH.new, which is then renamed into place, so a crash never
// leaves a half-created store that a later start would call damaged.
absl::StatusOr<std::string> CreateStore(const std::string& path) {
  const std::string tmp = path + ".new";
  for (const char* suffix : {"", "-journal", "-wal", "-shm"})
    ::unlink((tmp + suffix).c_str());
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(tmp.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s =
        sqlite_internal::SqliteError(db, rc, absl::StrCat("create ", tmp));
    sqlite3_close_v2(db);
    return s;
  }
  const std::string id = sqlite_internal::NewStoreId();
  absl::Status s = ExecBound(db, "PRAGMA synchronous=FULL; BEGIN IMMEDIATE;");
  if (s.ok()) s = ExecBound(db, kCreateSchema);
  if (s.ok())
    s = ExecBound(db, kCreateIdentity, id, sqlite_internal::NowRfc3339());
  if (s.ok())
    s = ExecBound(db, absl::StrCat("PRAGMA user_version=",
                                   sqlite_internal::kSchemaVersion, ";COMMIT;")
                          .c_str());
  // WAL mode is recorded in the file's header.
  if (s.ok()) s = ExecBound(db, "PRAGMA journal_mode=WAL");
  sqlite3_close_v2(db);  // checkpoints and removes the WAL
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path,
                                            ": ", std::strerror(errno)));
  }
  if (s.ok()) s = sqlite_internal::SyncParentDir(path);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return id;
}

// Turns the store's checkpoint-on-close off (while it is not known to be
// sound: a checkpoint would fold a damaged log into the database and delete
// the evidence) or back on.
void SetCheckpointOnClose(sqlite3* db, bool on) {
  sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, on ? 0 : 1, nullptr);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const std::string& path, Options options) {
  auto log = GetLogger("store");
  const std::string lock_path = path + ".lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  const absl::Time lock_deadline = absl::Now() + options.lock_wait;
  while (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0 &&
         absl::Now() < lock_deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(lock_fd);
    return absl::FailedPreconditionError(
        absl::StrCat("store ", path, " is in use by another process (",
                     std::strerror(err), ")"));
  }
  auto fail = [&](absl::Status s) {
    ::close(lock_fd);
    return s;
  };

  // A missing file is a new store; an existing one must prove it is sound.
  int64_t size = 0;
  auto exists = sqlite_internal::FileExists(path, &size);
  if (!exists.ok()) return fail(exists.status());
  const std::string wal_path = path + "-wal";
  if (!*exists) {
    int64_t wal_size = 0;
    auto wal = sqlite_internal::FileExists(wal_path, &wal_size);
    if (!wal.ok()) return fail(wal.status());
    if (*wal && wal_size > 0) {
      return fail(sqlite_internal::Damaged(
          path, absl::StrCat("the database file is missing but its "
                             "write-ahead log ",
                             wal_path, " (", wal_size, " bytes) is there")));
    }
    auto id = CreateStore(path);
    if (!id.ok()) return fail(id.status());
    log->info("created a new store {} (id {})", path, *id);
  } else if (size == 0) {
    return fail(sqlite_internal::Damaged(
        path,
        "the database file is empty (0 bytes): it was truncated or "
        "replaced"));
  } else {
    // Before SQLite reads the log (and a write overwrites what follows the
    // point where it stops verifying).
    auto scan = sqlite_internal::ScanWal(wal_path);
    if (!scan.ok()) return fail(scan.status());
    if (!scan->problem.empty())
      return fail(sqlite_internal::Damaged(path, scan->problem));
  }

  auto writer_or = Connection::Open(path, options.busy_timeout_ms);
  if (!writer_or.ok()) return fail(writer_or.status());
  std::unique_ptr<Connection> writer = std::move(writer_or).value();
  SetCheckpointOnClose(writer->db(), false);

  const absl::Time check_start = absl::Now();
  sqlite_internal::DbFacts facts =
      sqlite_internal::InspectDb(writer->db(), /*full=*/true);
  if (facts.newer_schema) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "store ", path, " has schema version ", facts.user_version,
        ", newer than this binary's ", sqlite_internal::kSchemaVersion)));
  }
  if (!facts.problems.empty()) {
    return fail(
        sqlite_internal::Damaged(path, absl::StrJoin(facts.problems, "; ")));
  }
  log->debug("store {}: integrity check of {} keys took {}", path, facts.keys,
             absl::FormatDuration(absl::Now() - check_start));

  // WAL: readers never block the writer; synchronous=FULL: a commit is on
  // disk (WAL fsync'd) before Txn returns.
  {
    auto stmt = writer->Prepare("PRAGMA journal_mode=WAL");
    if (!stmt.ok()) return fail(stmt.status());
    StmtScope scope(*stmt);
    auto row = writer->Step(*stmt);
    if (!row.ok()) return fail(row.status());
    std::string mode =
        *row ? reinterpret_cast<const char*>(sqlite3_column_text(*stmt, 0))
             : "";
    if (mode != "wal") {
      return fail(absl::UnavailableError(absl::StrCat(
          "cannot enable WAL mode on ", path, " (got '", mode, "')")));
    }
  }
  for (const char* sql :
       {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=OFF"}) {
    absl::Status s = writer->Exec(sql);
    if (!s.ok()) return fail(s);
  }
  if (options.max_pages > 0) {
    absl::Status s = ExecBound(
        writer->db(),
        absl::StrCat("PRAGMA max_page_count=", options.max_pages).c_str());
    if (!s.ok()) return fail(s);
  }
  std::string store_id = facts.store_id;
  if (facts.user_version < sqlite_internal::kSchemaVersion) {
    // A store from before identity records: sound (checked above), so record
    // its identity now.
    store_id = sqlite_internal::NewStoreId();
    absl::Status s = ExecBound(writer->db(), "BEGIN IMMEDIATE");
    if (s.ok())
      s = ExecBound(writer->db(), kCreateIdentity, store_id,
                    sqlite_internal::NowRfc3339());
    if (s.ok())
      s = ExecBound(writer->db(),
                    absl::StrCat("PRAGMA user_version=",
                                 sqlite_internal::kSchemaVersion, ";COMMIT;")
                        .c_str());
    if (!s.ok()) {
      writer->Exec("ROLLBACK").IgnoreError();
      return fail(s);
    }
    log->info("store {} predates identity records; recorded id {}", path,
              store_id);
  }
  auto revision = sqlite_internal::ReadRevision(writer.get());
  if (!revision.ok()) return fail(revision.status());
  SetCheckpointOnClose(writer->db(), true);

  log->info("opened store {} (id {}) at revision {} with {} keys", path,
            store_id, *revision, facts.keys);
  return std::unique_ptr<SqliteStore>(new SqliteStore(
      path, options, lock_fd, std::move(writer), *revision, store_id));
}

SqliteStore::SqliteStore(std::string path, Options options, int lock_fd,
                         std::unique_ptr<Connection> writer, int64_t revision,
                         std::string store_id)
    : path_(std::move(path)),
      options_(options),
      lock_fd_(lock_fd),
      store_id_(std::move(store_id)),
      hub_(std::make_shared<WatchHub>(revision, options.watch_history_events,
                                      options.watch_history_bytes)),
      writer_(std::move(writer)),
      revision_(revision) {}

SqliteStore::~SqliteStore() {
  hub_->Close();
  {
    absl::MutexLock lock(&pool_mu_);
    readers_.clear();
  }
  // Close every connection before releasing the process lock.
  writer_.reset();
  ::close(lock_fd_);
}

namespace {

// The current state of a key as read inside a write transaction.
struct Current : store_internal::KeyState {
  std::string value;
};

// Applies one txn at `rev` inside an open write transaction. A logical
// failure (precondition, missing key) is returned with nothing written and
// *fatal false; an SQL error sets *fatal (the whole batch must roll back).
absl::Status ApplyTxn(Connection* conn, const std::vector<Op>& ops, int64_t rev,
                      std::vector<WatchEvent>* events, bool* fatal) {
  *fatal = false;
  std::vector<Current> current(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    const bool full = op.type == Op::Type::kDelete;
    auto stmt_or = conn->Prepare(full ? sqlite_internal::kSelectFull
                                      : sqlite_internal::kSelectVersion);
    if (!stmt_or.ok()) {
      *fatal = true;
      return stmt_or.status();
    }
    StmtScope scope(*stmt_or);
    sqlite_internal::BindBlob(scope.get(), 1, op.key);
    auto row = conn->Step(scope.get());
    if (!row.ok()) {
      *fatal = true;
      return row.status();
    }
    Current& cur = current[i];
    if (*row) {
      cur.exists = true;
      if (full) {
        cur.value = sqlite_internal::ColumnBlob(scope.get(), 0);
        cur.resource_version = sqlite3_column_int64(scope.get(), 1);
        cur.create_version = sqlite3_column_int64(scope.get(), 2);
      } else {
        cur.resource_version = sqlite3_column_int64(scope.get(), 0);
        cur.create_version = sqlite3_column_int64(scope.get(), 1);
      }
    }
    RETURN_IF_ERROR(store_internal::CheckPrecondition(op, cur));
  }

  *fatal = true;  // From here on any error is an SQL error.
  for (size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    if (op.type == Op::Type::kCheck) continue;  // writes nothing
    Current& cur = current[i];
    WatchEvent ev;
    ev.prev_version = cur.exists ? cur.resource_version : 0;
    ev.kv.key = op.key;
    ev.kv.resource_version = rev;
    if (op.type == Op::Type::kPut) {
      ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                       conn->Prepare(sqlite_internal::kUpsert));
      StmtScope scope(stmt);
      const int64_t create = cur.exists ? cur.create_version : rev;
      sqlite_internal::BindBlob(stmt, 1, op.key);
      sqlite_internal::BindBlob(stmt, 2, op.value);
      sqlite3_bind_int64(stmt, 3, rev);
      sqlite3_bind_int64(stmt, 4, create);
      RETURN_IF_ERROR(conn->Run(stmt));
      ev.type = WatchEvent::Type::kPut;
      ev.kv.value = op.value;
      ev.kv.create_version = create;
    } else {
      ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                       conn->Prepare(sqlite_internal::kDelete));
      StmtScope scope(stmt);
      sqlite_internal::BindBlob(stmt, 1, op.key);
      RETURN_IF_ERROR(conn->Run(stmt));
      ev.type = WatchEvent::Type::kDelete;
      ev.kv.value = std::move(cur.value);
      ev.kv.create_version = cur.create_version;
    }
    events->push_back(std::move(ev));
  }
  *fatal = false;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> SqliteStore::Txn(const std::vector<Op>& ops) {
  RETURN_IF_ERROR(store_internal::ValidateOps(ops));
  RETURN_IF_ERROR(store_internal::RejectLeases(ops));
  Writer w;
  w.ops = &ops;
  return Submit(&w);
}

absl::StatusOr<int64_t> SqliteStore::Submit(Writer* wp) {
  Writer& w = *wp;
  std::vector<Writer*> batch;
  {
    absl::MutexLock lock(&queue_mu_);
    queue_.push_back(&w);
    while (!w.done && queue_.front() != &w) w.cv.Wait(&queue_mu_);
    if (w.done) return std::move(w.result);
    // This writer leads: commit it together with whoever queued behind it.
    for (Writer* q : queue_) {
      if (static_cast<int>(batch.size()) >=
          std::max(1, options_.max_group_commit))
        break;
      batch.push_back(q);
    }
  }
  CommitBatch(batch);
  {
    absl::MutexLock lock(&queue_mu_);
    for (Writer* q : batch) {
      queue_.pop_front();
      if (q != &w) {
        q->done = true;
        q->cv.Signal();
      }
    }
    if (!queue_.empty()) queue_.front()->cv.Signal();
  }
  return std::move(w.result);
}

void SqliteStore::CommitBatch(const std::vector<Writer*>& batch) {
  Connection* conn = writer_.get();
  const int64_t start = revision_.load();
  int64_t rev = start;
  std::vector<WatchEvent> events;

  absl::Status s = conn->Exec("BEGIN IMMEDIATE");
  if (!s.ok()) {
    Observe(s).IgnoreError();
    for (Writer* w : batch) w->result = s;
    return;
  }
  bool probe = false;
  for (Writer* w : batch) {
    if (w->probe) {
      probe = true;
      continue;
    }
    bool fatal = false;
    absl::Status txn = ApplyTxn(conn, *w->ops, rev + 1, &events, &fatal);
    if (fatal) {
      s = txn;
      break;
    }
    if (txn.ok()) {
      // Checks alone write nothing: the revision stays.
      w->result = store_internal::ChecksOnly(*w->ops) ? rev : ++rev;
    } else {
      w->result = txn;
    }
  }
  if (s.ok() && rev != start) {
    auto stmt = conn->Prepare(sqlite_internal::kUpdateRevision);
    if (stmt.ok()) {
      StmtScope scope(*stmt);
      sqlite3_bind_int64(*stmt, 1, rev);
      s = conn->Run(*stmt);
    } else {
      s = stmt.status();
    }
  }
  if (s.ok() && probe && rev == start) s = conn->Exec(kProbeWrite);
  if (s.ok()) s = conn->Exec("COMMIT");
  if (!s.ok()) {
    Observe(s).IgnoreError();
    GetLogger("store")->error("commit of {} txns failed: {}", batch.size(),
                              s.ToString());
    if (!sqlite3_get_autocommit(conn->db()))
      conn->Exec("ROLLBACK").IgnoreError();
    // Every txn of the batch was evaluated against state that is now gone.
    for (Writer* w : batch) w->result = s;
    return;
  }
  for (Writer* w : batch) {
    if (w->probe) w->result = rev;
  }
  revision_.store(rev);
  hub_->Publish(std::move(events));
  absl::MutexLock lock(&fault_mu_);
  if (absl::IsResourceExhausted(fault_)) {
    GetLogger("store")->warn("store {} is writable again", path_);
    fault_ = absl::OkStatus();
  }
}

absl::Status SqliteStore::Observe(absl::Status s) {
  if (!absl::IsDataLoss(s) && !absl::IsResourceExhausted(s)) return s;
  absl::MutexLock lock(&fault_mu_);
  if (absl::IsDataLoss(fault_)) return s;
  if (absl::IsDataLoss(s)) {
    GetLogger("store")->critical(
        "store {} is damaged: {}. tidald keeps serving what it can read and "
        "/readyz fails; stop tidald, run `tidald --store-check`, and restore "
        "a backup (docs/store.md, Recovery)",
        path_, s.ToString());
    fault_ = absl::DataLossError(
        absl::StrCat("store ", path_, " is damaged: ", s.message()));
  } else if (fault_.ok()) {
    GetLogger("store")->error("{}", std::string(s.message()));
    fault_ = s;
  }
  return s;
}

absl::Status SqliteStore::Health() {
  absl::Status fault;
  {
    absl::MutexLock lock(&fault_mu_);
    fault = fault_;
  }
  if (absl::IsDataLoss(fault)) return fault;
  // A real read: the revision and the identity in one read transaction.
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  absl::Status read = [&]() -> absl::Status {
    RETURN_IF_ERROR(conn->Exec("BEGIN"));
    auto body = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(int64_t rev, sqlite_internal::ReadRevision(conn.get()));
      (void)rev;
      ASSIGN_OR_RETURN(
          sqlite3_stmt * stmt,
          conn->Prepare("SELECT store_id FROM identity WHERE id = 1"));
      StmtScope scope(stmt);
      ASSIGN_OR_RETURN(bool row, conn->Step(stmt));
      if (!row)
        return absl::DataLossError("the store identity record is missing");
      return absl::OkStatus();
    };
    absl::Status st = body();
    conn->Exec(st.ok() ? "COMMIT" : "ROLLBACK").IgnoreError();
    return st;
  }();
  ReleaseReader(std::move(conn));
  RETURN_IF_ERROR(Observe(read));
  if (!absl::IsResourceExhausted(fault)) return absl::OkStatus();
  Writer w;
  w.probe = true;
  return Submit(&w).status();
}

absl::StatusOr<std::unique_ptr<Connection>> SqliteStore::AcquireReader() {
  {
    absl::MutexLock lock(&pool_mu_);
    if (!readers_.empty()) {
      auto conn = std::move(readers_.back());
      readers_.pop_back();
      return conn;
    }
  }
  auto opened = Connection::Open(path_, options_.busy_timeout_ms);
  if (!opened.ok()) return Observe(opened.status());
  std::unique_ptr<Connection> conn = std::move(opened).value();
  RETURN_IF_ERROR(Observe(conn->Exec("PRAGMA query_only=1")));
  // Readers are many (one per concurrent caller); the OS page cache serves
  // them all, so each keeps a small cache of its own.
  RETURN_IF_ERROR(conn->Exec("PRAGMA cache_size=-256"));
  return conn;
}

void SqliteStore::ReleaseReader(std::unique_ptr<Connection> conn) {
  absl::MutexLock lock(&pool_mu_);
  readers_.push_back(std::move(conn));
}

absl::StatusOr<KeyValue> SqliteStore::Get(const std::string& key) {
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  absl::StatusOr<KeyValue> result = [&]() -> absl::StatusOr<KeyValue> {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     conn->Prepare(sqlite_internal::kSelectFull));
    StmtScope scope(stmt);
    sqlite_internal::BindBlob(stmt, 1, key);
    ASSIGN_OR_RETURN(bool row, conn->Step(stmt));
    if (!row)
      return absl::NotFoundError(absl::StrCat("key \"", key, "\" not found"));
    KeyValue kv;
    kv.key = key;
    kv.value = sqlite_internal::ColumnBlob(stmt, 0);
    kv.resource_version = sqlite3_column_int64(stmt, 1);
    kv.create_version = sqlite3_column_int64(stmt, 2);
    return kv;
  }();
  ReleaseReader(std::move(conn));
  Observe(result.status()).IgnoreError();
  return result;
}

absl::StatusOr<ListResult> SqliteStore::List(const std::string& prefix,
                                             int64_t limit) {
  return ListAfter(prefix, "", limit);
}

absl::StatusOr<ListResult> SqliteStore::ListAfter(const std::string& prefix,
                                                  const std::string& after,
                                                  int64_t limit) {
  if (limit < 0) return absl::InvalidArgumentError("negative list limit");
  // The smallest key after `after` is `after` with a NUL appended.
  const std::string start =
      !after.empty() && after >= prefix ? after + std::string(1, '\0') : prefix;
  ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  absl::StatusOr<ListResult> result = [&]() -> absl::StatusOr<ListResult> {
    // One read transaction: the revision and the rows come from one snapshot.
    RETURN_IF_ERROR(conn->Exec("BEGIN"));
    auto body = [&]() -> absl::StatusOr<ListResult> {
      ListResult out;
      ASSIGN_OR_RETURN(out.resource_version,
                       sqlite_internal::ReadRevision(conn.get()));
      const std::string end = store_internal::PrefixEnd(prefix);
      ASSIGN_OR_RETURN(
          sqlite3_stmt * stmt,
          conn->Prepare(end.empty() ? sqlite_internal::kListFrom
                                    : sqlite_internal::kListRange));
      StmtScope scope(stmt);
      sqlite_internal::BindBlob(stmt, 1, start);
      int limit_idx = 2;
      if (!end.empty()) {
        sqlite_internal::BindBlob(stmt, 2, end);
        limit_idx = 3;
      }
      sqlite3_bind_int64(stmt, limit_idx, limit == 0 ? -1 : limit);
      while (true) {
        ASSIGN_OR_RETURN(bool row, conn->Step(stmt));
        if (!row) break;
        KeyValue kv;
        kv.key = sqlite_internal::ColumnBlob(stmt, 0);
        kv.value = sqlite_internal::ColumnBlob(stmt, 1);
        kv.resource_version = sqlite3_column_int64(stmt, 2);
        kv.create_version = sqlite3_column_int64(stmt, 3);
        out.items.push_back(std::move(kv));
      }
      return out;
    };
    absl::StatusOr<ListResult> r = body();
    absl::Status end_status = conn->Exec(r.ok() ? "COMMIT" : "ROLLBACK");
    if (r.ok() && !end_status.ok()) return end_status;
    return r;
  }();
  ReleaseReader(std::move(conn));
  Observe(result.status()).IgnoreError();
  return result;
}

absl::StatusOr<std::unique_ptr<Watch>> SqliteStore::WatchPrefix(
    const std::string& prefix, int64_t from_version) {
  if (from_version < 0)
    return absl::InvalidArgumentError("negative watch revision");
  return WatchHub::NewWatch(hub_, prefix, from_version);
}

absl::StatusOr<int64_t> SqliteStore::CurrentVersion() {
  return revision_.load();
}

}  // namespace tidal
