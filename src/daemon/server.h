#pragma once

// Server: tidald's components, owned as members and built in dependency
// order (after Envoy's server.h: one object owns the whole process's
// parts; main() only parses flags and waits for a signal). Every dependency
// is passed to a constructor; nothing is set afterwards.
//
// Construction order (members below, in this order; destruction is the
// reverse):
//   data directory lock, store, runtime,
//   work queue      built FIRST: the gateway's on-demand hook, the scaler's
//                   on-change and the rollout commands (DeployerControl) add
//                   app keys to it; the controller's workers take them,
//   demand signal   the gateway -> scaler wake-ups (see below),
//   gateway, routes (GatewayRoutes: the reconciler's RouteSink),
//   events, webhooks, outbox, deployer, scaler (MultiScaler), reconciler,
//   controller, rollout control, API (with ApiHealth restarts), admin.
//
// The gateway <-> scaler cycle is broken by ordering: the scaler reads the
// gateway's metrics and held requests, so it is built after the gateway; the
// gateway's on-demand hook cannot name the scaler, so it notifies a
// DemandSignal built before both, which the scaler listens to while it is
// started. The same hook adds the app's key to the work queue.
//
// Start order: runtime (adopt running instances), gateway, events, API
// (and its health check), the controller side, admin (last: /readyz is
// ready once it answers). Stop is the reverse for what serves requests:
// API, controller side, admin, runtime (instances stop only with
// --stop-instances-on-exit), gateway.
//
// The controller side — the notification outbox, the scaler and the
// controller (informer, workers, resync) — starts and stops on its own
// (StartControllerSide / StopControllerSide) while the API, the gateway and
// the runtime keep running: what a leader election switches on and off.
// While it is stopped nothing reconciles, scales or sends notifications;
// the API still serves (its writes are reconciled when the side starts
// again, which lists every app anew).
//
// Highly available mode (config.ha.enabled: the etcd store; docs/ha.md)
// adds, in construction order: the FencedStore every controller-side writer
// uses (it refuses writes until this node leads, then guards each with the
// leader key's create revision), the ClusterRuntime (every node's instances,
// through the store: what the controller, scaler and API see), the demand
// relay, the RouteWatcher (the only thing that drives the local gateway's
// routes), ClusterMetrics (every gateway's figures summed, for the scaler,
// the deployer and `top`), the metrics publisher, the StoreRouteSink (the
// reconciler's routes, published in the store), a second EventRecorder on
// the plain store (the node agent's events), the NodeAgent (this node's
// instances: it adopts them and runs what is assigned here), the
// LeaderElector and the etcd history Compactor. Start then starts the
// election instead of the controller side; winning fences the store and
// starts the side, losing refuses writes first and then stops it; Stop
// resigns.
//
// Threading: Start, Stop, StartControllerSide and StopControllerSide are
// called from one thread at a time (main's, or the leader election's: Stop
// joins it before going on). The accessors are thread-safe.

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "api/api_auth.h"
#include "api/service.h"
#include "controller/app_reconciler.h"
#include "controller/controller.h"
#include "controller/events.h"
#include "controller/work_queue.h"
#include "daemon/admin_server.h"
#include "daemon/api_health.h"
#include "daemon/cached_health.h"
#include "daemon/config.h"
#include "daemon/tls_mirror.h"
#include "dashboard/dashboard.h"
#include "deployer/control.h"
#include "deployer/deployer.h"
#include "deployer/outbox.h"
#include "deployer/webhooks.h"
#include "gateway/gateway.h"
#include "gateway/route_sink.h"
#include "ha/cluster_metrics.h"
#include "ha/cluster_runtime.h"
#include "ha/compactor.h"
#include "ha/demand_relay.h"
#include "ha/leader_election.h"
#include "ha/metrics_publisher.h"
#include "ha/node_agent.h"
#include "ha/route_watcher.h"
#include "ha/store_routes.h"
#include "runtime/process_runtime.h"
#include "scaler/demand_signal.h"
#include "scaler/load_history.h"
#include "scaler/multi_scaler.h"
#include "store/fenced_store.h"
#include "store/store.h"

namespace tidal {
namespace kube {
class KubeClient;
class KubernetesRuntime;
}  // namespace kube

class Server {
 public:
  // Creates and locks the data directory, opens the store and builds every
  // component; starts nothing. The error's message is what tidald says
  // before it exits 1 (a damaged store is DataLoss).
  static absl::StatusOr<std::unique_ptr<Server>> Create(DaemonConfig config);
  // Stops what still runs (without Stop's log lines when Start failed).
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts everything in order and says "tidald ... ready". On error (the
  // message is what tidald says before it exits 1) what started is stopped
  // by the destructor.
  absl::Status Start();
  // Stops everything in reverse order and says "stopped". Idempotent; no
  // effect before a successful Start.
  void Stop();

  // The controller side: outbox, scaler, controller. Start is OK without
  // effect when it runs already; Stop is idempotent.
  absl::Status StartControllerSide();
  void StopControllerSide();
  bool controller_side_running() const;

  // Bound ports (after Start).
  int api_port() const;
  int gateway_port() const;
  int admin_port() const;
  int dashboard_port() const { return DashboardPort(); }
  Store* store() { return store_.get(); }
  // HA: whether this node leads now, and the writes its fence refused.
  bool leading() const;
  int64_t fenced_writes_refused() const { return fenced_.refused_writes(); }

 private:
  // Closes the lock's descriptor when destroyed.
  struct DataDirLock {
    explicit DataDirLock(int fd) : fd(fd) {}
    ~DataDirLock();
    DataDirLock(const DataDirLock&) = delete;
    DataDirLock& operator=(const DataDirLock&) = delete;
    const int fd;
  };

  Server(DaemonConfig config, std::unique_ptr<DataDirLock> lock,
         std::unique_ptr<Store> store,
         std::unique_ptr<kube::KubeClient> kube_client);

  // (Re)starts the API server: a new service object on the same address.
  absl::Status StartAuth();
  absl::Status StartApi() ABSL_LOCKS_EXCLUDED(api_mu_);
  std::string MetricsText() ABSL_LOCKS_EXCLUDED(api_mu_);
  absl::Status Ready();
  std::string ReadyDetail();
  // The store's health and (HA) the leader, checked on their own thread
  // (store_health_), so /readyz answers at once even while etcd does not.
  CachedHealth::Result CheckStore();
  // /readyz/gateway: the gateway listens and has its routes (HA: read once
  // from the store); the store's health does not count.
  absl::Status GatewayReady();
  // HA: the options of the parts built in the initializer list.
  ha::DemandRelay::Options RelayOptions();
  HistoryRecorder::AppsFn HistoryApps();
  ha::ClusterMetrics::Options ClusterMetricsOptions();
  ha::MetricsPublisher::Options PublisherOptions();
  ha::StoreRouteSink::Options StoreRoutesOptions();
  // HA: the election's callbacks (on its thread).
  void OnElected(int64_t token);
  void OnDeposed();

  // Constant after construction, in construction order.
  const DaemonConfig config_;
  std::unique_ptr<DataDirLock> lock_;
  std::unique_ptr<Store> store_;
  // What the API and its tokens read and write: store_, through a gate that
  // answers at once while etcd does not (GatedStore; etcd only).
  std::unique_ptr<Store> api_store_;
  Store* ApiStore() { return api_store_ ? api_store_.get() : store_.get(); }
  // Every controller-side write goes through it: pass-through on a single
  // node; in HA mode refusing until this node leads, then fenced.
  FencedStore fenced_;
  ProcessRuntime runtime_;  // this node's instances
  // --runtime=kubernetes (docs/kubernetes.md): the instances are Pods.
  std::unique_ptr<kube::KubeClient> kube_client_;
  std::unique_ptr<kube::KubernetesRuntime> kube_runtime_;
  // HA; with kube_runtime_ it only tracks the nodes (no instance is
  // assigned to a node).
  std::unique_ptr<ha::ClusterRuntime> cluster_;
  // What the controller, the scaler and the API see: kube_runtime_, else
  // cluster_ or runtime_.
  Runtime* const instances_;
  WorkQueue queue_;
  DemandSignal demand_;
  std::unique_ptr<ha::DemandRelay> relay_;  // HA
  gateway::Gateway gateway_;
  gateway::GatewayRoutes routes_;
  std::unique_ptr<ha::RouteWatcher> route_watcher_;      // HA
  std::unique_ptr<ha::ClusterMetrics> cluster_metrics_;  // HA
  // What the scaler, the deployer and `top` read: cluster_metrics_ or the
  // gateway.
  MetricsSource* const metrics_;
  std::unique_ptr<ha::MetricsPublisher> publisher_;   // HA
  std::unique_ptr<ha::StoreRouteSink> store_routes_;  // HA
  // The reconciler's routes: store_routes_ or routes_.
  RouteSink* const route_sink_;
  EventRecorder events_;
  std::unique_ptr<EventRecorder> node_events_;  // HA: the node agent's
  deployer::CurlWebhookSender webhooks_;
  deployer::NotificationOutbox outbox_;
  deployer::Deployer deployer_;
  MultiScaler scaler_;
  AppReconciler reconciler_;
  Controller controller_;
  deployer::DeployerControl rollouts_;
  // The per-app history (docs/dashboard.md): what the dashboard plots and
  // `top`/`describe` summarise. Its own app cache, since the controller's
  // runs only while this node leads; recorded on every node. The gateway
  // asks it whether an app without a route exists (GatewayOptions::app_exists).
  LoadHistory history_;
  AppInformer history_apps_;
  HistoryRecorder history_recorder_;
  std::unique_ptr<ha::NodeAgent> agent_;    // HA
  std::unique_ptr<LeaderElector> elector_;  // HA
  std::unique_ptr<Compactor> compactor_;    // HA, the leader's
  // When this node last won or lost the lead (for /readyz).
  mutable absl::Mutex lead_mu_;
  bool leading_ ABSL_GUARDED_BY(lead_mu_) = false;
  absl::Time lead_changed_ ABSL_GUARDED_BY(lead_mu_);

  // The API is replaced by a fresh one (a new service object, same address)
  // when it stops accepting connections: see ApiHealth.
  mutable absl::Mutex api_mu_;
  // Authentication and audit (docs/auth.md); set by Start, before the API.
  std::unique_ptr<auth::TokenStore> tokens_;
  std::unique_ptr<auth::AuditLog> audit_;
  std::unique_ptr<auth::ApiAuth> api_auth_;
  // HA: the token this node calls the other nodes' APIs with.
  mutable absl::Mutex node_token_mu_;
  std::string node_token_ ABSL_GUARDED_BY(node_token_mu_);
  std::string NodeToken() const ABSL_LOCKS_EXCLUDED(node_token_mu_);
  std::unique_ptr<ApiServer> api_server_ ABSL_GUARDED_BY(api_mu_);
  // The API inside the process, for the dashboard (made with api_server_).
  std::shared_ptr<grpc::Channel> api_channel_ ABSL_GUARDED_BY(api_mu_);
  std::unique_ptr<TidalService> api_service_ ABSL_GUARDED_BY(api_mu_);
  // --listen, then the address the first start bound (a restart binds the
  // same port when --listen said 0).
  std::string api_address_ ABSL_GUARDED_BY(api_mu_);
  // Made once the API has its port (Start).
  std::unique_ptr<ApiHealth> api_health_;
  std::unique_ptr<CachedHealth> store_health_;
  // The API's TLS as gRPC gets it: --tls-cert/--tls-key through the mirror
  // (set in Start, before the API starts; read by StartApi).
  std::unique_ptr<TlsPairMirror> tls_mirror_;
  ApiTlsOptions api_tls_;
  AdminServer admin_;
  // The web dashboard (null with --dashboard-listen=off).
  std::unique_ptr<dashboard::Dashboard> dashboard_;
  // Where it is served (Version): its port once listening.
  int DashboardPort() const;

  // Owner's thread only (see the threading contract above).
  bool started_ = false;
  // Written by the owner's thread (main's or the election's), read anywhere.
  std::atomic<bool> controller_side_running_{false};
};

}  // namespace tidal
