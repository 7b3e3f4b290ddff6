#include "daemon/store_commands.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "store/sqlite_store.h"
#include "tidal/v1/app.pb.h"

namespace tidal {
namespace {

// Decodes a value by the object kind its key names; OK for kinds it does not
// know.
absl::Status DecodeValue(const KeyValue& kv) {
  std::unique_ptr<google::protobuf::Message> msg;
  if (absl::StartsWith(kv.key, "/apps/")) {
    msg = std::make_unique<v1::App>();
  } else if (absl::StartsWith(kv.key, "/events/")) {
    msg = std::make_unique<v1::Event>();
  } else if (absl::StartsWith(kv.key, "/revisions/")) {
    msg = std::make_unique<v1::Revision>();
  } else if (absl::StartsWith(kv.key, "/rollouts/")) {
    msg = std::make_unique<v1::RolloutState>();
  } else {
    return absl::OkStatus();
  }
  if (!msg->ParseFromString(kv.value)) {
    return absl::DataLossError(absl::StrCat(
        "its value (", kv.value.size(), " bytes, written at revision ",
        kv.resource_version, ") does not decode as ", msg->GetTypeName()));
  }
  return absl::OkStatus();
}

void PrintSummary(const SqliteStore::CheckReport& r, std::ostream& out) {
  out << "store:      " << r.path << "\n";
  if (!r.store_id.empty()) {
    out << "id:         " << r.store_id << " (created " << r.created_at
        << ")\n";
  }
  out << "revision:   " << r.revision << "\n"
      << "keys:       " << r.keys << "\n"
      << "size:       " << r.bytes << " bytes (write-ahead log " << r.wal_bytes
      << " bytes)\n";
}

}  // namespace

int StoreCheckCommand(const std::string& path, std::ostream& out) {
  auto r = SqliteStore::Check(path, DecodeValue);
  if (!r.ok()) {
    out << "error: checking " << path << ": " << r.status().message() << "\n";
    return kStoreDamaged;
  }
  if (!r->exists) {
    out << "store:      " << path << "\n"
        << "result:     there is no store file; tidald creates a new, empty "
           "store there\n";
    return kStoreDamaged;
  }
  PrintSummary(*r, out);
  if (r->live) {
    out << "note:       a tidald has the store open: it was read through "
           "SQLite; its write-ahead log was not scanned\n";
  }
  for (const auto& p : r->problems) out << "DAMAGED:    " << p << "\n";
  for (const auto& k : r->damaged_keys) out << "BAD VALUE:  " << k << "\n";
  if (r->ok()) {
    out << "result:     healthy\n";
    return kStoreOk;
  }
  if (!r->problems.empty()) {
    out << "result:     damaged; tidald will not start on it. Restore a backup "
           "with --store-restore FILE (docs/store.md, Recovery)\n";
  } else {
    out << "result:     " << r->damaged_keys.size()
        << " value(s) cannot be decoded; tidald serves the rest and reports "
           "these as damaged. Delete and re-apply those apps, or restore a "
           "backup (docs/store.md, Recovery)\n";
  }
  return kStoreDamaged;
}

int StoreBackupCommand(const std::string& path, const std::string& dest,
                       std::ostream& out) {
  auto r = SqliteStore::Backup(path, dest);
  if (!r.ok()) {
    out << "error: backup of " << path << " failed: " << r.status().message()
        << "\n";
    return kStoreDamaged;
  }
  out << "backed up " << path << " to " << dest << " (verified)\n";
  PrintSummary(*r, out);
  return kStoreOk;
}

int StoreRestoreCommand(const std::string& path, const std::string& data_dir,
                        const std::string& backup, std::ostream& out) {
  // The data directory's lock: a tidald runs there (maybe on another store).
  const std::string lock = data_dir + "/tidald.lock";
  int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
  if (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    out << "error: a tidald is running with data directory " << data_dir
        << "; stop it before restoring\n";
    return kStoreDamaged;
  }
  std::string kept;
  auto r = SqliteStore::Restore(backup, path, &kept);
  if (fd >= 0) ::close(fd);
  if (!r.ok()) {
    out << "error: restore of " << backup << " failed: " << r.status().message()
        << "\n";
    return kStoreDamaged;
  }
  out << "restored " << path << " from " << backup << "\n";
  if (!kept.empty()) out << "the replaced store is kept as " << kept << "\n";
  PrintSummary(*r, out);
  out << "start tidald: it reconciles running instances to the restored apps "
         "(instances of apps missing from the backup are stopped)\n";
  return kStoreOk;
}

std::string StoreRecoveryHint(const std::string& flags) {
  return absl::StrCat(
      "tidald does not start on a damaged store, so that it never serves "
      "partial data. See what is wrong: `tidald ",
      flags, " --store-check`; restore a backup: `tidald ", flags,
      " --store-restore BACKUP` (docs/store.md, Recovery)");
}

}  // namespace tidal
