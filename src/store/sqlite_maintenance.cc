// The SQLite store's maintenance commands: Check, Backup and Restore (see
// sqlite_store.h). They work on the files directly, without SqliteStore::Open.

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "store/sqlite_integrity.h"
#include "store/sqlite_store.h"

namespace tidal {
namespace {

using sqlite_internal::DbFacts;

// A raw SQLite connection, closed on destruction (without a checkpoint).
class RawDb {
 public:
  static absl::StatusOr<RawDb> Open(const std::string& path, int flags) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
      absl::Status s =
          sqlite_internal::SqliteError(db, rc, absl::StrCat("open ", path));
      sqlite3_close_v2(db);
      return s;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    return RawDb(db);
  }
  RawDb(RawDb&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  RawDb& operator=(RawDb&&) = delete;
  ~RawDb() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }
  sqlite3* get() const { return db_; }

 private:
  explicit RawDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// The store's lock file (the one SqliteStore::Open holds), taken without
// waiting. held() is false when another process has the store open.
class StoreLock {
 public:
  explicit StoreLock(const std::string& path) {
    fd_ = ::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    held_ = fd_ >= 0 && ::flock(fd_, LOCK_EX | LOCK_NB) == 0;
  }
  ~StoreLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool held() const { return held_; }
  // Another process holds it.
  bool in_use() const { return fd_ >= 0 && !held_; }

 private:
  int fd_ = -1;
  bool held_ = false;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  return sqlite_internal::SqliteError(db, rc, sql);
}

absl::Status SyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot sync ", path, ": ", std::strerror(err)));
  }
  ::close(fd);
  return absl::OkStatus();
}

// Checks the files of the store at `path` (with the WAL scan when
// `scan_wal`), filling `r`.
absl::Status Inspect(const std::string& path, bool scan_wal,
                     SqliteStore::CheckReport* r) {
  r->path = path;
  ASSIGN_OR_RETURN(r->exists, sqlite_internal::FileExists(path, &r->bytes));
  if (!r->exists) {
    r->problems.push_back(absl::StrCat("there is no store file at ", path));
    return absl::OkStatus();
  }
  const std::string wal = path + "-wal";
  ASSIGN_OR_RETURN(bool has_wal,
                   sqlite_internal::FileExists(wal, &r->wal_bytes));
  (void)has_wal;
  if (r->bytes == 0) {
    r->problems.push_back("the database file is empty (0 bytes)");
    return absl::OkStatus();
  }
  if (scan_wal) {
    ASSIGN_OR_RETURN(sqlite_internal::WalScan scan,
                     sqlite_internal::ScanWal(wal));
    if (!scan.problem.empty()) r->problems.push_back(scan.problem);
  }
  ASSIGN_OR_RETURN(RawDb db, RawDb::Open(path, SQLITE_OPEN_READONLY));
  DbFacts facts = sqlite_internal::InspectDb(db.get(), /*full=*/true);
  if (facts.newer_schema) {
    r->problems.push_back(absl::StrCat(
        "its schema version ", facts.user_version,
        " is newer than this binary's ", sqlite_internal::kSchemaVersion));
  }
  for (auto& p : facts.problems) r->problems.push_back(std::move(p));
  r->store_id = facts.store_id;
  r->created_at = facts.created_at;
  r->revision = facts.revision;
  r->keys = facts.keys;
  return absl::OkStatus();
}

// Runs `check_value` over every value of the store at `path`.
absl::Status CheckValues(const std::string& path,
                         const SqliteStore::ValueCheck& check_value,
                         SqliteStore::CheckReport* r) {
  ASSIGN_OR_RETURN(RawDb db, RawDb::Open(path, SQLITE_OPEN_READONLY));
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(
      db.get(),
      "SELECT key, value, resource_version, create_version FROM kv "
      "ORDER BY key",
      -1, &stmt, nullptr);
  if (rc != SQLITE_OK)
    return sqlite_internal::SqliteError(db.get(), rc, "list values");
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    KeyValue kv;
    auto blob = [&](int col) {
      const void* p = sqlite3_column_blob(stmt, col);
      return p ? std::string(static_cast<const char*>(p),
                             sqlite3_column_bytes(stmt, col))
               : std::string();
    };
    kv.key = blob(0);
    kv.value = blob(1);
    kv.resource_version = sqlite3_column_int64(stmt, 2);
    kv.create_version = sqlite3_column_int64(stmt, 3);
    absl::Status s = check_value(kv);
    if (!s.ok())
      r->damaged_keys.push_back(absl::StrCat(kv.key, ": ", s.message()));
  }
  absl::Status s = rc == SQLITE_DONE ? absl::OkStatus()
                                     : sqlite_internal::SqliteError(
                                           db.get(), rc, "list values");
  sqlite3_finalize(stmt);
  if (!s.ok()) r->problems.push_back(std::string(s.message()));
  return absl::OkStatus();
}

// Copies the database `from` to `to` with the online backup API; `to` is a
// single file (rollback journal mode) when done.
absl::Status CopyDb(const std::string& from, const std::string& to) {
  for (const char* suffix : {"", "-journal", "-wal", "-shm"})
    ::unlink((to + suffix).c_str());
  ASSIGN_OR_RETURN(RawDb src, RawDb::Open(from, SQLITE_OPEN_READONLY));
  ASSIGN_OR_RETURN(RawDb dst,
                   RawDb::Open(to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  sqlite3_backup* b = sqlite3_backup_init(dst.get(), "main", src.get(), "main");
  if (b == nullptr)
    return sqlite_internal::SqliteError(dst.get(), sqlite3_errcode(dst.get()),
                                        "backup");
  const absl::Time deadline = absl::Now() + absl::Minutes(5);
  int rc;
  while (true) {
    rc = sqlite3_backup_step(b, 1024);
    if (rc == SQLITE_DONE) break;
    if ((rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) &&
        absl::Now() < deadline) {
      if (rc != SQLITE_OK) absl::SleepFor(absl::Milliseconds(5));
      continue;
    }
    break;
  }
  int finish = sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE)
    return sqlite_internal::SqliteError(src.get(), rc, "backup step");
  if (finish != SQLITE_OK)
    return sqlite_internal::SqliteError(dst.get(), finish, "backup finish");
  RETURN_IF_ERROR(Exec(dst.get(), "PRAGMA journal_mode=DELETE"));
  return absl::OkStatus();
}

std::string TimeStamp() {
  return absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone());
}

// Copies the database at `from` to `tmp` with SQLite's backup API, checks
// the copy as a store (`copy`) and syncs it. On failure `tmp` is removed.
absl::Status CopyAndVerify(const std::string& from, const std::string& tmp,
                           SqliteStore::CheckReport* copy) {
  absl::Status s = CopyDb(from, tmp);
  if (s.ok()) s = Inspect(tmp, /*scan_wal=*/true, copy);
  if (s.ok() && !copy->problems.empty()) {
    s = absl::DataLossError(absl::StrCat(
        "the copy at ", tmp,
        " does not verify: ", absl::StrJoin(copy->problems, "; ")));
  }
  if (s.ok()) s = SyncFile(tmp);
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

}  // namespace

absl::StatusOr<SqliteStore::CheckReport> SqliteStore::Check(
    const std::string& path, const ValueCheck& check_value) {
  CheckReport r;
  StoreLock lock(path);
  r.live = lock.in_use();
  // While a tidald writes, its log is a moving target: read it through
  // SQLite only.
  RETURN_IF_ERROR(Inspect(path, /*scan_wal=*/!r.live, &r));
  if (check_value && r.exists && r.problems.empty())
    RETURN_IF_ERROR(CheckValues(path, check_value, &r));
  return r;
}

absl::StatusOr<SqliteStore::CheckReport> SqliteStore::Backup(
    const std::string& path, const std::string& dest) {
  ASSIGN_OR_RETURN(CheckReport source, Check(path));
  if (!source.exists)
    return absl::NotFoundError(absl::StrCat("there is no store at ", path));
  if (!source.problems.empty()) {
    return absl::DataLossError(absl::StrCat(
        "store ", path, " is damaged: ", absl::StrJoin(source.problems, "; "),
        "; no backup was written (a copy would carry the damage)"));
  }
  const std::string tmp = dest + ".tmp";
  CheckReport copy;
  RETURN_IF_ERROR(CopyAndVerify(path, tmp, &copy));
  absl::Status s;
  if (::rename(tmp.c_str(), dest.c_str()) != 0) {
    s = absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", dest,
                                            ": ", std::strerror(errno)));
  }
  if (s.ok()) s = sqlite_internal::SyncParentDir(dest);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  copy.path = dest;
  return copy;
}

absl::StatusOr<SqliteStore::CheckReport> SqliteStore::Restore(
    const std::string& backup, const std::string& path, std::string* kept) {
  StoreLock lock(path);
  if (!lock.held()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", path,
        " is in use by another process (a running tidald?); stop it first"));
  }
  CheckReport b;
  RETURN_IF_ERROR(Inspect(backup, /*scan_wal=*/true, &b));
  if (!b.exists)
    return absl::NotFoundError(absl::StrCat("there is no backup at ", backup));
  if (!b.problems.empty()) {
    return absl::DataLossError(absl::StrCat(
        "backup ", backup, " is damaged: ", absl::StrJoin(b.problems, "; "),
        "; nothing was changed"));
  }
  const std::string tmp = path + ".restore";
  CheckReport copy;
  RETURN_IF_ERROR(CopyAndVerify(backup, tmp, &copy));
  // Keep what is replaced (the database and its log, renamed as a pair).
  ASSIGN_OR_RETURN(bool exists, sqlite_internal::FileExists(path, nullptr));
  if (exists) {
    const std::string aside = absl::StrCat(path, ".replaced-", TimeStamp());
    if (::rename(path.c_str(), aside.c_str()) != 0) {
      ::unlink(tmp.c_str());
      return absl::UnavailableError(
          absl::StrCat("cannot move ", path, " aside: ", std::strerror(errno)));
    }
    ::rename((path + "-wal").c_str(), (aside + "-wal").c_str());
    if (kept) *kept = aside;
  }
  ::unlink((path + "-shm").c_str());
  ::unlink((path + "-wal").c_str());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot rename ", tmp, " to ", path, ": ", std::strerror(errno)));
  }
  RETURN_IF_ERROR(sqlite_internal::SyncParentDir(path));
  copy.path = path;
  return copy;
}

}  // namespace tidal
