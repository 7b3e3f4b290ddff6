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
#include <cctype>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/units.h"
#include "runtime/cgroup.h"
#include "runtime/file_log_stream.h"
#include "runtime/instance_record.pb.h"
#include "runtime/instance_records.h"
#include "runtime/limits.h"
#include "runtime/log_pipe.h"
#include "runtime/namespace_users.h"
#include "runtime/prober.h"
#include "runtime/proc_stat.h"
#include "runtime/spawner.h"

namespace tidal {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using tidal::runtime::InstanceRecord;

// An id given in InstanceRequest::id: it names files, a FIFO and a cgroup.
bool ValidInstanceId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  if (!std::isalnum(static_cast<unsigned char>(id[0]))) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' &&
        c != '.') {
      return false;
    }
  }
  return true;
}

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(d));
}

// How long a stop waits for SIGKILLed descendants to be gone.
constexpr auto kDrainTimeout = std::chrono::seconds(5);

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
  // The values of the template's secret references (ResolveSecretEnv), in
  // memory only; unset for an adopted instance until it restarts.
  std::optional<std::map<std::string, std::string>> secret_env;
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
        records_(opts_.data_dir + "/instances", opts_.sync_records),
        work_(net::make_work_guard(io_)),
        log_timer_(io_),
        rng_(std::random_device{}()) {
    logs_dir_ =
        opts_.log_dir.empty() ? opts_.data_dir + "/logs" : opts_.log_dir;
    for (const auto& dir : {records_.dir(), logs_dir_}) {
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
    limits_ =
        InstanceLimits::Open(opts_.limits, cgroups_ ? cgroups_->root() : "");
    log_->info("runtime: instance limits: {}", limits_.Describe());
    if (opts_.instance_user == kPerNamespace) {
      auto users = NamespaceUsers::Open(opts_.data_dir + "/instance-uids",
                                        opts_.instance_uid_first,
                                        opts_.instance_uid_last);
      if (users.ok()) {
        ns_users_ = std::move(*users);
        InstanceUser placeholder;  // the mode's name; uids come per namespace
        placeholder.name = kPerNamespace;
        user_ = placeholder;
        log_->info(
            "runtime: instances run as a user per namespace (uids {}-{}; {} "
            "namespace(s) have one, in {}/instance-uids)",
            opts_.instance_uid_first, opts_.instance_uid_last,
            ns_users_->Assigned().size(), opts_.data_dir);
      } else {
        user_ = absl::FailedPreconditionError(
            absl::StrCat("instance user: ", users.status().message()));
      }
    } else {
      user_ = OpenUser(opts_.instance_user);
      if (user_.ok()) {
        log_->info("runtime: instances run as user {} (uid {}, gid {})",
                   user_->name, user_->uid, user_->gid);
      }
    }
    if (!user_.ok()) {
      log_->error("runtime: instances cannot start: {}",
                  user_.status().ToString());
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

  // The user instances run as: `name` ("" = this process's own user).
  static absl::StatusOr<InstanceUser> OpenUser(const std::string& name) {
    absl::StatusOr<InstanceUser> u =
        LookupUser(name.empty() ? std::to_string(geteuid()) : name);
    if (!u.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("instance user: ", u.status().message()));
    }
    if (u->uid != geteuid() && geteuid() != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "instance user ", u->name, " (uid ", u->uid, "): tidald runs as uid ",
          geteuid(), " and only root can run processes as another user"));
    }
    return u;
  }

  // ---- public API ----

  absl::StatusOr<tidal::v1::Instance> Start(const InstanceRequest& req) {
    if (req.tmpl.command().empty()) {
      return absl::InvalidArgumentError("template.command is empty");
    }
    if (!req.id.empty() && !ValidInstanceId(req.id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad instance id \"", req.id,
          "\": letters, digits, '-', '_' and '.', starting with a letter or "
          "digit, at most 128 characters"));
    }
    // Before the lock: the resolver reads the store.
    absl::StatusOr<std::map<std::string, std::string>> secret_env =
        ResolveSecretEnv(req.tmpl, req.namespace_, opts_.secret_resolver);
    if (!secret_env.ok()) return secret_env.status();
    std::vector<InstanceChange> changes;
    std::shared_ptr<Proc> p;
    {
      absl::MutexLock l(&mu_);
      if (shut_down_)
        return absl::FailedPreconditionError("runtime is shut down");
      if (!user_.ok()) return user_.status();
      if (opts_.max_instances > 0 &&
          static_cast<int>(procs_.size()) >= opts_.max_instances) {
        return absl::ResourceExhaustedError(
            absl::StrCat("instance limit reached: ", procs_.size(),
                         " instances run on this tidald (--max-instances ",
                         opts_.max_instances, ")"));
      }
      if (!req.id.empty()) {
        absl::Status free = ReclaimIdLocked(req.id);
        if (!free.ok()) return free;
      }
      int port = 0;
      {
        absl::StatusOr<int> got = AllocatePortLocked();
        if (!got.ok()) return got.status();
        port = *got;
      }
      p = std::make_shared<Proc>(io_);
      std::string id = req.id.empty() ? NewIdLocked(req.app) : req.id;
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
      p->secret_env = std::move(*secret_env);
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
  const InstanceLimits& Limits() const { return limits_; }
  std::string UserName() const { return user_.ok() ? user_->name : ""; }

  std::vector<std::string> LimitCgroupsOf(const std::string& id) {
    absl::MutexLock l(&mu_);
    auto it = procs_.find(id);
    if (it == procs_.end()) return {};
    const auto& cg = it->second->rec.limit_cgroups();
    return std::vector<std::string>(cg.begin(), cg.end());
  }

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
    std::map<pid_t, uint64_t> leaders;
    for (const Want& w : wants) leaders[w.pid] = w.start_ticks;
    const std::map<pid_t, GroupUsage> groups = ReadGroupUsage(leaders);
    for (const Want& w : wants) {
      const GroupUsage& sum = groups.at(w.pid);
      // The group's leader is gone or is another process now: no figures.
      if (!sum.leader_ok) continue;
      InstanceUsage u;
      u.instance_id = w.id;
      u.cpu_seconds = static_cast<double>(sum.cpu_ticks) / TicksPerSecond();
      u.memory_bytes = sum.rss_pages * PageSize();
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
      absl::StatusOr<InstanceRecords::Loaded> loaded = records_.LoadAll();
      if (!loaded.ok()) return loaded.status();
      int kept = 0;
      int dropped = static_cast<int>(loaded->unreadable.size());
      for (const auto& file : loaded->unreadable) {
        log_->warn("runtime: dropped unreadable instance record {}", file);
      }
      for (const auto& [file, rec] : loaded->records) {
        if (procs_.count(rec.id()) > 0) continue;
        pid_t pid = static_cast<pid_t>(rec.pid());
        if (!RecordedProcessRuns(rec, boot_id_)) {
          log_->info(
              "app={}/{} instance {} (pid {}) is gone; dropping its record",
              rec.namespace_(), rec.app(), rec.id(), pid);
          // Our own zombie (same process, an earlier runtime object): reap it.
          ProcStat st;
          if (pid > 0 && ReadProcStat(pid, &st) && st.state == 'Z' &&
              st.start_ticks == rec.start_ticks()) {
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
        stale += limits_.RemoveStale(absl::Minutes(1));
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
    RemoveLimitCgroups(rec);
  }

  // rmdir of the instance's cgroup v1 limit directories (its processes are
  // gone); one that is still busy goes with a later RemoveStale.
  void RemoveLimitCgroups(const InstanceRecord& rec) {
    std::vector<std::string> dirs(rec.limit_cgroups().begin(),
                                  rec.limit_cgroups().end());
    absl::Status s = InstanceLimits::RemoveV1(dirs);
    if (!s.ok()) log_->warn("runtime: {}", s.ToString());
  }

  absl::StatusOr<std::unique_ptr<LogStream>> OpenLogs(
      const std::string& id, const LogOptions& options) {
    absl::StatusOr<std::string> path = LogPathOf(id);
    if (!path.ok()) return path.status();
    return std::unique_ptr<LogStream>(
        std::make_unique<FileLogStream>(*path, options));
  }

  // The log file of an instance, running or stopped.
  absl::StatusOr<std::string> LogPathOf(const std::string& id) {
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

  // The log files of instances this runtime does not run: (instance id,
  // path, last write). With `prefix` ("<ns>_<app>_"), of one app only.
  struct StoppedLog {
    std::string id;
    std::string path;
    absl::Time modified;
  };
  std::vector<StoppedLog> StoppedLogs(const std::string& prefix) {
    std::set<std::string> running;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, p] : procs_) running.insert(p->info.log_path());
    }
    std::vector<StoppedLog> out;
    DIR* dir = opendir(logs_dir_.c_str());
    if (dir == nullptr) return out;
    while (dirent* e = readdir(dir)) {
      absl::string_view name = e->d_name;
      if (!absl::StartsWith(name, prefix) || !absl::EndsWith(name, ".log"))
        continue;
      std::string path = absl::StrCat(logs_dir_, "/", name);
      if (running.count(path) > 0) continue;
      struct stat st;
      if (stat(path.c_str(), &st) != 0) continue;
      name.remove_prefix(prefix.size());
      name.remove_suffix(4);
      out.push_back(
          {std::string(name), std::move(path), absl::FromTimeT(st.st_mtime)});
    }
    closedir(dir);
    std::sort(out.begin(), out.end(),
              [](const StoppedLog& a, const StoppedLog& b) {
                return std::tie(a.modified, a.id) < std::tie(b.modified, b.id);
              });
    return out;
  }

  // Log files are named <ns>_<app>_<id>.log: namespaces and app names hold
  // no '_' (an id given by the leader in HA mode may, and it comes last).
  std::vector<StoppedInstance> StoppedInstances(const std::string& ns,
                                                const std::string& app) {
    std::vector<StoppedInstance> out;
    const bool all = ns.empty() && app.empty();
    for (auto& l : StoppedLogs(all ? "" : absl::StrCat(ns, "_", app, "_"))) {
      StoppedInstance s;
      if (all) {
        std::vector<std::string> parts =
            absl::StrSplit(l.id, absl::MaxSplits('_', 2));
        if (parts.size() != 3) continue;
        s.namespace_ = std::move(parts[0]);
        s.app = std::move(parts[1]);
        s.id = std::move(parts[2]);
      } else {
        s.namespace_ = ns;
        s.app = app;
        s.id = std::move(l.id);
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  // Removes the logs (and their rotated files) of stopped instances that
  // nothing wrote to for stopped_log_retention.
  void PruneStoppedLogs() {
    const absl::Time now = absl::Now();
    if (now - last_prune_ < absl::Minutes(1)) return;
    last_prune_ = now;
    for (const auto& l : StoppedLogs("")) {
      if (now - l.modified < opts_.stopped_log_retention) continue;
      unlink(l.path.c_str());
      for (int i = 1; i <= std::max(1, opts_.log_rotated_files); ++i)
        unlink(absl::StrCat(l.path, ".", i).c_str());
      log_->info("runtime: removed the log of stopped instance {} ({} old)",
                 l.id, ShortDuration(now - l.modified));
    }
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

  // In use here, or by another tidald sharing the cgroup root.
  bool IdTakenLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    struct stat st;
    return procs_.count(id) > 0 || records_.Exists(id) ||
           (cgroups_ && stat(cgroups_->PathOf(id).c_str(), &st) == 0);
  }

  // For a start under a given id (one the leader assigned): AlreadyExists
  // when an instance here has it. A cgroup of that name with no instance
  // and no record is what a tidald killed while starting the instance left
  // (its child exits without exec when its parent dies): it is removed, and
  // the id is free. Unavailable while processes are still in it (they are
  // killed; a later start succeeds).
  absl::Status ReclaimIdLocked(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (procs_.count(id) > 0 || records_.Exists(id)) {
      return absl::AlreadyExistsError(
          absl::StrCat("instance ", id, " already exists"));
    }
    struct stat st;
    if (!cgroups_ || stat(cgroups_->PathOf(id).c_str(), &st) != 0) {
      return absl::OkStatus();
    }
    const std::string path = cgroups_->PathOf(id);
    if (InstanceCgroups::Populated(path)) {
      absl::Status k = InstanceCgroups::Kill(path);
      if (!k.ok()) log_->warn("runtime: {}", k.ToString());
    }
    absl::Status s = InstanceCgroups::Remove(path);
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "instance ", id, ": the cgroup an earlier start left (", path,
          ") still holds processes; they were killed, try again: ",
          s.message()));
    }
    log_->info(
        "runtime: instance {}: removed the cgroup an interrupted start "
        "left ({})",
        id, path);
    return absl::OkStatus();
  }

  std::string NewIdLocked(const std::string& app)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (;;) {
      std::string id = app + "-";
      for (int i = 0; i < 5; ++i) id += kAlnum[rng_() % 36];
      if (!IdTakenLocked(id)) return id;
    }
  }

  absl::Status WriteRecordLocked(Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    p.rec.set_pid(p.pid);
    p.rec.set_start_ticks(p.start_ticks);
    p.rec.set_boot_id(boot_id_);
    p.rec.set_restarts(p.info.restarts());
    p.rec.set_port(p.info.port());
    *p.rec.mutable_start_time() = p.info.start_time();
    return records_.Write(p.rec);
  }

  // Creates what an instance keeps across restarts: its log FIFO and its
  // cgroup (both named in its record, so the next tidald finds them).
  absl::Status PrepareLocked(Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string fifo = records_.FifoPathOf(p.info.id());
    absl::Status s = LogPump::MakeFifo(fifo);
    if (!s.ok()) return s;
    p.rec.set_log_fifo(fifo);
    if (cgroups_) {
      auto cg = cgroups_->Create(p.info.id());
      if (!cg.ok()) return cg.status();
      p.rec.set_cgroup(*cg);
    }
    // Its limits (limits.h): in its cgroup v2, or cgroup v1 directories of
    // its own.
    const auto& res = p.rec.template_().resources();
    ResourceLimits want;
    want.memory_bytes = res.memory_bytes();
    want.cpu_millis = res.cpu_millis();
    auto applied = limits_.Apply(p.info.id(), p.rec.cgroup(), want);
    if (!applied.ok()) return applied.status();
    p.rec.clear_limit_cgroups();
    for (const auto& dir : applied->v1_cgroups) p.rec.add_limit_cgroups(dir);
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
    RemoveLimitCgroups(p.rec);
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

  int64_t OomKillsOf(
      const std::string& cgroup,
      const google::protobuf::RepeatedPtrField<std::string>& v1) const {
    return limits_.OomKills(cgroup,
                            std::vector<std::string>(v1.begin(), v1.end()));
  }

  // Pids of instance processes someone waits for (never reaped elsewhere).
  std::vector<pid_t> LeadersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<pid_t> out;
    for (const auto& [id, p] : procs_) {
      if (p->pid > 0) out.push_back(p->pid);
    }
    return out;
  }

  // Starts the instance's process (spawner.h) with its output going to its
  // log FIFO (or, adopted from a tidald without FIFOs, its log file). The
  // process runs only once its record with the pid is on disk. On an exec
  // failure the process exits 127 and spawn_error says why.
  absl::Status SpawnLocked(Proc& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto& tmpl = p.rec.template_();
    if (!p.secret_env.has_value()) {
      // Adopted, now restarting: the references are resolved again (rare;
      // a read of the store under the lock).
      absl::StatusOr<std::map<std::string, std::string>> env =
          ResolveSecretEnv(tmpl, p.info.namespace_(), opts_.secret_resolver);
      if (!env.ok()) return env.status();
      p.secret_env = std::move(*env);
    }
    SpawnSpec spec;
    // user_ is ok here (Start checks it; a restart keeps the one it had).
    absl::StatusOr<InstanceUser> user = user_;
    if (ns_users_ != nullptr) user = ns_users_->For(p.info.namespace_());
    if (!user.ok()) return user.status();
    const bool other_user = user->uid != geteuid();
    spec.env = BuildInstanceEnv(p.info, tmpl, opts_.extra_path, *p.secret_env,
                                other_user ? &*user : nullptr);
    if (other_user) spec.user = *user;
    spec.extra_cgroups.assign(p.rec.limit_cgroups().begin(),
                              p.rec.limit_cgroups().end());
    if (limits_.memory() == "rlimit")
      spec.rlimit_as = tmpl.resources().memory_bytes();
    spec.argv.assign(tmpl.command().begin(), tmpl.command().end());
    spec.argv.insert(spec.argv.end(), tmpl.args().begin(), tmpl.args().end());
    spec.working_dir = tmpl.working_dir();
    spec.cgroup = p.rec.cgroup();
    p.spawn_error.clear();
    p.liveness_killed = false;
    p.sigkilled = false;
    p.ready_successes = p.ready_failures = p.live_failures = 0;
    p.ever_ready = false;
    p.ever_connected = false;
    p.answered_failures = 0;
    p.gen++;

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
    spec.output_fd = logfd;
    absl::StatusOr<Spawned> spawned =
        Spawn(std::move(spec),
              [&](pid_t pid, uint64_t start_ticks)
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                    p.pid = pid;
                    p.spawned_at = std::chrono::steady_clock::now();
                    p.start_ticks = start_ticks;
                    p.run_start = clock_->Now();
                    p.info.set_pid(pid);
                    p.info.set_phase("Starting");
                    p.info.set_ready(false);
                    p.info.clear_reason();
                    p.info.clear_message();
                    p.info.clear_ready_time();
                    *p.info.mutable_start_time() = ToProtoTime(p.run_start);
                    p.rec.set_oom_kills_at_start(
                        OomKillsOf(p.rec.cgroup(), p.rec.limit_cgroups()));
                    absl::Status rs = WriteRecordLocked(p);
                    if (!rs.ok()) p.pid = 0;
                    return rs;
                  });
    if (!spawned.ok()) return spawned.status();
    p.spawn_error = spawned->error;
    if (!p.spawn_error.empty()) {
      log_->warn("app={}/{} instance {}: {}", p.info.namespace_(), p.info.app(),
                 p.info.id(), p.spawn_error);
    }
    if (spawned->pidfd >= 0) pending_pidfd_[&p] = spawned->pidfd;
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
    p->probe_timer.async_wait([this, p, gen,
                               cfg](boost::system::error_code ec) {
      if (ec) return;
      RunProbe(io_, cfg, opts_.host, [this, p, gen, cfg](const ProbeResult& r) {
        OnReadiness(p, gen, cfg, r);
      });
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
      RunProbe(io_, cfg, opts_.host, [this, p, gen, cfg](const ProbeResult& r) {
        OnLiveness(p, gen, cfg, r);
      });
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
    records_.Remove(p.info.id());
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
      // Killed by the OOM killer (at its memory limit) since it started?
      // Read before the rest is killed, which the counter does not count.
      const int64_t ooms = OomKillsOf(p->rec.cgroup(), p->rec.limit_cgroups());
      const bool oom_killed = ooms > 0 && ooms > p->rec.oom_kills_at_start();
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
      // How it ended, the Kubernetes way (Instance.last_state).
      tidal::v1::InstanceTermination ended;
      if (w == pid && WIFEXITED(status)) {
        why = absl::StrCat("exit code ", WEXITSTATUS(status));
        ended.set_exit_code(WEXITSTATUS(status));
        ended.set_reason(WEXITSTATUS(status) == 0 ? "Completed" : "Error");
      } else if (w == pid && WIFSIGNALED(status)) {
        why = absl::StrCat("killed by signal ", WTERMSIG(status));
        ended.set_exit_code(128 + WTERMSIG(status));
        ended.set_signal(WTERMSIG(status));
        ended.set_reason("Error");
      } else {
        why = "exited; status unknown";
        ended.set_reason("Unknown");
      }
      ended.set_message(why);
      if (!p->spawn_error.empty()) {
        why = p->spawn_error;
        ended.set_reason("StartError");
        ended.set_message(why);
      }
      if (p->liveness_killed) why = "liveness probe failed";
      const int64_t memory_limit =
          p->rec.template_().resources().memory_bytes();
      if (oom_killed) {
        why = absl::StrCat("OOMKilled: out of memory at its limit of ",
                           FormatBytes(memory_limit), " (resources.memory; ",
                           limits_.memory(), "); ", why);
        ended.set_reason("OOMKilled");
        ended.set_message(why);
      }
      *ended.mutable_started_at() = p->info.start_time();
      *ended.mutable_finished_at() = ToProtoTime(clock_->Now());
      *p->info.mutable_last_state() = ended;
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
        // As Kubernetes shows it: the reason it last stopped when that is
        // OOMKilled, else CrashLoopBackOff.
        p->info.set_reason(oom_killed ? "OOMKilled" : "CrashLoopBackOff");
        p->info.set_message(msg);
        log_->warn("app={}/{} instance {}: {}", p->info.namespace_(),
                   p->info.app(), p->info.id(), msg);
        if (oom_killed) {
          changes.push_back(Change(
              *p, "Warning", "OOMKilled",
              absl::StrCat("instance ", p->info.id(),
                           " was killed: out of memory (resources.memory ",
                           FormatBytes(memory_limit), ")")));
        }
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
      PruneStoppedLogs();
      ScheduleLogCheck();
    });
  }

  void RotateIfNeeded(const std::string& path) {
    absl::Status s = CopyTruncateIfOver(path, opts_.log_max_bytes);
    if (!s.ok()) log_->warn("runtime: {}", s.ToString());
  }

  // Constant after construction.
  const ProcessRuntimeOptions opts_;
  Clock* const clock_;
  std::shared_ptr<spdlog::logger> log_;
  const InstanceRecords records_;
  std::string logs_dir_;
  std::optional<InstanceCgroups> cgroups_;  // unset: subreaper
  InstanceLimits limits_;
  absl::StatusOr<InstanceUser> user_;
  std::unique_ptr<NamespaceUsers> ns_users_;  // --instance-user=per-namespace
  const std::string boot_id_ = BootId();

  // Supervisor thread (io_ is thread-safe; the timers below are its own).
  net::io_context io_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  net::steady_timer log_timer_;
  std::thread thread_;
  // When PruneStoppedLogs last looked (the supervisor thread's own).
  absl::Time last_prune_ = absl::InfinitePast();

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

std::vector<StoppedInstance> ProcessRuntime::StoppedInstances(
    const std::string& namespace_, const std::string& app) {
  return impl_->StoppedInstances(namespace_, app);
}

absl::StatusOr<std::unique_ptr<LogStream>> ProcessRuntime::OpenLogs(
    const std::string& instance_id, const LogOptions& options) {
  return impl_->OpenLogs(instance_id, options);
}

void ProcessRuntime::Shutdown(bool stop_instances) {
  impl_->Shutdown(stop_instances);
}

std::string ProcessRuntime::Containment() const { return impl_->Containment(); }

std::string ProcessRuntime::CgroupOf(const std::string& instance_id) {
  return impl_->CgroupOf(instance_id);
}

std::string ProcessRuntime::MemoryLimits() const {
  return impl_->Limits().memory();
}

std::string ProcessRuntime::CpuLimits() const { return impl_->Limits().cpu(); }

std::vector<std::string> ProcessRuntime::LimitCgroupsOf(
    const std::string& instance_id) {
  return impl_->LimitCgroupsOf(instance_id);
}

std::string ProcessRuntime::InstanceUserName() const {
  return impl_->UserName();
}

bool ProcessRuntime::WaitForNoInstances(absl::Duration timeout) {
  return impl_->WaitForNoInstances(timeout);
}

}  // namespace tidal
