#pragma once

// The sockets the gateway may hold (GatewayOptions::max_connections): each
// client connection reserves two slots (itself and the upstream connection
// it may open), each idle pooled upstream connection one. Lock-free: any
// thread.

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace tidal::gateway {

class ConnectionBudget {
 public:
  explicit ConnectionBudget(int64_t limit) : limit_(limit) {}

  // Takes `n` slots if they fit under the limit (0: no limit).
  bool Reserve(int64_t n) {
    int64_t cur = held_.load(std::memory_order_relaxed);
    do {
      if (limit_ > 0 && cur + n > limit_) return false;
    } while (
        !held_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
    return true;
  }
  void Unreserve(int64_t n) { held_.fetch_sub(n, std::memory_order_relaxed); }

  int64_t held() const { return held_.load(std::memory_order_relaxed); }
  int64_t limit() const { return limit_; }

 private:
  const int64_t limit_;
  std::atomic<int64_t> held_{0};
};

// Client connections per address (GatewayOptions::max_connections_per_client).
// Thread-safe.
class ClientCounts {
 public:
  explicit ClientCounts(int64_t limit) : limit_(limit) {}

  // Counts a connection of `address` if it fits under the limit (0: no
  // limit, nothing counted).
  bool Add(const std::string& address) {
    if (limit_ <= 0) return true;
    absl::MutexLock lock(&mu_);
    int64_t& n = counts_[address];
    if (n >= limit_) return false;
    ++n;
    return true;
  }
  // Forgets one connection of `address` (Add must have counted it).
  void Remove(const std::string& address) {
    if (limit_ <= 0) return;
    absl::MutexLock lock(&mu_);
    auto it = counts_.find(address);
    if (it != counts_.end() && --it->second <= 0) counts_.erase(it);
  }
  int64_t limit() const { return limit_; }

 private:
  const int64_t limit_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tidal::gateway
