#pragma once

// FileLogStream: a LogStream over a log file that a LogPump (log_pipe.h)
// writes and rotates (<log> renamed to <log>.1 and a new <log> started), or
// that an instance appends to itself and that is truncated in place
// (CopyTruncateIfOver). Following, it reads the file it has open to its end,
// and when <log> is another file by then (a rotation), it reads the rest of
// the old one before it moves to the new one, so nothing written before the
// rotation is missed unless several rotations happen between two reads.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "runtime/log_stream.h"

namespace tidal {

class FileLogStream : public LogStream {
 public:
  // Reads `path` (which need not exist yet). `poll` is how often a waiting
  // Next looks at the file again.
  FileLogStream(std::string path, const LogOptions& options,
                absl::Duration poll = absl::Milliseconds(20));
  ~FileLogStream() override;
  FileLogStream(const FileLogStream&) = delete;
  FileLogStream& operator=(const FileLogStream&) = delete;

  absl::StatusOr<std::string> Next(absl::Duration wait) override;
  void Cancel() override;

 private:
  // What is there now: the initial content, then (following) new output.
  // "" when there is nothing new.
  std::string ReadAvailable();
  // Opens `path_` if it exists; false if it does not.
  bool OpenFile();

  // Constant after construction.
  const std::string path_;
  const LogOptions options_;
  const absl::Duration poll_;

  // Used by Next only (one caller at a time).
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  int64_t offset_ = 0;
  // Without follow: where the content present at open ends.
  int64_t end_ = -1;
  std::string pending_;  // the initial content, tail applied
  bool started_ = false;

  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tidal
