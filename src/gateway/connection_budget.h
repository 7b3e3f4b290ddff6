#pragma once

// The sockets the gateway may hold (GatewayOptions::max_connections): each
// client connection reserves two slots (itself and the upstream connection
// it may open), each idle pooled upstream connection one. Lock-free: any
// thread.

#include <arpa/inet.h>

#include <atomic>
#include <cstdint>
#include <cstring>
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
// An IPv6 client is counted by its /64 (one host usually holds a whole /64,
// and could otherwise pick a new address per connection). Thread-safe.
class ClientCounts {
 public:
  explicit ClientCounts(int64_t limit) : limit_(limit) {}

  // What `address` is counted under: itself, or for IPv6 its /64.
  static std::string Key(const std::string& address) {
    if (address.find(':') == std::string::npos) return address;
    in6_addr a{};
    if (inet_pton(AF_INET6, address.c_str(), &a) != 1) return address;
    if (IN6_IS_ADDR_V4MAPPED(&a)) return address;
    std::memset(a.s6_addr + 8, 0, 8);
    char buf[INET6_ADDRSTRLEN] = {};
    if (inet_ntop(AF_INET6, &a, buf, sizeof buf) == nullptr) return address;
    return std::string(buf) + "/64";
  }

  // Counts a connection of `address` if it fits under the limit (0: no
  // limit, nothing counted).
  bool Add(const std::string& address) {
    if (limit_ <= 0) return true;
    const std::string key = Key(address);
    absl::MutexLock lock(&mu_);
    int64_t& n = counts_[key];
    if (n >= limit_) return false;
    ++n;
    return true;
  }
  // Forgets one connection of `address` (Add must have counted it).
  void Remove(const std::string& address) {
    if (limit_ <= 0) return;
    const std::string key = Key(address);
    absl::MutexLock lock(&mu_);
    auto it = counts_.find(key);
    if (it != counts_.end() && --it->second <= 0) counts_.erase(it);
  }
  int64_t limit() const { return limit_; }

 private:
  const int64_t limit_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tidal::gateway
