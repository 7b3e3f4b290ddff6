#pragma once

// EventRecorder: writes Events about apps to the store (keys::Event), where
// `tidalctl describe` and `get events` read them. A repeat of the app's last
// event (same reason and message) bumps its count instead of adding a row,
// and each app keeps at most `max_per_app` events. Thread-safe.

#include <deque>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "store/store.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

class EventRecorder {
 public:
  EventRecorder(Store* store, Clock* clock, int max_per_app = 50);

  // type: "Normal" or "Warning"; source: the component ("controller", ...).
  void Record(const std::string& ns, const std::string& app,
              const std::string& type, const std::string& reason,
              const std::string& message,
              const std::string& source = "controller");

  // Forgets an app's events (its object is gone); deletes them from the store.
  void Purge(const std::string& ns, const std::string& app);

 private:
  struct Recent {
    std::string key;
    std::string reason;
    std::string message;
  };
  struct AppEvents {
    bool loaded = false;
    std::deque<Recent> recent;  // oldest first
  };
  void LoadLocked(const std::string& ns, const std::string& app,
                  AppEvents* events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Store* const store_;
  Clock* const clock_;
  const int max_per_app_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, AppEvents> apps_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tidal
