#pragma once

// Reading /proc/<pid>/stat: whether a recorded process still runs (the same
// process, not a reused pid), and the CPU and memory of process groups
// (Runtime::Usage). Linux only; every function is thread-safe.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace tidal {

// The fields of one /proc/<pid>/stat line the runtime uses.
struct ProcStat {
  char state = 0;            // field 3: R, S, D, Z, X...
  pid_t pgid = 0;            // field 5
  uint64_t cpu_ticks = 0;    // fields 14-17: utime + stime + cutime + cstime
  uint64_t start_ticks = 0;  // field 22: start time in clock ticks since boot
  int64_t rss_pages = 0;     // field 24
};

// Parses the text of a /proc/<pid>/stat file (the command name, field 2, is
// in parentheses and may hold spaces and parentheses). False when fields are
// missing.
bool ParseProcStat(std::string_view line, ProcStat* out);

// Reads /proc/<pid>/stat; false if the process does not exist.
bool ReadProcStat(pid_t pid, ProcStat* out);

// Alive and the same process as the one that started at `start_ticks` (not
// a reused pid); zombies count as dead.
bool ProcessMatches(pid_t pid, uint64_t start_ticks);

// This boot's id (/proc/sys/kernel/random/boot_id): records written before
// a reboot name processes that are gone.
std::string BootId();

// CPU and memory of one process group, summed over its processes.
struct GroupUsage {
  uint64_t cpu_ticks = 0;
  int64_t rss_pages = 0;
  // The group's leader (pid == pgid) was seen with the wanted start time;
  // false when it is gone or is another process now.
  bool leader_ok = false;
};

// One pass over /proc: for each wanted group (leader pid → its start
// ticks), the sum over every process in that process group.
std::map<pid_t, GroupUsage> ReadGroupUsage(
    const std::map<pid_t, uint64_t>& leaders);

// sysconf(_SC_CLK_TCK) and sysconf(_SC_PAGESIZE).
double TicksPerSecond();
int64_t PageSize();

}  // namespace tidal
