#pragma once

// DemandRelay: scale from zero on any node (highly available mode). A
// request held at zero on a standby's gateway must start an instance, and
// only the leader scales: the demand goes through the store.
//
// Node side (every node): Report(ns, app, held) from the gateway's on_demand
// hook records that this node holds requests for the app; a writer thread
// publishes "/demand/<node>/<ns>/<app>" (tidal.v1.DemandRecord): new demand
// at once, later changes of the count at most once per `min_interval` per
// app (a burst of 100 held requests is a few writes), and deletes it once
// nothing is held. With `held` set (the gateway's Queued) it refreshes the
// counts of the apps it holds requests for every `poll`. Start() first
// deletes what an earlier run of this node left.
//
// Leader side: StartWatching() lists and watches "/demand/"; every new
// demand of another node (a record appearing, or its count going from 0 to
// more) calls `on_demand(ns, app)` (the lead wires DemandSignal::Notify and
// the work queue). Held(ns, app) sums what the other live nodes hold (the
// scaler's `queued` input, added to the local gateway's).
//
// Thread-safe. Report never blocks on the store.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "store/store.h"

namespace tidal::ha {

class DemandRelay {
 public:
  using HeldFn =
      std::function<int(const std::string& ns, const std::string& app)>;
  using DemandFn =
      std::function<void(const std::string& ns, const std::string& app)>;
  using LiveNodesFn = std::function<std::vector<std::string>()>;

  struct Options {
    std::string node;        // this node's name (required)
    Clock* clock = nullptr;  // rate limit (required)
    // Node side.
    HeldFn held;  // requests the local gateway holds (null: Report only)
    absl::Duration min_interval = absl::Milliseconds(500);
    absl::Duration poll = absl::Milliseconds(100);  // real time
    // Leader side.
    DemandFn on_demand;      // new demand from another node
    LiveNodesFn live_nodes;  // null: every node counts
    absl::Duration retry = absl::Milliseconds(200);  // after store errors
  };

  DemandRelay(Store* store, Options options);
  ~DemandRelay();
  DemandRelay(const DemandRelay&) = delete;
  DemandRelay& operator=(const DemandRelay&) = delete;

  // Node side: starts the writer thread. Stop() ends it (Stop also ends
  // watching).
  void Start();
  void Stop();
  // The local gateway holds `held` requests for ns/app (0: none).
  void Report(const std::string& ns, const std::string& app, int held);

  // Leader side.
  void StartWatching();
  void StopWatching();
  // Requests held for ns/app by the other live nodes.
  int Held(const std::string& ns, const std::string& app);

  // Store writes of the node side so far (tests).
  int64_t writes() const;

 private:
  struct Local {
    int desired = 0;
    int written = 0;  // what the store holds (0: no record)
    absl::Time last_write = absl::InfinitePast();
    bool cleared = false;  // Start's cleanup done
  };
  void WriteLoop();
  void WatchLoop();
  bool Wait(absl::Duration d, bool watching);
  // Applies a listed or watched record; returns whether it is new demand.
  bool ApplyRecord(const std::string& key, const std::string& value,
                   std::string* ns, std::string* app)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Store* const store_;
  const Options options_;
  const std::string own_prefix_;  // "/demand/<node>/"

  mutable absl::Mutex mu_;
  // Node side, by "ns/app".
  std::map<std::string, Local> local_ ABSL_GUARDED_BY(mu_);
  bool kicked_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread writer_;
  // Leader side: key -> (node, "ns/app", held).
  struct Remote {
    std::string node, app_key;
    int held = 0;
  };
  std::map<std::string, Remote> remote_ ABSL_GUARDED_BY(mu_);
  bool watch_stopping_ ABSL_GUARDED_BY(mu_) = false;
  Watch* watch_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread watcher_;
};

}  // namespace tidal::ha
