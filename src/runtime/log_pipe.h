#pragma once

// LogPump: instances' stdout and stderr go to a FIFO per instance, and one
// thread of tidald (an epoll loop over every FIFO) copies them into capped
// log files, so the cap holds as bytes are written (docs/runtime.md, "Logs"):
//  - a log file never grows past max_bytes: it is renamed to <log>.1 (older
//    ones shift to .2 ... .rotated_files) and a new one is started;
//  - beyond rate_bytes per second (a token bucket of burst_bytes), and while
//    the log filesystem has less free space than the reserve, output is
//    read and dropped; the bytes are counted and a marker line says so (at
//    most once per marker_interval);
//  - beyond max_read_bytes per second an instance is no longer read at all
//    for the rest of that 100 ms window, so its writes block instead of
//    costing tidald a core.
// The FIFO lives in the data directory and the instance opens it read-write:
// with a reader always present a write never fails with EPIPE/SIGPIPE, so
// instances survive a restart of tidald; the next tidald reopens the FIFO and
// drains what the pipe (1 MiB) buffered meanwhile. While no tidald runs, an
// instance that writes more than that blocks in write() until one does.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidal {

struct LogLimits {
  // Largest size of one log file; 0 = no cap.
  int64_t max_bytes = 10 << 20;
  // Rotated files kept (<log>.1 ... <log>.N), at least 1.
  int rotated_files = 1;
  // Output kept per instance and second (token bucket); 0 = all.
  int64_t rate_bytes = 0;
  // Bucket size; 0 = 4 seconds' worth of rate_bytes.
  int64_t burst_bytes = 0;
  // Nothing is written while the log filesystem has less free space than
  // this, or than this fraction of its size.
  int64_t min_free_bytes = 0;
  double min_free_ratio = 0;
  // Bytes read from one instance per second at most (kept or dropped);
  // beyond, its writes wait. 0 = no bound.
  int64_t max_read_bytes = 64 << 20;
  // At most one marker line per interval while output is being dropped.
  absl::Duration marker_interval = absl::Seconds(1);
};

// What the pump did with one instance's output since it was attached.
struct LogStats {
  int64_t written_bytes = 0;
  int64_t dropped_bytes = 0;
};

// Thread-safe. Owns one reader thread.
class LogPump {
 public:
  explicit LogPump(LogLimits limits);
  // Stops the thread and closes every descriptor; FIFOs and instances stay
  // (the next tidald attaches again).
  ~LogPump();
  LogPump(const LogPump&) = delete;
  LogPump& operator=(const LogPump&) = delete;

  // Creates the FIFO at `path` (fine if one is there).
  static absl::Status MakeFifo(const std::string& path);
  // Opens the FIFO for an instance's stdout/stderr (read-write, blocking,
  // close-on-exec: the caller dup2()s it in the child).
  static absl::StatusOr<int> OpenForInstance(const std::string& fifo);

  // Starts copying `fifo` into `log_path` for instance `id` (a no-op if it
  // is attached already).
  absl::Status Attach(const std::string& id, const std::string& fifo,
                      const std::string& log_path);
  // Copies what is still buffered, stops reading, and with remove_fifo
  // deletes the FIFO (the instance is gone for good).
  void Detach(const std::string& id, bool remove_fifo);
  bool Attached(const std::string& id) const;
  LogStats Stats(const std::string& id) const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Log rotation for instances that write straight to their log file (adopted
// from a tidald older than log FIFOs): when `path` is larger than
// `max_bytes`, copies it to <path>.1 and truncates it in place (the instance
// writes with O_APPEND, so it continues at the start of the emptied file).
// Missing or small files are left alone; an error only when the truncate
// failed.
absl::Status CopyTruncateIfOver(const std::string& path, int64_t max_bytes);

}  // namespace tidal
