// tidald: the Tidal daemon. One process runs the API, the store, the
// controller, the runtime supervisor, the gateway and the admin endpoint.

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "api/addresses.h"
#include "api/limits.h"
#include "api/service.h"
#include "common/logging.h"
#include "common/units.h"
#include "controller/app_reconciler.h"
#include "controller/controller.h"
#include "controller/events.h"
#include "controller/scaler_planner.h"
#include "daemon/admin_server.h"
#include "daemon/api_health.h"
#include "daemon/gateway_routes.h"
#include "daemon/store_commands.h"
#include "deployer/control.h"
#include "deployer/deployer.h"
#include "deployer/webhooks.h"
#include "gateway/gateway.h"
#include "runtime/process_runtime.h"
#include "store/etcd_store.h"
#include "store/sqlite_store.h"

namespace tidal {
namespace {

struct Flags {
  std::string data_dir;
  std::string listen = "127.0.0.1:7070";
  std::string gateway_listen = "127.0.0.1:8080";
  std::string admin_listen = "127.0.0.1:9090";
  std::string domain = "tidal.localhost";
  std::string store;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string port_range = "20000-29999";
  std::vector<std::string> instance_path;
  bool stop_instances_on_exit = false;
  int workers = 16;
  std::string resync = "5m";
  int gateway_threads = 0;
  int gateway_queue_size = 1000;
  std::string gateway_queue_timeout = "30s";
  std::string gateway_max_body = "4Gi";
  std::string gateway_connect_timeout = "2s";
  std::string gateway_response_timeout = "60s";
  std::string gateway_idle_timeout = "60s";
  int64_t gateway_max_connections = 0;  // 0: derived from the fd limit
  std::string startup_timeout = "2m";
  bool store_check = false;
  std::string store_backup;
  std::string store_restore;
  int max_instances_per_app = spec::limits::kDefaultMaxInstancesPerApp;
  int64_t max_instances_per_namespace = 0;
  std::string allow_private_webhooks = "auto";
  // Runtime: containment and logs (docs/runtime.md).
  std::string instance_cgroup = "auto";
  int max_instances = 1000;
  std::string log_dir;
  std::string log_max_size = "10Mi";
  int log_max_files = 1;
  std::string log_rate_limit = "4Mi";
  std::string log_min_free = "512Mi";
};

std::string DefaultDataDir() {
  const char* xdg = getenv("XDG_DATA_HOME");
  if (xdg && *xdg) return absl::StrCat(xdg, "/tidal");
  const char* home = getenv("HOME");
  if (geteuid() == 0 && (home == nullptr || std::string(home) == "/root"))
    return "/var/lib/tidal";
  return absl::StrCat(home ? home : ".", "/.local/share/tidal");
}

// Parses a duration flag that must be positive into `out`; says why on the
// log ("FLAG: ...") and returns false when it is not.
bool PositiveDurationFlag(const std::string& flag, const std::string& text,
                          absl::Duration* out) {
  auto ms = ParseDurationMs(text);
  if (!ms.ok() || *ms <= 0) {
    GetLogger("tidald")->error(
        "{}: {}", flag,
        ms.ok() ? "must be > 0" : std::string(ms.status().message()));
    return false;
  }
  *out = absl::Milliseconds(*ms);
  return true;
}

// A byte quantity flag ("10Mi"), at least 0; `zero` says what 0 means.
bool BytesFlag(const std::string& flag, const std::string& text,
               const char* zero, int64_t* out) {
  auto n = ParseBytes(text);
  if (!n.ok() || *n < 0) {
    GetLogger("tidald")->error(
        "{}: {}", flag,
        n.ok() ? absl::StrCat("must be >= 0 (0 = ", zero, ")")
               : std::string(n.status().message()));
    return false;
  }
  *out = *n;
  return true;
}

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    const std::string& addr, const std::string& flag) {
  auto colon = addr.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(addr.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": \"", addr, "\" is not host:port (e.g. 127.0.0.1:8080)"));
  }
  return std::make_pair(addr.substr(0, colon), port);
}

// Holds an exclusive lock on the data directory for the life of the process,
// so two tidalds can never supervise the same instances.
absl::Status LockDataDir(const std::string& dir) {
  std::string path = dir + "/tidald.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot open ", path));
  // A child forked by a tidald killed a moment ago shares its lock until it
  // execs (the descriptor is close-on-exec), so wait a little before saying
  // another tidald runs.
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (absl::Now() >= deadline) {
      return absl::FailedPreconditionError(
          absl::StrCat("another tidald is running with data directory ", dir));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::string pid = absl::StrCat(getpid(), "\n");
  (void)!ftruncate(fd, 0);
  (void)!write(fd, pid.data(), pid.size());
  return absl::OkStatus();  // fd stays open on purpose
}

// Raises the soft RLIMIT_NOFILE to the hard limit (every connection, pipe,
// log and store file is a descriptor) and returns the soft limit in force.
int64_t RaiseFdLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return int64_t{1} << 20;
  return static_cast<int64_t>(rl.rlim_cur);
}

// The gateway's default connection budget: the descriptor limit less a
// reserve for the API, the store, instances' pipes and logs, probes and
// webhooks (a quarter of the limit, at least 128).
int64_t DefaultGatewayMaxConnections(int64_t fd_limit) {
  int64_t reserve = std::max<int64_t>(128, fd_limit / 4);
  return std::max<int64_t>(16, fd_limit - reserve);
}

int Run(const Flags& flags) {
  InitLogging(flags.log_level, flags.log_format);
  auto log = GetLogger("tidald");
  const int64_t fd_limit = RaiseFdLimit();

  // Signals are taken by sigwait in this thread only.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string data_dir =
      flags.data_dir.empty() ? DefaultDataDir() : flags.data_dir;
  const std::string store_flags = flags.store.empty()
                                      ? absl::StrCat("--data-dir ", data_dir)
                                      : absl::StrCat("--store ", flags.store);
  if (flags.store_check || !flags.store_backup.empty() ||
      !flags.store_restore.empty()) {
    std::string spec =
        flags.store.empty() ? "sqlite:" + data_dir + "/tidal.db" : flags.store;
    if (!absl::StartsWith(spec, "sqlite:")) {
      std::cerr
          << "error: --store-check, --store-backup and --store-restore "
             "work on SQLite stores; for etcd use etcdctl (docs/store.md)\n";
      return kStoreUsage;
    }
    const std::string path = spec.substr(strlen("sqlite:"));
    if (flags.store_check) return StoreCheckCommand(path, std::cout);
    if (!flags.store_backup.empty())
      return StoreBackupCommand(path, flags.store_backup, std::cout);
    return StoreRestoreCommand(path, data_dir, flags.store_restore, std::cout);
  }
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    log->error("cannot create data directory {}: {}", data_dir, ec.message());
    return 1;
  }
  if (auto st = LockDataDir(data_dir); !st.ok()) {
    log->error("{}", std::string(st.message()));
    return 1;
  }

  // Store.
  std::string store_spec =
      flags.store.empty() ? "sqlite:" + data_dir + "/tidal.db" : flags.store;
  absl::StatusOr<std::unique_ptr<Store>> store;
  std::string store_name;
  if (absl::StartsWith(store_spec, "sqlite:")) {
    store_name = "sqlite";
    SqliteStore::Options sqlite_opts;
    sqlite_opts.lock_wait = absl::Seconds(10);
    store =
        SqliteStore::Open(store_spec.substr(strlen("sqlite:")), sqlite_opts);
  } else if (absl::StartsWith(store_spec, "etcd:")) {
    store_name = "etcd";
    store = EtcdStore::Open(store_spec.substr(strlen("etcd:")));
  } else {
    log->error(
        "--store: \"{}\" is neither sqlite:PATH nor etcd:HOST:PORT[,HOST:PORT]",
        store_spec);
    return 2;
  }
  if (!store.ok()) {
    log->error("opening the store {} failed: {}", store_spec,
               store.status().ToString());
    if (absl::IsDataLoss(store.status()))
      log->error("{}", StoreRecoveryHint(store_flags));
    return 1;
  }

  // Runtime.
  std::vector<std::string> range = absl::StrSplit(flags.port_range, '-');
  ProcessRuntimeOptions ropts;
  ropts.data_dir = data_dir;
  if (range.size() != 2 || !absl::SimpleAtoi(range[0], &ropts.port_min) ||
      !absl::SimpleAtoi(range[1], &ropts.port_max) ||
      ropts.port_min > ropts.port_max) {
    log->error("--port-range: \"{}\" is not MIN-MAX (e.g. 20000-29999)",
               flags.port_range);
    return 2;
  }
  if (!PositiveDurationFlag("--startup-timeout", flags.startup_timeout,
                            &ropts.startup_timeout))
    return 2;
  // Limits on specs, checked at apply and scale.
  spec::ValidationOptions vopts = spec::DefaultServerOptions();
  if (flags.max_instances_per_app < 1) {
    log->error("--max-instances-per-app: must be at least 1, got {}",
               flags.max_instances_per_app);
    return 2;
  }
  if (flags.max_instances_per_namespace < 0) {
    log->error(
        "--max-instances-per-namespace: must be >= 0 (0: no limit), "
        "got {}",
        flags.max_instances_per_namespace);
    return 2;
  }
  vopts.max_instances_per_app = flags.max_instances_per_app;
  vopts.ports = ropts.port_max - ropts.port_min + 1;
  vopts.port_range = flags.port_range;
  if (vopts.max_instances_per_app > vopts.ports) {
    log->warn(
        "--max-instances-per-app {} exceeds the {} ports of --port-range {}: "
        "an app may ask for at most {} instances",
        vopts.max_instances_per_app, vopts.ports, flags.port_range,
        vopts.ports);
  }
  {
    // auto: allowed only when the API itself is bound to loopback (a
    // single-user machine), refused when it is reachable from elsewhere.
    auto api_addr = SplitHostPort(flags.listen, "listen");
    std::string host = api_addr.ok() ? api_addr->first : "";
    bool loopback =
        host == "localhost" || ClassifyLiteral(host) == AddressClass::kLoopback;
    vopts.allow_private_webhooks =
        flags.allow_private_webhooks == "true" ||
        (flags.allow_private_webhooks == "auto" && loopback);
  }
  ropts.cgroup_root =
      flags.instance_cgroup == "auto" ? "" : flags.instance_cgroup;
  if (flags.max_instances < 0) {
    log->error("--max-instances: must be >= 0 (0 = no limit)");
    return 2;
  }
  ropts.max_instances = flags.max_instances;
  ropts.log_dir = flags.log_dir;
  if (!BytesFlag("--log-max-size", flags.log_max_size, "no cap",
                 &ropts.log_max_bytes) ||
      !BytesFlag("--log-rate-limit", flags.log_rate_limit, "no limit",
                 &ropts.log_rate_bytes)) {
    return 2;
  }
  if (flags.log_max_files < 1) {
    log->error("--log-max-files: must be >= 1");
    return 2;
  }
  ropts.log_rotated_files = flags.log_max_files;
  if (absl::EndsWith(flags.log_min_free, "%")) {
    double pct = 0;
    if (!absl::SimpleAtod(absl::StripSuffix(flags.log_min_free, "%"), &pct) ||
        pct < 0 || pct >= 100) {
      log->error("--log-min-free: \"{}\" is not a percentage in [0, 100)",
                 flags.log_min_free);
      return 2;
    }
    ropts.log_min_free_ratio = pct / 100;
  } else if (!BytesFlag("--log-min-free", flags.log_min_free, "no reserve",
                        &ropts.log_min_free_bytes)) {
    return 2;
  }
  // Instances find Tidal's own binaries (and the sample app) on their PATH.
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    auto dir = std::filesystem::path(self).parent_path();
    ropts.extra_path.push_back(dir.string());
    // In a build tree tidald is build/src/daemon/tidald and the sample app
    // build/examples/tidal-sample-app: examples/hello.yaml runs as written.
    std::error_code ec;
    auto examples = dir.parent_path().parent_path() / "examples";
    if (std::filesystem::exists(examples / "tidal-sample-app", ec)) {
      ropts.extra_path.push_back(examples.lexically_normal().string());
    }
  }
  for (const auto& p : flags.instance_path) {
    for (absl::string_view part : absl::StrSplit(p, ':', absl::SkipEmpty())) {
      ropts.extra_path.push_back(
          std::filesystem::absolute(std::string(part)).string());
    }
  }
  ProcessRuntime runtime(ropts);
  if (auto st = runtime.Adopt(); !st.ok()) {
    log->error("adopting running instances failed: {}", st.ToString());
    return 1;
  }

  // Gateway.
  auto gw_addr = SplitHostPort(flags.gateway_listen, "gateway-listen");
  if (!gw_addr.ok()) {
    log->error("{}", std::string(gw_addr.status().message()));
    return 2;
  }
  gateway::GatewayOptions gopts;
  gopts.listen_address = gw_addr->first;
  gopts.port = gw_addr->second;
  gopts.domain = flags.domain;
  gopts.threads = flags.gateway_threads;
  gopts.queue_size = flags.gateway_queue_size;
  auto queue_timeout = ParseDurationMs(flags.gateway_queue_timeout);
  if (!queue_timeout.ok() || gopts.queue_size < 0) {
    log->error("--gateway-queue-size/--gateway-queue-timeout: {}",
               queue_timeout.ok()
                   ? "must be >= 0"
                   : std::string(queue_timeout.status().message()));
    return 2;
  }
  gopts.queue_timeout = absl::Milliseconds(*queue_timeout);
  if (flags.gateway_max_connections < 0) {
    log->error(
        "--gateway-max-connections: must be >= 0 (0 = derived from "
        "the file descriptor limit)");
    return 2;
  }
  gopts.max_connections = flags.gateway_max_connections > 0
                              ? flags.gateway_max_connections
                              : DefaultGatewayMaxConnections(fd_limit);
  log->info("file descriptor limit {}; gateway connection budget {}", fd_limit,
            gopts.max_connections);
  auto max_body = ParseBytes(flags.gateway_max_body);
  if (!max_body.ok() || *max_body < 0) {
    log->error("--gateway-max-body: {}",
               max_body.ok() ? "must be >= 0 (0 = unlimited)"
                             : std::string(max_body.status().message()));
    return 2;
  }
  gopts.max_body_bytes = static_cast<uint64_t>(*max_body);
  if (!PositiveDurationFlag("--gateway-connect-timeout",
                            flags.gateway_connect_timeout,
                            &gopts.connect_timeout) ||
      !PositiveDurationFlag("--gateway-response-timeout",
                            flags.gateway_response_timeout,
                            &gopts.response_header_timeout) ||
      !PositiveDurationFlag("--gateway-idle-timeout",
                            flags.gateway_idle_timeout,
                            &gopts.client_idle_timeout))
    return 2;
  std::atomic<Controller*> controller_ptr{nullptr};
  std::atomic<ScalerPlanner*> planner_ptr{nullptr};
  // Scale from zero: the scaler decides at once, then the app is reconciled.
  gopts.on_demand = [&controller_ptr, &planner_ptr](const std::string& ns,
                                                    const std::string& app) {
    ScalerPlanner* p = planner_ptr.load();
    if (p != nullptr) p->Wake(ns, app);
    Controller* c = controller_ptr.load();
    if (c != nullptr) c->Enqueue(absl::StrCat(ns, "/", app));
  };
  gateway::Gateway gw(gopts);
  if (auto st = gw.Start(); !st.ok()) {
    log->error("starting the gateway failed: {}", st.ToString());
    return 1;
  }
  GatewayRoutes routes(&gw);

  // Controller.
  EventRecorder events(store->get(), RealClock::Get());
  events.StartFlusher();
  AppReconciler::Options recopts;
  recopts.max_instances = std::min(vopts.max_instances_per_app, vopts.ports);
  int gw_port = gw.port();
  std::string domain = flags.domain;
  recopts.url = [gw_port, domain](const std::string& ns,
                                  const std::string& name) {
    return absl::StrCat("http://", name, ".", ns, ".", domain,
                        gw_port == 80 ? "" : absl::StrCat(":", gw_port));
  };
  AppReconciler reconciler(store->get(), &runtime, &events, RealClock::Get(),
                           recopts);
  reconciler.set_route_sink(&routes);
  // Deployer: revisions, rollouts gated on the gateway's metrics, webhooks.
  deployer::WebhookSenderOptions wopts;
  wopts.allow_private = vopts.allow_private_webhooks;
  deployer::CurlWebhookSender webhooks(wopts);
  deployer::Deployer deployer(store->get(), RealClock::Get(), &gw, &webhooks);
  // Notifications committed by an earlier tidald but not delivered go out
  // first.
  deployer::NotificationOutbox outbox(store->get(), &webhooks);
  if (auto st = outbox.Resume(); !st.ok()) {
    log->error("reading the notification outbox: {}", st.ToString());
    return 1;
  }
  outbox.Start();
  deployer.set_outbox(&outbox);
  reconciler.set_deployer(&deployer);
  ScalerPlanner planner(
      store->get(), &runtime, &gw,
      [&gw](const std::string& ns, const std::string& app) {
        return gw.Queued(ns, app);
      },
      RealClock::Get());
  reconciler.set_planner(&planner);
  Controller::Options copts;
  copts.workers = flags.workers;
  auto resync = ParseDurationMs(flags.resync);
  if (!resync.ok()) {
    log->error("--resync: {}", std::string(resync.status().message()));
    return 2;
  }
  copts.resync = absl::Milliseconds(*resync);
  Controller controller(store->get(), &runtime, &reconciler, &events, copts);
  controller_ptr.store(&controller);
  planner.set_on_change(
      [&controller](const std::string& key) { controller.Enqueue(key); });
  planner_ptr.store(&planner);
  planner.Start();

  // API. The server is replaced by a fresh one (a new service object, same
  // address) when it stops accepting connections: see ApiHealth.
  ServiceOptions sopts;
  sopts.store_name = store_name;
  sopts.validation = vopts;
  sopts.max_instances_per_namespace = flags.max_instances_per_namespace;
  deployer::DeployerControl rollouts(store->get(), RealClock::Get(),
                                     [&controller_ptr](const std::string& key) {
                                       Controller* c = controller_ptr.load();
                                       if (c != nullptr) c->Enqueue(key);
                                     });
  absl::Mutex api_mu;
  std::unique_ptr<ApiServer> api_server;      // guarded by api_mu
  std::unique_ptr<TidalService> api_service;  // guarded by api_mu
  std::string api_address = flags.listen;
  auto start_api = [&]() -> absl::Status {
    absl::MutexLock lock(&api_mu);
    if (api_server) api_server->Shutdown(absl::Seconds(1));
    api_server.reset();  // the service outlives its server
    api_service = std::make_unique<TidalService>(store->get(), &runtime,
                                                 RealClock::Get(), sopts);
    api_service->set_metrics(&gw);
    api_service->set_rollout_control(&rollouts);
    auto server = StartServer(api_address, api_service.get());
    if (!server.ok()) return server.status();
    api_server = std::move(*server);
    // A restart binds the port the first start got (--listen may say 0).
    api_address = absl::StrCat(api_address.substr(0, api_address.rfind(':')),
                               ":", api_server->port());
    return absl::OkStatus();
  };
  if (auto st = start_api(); !st.ok()) {
    log->error("starting the API on {} failed: {}", flags.listen,
               st.ToString());
    return 1;
  }
  ApiHealth::Options health_opts;
  health_opts.target = ApiHealth::DialTarget(api_address);
  ApiHealth api_health(health_opts, start_api);
  api_health.Start();
  if (auto st = controller.Start(); !st.ok()) {
    log->error("starting the controller failed: {}", st.ToString());
    return 1;
  }

  // Admin.
  AdminServer admin(
      [&] {
        std::string text = ProcessMetricsText();
        absl::StrAppend(
            &text, "# TYPE tidal_apps gauge\ntidal_apps ",
            controller.informer()->Size(), "\n",
            "# TYPE tidal_workqueue_depth gauge\ntidal_workqueue_depth ",
            controller.queue()->Len(), "\n",
            "# TYPE tidal_instances gauge\ntidal_instances ",
            runtime.List().size(), "\n");
        absl::StrAppend(&text,
                        "# HELP tidal_instance_log_dropped_bytes_total Output "
                        "of an instance dropped by the log cap (rate limit, "
                        "free-space reserve)\n"
                        "# TYPE tidal_instance_log_dropped_bytes_total "
                        "counter\n");
        for (const auto& inst : runtime.List()) {
          absl::StrAppend(
              &text, "tidal_instance_log_dropped_bytes_total{namespace=\"",
              inst.namespace_(), "\",app=\"", inst.app(), "\",instance=\"",
              inst.id(), "\"} ", inst.log_dropped_bytes(), "\n");
        }
        absl::StrAppend(&text, gw.PrometheusText());
        return text;
      },
      // Ready: everything above has started (the admin server starts last),
      // the store's data can be read (and, after a full disk, written), and
      // the API answers a new connection.
      [&]() -> absl::Status {
        if (auto st = store->get()->Health(); !st.ok()) return st;
        if (!api_health.Healthy()) {
          return absl::UnavailableError(
              "the API does not answer a new connection");
        }
        return absl::OkStatus();
      });
  if (auto st = admin.Start(flags.admin_listen); !st.ok()) {
    log->error("{}", std::string(st.message()));
    return 1;
  }

  log->info("tidald {} ready: api {}, gateway {}:{} (*.{}), admin {}, data {}",
            TIDAL_VERSION, flags.listen, gopts.listen_address, gw.port(),
            flags.domain, flags.admin_listen, data_dir);

  int sig = 0;
  sigwait(&sigs, &sig);
  log->info("received {}, shutting down",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
  api_health.Stop();
  {
    absl::MutexLock lock(&api_mu);
    if (api_server) api_server->Shutdown(absl::Seconds(2));
  }
  controller_ptr.store(nullptr);
  planner_ptr.store(nullptr);
  planner.Stop();  // saves the scalers' learned state
  controller.Stop();
  admin.Stop();
  runtime.Shutdown(flags.stop_instances_on_exit);
  gw.Stop();
  log->info("stopped{}", flags.stop_instances_on_exit
                             ? " (instances stopped)"
                             : "; instances keep running for the next start");
  return 0;
}

}  // namespace
}  // namespace tidal

int main(int argc, char** argv) {
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles
  // (a debug aid that costs more than the locking itself); the clang
  // -Wthread-safety build checks lock discipline at compile time instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  tidal::Flags flags;
  CLI::App app{
      "tidald: the Tidal daemon (API, controller, scaler, deployer, runtime, "
      "gateway)"};
  app.add_option("--data-dir", flags.data_dir,
                 "State directory: store, instance records, logs (default "
                 "~/.local/share/tidal)");
  app.add_option("--listen", flags.listen, "gRPC API address")
      ->capture_default_str();
  app.add_option("--gateway-listen", flags.gateway_listen,
                 "HTTP gateway address")
      ->capture_default_str();
  app.add_option("--admin-listen", flags.admin_listen,
                 "Admin address (/metrics, /healthz, /readyz)")
      ->capture_default_str();
  app.add_option("--domain", flags.domain,
                 "Apps are served at <app>.<namespace>.<domain>")
      ->capture_default_str();
  app.add_option("--store", flags.store,
                 "sqlite:PATH (default: DATA_DIR/tidal.db) or "
                 "etcd:HOST:PORT[,HOST:PORT...]");
  app.add_option("--log-level", flags.log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--log-format", flags.log_format, "text|json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--port-range", flags.port_range, "Ports for local instances")
      ->capture_default_str();
  app.add_option(
      "--instance-path", flags.instance_path,
      "Directories put first on instances' PATH (repeatable, or a:b)");
  app.add_flag("--stop-instances-on-exit", flags.stop_instances_on_exit,
               "Stop every instance on SIGTERM (default: leave them for the "
               "next start)");
  app.add_option("--startup-timeout", flags.startup_timeout,
                 "An instance whose port still refuses connections this long "
                 "after its readinessProbe.initialDelaySeconds is marked "
                 "StartupTimeout (a rollout of it fails fast)")
      ->capture_default_str();
  app.add_option("--instance-cgroup", flags.instance_cgroup,
                 "auto: each instance in its own cgroup v2 under "
                 "<tidald's cgroup>/tidal when cgroup v2 is writable, else a "
                 "child subreaper; off: always the subreaper; or a cgroup v2 "
                 "directory to use as the root")
      ->capture_default_str();
  app.add_option("--max-instances", flags.max_instances,
                 "Instances this tidald runs at most (more fail to start, "
                 "with an event saying so; 0 = no limit)")
      ->capture_default_str();
  app.add_option("--log-dir", flags.log_dir,
                 "Instance logs (default DATA_DIR/logs; may be on another "
                 "filesystem than the store)");
  app.add_option("--log-max-size", flags.log_max_size,
                 "Largest instance log file; then it is rotated (0 = no cap)")
      ->capture_default_str();
  app.add_option("--log-max-files", flags.log_max_files,
                 "Rotated log files kept per instance (<log>.1 ... .N)")
      ->capture_default_str();
  app.add_option("--log-rate-limit", flags.log_rate_limit,
                 "Instance output kept per second (burst: 4 seconds' worth); "
                 "the rest is dropped and counted (0 = no limit)")
      ->capture_default_str();
  app.add_option("--log-min-free", flags.log_min_free,
                 "Drop instance output while the log filesystem has less free "
                 "space than this (bytes such as 512Mi, or a percentage such "
                 "as 5%)")
      ->capture_default_str();
  app.add_option("--workers", flags.workers, "Reconcile workers")
      ->capture_default_str();
  app.add_option("--resync", flags.resync, "Periodic full reconcile")
      ->capture_default_str();
  app.add_option("--gateway-threads", flags.gateway_threads, "0 = one per core")
      ->capture_default_str();
  app.add_option("--gateway-queue-size", flags.gateway_queue_size,
                 "Requests held per app while it has no ready instance (or "
                 "every instance is at its concurrency limit); more get 503")
      ->capture_default_str();
  app.add_option("--gateway-max-body", flags.gateway_max_body,
                 "Largest request body (413 beyond; 0 = unlimited)")
      ->capture_default_str();
  app.add_option("--gateway-connect-timeout", flags.gateway_connect_timeout,
                 "Connecting to an instance (then another instance for "
                 "idempotent requests, else 502)")
      ->capture_default_str();
  app.add_option("--gateway-response-timeout", flags.gateway_response_timeout,
                 "Waiting for an instance's response headers (then 504)")
      ->capture_default_str();
  app.add_option("--gateway-idle-timeout", flags.gateway_idle_timeout,
                 "A client connection idle (keep-alive, or a gap in a body)")
      ->capture_default_str();
  app.add_option("--gateway-max-connections", flags.gateway_max_connections,
                 "Sockets the gateway may hold: two per client connection, "
                 "one per idle pooled upstream connection; beyond it new "
                 "connections get 503 (0 = the file descriptor limit less a "
                 "reserve of a quarter, at least 128)")
      ->capture_default_str();
  app.add_option("--gateway-queue-timeout", flags.gateway_queue_timeout,
                 "How long a held request waits before 504")
      ->capture_default_str();
  app.add_flag("--store-check", flags.store_check,
               "Check the SQLite store (integrity, schema, identity, every "
               "value), print a report and exit 0 (healthy) or 1 (damaged); "
               "safe while tidald runs");
  app.add_option("--store-backup", flags.store_backup,
                 "Write a verified copy of the SQLite store to FILE and exit; "
                 "safe while tidald runs");
  app.add_option("--store-restore", flags.store_restore,
                 "Replace the SQLite store with the backup FILE once it "
                 "verifies (the old one is kept aside) and exit; tidald must "
                 "be stopped");
  app.add_option("--max-instances-per-app", flags.max_instances_per_app,
                 "Most instances one app may ask for (replicas, minReplicas, "
                 "maxReplicas, schedules, scale); more is refused at apply")
      ->capture_default_str();
  app.add_option("--max-instances-per-namespace",
                 flags.max_instances_per_namespace,
                 "Most instances the apps of a namespace may run together by "
                 "their specs (0 = no limit); more is refused at apply")
      ->capture_default_str();
  app.add_flag("--allow-private-webhooks{true}", flags.allow_private_webhooks,
               "Let webhooks reach private, loopback and link-local addresses "
               "(auto: only when --listen is a loopback address)")
      ->check(CLI::IsMember({"auto", "true", "false"}))
      ->capture_default_str();
  app.set_version_flag("--version", TIDAL_VERSION);
  CLI11_PARSE(app, argc, argv);
  return tidal::Run(flags);
}
