#pragma once

// Controller: wires the informer, the work queue and the AppReconciler
// together. Informer changes, runtime instance changes, the gateway's
// scale-from-zero wake-ups and a periodic resync all enqueue app keys; a pool
// of workers reconciles them, retrying failures with backoff. Runtime events
// become app Events. The work queue is given, not owned: others (the
// gateway's on-demand hook, the scaler, rollout commands) add keys to it
// directly. Start and Stop may alternate (a controller that loses and wins
// back leadership); while stopped the queue is shut down, so keys added then
// are dropped, and Start queues every app again. Thread-safe, except that
// Start and Stop are called by the owner's thread.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controller/app_reconciler.h"
#include "controller/events.h"
#include "controller/informer.h"
#include "controller/work_queue.h"
#include "runtime/runtime.h"
#include "store/store.h"

namespace tidal {

class Controller {
 public:
  struct Options {
    int workers = 4;
    absl::Duration resync = absl::Minutes(5);
  };

  // `queue`: the keys to reconcile (not owned; it outlives the controller).
  Controller(Store* store, Runtime* runtime, AppReconciler* reconciler,
             EventRecorder* events, WorkQueue* queue, Options options);
  ~Controller();

  // Registers the runtime listener, lists the apps and starts the workers
  // (OK without effect when started already).
  absl::Status Start();
  // Stops the workers (in-flight reconciles finish first), the informer and
  // the runtime listener, and shuts the queue down. Idempotent; Start may
  // follow.
  void Stop();

  // Asks for a reconcile of "namespace/name" now.
  void Enqueue(const std::string& key);
  // Asks for a reconcile of every known app (and of apps that only the
  // runtime still knows, so orphans are stopped).
  void EnqueueAll();

  WorkQueue* queue() { return queue_; }
  AppInformer* informer() { return &informer_; }

 private:
  void Worker();
  void Resync();
  void OnInstanceChange(const InstanceChange& change);

  // Constant after construction.
  Runtime* const runtime_;
  AppReconciler* const reconciler_;
  EventRecorder* const events_;
  WorkQueue* const queue_;
  const Options options_;

  AppInformer informer_;
  // Owner's thread only (Start, Stop).
  bool running_ = false;
  std::vector<std::thread> threads_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // wakes the resync thread
};

}  // namespace tidal
