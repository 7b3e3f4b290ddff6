#pragma once

// Upstream connections of one I/O thread: the pool of idle keep-alive
// connections per endpoint (reuse, expiry, eviction at the connection
// limit), and the checks that tell a slow fresh connection from one stuck in
// (or dropped by) an instance's full accept backlog: the connect stall and
// the request's delivery (docs/gateway.md, "Scale from zero in tidald"). The
// connect window these feed (slow start) is EndpointState's, in
// route_table.h. Internal to the gateway.

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gateway/connection_budget.h"
#include "gateway/route_table.h"

namespace tidal::gateway {

// Idle upstream connections by endpoint. Each idle connection holds one slot
// of the budget. Used from its worker's thread only.
class UpstreamPool {
 public:
  using Socket = boost::asio::ip::tcp::socket;

  explicit UpstreamPool(ConnectionBudget* budget) : budget_(budget) {}
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // The most recently pooled connection to the endpoint `uid` that is still
  // open (a connection idle for less than kTrustIdleMs is not checked: a
  // syscall saved under load), or none; stale ones are closed. The slot of
  // the connection returned passes to the caller's session.
  std::optional<Socket> Take(uint64_t uid);

  // Keeps `s`, after a clean exchange with `endpoint`, if its pool holds
  // fewer than `max_idle` and the budget has a slot; then `s` is moved from.
  // Returns whether it was kept (else the caller closes it).
  bool Put(const std::shared_ptr<EndpointState>& endpoint, Socket& s,
           size_t max_idle);

  // Closes up to `n` idle connections, oldest first per endpoint (to make
  // room for a client connection); returns how many.
  int DropIdle(int n);

  // Closes connections idle for more than `idle_ms` and every connection
  // of an endpoint that left the route.
  void Expire(int64_t now_ms, int64_t idle_ms);

  size_t idle() const;  // connections held

  // Pooled connections younger than this are taken unchecked.
  static constexpr int64_t kTrustIdleMs = 100;

 private:
  struct IdleConn {
    Socket socket;
    int64_t since_ms;
  };
  struct Pool {
    std::shared_ptr<EndpointState> endpoint;
    std::vector<IdleConn> idle;
  };

  ConnectionBudget* const budget_;
  absl::flat_hash_map<uint64_t, Pool> pools_;
};

// What the kernel knows of a fresh upstream connection's request bytes.
// kAcked: the instance's kernel acknowledged everything sent (the
// connection sits in its accept queue or is accepted). kLost: the bytes were
// retransmitted and still not acknowledged: the instance's kernel has no
// such connection (its accept queue was full when the handshake's last ACK
// came, a SYN cookie connection it dropped), so nothing reached the app.
// kPending: neither yet.
enum class Delivery { kAcked, kPending, kLost };
Delivery RequestDelivery(UpstreamPool::Socket& s);

// `ms`, or a held request's queue deadline if that comes first (`hold_ms`
// 0: the request was never held).
inline int64_t HoldDeadlineOr(int64_t hold_ms, int64_t ms) {
  return hold_ms != 0 && hold_ms < ms ? hold_ms : ms;
}

// A fresh connection's connect is still pending at its check time.
enum class ConnectCheck {
  kWait,     // check again at *next_ms
  kStalled,  // taken for a full backlog: close, queue the request again
  kTimeout,  // 504: the connect timeout, or a held request's queue deadline
};
// kTimeout at the queue deadline of a held request (`hold_ms` != 0), else at
// the connect deadline. kStalled once the connect deadline passed for a held
// request, or once `stall_ms` passed while other unconfirmed attempts are
// pending on the instance (`unconfirmed` > 1, this one included).
ConnectCheck CheckConnect(int64_t now_ms, int64_t start_ms,
                          int64_t connect_deadline_ms, int64_t hold_ms,
                          int64_t stall_ms, int unconfirmed, int64_t* next_ms);

// A fresh connection's request awaits its response, its attempt unconfirmed.
enum class DeliveryCheck {
  kConfirmed,  // the instance got the request: the response timeout applies
  kLost,       // reset the connection, queue the request again
  kWait,       // check again at *next_ms
  kTimeout,    // 504
};
// `resendable`: nothing of the request is gone for good (no body byte read
// from the client, no 100-continue sent); a lost request that is not is
// waited for like a pending one.
DeliveryCheck CheckDelivery(Delivery delivery, bool resendable, int64_t now_ms,
                            int64_t response_deadline_ms, int64_t hold_ms,
                            int64_t stall_ms, int64_t* next_ms);

}  // namespace tidal::gateway
