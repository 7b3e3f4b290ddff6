#pragma once

// DemandSignal: scale-from-zero wake-ups from the gateway to the scaler.
//
// It breaks the gateway <-> scaler cycle by ordering. The MultiScaler reads
// the gateway's request metrics and held-request counts, so it is built
// after the gateway; the gateway's on_demand hook must wake the scaler, so
// the hook cannot name the scaler. This small object is built before both:
// the gateway's hook notifies it, and the MultiScaler (given it at
// construction) listens to it while it is started. A notification nobody
// listens to (the scaler not started, or stopped with the controller side)
// is dropped: the same hook also queues the app for a reconcile, and the
// scaler's first tick after it starts sees the held requests anyway.
//
// Thread-safe. Notify runs the listener under a shared lock (gateway I/O
// threads notify concurrently); Listen and Unlisten wait for the
// notifications in progress, so a listener is never called after Unlisten
// returns.

#include <functional>
#include <string>

#include "absl/synchronization/mutex.h"

namespace tidal {

class DemandSignal {
 public:
  using Listener =
      std::function<void(const std::string& ns, const std::string& app)>;

  // Requests are held for app ns/app: tells the listener, if any.
  void Notify(const std::string& ns, const std::string& app) {
    absl::ReaderMutexLock lock(&mu_);
    if (listener_) listener_(ns, app);
  }
  // Replaces the listener.
  void Listen(Listener listener) {
    absl::WriterMutexLock lock(&mu_);
    listener_ = std::move(listener);
  }
  void Unlisten() { Listen(nullptr); }

 private:
  absl::Mutex mu_;
  Listener listener_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tidal
