#pragma once

// The sockets the gateway may hold (GatewayOptions::max_connections): each
// client connection reserves two slots (itself and the upstream connection
// it may open), each idle pooled upstream connection one. Lock-free: any
// thread.

#include <atomic>
#include <cstdint>

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

}  // namespace tidal::gateway
