#include "runtime/process_runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "runtime/cgroup.h"
#include "runtime/instance_record.pb.h"
#include "runtime/log_pipe.h"

extern char** environ;

namespace tidal {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using tidal::runtime::InstanceRecord;

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(d));
}

// How long a stop waits for SIGKILLed descendants to be gone.
constexpr auto kDrainTimeout = std::chrono::seconds(5);

std::string ShortDuration(absl::Duration d) {
  // "10s", "2m40s", "100ms": like kubelet's messages.
  int64_t ms = absl::ToInt64Milliseconds(d);
  if (ms % 1000 != 0) return absl::StrCat(ms, "ms");
  int64_t s = ms / 1000;
  if (s < 60) return absl::StrCat(s, "s");
  if (s % 60 == 0) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s / 60, "m", s % 60, "s");
}

// /proc/<pid>/stat: field 22 (start time in clock ticks since boot) and the
// state letter. False if the process does not exist.
bool ReadProcStat(pid_t pid, uint64_t* start_ticks, char* state) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may hold spaces.
  const char* p = strrchr(buf, ')');
  if (p == nullptr) return false;
  p += 2;  // field 3: state
  if (state != nullptr) *state = *p;
  // Fields 3..22: skip 19 separators to reach field 22.
  for (int field = 3; field < 22; ++field) {
    p = strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  if (start_ticks != nullptr) *start_ticks = strtoull(p, nullptr, 10);
  return true;
}

// Alive and the same process (not a reused pid); zombies count as dead.
bool ProcessMatches(pid_t pid, uint64_t start_ticks) {
  uint64_t ticks = 0;
  char state = 0;
  if (pid <= 0 || !ReadProcStat(pid, &ticks, &state)) return false;
  return ticks == start_ticks && state != 'Z' && state != 'X';
}

// CPU and memory of one process, from /proc/<pid>/stat.
struct ProcStatUsage {
  pid_t pgid = 0;
  uint64_t start_ticks = 0;
  uint64_t cpu_ticks = 0;  // utime + stime + cutime + cstime
  int64_t rss_pages = 0;
};

// Parses /proc/<pid>/stat (path given); false if unreadable.
bool ReadProcUsage(const char* path, ProcStatUsage* out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = strrchr(buf, ')');
  if (p == nullptr) return false;
  // Fields after the command name, from field 3 (state) on.
  std::array<uint64_t, 25> f{};
  p += 2;
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

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

bool PortFree(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& data,
                             bool sync) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return absl::InternalError(
        absl::StrCat("open ", tmp, ": ", strerror(errno)));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::InternalError(
          absl::StrCat("write ", tmp, ": ", strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  if (sync && fdatasync(fd) != 0) {
    int err = errno;
    close(fd);
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("fsync ", tmp, ": ", strerror(err)));
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("rename ", tmp, ": ", strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (cur.empty() && path[0] == '/') cur = "/";
    if (part.empty()) continue;
    if (!cur.empty() && cur.back() != '/') cur += '/';
    cur.append(part.data(), part.size());
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("mkdir ", cur, ": ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

// Moves fd to a descriptor >= 3 (stdio slots may be closed in a daemon).
int AboveStdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return moved;
}

// A probe resolved against its defaults and the instance's port.
struct ProbeConfig {
  bool http = false;
  std::string path = "/";
  int port = 0;
  absl::Duration initial_delay;
  absl::Duration period;
  absl::Duration timeout;
  int failure_threshold = 3;
  int success_threshold = 1;
};

ProbeConfig ResolveProbe(const tidal::v1::Probe& p, bool liveness,
                         int instance_port) {
  ProbeConfig c;
  if (p.has_http_get()) {
    c.http = true;
    c.path = p.http_get().path().empty() ? "/" : p.http_get().path();
    if (c.path[0] != '/') c.path = "/" + c.path;
    c.port = p.http_get().port();
  } else if (p.has_tcp_socket()) {
    c.port = p.tcp_socket().port();
  }
  if (c.port <= 0) c.port = instance_port;
  c.initial_delay = absl::Seconds(std::max(0, p.initial_delay_seconds()));
  int period =
      p.has_period_seconds() ? p.period_seconds() : (liveness ? 10 : 1);
  c.period = absl::Seconds(std::max(1, period));
  c.timeout = absl::Seconds(
      std::max(1, p.has_timeout_seconds() ? p.timeout_seconds() : 1));
  c.failure_threshold =
      std::max(1, p.has_failure_threshold() ? p.failure_threshold() : 3);
  c.success_threshold =
      std::max(1, p.has_success_threshold() ? p.success_threshold() : 1);
  return c;
}

struct ProbeResult {
  bool ok = false;
  bool connected = false;
  std::string message;
  bool answered = false;  // an HTTP status line came back (ok or not)
};

// One probe attempt: TCP connect, and for HTTP a GET whose status line must
// be 2xx/3xx. Runs on the supervisor's io_context; a timer bounds it.
class ProbeOp : public std::enable_shared_from_this<ProbeOp> {
 public:
  using Callback = std::function<void(const ProbeResult&)>;
  ProbeOp(net::io_context& io, const ProbeConfig& cfg, const std::string& host,
          Callback cb)
      : socket_(io), timer_(io), cfg_(cfg), host_(host), cb_(std::move(cb)) {}

  void Run() {
    boost::system::error_code ec;
    auto addr = net::ip::make_address(host_, ec);
    if (ec) return Finish(false, false, "bad probe host " + host_);
    timer_.expires_after(ToChrono(cfg_.timeout));
    timer_.async_wait(
        [self = shared_from_this()](boost::system::error_code ec) {
          if (!ec)
            self->Finish(false, self->connected_,
                         "timeout after " + ShortDuration(self->cfg_.timeout));
        });
    socket_.async_connect(
        tcp::endpoint(addr, static_cast<uint16_t>(cfg_.port)),
        [self = shared_from_this()](boost::system::error_code ec) {
          self->OnConnect(ec);
        });
  }

 private:
  void OnConnect(boost::system::error_code ec) {
    if (done_) return;
    if (ec) {
      return Finish(
          false, false,
          absl::StrCat("dial tcp ", host_, ":", cfg_.port, ": ", ec.message()));
    }
    connected_ = true;
    if (!cfg_.http) return Finish(true, true, "");
    request_ = absl::StrCat(
        "GET ", cfg_.path, " HTTP/1.1\r\nHost: ", host_, ":", cfg_.port,
        "\r\nUser-Agent: tidal-probe\r\nConnection: close\r\n\r\n");
    net::async_write(
        socket_, net::buffer(request_),
        [self = shared_from_this()](boost::system::error_code ec, size_t) {
          if (self->done_) return;
          if (ec) return self->Finish(false, true, "write: " + ec.message());
          self->ReadMore();
        });
  }

  void ReadMore() {
    socket_.async_read_some(
        net::buffer(buf_.data() + got_, buf_.size() - got_),
        [self = shared_from_this()](boost::system::error_code ec, size_t n) {
          if (self->done_) return;
          self->got_ += n;
          std::string_view data(self->buf_.data(), self->got_);
          size_t eol = data.find("\r\n");
          if (eol == std::string_view::npos) {
            if (ec || self->got_ == self->buf_.size()) {
              return self->Finish(false, true,
                                  "no HTTP status line in response");
            }
            return self->ReadMore();
          }
          // "HTTP/1.1 200 OK"
          std::string_view line = data.substr(0, eol);
          size_t sp = line.find(' ');
          int code = 0;
          if (sp != std::string_view::npos && line.size() >= sp + 4) {
            code = atoi(std::string(line.substr(sp + 1, 3)).c_str());
          }
          if (code >= 200 && code < 400) return self->Finish(true, true, "");
          self->Finish(
              false, true,
              code == 0
                  ? "malformed HTTP status line"
                  : absl::StrCat("HTTP probe failed with statuscode: ", code),
              code != 0);
        });
  }

  void Finish(bool ok, bool connected, const std::string& message,
              bool answered = false) {
    if (done_) return;
    done_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
    cb_(ProbeResult{ok, connected, message, answered || (ok && cfg_.http)});
  }

  tcp::socket socket_;
  net::steady_timer timer_;
  ProbeConfig cfg_;
  std::string host_;
  Callback cb_;
  std::string request_;
  std::array<char, 512> buf_{};
  size_t got_ = 0;
  bool done_ = false;
  bool connected_ = false;
};

// One instance. Fields are guarded by Impl::mu_; the asio objects are used
// only on the supervisor thread.
struct Proc {
  explicit Proc(net::io_context& io)
      : probe_timer(io),
        live_timer(io),
        restart_timer(io),
        kill_timer(io),
        poll_timer(io),
        drain_timer(io) {}

  tidal::v1::Instance info;
  InstanceRecord rec;
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  bool own_child = false;
  uint64_t gen =
      0;  // bumped for every process (re)start; stale callbacks compare it
  bool stopping = false;
  bool sigkilled = false;
  absl::Duration grace;
  bool liveness_killed = false;
  std::string spawn_error;  // exec failed: why
  int crash_count = 0;
  absl::Time run_start;
  std::chrono::steady_clock::time_point probing_since;
  std::chrono::steady_clock::time_point spawned_at;
  int ready_successes = 0;
  int ready_failures = 0;
  int live_failures = 0;
  bool ever_ready = false;  // this process has been ready once
  // Before ever_ready (ProcessRuntimeOptions::startup_timeout):
  bool ever_connected = false;  // a probe connected to this process
  int answered_failures = 0;    // "not ready" answers in a row, per period
  std::chrono::steady_clock::time_point last_answered_failure;
  bool gone = false;  // removed from the map
  // When a stop escalates to SIGKILL (a second Stop may bring it forward).
  std::chrono::steady_clock::time_point kill_at;

  // Supervisor thread only.
  std::unique_ptr<net::posix::stream_descriptor> pidfd;
  net::steady_timer probe_timer, live_timer, restart_timer, kill_timer,
      poll_timer, drain_timer;
};

}  // namespace

class ProcessRuntime::Impl {
 public:
  explicit Impl(ProcessRuntimeOptions options)
      : opts_(std::move(options)),
        clock_(opts_.clock != nullptr ? opts_.clock : RealClock::Get()),
        log_(GetLogger("runtime")),
        work_(net::make_work_guard(io_)),
        log_timer_(io_),
        rng_(std::random_device{}()) {
    instances_dir_ = opts_.data_dir + "/instances";
    logs_dir_ =
        opts_.log_dir.empty() ? opts_.data_dir + "/logs" : opts_.log_dir;
    for (const auto& dir : {instances_dir_, logs_dir_}) {
      absl::Status s = MakeDirs(dir);
      if (!s.ok()) log_->error("runtime: {}", s.ToString());
    }
    if (opts_.cgroup_root != "off") {
      auto cg = InstanceCgroups::Open(opts_.cgroup_root);
      if (cg.ok()) {
        cgroups_.emplace(*cg);
        log_->info("runtime: each instance runs in its own cgroup under {}",
                   cg->root());
      } else {
        log_->warn(
            "runtime: no usable cgroup v2 ({}); falling back to a child "
            "subreaper",
            std::string(cg.status().message()));
      }
    }
    if (!cgroups_) {
      absl::Status s = BecomeSubreaper();
      if (!s.ok()) log_->error("runtime: {}", s.ToString());
    }
    LogLimits limits;
    limits.max_bytes = opts_.log_max_bytes;
    limits.rotated_files = opts_.log_rotated_files;
    limits.rate_bytes = opts_.log_rate_bytes;
    limits.burst_bytes = opts_.log_burst_bytes;
    limits.min_free_bytes = opts_.log_min_free_bytes;
    limits.min_free_ratio = opts_.log_min_free_ratio;
    pump_ = std::make_unique<LogPump>(limits);
    int span = std::max(1, opts_.port_max - opts_.port_min + 1);
    port_cursor_ =
        opts_.port_min + static_cast<int>(rng_() % static_cast<uint64_t>(span));
    ScheduleLogCheck();
    thread_ = std::thread([this] { io_.run(); });
  }

  ~Impl() { Shutdown(false); }

  // ---- public API ----

  absl::StatusOr<tidal::v1::Instance> Start(const InstanceRequest& req) {
    if (req.tmpl.command().empty()) {
      return absl::InvalidArgumentError("template.command is empty");
    }
    std::vector<InstanceChange> changes;
    std::shared_ptr<Proc> p;
    {
      absl::MutexLock l(&mu_);
      if (shut_down_)
        return absl::FailedPreconditionError("runtime is shut down");
      if (opts_.max_instances > 0 &&
          static_cast<int>(procs_.size()) >= opts_.max_instances) {
        return absl::ResourceExhaustedError(
            absl::StrCat("instance limit reached: ", procs_.size(),
                         " instances run on this tidald (--max-instances ",
                         opts_.max_instances, ")"));
      }
      int port = 0;
      {
        absl::StatusOr<int> got = AllocatePortLocked();
        if (!got.ok()) return got.status();
        port = *got;
      }
      p = std::make_shared<Proc>(io_);
      std::string id = NewIdLocked(req.app);
      auto& info = p->info;
      info.set_id(id);
      info.set_namespace_(req.namespace_);
      info.set_app(req.app);
      info.set_template_hash(req.template_hash);
      info.set_revision(req.revision);
      info.set_host(opts_.host);
      info.set_port(port);
      info.set_log_path(absl::StrCat(logs_dir_, "/", req.namespace_, "_",
                                     req.app, "_", id, ".log"));
      auto& rec = p->rec;
      rec.set_id(id);
      rec.set_namespace_(req.namespace_);
      rec.set_app(req.app);
      rec.set_template_hash(req.template_hash);
      rec.set_revision(req.revision);
      rec.set_port(port);
      rec.set_log_path(info.log_path());
      *rec.mutable_template_() = req.tmpl;
      p->own_child = true;
      absl::Status s = PrepareLocked(*p);
      if (s.ok()) {
        ports_.insert(port);
        s = SpawnLocked(*p);
        if (!s.ok()) ports_.erase(port);
      }
      if (!s.ok()) {
        CleanUpLocked(*p);
        return s;
      }
      procs_[id] = p;
      changes.push_back(Change(*p, "Normal", "Started",
                               absl::StrCat("started instance ", id, " (pid ",
                                            p->pid, ", port ", port, ")")));
      log_->info("app={}/{} started instance {} pid={} port={}", req.namespace_,
                 req.app, id, p->pid, port);
    }
    tidal::v1::Instance out = p->info;
    uint64_t gen = p->gen;
    net::post(io_, [this, p, gen, changes = std::move(changes)] {
      Deliver(changes);
      Supervise(p, gen);
    });
    return out;
  }

  absl::Status Stop(const std::string& id, absl::Duration grace) {
    std::shared_ptr<Proc> p;
    std::vector<InstanceChange> changes;
    {
      absl::MutexLock l(&mu_);
      if (shut_down_)
        return absl::FailedPreconditionError("runtime is shut down");
      auto it = procs_.find(id);
      if (it == procs_.end())
        return absl::NotFoundError(absl::StrCat("no instance ", id));
      p = it->second;
      if (p->stopping &&
          std::chrono::steady_clock::now() + ToChrono(grace) >= p->kill_at) {
        return absl::OkStatus();  // SIGKILL comes sooner already
      }
      BeginStopLocked(*p, grace);
      changes.push_back(Change(*p));
    }
    net::post(io_, [this, p, changes = std::move(changes)] {
      Deliver(changes);
      ArmStop(p);
    });
    return absl::OkStatus();
  }

  std::vector<tidal::v1::Instance> List(const std::string& ns,
                                        const std::string& app) {
    absl::MutexLock l(&mu_);
    std::vector<tidal::v1::Instance> out;
    for (const auto& [id, p] : procs_) {
      if (!ns.empty() && p->info.namespace_() != ns) continue;
      if (!app.empty() && p->info.app() != app) continue;
      out.push_back(p->info);
      if (pump_) {
        out.back().set_log_dropped_bytes(pump_->Stats(id).dropped_bytes);
      }
    }
    return out;
  }

  std::string Containment() const { return cgroups_ ? "cgroup" : "subreaper"; }

  std::string CgroupOf(const std::string& id) {
    absl::MutexLock l(&mu_);
    auto it = procs_.find(id);
    return it == procs_.end() ? "" : it->second->rec.cgroup();
  }

  // One pass over /proc: sums the figures of every process in the process
  // group of each running instance (each instance leads its own session and
  // group, so the group is the instance with all its children).
  std::vector<InstanceUsage> Usage(const std::string& ns,
                                   const std::string& app) {
    struct Want {
      std::string id;
      pid_t pid;
      uint64_t start_ticks;
    };
    std::vector<Want> wants;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, p] : procs_) {
        if (!ns.empty() && p->info.namespace_() != ns) continue;
        if (!app.empty() && p->info.app() != app) continue;
        if (p->pid <= 0) continue;
        wants.push_back({id, p->pid, p->start_ticks});
      }
    }
    std::vector<InstanceUsage> out;
    if (wants.empty()) return out;
    const absl::Time now = absl::Now();
    struct Sum {
      uint64_t ticks = 0;
      int64_t pages = 0;
      bool leader_ok = false;
    };
    std::map<pid_t, Sum> groups;
    for (const Want& w : wants) groups[w.pid];
    DIR* dir = opendir("/proc");
    if (dir == nullptr) return out;
    char path[sizeof(dirent::d_name) + 16];
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
      ProcStatUsage u;
      if (!ReadProcUsage(path, &u)) continue;
      auto it = groups.find(u.pgid);
      if (it == groups.end()) continue;
      it->second.ticks += u.cpu_ticks;
      it->second.pages += u.rss_pages;
      const pid_t pid = static_cast<pid_t>(strtol(e->d_name, nullptr, 10));
      if (pid == u.pgid) {
        for (const Want& w : wants) {
          if (w.pid == pid && w.start_ticks == u.start_ticks)
            it->second.leader_ok = true;
        }
      }
    }
    closedir(dir);
    static const double kTicksPerSecond =
        static_cast<double>(sysconf(_SC_CLK_TCK));
    static const int64_t kPageSize = sysconf(_SC_PAGESIZE);
    for (const Want& w : wants) {
      const Sum& sum = groups[w.pid];
      // The group's leader is gone or is another process now: no figures.
      if (!sum.leader_ok) continue;
      InstanceUsage u;
      u.instance_id = w.id;
      u.cpu_seconds = static_cast<double>(sum.ticks) / kTicksPerSecond;
      u.memory_bytes = sum.pages * kPageSize;
      u.sampled_at = now;
      out.push_back(std::move(u));
    }
    return out;
  }

  void SetListener(Listener listener) {
    absl::MutexLock l(&mu_);
    listener_ = std::move(listener);
  }

  absl::Status Adopt() {
    std::vector<std::pair<std::shared_ptr<Proc>, uint64_t>> adopted;
    std::vector<InstanceChange> changes;
    {
      absl::MutexLock l(&mu_);
      if (shut_down_)
        return absl::FailedPreconditionError("runtime is shut down");
      DIR* dir = opendir(instances_dir_.c_str());
      if (dir == nullptr) {
        return absl::InternalError(
            absl::StrCat("opendir ", instances_dir_, ": ", strerror(errno)));
      }
      std::vector<std::string> files;
      while (dirent* e = readdir(dir)) {
        std::string name = e->d_name;
        if (absl::EndsWith(name, ".pb"))
          files.push_back(instances_dir_ + "/" + name);
        if (absl::EndsWith(name, ".pb.tmp"))
          unlink((instances_dir_ + "/" + name).c_str());
      }
      closedir(dir);
      std::sort(files.begin(), files.end());
      int kept = 0, dropped = 0;
      for (const auto& file : files) {
        InstanceRecord rec;
        std::ifstream in(file, std::ios::binary);
        if (!in || !rec.ParseFromIstream(&in) || rec.id().empty()) {
          log_->warn("runtime: dropping unreadable instance record {}", file);
          unlink(file.c_str());
          ++dropped;
          continue;
        }
        if (procs_.count(rec.id()) > 0) continue;
        pid_t pid = static_cast<pid_t>(rec.pid());
        if ((!rec.boot_id().empty() && rec.boot_id() != boot_id_) ||
            !ProcessMatches(pid, rec.start_ticks())) {
          log_->info(
              "app={}/{} instance {} (pid {}) is gone; dropping its record",
              rec.namespace_(), rec.app(), rec.id(), pid);
          // Our own zombie (same process, an earlier runtime object): reap it.
          uint64_t ticks = 0;
          char state = 0;
          if (pid > 0 && ReadProcStat(pid, &ticks, &state) && state == 'Z' &&
              ticks == rec.start_ticks()) {
            waitpid(pid, nullptr, WNOHANG);
          }
          RemoveLeftoversLocked(rec);
          unlink(file.c_str());
          ++dropped;
          continue;
        }
        auto p = std::make_shared<Proc>(io_);
        p->rec = rec;
        p->pid = pid;
        p->start_ticks = rec.start_ticks();
        p->own_child = false;
        p->gen = 1;
        p->run_start = clock_->Now();
        p->spawned_at = std::chrono::steady_clock::now();
        auto& info = p->info;
        info.set_id(rec.id());
        info.set_namespace_(rec.namespace_());
        info.set_app(rec.app());
        info.set_template_hash(rec.template_hash());
        info.set_revision(rec.revision());
        info.set_phase("Starting");
        info.set_pid(pid);
        info.set_host(opts_.host);
        info.set_port(rec.port());
        info.set_restarts(rec.restarts());
        info.set_log_path(rec.log_path());
        *info.mutable_start_time() = rec.start_time();
        ports_.insert(rec.port());
        procs_[rec.id()] = p;
        if (!rec.log_fifo().empty() && pump_) {
          absl::Status s =
              pump_->Attach(rec.id(), rec.log_fifo(), rec.log_path());
          if (!s.ok()) {
            log_->warn("app={}/{} instance {}: its output is not read: {}",
                       rec.namespace_(), rec.app(), rec.id(), s.ToString());
          }
        }
        if (rec.terminating()) {
          BeginStopLocked(*p, absl::Milliseconds(rec.grace_ms()));
          changes.push_back(Change(*p));
        } else {
          changes.push_back(
              Change(*p, "Normal", "Adopted",
                     absl::StrCat("adopted running instance ", rec.id(),
                                  " (pid ", pid, ", port ", rec.port(), ")")));
        }
        adopted.emplace_back(p, p->gen);
        ++kept;
        log_->info("app={}/{} adopted instance {} pid={} port={}",
                   rec.namespace_(), rec.app(), rec.id(), pid, rec.port());
      }
      if (cgroups_) {
        // Instance cgroups nothing refers to any more (an instance whose
        // record went with its data directory, or a failed rmdir).
        int stale = cgroups_->RemoveStale(absl::Minutes(1));
        if (stale > 0)
          log_->info("runtime: removed {} empty instance cgroups", stale);
      }
      log_->info("runtime: adoption done: {} adopted, {} records dropped", kept,
                 dropped);
    }
    net::post(io_, [this, adopted = std::move(adopted),
                    changes = std::move(changes)] {
      Deliver(changes);
      for (const auto& [p, gen] : adopted) {
        Supervise(p, gen);
        bool stopping;
        {
          absl::MutexLock l(&mu_);
          stopping = p->stopping;
        }
        if (stopping) ArmStop(p);
      }
    });
    return absl::OkStatus();
  }

  // The leader of a recorded instance is gone (tidald was away when it
  // exited): whatever it left running is killed now, so that setsid'd or
  // double-forked processes do not pile up over restarts.
  void RemoveLeftoversLocked(const InstanceRecord& rec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int left = 0;
    if (!rec.cgroup().empty()) {
      left = static_cast<int>(InstanceCgroups::Pids(rec.cgroup()).size());
      InstanceCgroups::Kill(rec.cgroup()).IgnoreError();
      // The killed processes exit in a moment; until then rmdir says EBUSY.
      for (int i = 0; i < 200 && InstanceCgroups::Populated(rec.cgroup());
           ++i) {
        absl::SleepFor(absl::Milliseconds(5));
      }
      absl::Status s = InstanceCgroups::Remove(rec.cgroup());
      if (!s.ok()) log_->warn("runtime: {}", s.ToString());
    } else if (!cgroups_ && !rec.id().empty()) {
      // Only by the environment: the leader's pid may have been reused, so
      // its process group and session prove nothing.
      std::vector<ProcEntry> procs = ScanProcesses();
      for (pid_t pid : InstanceDescendants(procs, 0, 0, rec.id())) {
        kill(pid, SIGKILL);
        ++left;
      }
    }
    if (left > 0) {
      log_->info("app={}/{} instance {}: killed {} process(es) it left behind",
                 rec.namespace_(), rec.app(), rec.id(), left);
    }
    if (!rec.log_fifo().empty()) unlink(rec.log_fifo().c_str());
  }

  absl::StatusOr<std::string> LogPath(const std::string& id) {
    {
      absl::MutexLock l(&mu_);
      auto it = procs_.find(id);
      if (it != procs_.end()) return it->second->info.log_path();
    }
    // A stopped instance's log stays on disk: <ns>_<app>_<id>.log.
    DIR* dir = opendir(logs_dir_.c_str());
    if (dir != nullptr) {
      std::string suffix = "_" + id + ".log";
      std::string found;
      while (dirent* e = readdir(dir)) {
        if (absl::EndsWith(e->d_name, suffix))
          found = logs_dir_ + "/" + e->d_name;
      }
      closedir(dir);
      if (!found.empty()) return found;
    }
    return absl::NotFoundError(absl::StrCat("no instance ", id));
  }

  bool WaitForNoInstances(absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return procs_.empty();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&empty), timeout);
  }

  void Shutdown(bool stop_instances) {
    {
      absl::MutexLock l(&mu_);
      if (shut_down_) return;
    }
    if (stop_instances) {
      absl::Duration longest = absl::ZeroDuration();
      for (const auto& inst : List("", "")) {
        absl::Duration grace = absl::Seconds(30);
        {
          absl::MutexLock l(&mu_);
          auto it = procs_.find(inst.id());
          if (it != procs_.end() &&
              it->second->rec.template_()
                  .has_termination_grace_period_seconds()) {
            grace = absl::Seconds(
                it->second->rec.template_().termination_grace_period_seconds());
          }
        }
        longest = std::max(longest, grace);
        Stop(inst.id(), grace).IgnoreError();
      }
      if (!WaitForNoInstances(longest + absl::Seconds(5))) {
        log_->warn("runtime: instances still running after shutdown deadline");
      }
    }
    {
      absl::MutexLock l(&mu_);
      shut_down_ = true;
    }
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    absl::MutexLock l(&mu_);
    for (const auto& [proc, fd] : pending_pidfd_) close(fd);
    pending_pidfd_.clear();
    procs_.clear();
    pump_.reset();  // instances keep their FIFOs for the next tidald
    ports_.clear();
  }

 private:
  // ---- helpers under mu_ ----

  absl::StatusOr<int> AllocatePortLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int span = opts_.port_max - opts_.port_min + 1;
    if (span <= 0) return absl::InvalidArgumentError("empty port range");
    for (int i = 0; i < span; ++i) {
      int port = port_cursor_;
      port_cursor_ =
          port_cursor_ >= opts_.port_max ? opts_.port_min : port_cursor_ + 1;
      if (ports_.count(port) > 0) continue;
      if (PortFree(port)) return port;
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("no free port in ", opts_.port_min, "-", opts_.port_max));
  }

  std::string NewIdLocked(const std::string& app)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (;;) {
      std::string id = app + "-";
      for (int i = 0; i < 5; ++i) id += kAlnum[rng_() % 36];
      struct stat st;
      // Not in use here, nor by another tidald sharing the cgroup root.
      if (procs_.count(id) == 0 && stat(RecordPath(id).c_str(), &st) != 0 &&
          (!cgroups_ || stat(cgroups_->PathOf(id).c_str(), &st) != 0)) {
        return id;
      }
    }
  }

  std::string RecordPath(const std::string& id) const {
    return instances_dir_ + "/" + id + ".pb";
  }

  absl::Status WriteRecordLocked(Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    p.rec.set_pid(p.pid);
    p.rec.set_start_ticks(p.start_ticks);
    p.rec.set_boot_id(boot_id_);
    p.rec.set_restarts(p.info.restarts());
    p.rec.set_port(p.info.port());
    *p.rec.mutable_start_time() = p.info.start_time();
    std::string data;
    p.rec.SerializeToString(&data);
    return WriteFileAtomic(RecordPath(p.info.id()), data, opts_.sync_records);
  }

  // The environment of an instance: a few variables of tidald's own, then the
  // template's, then PORT and TIDAL_*; PATH gets extra_path in front.
  std::vector<std::string> BuildEnv(const Proc& p) const {
    static const char* kInherit[] = {"PATH",     "HOME", "USER",
                                     "LOGNAME",  "LANG", "LC_ALL",
                                     "LC_CTYPE", "TZ",   "TMPDIR"};
    std::map<std::string, std::string> env;
    for (const char* name : kInherit) {
      if (const char* v = getenv(name)) env[name] = v;
    }
    for (const auto& e : p.rec.template_().env()) env[e.name()] = e.value();
    env["PORT"] = std::to_string(p.info.port());
    env["TIDAL_APP"] = p.info.app();
    env["TIDAL_NAMESPACE"] = p.info.namespace_();
    env["TIDAL_INSTANCE"] = p.info.id();
    env["TIDAL_REVISION"] = std::to_string(p.info.revision());
    if (env.count("PATH") == 0) env["PATH"] = "/usr/local/bin:/usr/bin:/bin";
    if (!opts_.extra_path.empty()) {
      env["PATH"] =
          absl::StrCat(absl::StrJoin(opts_.extra_path, ":"), ":", env["PATH"]);
    }
    std::vector<std::string> out;
    for (const auto& [k, v] : env) out.push_back(k + "=" + v);
    return out;
  }

  static std::string ResolveCommand(const std::string& cmd,
                                    const std::vector<std::string>& env) {
    if (cmd.find('/') != std::string::npos) return cmd;
    std::string path;
    for (const auto& e : env) {
      if (absl::StartsWith(e, "PATH=")) path = e.substr(5);
    }
    for (absl::string_view dir : absl::StrSplit(path, ':')) {
      std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", cmd);
      struct stat st;
      if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          access(candidate.c_str(), X_OK) == 0) {
        return candidate;
      }
    }
    return "";
  }

  // Creates what an instance keeps across restarts: its log FIFO and its
  // cgroup (both named in its record, so the next tidald finds them).
  absl::Status PrepareLocked(Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string fifo = instances_dir_ + "/" + p.info.id() + ".fifo";
    absl::Status s = LogPump::MakeFifo(fifo);
    if (!s.ok()) return s;
    p.rec.set_log_fifo(fifo);
    if (cgroups_) {
      auto cg = cgroups_->Create(p.info.id());
      if (!cg.ok()) return cg.status();
      p.rec.set_cgroup(*cg);
    }
    return absl::OkStatus();
  }

  // Undoes PrepareLocked (and SpawnLocked's attach) for an instance that
  // never ran or is gone.
  void CleanUpLocked(Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!p.rec.log_fifo().empty()) {
      if (pump_) pump_->Detach(p.info.id(), /*remove_fifo=*/false);
      unlink(p.rec.log_fifo().c_str());
    }
    if (!p.rec.cgroup().empty()) {
      absl::Status s = InstanceCgroups::Remove(p.rec.cgroup());
      if (!s.ok()) log_->warn("runtime: {}", s.ToString());
    }
  }

  // SIGKILLs every process of the instance but the leader's own pid: the
  // whole cgroup, or (subreaper) every descendant found in /proc. Returns
  // how many processes may still be alive (0: none left).
  int KillRestLocked(const Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!p.rec.cgroup().empty()) {
      absl::Status s = InstanceCgroups::Kill(p.rec.cgroup());
      if (!s.ok()) log_->warn("runtime: {}", s.ToString());
      return InstanceCgroups::Populated(p.rec.cgroup()) ? 1 : 0;
    }
    std::vector<ProcEntry> procs = ScanProcesses();
    std::vector<pid_t> rest = InstanceDescendants(
        procs, p.pid, static_cast<pid_t>(p.rec.pid()), p.info.id());
    for (pid_t pid : rest) kill(pid, SIGKILL);
    ReapZombieChildren(procs, LeadersLocked());
    return static_cast<int>(rest.size());
  }

  // Pids of instance processes someone waits for (never reaped elsewhere).
  std::vector<pid_t> LeadersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<pid_t> out;
    for (const auto& [id, p] : procs_) {
      if (p->pid > 0) out.push_back(p->pid);
    }
    return out;
  }

  // Forks and execs the instance's process. The child waits on a pipe until
  // the record with its pid is on disk, so a crash of tidald in between never
  // leaves an unrecorded process (the child sees EOF and exits). On an exec
  // failure the process exits 127 and spawn_error says why.
  absl::Status SpawnLocked(Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto& tmpl = p.rec.template_();
    std::vector<std::string> env = BuildEnv(p);
    std::vector<std::string> args(tmpl.command().begin(), tmpl.command().end());
    args.insert(args.end(), tmpl.args().begin(), tmpl.args().end());
    std::string exe = ResolveCommand(args[0], env);
    p.spawn_error.clear();
    p.liveness_killed = false;
    p.sigkilled = false;
    p.ready_successes = p.ready_failures = p.live_failures = 0;
    p.ever_ready = false;
    p.ever_connected = false;
    p.answered_failures = 0;
    p.gen++;
    if (exe.empty()) {
      p.spawn_error =
          absl::StrCat("executable \"", args[0], "\" not found in PATH");
      exe = args[0];
    }
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string& workdir = tmpl.working_dir();

    int logfd = -1;
    if (!p.rec.log_fifo().empty()) {
      absl::Status s =
          pump_
              ? pump_->Attach(p.info.id(), p.rec.log_fifo(), p.info.log_path())
              : absl::FailedPreconditionError("runtime is shut down");
      if (!s.ok()) return s;
      auto fd = LogPump::OpenForInstance(p.rec.log_fifo());
      if (!fd.ok()) return fd.status();
      logfd = AboveStdio(*fd);
    } else {
      logfd = AboveStdio(open(p.info.log_path().c_str(),
                              O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
    }
    if (logfd < 0) {
      return absl::InternalError(
          absl::StrCat("open ", p.info.log_path(), ": ", strerror(errno)));
    }
    int nullfd = AboveStdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
    int go[2] = {-1, -1}, err[2] = {-1, -1};
    if (nullfd < 0 || pipe2(go, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      int e = errno;
      for (int fd : {logfd, nullfd, go[0], go[1], err[0], err[1]}) {
        if (fd >= 0) close(fd);
      }
      return absl::InternalError(absl::StrCat("spawn: ", strerror(e)));
    }
    for (int* fd : {&go[0], &go[1], &err[0], &err[1]}) *fd = AboveStdio(*fd);
    bool spawn_failed = !p.spawn_error.empty();

    pid_t pid = fork();
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      setsid();
      dup2(nullfd, 0);
      dup2(logfd, 1);
      dup2(logfd, 2);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      struct sigaction dfl;
      memset(&dfl, 0, sizeof(dfl));
      dfl.sa_handler = SIG_DFL;
      for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
      if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < 4096; ++fd) {
          if (fd != go[0] && fd != err[1]) fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
      }
      // Only the parent may hold the write end: if tidald dies before it
      // recorded us, the read sees EOF and we exit (and drop every
      // descriptor we inherited, its locks among them) instead of waiting
      // forever.
      close(go[1]);
      close(err[0]);
      char c;
      ssize_t n;
      do {
        n = read(go[0], &c, 1);
      } while (n < 0 && errno == EINTR);
      if (n != 1) _exit(127);  // tidald died before recording us
      int e = 0;
      if (!spawn_failed) {
        if (!workdir.empty() && chdir(workdir.c_str()) != 0) {
          e = errno;
          char tag = 'c';
          (void)!write(err[1], &tag, 1);
          (void)!write(err[1], &e, sizeof(e));
          _exit(127);
        }
        execve(exe.c_str(), argv.data(), envp.data());
        e = errno;
        char tag = 'e';
        (void)!write(err[1], &tag, 1);
        (void)!write(err[1], &e, sizeof(e));
      }
      _exit(127);
    }
    int fork_errno = errno;
    close(logfd);
    close(nullfd);
    close(go[0]);
    close(err[1]);
    if (pid < 0) {
      close(go[1]);
      close(err[0]);
      return absl::InternalError(absl::StrCat("fork: ", strerror(fork_errno)));
    }
    if (!p.rec.cgroup().empty()) {
      // Before the child may exec: everything it starts stays in the cgroup.
      absl::Status cs = InstanceCgroups::AddProcess(p.rec.cgroup(), pid);
      if (!cs.ok()) {
        close(go[1]);  // the child sees EOF and exits without exec
        close(err[0]);
        waitpid(pid, nullptr, 0);
        return cs;
      }
    }
    p.pid = pid;
    p.spawned_at = std::chrono::steady_clock::now();
    p.start_ticks = 0;
    ReadProcStat(pid, &p.start_ticks, nullptr);
    p.run_start = clock_->Now();
    p.info.set_pid(pid);
    p.info.set_phase("Starting");
    p.info.set_ready(false);
    p.info.clear_reason();
    p.info.clear_message();
    p.info.clear_ready_time();
    *p.info.mutable_start_time() = ToProtoTime(p.run_start);
    absl::Status rs = WriteRecordLocked(p);
    if (!rs.ok()) {
      close(go[1]);  // the child sees EOF and exits without exec
      close(err[0]);
      waitpid(pid, nullptr, 0);
      p.pid = 0;
      return rs;
    }
    char go_byte = 'g';
    (void)!write(go[1], &go_byte, 1);
    close(go[1]);
    // Wait for exec (EOF through O_CLOEXEC) or the child's error report.
    char buf[1 + sizeof(int)];
    size_t got = 0;
    while (got < sizeof(buf)) {
      ssize_t n = read(err[0], buf + got, sizeof(buf) - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    close(err[0]);
    if (got == sizeof(buf)) {
      int e;
      memcpy(&e, buf + 1, sizeof(e));
      p.spawn_error = buf[0] == 'c'
                          ? absl::StrCat("chdir ", workdir, ": ", strerror(e))
                          : absl::StrCat("exec ", exe, ": ", strerror(e));
    }
    if (!p.spawn_error.empty()) {
      log_->warn("app={}/{} instance {}: {}", p.info.namespace_(), p.info.app(),
                 p.info.id(), p.spawn_error);
    }
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) {
      fcntl(pidfd, F_SETFD, FD_CLOEXEC);
      pending_pidfd_[&p] = pidfd;
    }
    return absl::OkStatus();
  }

  void BeginStopLocked(Proc& p, absl::Duration grace)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    p.stopping = true;
    p.grace = grace;
    p.kill_at = std::chrono::steady_clock::now() + ToChrono(grace);
    p.info.set_phase("Terminating");
    p.info.set_ready(false);
    p.rec.set_terminating(true);
    p.rec.set_grace_ms(absl::ToInt64Milliseconds(grace));
    if (p.pid > 0) {
      absl::Status s = WriteRecordLocked(p);
      if (!s.ok()) log_->warn("runtime: {}", s.ToString());
    }
  }

  InstanceChange Change(const Proc& p, std::string type = "",
                        std::string reason = "", std::string message = "") {
    InstanceChange c;
    c.instance = p.info;
    c.removed = p.gone;
    c.event_type = std::move(type);
    c.event_reason = std::move(reason);
    c.event_message = std::move(message);
    return c;
  }

  // ---- supervisor thread ----

  void Deliver(const std::vector<InstanceChange>& changes) {
    if (changes.empty()) return;
    Listener listener;
    {
      absl::MutexLock l(&mu_);
      listener = listener_;
    }
    if (!listener) return;
    for (const auto& c : changes) listener(c);
  }

  // Starts watching a freshly (re)started or adopted process: exit
  // detection, readiness and liveness probes.
  void Supervise(const std::shared_ptr<Proc>& p, uint64_t gen) {
    int pidfd = -1;
    ProbeConfig ready_cfg, live_cfg;
    bool has_liveness, stopping, failed;
    {
      absl::MutexLock l(&mu_);
      if (p->gen != gen || p->gone) return;
      auto it = pending_pidfd_.find(p.get());
      if (it != pending_pidfd_.end()) {
        pidfd = it->second;
        pending_pidfd_.erase(it);
      } else if (!p->own_child) {
        pidfd = static_cast<int>(syscall(SYS_pidfd_open, p->pid, 0));
        if (pidfd >= 0) fcntl(pidfd, F_SETFD, FD_CLOEXEC);
      }
      const auto& tmpl = p->rec.template_();
      ready_cfg = ResolveProbe(tmpl.readiness_probe(), false, p->info.port());
      live_cfg = ResolveProbe(tmpl.liveness_probe(), true, p->info.port());
      has_liveness = tmpl.has_liveness_probe();
      stopping = p->stopping;
      failed = !p->spawn_error.empty();
      p->probing_since = std::chrono::steady_clock::now();
    }
    p->pidfd.reset();
    if (pidfd >= 0) {
      p->pidfd = std::make_unique<net::posix::stream_descriptor>(io_, pidfd);
      p->pidfd->async_wait(net::posix::stream_descriptor::wait_read,
                           [this, p, gen](boost::system::error_code ec) {
                             if (!ec) OnExit(p, gen);
                           });
    } else {
      PollExit(p, gen);
    }
    if (stopping || failed) return;
    ScheduleReadiness(p, gen, ready_cfg, ready_cfg.initial_delay);
    if (has_liveness)
      ScheduleLiveness(p, gen, live_cfg, live_cfg.initial_delay);
  }

  void PollExit(const std::shared_ptr<Proc>& p, uint64_t gen) {
    p->poll_timer.expires_after(ToChrono(opts_.exit_poll_interval));
    p->poll_timer.async_wait([this, p, gen](boost::system::error_code ec) {
      if (ec) return;
      bool alive;
      {
        absl::MutexLock l(&mu_);
        if (p->gen != gen || p->gone) return;
        alive = ProcessMatches(p->pid, p->start_ticks);
      }
      if (alive) {
        PollExit(p, gen);
      } else {
        OnExit(p, gen);
      }
    });
  }

  void ScheduleReadiness(const std::shared_ptr<Proc>& p, uint64_t gen,
                         const ProbeConfig& cfg, absl::Duration delay) {
    p->probe_timer.expires_after(ToChrono(delay));
    p->probe_timer.async_wait(
        [this, p, gen, cfg](boost::system::error_code ec) {
          if (ec) return;
          std::make_shared<ProbeOp>(io_, cfg, opts_.host,
                                    [this, p, gen, cfg](const ProbeResult& r) {
                                      OnReadiness(p, gen, cfg, r);
                                    })
              ->Run();
        });
  }

  void OnReadiness(const std::shared_ptr<Proc>& p, uint64_t gen,
                   const ProbeConfig& cfg, const ProbeResult& r) {
    std::vector<InstanceChange> changes;
    absl::Duration next = cfg.period;
    {
      absl::MutexLock l(&mu_);
      if (p->gen != gen || p->gone || p->stopping) return;
      if (r.ok) {
        p->ready_failures = 0;
        ++p->ready_successes;
        if (!p->info.ready() && p->ready_successes >= cfg.success_threshold) {
          p->info.set_ready(true);
          p->info.set_phase("Running");
          p->info.clear_reason();
          p->info.clear_message();
          *p->info.mutable_ready_time() = ToProtoTime(clock_->Now());
          if (!p->ever_ready) {
            log_->info("app={}/{} instance {} ready {} after start",
                       p->info.namespace_(), p->info.app(), p->info.id(),
                       absl::FormatDuration(absl::FromChrono(
                           std::chrono::steady_clock::now() - p->spawned_at)));
          }
          p->ever_ready = true;
          changes.push_back(Change(*p));
        }
      } else {
        p->ready_successes = 0;
        ++p->ready_failures;
        if (p->info.ready() && p->ready_failures >= cfg.failure_threshold) {
          p->info.set_ready(false);
          changes.push_back(Change(*p, "Warning", "Unhealthy",
                                   "Readiness probe failed: " + r.message));
        }
      }
      if (!p->ever_ready) StartupCheckLocked(*p, cfg, r, &changes);
      bool fast = !p->ever_ready &&
                  std::chrono::steady_clock::now() - p->probing_since <
                      ToChrono(opts_.fast_probe_window);
      if (fast && !(r.ok && p->info.ready())) {
        next = r.connected ? opts_.fast_probe_connected_interval
                           : opts_.fast_probe_interval;
      }
    }
    Deliver(changes);
    ScheduleReadiness(p, gen, cfg, next);
  }

  // Before an instance is first ready: marks it ReadinessProbeFailed or
  // StartupTimeout (runtime.h), and clears the mark when it no longer holds.
  void StartupCheckLocked(Proc& p, const ProbeConfig& cfg, const ProbeResult& r,
                          std::vector<InstanceChange>* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto now = std::chrono::steady_clock::now();
    const std::string& reason = p.info.reason();
    auto clear = [&] {
      p.info.clear_reason();
      p.info.clear_message();
      changes->push_back(Change(p));
    };
    if (r.connected) p.ever_connected = true;
    if (r.ok) {
      p.answered_failures = 0;
      if (reason == kReasonReadinessProbeFailed) clear();
    } else if (r.answered) {
      // Fast probing may ask every few ms: count one answer per period.
      if (p.answered_failures == 0 ||
          now - p.last_answered_failure >= ToChrono(cfg.period)) {
        ++p.answered_failures;
        p.last_answered_failure = now;
      }
      if (p.answered_failures >= cfg.failure_threshold &&
          reason != kReasonReadinessProbeFailed) {
        p.info.set_reason(kReasonReadinessProbeFailed);
        p.info.set_message(absl::StrCat(
            "readiness probe answered not ready ", p.answered_failures,
            " times in a row (failureThreshold ", cfg.failure_threshold,
            ", every ", ShortDuration(cfg.period),
            ") after the instance started listening: ", r.message));
        changes->push_back(Change(p, "Warning", "Unhealthy",
                                  "Never ready: " + p.info.message()));
        log_->warn("app={}/{} instance {}: {}", p.info.namespace_(),
                   p.info.app(), p.info.id(), p.info.message());
      }
    }
    if (p.ever_connected) {
      if (reason == kReasonStartupTimeout) clear();
      return;
    }
    const absl::Duration bound = cfg.initial_delay + opts_.startup_timeout;
    if (reason != kReasonStartupTimeout &&
        now - p.probing_since >= ToChrono(bound)) {
      p.info.set_reason(kReasonStartupTimeout);
      p.info.set_message(
          absl::StrCat("port ", cfg.port, " still refuses connections ",
                       ShortDuration(bound), " after start (startup bound: ",
                       "readinessProbe.initialDelaySeconds ",
                       ShortDuration(cfg.initial_delay), " + ",
                       ShortDuration(opts_.startup_timeout), "): ", r.message));
      changes->push_back(
          Change(p, "Warning", "StartupTimeout", p.info.message()));
      log_->warn("app={}/{} instance {}: {}", p.info.namespace_(), p.info.app(),
                 p.info.id(), p.info.message());
    }
  }

  void ScheduleLiveness(const std::shared_ptr<Proc>& p, uint64_t gen,
                        const ProbeConfig& cfg, absl::Duration delay) {
    p->live_timer.expires_after(ToChrono(delay));
    p->live_timer.async_wait([this, p, gen, cfg](boost::system::error_code ec) {
      if (ec) return;
      std::make_shared<ProbeOp>(io_, cfg, opts_.host,
                                [this, p, gen, cfg](const ProbeResult& r) {
                                  OnLiveness(p, gen, cfg, r);
                                })
          ->Run();
    });
  }

  void OnLiveness(const std::shared_ptr<Proc>& p, uint64_t gen,
                  const ProbeConfig& cfg, const ProbeResult& r) {
    std::vector<InstanceChange> changes;
    bool kill_now = false;
    {
      absl::MutexLock l(&mu_);
      if (p->gen != gen || p->gone || p->stopping || p->liveness_killed) return;
      if (r.ok) {
        p->live_failures = 0;
      } else if (!p->ever_ready) {
        // Liveness counts once the instance has been ready: a slow start is
        // not a failure (a never-ready instance is the deployer's
        // progressDeadline to judge, as with a Kubernetes startupProbe).
      } else {
        ++p->live_failures;
        changes.push_back(Change(*p, "Warning", "Unhealthy",
                                 "Liveness probe failed: " + r.message));
        if (p->live_failures >= cfg.failure_threshold) {
          p->liveness_killed = true;
          p->info.set_ready(false);
          int64_t grace_s =
              p->rec.template_().has_termination_grace_period_seconds()
                  ? p->rec.template_().termination_grace_period_seconds()
                  : 30;
          p->grace = absl::Seconds(grace_s);
          changes.push_back(
              Change(*p, "Normal", "Killing",
                     "instance failed liveness probe, will be restarted"));
          log_->warn(
              "app={}/{} instance {} failed liveness probe; killing pid {}",
              p->info.namespace_(), p->info.app(), p->info.id(), p->pid);
          kill_now = true;
        }
      }
    }
    Deliver(changes);
    if (kill_now) {
      p->probe_timer.cancel();
      ArmStop(p);
      return;
    }
    ScheduleLiveness(p, gen, cfg, cfg.period);
  }

  // SIGTERM to the process group now, SIGKILL after the grace period.
  void ArmStop(const std::shared_ptr<Proc>& p) {
    pid_t pid;
    absl::Duration grace;
    uint64_t gen;
    {
      absl::MutexLock l(&mu_);
      if (p->gone) return;
      pid = p->pid;
      grace = p->grace;
      gen = p->gen;
      if (pid <= 0) {
        // Not running (back-off or never started): gone at once.
        RemoveLocked(*p);
      }
    }
    p->restart_timer.cancel();
    if (pid <= 0) {
      std::vector<InstanceChange> changes;
      {
        absl::MutexLock l(&mu_);
        changes.push_back(Change(*p));
      }
      Deliver(changes);
      return;
    }
    p->probe_timer.cancel();
    p->live_timer.cancel();
    kill(-pid, SIGTERM);
    kill(pid, SIGTERM);
    p->kill_timer.expires_after(ToChrono(grace));
    p->kill_timer.async_wait([this, p, gen](boost::system::error_code ec) {
      if (ec) return;
      std::vector<InstanceChange> changes;
      {
        absl::MutexLock l(&mu_);
        if (p->gen != gen || p->gone || p->pid <= 0) return;
        p->sigkilled = true;
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        KillRestLocked(*p);
        changes.push_back(Change(*p, "Warning", "Killing",
                                 absl::StrCat("instance did not exit within ",
                                              ShortDuration(p->grace),
                                              " of SIGTERM; sent SIGKILL")));
      }
      Deliver(changes);
    });
  }

  void RemoveLocked(Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    p.gone = true;
    p.info.set_ready(false);
    p.info.set_pid(0);
    unlink(RecordPath(p.info.id()).c_str());
    CleanUpLocked(p);
    ports_.erase(p.info.port());
    procs_.erase(p.info.id());
    pending_pidfd_.erase(&p);
  }

  // The process exited (pidfd readable or polling saw it gone).
  void OnExit(const std::shared_ptr<Proc>& p, uint64_t gen) {
    std::vector<InstanceChange> changes;
    absl::Duration delay;
    bool restart = false;
    bool drain = false;
    {
      absl::MutexLock l(&mu_);
      if (p->gen != gen || p->gone || p->pid <= 0) return;
      pid_t pid = p->pid;
      // Take the rest of the instance down with it (its process group, and
      // its cgroup or the descendants that left the group), then reap.
      kill(-pid, SIGKILL);
      const int rest = KillRestLocked(*p);
      int status = 0;
      pid_t w;
      do {
        w = waitpid(pid, &status, p->own_child ? 0 : WNOHANG);
      } while (w < 0 && errno == EINTR);
      std::string why;
      if (w == pid && WIFEXITED(status)) {
        why = absl::StrCat("exit code ", WEXITSTATUS(status));
      } else if (w == pid && WIFSIGNALED(status)) {
        why = absl::StrCat("killed by signal ", WTERMSIG(status));
      } else {
        why = "exited; status unknown";
      }
      if (!p->spawn_error.empty()) why = p->spawn_error;
      if (p->liveness_killed) why = "liveness probe failed";
      p->pid = 0;
      p->info.set_pid(0);
      p->info.set_ready(false);
      if (p->stopping) {
        log_->info("app={}/{} instance {} stopped ({}{})", p->info.namespace_(),
                   p->info.app(), p->info.id(), why,
                   p->sigkilled ? ", after SIGKILL" : "");
        p->info.set_reason(p->sigkilled ? "Killed" : "Completed");
        p->info.set_message(why);
        if (rest == 0) {
          RemoveLocked(*p);
          changes.push_back(Change(*p));
        } else {
          drain = true;  // removed once the rest is gone
        }
      } else {
        absl::Time now = clock_->Now();
        if (now - p->run_start >= opts_.backoff_reset) p->crash_count = 0;
        ++p->crash_count;
        delay = opts_.backoff_base;
        for (int i = 1; i < p->crash_count && delay < opts_.backoff_max; ++i)
          delay *= 2;
        delay = std::min(delay, opts_.backoff_max);
        std::string msg =
            absl::StrCat("back-off ", ShortDuration(delay),
                         " restarting failed instance (", why, ")");
        p->info.set_phase("CrashLoopBackOff");
        p->info.set_reason("CrashLoopBackOff");
        p->info.set_message(msg);
        log_->warn("app={}/{} instance {}: {}", p->info.namespace_(),
                   p->info.app(), p->info.id(), msg);
        changes.push_back(Change(*p, "Warning", "BackOff", msg));
        restart = true;
      }
    }
    p->probe_timer.cancel();
    p->live_timer.cancel();
    p->kill_timer.cancel();
    p->poll_timer.cancel();
    p->pidfd.reset();
    Deliver(changes);
    if (drain) DrainRest(p, std::chrono::steady_clock::now() + kDrainTimeout);
    if (restart) {
      p->restart_timer.expires_after(ToChrono(delay));
      p->restart_timer.async_wait([this, p, gen](boost::system::error_code ec) {
        if (!ec) Restart(p, gen);
      });
    }
  }

  // A stopped instance's leader is gone but SIGKILLed descendants may not be
  // yet: checks every few ms (killing again) until none is left, then
  // reports the instance removed. Past the deadline it is removed anyway.
  void DrainRest(const std::shared_ptr<Proc>& p,
                 std::chrono::steady_clock::time_point deadline) {
    p->drain_timer.expires_after(std::chrono::milliseconds(5));
    p->drain_timer.async_wait(
        [this, p, deadline](boost::system::error_code ec) {
          if (ec) return;
          std::vector<InstanceChange> changes;
          {
            absl::MutexLock l(&mu_);
            if (p->gone) return;
            int rest = KillRestLocked(*p);
            if (rest > 0 && std::chrono::steady_clock::now() < deadline) {
              DrainRest(p, deadline);
              return;
            }
            if (rest > 0) {
              log_->warn(
                  "app={}/{} instance {}: {} process(es) still alive after "
                  "SIGKILL; giving up on them",
                  p->info.namespace_(), p->info.app(), p->info.id(), rest);
            }
            RemoveLocked(*p);
            changes.push_back(Change(*p));
          }
          Deliver(changes);
        });
  }

  void Restart(const std::shared_ptr<Proc>& p, uint64_t gen) {
    std::vector<InstanceChange> changes;
    uint64_t new_gen = 0;
    bool retry = false;
    {
      absl::MutexLock l(&mu_);
      if (p->gen != gen || p->gone || p->stopping) return;
      // Keep the port unless something else took it meanwhile.
      if (!PortFree(p->info.port())) {
        absl::StatusOr<int> port = AllocatePortLocked();
        if (port.ok()) {
          ports_.erase(p->info.port());
          ports_.insert(*port);
          p->info.set_port(*port);
        }
      }
      p->own_child = true;
      p->info.set_restarts(p->info.restarts() + 1);
      // An instance adopted from an older tidald gets its FIFO and cgroup now.
      absl::Status s = PrepareLocked(*p);
      if (s.ok()) s = SpawnLocked(*p);
      if (!s.ok()) {
        log_->error("app={}/{} instance {}: restart failed: {}",
                    p->info.namespace_(), p->info.app(), p->info.id(),
                    s.ToString());
        p->info.set_message(s.ToString());
        changes.push_back(Change(*p, "Warning", "FailedStart", s.ToString()));
        retry = true;
      } else {
        new_gen = p->gen;
        changes.push_back(
            Change(*p, "Normal", "Started",
                   absl::StrCat("restarted instance ", p->info.id(), " (pid ",
                                p->pid, ", port ", p->info.port(), ", restart ",
                                p->info.restarts(), ")")));
      }
    }
    Deliver(changes);
    if (retry) {
      p->restart_timer.expires_after(ToChrono(opts_.backoff_max));
      p->restart_timer.async_wait([this, p, gen](boost::system::error_code ec) {
        if (!ec) Restart(p, gen);
      });
      return;
    }
    Supervise(p, new_gen);
  }

  // Housekeeping every log_check_interval: caps the log files of instances
  // adopted from a tidald without log FIFOs (copy to <log>.1 and truncate in
  // place: they write with O_APPEND, so they continue at the start of the
  // emptied file), and in subreaper mode reaps orphaned zombies.
  void ScheduleLogCheck() {
    log_timer_.expires_after(ToChrono(opts_.log_check_interval));
    log_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      std::vector<std::string> paths;
      {
        absl::MutexLock l(&mu_);
        for (const auto& [id, p] : procs_) {
          if (p->rec.log_fifo().empty()) paths.push_back(p->info.log_path());
        }
        // Subreaper: orphans of instances that exited on their own.
        if (!cgroups_) ReapZombieChildren(ScanProcesses(), LeadersLocked());
      }
      for (const auto& path : paths) RotateIfNeeded(path);
      ScheduleLogCheck();
    });
  }

  void RotateIfNeeded(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || st.st_size <= opts_.log_max_bytes)
      return;
    int in = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (in < 0) return;
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
        log_->warn("runtime: truncate {}: {}", path, strerror(errno));
    }
    close(in);
  }

  // Constant after construction.
  const ProcessRuntimeOptions opts_;
  Clock* const clock_;
  std::shared_ptr<spdlog::logger> log_;
  std::string instances_dir_;
  std::string logs_dir_;
  std::optional<InstanceCgroups> cgroups_;  // unset: subreaper
  const std::string boot_id_ = BootId();

  // Supervisor thread (io_ is thread-safe; the timers below are its own).
  net::io_context io_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  net::steady_timer log_timer_;
  std::thread thread_;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Proc>> procs_ ABSL_GUARDED_BY(mu_);
  std::set<int> ports_ ABSL_GUARDED_BY(mu_);
  // pidfds opened by a spawn, handed to Supervise on the supervisor thread.
  std::map<const Proc*, int> pending_pidfd_ ABSL_GUARDED_BY(mu_);
  int port_cursor_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  Listener listener_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  // Copies every instance's output into its log; reset by Shutdown.
  std::unique_ptr<LogPump> pump_ ABSL_GUARDED_BY(mu_);
};

ProcessRuntime::ProcessRuntime(ProcessRuntimeOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

ProcessRuntime::~ProcessRuntime() = default;

absl::StatusOr<tidal::v1::Instance> ProcessRuntime::Start(
    const InstanceRequest& req) {
  return impl_->Start(req);
}

absl::Status ProcessRuntime::Stop(const std::string& instance_id,
                                  absl::Duration grace) {
  return impl_->Stop(instance_id, grace);
}

std::vector<tidal::v1::Instance> ProcessRuntime::List(
    const std::string& namespace_, const std::string& app) {
  return impl_->List(namespace_, app);
}

std::vector<InstanceUsage> ProcessRuntime::Usage(const std::string& namespace_,
                                                 const std::string& app) {
  return impl_->Usage(namespace_, app);
}

void ProcessRuntime::SetListener(Listener listener) {
  impl_->SetListener(std::move(listener));
}

absl::Status ProcessRuntime::Adopt() { return impl_->Adopt(); }

absl::StatusOr<std::string> ProcessRuntime::LogPath(
    const std::string& instance_id) {
  return impl_->LogPath(instance_id);
}

void ProcessRuntime::Shutdown(bool stop_instances) {
  impl_->Shutdown(stop_instances);
}

std::string ProcessRuntime::Containment() const { return impl_->Containment(); }

std::string ProcessRuntime::CgroupOf(const std::string& instance_id) {
  return impl_->CgroupOf(instance_id);
}

bool ProcessRuntime::WaitForNoInstances(absl::Duration timeout) {
  return impl_->WaitForNoInstances(timeout);
}

}  // namespace tidal
