#pragma once

// NamespaceUsers: a user of its own for each namespace's instances (tidald
// --instance-user=per-namespace, the default when tidald runs as root), so
// that an instance of one namespace cannot read another's environment (its
// secret values: /proc/PID/environ is its owner's), signal its processes or
// read files it made private. A uid of --instance-uid-range is given to a
// namespace the first time one of its instances starts on this machine, is
// never reused for another, and is remembered in a file of the data
// directory ("UID NAMESPACE" lines), so a restarted tidald gives the same.
// The uid has no passwd entry: its group is the same number, it has no
// supplementary group, HOME is /nonexistent and USER tidal-NAMESPACE.
// Thread-safe.

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "runtime/spawner.h"

namespace tidal {

// ProcessRuntimeOptions::instance_user (tidald --instance-user) for a user
// per namespace.
inline constexpr char kPerNamespace[] = "per-namespace";

class NamespaceUsers {
 public:
  // Reads `path` (none yet: no namespace has a uid). InvalidArgument for an
  // empty or reversed range, or one this process cannot switch to (its user
  // namespace does not map it: /proc/self/uid_map); FailedPrecondition when
  // tidald is not root; DataLoss for a file it cannot read.
  static absl::StatusOr<std::unique_ptr<NamespaceUsers>> Open(
      const std::string& path, uid_t first, uid_t last);

  // The user of `ns`'s instances: its uid, made and remembered (the file
  // written before it is returned) the first time. ResourceExhausted when
  // every uid of the range is taken.
  absl::StatusOr<InstanceUser> For(const std::string& ns);

  // "UID NAMESPACE" per namespace, as the file has them.
  std::map<std::string, uid_t> Assigned() const;

 private:
  NamespaceUsers(std::string path, uid_t first, uid_t last)
      : path_(std::move(path)), first_(first), last_(last) {}

  const std::string path_;
  const uid_t first_, last_;
  mutable absl::Mutex mu_;
  std::map<std::string, uid_t> uids_ ABSL_GUARDED_BY(mu_);
};

// Whether this process's user namespace maps every uid of [first, last]
// (from /proc/self/uid_map; true when the file cannot be read).
bool UidRangeMapped(uid_t first, uid_t last);

}  // namespace tidal
