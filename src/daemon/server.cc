#include "daemon/server.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/logging.h"
#include "store/etcd_store.h"
#include "store/sqlite_store.h"

namespace tidal {
namespace {

// An error of the same code with `context` before its text ("starting the
// gateway failed: UNAVAILABLE: ...").
absl::Status Annotate(const absl::Status& st, absl::string_view context) {
  return absl::Status(st.code(), absl::StrCat(context, st.ToString()));
}

// Takes an exclusive lock on the data directory for the life of the
// Server, so two tidalds can never supervise the same instances. Returns the
// locked descriptor.
absl::StatusOr<int> LockDataDir(const std::string& dir) {
  std::string path = dir + "/tidald.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot open ", path));
  // A child forked by a tidald killed a moment ago shares its lock until it
  // execs (the descriptor is close-on-exec), so wait a little before saying
  // another tidald runs.
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (absl::Now() >= deadline) {
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("another tidald is running with data directory ", dir));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::string pid = absl::StrCat(getpid(), "\n");
  (void)!ftruncate(fd, 0);
  (void)!write(fd, pid.data(), pid.size());
  return fd;
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const DaemonConfig& config) {
  const std::string& spec = config.store_spec;
  if (config.store_name == "sqlite") {
    SqliteStore::Options sqlite_opts;
    sqlite_opts.lock_wait = absl::Seconds(10);
    auto store = SqliteStore::Open(spec.substr(strlen("sqlite:")), sqlite_opts);
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(std::move(*store));
  }
  auto store = EtcdStore::Open(spec.substr(strlen("etcd:")));
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(*store));
}

gateway::GatewayOptions WithOnDemand(gateway::GatewayOptions options,
                                     DemandSignal* demand, WorkQueue* queue) {
  // Scale from zero: the scaler decides at once (when the controller side
  // runs), then the app is reconciled.
  options.on_demand = [demand, queue](const std::string& ns,
                                      const std::string& app) {
    demand->Notify(ns, app);
    queue->Add(absl::StrCat(ns, "/", app));
  };
  return options;
}

deployer::WebhookSenderOptions WebhookOptions(const DaemonConfig& config) {
  deployer::WebhookSenderOptions wopts;
  wopts.allow_private = config.validation.allow_private_webhooks;
  return wopts;
}

MultiScaler::Inputs ScalerInputs(Store* store, Runtime* runtime,
                                 gateway::Gateway* gw, DemandSignal* demand,
                                 WorkQueue* queue) {
  MultiScaler::Inputs in;
  in.store = store;
  in.runtime = runtime;
  in.metrics = gw;
  in.queued = [gw](const std::string& ns, const std::string& app) {
    return gw->Queued(ns, app);
  };
  in.clock = RealClock::Get();
  in.on_change = [queue](const std::string& key) { queue->Add(key); };
  in.demand = demand;
  return in;
}

AppReconciler::Options ReconcilerOptions(const DaemonConfig& config,
                                         gateway::Gateway* gw,
                                         ReplicaPlanner* planner,
                                         RouteSink* routes,
                                         deployer::Deployer* deployer) {
  AppReconciler::Options o;
  o.max_instances = config.max_instances_per_app;
  // The gateway's port is known once it has started (--gateway-listen may
  // say 0); reconciles run only after that.
  o.url = [gw, domain = config.domain](const std::string& ns,
                                       const std::string& name) {
    const int port = gw->port();
    return absl::StrCat("http://", name, ".", ns, ".", domain,
                        port == 80 ? "" : absl::StrCat(":", port));
  };
  o.planner = planner;
  o.routes = routes;
  o.deployer = deployer;
  return o;
}

Controller::Options ControllerOptions(const DaemonConfig& config) {
  Controller::Options o;
  o.workers = config.workers;
  o.resync = config.resync;
  return o;
}

}  // namespace

Server::DataDirLock::~DataDirLock() { close(fd); }

absl::StatusOr<std::unique_ptr<Server>> Server::Create(DaemonConfig config) {
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot create data directory ", config.data_dir, ": ", ec.message()));
  }
  auto fd = LockDataDir(config.data_dir);
  if (!fd.ok()) return fd.status();
  auto lock = std::make_unique<DataDirLock>(*fd);
  auto store = OpenStore(config);
  if (!store.ok()) {
    return Annotate(
        store.status(),
        absl::StrCat("opening the store ", config.store_spec, " failed: "));
  }
  return std::unique_ptr<Server>(
      new Server(std::move(config), std::move(lock), std::move(*store)));
}

Server::Server(DaemonConfig config, std::unique_ptr<DataDirLock> lock,
               std::unique_ptr<Store> store)
    : config_(std::move(config)),
      lock_(std::move(lock)),
      store_(std::move(store)),
      runtime_(config_.runtime),
      gateway_(WithOnDemand(config_.gateway, &demand_, &queue_)),
      routes_(&gateway_, RealClock::Get()),
      events_(store_.get(), RealClock::Get()),
      webhooks_(WebhookOptions(config_)),
      outbox_(store_.get(), &webhooks_),
      deployer_(store_.get(), RealClock::Get(), &gateway_, &webhooks_,
                &outbox_),
      scaler_(
          ScalerInputs(store_.get(), &runtime_, &gateway_, &demand_, &queue_)),
      reconciler_(store_.get(), &runtime_, &events_, RealClock::Get(),
                  ReconcilerOptions(config_, &gateway_, &scaler_, &routes_,
                                    &deployer_)),
      controller_(store_.get(), &runtime_, &reconciler_, &events_, &queue_,
                  ControllerOptions(config_)),
      rollouts_(store_.get(), RealClock::Get(),
                [this](const std::string& key) { queue_.Add(key); }),
      api_address_(config_.api_listen),
      admin_([this] { return MetricsText(); }, [this] { return Ready(); }) {}

Server::~Server() {
  // Members stop themselves in reverse order. First the API's health check
  // (so it never restarts an API being torn down) and the API server (it
  // calls into its service, destroyed before it otherwise).
  if (api_health_) api_health_->Stop();
  absl::MutexLock lock(&api_mu_);
  api_server_.reset();
}

absl::Status Server::Start() {
  auto log = GetLogger("tidald");
  if (auto st = runtime_.Adopt(); !st.ok()) {
    return Annotate(st, "adopting running instances failed: ");
  }
  log->info("file descriptor limit {}; gateway connection budget {}",
            config_.fd_limit, config_.gateway.max_connections);
  if (auto st = gateway_.Start(); !st.ok()) {
    return Annotate(st, "starting the gateway failed: ");
  }
  events_.StartFlusher();
  if (auto st = StartApi(); !st.ok()) {
    return Annotate(st, absl::StrCat("starting the API on ", config_.api_listen,
                                     " failed: "));
  }
  ApiHealth::Options health_opts;
  {
    absl::MutexLock lock(&api_mu_);
    health_opts.target = ApiHealth::DialTarget(api_address_);
  }
  api_health_ =
      std::make_unique<ApiHealth>(health_opts, [this] { return StartApi(); });
  api_health_->Start();
  if (auto st = StartControllerSide(); !st.ok()) return st;
  if (auto st = admin_.Start(config_.admin_listen); !st.ok()) return st;
  started_ = true;
  log->info("tidald {} ready: api {}, gateway {}:{} (*.{}), admin {}, data {}",
            TIDAL_VERSION, config_.api_listen, config_.gateway.listen_address,
            gateway_.port(), config_.domain, config_.admin_listen,
            config_.data_dir);
  return absl::OkStatus();
}

void Server::Stop() {
  if (!started_) return;
  started_ = false;
  api_health_->Stop();
  {
    absl::MutexLock lock(&api_mu_);
    if (api_server_) api_server_->Shutdown(absl::Seconds(2));
  }
  StopControllerSide();
  admin_.Stop();
  runtime_.Shutdown(config_.stop_instances_on_exit);
  gateway_.Stop();
  GetLogger("tidald")->info(
      "stopped{}", config_.stop_instances_on_exit
                       ? " (instances stopped)"
                       : "; instances keep running for the next start");
}

absl::Status Server::StartControllerSide() {
  if (controller_side_running_) return absl::OkStatus();
  // Notifications committed earlier (by an earlier tidald, or before the
  // side stopped) but not delivered go out first.
  if (auto st = outbox_.Resume(); !st.ok()) {
    return Annotate(st, "reading the notification outbox: ");
  }
  outbox_.Start();
  scaler_.Start();
  if (auto st = controller_.Start(); !st.ok()) {
    scaler_.Stop();
    outbox_.Stop();
    return Annotate(st, "starting the controller failed: ");
  }
  controller_side_running_ = true;
  return absl::OkStatus();
}

void Server::StopControllerSide() {
  if (!controller_side_running_) return;
  controller_side_running_ = false;
  scaler_.Stop();  // saves the scalers' learned state
  controller_.Stop();
  outbox_.Stop();  // what is not delivered stays in the store
}

bool Server::controller_side_running() const {
  return controller_side_running_;
}

int Server::api_port() const {
  absl::MutexLock lock(&api_mu_);
  return api_server_ ? api_server_->port() : 0;
}

int Server::gateway_port() const { return gateway_.port(); }

int Server::admin_port() const { return admin_.port(); }

absl::Status Server::StartApi() {
  absl::MutexLock lock(&api_mu_);
  if (api_server_) api_server_->Shutdown(absl::Seconds(1));
  api_server_.reset();  // the service outlives its server
  ServiceOptions sopts;
  sopts.store_name = config_.store_name;
  sopts.validation = config_.validation;
  sopts.max_instances_per_namespace = config_.max_instances_per_namespace;
  sopts.metrics = &gateway_;
  sopts.rollouts = &rollouts_;
  api_service_ = std::make_unique<TidalService>(store_.get(), &runtime_,
                                                RealClock::Get(), sopts);
  auto server = StartServer(api_address_, api_service_.get());
  if (!server.ok()) return server.status();
  api_server_ = std::move(*server);
  // A restart binds the port the first start got (--listen may say 0).
  api_address_ = absl::StrCat(api_address_.substr(0, api_address_.rfind(':')),
                              ":", api_server_->port());
  return absl::OkStatus();
}

std::string Server::MetricsText() {
  std::string text = ProcessMetricsText();
  absl::StrAppend(&text, "# TYPE tidal_apps gauge\ntidal_apps ",
                  controller_.informer()->Size(), "\n",
                  "# TYPE tidal_workqueue_depth gauge\ntidal_workqueue_depth ",
                  queue_.Len(), "\n",
                  "# TYPE tidal_instances gauge\ntidal_instances ",
                  runtime_.List().size(), "\n");
  absl::StrAppend(&text,
                  "# HELP tidal_instance_log_dropped_bytes_total Output "
                  "of an instance dropped by the log cap (rate limit, "
                  "free-space reserve)\n"
                  "# TYPE tidal_instance_log_dropped_bytes_total "
                  "counter\n");
  for (const auto& inst : runtime_.List()) {
    absl::StrAppend(
        &text, "tidal_instance_log_dropped_bytes_total{namespace=\"",
        inst.namespace_(), "\",app=\"", inst.app(), "\",instance=\"", inst.id(),
        "\"} ", inst.log_dropped_bytes(), "\n");
  }
  absl::StrAppend(&text, gateway_.PrometheusText());
  return text;
}

// Ready: everything has started (the admin server starts last), the store's
// data can be read (and, after a full disk, written), and the API answers a
// new connection.
absl::Status Server::Ready() {
  if (auto st = store_->Health(); !st.ok()) return st;
  if (api_health_ == nullptr || !api_health_->Healthy()) {
    return absl::UnavailableError("the API does not answer a new connection");
  }
  return absl::OkStatus();
}

}  // namespace tidal
