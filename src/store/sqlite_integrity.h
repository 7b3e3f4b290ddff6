#pragma once

// Integrity checks of the SQLite store's files, shared by SqliteStore::Open
// (refuse to start on a damaged store) and the maintenance commands (check,
// backup, restore). Internal to src/store. Stateless, thread-safe.

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tidal::sqlite_internal {

// The schema this binary writes. 1: kv and meta; 2: plus the identity record
// written when the store is created.
constexpr int kSchemaVersion = 2;

// What a read of the write-ahead log (the way SQLite's recovery reads it)
// found.
struct WalScan {
  int64_t bytes = 0;         // size of the WAL file (0: none)
  int64_t frames = 0;        // whole frames in the file
  int64_t valid_frames = 0;  // frames SQLite will read (up to the last commit)
  // Committed transactions written after the point where the log stops
  // verifying: SQLite drops them silently. A power loss tears at most the one
  // transaction in flight, so two or more mean the log is damaged.
  int64_t commits_after_break = 0;
  // Empty when the log is sound; otherwise what is wrong, in words.
  std::string problem;
};

// Reads `wal_path` (missing: an empty scan) and verifies its header and
// frame checksums. Errors only for I/O failures.
absl::StatusOr<WalScan> ScanWal(const std::string& wal_path);

// What InspectDb found in an open database.
struct DbFacts {
  int user_version = 0;
  bool newer_schema = false;  // user_version > kSchemaVersion
  std::string store_id;       // the identity record (schema 2)
  std::string created_at;
  int64_t revision = 0;
  int64_t keys = 0;
  std::vector<std::string> problems;  // empty: sound
};

// Runs PRAGMA integrity_check (quick_check when !full) and checks the schema,
// the meta row and the identity record. Reads only.
DbFacts InspectDb(sqlite3* db, bool full);

// A fresh random store id (32 hex digits).
std::string NewStoreId();

// The current UTC time as RFC 3339.
std::string NowRfc3339();

// The Status for an SQLite result code: ResourceExhausted "the data
// directory is full: DIR ..." for SQLITE_FULL and ENOSPC/EDQUOT, DataLoss for
// SQLITE_CORRUPT/NOTADB, Unavailable for busy and I/O errors.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what);

// The DataLoss error for a damaged store at `path`.
absl::Status Damaged(const std::string& path, const std::string& what);

// Whether the file at `path` exists (errors other than ENOENT are returned).
absl::StatusOr<bool> FileExists(const std::string& path, int64_t* size);

// fsyncs the directory holding `path`, so a rename in it is durable.
absl::Status SyncParentDir(const std::string& path);

}  // namespace tidal::sqlite_internal
