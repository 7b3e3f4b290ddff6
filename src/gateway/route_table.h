#pragma once

// The gateway's routing state, free of any networking: endpoints with their
// outstanding-request counters and connect windows, immutable per-app route
// snapshots, and the per-app queue of requests waiting for capacity (activator
// at zero, every instance at its concurrency limit, or every instance's
// connect window full), and the gateway's table of apps by Host key.

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "gateway/gateway.h"
#include "gateway/request_metrics.h"

namespace tidal::gateway {

// Slow start of a new endpoint (see EndpointState::unconfirmed).
constexpr int kInitialConnectWindow = 4;
constexpr int kMaxConnectWindow = 1024;

// One instance as the balancer sees it. Identity is kept across route updates
// (same instance_id, host and port), so counters survive them. Counters are
// atomics: any thread.
struct EndpointState {
  EndpointState(uint64_t uid, const Endpoint& e, int64_t revision,
                std::shared_ptr<TrafficMetrics> revision_metrics)
      : uid(uid),
        instance_id(e.instance_id),
        host(e.host),
        port(e.port),
        revision(revision),
        revision_metrics(std::move(revision_metrics)) {}

  const uint64_t uid;  // unique per gateway, never reused
  const std::string instance_id;
  const std::string host;
  const int port;
  const int64_t revision;
  const std::shared_ptr<TrafficMetrics> revision_metrics;

  std::atomic<int> outstanding{0};  // leases held (requests at the instance)
  std::atomic<int> tunnels{0};      // upgraded connections among them
  std::atomic<bool> draining{false};
  std::atomic<bool> removed{false};       // no longer in the route
  std::atomic<int64_t> down_until_ns{0};  // after a failed connect

  // Connect window (slow start). An attempt is unconfirmed from its lease
  // until the instance has shown it took the request: a pooled connection
  // (at once), the response header, or the request bytes acknowledged by the
  // instance's kernel. A fresh connection that is not confirmed may be stuck
  // in (or dropped by) a full accept backlog, so at most `window` of them
  // exist per endpoint; more requests wait in the app's queue. The window
  // starts at kInitialConnectWindow, grows by one per confirmed attempt (it
  // doubles per round trip, as TCP's slow start) up to kMaxConnectWindow,
  // and halves (to at least 1) when a connect stalls.
  std::atomic<int> unconfirmed{0};
  std::atomic<int> window{kInitialConnectWindow};
};

// Immutable snapshot of one app's route: ready, non-draining endpoints, in
// the route's order.
struct AppRoute {
  struct Revision {
    int64_t revision = 0;
    int weight = 0;
    std::vector<std::shared_ptr<EndpointState>> ready;
  };
  int concurrency = 0;
  std::vector<Revision> revisions;
  int total_ready = 0;
  // Route's timeouts (0: the gateway's), in milliseconds.
  int64_t timeout_ms = 0;
  int64_t response_start_timeout_ms = 0;
  int64_t idle_timeout_ms = 0;
  bool h2 = false;  // Route::h2
  // No route has been set yet (an app state made for requests that came
  // before its route, Gateway::Impl::Provisional): `h2` is not known.
  bool provisional = false;
};

// A request waiting in an app's queue.
class Waiter {
 public:
  virtual ~Waiter() = default;
  // Hands the waiter a lease (or null: the app was removed). Called from any
  // thread, without locks held: implementations post to their own thread.
  virtual void Dispatch(std::shared_ptr<EndpointState> lease) = 0;

 private:
  friend class AppState;
  // Guarded by the owning AppState's mu_.
  bool queued_ = false;
  // When it was queued while the app had no ready endpoint (held by the
  // activator: a cold start), steady clock; 0: not held.
  int64_t held_since_ns_ = 0;
};

// Requests held by the activator until the first instance of a scale from
// zero took them (AppState::cold_starts).
struct ColdStarts {
  // Scales from zero that served held requests: counted when the first
  // held request gets an instance.
  uint64_t total = 0;
  // How long each served held request waited, request_metrics.h's buckets.
  std::array<uint64_t, kBuckets> wait_buckets{};
  double wait_sum_s = 0;
};

// Settings and hooks shared by every AppState of a gateway.
struct AppConfig {
  int shards = 1;
  int queue_size = 1000;
  std::function<void(const std::string&, const std::string&)> on_demand;
  // Signalled when a draining or removed endpoint's last request ends.
  absl::Mutex* drain_mu = nullptr;
  absl::CondVar* drain_cv = nullptr;
};

// Mutable, long-lived state of one app: the current route, the endpoint
// identities, the waiting queue, the metrics. Thread-safe.
class AppState {
 public:
  AppState(std::string ns, std::string app, const AppConfig* config,
           int64_t created_ns);

  const std::string ns;
  const std::string app;
  TrafficMetrics metrics;  // whole app, from arrival to response end
  std::atomic<int64_t> last_request_ns{0};

  enum class Outcome { kLeased, kQueued, kOverflow, kGone };
  // How an unconfirmed attempt ended (EndpointState::unconfirmed).
  enum class Attempt {
    kConfirmed,  // the instance took the request: the window grows
    kStalled,    // the connect stalled: the window halves
    kAbandoned,  // neither (pooled connection, error, client gone)
  };

  // Reserves an endpoint of `route` (no lock): a revision by weight, then
  // with a concurrency limit the first ready endpoint under it in the route's
  // order (instances are filled in order), without one the less loaded of two
  // random ready endpoints; either with room in its connect window. Skips
  // `exclude`. Null if none is available. A lease starts unconfirmed: end it
  // with Settle() (before or with Release()).
  static std::shared_ptr<EndpointState> TryAcquire(
      const AppRoute& route, const std::vector<const EndpointState*>& exclude,
      uint64_t* rng, int64_t now_ns);

  // TryAcquire on the fast path, else queues `waiter` (kQueued: Dispatch will
  // be called, possibly at once), or kOverflow / kGone. `retry`: a request
  // whose connect stalled goes back to the front of the queue, over the
  // queue's size limit (it was admitted once).
  Outcome AcquireOrWait(const AppRoute& snapshot,
                        const std::shared_ptr<Waiter>& waiter,
                        const std::vector<const EndpointState*>& exclude,
                        uint64_t* rng, int64_t now_ns,
                        std::shared_ptr<EndpointState>* lease,
                        bool retry = false);

  // Ends the unconfirmed state of an attempt on `e` (once per lease); moves
  // its connect window and hands room to waiters.
  void Settle(EndpointState& e, Attempt how);

  // Removes a queued waiter (timeout). False if it was already dispatched.
  bool Cancel(Waiter* waiter);

  // Ends a lease; hands freed capacity to waiters.
  void Release(const std::shared_ptr<EndpointState>& lease);

  // Applies a new route; returns the new snapshot. `next_uid` numbers new
  // endpoints. Dispatches waiters that can now be served.
  std::shared_ptr<const AppRoute> Update(
      const Route& route, std::atomic<uint64_t>* next_uid,
      std::vector<std::shared_ptr<EndpointState>>* added);
  // The app is gone: waiters get null leases, endpoints are marked removed.
  void Remove();

  std::shared_ptr<const AppRoute> route() const;
  int queued() const { return queued_count_.load(std::memory_order_relaxed); }
  int held() const;  // queued while the app has no ready endpoint
  std::vector<std::pair<int64_t, std::shared_ptr<TrafficMetrics>>>
  RevisionMetrics() const;
  std::shared_ptr<TrafficMetrics> RevisionMetrics(int64_t revision) const;
  // The revisions /metrics shows: those in the route and the app's live
  // ones (Route::live_revisions). A revision that is neither leaves
  // /metrics at once; its figures stay for RevisionMetrics (the scaler, a
  // rollout's analysis, HA traffic reports) until forgotten.
  std::vector<std::pair<int64_t, std::shared_ptr<TrafficMetrics>>>
  ExposedRevisionMetrics() const;
  ColdStarts cold_starts() const;

  // Closes one second of every metric of the app.
  void Tick(absl::Time second, int64_t now_ns);

 private:
  using Dispatches = std::vector<
      std::pair<std::shared_ptr<Waiter>, std::shared_ptr<EndpointState>>>;
  void DispatchLocked(Dispatches* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Run(Dispatches& d);

  const AppConfig* const config_;
  const int64_t created_ns_;
  std::atomic<int> queued_count_{0};

  mutable absl::Mutex mu_;
  std::shared_ptr<const AppRoute> route_ ABSL_GUARDED_BY(mu_);
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  bool demand_signalled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t dispatch_rng_ ABSL_GUARDED_BY(mu_) = 0x9e3779b97f4a7c15ull;
  std::deque<std::shared_ptr<Waiter>> queue_ ABSL_GUARDED_BY(mu_);
  // instance_id -> endpoint, for every endpoint in the route (draining too).
  absl::flat_hash_map<std::string, std::shared_ptr<EndpointState>> endpoints_
      ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::shared_ptr<TrafficMetrics>> revision_metrics_
      ABSL_GUARDED_BY(mu_);
  // When each revision was last in the route (or live): a revision out of
  // it for longer than the metrics keep samples (15 min) is forgotten.
  std::map<int64_t, int64_t> revision_routed_ns_ ABSL_GUARDED_BY(mu_);
  // What ExposedRevisionMetrics shows.
  std::set<int64_t> exposed_revisions_ ABSL_GUARDED_BY(mu_);
  ColdStarts cold_starts_ ABSL_GUARDED_BY(mu_);
  // A request was held at zero and no held request was served since.
  bool cold_start_pending_ ABSL_GUARDED_BY(mu_) = false;
};

// Every app of a gateway by Host key "<app>.<ns>": an immutable snapshot,
// split into shards so that adding or removing an app copies one small
// shard, not the whole table. Readers hold a shared_ptr to a snapshot; the
// gateway publishes a new one (copy-on-write) per added or removed app.
struct RouteTable {
  struct Entry {
    std::shared_ptr<AppState> state;  // holds the app's current route snapshot
  };
  using Shard = absl::flat_hash_map<std::string, Entry>;  // key "<app>.<ns>"
  static constexpr size_t kShards = 256;

  RouteTable() {
    auto empty = std::make_shared<const Shard>();
    shards.fill(empty);
  }
  static size_t ShardOf(absl::string_view key) {
    return absl::Hash<absl::string_view>{}(key) % kShards;
  }
  const Entry* Find(absl::string_view key) const {
    const Shard& shard = *shards[ShardOf(key)];
    auto it = shard.find(key);
    return it == shard.end() ? nullptr : &it->second;
  }
  template <typename F>
  void ForEach(F f) const {
    for (const auto& shard : shards) {
      for (const auto& [key, entry] : *shard) f(entry);
    }
  }

  uint64_t version = 0;
  std::array<std::shared_ptr<const Shard>, kShards> shards;
};

uint64_t NextRandom(uint64_t* state);

}  // namespace tidal::gateway
