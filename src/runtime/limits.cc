#include "runtime/limits.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "runtime/cgroup.h"

namespace tidal {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string Parent(const std::string& dir) {
  size_t slash = dir.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : dir.substr(0, slash);
}

bool HasWord(const std::string& text, const std::string& word) {
  for (absl::string_view w :
       absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (w == word) return true;
  }
  return false;
}

}  // namespace

absl::Status EnableV2Controller(const std::string& mount,
                                const std::string& root, const std::string& c) {
  std::vector<std::string> chain;  // mount ... root
  for (std::string d = root;; d = Parent(d)) {
    chain.insert(chain.begin(), d);
    if (d == mount || d.size() <= mount.size() || d == "/") break;
  }
  if (chain.front() != mount) {
    return absl::FailedPreconditionError(
        absl::StrCat(root, " is not below the cgroup v2 mount ", mount));
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    const std::string& dir = chain[i];
    if (!HasWord(ReadCgroupFile(dir + "/cgroup.controllers"), c)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the ", c, " controller is not offered to ", dir,
          i == 0 ? " (cgroup v2 has it not: it is bound to a cgroup v1 "
                   "hierarchy or not built in)"
                 : " and could not be enabled above it"));
    }
    if (HasWord(ReadCgroupFile(dir + "/cgroup.subtree_control"), c)) continue;
    absl::Status s = WriteCgroupFile(dir + "/cgroup.subtree_control", "+" + c);
    if (!s.ok()) {
      bool busy = i + 1 < chain.size() &&
                  !ReadCgroupFile(dir + "/cgroup.procs").empty();
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot enable the ", c, " controller in ", dir,
          "/cgroup.subtree_control",
          busy ? " (it holds processes, tidald's own among them perhaps: "
                 "cgroup v2 enables controllers only for cgroups without "
                 "processes; give --instance-cgroup a directory outside "
                 "tidald's cgroup)"
               : "",
          ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

namespace {

// A cgroup v1 hierarchy with `controller`: <mount>/<this process's cgroup
// there>/tidal, made and checked (a short-lived child moved below it).
absl::StatusOr<std::string> OpenV1Root(const std::string& controller,
                                       const std::string& must_have) {
  std::string mount_point, mount_root;
  {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
      size_t dash = line.find(" - ");
      if (dash == std::string::npos) continue;
      std::vector<std::string> tail =
          absl::StrSplit(line.substr(dash + 3), ' ');
      if (tail.size() < 3 || tail[0] != "cgroup") continue;
      bool has = false;
      for (absl::string_view o : absl::StrSplit(tail[2], ','))
        has = has || o == controller;
      if (!has) continue;
      std::vector<std::string> head = absl::StrSplit(line.substr(0, dash), ' ');
      if (head.size() < 5) continue;
      mount_root = head[3];
      mount_point = head[4];
      break;
    }
  }
  if (mount_point.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no cgroup v1 hierarchy with the ", controller, " controller"));
  }
  std::string own;
  {
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> f =
          absl::StrSplit(line, absl::MaxSplits(':', 2));
      if (f.size() != 3) continue;
      for (absl::string_view c : absl::StrSplit(f[1], ',')) {
        if (c == controller) own = f[2];
      }
    }
  }
  if (own.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("this process has no cgroup v1 ", controller, " path"));
  }
  if (mount_root != "/" && absl::StartsWith(own, mount_root))
    own = own.substr(mount_root.size());
  std::string root = absl::StrCat(absl::StripSuffix(mount_point, "/"),
                                  own == "/" ? "" : own, "/tidal");
  absl::Status s = MakeCgroupDirs(root);
  if (!s.ok()) return absl::FailedPreconditionError(s.message());
  if (!Exists(root + "/" + must_have)) {
    return absl::FailedPreconditionError(
        absl::StrCat(root, " has no ", must_have));
  }
  s = ProbeCgroupDir(root);
  if (!s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot move processes into cgroups under ", root, ": ", s.message()));
  }
  return root;
}

int64_t CounterIn(const std::string& file, const std::string& key) {
  for (absl::string_view line :
       absl::StrSplit(ReadCgroupFile(file), '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, key + " ")) {
      int64_t v = 0;
      if (absl::SimpleAtoi(line, &v)) return v;
    }
  }
  return -1;
}

}  // namespace

InstanceLimits InstanceLimits::Open(const std::string& mode,
                                    const std::string& v2_root) {
  InstanceLimits out;
  if (mode == "off") {
    out.describe_ =
        "memory: none, cpu: none (--instance-limits off: resources are not "
        "enforced)";
    return out;
  }
  std::vector<std::string> why;
  std::string v2_mount;
  if (mode == "rlimit") {
    why.push_back("cgroups not used (--instance-limits rlimit)");
  } else if (v2_root.empty()) {
    why.push_back("cgroup v2: instances are not in cgroup v2 cgroups");
  } else {
    auto mount = Cgroup2MountPoint();
    if (mount.ok()) {
      v2_mount = std::string(absl::StripSuffix(*mount, "/"));
    } else {
      why.push_back(absl::StrCat("cgroup v2: ", mount.status().message()));
    }
  }
  auto pick = [&](const std::string& controller, const std::string& v1_file,
                  std::string* mechanism, std::string* v1_root) {
    if (mode == "rlimit") return;
    if (!v2_mount.empty()) {
      absl::Status s = EnableV2Controller(v2_mount, v2_root, controller);
      if (s.ok()) {
        *mechanism = "cgroup2";
        return;
      }
      why.push_back(absl::StrCat("cgroup v2: ", s.message()));
    }
    auto root = OpenV1Root(controller, v1_file);
    if (root.ok()) {
      *mechanism = "cgroup1";
      *v1_root = *root;
      return;
    }
    why.push_back(absl::StrCat("cgroup v1: ", root.status().message()));
  };
  pick("memory", "memory.limit_in_bytes", &out.memory_, &out.v1_memory_root_);
  pick("cpu", "cpu.cfs_quota_us", &out.cpu_, &out.v1_cpu_root_);
  if (out.memory_ == "none") out.memory_ = "rlimit";
  auto where = [&](const std::string& mech, const std::string& v1_root,
                   const std::string& files) -> std::string {
    if (mech == "cgroup2")
      return absl::StrCat("cgroup2 (", files, " in ", v2_root, "/<id>)");
    if (mech == "cgroup1")
      return absl::StrCat("cgroup1 (", files, " in ", v1_root, "/<id>)");
    return mech;
  };
  out.describe_ = absl::StrCat(
      "memory: ",
      out.memory_ == "rlimit"
          ? "rlimit (RLIMIT_AS: address space, not resident memory; an "
            "instance over it sees allocations fail, it is not OOMKilled)"
          : where(out.memory_, out.v1_memory_root_,
                  out.memory_ == "cgroup2" ? "memory.max"
                                           : "memory.limit_in_bytes"),
      ", cpu: ",
      out.cpu_ == "none"
          ? "none (not enforced)"
          : where(out.cpu_, out.v1_cpu_root_,
                  out.cpu_ == "cgroup2" ? "cpu.max" : "cpu.cfs_quota_us"));
  if (!why.empty() && (out.memory_ != "cgroup2" || out.cpu_ != "cgroup2"))
    absl::StrAppend(&out.describe_, "; ", absl::StrJoin(why, "; "));
  return out;
}

absl::StatusOr<AppliedLimits> InstanceLimits::Apply(
    const std::string& id, const std::string& v2_cgroup,
    const ResourceLimits& want) const {
  AppliedLimits out;
  const int64_t quota =
      want.cpu_millis > 0
          ? std::max<int64_t>(1000, want.cpu_millis * kCpuPeriodMicros / 1000)
          : 0;
  // cgroup v2: the instance's own cgroup.
  if ((memory_ == "cgroup2" || cpu_ == "cgroup2") && !v2_cgroup.empty()) {
    if (memory_ == "cgroup2") {
      const std::string max =
          want.memory_bytes > 0 ? absl::StrCat(want.memory_bytes) : "max";
      absl::Status s = WriteCgroupFile(v2_cgroup + "/memory.max", max);
      if (!s.ok()) return s;
      // No swapping past the limit, and an OOM kill takes the whole
      // instance (as Kubernetes does), not one process of it.
      if (Exists(v2_cgroup + "/memory.swap.max")) {
        s = WriteCgroupFile(v2_cgroup + "/memory.swap.max",
                            want.memory_bytes > 0 ? "0" : "max");
        if (!s.ok()) return s;
      }
      if (Exists(v2_cgroup + "/memory.oom.group")) {
        WriteCgroupFile(v2_cgroup + "/memory.oom.group", "1").IgnoreError();
      }
    }
    if (cpu_ == "cgroup2") {
      absl::Status s =
          WriteCgroupFile(v2_cgroup + "/cpu.max",
                          absl::StrCat(quota > 0 ? absl::StrCat(quota) : "max",
                                       " ", kCpuPeriodMicros));
      if (!s.ok()) return s;
    }
  }
  // cgroup v1: a cgroup per instance and controller, only with a limit.
  auto make_v1 = [&](const std::string& root) -> absl::StatusOr<std::string> {
    std::string dir = absl::StrCat(root, "/", id);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
    }
    return dir;
  };
  if (memory_ == "cgroup1" && want.memory_bytes > 0) {
    auto dir = make_v1(v1_memory_root_);
    if (!dir.ok()) return dir.status();
    out.v1_cgroups.push_back(*dir);
    const std::string limit = absl::StrCat(want.memory_bytes);
    // memsw (memory + swap) must stay >= the memory limit: lift it first,
    // then set both to the limit (no swapping past it).
    const std::string memsw = *dir + "/memory.memsw.limit_in_bytes";
    const bool has_memsw = Exists(memsw);
    if (has_memsw) WriteCgroupFile(memsw, "-1").IgnoreError();
    absl::Status s = WriteCgroupFile(*dir + "/memory.limit_in_bytes", limit);
    if (!s.ok()) return s;
    if (has_memsw) {
      s = WriteCgroupFile(memsw, limit);
      if (!s.ok()) return s;
    }
  }
  if (cpu_ == "cgroup1" && quota > 0) {
    auto dir = make_v1(v1_cpu_root_);
    if (!dir.ok()) return dir.status();
    out.v1_cgroups.push_back(*dir);
    absl::Status s = WriteCgroupFile(*dir + "/cpu.cfs_period_us",
                                     absl::StrCat(kCpuPeriodMicros));
    if (s.ok())
      s = WriteCgroupFile(*dir + "/cpu.cfs_quota_us", absl::StrCat(quota));
    if (!s.ok()) return s;
  }
  if (memory_ == "rlimit") out.rlimit_as = want.memory_bytes;
  return out;
}

int64_t InstanceLimits::OomKills(
    const std::string& v2_cgroup,
    const std::vector<std::string>& v1_cgroups) const {
  if (memory_ == "cgroup2" && !v2_cgroup.empty())
    return CounterIn(v2_cgroup + "/memory.events", "oom_kill");
  for (const auto& dir : v1_cgroups) {
    if (!v1_memory_root_.empty() && absl::StartsWith(dir, v1_memory_root_))
      return CounterIn(dir + "/memory.oom_control", "oom_kill");
  }
  return -1;
}

absl::Status InstanceLimits::RemoveV1(
    const std::vector<std::string>& v1_cgroups) {
  absl::Status out;
  for (const auto& dir : v1_cgroups) {
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT && out.ok()) {
      out = absl::UnavailableError(
          absl::StrCat("rmdir ", dir, ": ", strerror(errno)));
    }
  }
  return out;
}

int InstanceLimits::RemoveStale(absl::Duration min_age) const {
  int removed = 0;
  for (const std::string& root : {v1_memory_root_, v1_cpu_root_}) {
    if (root.empty()) continue;
    for (const auto& path : OldCgroupDirs(root, min_age)) {
      // rmdir refuses a cgroup with processes (EBUSY).
      if (ReadCgroupFile(path + "/cgroup.procs").empty() &&
          rmdir(path.c_str()) == 0) {
        ++removed;
      }
    }
  }
  return removed;
}

}  // namespace tidal
