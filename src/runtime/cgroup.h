#pragma once

// How the process runtime keeps every process of an instance together so
// that stopping the instance ends all of them, even those that called
// setsid() or double-forked (docs/runtime.md, "Containment"):
//  - InstanceCgroups: one cgroup v2 directory per instance under a root;
//    stopping kills the whole cgroup (cgroup.kill) and removes it.
//  - Without a writable cgroup v2, ProcessTree finds an instance's
//    descendants by scanning /proc (process group, session, parent chain and
//    the TIDAL_INSTANCE variable every descendant inherits); tidald then is a
//    child subreaper, so orphaned descendants are reparented to it and reaped.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidal {

// The cgroup v2 directories of instances: <root>/<instance id>. Stateless
// apart from the root, so any thread may use it.
class InstanceCgroups {
 public:
  // Finds the root and checks that processes can be moved below it (by
  // moving a short-lived child there). `root` empty: <cgroup2 mount>/<the
  // cgroup of this process>/tidal (from /proc/self/mountinfo and
  // /proc/self/cgroup); else that directory, created if missing. Fails, with
  // the reason, when cgroup v2 is not mounted or not writable.
  static absl::StatusOr<InstanceCgroups> Open(const std::string& root);

  const std::string& root() const { return root_; }
  std::string PathOf(const std::string& instance_id) const;

  // Creates <root>/<id> (fine if it exists) and returns its path.
  absl::StatusOr<std::string> Create(const std::string& instance_id) const;

  // Removes the empty instance cgroups under the root that are older than
  // `min_age` (left by instances whose records are gone; one being set up
  // right now is younger). Returns how many were removed.
  int RemoveStale(absl::Duration min_age) const;

  // Moves `pid` into the cgroup at `path` (its later children follow).
  static absl::Status AddProcess(const std::string& path, pid_t pid);
  // SIGKILLs every process in the cgroup: cgroup.kill, or (kernels before
  // 5.14) SIGKILL to each pid in cgroup.procs. Fine if it is gone.
  static absl::Status Kill(const std::string& path);
  // Whether any live process is in it (cgroup.events "populated").
  static bool Populated(const std::string& path);
  // The pids in cgroup.procs.
  static std::vector<pid_t> Pids(const std::string& path);
  // rmdir: fails (EBUSY) while populated; fine if it is gone.
  static absl::Status Remove(const std::string& path);

 private:
  explicit InstanceCgroups(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

// Small helpers for cgroup files (v1 and v2), shared with limits.h.
// Reads a file whole; "" if it cannot be read.
std::string ReadCgroupFile(const std::string& path);
// Writes `data` in one write(); the error names the file and the value.
absl::Status WriteCgroupFile(const std::string& path, const std::string& data);
// mkdir -p (mode 0755).
absl::Status MakeCgroupDirs(const std::string& path);
// Moves a short-lived child into <dir>/.probe-<pid> and removes it again:
// proves that processes can be placed below `dir`.
absl::Status ProbeCgroupDir(const std::string& dir);
// The child directories of `root` (not starting with '.') last modified at
// least `min_age` ago.
std::vector<std::string> OldCgroupDirs(const std::string& root,
                                       absl::Duration min_age);
// Where cgroup v2 is mounted (from /proc/self/mountinfo).
absl::StatusOr<std::string> Cgroup2MountPoint();

// One process as /proc/<pid>/stat shows it.
struct ProcEntry {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  char state = 0;
  uint64_t start_ticks = 0;
};

// Reads /proc once: every process on the machine.
std::vector<ProcEntry> ScanProcesses();

// The live (not zombie) processes among `procs` that belong to the instance
// `instance_id`: below `leader` in the parent chain (0: the leader is gone),
// in process group or session `group` (the leader's pid, 0 for none), or
// started with TIDAL_INSTANCE=<instance_id> in their environment (which
// survives setsid, double forks and the death of the parents); and their
// children. Never includes this process or init.
std::vector<pid_t> InstanceDescendants(const std::vector<ProcEntry>& procs,
                                       pid_t leader, pid_t group,
                                       const std::string& instance_id);

// Makes this process a child subreaper (PR_SET_CHILD_SUBREAPER): orphans
// below it are reparented to it instead of to init.
absl::Status BecomeSubreaper();

// Reaps zombies that are children of this process, except the pids in
// `keep` (children someone else waits for). Returns how many were reaped.
int ReapZombieChildren(const std::vector<ProcEntry>& procs,
                       const std::vector<pid_t>& keep);

}  // namespace tidal
