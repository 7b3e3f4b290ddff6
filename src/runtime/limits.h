#pragma once

// How the process runtime enforces an instance's resources.memory and
// resources.cpu (docs/runtime.md, "Limits and isolation"). One mechanism per
// resource, chosen once when the runtime starts, best first:
//  - cgroup2: the controller is enabled for the instance cgroups
//    (InstanceCgroups, cgroup.h); memory.max (+ memory.swap.max 0,
//    memory.oom.group 1) and cpu.max are written into the instance's own
//    cgroup.
//  - cgroup1: a cgroup v1 hierarchy of the controller is mounted and
//    writable; the instance's processes also join
//    <mount>/<tidald's cgroup there>/tidal/<instance id>, with
//    memory.limit_in_bytes (+ memory.memsw.limit_in_bytes) or
//    cpu.cfs_quota_us / cpu.cfs_period_us.
//  - rlimit (memory only): RLIMIT_AS, set in the child before exec.
//  - none: not enforced (CPU without a cgroup controller; --instance-limits
//    off).
// An instance killed by the kernel's OOM killer in its memory cgroup is told
// by the oom_kill counter (v2 memory.events, v1 memory.oom_control).
// Stateless after Open: any thread may use it.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidal {

// What an instance asks for (Template.resources); 0 = no limit.
struct ResourceLimits {
  int64_t memory_bytes = 0;
  int64_t cpu_millis = 0;
};

// What Apply set up for one instance.
struct AppliedLimits {
  // cgroup v1 directories its process joins before exec (with the v2 one).
  std::vector<std::string> v1_cgroups;
  // RLIMIT_AS for its process (0: none).
  int64_t rlimit_as = 0;
};

// Makes cgroup v2 controller `c` usable by the children of `root` (the
// instance cgroups): enabled in the cgroup.subtree_control of each cgroup
// from `mount` (the cgroup2 mount point) down to `root` that does not enable
// it yet. A cgroup that holds processes (tidald's own, say) cannot enable a
// controller for its children (cgroup v2's "no internal processes" rule,
// EBUSY; only the root cgroup is exempt): then it fails, saying why, and
// the caller falls back to another mechanism. tidald never moves itself.
absl::Status EnableV2Controller(const std::string& mount,
                                const std::string& root, const std::string& c);

class InstanceLimits {
 public:
  // The CFS period written with a CPU quota (100 ms, as Kubernetes).
  static constexpr int64_t kCpuPeriodMicros = 100000;

  // mode "auto": the best mechanism per resource; "rlimit": no cgroup
  // controllers (memory by RLIMIT_AS, CPU not enforced); "off": nothing
  // enforced. `v2_root`: the root of the instance cgroups when cgroup v2
  // containment is in use (InstanceCgroups::root()), else "" (then no
  // cgroup2 limits). May enable the memory and cpu controllers in the
  // cgroup.subtree_control of v2_root and of its ancestors that hold no
  // process (cgroup v2's "no internal processes" rule).
  static InstanceLimits Open(const std::string& mode,
                             const std::string& v2_root);

  // "cgroup2" | "cgroup1" | "rlimit" | "none".
  const std::string& memory() const { return memory_; }
  // "cgroup2" | "cgroup1" | "none".
  const std::string& cpu() const { return cpu_; }
  // One line for tidald's log: each mechanism, where, and why a better one
  // is not in use.
  const std::string& Describe() const { return describe_; }
  // The cgroup v1 roots ("" when that controller is not used by v1).
  const std::string& v1_memory_root() const { return v1_memory_root_; }
  const std::string& v1_cpu_root() const { return v1_cpu_root_; }

  // Sets the limits of instance `id`: into `v2_cgroup` (its containment
  // cgroup, already made) for cgroup2; into <v1 root>/<id> (made here,
  // only for a resource that has a limit) for cgroup1. Writes "no limit"
  // where the template sets none, so a reused cgroup holds no stale value.
  absl::StatusOr<AppliedLimits> Apply(const std::string& id,
                                      const std::string& v2_cgroup,
                                      const ResourceLimits& want) const;

  // OOM kills so far in the instance's memory cgroup: memory.events of
  // `v2_cgroup` when memory is cgroup2, memory.oom_control of the v1 memory
  // cgroup among `v1_cgroups`; -1 when there is no such counter.
  int64_t OomKills(const std::string& v2_cgroup,
                   const std::vector<std::string>& v1_cgroups) const;

  // rmdir of an instance's v1 cgroups (fine if gone). Fails (EBUSY) while a
  // process is still in one.
  static absl::Status RemoveV1(const std::vector<std::string>& v1_cgroups);
  // Removes the empty v1 instance cgroups older than `min_age` (left by
  // instances whose records are gone). Returns how many were removed.
  int RemoveStale(absl::Duration min_age) const;

 private:
  std::string memory_ = "none";
  std::string cpu_ = "none";
  std::string v1_memory_root_;
  std::string v1_cpu_root_;
  std::string describe_;
};

}  // namespace tidal
