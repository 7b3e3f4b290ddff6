#include "runtime/file_log_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tidal {
namespace {

// The most one Next returns.
constexpr int64_t kMaxChunk = 1 << 20;

// Reads [offset, offset + max) of fd (less at its end).
std::string ReadAt(int fd, int64_t offset, int64_t max) {
  std::string buf(static_cast<size_t>(max), '\0');
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = pread(fd, buf.data() + got, buf.size() - got,
                      static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  buf.resize(got);
  return buf;
}

int64_t SizeOf(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

}  // namespace

FileLogStream::FileLogStream(std::string path, const LogOptions& options,
                             absl::Duration poll)
    : path_(std::move(path)), options_(options), poll_(poll) {}

FileLogStream::~FileLogStream() {
  if (fd_ >= 0) close(fd_);
}

bool FileLogStream::OpenFile() {
  int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return false;
  }
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  offset_ = 0;
  return true;
}

std::string FileLogStream::ReadAvailable() {
  if (!started_) {
    // What is there at open: all of it, or its last lines.
    started_ = true;
    if (OpenFile()) {
      const int64_t size = SizeOf(fd_);
      if (options_.tail_lines > 0) {
        std::string all = ReadAt(fd_, 0, size);
        offset_ = static_cast<int64_t>(all.size());
        pending_ = TailLines(all, options_.tail_lines);
      }
      if (!options_.follow) end_ = size;
    } else if (!options_.follow) {
      end_ = 0;
    }
  }
  if (!pending_.empty()) {
    std::string out = std::move(pending_);
    pending_.clear();
    return out;
  }
  if (!options_.follow) {
    if (fd_ < 0 || offset_ >= end_) return "";
    std::string data =
        ReadAt(fd_, offset_, std::min(end_ - offset_, kMaxChunk));
    offset_ += static_cast<int64_t>(data.size());
    if (data.empty()) end_ = offset_;  // shrank meanwhile
    return data;
  }
  if (fd_ < 0 && !OpenFile()) return "";  // not written yet
  for (int moves = 0; moves < 2; ++moves) {
    int64_t size = SizeOf(fd_);
    struct stat st;
    const bool exists = stat(path_.c_str(), &st) == 0;
    const bool rotated = exists && (st.st_dev != dev_ || st.st_ino != ino_);
    if (!rotated && size < offset_) offset_ = 0;  // truncated in place
    if (offset_ < size) {
      std::string data =
          ReadAt(fd_, offset_, std::min(size - offset_, kMaxChunk));
      offset_ += static_cast<int64_t>(data.size());
      if (!data.empty()) return data;
    }
    // At the end of the file we have: go on with the new one, if any.
    if (!rotated || !OpenFile()) return "";
  }
  return "";
}

absl::StatusOr<std::string> FileLogStream::Next(absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (cancelled_) return absl::CancelledError("log stream cancelled");
    }
    std::string data = ReadAvailable();
    if (!data.empty()) return data;
    if (!options_.follow && (end_ < 0 || offset_ >= end_)) {
      return absl::OutOfRangeError("end of log");
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) return std::string();
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&cancelled_),
                         std::min(poll_, deadline - now));
  }
}

void FileLogStream::Cancel() {
  absl::MutexLock l(&mu_);
  cancelled_ = true;
}

}  // namespace tidal
