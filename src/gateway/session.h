#pragma once

// Session: one client connection of the gateway, as a state machine on its
// worker's thread. Reads a request header (request_policy.h: limits and
// rejections), routes it by Host, leases an instance from the app
// (AppState: at once, or held in the app's queue by the activator until one
// can take it), connects or takes a pooled connection (upstream_pool.h:
// reuse, connect stall, delivery checks), forwards the header rewritten by
// header_policy.h and streams the body, then streams the response back
// (body_out.h frames both bodies), and reads the next request on a
// keep-alive connection. Internal to the gateway.

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gateway/body_out.h"
#include "gateway/client_stream.h"
#include "gateway/clocks.h"
#include "gateway/gateway.h"
#include "gateway/header_policy.h"
#include "gateway/request_metrics.h"
#include "gateway/request_policy.h"
#include "gateway/route_table.h"
#include "gateway/upstream_pool.h"

namespace tidal::gateway {

struct Worker;
class H2Conn;
struct H2Upgrade;

// One client connection: reads requests, routes each, relays it to an
// instance and the response back, streaming both bodies through fixed
// 64 KiB buffers. Runs on its worker's thread only; Dispatch() (activator,
// concurrency queue) posts back to it.
class Session : public Waiter, public std::enable_shared_from_this<Session> {
 public:
  // A plain connection, or (with `certs`) one of the HTTPS listener: Start()
  // then begins with the TLS handshake.
  // client_ip: the address the worker counted the connection under
  // (client_counts), released under the same key.
  Session(Worker* w, boost::asio::ip::tcp::socket socket,
          std::shared_ptr<const CertSet> certs, std::string client_ip);
  ~Session() override;

  // Registers with the worker and reads the first request.
  void Start();

  // Waiter: posts the lease (or null: the app is gone) to the session's
  // thread.
  void Dispatch(std::shared_ptr<EndpointState> lease) override;

  // When the worker's sweep calls OnDeadline (monotonic ms; 0: none).
  int64_t deadline_ms() const { return deadline_ms_; }
  void OnDeadline();

  // An upgraded connection (WebSocket) to the instance.
  bool TunnelTo(const std::string& instance_id) const;
  // Ends the tunnel: a WebSocket client gets 1001 Going Away first when the
  // instance's side is between two frames (Gateway::CloseTunnels).
  void GoAway();

  // Since when the connection waits for a request's first byte (monotonic
  // ms; 0: it is not idle), for GatewayOptions::max_idle_connections.
  int64_t idle_since_ms() const { return idle_since_ms_; }
  // Closes the connection if it is idle (the idle cap).
  // Whether bytes of a next request wait on the client's socket (an idle
  // connection whose request just came is not one to close).
  bool ClientBytesWaiting();
  void CloseIdle();
  const std::string& client_ip() const { return client_ip_; }

 private:
  enum class Phase {
    kReadHeader,
    kQueued,
    kConnect,
    kSendRequest,
    kAwaitResponse,
    kRelayResponse,
    kRespond,
    kTunnel,
    kH2,  // the connection speaks HTTP/2: h2_ serves it
    kClosed
  };

  // Counts the connection in (or out of) the gateway's idle connections.
  void SetIdle(bool idle);
  void SetDeadline(absl::Duration d) {
    deadline_ms_ = MonoMs() + absl::ToInt64Milliseconds(d);
  }
  // A deadline of the exchange: `app_ms` (the app's own timeout) if set,
  // else `d`, and never past the app's total request timeout.
  void SetExchangeDeadline(absl::Duration d, int64_t app_ms) {
    int64_t ms =
        MonoMs() + (app_ms > 0 ? app_ms : absl::ToInt64Milliseconds(d));
    if (request_deadline_ms_ != 0) ms = std::min(ms, request_deadline_ms_);
    deadline_ms_ = ms;
  }
  int64_t IdleTimeoutMs() const { return route_ ? route_->idle_timeout_ms : 0; }

  void ReadRequest();
  void ReadHeader();
  void OnRequestHeader(boost::system::error_code ec);
  void Acquire(bool retry = false);
  void OnDispatched(std::shared_ptr<EndpointState> lease);
  void OnLease(std::shared_ptr<EndpointState> lease);
  void OnConnect(boost::system::error_code ec);
  void OnConnectDeadline();
  void CheckDelivery();
  void Stall();
  void SettleAttempt(AppState::Attempt how);
  int64_t HoldDeadlineOr(int64_t ms) const {
    return gateway::HoldDeadlineOr(hold_deadline_ms_, ms);
  }
  void UpstreamFailed(bool connect_failure);
  void SendRequest();
  void RelayRequestStep();
  void WriteRequest(const char* data, size_t n, bool last);
  void OnRequestWritten(boost::system::error_code ec);
  void ReadResponseHeader();
  void OnResponseHeader(boost::system::error_code ec);
  void RelayResponseStep();
  void WriteResponse(const char* data, size_t n, bool last);
  void OnResponseWritten(boost::system::error_code ec);
  void FinishExchange();
  void Respond(boost::beast::http::status status, std::string body,
               bool retry_after = false, const std::string& location = "");
  void Respond(Rejection rejection);
  // Ends the attempt on the leased instance; `status` is what its revision's
  // metrics record for it (0: not counted as a response).
  void ReleaseLease(int status);
  void FinishMetrics(int status);
  void Abort();
  void CloseClient();
  // While the request waits for an instance (queued, connecting, awaiting
  // the response), watches the client connection: a client that hangs up
  // (EOF or reset) ends the exchange at once, closing the upstream
  // connection and releasing the lease, instead of holding both until the
  // response timeout.
  void WatchClient();
  void StopWatchingClient();
  void OnClientReadable(boost::system::error_code ec, uint64_t gen);
  // The tunnel of an upgraded connection: the 101 to the client, then bytes
  // both ways (what either side sent early first) until both sides closed
  // or one failed.
  void StartTunnel();
  void TunnelUp();    // client -> instance
  void TunnelDown();  // instance -> client
  void OnTunnelDown(const char* data, size_t n);
  void TunnelSideDone(bool up);
  void SendGoingAway();
  void EndTunnel();
  // Hands the connection to an H2Conn (h2_relay.h) with what was read
  // (cbuf_): at the prior knowledge preface, after ALPN chose "h2", or
  // after an HTTP/1.1 request that asked for h2c (`upgrade`).
  void StartH2(const H2Upgrade* upgrade = nullptr);
  void TouchTunnel() { SetDeadline(opts_.tunnel_idle_timeout); }

  Worker* const w_;
  const GatewayOptions& opts_;
  ClientStream client_;
  boost::asio::ip::tcp::socket upstream_;
  std::string client_ip_;
  std::list<Session*>::iterator self_it_;
  int64_t deadline_ms_ = 0;
  int64_t idle_since_ms_ = 0;
  int64_t requests_read_ = 0;  // request headers read on this connection
  Phase phase_ = Phase::kReadHeader;
  bool timed_out_ = false;
  // The connect path (slow start, EndpointState::unconfirmed). A request that
  // waited in the app's queue keeps its queue deadline while it is queued
  // again or connecting: it gets an answer by then at the latest.
  int64_t hold_deadline_ms_ = 0;  // 0: never queued
  int64_t connect_start_ms_ = 0;
  int64_t connect_deadline_ms_ = 0;
  int64_t response_deadline_ms_ = 0;
  int64_t request_deadline_ms_ = 0;  // the app's timeoutSeconds; 0: none
  bool unconfirmed_ = false;         // the lease's attempt is not settled yet
  bool stalled_ = false;  // upstream_ closed because the connect stalled
  bool watching_client_ = false;
  uint64_t watch_gen_ = 0;

  boost::beast::flat_buffer cbuf_;
  boost::beast::flat_buffer ubuf_;
  std::optional<
      boost::beast::http::request_parser<boost::beast::http::buffer_body>>
      req_parser_;
  std::optional<
      boost::beast::http::response_parser<boost::beast::http::buffer_body>>
      res_parser_;
  std::optional<
      boost::beast::http::serializer<false, boost::beast::http::buffer_body>>
      res_sr_;
  std::unique_ptr<boost::beast::http::response<boost::beast::http::string_body>>
      gen_res_;
  std::unique_ptr<char[]> req_buf_;
  std::unique_ptr<char[]> res_buf_;
  BodyOut req_out_;
  BodyOut res_out_;

  // Per request.
  std::string host_;
  std::shared_ptr<AppState> app_;
  std::shared_ptr<const AppRoute> route_;
  std::shared_ptr<EndpointState> lease_;
  std::vector<const EndpointState*> excluded_;
  std::vector<std::shared_ptr<EndpointState>> excluded_hold_;
  std::shared_ptr<TrafficMetrics> rev_metrics_;
  int64_t start_ns_ = 0;
  int64_t rev_start_ns_ = 0;
  bool app_started_ = false;
  bool client_keep_alive_ = false;
  bool upstream_keep_alive_ = false;
  bool idempotent_ = false;
  bool is_head_ = false;
  bool expect_continue_ = false;
  bool body_started_ = false;
  bool reused_ = false;
  bool response_started_ = false;
  bool request_sent_ = false;   // the request's last byte went upstream
  bool response_sent_ = false;  // the response's last byte went to the client
  int attempts_ = 0;
  int status_ = 0;
  int client_version_ = 11;

  // Upgrade (WebSocket).
  bool upgrade_ = false;  // the request asks to switch protocols
  bool websocket_ = false;
  bool tunnel_open_ = false;   // counted in the gateway's and instance's gauges
  bool up_done_ = false;       // the client's side ended
  bool down_done_ = false;     // the instance's side ended
  bool down_writing_ = false;  // a write to the client is pending
  bool going_away_ = false;
  int64_t switch_ns_ = 0;
  WsFrameBoundary ws_down_;

  std::shared_ptr<H2Conn> h2_;
};

}  // namespace tidal::gateway
