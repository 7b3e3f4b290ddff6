#pragma once

// Gateway::Impl: what the I/O threads share. The route table (copy-on-write
// snapshots, published under mu_ and read lock-free), the instances by id,
// the connection budget, the gateway-wide counters, and the once-a-second
// metrics tick. Internal to the gateway: Worker (worker.h) and Session
// (session.h) reach it through their worker.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "gateway/connection_budget.h"
#include "gateway/gateway.h"
#include "gateway/route_table.h"

namespace tidal::gateway {

struct Worker;
class TlsCerts;

class Gateway::Impl {
 public:
  explicit Impl(GatewayOptions o);
  ~Impl();

  absl::Status Start();
  void Stop();
  void SetRoute(const Route& route);
  void RemoveRoute(const std::string& ns, const std::string& app);
  std::shared_ptr<AppState> FindApp(const std::string& ns,
                                    const std::string& app) const;
  std::shared_ptr<EndpointState> FindInstance(const std::string& id) const;
  // The app of `key` ("<app>.<ns>") when the table has no route for it:
  // a provisional one (no instance) if opts.app_exists says the app exists,
  // else null. Safe on I/O threads.
  std::shared_ptr<AppState> Provisional(const std::string& key);
  std::string PrometheusText() const;
  std::shared_ptr<const RouteTable> CurrentTable() const {
    return std::atomic_load(&table_);
  }
  void TickLoop();

  // Constant after construction.
  GatewayOptions opts;
  AppConfig config;
  std::shared_ptr<spdlog::logger> log;

  // Sockets the gateway holds or has reserved (opts.max_connections).
  ConnectionBudget budget;
  // Client connections per address (opts.max_connections_per_client), and
  // those waiting for a request (opts.max_idle_connections).
  ClientCounts client_counts;
  std::atomic<int64_t> idle_connections{0};
  std::atomic<uint64_t> idle_closed_total{0};
  std::atomic<uint64_t> client_refused_total{0};  // per-address limit
  std::vector<std::unique_ptr<Worker>> workers;   // set by Start
  int port = 0;
  int tls_port = -1;
  // The HTTPS listener's certificates (null without one); reloaded by the
  // ticker every opts.tls_reload_interval.
  std::unique_ptr<TlsCerts> tls_certs;
  std::atomic<uint64_t> table_version{0};
  std::atomic<uint64_t> unknown_host_total{0};
  std::atomic<uint64_t> client_closed_total{0};
  std::atomic<uint64_t> connections_refused_total{0};
  std::atomic<uint64_t> accept_errors_total{0};
  std::atomic<uint64_t> tls_handshake_errors_total{0};
  std::atomic<uint64_t> tunnels_total{0};  // upgraded connections opened
  std::atomic<int64_t> tunnels_open{0};    // and open now
  std::atomic<uint64_t> tunnels_going_away_total{0};  // closed by a drain
  std::atomic<uint64_t> next_uid{1};

  mutable absl::Mutex drain_mu;
  absl::CondVar drain_cv;

 private:
  void PublishLocked(std::shared_ptr<RouteTable> t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes `key` out of the table; its state, or null if it had none.
  std::shared_ptr<AppState> EraseLocked(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops provisional routes that no route replaced within queue_timeout.
  void ExpireProvisional();

  mutable absl::Mutex mu_;
  std::shared_ptr<const RouteTable>
      table_;  // written under mu_, read with atomic_load
  absl::flat_hash_map<std::string, std::weak_ptr<EndpointState>> instances_
      ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  // Provisional routes (Provisional) by key, with when they were made
  // (MonoMs).
  absl::flat_hash_map<std::string, int64_t> provisional_ ABSL_GUARDED_BY(mu_);

  absl::Mutex tick_mu_;
  bool stopping_ ABSL_GUARDED_BY(tick_mu_) = false;
  std::thread ticker_;
};

}  // namespace tidal::gateway
