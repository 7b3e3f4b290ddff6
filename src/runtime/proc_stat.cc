#include "runtime/proc_stat.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace tidal {
namespace {

// Reads a small /proc file into buf; false if it cannot be read.
bool ReadSmall(const char* path, std::string* buf) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char tmp[1024];
  ssize_t n = read(fd, tmp, sizeof(tmp) - 1);
  close(fd);
  if (n <= 0) return false;
  buf->assign(tmp, static_cast<size_t>(n));
  return true;
}

}  // namespace

bool ParseProcStat(std::string_view line, ProcStat* out) {
  // The command name (field 2) is in parentheses and may hold spaces.
  size_t close_paren = line.rfind(')');
  if (close_paren == std::string_view::npos || close_paren + 2 >= line.size()) {
    return false;
  }
  std::string rest(line.substr(close_paren + 2));  // from field 3 on
  const char* p = rest.c_str();
  std::array<uint64_t, 25> f{};
  out->state = *p;
  for (int field = 3; field <= 24; ++field) {
    const char* sp = strchr(p, ' ');
    if (field > 3) {
      // cutime/cstime and rss are signed in the kernel's format; negative
      // values do not occur for them in practice.
      f[field] = strtoull(p, nullptr, 10);
    }
    if (sp == nullptr) {
      if (field < 24) return false;
      break;
    }
    p = sp + 1;
  }
  out->pgid = static_cast<pid_t>(f[5]);
  out->cpu_ticks = f[14] + f[15] + f[16] + f[17];
  out->start_ticks = f[22];
  out->rss_pages = static_cast<int64_t>(f[24]);
  return true;
}

bool ReadProcStat(pid_t pid, ProcStat* out) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  std::string buf;
  return ReadSmall(path, &buf) && ParseProcStat(buf, out);
}

bool ProcessMatches(pid_t pid, uint64_t start_ticks) {
  ProcStat st;
  if (pid <= 0 || !ReadProcStat(pid, &st)) return false;
  return st.start_ticks == start_ticks && st.state != 'Z' && st.state != 'X';
}

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

std::map<pid_t, GroupUsage> ReadGroupUsage(
    const std::map<pid_t, uint64_t>& leaders) {
  std::map<pid_t, GroupUsage> groups;
  for (const auto& [pid, ticks] : leaders) groups[pid];
  if (groups.empty()) return groups;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return groups;
  char path[sizeof(dirent::d_name) + 16];
  std::string buf;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    ProcStat st;
    if (!ReadSmall(path, &buf) || !ParseProcStat(buf, &st)) continue;
    auto it = groups.find(st.pgid);
    if (it == groups.end()) continue;
    it->second.cpu_ticks += st.cpu_ticks;
    it->second.rss_pages += st.rss_pages;
    const pid_t pid = static_cast<pid_t>(strtol(e->d_name, nullptr, 10));
    if (pid == st.pgid && leaders.at(pid) == st.start_ticks) {
      it->second.leader_ok = true;
    }
  }
  closedir(dir);
  return groups;
}

double TicksPerSecond() {
  static const double kTicks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return kTicks;
}

int64_t PageSize() {
  static const int64_t kPage = sysconf(_SC_PAGESIZE);
  return kPage;
}

}  // namespace tidal
