#pragma once

// ProcessRuntime: the default Runtime. Each instance is a local child process
// in its own session, process group and cgroup (or, without cgroup v2, below
// tidald as a child subreaper), as an unprivileged user, within its memory
// and CPU limits, with its own port from a range, stdout/stderr
// copied into capped log files through a FIFO, readiness and liveness probes,
// restarts with exponential backoff (CrashLoopBackOff), graceful stops and
// adoption of instances left running by a previous tidald (see
// docs/runtime.md).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/clock.h"
#include "runtime/runtime.h"

namespace tidal {

struct ProcessRuntimeOptions {
  // Holds instances/<id>.pb (adoption records) and logs/<ns>_<app>_<id>.log.
  std::string data_dir;
  // Ports handed out as $PORT, inclusive; each is checked free by binding.
  int port_min = 20000;
  int port_max = 29999;
  // Logs (LogPump, log_pipe.h): instances write to a FIFO that tidald
  // copies into <log_dir>/<ns>_<app>_<id>.log; a file never passes
  // log_max_bytes (it is rotated to .1 ... .log_rotated_files), so an
  // instance uses at most log_max_bytes * (1 + log_rotated_files) on disk.
  // Output over log_rate_bytes per second (burst log_burst_bytes), or while
  // the log filesystem has less free space than log_min_free_bytes /
  // log_min_free_ratio of its size, is dropped and counted
  // (Instance.log_dropped_bytes). log_dir empty: <data_dir>/logs.
  std::string log_dir;
  int64_t log_max_bytes = 10 << 20;
  int log_rotated_files = 1;
  int64_t log_rate_bytes = 0;
  int64_t log_burst_bytes = 0;
  int64_t log_min_free_bytes = 0;
  double log_min_free_ratio = 0;
  // Instances adopted from a tidald older than log FIFOs write straight to
  // their log file; that file is copied to <log>.1 and truncated when it is
  // over log_max_bytes, checked at this interval.
  absl::Duration log_check_interval = absl::Seconds(1);
  // The log of an instance that has stopped is kept this long after its
  // last write (for `tidalctl logs --previous`), then removed with its
  // rotated files; checked about once a minute.
  absl::Duration stopped_log_retention = absl::Hours(1);
  // Containment of each instance's processes (cgroup.h): "" finds cgroup v2
  // and uses <its mount>/<tidald's cgroup>/tidal/<instance id>; "off" never
  // uses cgroups; anything else is the root directory to use. Without a
  // usable cgroup v2 tidald becomes a child subreaper and finds descendants
  // by scanning /proc.
  std::string cgroup_root;
  // Enforcement of resources.memory and resources.cpu (limits.h): "auto"
  // (cgroup v2 controllers, else cgroup v1 hierarchies, else RLIMIT_AS for
  // memory), "rlimit" (no cgroup controllers) or "off" (not enforced).
  std::string limits = "auto";
  // The user instances run as (a name or a uid): "" = tidald's own user;
  // "per-namespace": a uid of [instance_uid_first, instance_uid_last] for
  // each namespace (namespace_users.h), remembered in
  // <data_dir>/instance-uids. Another user than tidald's needs tidald to
  // run as root; Start() fails with FailedPrecondition while it cannot be
  // used (no such user, not root). tidald passes --instance-user (default
  // per-namespace when root).
  std::string instance_user;
  uint32_t instance_uid_first = 1879048192;  // 0x70000000
  uint32_t instance_uid_last = 1879048192 + 65535;
  // Start() fails with RESOURCE_EXHAUSTED beyond this many instances; 0 = no
  // limit.
  int max_instances = 0;
  // Directories put in front of PATH for instances (tidald passes its own
  // binary directory, so the sample app is found by name).
  std::vector<std::string> extra_path;
  // Timestamps (start_time, ready_time) and "ran fine for a while"; timers
  // run on the steady clock. Defaults to RealClock.
  Clock* clock = nullptr;
  // Restart back-off after a crash: base * 2^(n-1), capped (kubelet: 10s, 5m);
  // reset once an instance ran longer than backoff_reset before crashing.
  absl::Duration backoff_base = absl::Seconds(10);
  absl::Duration backoff_max = absl::Minutes(5);
  absl::Duration backoff_reset = absl::Minutes(10);
  // Until an instance is first ready, readiness is probed every
  // fast_probe_interval while the port refuses connections (every
  // fast_probe_connected_interval once it accepts but the probe fails), for
  // at most fast_probe_window; then every periodSeconds.
  absl::Duration fast_probe_interval = absl::Milliseconds(1);
  absl::Duration fast_probe_connected_interval = absl::Milliseconds(10);
  absl::Duration fast_probe_window = absl::Seconds(60);
  // Before an instance is first ready: when its port still refuses
  // connections this long after readiness probing began (plus the probe's
  // initialDelaySeconds), it is marked reason StartupTimeout; when it
  // listens but its HTTP readiness probe answers "not ready" (a status
  // outside 2xx/3xx) failureThreshold times in a row, counted once per
  // periodSeconds, reason ReadinessProbeFailed (runtime.h). The process keeps
  // running and being probed: either mark goes away if it becomes ready. The
  // deployer fails a release on these marks without waiting for its
  // progress deadline (docs/rollouts.md).
  absl::Duration startup_timeout = absl::Minutes(2);
  // Exit detection uses pidfds (instant); without them, polling at this rate.
  absl::Duration exit_poll_interval = absl::Milliseconds(10);
  // fsync adoption records before renaming them into place. Off by default:
  // a record only has to outlive a crash of tidald (the page cache survives
  // it), while a machine crash ends every instance anyway and records carry
  // the boot id, so a lost or stale record is harmless; the fsync would add
  // 5-30 ms to every cold start.
  bool sync_records = false;
  // Address probes connect to and instances report as host.
  std::string host = "127.0.0.1";
  // Resolves template.env[].valueFrom.secretKeyRef (docs/secrets.md). Start
  // resolves an instance's references (a missing secret or key fails it with
  // FailedPrecondition "CreateContainerConfigError: ..."); the values live
  // in memory only (never in the instance record) and serve the restarts of
  // the instance; an adopted instance resolves them again when it restarts.
  SecretResolver secret_resolver;
};

// Runs instances as local processes, supervised by one thread (an event loop
// with timers; no thread per instance). Thread-safe: every public method may
// be called from any thread. The listener is called on the supervisor thread,
// in order, without internal locks held; it must not block for long.
class ProcessRuntime : public Runtime {
 public:
  explicit ProcessRuntime(ProcessRuntimeOptions options);
  // Shutdown(false) if not done yet: instances keep running.
  ~ProcessRuntime() override;

  ProcessRuntime(const ProcessRuntime&) = delete;
  ProcessRuntime& operator=(const ProcessRuntime&) = delete;

  absl::StatusOr<tidal::v1::Instance> Start(
      const InstanceRequest& req) override;
  absl::Status Stop(const std::string& instance_id,
                    absl::Duration grace) override;
  std::vector<tidal::v1::Instance> List(const std::string& namespace_ = "",
                                        const std::string& app = "") override;
  // Reads /proc/<pid>/stat of every process on the machine once per call
  // and sums utime+stime+cutime+cstime and rss over each instance's process
  // group.
  std::vector<InstanceUsage> Usage(const std::string& namespace_ = "",
                                   const std::string& app = "") override;
  void SetListener(Listener listener) override;
  absl::Status Adopt() override;
  // Reads the instance's log file (a FileLogStream), following it across
  // rotations; also the log of an instance that has stopped. With follow,
  // the stream goes on until cancelled.
  absl::StatusOr<std::unique_ptr<LogStream>> OpenLogs(
      const std::string& instance_id, const LogOptions& options) override;
  // The log files in the log directory that belong to no instance it runs
  // (kept for stopped_log_retention).
  std::vector<StoppedInstance> StoppedInstances(
      const std::string& namespace_ = "", const std::string& app = "") override;
  void Shutdown(bool stop_instances) override;

  // How instances' processes are kept together: "cgroup" or "subreaper".
  std::string Containment() const;
  // The cgroup directory of an instance ("" without cgroups or instance).
  std::string CgroupOf(const std::string& instance_id);
  // How resources.memory is enforced: "cgroup2", "cgroup1", "rlimit" or
  // "none"; resources.cpu: "cgroup2", "cgroup1" or "none" (limits.h).
  std::string MemoryLimits() const;
  std::string CpuLimits() const;
  // The cgroup v1 directories holding an instance's limits (limits.h).
  std::vector<std::string> LimitCgroupsOf(const std::string& instance_id);
  // The user instances run as ("" when it could not be looked up).
  std::string InstanceUserName() const;

  // Waits until no instance is left (after Stop calls); false on timeout.
  bool WaitForNoInstances(absl::Duration timeout);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal
