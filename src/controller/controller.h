#pragma once

// Controller: wires the informer, the work queue and the AppReconciler
// together. Informer changes, runtime instance changes, the gateway's
// scale-from-zero wake-ups and a periodic resync all enqueue app keys; a pool
// of workers reconciles them, retrying failures with backoff. Runtime events
// become app Events. Thread-safe.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
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

  Controller(Store* store, Runtime* runtime, AppReconciler* reconciler,
             EventRecorder* events, Options options);
  ~Controller();

  // Registers the runtime listener, lists the apps and starts the workers.
  absl::Status Start();
  // Stops the workers (in-flight reconciles finish first).
  void Stop();

  // Asks for a reconcile of "namespace/name" now.
  void Enqueue(const std::string& key);
  // Asks for a reconcile of every known app (and of apps that only the
  // runtime still knows, so orphans are stopped).
  void EnqueueAll();

  WorkQueue* queue() { return &queue_; }
  AppInformer* informer() { return &informer_; }

 private:
  void Worker();
  void Resync();
  void OnInstanceChange(const InstanceChange& change);

  // Constant after construction.
  Store* const store_;
  Runtime* const runtime_;
  AppReconciler* const reconciler_;
  EventRecorder* const events_;
  const Options options_;

  WorkQueue queue_;
  AppInformer informer_;
  absl::Notification stop_;
  std::vector<std::thread> threads_;
};

}  // namespace tidal
