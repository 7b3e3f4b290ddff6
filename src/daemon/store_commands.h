#pragma once

// tidald's store maintenance commands (--store-check, --store-backup,
// --store-restore): each runs against an SQLite store's files, prints a
// report for a person and returns the process exit code. No daemon runs.

#include <ostream>
#include <string>

#include "absl/status/status.h"

namespace tidal {

// Exit codes of the store commands (docs/operations.md).
enum StoreCommandExit : int {
  kStoreOk = 0,       // healthy / done
  kStoreDamaged = 1,  // damaged, or the command failed
  kStoreUsage = 2,    // not an SQLite store, bad arguments
};

// Checks the store at `sqlite_path` and every value it can decode (apps,
// events, revisions, rollouts). Safe while a tidald runs.
int StoreCheckCommand(const std::string& sqlite_path, std::ostream& out);

// Writes a verified copy of the store to `dest`. Safe while a tidald runs.
int StoreBackupCommand(const std::string& sqlite_path, const std::string& dest,
                       std::ostream& out);

// Replaces the store with the backup at `backup` once it verifies. Refuses
// while a tidald runs on `data_dir` or has the store open.
int StoreRestoreCommand(const std::string& sqlite_path,
                        const std::string& data_dir, const std::string& backup,
                        std::ostream& out);

// What to tell an operator when tidald refuses a damaged store: the check and
// restore commands, spelled with `flags` (e.g. "--data-dir /var/lib/tidal").
std::string StoreRecoveryHint(const std::string& flags);

}  // namespace tidal
