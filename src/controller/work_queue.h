#pragma once

// WorkQueue: the controller's queue of keys to reconcile, after client-go's
// rate-limited work queue. A key is held once however often it is added
// (deduplication); a key being processed is never handed to a second worker —
// if it is added meanwhile it is queued again when the first worker calls
// Done. Failed keys come back with per-key exponential backoff, and an
// overall token bucket bounds retries across all keys. Times come from the
// injected Clock (a fake clock drives delays and the bucket in tests; Get
// re-reads a non-real clock every few milliseconds while it waits).
// Thread-safe.

#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace tidal {

class WorkQueue {
 public:
  struct Options {
    absl::Duration base_delay = absl::Milliseconds(5);
    absl::Duration max_delay = absl::Seconds(300);
    double retry_qps = 50;  // overall retry rate
    int retry_burst = 200;
  };
  WorkQueue() : WorkQueue(Options()) {}
  explicit WorkQueue(Options options, Clock* clock = RealClock::Get());

  // Queues `key` now (no-op when already queued).
  void Add(const std::string& key);
  // Queues `key` after `delay`.
  void AddAfter(const std::string& key, absl::Duration delay);
  // Queues `key` after its backoff (base * 2^failures, capped) and the
  // overall rate limit; counts a failure for the key. Returns the delay
  // chosen (client-go's RateLimiter.When).
  absl::Duration AddRateLimited(const std::string& key);
  // Clears the key's failure count (after a successful reconcile).
  void Forget(const std::string& key);
  int Failures(const std::string& key);

  // Blocks until a key is ready or the queue shuts down (nullopt).
  std::optional<std::string> Get();
  // Marks the key processed; re-queues it if it was added while processing.
  void Done(const std::string& key);

  // Get returns nullopt to every waiter and later Adds are dropped, until
  // Resume. Keys already queued stay queued.
  void ShutDown();
  // Undoes ShutDown (a controller started again after Stop).
  void Resume();
  // Keys queued now (not counting delayed ones or those in processing).
  size_t Len();

 private:
  struct Delayed {
    absl::Time when;
    std::string key;
    bool operator>(const Delayed& o) const { return when > o.when; }
  };
  void AddLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PromoteDueLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const Options options_;
  Clock* const clock_;

  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> dirty_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> processing_ ABSL_GUARDED_BY(mu_);
  std::priority_queue<Delayed, std::vector<Delayed>, std::greater<Delayed>>
      delayed_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> failures_ ABSL_GUARDED_BY(mu_);
  double tokens_ ABSL_GUARDED_BY(mu_);
  absl::Time last_refill_ ABSL_GUARDED_BY(mu_);
  absl::Time bucket_next_
      ABSL_GUARDED_BY(mu_);  // earliest slot for the next retry
  uint64_t delayed_gen_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by AddAfter
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tidal
