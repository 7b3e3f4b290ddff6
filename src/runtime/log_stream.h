#pragma once

// LogStream: an instance's output (stdout and stderr) as a Runtime serves it
// (Runtime::OpenLogs, what `tidalctl logs` reads through the API). The
// process runtime reads its log files (file_log_stream.h), following them
// across rotations; a Kubernetes runtime would read the pod's log endpoint.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidal {

struct LogOptions {
  // Start with only the last `tail_lines` lines of what the instance has
  // written so far; 0: all of it.
  int64_t tail_lines = 0;
  // Keep reading what the instance writes from then on, until Cancel().
  // Without follow the stream ends after what was there when it opened.
  bool follow = false;
  // Only from this node (HA, docs/ha.md): a runtime that would ask another
  // node for an instance's logs answers FailedPrecondition instead (set when
  // another node asks, so no request goes round).
  bool local_only = false;
  // The output of the instance's run that has ended (`tidalctl logs
  // --previous`, Runtime::StoppedInstances): Kubernetes reads the previous
  // container's log; the process runtime's log of a stopped instance is the
  // same file either way.
  bool previous = false;
};

// One reader of one instance's log. Next is called from one thread at a
// time; Cancel may be called from any thread, at any time.
class LogStream {
 public:
  virtual ~LogStream() = default;

  // The next piece of output (never empty), as soon as there is some,
  // waiting at most `wait` for it (zero: only what is there already).
  // Returns "" when nothing came within `wait`, OutOfRange at the end of
  // the stream (without follow: everything there at open has been read;
  // with follow, a runtime may end the stream once the instance is gone and
  // its output read), Cancelled after Cancel(), other errors when the log
  // cannot be read.
  virtual absl::StatusOr<std::string> Next(absl::Duration wait) = 0;

  // Ends the stream: a Next waiting in another thread returns Cancelled at
  // once, and so does every later Next.
  virtual void Cancel() = 0;
};

// The last `n` lines of `data` (all of it when n <= 0); a last line without
// its newline counts as a line.
inline std::string TailLines(std::string_view data, int64_t n) {
  if (n <= 0) return std::string(data);
  size_t end = data.size();
  if (end > 0 && data[end - 1] == '\n') --end;
  size_t pos = end;
  int64_t lines = 0;
  while (pos > 0) {
    if (data[pos - 1] == '\n' && ++lines == n) break;
    --pos;
  }
  return std::string(data.substr(pos));
}

}  // namespace tidal
