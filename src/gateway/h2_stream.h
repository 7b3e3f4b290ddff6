#pragma once

// An HTTP/2 client's stream as the gateway relays it (h2_relay.h): the
// request, where it was routed, the response on its way back, and the
// upstream that carries it (StreamUpstream: a stream of an h2c connection,
// or an HTTP/1.1 exchange, h2_http1.cc). Internal to the gateway; on its
// worker's thread only, but Dispatch.

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "gateway/h2_relay.h"
#include "gateway/route_table.h"
#include "gateway/worker.h"

namespace tidal::gateway {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Bytes received from one side, not yet taken by the other.
struct Buf {
  std::string data;
  size_t off = 0;
  size_t size() const { return data.size() - off; }
  bool empty() const { return size() == 0; }
  void Append(const uint8_t* p, size_t n) {
    if (off > 0 && off == data.size()) {
      data.clear();
      off = 0;
    }
    data.append(reinterpret_cast<const char*>(p), n);
  }
  size_t Take(uint8_t* out, size_t n) {
    n = std::min(n, size());
    std::memcpy(out, data.data() + off, n);
    off += n;
    if (off == data.size()) {
      data.clear();
      off = 0;
    } else if (off >= 64 * 1024) {
      data.erase(0, off);
      off = 0;
    }
    return n;
  }
};

struct H2Stream;

// What carries a stream to its instance.
class StreamUpstream {
 public:
  virtual ~StreamUpstream() = default;
  // More of the request body is in the stream's buffer (or it ended).
  virtual void Resume(H2Stream* s) = 0;
  // The client took `n` bytes of the response: room for more.
  virtual void Consume(H2Stream* s, size_t n) = 0;
  // The client side is done with `s` (answered, reset, gone): the upstream
  // drops it and cancels what is still open. `flush`: false while the
  // worker stops (nothing is posted then).
  virtual void Detach(H2Stream* s, bool flush) = 0;
};

// One request of an HTTP/2 client: its request, where it was routed, and its
// response on the way back. Shared by the client's H2Conn (which owns it)
// and the H2Upstream that carries it (which refers to it until it detaches).
struct H2Stream : public Waiter, public std::enable_shared_from_this<H2Stream> {
  void Dispatch(std::shared_ptr<EndpointState> lease) override {
    boost::asio::post(w->ioc, [self = shared_from_this(),
                               lease = std::move(lease)]() mutable {
      if (auto c = self->conn.lock(); c && self->queued) {
        c->OnLease(self, std::move(lease), /*waited=*/true);
      } else if (lease) {
        self->app->Settle(*lease, AppState::Attempt::kAbandoned);
        self->app->Release(lease);
      }
    });
  }

  Worker* w = nullptr;
  std::weak_ptr<H2Conn> conn;
  int32_t id = 0;

  // The request.
  std::string method, scheme, authority, path, host_field;
  Headers headers;        // regular fields, lower-case names
  bool grpc = false;      // content-type application/grpc*: errors as
                          // grpc-status (gRPC-Web too)
  bool grpc_web = false;  // application/grpc-web*
  void SetContentType(absl::string_view v) {
    grpc = absl::StartsWith(v, "application/grpc");
    grpc_web = absl::StartsWith(v, "application/grpc-web");
  }
  int64_t grpc_timeout_ms = -1;
  Buf req;
  size_t req_unconsumed = 0;  // received, window not yet returned
  bool req_ended = false;
  // Against the gateway's limits, as HTTP/1.1 (431, 413): the request
  // header's bytes (names, values and 4 per field, as on an HTTP/1.1
  // line), and the body's; once over the body's limit the rest is dropped.
  size_t header_bytes = 0;
  uint64_t req_bytes = 0;
  bool req_over_limit = false;
  bool routed = false;

  // Routing.
  std::shared_ptr<AppState> app;
  std::shared_ptr<const AppRoute> route;
  std::string host;
  std::shared_ptr<EndpointState> lease;
  std::shared_ptr<TrafficMetrics> rev_metrics;
  std::vector<const EndpointState*> excluded;
  std::vector<std::shared_ptr<EndpointState>> excluded_hold;
  int attempts = 0;
  int64_t start_ns = 0;
  int64_t rev_start_ns = 0;
  bool app_started = false;
  bool queued = false;
  int64_t hold_deadline_ms = 0;
  int64_t response_deadline_ms = 0;  // until the response header
  int64_t total_deadline_ms = 0;     // timeoutSeconds, grpc-timeout
  int64_t idle_deadline_ms = 0;      // the response body's longest gap
  int64_t idle_ms = 0;

  // The upstream stream.
  std::shared_ptr<StreamUpstream> up;
  int32_t up_id = -1;  // -1: not submitted yet

  // The response.
  Headers res_headers;
  Headers trailers;
  int status = 0;
  int grpc_status = -1;
  bool res_headers_done = false;
  bool res_submitted = false;
  Buf res;
  size_t res_unconsumed = 0;
  bool res_ended = false;
  bool has_trailers = false;
  bool finished = false;  // metrics recorded
};

// Relays `s` (leased) to its HTTP/1.1 instance as one exchange, on a pooled
// keep-alive connection or a new one (h2_http1.cc).
std::shared_ptr<StreamUpstream> StartHttp1Exchange(
    Worker* w, const std::shared_ptr<H2Stream>& s);

}  // namespace tidal::gateway
