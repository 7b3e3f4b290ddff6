#pragma once

// MultiScaler: the reconciler's ReplicaPlanner over the scaler library. It
// keeps one scaler::AppScaler per app that has `spec.scaling` (and no fixed
// `spec.replicas`), recreated when the scaling spec changes and forgotten
// when the app is deleted. A tick thread feeds every scaled app's scaler with
// the gateway's one-second samples, the runtime's instance counts, the
// requests the gateway holds and measured start times, then asks for a
// decision; when the decision changes it calls `on_change(key)` (tidald
// adds the key to the controller's work queue), and the reconciler reads it
// back through Desired(), which never advances any state. Wake() decides at
// once for an app the gateway holds requests for (scale from zero without
// waiting for a tick); while started, the MultiScaler listens to a
// DemandSignal for those wake-ups. Everything it reads from outside comes
// through the Inputs given to its constructor (interfaces and functions): it
// knows nothing of the controller, the gateway or the API. Ticks are aligned to
// whole multiples of the tick plus a small offset (Options::tick_offset), so
// each sees the second the gateway just closed; a changed decision is reported
// as soon as that app's tick has run. Learned state (AppScaler::SaveState) is
// kept in the store under keys::ScalerStateKey every few minutes and on Stop(),
// and restored when a scaler is created.
//
// Thread-safe: Desired/Forget (reconcile workers), Wake (gateway I/O
// threads), the tick thread and RunDue (tests) may run concurrently. Start
// and Stop are called by the owner's thread and may alternate (the
// controller side stopped and started again): Stop saves every scaler's
// state, and the scalers carry on from it after the next Start. Apps
// without a scaling section cost one hash lookup per reconcile.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "runtime/runtime.h"
#include "scaler/demand_signal.h"
#include "scaler/metrics_source.h"
#include "scaler/replica_planner.h"
#include "store/store.h"

namespace tidal {

namespace scaler {
class AppScaler;
}  // namespace scaler
class UtilizationSampler;

class MultiScaler : public ReplicaPlanner {
 public:
  // Requests the gateway holds for an app (activator and concurrency queue).
  using QueuedFn =
      std::function<int(const std::string& ns, const std::string& name)>;
  // Called with "ns/name" when an app's decision changes (outside any lock).
  using OnChangeFn = std::function<void(const std::string& key)>;
  // What the MultiScaler reads and tells (none owned; all outlive it).
  struct Inputs {
    Store* store = nullptr;            // learned state (null: not kept)
    Runtime* runtime = nullptr;        // instances and their usage (required)
    MetricsSource* metrics = nullptr;  // request samples (null: none)
    QueuedFn queued;                   // requests held per app (null: none)
    Clock* clock = nullptr;            // decisions' time (required)
    OnChangeFn on_change;              // changed decisions (null: nobody told)
    DemandSignal* demand = nullptr;    // wake-ups, heard while started
  };
  struct Options {
    // How often each scaler's learned state is written to the store.
    absl::Duration save_interval = absl::Minutes(5);
    // Longest sleep of the tick thread between checks for due apps.
    absl::Duration max_idle_wait = absl::Milliseconds(500);
    // Ticks fall on whole multiples of the app's tick (Unix time) plus this
    // offset (at most half a tick): the gateway closes each second at its
    // boundary, so every tick sees the second that has just ended.
    absl::Duration tick_offset = absl::Milliseconds(100);
  };

  MultiScaler(Inputs inputs, Options options);
  explicit MultiScaler(Inputs inputs)
      : MultiScaler(std::move(inputs), Options()) {}
  ~MultiScaler() override;
  MultiScaler(const MultiScaler&) = delete;
  MultiScaler& operator=(const MultiScaler&) = delete;

  // Starts the tick thread (real time between ticks; decisions use `clock`)
  // and listens to the demand signal. No effect when started already.
  void Start();
  // Stops listening and the tick thread, and saves every scaler's state.
  // Idempotent; Start may follow.
  void Stop();

  // ReplicaPlanner. Desired creates (or recreates) the app's scaler when it
  // first sees the app or its scaling spec changed; otherwise it only returns
  // the latest decision.
  Plan Desired(const tidal::v1::App& app,
               const std::vector<tidal::v1::Instance>& instances) override;
  void Forget(const std::string& ns, const std::string& name) override;

  // The gateway holds requests for the app: decide for it now.
  void Wake(const std::string& ns, const std::string& name);

  // Runs the tick of every app whose tick is due at clock->Now(). The tick
  // thread calls it; tests with a fake clock call it directly.
  void RunDue();
  // Writes every scaler's state to the store now.
  void SaveAll();

  // Scaled apps known (for tests and metrics).
  size_t size() const;

 private:
  // One app's scaler. Defined here (not only declared) so that clang's
  // thread-safety analysis can check ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu).
  struct Entry {
    // Constant after creation.
    std::string ns, name, key, fingerprint;
    absl::Duration tick;
    // Read and written by RunDue only (under the planner's mu_ for the
    // snapshot); atomic so a concurrent Wake never races on it.
    std::atomic<int64_t> next_tick_ns{0};

    absl::Mutex mu;
    bool retired ABSL_GUARDED_BY(mu) = false;  // forgotten or replaced
    std::unique_ptr<scaler::AppScaler> scaler ABSL_GUARDED_BY(mu);
    absl::Time last_sample ABSL_GUARDED_BY(mu);
    absl::Time last_save ABSL_GUARDED_BY(mu);
    std::string saved_state ABSL_GUARDED_BY(mu);
    absl::flat_hash_set<std::string> ready_seen ABSL_GUARDED_BY(mu);
    bool has_plan ABSL_GUARDED_BY(mu) = false;
    Plan plan ABSL_GUARDED_BY(mu);
    // Metrics cpu and memory only.
    std::unique_ptr<UtilizationSampler> usage ABSL_GUARDED_BY(mu);
  };

  // Feeds metrics and counts, decides, and reports whether the published
  // plan changed.
  bool Step(Entry* e, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu);
  void Publish(Entry* e, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu);
  void Save(Entry* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu);
  // The first tick time of `e` strictly after `now`, in Unix nanoseconds.
  int64_t NextTickNs(const Entry& e, int64_t now_ns) const;
  std::shared_ptr<Entry> Create(const tidal::v1::App& app,
                                const std::string& fingerprint,
                                const std::vector<tidal::v1::Instance>& insts,
                                Entry* previous);
  void Loop();

  // Constant after construction.
  Store* const store_;
  Runtime* const runtime_;
  MetricsSource* const metrics_;
  const QueuedFn queued_;
  Clock* const clock_;
  const OnChangeFn on_change_;
  DemandSignal* const demand_;
  const Options options_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> apps_
      ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

}  // namespace tidal
