#include "runtime/log_pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/units.h"

namespace tidal {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 64 << 10;
// Read at most this much from one FIFO per wake-up, so one loud instance
// does not starve the others.
constexpr int64_t kReadPerWake = 1 << 20;
constexpr int kPipeSize = 1 << 20;
constexpr auto kWindow = std::chrono::milliseconds(100);
constexpr auto kFreeSpaceCheck = std::chrono::milliseconds(100);
// How often the loop resumes paused readers and writes due marker lines.
constexpr auto kPassInterval = std::chrono::milliseconds(20);

std::string Errno(const std::string& what, int err) {
  return absl::StrCat(what, ": ", strerror(err));
}

// One instance's FIFO and log file. Fields guarded by mu.
struct Sink {
  absl::Mutex mu;
  std::string id;
  std::string fifo;
  std::string log_path;
  uint64_t key = 0;
  int fd = -1;       // the FIFO, read-write and non-blocking
  int logfd = -1;    // the current log file, or -1 after a failed open
  int64_t size = 0;  // of the current log file
  bool last_newline = true;
  bool closed = false;
  // Token bucket.
  double tokens = 0;
  SteadyClock::time_point refilled;
  // Read bound (max_read_bytes per second, in 100 ms windows).
  SteadyClock::time_point window_start;
  int64_t window_read = 0;
  bool paused = false;
  // Free space, checked at most every kFreeSpaceCheck.
  SteadyClock::time_point free_checked;
  bool low_space = false;
  // Dropped since the last marker line, and why.
  int64_t pending_drop = 0;
  std::string drop_reason;
  SteadyClock::time_point last_marker;
  LogStats stats;
};

}  // namespace

class LogPump::Impl {
 public:
  explicit Impl(LogLimits limits)
      : limits_(Normalize(limits)), log_(GetLogger("runtime")) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // key 0: the wake-up eventfd
    epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
    thread_ = std::thread([this] { Loop(); });
  }

  ~Impl() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    Wake();
    if (thread_.joinable()) thread_.join();
    absl::MutexLock l(&mu_);
    for (auto& [key, sink] : sinks_) {
      absl::MutexLock sl(&sink->mu);
      CloseLocked(*sink);
    }
    sinks_.clear();
    close(epfd_);
    close(wakefd_);
  }

  absl::Status Attach(const std::string& id, const std::string& fifo,
                      const std::string& log_path) {
    absl::MutexLock l(&mu_);
    for (const auto& [key, s] : sinks_) {
      if (s->id == id) return absl::OkStatus();
    }
    // Read-write: never blocks in open, and with a writer of our own the
    // FIFO never reports end-of-file or hang-up between instance processes.
    int fd = open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return absl::InternalError(Errno("open " + fifo, errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat(fifo, " is not a FIFO"));
    }
    fcntl(fd, F_SETPIPE_SZ, kPipeSize);  // best effort: 64 KiB otherwise
    auto sink = std::make_shared<Sink>();
    sink->id = id;
    sink->fifo = fifo;
    sink->log_path = log_path;
    sink->fd = fd;
    sink->key = ++next_key_;
    const auto now = SteadyClock::now();
    sink->tokens = static_cast<double>(limits_.burst_bytes);
    sink->refilled = now;
    sink->window_start = now;
    sink->last_marker = now - std::chrono::hours(1);
    {
      absl::MutexLock sl(&sink->mu);
      OpenLogLocked(*sink);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = sink->key;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      int err = errno;
      absl::MutexLock sl(&sink->mu);
      CloseLocked(*sink);
      return absl::InternalError(Errno("epoll_ctl " + fifo, err));
    }
    sinks_[sink->key] = sink;
    return absl::OkStatus();
  }

  void Detach(const std::string& id, bool remove_fifo) {
    std::shared_ptr<Sink> sink;
    {
      absl::MutexLock l(&mu_);
      for (auto it = sinks_.begin(); it != sinks_.end(); ++it) {
        if (it->second->id == id) {
          sink = it->second;
          sinks_.erase(it);
          break;
        }
      }
    }
    if (sink == nullptr) {
      return;
    }
    absl::MutexLock sl(&sink->mu);
    if (sink->fd >= 0) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, sink->fd, nullptr);
      // What the last processes wrote before they were gone.
      ReadLocked(*sink, /*budget=*/16 << 20, /*bounded=*/false);
    }
    FlushMarkerLocked(*sink, SteadyClock::now(), /*force=*/true);
    CloseLocked(*sink);
    if (remove_fifo) unlink(sink->fifo.c_str());
  }

  bool Attached(const std::string& id) {
    absl::MutexLock l(&mu_);
    for (const auto& [key, s] : sinks_) {
      if (s->id == id) return true;
    }
    return false;
  }

  LogStats Stats(const std::string& id) {
    std::shared_ptr<Sink> sink;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [key, s] : sinks_) {
        if (s->id == id) sink = s;
      }
    }
    if (sink == nullptr) return {};
    absl::MutexLock sl(&sink->mu);
    return sink->stats;
  }

 private:
  static LogLimits Normalize(LogLimits l) {
    l.rotated_files = std::max(1, l.rotated_files);
    if (l.rate_bytes > 0 && l.burst_bytes <= 0)
      l.burst_bytes = 4 * l.rate_bytes;
    return l;
  }

  void Wake() {
    uint64_t one = 1;
    (void)!write(wakefd_, &one, sizeof(one));
  }

  void Loop() {
    std::vector<epoll_event> events(64);
    int timeout_ms = -1;
    SteadyClock::time_point last_pass;
    for (;;) {
      std::vector<std::shared_ptr<Sink>> all;
      const auto now = SteadyClock::now();
      // At most every kPassInterval (the pass locks every sink).
      const bool pass = now - last_pass >= kPassInterval;
      {
        absl::MutexLock l(&mu_);
        if (stop_) return;
        if (pass) {
          for (const auto& [key, s] : sinks_) all.push_back(s);
        }
      }
      if (pass) {
        last_pass = now;
        timeout_ms = -1;
      }
      // Resume paused readers whose window is over; write marker lines due.
      for (const auto& s : all) {
        absl::MutexLock sl(&s->mu);
        if (s->closed) continue;
        if (s->paused && now - s->window_start >= kWindow) {
          s->paused = false;
          s->window_start = now;
          s->window_read = 0;
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.u64 = s->key;
          epoll_ctl(epfd_, EPOLL_CTL_MOD, s->fd, &ev);
        }
        FlushMarkerLocked(*s, now, /*force=*/false);
        if (s->paused || s->pending_drop > 0)
          timeout_ms = kPassInterval.count();
      }
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()),
                         timeout_ms);
      if (n < 0 && errno != EINTR) {
        log_->error("runtime: log pump epoll_wait: {}", strerror(errno));
        return;
      }
      for (int i = 0; i < n; ++i) {
        uint64_t key = events[i].data.u64;
        if (key == 0) {
          uint64_t v;
          (void)!read(wakefd_, &v, sizeof(v));
          continue;
        }
        std::shared_ptr<Sink> s;
        {
          absl::MutexLock l(&mu_);
          auto it = sinks_.find(key);
          if (it != sinks_.end()) s = it->second;
        }
        if (s == nullptr) continue;
        absl::MutexLock sl(&s->mu);
        if (s->closed) continue;
        ReadLocked(*s, kReadPerWake, /*bounded=*/true);
        // A paused reader or a marker line due needs the next pass.
        if (s->paused || s->pending_drop > 0)
          timeout_ms = kPassInterval.count();
      }
    }
  }

  // Reads up to `budget` bytes from the FIFO; with `bounded`, pauses the
  // sink once it read max_read_bytes/10 in the current 100 ms window.
  void ReadLocked(Sink& s, int64_t budget, bool bounded)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    char buf[kReadChunk];
    int64_t done = 0;
    while (done < budget) {
      auto now = SteadyClock::now();
      if (bounded && limits_.max_read_bytes > 0) {
        if (now - s.window_start >= kWindow) {
          s.window_start = now;
          s.window_read = 0;
        }
        if (s.window_read >= limits_.max_read_bytes / 10) {
          s.paused = true;
          epoll_event ev{};
          ev.events = 0;
          ev.data.u64 = s.key;
          epoll_ctl(epfd_, EPOLL_CTL_MOD, s.fd, &ev);
          return;
        }
      }
      ssize_t n = read(s.fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // EAGAIN: empty
      done += n;
      s.window_read += n;
      Handle(s, buf, static_cast<size_t>(n), now);
    }
  }

  // Keeps what the bucket and the free space allow, drops the rest.
  void Handle(Sink& s, const char* data, size_t n, SteadyClock::time_point now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (now - s.free_checked >= kFreeSpaceCheck) {
      s.free_checked = now;
      s.low_space = LowOnSpace(s);
    }
    if (s.low_space) {
      Drop(s, n, "the log filesystem is below its free-space reserve");
      return;
    }
    size_t keep = n;
    if (limits_.rate_bytes > 0) {
      double secs = std::chrono::duration<double>(now - s.refilled).count();
      s.refilled = now;
      s.tokens =
          std::min(static_cast<double>(limits_.burst_bytes),
                   s.tokens + secs * static_cast<double>(limits_.rate_bytes));
      keep = static_cast<size_t>(
          std::min<double>(static_cast<double>(n), std::max(0.0, s.tokens)));
      s.tokens -= static_cast<double>(keep);
    }
    if (keep > 0) {
      // The marker goes before what is kept, at most once per interval (a
      // bucket that refills keeps a little of nearly every read).
      FlushMarkerLocked(s, now, /*force=*/false);
      Write(s, data, keep);
    }
    if (keep < n) {
      Drop(s, n - keep,
           absl::StrCat("over the rate limit of ",
                        FormatBytes(limits_.rate_bytes), " per second"));
    }
  }

  void Drop(Sink& s, size_t n, std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    s.stats.dropped_bytes += static_cast<int64_t>(n);
    s.pending_drop += static_cast<int64_t>(n);
    s.drop_reason = std::move(reason);
  }

  // A marker line for what was dropped: at most once per marker_interval
  // (when output is kept again, or by the loop's pass while dropping goes
  // on); with force now (the instance is going away).
  void FlushMarkerLocked(Sink& s, SteadyClock::time_point now, bool force)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (s.pending_drop == 0) return;
    if (!force && now - s.last_marker <
                      absl::ToChronoNanoseconds(limits_.marker_interval))
      return;
    if (s.low_space && LowOnSpace(s)) return;  // later, when there is room
    std::string line =
        absl::StrCat(s.last_newline ? "" : "\n", "[tidal] dropped ",
                     s.pending_drop, " bytes of output: ", s.drop_reason, "\n");
    s.pending_drop = 0;
    s.last_marker = now;
    Write(s, line.data(), line.size());
  }

  bool LowOnSpace(const Sink& s) const {
    if (limits_.min_free_bytes <= 0 && limits_.min_free_ratio <= 0)
      return false;
    struct statvfs vfs;
    int rc = s.logfd >= 0 ? fstatvfs(s.logfd, &vfs)
                          : statvfs(Dir(s.log_path).c_str(), &vfs);
    if (rc != 0) return false;
    const double free_bytes =
        static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize);
    const double total =
        static_cast<double>(vfs.f_blocks) * static_cast<double>(vfs.f_frsize);
    return free_bytes < static_cast<double>(limits_.min_free_bytes) ||
           free_bytes < limits_.min_free_ratio * total;
  }

  static std::string Dir(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
  }

  // Appends to the log, rotating so that no file passes max_bytes.
  void Write(Sink& s, const char* data, size_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    while (n > 0) {
      if (s.logfd < 0 && !OpenLogLocked(s)) {
        Drop(s, n, "the log file cannot be opened");
        return;
      }
      size_t chunk = n;
      if (limits_.max_bytes > 0) {
        if (s.size >= limits_.max_bytes) {
          Rotate(s);
          continue;
        }
        chunk = std::min<size_t>(
            n, static_cast<size_t>(limits_.max_bytes - s.size));
      }
      ssize_t w = write(s.logfd, data, chunk);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        Drop(s, n, Errno("writing " + s.log_path, errno));
        return;
      }
      s.size += w;
      s.stats.written_bytes += w;
      s.last_newline = data[w - 1] == '\n';
      data += w;
      n -= static_cast<size_t>(w);
    }
  }

  void Rotate(Sink& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    for (int i = limits_.rotated_files; i >= 1; --i) {
      std::string from =
          i == 1 ? s.log_path : absl::StrCat(s.log_path, ".", i - 1);
      rename(from.c_str(), absl::StrCat(s.log_path, ".", i).c_str());
    }
    if (s.logfd >= 0) close(s.logfd);
    s.logfd = -1;
    s.size = 0;
    OpenLogLocked(s);
  }

  bool OpenLogLocked(Sink& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    s.logfd = open(s.log_path.c_str(),
                   O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (s.logfd < 0) {
      log_->warn("runtime: open {}: {}", s.log_path, strerror(errno));
      return false;
    }
    struct stat st;
    s.size = fstat(s.logfd, &st) == 0 ? st.st_size : 0;
    return true;
  }

  void CloseLocked(Sink& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (s.fd >= 0) close(s.fd);
    if (s.logfd >= 0) close(s.logfd);
    s.fd = s.logfd = -1;
    s.closed = true;
  }

  // Constant after construction.
  const LogLimits limits_;
  std::shared_ptr<spdlog::logger> log_;
  int epfd_ = -1;
  int wakefd_ = -1;
  std::thread thread_;

  absl::Mutex mu_;
  std::map<uint64_t, std::shared_ptr<Sink>> sinks_ ABSL_GUARDED_BY(mu_);
  uint64_t next_key_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

LogPump::LogPump(LogLimits limits) : impl_(std::make_unique<Impl>(limits)) {}
LogPump::~LogPump() = default;

absl::Status LogPump::MakeFifo(const std::string& path) {
  if (mkfifo(path.c_str(), 0600) != 0) {
    struct stat st;
    if (errno == EEXIST && stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode))
      return absl::OkStatus();
    return absl::InternalError(Errno("mkfifo " + path, errno));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> LogPump::OpenForInstance(const std::string& fifo) {
  int fd = open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(Errno("open " + fifo, errno));
  return fd;
}

absl::Status LogPump::Attach(const std::string& id, const std::string& fifo,
                             const std::string& log_path) {
  return impl_->Attach(id, fifo, log_path);
}

void LogPump::Detach(const std::string& id, bool remove_fifo) {
  impl_->Detach(id, remove_fifo);
}

bool LogPump::Attached(const std::string& id) const {
  return impl_->Attached(id);
}

LogStats LogPump::Stats(const std::string& id) const {
  return impl_->Stats(id);
}

absl::Status CopyTruncateIfOver(const std::string& path, int64_t max_bytes) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || st.st_size <= max_bytes)
    return absl::OkStatus();
  int in = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (in < 0) return absl::OkStatus();
  absl::Status result;
  std::string old = path + ".1";
  std::string tmp = old + ".tmp";
  int out = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out >= 0) {
    off_t off = 0;
    while (off < st.st_size) {
      ssize_t n =
          sendfile(out, in, &off, static_cast<size_t>(st.st_size - off));
      if (n <= 0) break;
    }
    close(out);
    rename(tmp.c_str(), old.c_str());
    if (ftruncate(in, 0) != 0)
      result = absl::InternalError(Errno("truncate " + path, errno));
  }
  close(in);
  return result;
}

}  // namespace tidal
