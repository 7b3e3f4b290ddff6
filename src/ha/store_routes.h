#pragma once

// StoreRouteSink: the leader's RouteSink in highly available mode. The
// reconciler's routes (ready instances by revision, the rollout's weights)
// are computed as on a single node (gateway::GatewayRoutes) and published to
// the store as tidal.v1.RouteRecord at keys::Route(ns, app), only when they
// change; every node's RouteWatcher applies them to its own gateway. Writes
// go through the injected Store (the lead passes the leader's fenced store)
// on a writer thread, latest route per app wins, failed writes are retried.
//
// Drain: the instance leaves the published route at once; `stop` runs when
// every gateway has applied a route without it and has no request in flight
// to it, or when `grace` (on the injected Clock) passes. "Every gateway":
// the InFlightView objects given (this node's RouteWatcher, and
// ClusterMetrics for the other live nodes, from their metrics reports: the
// routes revision each has applied and its in-flight requests per
// instance). While the write that removes the instance is not committed, or
// some gateway has not confirmed it, the instance counts as busy.
//
// Thread-safe. The writer and drainer threads run from construction to
// destruction; the destructor stops every instance still draining at once.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gateway/route_sink.h"
#include "ha/in_flight_view.h"
#include "store/store.h"

namespace tidal::ha {

class StoreRouteSink : public RouteSink {
 public:
  struct Options {
    Clock* clock = nullptr;  // drain grace (required)
    // The gateways a drain waits for (not owned; outlive the sink). Empty:
    // a drain waits for the grace period.
    std::vector<InFlightView*> views;
    // Real time between retries of a failed write.
    absl::Duration retry = absl::Milliseconds(200);
  };

  StoreRouteSink(Store* store, Options options);
  ~StoreRouteSink() override;
  StoreRouteSink(const StoreRouteSink&) = delete;
  StoreRouteSink& operator=(const StoreRouteSink&) = delete;

  void UpdateRoute(const tidal::v1::App& app,
                   const std::vector<tidal::v1::Instance>& serving) override;
  void RemoveRoute(const std::string& ns, const std::string& name) override;
  void Drain(const tidal::v1::Instance& instance, absl::Duration grace,
             std::function<void()> stop) override;
  bool IsDraining(const std::string& instance_id) override;
  void SetWeights(const std::string& ns, const std::string& name,
                  std::vector<std::pair<int64_t, int>> weights) override;

  // Forgets what it believes the store holds, so the next route of each
  // app is compared with the store again. Call when this node becomes the
  // leader (another leader may have written meanwhile).
  void Resync();

  // Writes committed (tests, metrics).
  int64_t writes() const;

  class Publisher;  // the store-backed RouteTarget (store_routes.cc)

 private:
  std::unique_ptr<Publisher> publisher_;
  std::unique_ptr<gateway::GatewayRoutes> routes_;  // over publisher_
};

}  // namespace tidal::ha
