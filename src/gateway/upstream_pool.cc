#include "gateway/upstream_pool.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "gateway/clocks.h"

namespace tidal::gateway {
namespace {

// True if a pooled upstream connection is still open and has no stray bytes.
bool StillOpen(UpstreamPool::Socket& s) {
  char c;
  ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::optional<UpstreamPool::Socket> UpstreamPool::Take(uint64_t uid) {
  auto it = pools_.find(uid);
  if (it == pools_.end()) return std::nullopt;
  auto& idle = it->second.idle;
  while (!idle.empty()) {
    Socket s = std::move(idle.back().socket);
    int64_t idle_for = MonoMs() - idle.back().since_ms;
    idle.pop_back();
    budget_->Unreserve(1);  // the session's own slot covers it now
    // Under load a connection is idle for microseconds: skip the check (a
    // syscall). After a pause the instance may have closed it.
    if (idle_for < kTrustIdleMs || StillOpen(s)) return s;
    boost::system::error_code ignored;
    s.close(ignored);
  }
  return std::nullopt;
}

bool UpstreamPool::Put(const std::shared_ptr<EndpointState>& endpoint,
                       Socket& s, size_t max_idle) {
  auto& pool = pools_[endpoint->uid];
  if (!pool.endpoint) pool.endpoint = endpoint;
  if (pool.idle.size() >= max_idle || !budget_->Reserve(1)) return false;
  pool.idle.push_back({std::move(s), MonoMs()});
  return true;
}

int UpstreamPool::DropIdle(int n) {
  int dropped = 0;
  for (auto it = pools_.begin(); it != pools_.end() && dropped < n; ++it) {
    auto& idle = it->second.idle;
    while (!idle.empty() && dropped < n) {
      idle.erase(idle.begin());  // the oldest
      ++dropped;
    }
  }
  budget_->Unreserve(dropped);
  return dropped;
}

void UpstreamPool::Expire(int64_t now_ms, int64_t idle_ms) {
  for (auto it = pools_.begin(); it != pools_.end();) {
    auto& idle = it->second.idle;
    size_t before = idle.size();
    idle.erase(std::remove_if(
                   idle.begin(), idle.end(),
                   [&](IdleConn& c) { return now_ms - c.since_ms > idle_ms; }),
               idle.end());
    if (it->second.endpoint &&
        it->second.endpoint->removed.load(std::memory_order_relaxed)) {
      idle.clear();
    }
    budget_->Unreserve(static_cast<int64_t>(before - idle.size()));
    if (idle.empty()) {
      pools_.erase(it++);
    } else {
      ++it;
    }
  }
}

size_t UpstreamPool::idle() const {
  size_t n = 0;
  for (const auto& [uid, pool] : pools_) n += pool.idle.size();
  return n;
}

Delivery RequestDelivery(UpstreamPool::Socket& s) {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (::getsockopt(s.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
    return Delivery::kPending;
  if (info.tcpi_unacked == 0) return Delivery::kAcked;
  return info.tcpi_retransmits > 0 ? Delivery::kLost : Delivery::kPending;
}

ConnectCheck CheckConnect(int64_t now_ms, int64_t start_ms,
                          int64_t connect_deadline_ms, int64_t hold_ms,
                          int64_t stall_ms, int unconfirmed, int64_t* next_ms) {
  if ((hold_ms != 0 && now_ms >= hold_ms) ||
      (hold_ms == 0 && now_ms >= connect_deadline_ms)) {
    return ConnectCheck::kTimeout;
  }
  if (now_ms >= connect_deadline_ms ||
      (now_ms - start_ms >= stall_ms && unconfirmed > 1)) {
    return ConnectCheck::kStalled;
  }
  *next_ms =
      HoldDeadlineOr(hold_ms, std::min(connect_deadline_ms, now_ms + stall_ms));
  return ConnectCheck::kWait;
}

DeliveryCheck CheckDelivery(Delivery delivery, bool resendable, int64_t now_ms,
                            int64_t response_deadline_ms, int64_t hold_ms,
                            int64_t stall_ms, int64_t* next_ms) {
  if (delivery == Delivery::kAcked) return DeliveryCheck::kConfirmed;
  if (delivery == Delivery::kLost && resendable) return DeliveryCheck::kLost;
  if (now_ms >= HoldDeadlineOr(hold_ms, response_deadline_ms)) {
    return DeliveryCheck::kTimeout;
  }
  *next_ms = HoldDeadlineOr(hold_ms,
                            std::min(response_deadline_ms, now_ms + stall_ms));
  return DeliveryCheck::kWait;
}

}  // namespace tidal::gateway
