#pragma once

// EventRecorder: writes Events about apps to the store (keys::Event), where
// `tidalctl describe` and `get events` read them. A repeat of the app's last
// event (same reason and message) bumps its count instead of adding a row,
// and each app keeps at most `max_per_app` events.
//
// Events are off the reconcile path: Record() only updates memory; a flusher
// thread (StartFlusher) writes what piled up in one transaction every
// `flush_interval`. Without the flusher, Record() writes at once. Thread-safe.

#include <deque>
#include <map>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "store/store.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

class EventRecorder {
 public:
  EventRecorder(Store* store, Clock* clock, int max_per_app = 50);
  ~EventRecorder();

  // type: "Normal" or "Warning"; source: the component ("controller", ...).
  void Record(const std::string& ns, const std::string& app,
              const std::string& type, const std::string& reason,
              const std::string& message,
              const std::string& source = "controller");

  // Forgets an app's events (its object is gone); deletes them from the store.
  void Purge(const std::string& ns, const std::string& app);

  // Writes events in the background from now on (tidald does this).
  void StartFlusher(absl::Duration flush_interval = absl::Milliseconds(50));
  // Writes every pending event now.
  void Flush();

 private:
  struct AppEvents {
    bool loaded = false;
    std::deque<std::pair<std::string, tidal::v1::Event>>
        recent;  // key, event; oldest first
  };
  void LoadLocked(const std::string& ns, const std::string& app,
                  AppEvents* events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutLocked(const std::string& key, const tidal::v1::Event& ev)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeleteLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushLoop(absl::Duration interval);

  // Constant after construction.
  Store* const store_;
  Clock* const clock_;
  const int max_per_app_;

  absl::Mutex flush_mu_;  // serializes writers of the store (taken before mu_)
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, AppEvents> apps_ ABSL_GUARDED_BY(mu_);
  // Writes not yet in the store, at most one per key.
  std::map<std::string, Op> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> created_in_pending_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool async_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread flusher_;
};

}  // namespace tidal
