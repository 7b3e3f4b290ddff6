#include "runtime/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace tidal {
namespace {

std::string Errno(const std::string& what, int err) {
  return absl::StrCat(what, ": ", strerror(err));
}

// Reads a small file whole; empty if it cannot be read.
std::string ReadSmallFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

absl::Status WriteSmallFile(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(Errno("open " + path, errno));
  ssize_t n;
  do {
    n = write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(data.size())) {
    return absl::InternalError(
        Errno(absl::StrCat("write \"", data, "\" to ", path), err));
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    cur = absl::StrCat(cur, "/", part);
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
      return absl::InternalError(Errno("mkdir " + cur, errno));
  }
  return absl::OkStatus();
}

// The cgroup2 mount point and the root of the hierarchy it shows.
absl::StatusOr<std::pair<std::string, std::string>> Cgroup2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // "36 25 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw"
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::vector<std::string> tail = absl::StrSplit(line.substr(dash + 3), ' ');
    if (tail.empty() || tail[0] != "cgroup2") continue;
    std::vector<std::string> head = absl::StrSplit(line.substr(0, dash), ' ');
    if (head.size() < 5) continue;
    return std::make_pair(head[4], head[3]);
  }
  return absl::FailedPreconditionError(
      "cgroup v2 is not mounted (no cgroup2 line in /proc/self/mountinfo)");
}

// This process's cgroup v2 path ("0::/path" in /proc/self/cgroup).
absl::StatusOr<std::string> OwnCgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "0::")) return line.substr(3);
  }
  return absl::FailedPreconditionError(
      "this process has no cgroup v2 path (no 0:: line in /proc/self/cgroup)");
}

// Moves a short-lived child into a probe cgroup below `root`: the one sure
// test that instances can be placed there (write permission, delegation,
// the "no internal processes" rule).
absl::Status Probe(const std::string& root) {
  std::string probe = absl::StrCat(root, "/.probe-", getpid());
  if (mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST)
    return absl::FailedPreconditionError(Errno("mkdir " + probe, errno));
  int hold[2];
  if (pipe2(hold, O_CLOEXEC) != 0) {
    rmdir(probe.c_str());
    return absl::InternalError(Errno("pipe", errno));
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(hold[1]);
    char c;
    while (read(hold[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(hold[0]);
  absl::Status s = pid < 0 ? absl::InternalError(Errno("fork", errno))
                           : InstanceCgroups::AddProcess(probe, pid);
  close(hold[1]);  // the child reads EOF and exits
  if (pid > 0) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  rmdir(probe.c_str());
  return s;
}

// /proc/<pid>/stat: state, ppid, pgrp, session and start time (field 22).
bool ParseStat(const std::string& text, ProcEntry* e) {
  size_t p = text.rfind(')');
  if (p == std::string::npos || p + 2 >= text.size()) return false;
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(text).substr(p + 2), ' ');
  // f[0] is field 3 (state), so field k is f[k - 3].
  if (f.size() < 20 || f[0].empty()) return false;
  e->state = f[0][0];
  int ppid = 0, pgid = 0, sid = 0;
  if (!absl::SimpleAtoi(f[1], &ppid) || !absl::SimpleAtoi(f[2], &pgid) ||
      !absl::SimpleAtoi(f[3], &sid) ||
      !absl::SimpleAtoi(f[19], &e->start_ticks)) {
    return false;
  }
  e->ppid = ppid;
  e->pgid = pgid;
  e->sid = sid;
  return true;
}

bool EnvironHas(pid_t pid, const std::string& entry) {
  std::string env = ReadSmallFile(absl::StrCat("/proc/", pid, "/environ"));
  for (absl::string_view v : absl::StrSplit(env, '\0')) {
    if (v == entry) return true;
  }
  return false;
}

}  // namespace

std::string ReadCgroupFile(const std::string& path) {
  return ReadSmallFile(path);
}

absl::Status WriteCgroupFile(const std::string& path, const std::string& data) {
  return WriteSmallFile(path, data);
}

absl::Status MakeCgroupDirs(const std::string& path) { return MakeDirs(path); }

absl::Status ProbeCgroupDir(const std::string& dir) { return Probe(dir); }

absl::StatusOr<std::string> Cgroup2MountPoint() {
  auto mount = Cgroup2Mount();
  if (!mount.ok()) return mount.status();
  return mount->first;
}

absl::StatusOr<InstanceCgroups> InstanceCgroups::Open(const std::string& root) {
  std::string dir = root;
  if (dir.empty()) {
    auto mount = Cgroup2Mount();
    if (!mount.ok()) return mount.status();
    auto own = OwnCgroup();
    if (!own.ok()) return own.status();
    std::string rel = *own;
    // A mount of a sub-hierarchy (mount root not "/") shows paths below it.
    if (mount->second != "/" && absl::StartsWith(rel, mount->second))
      rel = rel.substr(mount->second.size());
    dir = absl::StrCat(absl::StripSuffix(mount->first, "/"),
                       rel == "/" ? "" : rel, "/tidal");
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  // The nearest existing ancestor (or dir itself) must be on cgroup2.
  std::string existing = dir;
  struct stat st;
  while (existing.size() > 1 && stat(existing.c_str(), &st) != 0)
    existing = existing.substr(0, std::max<size_t>(1, existing.rfind('/')));
  struct statfs fs;
  if (statfs(existing.c_str(), &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not in a cgroup v2 hierarchy"));
  }
  absl::Status s = MakeDirs(dir);
  if (!s.ok()) return absl::FailedPreconditionError(s.message());
  s = Probe(dir);
  if (!s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot move processes into cgroups under ", dir, ": ", s.message()));
  }
  return InstanceCgroups(dir);
}

std::string InstanceCgroups::PathOf(const std::string& instance_id) const {
  return absl::StrCat(root_, "/", instance_id);
}

absl::StatusOr<std::string> InstanceCgroups::Create(
    const std::string& instance_id) const {
  std::string path = PathOf(instance_id);
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    return absl::InternalError(Errno("mkdir " + path, errno));
  return path;
}

std::vector<std::string> OldCgroupDirs(const std::string& root,
                                       absl::Duration min_age) {
  std::vector<std::string> out;
  DIR* dir = opendir(root.c_str());
  if (dir == nullptr) return out;
  const absl::Time now = absl::Now();
  while (dirent* d = readdir(dir)) {
    if (d->d_name[0] == '.' || d->d_type != DT_DIR) continue;
    std::string path = absl::StrCat(root, "/", d->d_name);
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;
    if (now - absl::FromTimeT(st.st_mtime) < min_age) continue;
    out.push_back(path);
  }
  closedir(dir);
  return out;
}

int InstanceCgroups::RemoveStale(absl::Duration min_age) const {
  int removed = 0;
  for (const auto& path : OldCgroupDirs(root_, min_age)) {
    // rmdir refuses a populated cgroup (EBUSY), so only empty ones go.
    if (!Populated(path) && rmdir(path.c_str()) == 0) ++removed;
  }
  return removed;
}

absl::Status InstanceCgroups::AddProcess(const std::string& path, pid_t pid) {
  return WriteSmallFile(path + "/cgroup.procs", absl::StrCat(pid));
}

absl::Status InstanceCgroups::Kill(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (stat((path + "/cgroup.kill").c_str(), &st) == 0)
    return WriteSmallFile(path + "/cgroup.kill", "1");
  // No cgroup.kill: a fork may race each round, so go round a few times.
  for (int round = 0; round < 10; ++round) {
    std::vector<pid_t> pids = Pids(path);
    if (pids.empty()) break;
    for (pid_t pid : pids) kill(pid, SIGKILL);
  }
  return absl::OkStatus();
}

bool InstanceCgroups::Populated(const std::string& path) {
  std::string events = ReadSmallFile(path + "/cgroup.events");
  for (absl::string_view line : absl::StrSplit(events, '\n')) {
    if (absl::ConsumePrefix(&line, "populated ")) return line == "1";
  }
  return false;
}

std::vector<pid_t> InstanceCgroups::Pids(const std::string& path) {
  std::vector<pid_t> out;
  for (absl::string_view line :
       absl::StrSplit(ReadSmallFile(path + "/cgroup.procs"), '\n')) {
    int pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) out.push_back(pid);
  }
  return out;
}

absl::Status InstanceCgroups::Remove(const std::string& path) {
  if (rmdir(path.c_str()) != 0 && errno != ENOENT)
    return absl::UnavailableError(Errno("rmdir " + path, errno));
  return absl::OkStatus();
}

std::vector<ProcEntry> ScanProcesses() {
  std::vector<ProcEntry> out;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return out;
  while (dirent* d = readdir(dir)) {
    if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
    ProcEntry e;
    if (!absl::SimpleAtoi(d->d_name, &e.pid)) continue;
    if (!ParseStat(ReadSmallFile(absl::StrCat("/proc/", d->d_name, "/stat")),
                   &e)) {
      continue;
    }
    out.push_back(e);
  }
  closedir(dir);
  return out;
}

std::vector<pid_t> InstanceDescendants(const std::vector<ProcEntry>& procs,
                                       pid_t leader, pid_t group,
                                       const std::string& instance_id) {
  const pid_t self = getpid();
  const std::string marker = "TIDAL_INSTANCE=" + instance_id;
  std::set<pid_t> members;
  std::map<pid_t, pid_t> parent;
  for (const auto& e : procs) parent[e.pid] = e.ppid;
  auto below_leader = [&](pid_t pid) {
    for (int depth = 0; depth < 64 && pid > 1; ++depth) {
      auto it = parent.find(pid);
      if (it == parent.end()) return false;
      if (it->second == leader) return true;
      pid = it->second;
    }
    return false;
  };
  for (const auto& e : procs) {
    if (e.pid == self || e.pid == 1) continue;
    bool in = false;
    if (leader > 0) in = e.pid == leader || below_leader(e.pid);
    if (!in && group > 0) in = e.pgid == group || e.sid == group;
    if (!in && !instance_id.empty()) in = EnvironHas(e.pid, marker);
    if (in) members.insert(e.pid);
  }
  // Children of members (one that cleared its environment and called setsid
  // is still below a member in the parent chain).
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& e : procs) {
      if (e.pid == self || members.count(e.pid) > 0) continue;
      if (members.count(e.ppid) > 0) {
        members.insert(e.pid);
        grew = true;
      }
    }
  }
  std::vector<pid_t> out;
  for (const auto& e : procs) {
    if (members.count(e.pid) > 0 && e.state != 'Z' && e.state != 'X')
      out.push_back(e.pid);
  }
  return out;
}

absl::Status BecomeSubreaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
    return absl::InternalError(Errno("prctl(PR_SET_CHILD_SUBREAPER)", errno));
  return absl::OkStatus();
}

int ReapZombieChildren(const std::vector<ProcEntry>& procs,
                       const std::vector<pid_t>& keep) {
  const pid_t self = getpid();
  int reaped = 0;
  for (const auto& e : procs) {
    if (e.ppid != self || e.state != 'Z') continue;
    if (std::find(keep.begin(), keep.end(), e.pid) != keep.end()) continue;
    if (waitpid(e.pid, nullptr, WNOHANG) == e.pid) ++reaped;
  }
  return reaped;
}

}  // namespace tidal
