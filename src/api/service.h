#pragma once

// TidalService: the tidal.v1.Tidal API (proto/tidal/v1/api.proto) over a
// Store, a Runtime and a Clock. Apps live in the store at keys::App(ns, name)
// as serialized tidal.v1.App with metadata.resource_version left 0 (it is
// filled from the store's revision on every read). Apply writes every
// document of one request in one CAS transaction; Delete only marks an app
// (metadata.deletion_timestamp) so the controller can stop its instances and
// then remove the key.
//
// The methods below are the whole behaviour, callable in-process; StartServer
// serves them over gRPC. gRPC types stay in service.cc.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/api_limits.h"
#include "api/api_tls.h"
#include "api/limits.h"
#include "api/rollout_control.h"
#include "common/clock.h"
#include "runtime/runtime.h"
#include "scaler/metrics_source.h"
#include "store/store.h"
#include "tidal/v1/api.pb.h"

namespace grpc {
class Channel;
}

namespace tidal {

namespace auth {
class ApiAuth;
}
class SecretBox;
class LoadHistory;

struct ServiceOptions {
  std::string version = TIDAL_VERSION;
  std::string store_name =
      "sqlite";  // Version(): which store backs this tidald
  std::string runtime_name = "process";  // Version(): which runtime
  // GetCluster(): whether this tidald is one node of a highly available
  // control plane (the etcd store; docs/ha.md), and its node name.
  bool ha = false;
  std::string node_name;
  // DeleteNode(): when this process last heard from a node (nullopt: never),
  // and how long after that a node counts as gone (tidald
  // --node-lost-timeout). Unset: every node counts as live.
  std::function<std::optional<absl::Time>(const std::string& node)>
      node_last_seen;
  absl::Duration node_lost_timeout = absl::Seconds(30);
  // GetCluster(): a node silent longer than this is NotReady (placement
  // skips it: ClusterRuntime::kFreshHeartbeat).
  absl::Duration node_quiet_after = absl::Seconds(3);
  int apply_attempts =
      5;  // whole-apply retries on a concurrent writer's conflict
  // How often Watch and Logs(follow) look for cancellation and new data.
  absl::Duration poll_interval = absl::Milliseconds(100);
  // tidald's limits on specs, checked by Apply and Scale (tidald
  // --max-instances-per-app, --port-range, --allow-private-webhooks).
  spec::ValidationOptions validation = spec::DefaultServerOptions();
  // The most instances the apps of one namespace may run together, by their
  // specs (spec::MaxInstances; apps being deleted do not count); 0: no
  // limit. tidald --max-instances-per-namespace.
  int64_t max_instances_per_namespace = 0;
  // Optional collaborators (not owned; they outlive the service). Without
  // them Top and Rollout/ListRevisions answer FailedPrecondition.
  MetricsSource* metrics = nullptr;
  RolloutControl* rollouts = nullptr;
  // Seals the values of Secrets (docs/secrets.md). Without it Apply refuses
  // Secret documents (FailedPrecondition); reading names, keys and sizes
  // and deleting need no key.
  const SecretBox* secret_box = nullptr;
  // The per-app history History() serves (docs/dashboard.md); without it
  // History answers FailedPrecondition.
  const LoadHistory* history = nullptr;
  // Version(): where this tidald serves the dashboard (null or port 0:
  // nowhere).
  std::function<int()> dashboard_port;
  std::string dashboard_path;
};

// Thread-safe: every method may be called from many threads at once (the
// gRPC server does). Streaming methods return when `cancelled()` becomes
// true, when Stop() is called or on error.
class TidalService {
 public:
  // `store` and `clock` are required; `runtime` may be null (ListInstances
  // and Logs then fail with FailedPrecondition). None is owned.
  TidalService(Store* store, Runtime* runtime, Clock* clock,
               ServiceOptions options = {});
  ~TidalService();
  TidalService(const TidalService&) = delete;
  TidalService& operator=(const TidalService&) = delete;

  // Called for each object of an Apply once the request is parsed and
  // valid, before the store is read (resource "apps" or "secrets", its
  // namespace and name): an error (PermissionDenied) ends the Apply with
  // nothing written.
  using Admit = std::function<absl::Status(const std::string& resource,
                                           const std::string& ns,
                                           const std::string& name)>;
  absl::StatusOr<v1::ApplyResponse> Apply(const v1::ApplyRequest& req,
                                          const Admit& admit = nullptr);
  absl::StatusOr<v1::App> Get(const v1::GetRequest& req);
  absl::StatusOr<v1::ListResponse> List(const v1::ListRequest& req);
  absl::StatusOr<v1::DeleteResponse> Delete(const v1::DeleteRequest& req);
  absl::StatusOr<v1::ListInstancesResponse> ListInstances(
      const v1::ListInstancesRequest& req);
  absl::StatusOr<v1::ListEventsResponse> ListEvents(
      const v1::ListEventsRequest& req);
  v1::VersionResponse Version() const;
  // The leader and the nodes, read from the store (HA), or this tidald
  // alone (single node).
  absl::StatusOr<v1::GetClusterResponse> GetCluster(
      const v1::GetClusterRequest& req);
  // Deletes a node's records (HA); FailedPrecondition while it is live.
  absl::StatusOr<v1::DeleteNodeResponse> DeleteNode(
      const v1::DeleteNodeRequest& req);
  absl::StatusOr<v1::App> Scale(const v1::ScaleRequest& req);
  absl::StatusOr<v1::TopResponse> Top(const v1::TopRequest& req);
  // The apps' recorded load and replicas (ServiceOptions::history), apps
  // sorted by namespace and name; with `visible`, only the namespaces it
  // admits are read at all.
  absl::StatusOr<v1::HistoryResponse> History(
      const v1::HistoryRequest& req,
      const std::function<bool(const std::string& ns)>& visible = nullptr);
  absl::StatusOr<v1::App> Rollout(const v1::RolloutRequest& req);
  absl::StatusOr<v1::ListRevisionsResponse> ListRevisions(
      const v1::ListRevisionsRequest& req);
  // Secrets (created and updated by Apply): never with values, keys and
  // sizes only. DeleteSecret removes the secret at once (dry_run: checks
  // that it exists); running instances keep the values they started with.
  absl::StatusOr<v1::Secret> GetSecret(const v1::GetRequest& req);
  absl::StatusOr<v1::ListSecretsResponse> ListSecrets(
      const v1::ListSecretsRequest& req);
  absl::StatusOr<v1::Secret> DeleteSecret(const v1::DeleteRequest& req);

  // `send` returns false when the client is gone (the stream then ends).
  using Cancelled = std::function<bool()>;
  absl::Status Watch(const v1::WatchRequest& req,
                     const std::function<bool(const v1::WatchEvent&)>& send,
                     const Cancelled& cancelled);
  absl::Status Logs(const v1::LogsRequest& req,
                    const std::function<bool(const v1::LogChunk&)>& send,
                    const Cancelled& cancelled);

  // Ends every running Watch and Logs stream (server shutdown).
  void Stop() { stopping_.store(true); }
  bool stopping() const { return stopping_.load(); }

  // The annotation that records `apply --message`.
  static constexpr const char* kChangeCauseAnnotation =
      "tidal.dev/change-cause";

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> stopping_{false};
  MetricsSource* const metrics_;    // options.metrics
  RolloutControl* const rollouts_;  // options.rollouts
};

// A running gRPC server for a TidalService. Shuts down when destroyed.
// Thread-safe.
class ApiServer {
 public:
  ~ApiServer();
  // The port actually bound (useful with port 0).
  int port() const;
  // Stops the service's streams, then the server (waits at most `grace` for
  // calls in flight before cancelling them).
  void Shutdown(absl::Duration grace = absl::Seconds(2));
  // Blocks until Shutdown() (from another thread) has finished.
  void Wait();
  // A channel to this server inside the process (no socket, no TLS): what
  // the dashboard calls the API through, with the caller's token, so every
  // check and audit line is the API's own. Dead once the server shuts down.
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // tidal_api_calls_in_flight{kind} and tidal_api_calls_refused_total{kind}
  // (kind: apply, read, stream) in the Prometheus text format, with HELP and
  // TYPE. The counts are this server's: they start at zero when the API is
  // restarted (Prometheus' rate() takes a counter reset in its stride).
  std::string MetricsText() const;

  struct Impl;
  explicit ApiServer(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Serves `service` (not owned; must outlive the server) on `address`
// ("127.0.0.1:7070", "0.0.0.0:0", "[::1]:0"), over TLS when `tls` says so
// (the files are checked first: InvalidArgument naming the file). Unavailable
// when the address cannot be bound. `auth` (not owned; may be null: every
// call allowed, nothing audited) authenticates, authorizes and audits each
// call (docs/auth.md). `limits` bounds the messages it receives and the
// calls in flight (api_limits.h).
absl::StatusOr<std::unique_ptr<ApiServer>> StartServer(
    const std::string& address, TidalService* service,
    const ApiTlsOptions& tls = {}, const auth::ApiAuth* auth = nullptr,
    const ApiLimits& limits = {});

}  // namespace tidal
