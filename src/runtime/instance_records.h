#pragma once

// InstanceRecords: the process runtime's adoption records, one file per
// instance at <dir>/<id>.pb (an InstanceRecord, instance_record.proto), so
// that the next tidald finds and adopts the instances a previous one left
// running (docs/runtime.md, "Adoption after a crash of tidald"). A record is
// written to <id>.pb.tmp and renamed into place, so a reader never sees half
// of one.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/instance_record.pb.h"

namespace tidal {

// Thread-compatible; the methods touch only files, so calls for different
// instances may run at once.
class InstanceRecords {
 public:
  // `sync`: fdatasync a record before renaming it into place
  // (ProcessRuntimeOptions::sync_records).
  InstanceRecords(std::string dir, bool sync)
      : dir_(std::move(dir)), sync_(sync) {}

  const std::string& dir() const { return dir_; }
  // <dir>/<id>.pb
  std::string PathOf(const std::string& id) const;
  // <dir>/<id>.fifo: where an instance's stdout and stderr go (log_pipe.h).
  std::string FifoPathOf(const std::string& id) const;
  bool Exists(const std::string& id) const;

  absl::Status Write(const runtime::InstanceRecord& rec) const;
  // Deletes the record of `id` (fine if there is none).
  void Remove(const std::string& id) const;

  struct Entry {
    std::string path;
    runtime::InstanceRecord record;
  };
  struct Loaded {
    std::vector<Entry> records;  // sorted by path
    // Records that could not be parsed (or had no id); already deleted.
    std::vector<std::string> unreadable;
  };
  // Reads every record in the directory. Deletes leftover temp files (a
  // write cut short) and unreadable records.
  absl::StatusOr<Loaded> LoadAll() const;

 private:
  std::string dir_;
  bool sync_;
};

// Whether the process a record names still runs: same boot (`boot_id`,
// ignored when the record has none) and the same process (pid and start
// time; not a zombie).
bool RecordedProcessRuns(const runtime::InstanceRecord& rec,
                         const std::string& boot_id);

// Writes `data` to path.tmp (fdatasync'd with `sync`) and renames it to
// `path`.
absl::Status WriteFileAtomic(const std::string& path, const std::string& data,
                             bool sync);

// mkdir -p
absl::Status MakeDirs(const std::string& path);

}  // namespace tidal
