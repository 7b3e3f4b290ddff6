#include "daemon/server.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "api/secret_store.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/port_check.h"
#include "common/secret_box.h"
#include "common/status_macros.h"
#include "common/tls_files.h"
#include "daemon/store_identity.h"
#include "daemon/tls_mirror.h"
#include "grpcpp/channel.h"
#include "runtime/kubernetes/kube_client.h"
#include "runtime/kubernetes/kube_config.h"
#include "runtime/kubernetes/kubernetes_runtime.h"
#include "store/etcd_store.h"
#include "store/gated_store.h"
#include "store/keys.h"
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
  EtcdStore::Options etcd_opts;
  const DaemonConfig::EtcdTls& tls = config.etcd_tls;
  etcd_opts.tls.enabled = tls.enabled;
  etcd_opts.tls.server_name = tls.server_name;
  if (!tls.ca_file.empty()) {
    ASSIGN_OR_RETURN(etcd_opts.tls.root_certs,
                     ReadFlagFile(tls.ca_file, "--etcd-cacert"));
  }
  if (!tls.cert_file.empty()) {
    ASSIGN_OR_RETURN(etcd_opts.tls.cert_chain,
                     ReadFlagFile(tls.cert_file, "--etcd-cert"));
    ASSIGN_OR_RETURN(etcd_opts.tls.private_key,
                     ReadFlagFile(tls.key_file, "--etcd-key"));
  }
  auto store = EtcdStore::Open(spec.substr(strlen("etcd:")), etcd_opts);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(*store));
}

gateway::GatewayOptions WithOnDemand(gateway::GatewayOptions options,
                                     DemandSignal* demand, WorkQueue* queue,
                                     ha::DemandRelay* relay,
                                     AppInformer* apps) {
  // An app applied a moment ago has no route yet: its first requests wait
  // for it instead of getting 404 (docs/gateway.md, "Routing").
  options.app_exists = [apps](const std::string& ns, const std::string& app) {
    return apps->Live(absl::StrCat(ns, "/", app));
  };
  // Scale from zero: the scaler decides at once (when the controller side
  // runs), then the app is reconciled. In HA mode the demand also goes to
  // the store, for the leader when it is another node.
  options.on_demand = [demand, queue, relay](const std::string& ns,
                                             const std::string& app) {
    demand->Notify(ns, app);
    queue->Add(absl::StrCat(ns, "/", app));
    if (relay != nullptr) relay->Report(ns, app, 1);
  };
  return options;
}

EtcdStore* AsEtcd(Store* store) { return dynamic_cast<EtcdStore*>(store); }

std::unique_ptr<ha::ClusterRuntime> MakeClusterRuntime(
    const DaemonConfig& config, Store* store, FencedStore* fenced,
    Runtime* local, std::function<std::string()> node_token) {
  if (!config.ha.enabled) return nullptr;
  ha::ClusterRuntime::Options o;
  o.node = config.ha.node;
  o.node_lost_timeout = config.ha.node_lost_timeout;
  o.clock = RealClock::Get();
  ha::PeerTls tls;
  if (config.api_tls.enabled()) {
    tls.enabled = true;
    tls.ca_file = config.tls_peer_ca.empty() ? config.api_tls.client_ca_file
                                             : config.tls_peer_ca;
    tls.cert_file = config.api_tls.cert_file;
    tls.key_file = config.api_tls.key_file;
  }
  o.remote_logs = ha::GrpcRemoteLogOpener(std::move(node_token), tls);
  return std::make_unique<ha::ClusterRuntime>(store, fenced, local, o);
}

// The nodes this one has heard from lately (the traffic parts' liveness).
std::function<std::vector<std::string>()> LiveNodes(
    ha::ClusterRuntime* cluster) {
  return [cluster] {
    std::vector<std::string> live;
    for (const auto& n : cluster->Nodes()) {
      if (n.live) live.push_back(n.name);
    }
    return live;
  };
}

deployer::WebhookSenderOptions WebhookOptions(const DaemonConfig& config) {
  deployer::WebhookSenderOptions wopts;
  wopts.allow_private = config.validation.allow_private_webhooks;
  return wopts;
}

MultiScaler::Inputs ScalerInputs(Store* store, Runtime* runtime,
                                 gateway::Gateway* gw, MetricsSource* metrics,
                                 ha::DemandRelay* relay, DemandSignal* demand,
                                 WorkQueue* queue) {
  MultiScaler::Inputs in;
  in.store = store;
  in.runtime = runtime;
  in.metrics = metrics;
  // Held requests: this gateway's, and (HA) those other nodes report.
  in.queued = [gw, relay](const std::string& ns, const std::string& app) {
    return gw->Queued(ns, app) + (relay ? relay->Held(ns, app) : 0);
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
  // With --gateway-https-redirect the HTTP URL only redirects: the HTTPS
  // one is shown.
  o.url = [gw, domain = config.domain, https = config.gateway.https_redirect](
              const std::string& ns, const std::string& name) {
    const int port = https ? gw->tls_port() : gw->port();
    const int plain = https ? 443 : 80;
    return absl::StrCat(https ? "https://" : "http://", name, ".", ns, ".",
                        domain, port == plain ? "" : absl::StrCat(":", port));
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

namespace {
// "k1-aaa (3 secrets), k1-bbb (1 secret)".
std::string KeyIdCounts(const std::map<std::string, int>& ids) {
  std::vector<std::string> parts;
  for (const auto& [id, n] : ids) {
    parts.push_back(
        absl::StrCat(id, " (", n, n == 1 ? " secret)" : " secrets)"));
  }
  return absl::StrJoin(parts, ", ");
}
}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(DaemonConfig config) {
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot create data directory ", config.data_dir, ": ", ec.message()));
  }
  // Private: the store, tokens, instance records and every namespace's logs
  // are in it (an existing one open to others is closed).
  struct stat dir_stat {};
  if (stat(config.data_dir.c_str(), &dir_stat) == 0 &&
      dir_stat.st_uid == geteuid() && (dir_stat.st_mode & 077) != 0) {
    if (chmod(config.data_dir.c_str(), 0700) == 0) {
      GetLogger("tidald")->info(
          "data directory {} was open to other users (mode {:o}); now 0700",
          config.data_dir, dir_stat.st_mode & 0777);
    }
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
  if (config.store_name != "sqlite") {
    // Before anything is adopted, stopped or written: a machine moved from
    // the embedded store without its apps, a wiped or another etcd cluster
    // and a second node under this node's name are refused (the SQLite file
    // has its own checks).
    absl::Status moved = CheckNotMovedFromEmbedded(
        store->get(), config.data_dir + "/tidal.db", config.store_spec);
    if (!moved.ok()) return moved;
    absl::StatusOr<std::string> id =
        CheckStoreIdentity(store->get(), config.data_dir, config.store_spec);
    if (!id.ok()) {
      return Annotate(id.status(), absl::StrCat("checking the store ",
                                                config.store_spec, ": "));
    }
    if (config.ha.enabled) {
      absl::StatusOr<std::string> uid = CheckNodeIdentity(
          store->get(), config.data_dir, config.ha.node, absl::Seconds(3));
      if (!uid.ok()) return uid.status();
      config.ha.node_uid = *uid;
    }
  }
  {
    // With etcd every node needs the cluster's key: a node that made its
    // own started as ready and failed every instance using a secret. On
    // one machine a key file gone missing is told at start too (warned:
    // the secrets can only be applied again).
    absl::StatusOr<std::map<std::string, int>> ids =
        secrets::SealedKeyIds(store->get());
    if (!ids.ok()) {
      return Annotate(ids.status(), "listing the secrets' key ids: ");
    }
    std::map<std::string, int> sealed = std::move(*ids);
    std::error_code exists_ec;
    if (config.store_name != "sqlite" && !sealed.empty() &&
        !std::filesystem::exists(config.secrets_key_file, exists_ec)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--secrets-key-file ", config.secrets_key_file,
          " does not exist, and the store holds secrets sealed with ",
          KeyIdCounts(sealed),
          ": copy the key file from a node that has it (its log says "
          "`secrets: key ",
          sealed.begin()->first,
          " from ...`) instead of making a new one (docs/ha.md, \"Running "
          "three nodes with systemd\")"));
    }
    absl::StatusOr<SecretBox> box = SecretBox::LoadOrCreateKeyFile(
        config.secrets_key_file, "--secrets-key-file");
    if (!box.ok()) return box.status();
    GetLogger("tidald")->info("secrets: key {} from {}", box->key_id(),
                              config.secrets_key_file);
    int total = 0;
    for (const auto& [id, n] : sealed) total += n;
    if (const int others = total - sealed[box->key_id()]; others > 0) {
      sealed.erase(box->key_id());
      GetLogger("tidald")->warn(
          "secrets: {} of {} secrets in the store are sealed with another "
          "key ({}) than this node's {} (--secrets-key-file {}): instances "
          "that use them cannot start here. Copy the cluster's key file to "
          "this node, or, during a rotation, apply them again "
          "(docs/secrets.md, \"Rotation\")",
          others, total, KeyIdCounts(sealed), box->key_id(),
          config.secrets_key_file);
    }
    config.secret_box = std::make_shared<const SecretBox>(std::move(*box));
    config.runtime.secret_resolver =
        secrets::MakeResolver(store->get(), config.secret_box);
  }
  std::unique_ptr<kube::KubeClient> kube_client;
  if (config.kube.enabled) {
    absl::StatusOr<kube::KubeConfig> kc =
        config.kube.kubeconfig.empty()
            ? kube::LoadInClusterConfig()
            : kube::LoadKubeconfig(config.kube.kubeconfig, config.kube.context);
    if (!kc.ok()) {
      return Annotate(kc.status(),
                      "--runtime=kubernetes: the cluster's connection "
                      "settings: ");
    }
    if (config.kube.default_namespace.empty()) {
      config.kube.default_namespace = kc->namespace_;
    }
    GetLogger("tidald")->info(
        "runtime: kubernetes at {} ({}), instances in namespace {}", kc->server,
        kc->source, config.kube.default_namespace);
    kube_client = std::make_unique<kube::KubeClient>(std::move(*kc));
  }
  return std::unique_ptr<Server>(new Server(std::move(config), std::move(lock),
                                            std::move(*store),
                                            std::move(kube_client)));
}

namespace {
std::unique_ptr<kube::KubernetesRuntime> MakeKubeRuntime(
    const DaemonConfig& config, kube::KubeClient* client) {
  if (client == nullptr) return nullptr;
  kube::KubernetesRuntimeOptions o;
  o.default_namespace = config.kube.default_namespace;
  o.namespace_map = config.kube.namespace_map;
  return std::make_unique<kube::KubernetesRuntime>(client, o);
}
}  // namespace

Server::Server(DaemonConfig config, std::unique_ptr<DataDirLock> lock,
               std::unique_ptr<Store> store,
               std::unique_ptr<kube::KubeClient> kube_client)
    : config_(std::move(config)),
      lock_(std::move(lock)),
      store_(std::move(store)),
      fenced_(store_.get()),
      runtime_(config_.runtime),
      kube_client_(std::move(kube_client)),
      kube_runtime_(MakeKubeRuntime(config_, kube_client_.get())),
      cluster_(MakeClusterRuntime(config_, store_.get(), &fenced_, &runtime_,
                                  [this] { return NodeToken(); })),
      instances_(kube_runtime_ ? static_cast<Runtime*>(kube_runtime_.get())
                 : cluster_    ? static_cast<Runtime*>(cluster_.get())
                               : &runtime_),
      relay_(config_.ha.enabled ? std::make_unique<ha::DemandRelay>(
                                      store_.get(), RelayOptions())
                                : nullptr),
      gateway_(WithOnDemand(config_.gateway, &demand_, &queue_, relay_.get(),
                            &history_apps_)),
      routes_(&gateway_, RealClock::Get()),
      route_watcher_(config_.ha.enabled ? std::make_unique<ha::RouteWatcher>(
                                              store_.get(), &gateway_,
                                              ha::RouteWatcher::Options())
                                        : nullptr),
      cluster_metrics_(config_.ha.enabled
                           ? std::make_unique<ha::ClusterMetrics>(
                                 store_.get(), ClusterMetricsOptions())
                           : nullptr),
      metrics_(cluster_metrics_
                   ? static_cast<MetricsSource*>(cluster_metrics_.get())
                   : &gateway_),
      publisher_(config_.ha.enabled ? std::make_unique<ha::MetricsPublisher>(
                                          store_.get(), PublisherOptions())
                                    : nullptr),
      store_routes_(config_.ha.enabled ? std::make_unique<ha::StoreRouteSink>(
                                             &fenced_, StoreRoutesOptions())
                                       : nullptr),
      route_sink_(store_routes_ ? static_cast<RouteSink*>(store_routes_.get())
                                : &routes_),
      events_(&fenced_, RealClock::Get()),
      node_events_(config_.ha.enabled ? std::make_unique<EventRecorder>(
                                            store_.get(), RealClock::Get())
                                      : nullptr),
      webhooks_(WebhookOptions(config_)),
      outbox_(&fenced_, &webhooks_),
      deployer_(&fenced_, RealClock::Get(), metrics_, &webhooks_, &outbox_),
      scaler_(ScalerInputs(&fenced_, instances_, &gateway_, metrics_,
                           relay_.get(), &demand_, &queue_)),
      reconciler_(&fenced_, instances_, &events_, RealClock::Get(),
                  ReconcilerOptions(config_, &gateway_, &scaler_, route_sink_,
                                    &deployer_)),
      controller_(&fenced_, instances_, &reconciler_, &events_, &queue_,
                  ControllerOptions(config_)),
      rollouts_(store_.get(), RealClock::Get(),
                [this](const std::string& key) { queue_.Add(key); }),
      history_apps_(store_.get(), [](const std::string&, const v1::App*) {}),
      history_recorder_(&history_, metrics_, HistoryApps(), RealClock::Get()),
      api_address_(config_.api_listen),
      admin_([this] { return MetricsText(); }, [this] { return Ready(); },
             [this] { return ReadyDetail(); }) {
  if (config_.dashboard_listen != "off") {
    dashboard::Dashboard::Options o;
    o.api = [this] {
      absl::MutexLock lock(&api_mu_);
      return api_channel_;
    };
    dashboard_ = std::make_unique<dashboard::Dashboard>(std::move(o));
  }
  if (!config_.ha.enabled) return;
  // A standby writes nothing of the controller side's.
  fenced_.Refuse();
  ha::NodeAgent::Options ao;
  ao.node = config_.ha.node;
  ao.uid = config_.ha.node_uid;
  ao.address = config_.ha.advertise_address;
  ao.api_address = config_.ha.api_address;
  ao.clock = RealClock::Get();
  ao.on_event = [this](const InstanceChange& c) {
    node_events_->Record(c.instance.namespace_(), c.instance.app(),
                         c.event_type.empty() ? "Normal" : c.event_type,
                         c.event_reason, c.event_message,
                         absl::StrCat("runtime/", config_.ha.node));
  };
  agent_ = std::make_unique<ha::NodeAgent>(store_.get(), &runtime_, ao);
  LeaderElector::Options eo;
  eo.identity = config_.ha.node;
  eo.record.set_node(config_.ha.node);
  eo.record.set_api_address(config_.ha.api_address);
  eo.ttl = config_.ha.election_ttl;
  eo.clock = RealClock::Get();
  LeaderElector::Callbacks cb;
  cb.on_elected = [this](int64_t token) { OnElected(token); };
  cb.on_deposed = [this] { OnDeposed(); };
  elector_ = std::make_unique<LeaderElector>(AsEtcd(store_.get()), eo, cb);
  if (config_.ha.compact_keep > 0) {
    Compactor::Options co;
    co.interval = config_.ha.compact_interval;
    co.keep = config_.ha.compact_keep;
    compactor_ = std::make_unique<Compactor>(AsEtcd(store_.get()), co);
  }
}

HistoryRecorder::AppsFn Server::HistoryApps() {
  return
      [this](const std::function<void(const HistoryRecorder::AppNow&)>& visit) {
        history_apps_.ForEach([&](const v1::App& a) {
          if (a.metadata().has_deletion_timestamp()) return;
          HistoryRecorder::AppNow now;
          now.ns = a.metadata().namespace_();
          now.name = a.metadata().name();
          now.desired = a.status().desired_replicas();
          now.ready = a.status().ready_replicas();
          now.reason = a.status().scaling().last_reason();
          if (a.spec().has_replicas()) {
            now.reason = absl::StrCat("spec.replicas: ", a.spec().replicas());
          } else if (now.reason.empty()) {
            now.reason = "scaler";
          }
          visit(now);
        });
      };
}

int Server::DashboardPort() const {
  if (!dashboard_) return 0;
  return config_.dashboard_listen.empty() ? admin_.port() : dashboard_->port();
}

ha::DemandRelay::Options Server::RelayOptions() {
  ha::DemandRelay::Options o;
  o.node = config_.ha.node;
  o.clock = RealClock::Get();
  o.held = [this](const std::string& ns, const std::string& app) {
    return gateway_.Queued(ns, app);
  };
  o.on_demand = [this](const std::string& ns, const std::string& app) {
    demand_.Notify(ns, app);
    queue_.Add(absl::StrCat(ns, "/", app));
  };
  o.live_nodes = LiveNodes(cluster_.get());
  return o;
}

ha::ClusterMetrics::Options Server::ClusterMetricsOptions() {
  ha::ClusterMetrics::Options o;
  o.node = config_.ha.node;
  o.clock = RealClock::Get();
  o.local = &gateway_;
  o.live_nodes = LiveNodes(cluster_.get());
  return o;
}

ha::MetricsPublisher::Options Server::PublisherOptions() {
  ha::MetricsPublisher::Options o;
  o.node = config_.ha.node;
  o.clock = RealClock::Get();
  o.local = &gateway_;
  o.traffic = [this] { return gateway_.Traffic(); };
  o.routes = route_watcher_.get();
  return o;
}

ha::StoreRouteSink::Options Server::StoreRoutesOptions() {
  ha::StoreRouteSink::Options o;
  o.clock = RealClock::Get();
  o.views = {route_watcher_.get(), cluster_metrics_.get()};
  return o;
}

Server::~Server() {
  // Members stop themselves in reverse order. First the API's health check
  // (so it never restarts an API being torn down) and the API server (it
  // calls into its service, destroyed before it otherwise).
  if (api_health_) api_health_->Stop();
  if (store_health_) store_health_->Stop();
  if (dashboard_) dashboard_->Stop();
  // The gateway's threads ask history_apps_, destroyed before the gateway.
  gateway_.Stop();
  absl::MutexLock lock(&api_mu_);
  api_channel_.reset();
  api_server_.reset();
}

absl::Status Server::Start() {
  auto log = GetLogger("tidald");
  // The API binds last: a port in use is said now, before anything is
  // adopted or started (and without gRPC's own log of the failed bind).
  std::string api_address;
  {
    absl::MutexLock lock(&api_mu_);
    api_address = api_address_;
  }
  if (auto st = common::CheckListenAddressFree(api_address, "API (--listen)");
      !st.ok()) {
    return st;
  }
  if (agent_ != nullptr) {
    // HA: the node agent adopts this node's instances and runs what is
    // assigned here; the cluster view lists every node's.
    if (auto st = agent_->Start(); !st.ok()) {
      return Annotate(st, "adopting running instances failed: ");
    }
    if (auto st = cluster_->Adopt(); !st.ok()) {
      return Annotate(st, "listing the cluster's instances failed: ");
    }
  } else if (auto st = runtime_.Adopt(); !st.ok()) {
    return Annotate(st, "adopting running instances failed: ");
  }
  if (kube_runtime_ != nullptr) {
    // A standby (HA) watches the Pods too but changes nothing.
    kube_runtime_->SetActing(!config_.ha.enabled);
    if (auto st = kube_runtime_->Adopt(); !st.ok()) {
      return Annotate(st, "listing the instances on Kubernetes failed: ");
    }
  }
  log->info("file descriptor limit {}; gateway connection budget {}",
            config_.fd_limit, config_.gateway.max_connections);
  if (auto st = gateway_.Start(); !st.ok()) {
    return Annotate(st, "starting the gateway failed: ");
  }
  if (agent_ != nullptr) agent_->SetGatewayPort(gateway_.port());
  if (config_.ha.enabled) {
    route_watcher_->Start();
    cluster_metrics_->Start();
    publisher_->Start();
    relay_->Start();
    node_events_->StartFlusher();
  }
  events_.StartFlusher();
  if (auto st = history_apps_.Start(); !st.ok()) {
    return Annotate(st, "listing the apps for their history failed: ");
  }
  history_recorder_.Start();
  if (dashboard_ && !config_.dashboard_listen.empty()) {
    if (auto st = dashboard_->Listen(config_.dashboard_listen); !st.ok()) {
      return st;
    }
  } else if (dashboard_) {
    dashboard::Dashboard* d = dashboard_.get();
    admin_.set_handoff(
        [](const std::string& target) {
          return dashboard::IsDashboardTarget(target);
        },
        [d](int fd, std::string consumed) {
          d->Adopt(fd, std::move(consumed));
        });
  }
  // The API's store answers at once while the store does not (checked
  // every second): with etcd's quorum lost, every call waited out the
  // store's deadline and the client's --timeout.
  store_health_ = std::make_unique<CachedHealth>(
      CachedHealth::Options(), [this] { return CheckStore(); });
  store_health_->Start();
  if (config_.store_name == "etcd") {
    api_store_ = std::make_unique<GatedStore>(store_.get(), [this] {
      absl::Status s = store_health_->Current();
      if (!absl::IsUnavailable(s)) return absl::OkStatus();
      return absl::UnavailableError(
          absl::StrCat("the store (", config_.store_spec,
                       ") does not answer: ", s.message()));
    });
  }
  if (auto st = StartAuth(); !st.ok()) return st;
  api_tls_ = config_.api_tls;
  if (config_.api_tls.enabled()) {
    // gRPC reads copies that are replaced only by a matching pair (a
    // rotation half done kept the API from answering at all), and re-reads
    // them every second.
    tls_mirror_ = std::make_unique<TlsPairMirror>(
        config_.api_tls.cert_file, config_.api_tls.key_file,
        config_.data_dir + "/api-tls", config_.api_tls.reload_interval);
    if (auto st = tls_mirror_->Start(); !st.ok()) return st;
    api_tls_.cert_file = tls_mirror_->cert_path();
    api_tls_.key_file = tls_mirror_->key_path();
    api_tls_.reload_interval = absl::Seconds(1);
  }
  if (auto st = StartApi(); !st.ok()) {
    return Annotate(st, absl::StrCat("starting the API on ", config_.api_listen,
                                     " failed: "));
  }
  ApiHealth::Options health_opts;
  {
    absl::MutexLock lock(&api_mu_);
    health_opts.target = ApiHealth::DialTarget(api_address_);
    health_opts.tls = config_.api_tls.enabled();
  }
  api_health_ =
      std::make_unique<ApiHealth>(health_opts, [this] { return StartApi(); });
  api_health_->Start();
  if (elector_ != nullptr) {
    // The controller side starts when this node wins (OnElected).
    if (auto st = elector_->Start(); !st.ok()) {
      return Annotate(st, "starting the election failed: ");
    }
  } else if (auto st = StartControllerSide(); !st.ok()) {
    return st;
  }
  admin_.set_gateway_ready([this] { return GatewayReady(); });
  if (auto st = admin_.Start(config_.admin_listen); !st.ok()) return st;
  started_ = true;
  log->info(
      "tidald {} ready: api {}, gateway {}:{} (*.{}), admin {}, data {}{}",
      TIDAL_VERSION, config_.api_listen, config_.gateway.listen_address,
      gateway_.port(), config_.domain, config_.admin_listen, config_.data_dir,
      config_.ha.enabled ? absl::StrCat(", node ", config_.ha.node,
                                        " (etcd: ", config_.store_spec, ")")
                         : "");
  return absl::OkStatus();
}

void Server::Stop() {
  if (!started_) return;
  started_ = false;
  api_health_->Stop();
  store_health_->Stop();
  // The dashboard's streams call the API: they end first.
  if (dashboard_) dashboard_->Stop();
  {
    absl::MutexLock lock(&api_mu_);
    if (api_server_) api_server_->Shutdown(absl::Seconds(2));
  }
  if (elector_ != nullptr) {
    // Stops acting (OnDeposed), then revokes the lease: a standby leads
    // within about a second.
    elector_->Resign();
  }
  StopControllerSide();
  admin_.Stop();
  history_recorder_.Stop();
  history_apps_.Stop();
  if (config_.ha.enabled) {
    relay_->Stop();
    publisher_->Stop();
    cluster_metrics_->Stop();
    route_watcher_->Stop();
    agent_->Stop();
    cluster_->Shutdown(false);
  }
  if (kube_runtime_ != nullptr) {
    kube_runtime_->Shutdown(config_.stop_instances_on_exit &&
                            !config_.ha.enabled);
  }
  runtime_.Shutdown(config_.stop_instances_on_exit);
  gateway_.Stop();
  GetLogger("tidald")->info(
      "stopped{}", config_.stop_instances_on_exit
                       ? " (instances stopped)"
                       : "; instances keep running for the next start");
}

void Server::OnElected(int64_t token) {
  // Every write of the controller side now carries the token: once another
  // node wins, etcd refuses them.
  fenced_.Fence(keys::LeaderKey(), token);
  {
    absl::MutexLock lock(&lead_mu_);
    leading_ = true;
    lead_changed_ = absl::Now();
  }
  GetLogger("election")
      ->info("election: acting as leader (node {}, fencing token {})",
             config_.ha.node, token);
  deployer_.SetPlanner(
      absl::StrCat("node ", config_.ha.node, " (fencing token ", token, ")"));
  cluster_->SetActing(true);
  if (kube_runtime_ != nullptr) kube_runtime_->SetActing(true);
  store_routes_->Resync();
  relay_->StartWatching();
  if (auto st = StartControllerSide(); !st.ok()) {
    GetLogger("election")
        ->error("starting the controller side: {}", st.ToString());
  }
  if (compactor_ != nullptr) compactor_->Start();
}

void Server::OnDeposed() {
  // Refuse first: from here on nothing of the controller side is written.
  fenced_.Refuse();
  {
    absl::MutexLock lock(&lead_mu_);
    leading_ = false;
    lead_changed_ = absl::Now();
  }
  GetLogger("election")
      ->warn("election: stopped acting (node {} no longer leads)",
             config_.ha.node);
  if (compactor_ != nullptr) compactor_->Stop();
  StopControllerSide();
  relay_->StopWatching();
  cluster_->SetActing(false);
  if (kube_runtime_ != nullptr) kube_runtime_->SetActing(false);
}

bool Server::leading() const {
  if (!config_.ha.enabled) return controller_side_running_;
  absl::MutexLock lock(&lead_mu_);
  return leading_;
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

absl::Status Server::StartAuth() {
  auto log = GetLogger("tidald");
  auto audit = auth::AuditLog::Open(config_.auth.audit);
  if (!audit.ok()) return Annotate(audit.status(), "--audit-log: ");
  audit_ = std::move(*audit);
  if (!config_.auth.audit.path.empty() &&
      config_.auth.audit.level != auth::AuditLevel::kNone) {
    log->info("audit log {} (level {})", config_.auth.audit.path,
              auth::AuditLevelName(config_.auth.audit.level));
  }
  if (!config_.auth.tokens) {
    log->warn(
        "--auth=none: every caller of the API (on this machine) may do "
        "anything");
    api_auth_ = std::make_unique<auth::ApiAuth>(auth::AuthMode::kNone, nullptr,
                                                audit_.get());
    return absl::OkStatus();
  }
  tokens_ = std::make_unique<auth::TokenStore>(ApiStore(), RealClock::Get());
  std::string warning;
  auto file =
      auth::EnsureBootstrapToken(tokens_.get(), config_.auth.token_file,
                                 config_.auth.default_token_file, &warning);
  if (!file.ok()) {
    return Annotate(file.status(), config_.auth.token_file.empty()
                                       ? "making the bootstrap admin token: "
                                       : "--auth-token-file: ");
  }
  if (!file->empty()) {
    log->info("bootstrap admin token written to {} (mode 0600)", *file);
  }
  if (!warning.empty()) log->warn("{}", warning);
  if (config_.ha.enabled) {
    // This node's own token, for calls to the other nodes' APIs (the logs
    // of instances that run there): in memory only, made anew each start.
    const std::string name = absl::StrCat("node:", config_.ha.node);
    absl::Status gone = tokens_->Revoke(name).status();
    if (!gone.ok() && !absl::IsNotFound(gone)) {
      return Annotate(gone, "replacing this node's token: ");
    }
    auto made =
        tokens_->Create(name, {{auth::kAllNamespaces, auth::Role::kViewer}},
                        absl::ZeroDuration(), "tidald");
    if (!made.ok())
      return Annotate(made.status(), "making this node's token: ");
    absl::MutexLock lock(&node_token_mu_);
    node_token_ = made->token;
  }
  api_auth_ = std::make_unique<auth::ApiAuth>(auth::AuthMode::kToken,
                                              tokens_.get(), audit_.get());
  return absl::OkStatus();
}

std::string Server::NodeToken() const {
  absl::MutexLock lock(&node_token_mu_);
  return node_token_;
}

absl::Status Server::StartApi() {
  absl::MutexLock lock(&api_mu_);
  if (api_server_) api_server_->Shutdown(absl::Seconds(1));
  api_server_.reset();  // the service outlives its server
  api_channel_.reset();
  ServiceOptions sopts;
  sopts.store_name = config_.store_name;
  sopts.ha = config_.ha.enabled;
  sopts.node_name = config_.ha.node;
  if (cluster_) {
    ha::ClusterRuntime* cluster = cluster_.get();
    sopts.node_last_seen =
        [cluster](const std::string& node) -> std::optional<absl::Time> {
      for (const auto& n : cluster->Nodes()) {
        if (n.name == node) return n.last_seen;
      }
      return std::nullopt;
    };
    sopts.node_lost_timeout = config_.ha.node_lost_timeout;
    sopts.node_quiet_after = ha::ClusterRuntime::kFreshHeartbeat;
  }
  sopts.validation = config_.validation;
  sopts.max_instances_per_namespace = config_.max_instances_per_namespace;
  sopts.metrics = metrics_;
  sopts.rollouts = &rollouts_;
  sopts.secret_box = config_.secret_box.get();
  sopts.history = &history_;
  sopts.dashboard_port = [this] { return DashboardPort(); };
  sopts.dashboard_path = "/ui/";
  api_service_ = std::make_unique<TidalService>(ApiStore(), instances_,
                                                RealClock::Get(), sopts);
  auto server = StartServer(api_address_, api_service_.get(), api_tls_,
                            api_auth_.get(), config_.api_limits);
  if (!server.ok()) return server.status();
  api_server_ = std::move(*server);
  api_channel_ = api_server_->InProcessChannel();
  // A restart binds the port the first start got (--listen may say 0).
  api_address_ = absl::StrCat(api_address_.substr(0, api_address_.rfind(':')),
                              ":", api_server_->port());
  return absl::OkStatus();
}

std::string Server::MetricsText() {
  std::string text = ProcessMetricsText();
  absl::StrAppend(
      &text, "# HELP tidal_apps Apps in the store (the controller's cache)\n",
      "# TYPE tidal_apps gauge\ntidal_apps ", controller_.informer()->Size(),
      "\n",
      "# HELP tidal_workqueue_depth Apps waiting for a reconcile\n"
      "# TYPE tidal_workqueue_depth gauge\ntidal_workqueue_depth ",
      queue_.Len(), "\n",
      "# HELP tidal_instances Instances this node's runtime runs\n"
      "# TYPE tidal_instances gauge\ntidal_instances ",
      (kube_runtime_ ? instances_ : &runtime_)->List().size(), "\n");
  std::vector<tidal::v1::App> apps;
  std::vector<std::string> keys = controller_.informer()->Keys();
  std::sort(keys.begin(), keys.end());
  for (const auto& key : keys) {
    if (auto app = controller_.informer()->Get(key)) apps.push_back(*app);
  }
  absl::StrAppend(&text, AppMetricsText(apps));
  if (config_.ha.enabled) {
    absl::StrAppend(
        &text,
        "# HELP tidal_leader 1 while this node leads the control plane\n"
        "# TYPE tidal_leader gauge\ntidal_leader ",
        leading() ? 1 : 0, "\n",
        "# HELP tidal_leader_elections_total Elections this node won\n"
        "# TYPE tidal_leader_elections_total counter\n"
        "tidal_leader_elections_total ",
        elector_->elections(), "\n",
        "# HELP tidal_fenced_writes_refused_total Writes of the controller "
        "side refused because this node did not (or no longer) lead\n"
        "# TYPE tidal_fenced_writes_refused_total counter\n"
        "tidal_fenced_writes_refused_total ",
        fenced_.refused_writes(), "\n");
  }
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
  {
    absl::MutexLock lock(&api_mu_);
    if (api_server_) absl::StrAppend(&text, api_server_->MetricsText());
  }
  absl::StrAppend(&text, gateway_.PrometheusText());
  return text;
}

// Ready: everything has started (the admin server starts last), the store's
// data can be read (and, after a full disk, written), and the API answers a
// new connection.
std::string Server::ReadyDetail() {
  return store_health_ ? store_health_->Detail() : "";
}

absl::Status Server::GatewayReady() {
  if (gateway_.port() <= 0) {
    return absl::UnavailableError("the gateway does not listen yet");
  }
  if (route_watcher_ != nullptr && !route_watcher_->synced()) {
    return absl::UnavailableError(
        "the gateway has not read the routes from the store yet");
  }
  return absl::OkStatus();
}

CachedHealth::Result Server::CheckStore() {
  CachedHealth::Result r;
  r.status = store_->Health();
  if (!config_.ha.enabled) return r;
  auto leader = CurrentLeader(store_.get());
  if (!leader.ok()) {
    r.detail =
        absl::StrCat("leader: unknown (", leader.status().ToString(), ")\n");
    return r;
  }
  std::string out = absl::StrCat("node: ", config_.ha.node,
                                 leading() ? " (leader)\n" : " (standby)\n");
  if (!leader->present) {
    r.detail = out + "leader: none (an election is under way)\n";
    return r;
  }
  const auto& since = leader->record.since();
  absl::StrAppend(&out, "leader: ", leader->record.node(), " since ",
                  absl::FormatTime(absl::RFC3339_sec,
                                   absl::FromUnixSeconds(since.seconds()),
                                   absl::UTCTimeZone()),
                  " (token ", leader->token, ")\n");
  r.detail = std::move(out);
  return r;
}

absl::Status Server::Ready() {
  if (store_health_ == nullptr) {
    return absl::UnavailableError("tidald is starting");
  }
  if (auto st = store_health_->Current(); !st.ok()) return st;
  if (api_health_ == nullptr || !api_health_->Healthy()) {
    return absl::UnavailableError("the API does not answer a new connection");
  }
  return absl::OkStatus();
}

}  // namespace tidal
