#include "gateway/session.h"

#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "gateway/client_stream_tls.h"
#include "gateway/gateway_impl.h"
#include "gateway/h2_relay.h"
#include "gateway/header_policy.h"
#include "gateway/request_policy.h"
#include "gateway/upstream_pool.h"
#include "gateway/worker.h"

namespace tidal::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kBodyChunk = 64 * 1024;
// The largest response header taken from an instance (then 502).
constexpr uint32_t kMaxResponseHeaderBytes = 64 * 1024;
constexpr int64_t kDownForNs =
    1'000'000'000;  // skip a refusing instance for 1 s

// What the first read of a kept-alive TLS connection takes (the start of
// the next request; the header parser reads the rest).
constexpr size_t kTlsFirstRead = 4096;

const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace

ClientStream::ClientStream(tcp::socket socket) : socket_(std::move(socket)) {}

ClientStream::~ClientStream() = default;

void ClientStream::StartTls(std::shared_ptr<const CertSet> certs) {
  tls_ = std::make_unique<TlsLayer>(socket_, std::move(certs));
}

bool ClientStream::h2() const {
  return tls_ != nullptr && AlpnChoseH2(tls_->stream.native_handle());
}

Session::Session(Worker* w, tcp::socket socket,
                 std::shared_ptr<const CertSet> certs, std::string client_ip)
    : w_(w),
      opts_(w->gw->opts),
      client_(std::move(socket)),
      upstream_(w->ioc),
      client_ip_(std::move(client_ip)) {
  beast::error_code ec;
  client_.socket().set_option(tcp::no_delay(true), ec);
  if (certs) client_.StartTls(std::move(certs));
}

Session::~Session() {
  w_->gw->budget.Unreserve(2);
  SetIdle(false);
  w_->gw->client_counts.Remove(client_ip_);
  if (tunnel_open_) {
    lease_->tunnels.fetch_sub(1, std::memory_order_relaxed);
    w_->gw->tunnels_open.fetch_sub(1, std::memory_order_relaxed);
  }
  if (rev_metrics_) rev_metrics_->Finish(w_->index, rev_start_ns_, NowNs(), 0);
  if (lease_) {
    SettleAttempt(AppState::Attempt::kAbandoned);
    app_->Release(lease_);
  }
  w_->sessions.erase(self_it_);
}

void Session::Start() {
  self_it_ = w_->sessions.insert(w_->sessions.end(), this);
  if (!client_.tls()) return ReadRequest();
  // The TLS handshake, within the header timeout (OnDeadline closes it).
  SetDeadline(opts_.header_timeout);
  client_.async_handshake([self = shared_from_this()](beast::error_code ec) {
    self->deadline_ms_ = 0;
    if (ec) {
      self->w_->gw->tls_handshake_errors_total.fetch_add(
          1, std::memory_order_relaxed);
      self->w_->gw->log->debug("gateway: TLS handshake with {} failed: {}",
                               self->client_ip_, ec.message());
      return self->CloseClient();
    }
    if (self->client_.h2()) return self->StartH2();
    self->ReadRequest();
  });
}

void Session::Dispatch(std::shared_ptr<EndpointState> lease) {
  asio::post(w_->ioc,
             [self = shared_from_this(), lease = std::move(lease)]() mutable {
               self->OnDispatched(std::move(lease));
             });
}

void Session::SetIdle(bool idle) {
  if (idle == (idle_since_ms_ != 0)) return;
  idle_since_ms_ = idle ? MonoMs() : 0;
  w_->gw->idle_connections.fetch_add(idle ? 1 : -1, std::memory_order_relaxed);
}

bool Session::ClientBytesWaiting() {
  beast::error_code ec;
  const size_t n = client_.socket().available(ec);
  return !ec && n > 0;
}

void Session::CloseIdle() {
  if (idle_since_ms_ == 0) return;
  w_->gw->idle_closed_total.fetch_add(1, std::memory_order_relaxed);
  SetIdle(false);
  CloseClient();  // the pending wait ends with an error
}

void Session::ReadRequest() {
  StopWatchingClient();
  phase_ = Phase::kReadHeader;
  timed_out_ = false;
  request_deadline_ms_ = 0;
  upgrade_ = false;
  const bool first = requests_read_ == 0;
  if (cbuf_.size() > 0) {
    // Bytes of the request are here already (pipelined): the header
    // timeout from now.
    SetDeadline(opts_.header_timeout);
    return ReadHeader();
  }
  if (client_.tls()) {
    if (first) {
      SetDeadline(opts_.header_timeout);
      return ReadHeader();
    }
    // The request's first byte may wait in the TLS layer, where the socket
    // cannot show it: idle until the TLS layer yields a byte of the next
    // request (the idle timeout, and evictable as idle), then the header
    // timeout from there, as in clear text.
    SetIdle(true);
    SetDeadline(opts_.client_idle_timeout);
    client_.async_read_some(
        cbuf_.prepare(kTlsFirstRead),
        [self = shared_from_this()](beast::error_code ec, size_t n) {
          self->SetIdle(false);
          if (self->phase_ != Phase::kReadHeader) return;  // closed meanwhile
          if (ec || !self->client_.socket().is_open()) {
            return self->CloseClient();
          }
          self->cbuf_.commit(n);
          self->SetDeadline(self->opts_.header_timeout);
          self->ReadHeader();
        });
    return;
  }
  // Idle until the request's first byte: a new connection has the header
  // timeout for its whole first header, a kept-alive one the idle timeout
  // and then the header timeout from that byte on.
  SetIdle(true);
  SetDeadline(first ? opts_.header_timeout : opts_.client_idle_timeout);
  client_.socket().async_wait(
      tcp::socket::wait_read,
      [self = shared_from_this(), first](beast::error_code ec) {
        self->SetIdle(false);
        if (self->phase_ != Phase::kReadHeader) return;  // closed meanwhile
        if (ec || !self->client_.socket().is_open()) {
          return self->CloseClient();
        }
        if (!first) self->SetDeadline(self->opts_.header_timeout);
        self->ReadHeader();
      });
}

void Session::ReadHeader() {
  req_parser_.emplace();
  LimitRequestParser(*req_parser_, opts_.max_header_bytes,
                     opts_.max_body_bytes);
  http::async_read_header(
      client_, cbuf_, *req_parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) {
        self->OnRequestHeader(ec);
      });
}

void Session::OnRequestHeader(beast::error_code ec) {
  deadline_ms_ = 0;
  if (ec == http::error::bad_version && phase_ == Phase::kReadHeader) {
    // HTTP/2 with prior knowledge: the preface's "PRI * HTTP/2.0" is no
    // HTTP/1.x request line, and nothing of it was consumed.
    auto data = cbuf_.data();
    if (IsH2Preface(absl::string_view(static_cast<const char*>(data.data()),
                                      data.size()))) {
      return StartH2();
    }
  }
  if (ec) {
    client_keep_alive_ = false;
    if (auto rejection = RejectUnreadRequest(ec, timed_out_)) {
      Respond(rejection->status, std::move(rejection->body));
    } else {
      CloseClient();
    }
    return;
  }
  ++requests_read_;
  auto& req = req_parser_->get();
  const bool asks_upgrade = req.count(http::field::upgrade) > 0;
  // Not under --gateway-https-redirect: the request is answered with its
  // 308 in HTTP/1.1 below.
  if (asks_upgrade && !client_.tls() && !opts_.https_redirect &&
      req_parser_->is_done() && req[http::field::content_length].empty()) {
    H2Upgrade upgrade;
    if (H2cUpgradeOf(req, &upgrade)) return StartH2(&upgrade);
  }
  client_keep_alive_ = req.keep_alive();
  client_version_ = req.version();  // the upstream request is HTTP/1.1
  idempotent_ = Idempotent(req.method());
  is_head_ = req.method() == http::verb::head;
  body_started_ = false;
  response_started_ = false;
  attempts_ = 0;
  status_ = 0;
  hold_deadline_ms_ = 0;
  excluded_.clear();
  excluded_hold_.clear();
  if (auto rejection = RejectUnrelayable(req)) {
    client_keep_alive_ = false;
    Respond(std::move(*rejection));
    return;
  }
  if (auto rejection = NormalizeRequestTarget(req.base())) {
    client_keep_alive_ = false;
    Respond(std::move(*rejection));
    return;
  }

  auto host_field = req[http::field::host];
  if (opts_.https_redirect && !client_.tls()) {
    auto target = req.target();
    if (auto location = HttpsRedirectLocation(
            absl::string_view(host_field.data(), host_field.size()),
            absl::string_view(target.data(), target.size()),
            w_->gw->tls_port)) {
      app_ = nullptr;
      Respond(http::status::permanent_redirect, "see " + *location + "\n",
              false, *location);
      return;
    }
  }
  // Route by Host: <app>.<namespace>.<domain>[:port].
  HostRoute host_route = RouteForHost(
      absl::string_view(host_field.data(), host_field.size()), opts_.domain);
  host_ = std::move(host_route.host);
  app_ = w_->FindApp(host_route.key);
  if (app_ == nullptr) {
    w_->gw->unknown_host_total.fetch_add(1, std::memory_order_relaxed);
    Respond(UnknownHost(host_));
    return;
  }
  route_ = app_->route();
  upgrade_ = asks_upgrade && IsUpgradeRequest(req) && req_parser_->is_done();
  if (route_->timeout_ms > 0) {
    request_deadline_ms_ = MonoMs() + route_->timeout_ms;
  }
  start_ns_ = NowNs();
  app_->last_request_ns.store(start_ns_, std::memory_order_relaxed);
  app_->metrics.Start(w_->index, start_ns_);
  app_started_ = true;
  expect_continue_ = PrepareUpstreamRequest(
      req, client_ip_, &w_->rng, client_.tls() ? "https" : "http", upgrade_);
  Acquire();
}

void Session::Acquire(bool retry) {
  WatchClient();
  std::shared_ptr<EndpointState> lease;
  // Queued first (Dispatch may run at once on another thread, but it posts
  // OnDispatched to this one, which runs after this returns).
  switch (app_->AcquireOrWait(*route_, shared_from_this(), excluded_, &w_->rng,
                              NowNs(), &lease, retry)) {
    case AppState::Outcome::kLeased:
      OnLease(std::move(lease));
      return;
    case AppState::Outcome::kQueued:
      phase_ = Phase::kQueued;
      if (hold_deadline_ms_ == 0) {
        hold_deadline_ms_ =
            MonoMs() + absl::ToInt64Milliseconds(opts_.queue_timeout);
        if (request_deadline_ms_ != 0) {
          hold_deadline_ms_ = std::min(hold_deadline_ms_, request_deadline_ms_);
        }
      }
      deadline_ms_ = hold_deadline_ms_;
      return;
    case AppState::Outcome::kOverflow:
      Respond(http::status::service_unavailable, "queue full, retry later\n",
              true);
      return;
    case AppState::Outcome::kGone:
      Respond(UnknownHost(host_));
      return;
  }
}

void Session::OnDispatched(std::shared_ptr<EndpointState> lease) {
  if (phase_ != Phase::kQueued) {  // cannot happen: Cancel() and Dispatch()
                                   // exclude each other
    if (lease) {
      app_->Settle(*lease, AppState::Attempt::kAbandoned);
      app_->Release(lease);
    }
    return;
  }
  deadline_ms_ = 0;
  if (!lease) {
    Respond(UnknownHost(host_));
    return;
  }
  // The route may have changed while the request waited (from a provisional
  // one to the app's own, Gateway::Impl::Provisional).
  route_ = app_->route();
  OnLease(std::move(lease));
}

void Session::OnLease(std::shared_ptr<EndpointState> lease) {
  lease_ = std::move(lease);
  unconfirmed_ = true;
  // Each attempt counts for the revision of the instance it went to, from
  // here: a canary that refuses connections shows 5xx in its own figures.
  rev_metrics_ = lease_->revision_metrics;
  rev_start_ns_ = NowNs();
  rev_metrics_->Start(w_->index, rev_start_ns_);
  if (auto pooled = w_->pool.Take(lease_->uid)) {
    // The instance accepted this connection long ago.
    SettleAttempt(AppState::Attempt::kAbandoned);
    upstream_ = std::move(*pooled);
    reused_ = true;
    ubuf_.clear();
    SendRequest();
    return;
  }
  reused_ = false;
  beast::error_code ec;
  auto address = asio::ip::make_address(lease_->host, ec);
  if (ec) {
    UpstreamFailed(true);
    return;
  }
  upstream_ = tcp::socket(w_->ioc);
  ubuf_.clear();
  phase_ = Phase::kConnect;
  connect_start_ms_ = MonoMs();
  connect_deadline_ms_ =
      connect_start_ms_ + absl::ToInt64Milliseconds(opts_.connect_timeout);
  deadline_ms_ = HoldDeadlineOr(
      std::min(connect_deadline_ms_,
               connect_start_ms_ +
                   absl::ToInt64Milliseconds(opts_.connect_stall_threshold)));
  upstream_.async_connect(
      tcp::endpoint(address, static_cast<uint16_t>(lease_->port)),
      [self = shared_from_this()](beast::error_code ec) {
        self->OnConnect(ec);
      });
}

void Session::OnConnect(beast::error_code ec) {
  if (phase_ == Phase::kClosed) return;  // the client went away
  deadline_ms_ = 0;
  if (stalled_) return Stall();
  if (ec || timed_out_) {
    if (timed_out_ && hold_deadline_ms_ != 0) {
      // A held request at its queue deadline: answered now, not retried.
      timed_out_ = false;
      beast::error_code ignored;
      upstream_.close(ignored);
      ReleaseLease(504);
      return Respond(http::status::gateway_timeout,
                     "timed out waiting for an instance\n");
    }
    lease_->down_until_ns.store(NowNs() + kDownForNs,
                                std::memory_order_relaxed);
    timed_out_ = false;
    UpstreamFailed(true);
    return;
  }
  upstream_.set_option(tcp::no_delay(true), ec);
  SendRequest();
}

// The connect of a fresh connection is slow. A stall (the instance's accept
// backlog is full and drops the SYN) when it passed the stall threshold while
// other unconfirmed attempts are pending on the instance, or when a request
// that was held passed the connect timeout: nothing was sent, so the request
// goes back to the queue whatever its method. A request never held that
// passes the connect timeout gets 504 as before; a held one gets 504 at its
// queue deadline.
void Session::OnConnectDeadline() {
  beast::error_code ignored;
  switch (CheckConnect(
      MonoMs(), connect_start_ms_, connect_deadline_ms_, hold_deadline_ms_,
      absl::ToInt64Milliseconds(opts_.connect_stall_threshold),
      lease_->unconfirmed.load(std::memory_order_relaxed), &deadline_ms_)) {
    case ConnectCheck::kTimeout:
      timed_out_ = true;
      upstream_.close(ignored);
      return;
    case ConnectCheck::kStalled:
      stalled_ = true;
      upstream_.close(ignored);
      return;
    case ConnectCheck::kWait:
      return;
  }
}

// A fresh connection's request awaits its response and the attempt is not
// confirmed: every stall threshold, ask the kernel whether the instance got
// the request. Acknowledged: confirmed, the response timeout applies. Lost
// (the instance's kernel dropped the connection when its backlog was full):
// nothing reached the app, so the request is queued again. Pending: wait,
// until the queue deadline of a held request at the latest.
void Session::CheckDelivery() {
  beast::error_code ignored;
  switch (gateway::CheckDelivery(
      RequestDelivery(upstream_), !body_started_ && !expect_continue_, MonoMs(),
      response_deadline_ms_, hold_deadline_ms_,
      absl::ToInt64Milliseconds(opts_.connect_stall_threshold),
      &deadline_ms_)) {
    case DeliveryCheck::kConfirmed:
      SettleAttempt(AppState::Attempt::kConfirmed);
      deadline_ms_ = response_deadline_ms_;
      return;
    case DeliveryCheck::kLost:
      // Reset, not FIN: the unacknowledged request must not reach the
      // instance later (a retransmission accepted once its backlog has
      // room), as the request is sent again on a new connection.
      stalled_ = true;
      upstream_.set_option(asio::socket_base::linger(true, 0), ignored);
      upstream_.close(ignored);
      return;
    case DeliveryCheck::kTimeout:
      timed_out_ = true;
      upstream_.close(ignored);
      return;
    case DeliveryCheck::kWait:
      return;
  }
}

// Backs off on the instance (its connect window halves) and queues the
// request again, at the front (it has waited longest), keeping its queue
// deadline.
void Session::Stall() {
  stalled_ = false;
  beast::error_code ignored;
  upstream_.close(ignored);
  w_->gw->log->debug(
      "app={}/{} instance {}: connect stalled after {} ms, queued again",
      app_->ns, app_->app, lease_->instance_id, MonoMs() - connect_start_ms_);
  SettleAttempt(AppState::Attempt::kStalled);
  ReleaseLease(0);
  reused_ = false;
  if (hold_deadline_ms_ == 0) {
    hold_deadline_ms_ =
        MonoMs() + absl::ToInt64Milliseconds(opts_.queue_timeout);
    if (request_deadline_ms_ != 0) {
      hold_deadline_ms_ = std::min(hold_deadline_ms_, request_deadline_ms_);
    }
  }
  route_ = app_->route();
  Acquire(/*retry=*/true);
}

void Session::SettleAttempt(AppState::Attempt how) {
  if (!unconfirmed_ || !lease_) return;
  unconfirmed_ = false;
  app_->Settle(*lease_, how);
}

// The instance could not be reached, or a pooled connection failed before any
// response byte. Retries on another instance when that is safe, else 502/504.
void Session::UpstreamFailed(bool connect_failure) {
  beast::error_code ignored;
  upstream_.close(ignored);
  bool timed_out = timed_out_;
  timed_out_ = false;
  const EndpointState* failed = lease_.get();
  if (failed != nullptr) {
    excluded_hold_.push_back(lease_);
    if (connect_failure) excluded_.push_back(failed);
  }
  ++attempts_;
  bool can_retry = !body_started_ && !timed_out &&
                   attempts_ < opts_.max_connect_attempts && idempotent_;
  // A refused connection or a timeout is the instance's failure; a pooled
  // connection the instance had closed (retried on a fresh one) is not.
  int attempt_status = 0;
  if (timed_out) {
    attempt_status = 504;
  } else if (connect_failure || !can_retry) {
    attempt_status = 502;
  }
  ReleaseLease(attempt_status);
  reused_ = false;
  if (can_retry) {
    route_ = app_->route();
    Acquire();
    return;
  }
  if (timed_out) {
    Respond(http::status::gateway_timeout, "upstream timed out\n");
  } else {
    Respond(http::status::bad_gateway,
            "bad gateway: no instance could be reached\n");
  }
}

void Session::SendRequest() {
  phase_ = Phase::kSendRequest;
  auto& req = req_parser_->get();
  const bool chunked = req.chunked();
  req_out_.Begin(req.base(), !req_parser_->is_done(), chunked, chunked);
  request_sent_ = false;
  if (expect_continue_ && !req_parser_->is_done()) {
    expect_continue_ = false;
    SetDeadline(opts_.client_idle_timeout);
    asio::async_write(
        client_, asio::buffer(kContinue, sizeof(kContinue) - 1),
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->deadline_ms_ = 0;
          if (ec) return self->Abort();
          self->RelayRequestStep();
        });
    return;
  }
  RelayRequestStep();
}

// Reads the next piece of the request body from the client and writes it
// upstream (with the header, the first time).
void Session::RelayRequestStep() {
  if (req_parser_->is_done()) return WriteRequest(nullptr, 0, true);
  StopWatchingClient();  // reading the client notices it going away
  auto& body = req_parser_->get().body();
  if (!req_buf_) req_buf_.reset(new char[kBodyChunk]);
  body.data = req_buf_.get();
  body.size = kBodyChunk;
  body_started_ = true;
  SetDeadline(opts_.client_idle_timeout);
  http::async_read_some(
      client_, cbuf_, *req_parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) {
        self->deadline_ms_ = 0;
        if (ec == http::error::need_buffer) ec = {};
        if (ec) {
          if (ec == http::error::body_limit) {
            self->client_keep_alive_ = false;
            beast::error_code ignored;
            self->upstream_.close(ignored);
            self->ReleaseLease(413);
            return self->Respond(BodyTooLarge());
          }
          return self->Abort();
        }
        size_t n = kBodyChunk - self->req_parser_->get().body().size;
        bool last = self->req_parser_->is_done();
        // A chunk header or a chunk's CRLF: nothing to write yet.
        if (n == 0 && !last) return self->RelayRequestStep();
        self->WriteRequest(self->req_buf_.get(), n, last);
      });
}

void Session::WriteRequest(const char* data, size_t n, bool last) {
  request_sent_ = last;
  SetDeadline(opts_.client_idle_timeout);
  asio::async_write(upstream_,
                    req_out_.Frame(data, n, last, req_parser_->get().base()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->OnRequestWritten(ec);
                    });
}

void Session::OnRequestWritten(beast::error_code ec) {
  if (phase_ == Phase::kClosed) return;  // the client went away
  deadline_ms_ = 0;
  if (ec || timed_out_) {
    if (body_started_) return Abort();
    return UpstreamFailed(false);
  }
  if (!request_sent_) return RelayRequestStep();
  ReadResponseHeader();
}

void Session::ReadResponseHeader() {
  phase_ = Phase::kAwaitResponse;
  WatchClient();
  res_parser_.emplace();
  if (opts_.max_response_body_bytes > 0) {
    res_parser_->body_limit(opts_.max_response_body_bytes);
  } else {
    res_parser_->body_limit(boost::none);
  }
  res_parser_->header_limit(kMaxResponseHeaderBytes);
  if (is_head_) res_parser_->skip(true);
  SetExchangeDeadline(opts_.response_header_timeout,
                      route_->response_start_timeout_ms);
  if (unconfirmed_) {
    // A fresh connection: check its delivery (CheckDelivery) meanwhile.
    response_deadline_ms_ = deadline_ms_;
    deadline_ms_ = HoldDeadlineOr(std::min(
        deadline_ms_,
        MonoMs() + absl::ToInt64Milliseconds(opts_.connect_stall_threshold)));
  }
  http::async_read_header(
      upstream_, ubuf_, *res_parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) {
        if (self->stalled_) return self->Stall();
        self->SettleAttempt(ec ? AppState::Attempt::kAbandoned
                               : AppState::Attempt::kConfirmed);
        self->OnResponseHeader(ec);
      });
}

void Session::OnResponseHeader(beast::error_code ec) {
  if (phase_ == Phase::kClosed) return;  // the client went away
  StopWatchingClient();
  deadline_ms_ = 0;
  if (ec || timed_out_) {
    if (!timed_out_ && reused_ && !body_started_ && idempotent_ &&
        (ec == http::error::end_of_stream ||
         ec == asio::error::connection_reset || ec == asio::error::eof)) {
      // The pooled connection was closed by the instance: try a fresh one.
      return UpstreamFailed(false);
    }
    if (timed_out_) {
      beast::error_code ignored;
      upstream_.close(ignored);
      timed_out_ = false;
      ReleaseLease(504);
      return Respond(http::status::gateway_timeout, "upstream timed out\n");
    }
    beast::error_code ignored;
    upstream_.close(ignored);
    ReleaseLease(502);
    return Respond(http::status::bad_gateway,
                   "bad gateway: upstream closed the connection\n");
  }
  auto& res = res_parser_->get();
  status_ = res.result_int();
  if (upgrade_ && status_ == 101) return StartTunnel();
  ResponseFraming framing =
      PrepareClientResponse(res, res_parser_->need_eof(), is_head_,
                            client_version_, client_keep_alive_);
  upstream_keep_alive_ = framing.upstream_keep_alive;
  client_keep_alive_ = framing.client_keep_alive;
  // No body: HEAD, 1xx/204/304, Content-Length: 0 (the parser is done with
  // the header).
  res_out_.Begin(res.base(), !res_parser_->is_done(), res.chunked(),
                 framing.chunked_in);
  response_sent_ = false;
  response_started_ = true;
  RelayResponseStep();
}

// Reads the next piece of the response body from the instance and writes it
// to the client (with the header, the first time).
void Session::RelayResponseStep() {
  phase_ = Phase::kRelayResponse;
  if (res_parser_->is_done()) return WriteResponse(nullptr, 0, true);
  auto& body = res_parser_->get().body();
  if (!res_buf_) res_buf_.reset(new char[kBodyChunk]);
  body.data = res_buf_.get();
  body.size = kBodyChunk;
  SetExchangeDeadline(opts_.client_idle_timeout, IdleTimeoutMs());
  http::async_read_some(
      upstream_, ubuf_, *res_parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) {
        self->deadline_ms_ = 0;
        if (ec == http::error::need_buffer) ec = {};
        if (ec) return self->Abort();
        size_t n = kBodyChunk - self->res_parser_->get().body().size;
        bool last = self->res_parser_->is_done();
        if (n == 0 && !last) return self->RelayResponseStep();
        self->WriteResponse(self->res_buf_.get(), n, last);
      });
}

void Session::WriteResponse(const char* data, size_t n, bool last) {
  response_sent_ = last;
  SetExchangeDeadline(opts_.client_idle_timeout, IdleTimeoutMs());
  asio::async_write(client_,
                    res_out_.Frame(data, n, last, res_parser_->get().base()),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->OnResponseWritten(ec);
                    });
}

void Session::OnResponseWritten(beast::error_code ec) {
  deadline_ms_ = 0;
  if (ec || timed_out_) return Abort();
  if (!response_sent_) return RelayResponseStep();
  FinishExchange();
}

void Session::FinishExchange() {
  // Back to the pool if the exchange ended cleanly.
  if (upstream_keep_alive_ && res_parser_->is_done() && ubuf_.size() == 0 &&
      request_sent_ && !lease_->removed.load(std::memory_order_relaxed)) {
    if (w_->pool.Put(lease_, upstream_, opts_.max_idle_upstream_per_instance)) {
      upstream_ = tcp::socket(w_->ioc);
    }
  }
  beast::error_code ignored;
  if (upstream_.is_open()) upstream_.close(ignored);
  FinishMetrics(status_);
  ReleaseLease(status_);
  res_sr_.reset();
  res_parser_.reset();
  if (client_keep_alive_) {
    ReadRequest();
  } else {
    CloseClient();
  }
}

void Session::Respond(http::status status, std::string body, bool retry_after,
                      const std::string& location) {
  StopWatchingClient();
  phase_ = Phase::kRespond;
  status_ = static_cast<int>(status);
  bool keep = client_keep_alive_ && req_parser_ && req_parser_->is_done() &&
              !body_started_;
  client_keep_alive_ = keep;
  gen_res_ = std::make_unique<http::response<http::string_body>>(
      GatewayResponse(status, std::move(body), retry_after, keep));
  if (!location.empty()) gen_res_->set(http::field::location, location);
  SetDeadline(opts_.client_idle_timeout);
  http::async_write(client_, *gen_res_,
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->deadline_ms_ = 0;
                      self->FinishMetrics(self->status_);
                      self->gen_res_.reset();
                      if (ec || !self->client_keep_alive_)
                        return self->CloseClient();
                      self->ReadRequest();
                    });
}

void Session::Respond(Rejection rejection) {
  Respond(rejection.status, std::move(rejection.body));
}

void Session::ReleaseLease(int status) {
  if (rev_metrics_) {
    rev_metrics_->Finish(w_->index, rev_start_ns_, NowNs(), status);
    rev_metrics_ = nullptr;
  }
  if (lease_) {
    SettleAttempt(AppState::Attempt::kAbandoned);
    auto lease = std::move(lease_);
    lease_ = nullptr;
    app_->Release(lease);
  }
}

void Session::FinishMetrics(int status) {
  if (app_started_) {
    app_->metrics.Finish(w_->index, start_ns_, NowNs(), status);
    app_started_ = false;
  }
}

void Session::Abort() {
  beast::error_code ignored;
  upstream_.close(ignored);
  FinishMetrics(response_started_ ? status_ : 0);
  if (!response_started_) status_ = 0;
  ReleaseLease(status_);
  CloseClient();
}

void Session::CloseClient() {
  StopWatchingClient();
  phase_ = Phase::kClosed;
  deadline_ms_ = 0;
  beast::error_code ignored;
  client_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  client_.socket().close(ignored);
  if (upstream_.is_open()) upstream_.close(ignored);
}

void Session::OnDeadline() {
  auto self = shared_from_this();
  deadline_ms_ = 0;
  beast::error_code ignored;
  switch (phase_) {
    case Phase::kQueued:
      if (app_->Cancel(this)) {
        Respond(http::status::gateway_timeout,
                "timed out waiting for an instance\n");
      }
      return;
    case Phase::kConnect:
      OnConnectDeadline();
      return;
    case Phase::kAwaitResponse:
      if (unconfirmed_) {
        CheckDelivery();
        return;
      }
      timed_out_ = true;
      upstream_.close(ignored);
      return;
    case Phase::kSendRequest:
    case Phase::kRelayResponse:
    case Phase::kReadHeader:
    case Phase::kRespond:
      timed_out_ = true;
      client_.socket().close(ignored);
      upstream_.close(ignored);
      return;
    case Phase::kTunnel:
      EndTunnel();  // idle, or the client never closed after Going Away
      return;
    case Phase::kH2:
      h2_->OnDeadline();
      return;
    case Phase::kClosed:
      return;
  }
}

void Session::StartH2(const H2Upgrade* upgrade) {
  phase_ = Phase::kH2;
  deadline_ms_ = 0;
  auto early = cbuf_.data();  // what the client sent: the preface and more
  std::string received(static_cast<const char*>(early.data()), early.size());
  cbuf_.consume(cbuf_.size());
  req_parser_.reset();
  h2_ = std::make_shared<H2Conn>(w_, client_, client_ip_, client_.tls(),
                                 weak_from_this(), &deadline_ms_);
  if (!h2_->Start(received, upgrade)) CloseClient();
}

void Session::WatchClient() {
  if (watching_client_ || !req_parser_ || !req_parser_->is_done() ||
      !client_.socket().is_open()) {
    return;
  }
  watching_client_ = true;
  client_.socket().async_wait(
      tcp::socket::wait_read,
      [self = shared_from_this(), gen = ++watch_gen_](beast::error_code ec) {
        self->OnClientReadable(ec, gen);
      });
}

void Session::StopWatchingClient() {
  if (!watching_client_) return;
  watching_client_ = false;
  ++watch_gen_;
  beast::error_code ignored;
  client_.socket().cancel(ignored);  // nothing else is pending on the client
}

void Session::OnClientReadable(beast::error_code ec, uint64_t gen) {
  if (gen != watch_gen_ || ec) return;  // stopped
  watching_client_ = false;
  char c;
  ssize_t n;
  do {
    n = ::recv(client_.socket().native_handle(), &c, 1,
               MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return WatchClient();  // spurious wakeup
  }
  // n > 0: the client sent more (a pipelined request): it is still there and
  // its bytes wait for the next exchange. Nothing more to watch.
  if (n > 0) return;
  // EOF or reset: the client is gone (nginx's and Envoy's reading too: a
  // half-closed client has abandoned the request).
  w_->gw->client_closed_total.fetch_add(1, std::memory_order_relaxed);
  w_->gw->log->debug(
      "app={}/{}: client {} went away while {}", app_->ns, app_->app,
      client_ip_,
      phase_ == Phase::kQueued ? "queued" : "awaiting the response");
  if (phase_ == Phase::kQueued) {
    // If Dispatch() already won, OnDispatched() releases its lease (the
    // phase is no longer kQueued).
    app_->Cancel(this);
  }
  client_keep_alive_ = false;
  beast::error_code ignored;
  upstream_.close(ignored);
  FinishMetrics(0);
  ReleaseLease(0);
  CloseClient();
}

bool Session::TunnelTo(const std::string& instance_id) const {
  return phase_ == Phase::kTunnel && lease_ &&
         lease_->instance_id == instance_id;
}

void Session::StartTunnel() {
  phase_ = Phase::kTunnel;
  request_deadline_ms_ = 0;  // timeoutSeconds bounds the 101, not the tunnel
  switch_ns_ = NowNs();
  auto& res = res_parser_->get();
  websocket_ = PrepareSwitchingResponse(res) == "websocket";
  tunnel_open_ = true;
  lease_->tunnels.fetch_add(1, std::memory_order_relaxed);
  w_->gw->tunnels_total.fetch_add(1, std::memory_order_relaxed);
  w_->gw->tunnels_open.fetch_add(1, std::memory_order_relaxed);
  client_keep_alive_ = false;
  upstream_keep_alive_ = false;
  response_started_ = true;
  res.body().data = nullptr;
  res.body().more = false;
  res_sr_.emplace(res);
  TouchTunnel();
  down_writing_ = true;
  http::async_write_header(
      client_, *res_sr_,
      [self = shared_from_this()](beast::error_code ec, size_t) {
        self->down_writing_ = false;
        if (self->phase_ != Phase::kTunnel) return;
        if (ec) return self->EndTunnel();
        self->TouchTunnel();
        self->TunnelUp();
        self->TunnelDown();
      });
}

void Session::TunnelUp() {
  if (going_away_) cbuf_.consume(cbuf_.size());  // nobody to take it
  auto written = [self = shared_from_this()](beast::error_code ec, size_t) {
    if (self->phase_ != Phase::kTunnel) return;
    if (ec && !self->going_away_) return self->EndTunnel();
    self->TouchTunnel();
    self->TunnelUp();
  };
  if (cbuf_.size() > 0) {
    // What the client sent right after its request (its first frames).
    std::string early(static_cast<const char*>(cbuf_.data().data()),
                      cbuf_.size());
    cbuf_.consume(cbuf_.size());
    auto buf = std::make_shared<std::string>(std::move(early));
    asio::async_write(
        upstream_, asio::buffer(*buf),
        [buf, written](beast::error_code ec, size_t n) { written(ec, n); });
    return;
  }
  if (!req_buf_) req_buf_.reset(new char[kBodyChunk]);
  client_.async_read_some(
      asio::buffer(req_buf_.get(), kBodyChunk),
      [self = shared_from_this(), written](beast::error_code ec, size_t n) {
        if (self->phase_ != Phase::kTunnel) return;
        if (ec) {
          if (ec == asio::error::eof) return self->TunnelSideDone(true);
          return self->EndTunnel();
        }
        self->TouchTunnel();
        if (self->going_away_) return self->TunnelUp();  // discarded
        asio::async_write(self->upstream_,
                          asio::buffer(self->req_buf_.get(), n), written);
      });
}

void Session::TunnelDown() {
  if (going_away_) return SendGoingAway();
  if (ubuf_.size() > 0) {
    // What the instance sent right after its 101.
    auto data = ubuf_.data();
    ws_down_.Consume(static_cast<const unsigned char*>(data.data()),
                     data.size());
    down_writing_ = true;
    asio::async_write(
        client_, data,
        [self = shared_from_this()](beast::error_code ec, size_t n) {
          self->down_writing_ = false;
          if (self->phase_ != Phase::kTunnel) return;
          self->ubuf_.consume(n);
          if (ec) return self->EndTunnel();
          self->TouchTunnel();
          self->TunnelDown();
        });
    return;
  }
  if (!res_buf_) res_buf_.reset(new char[kBodyChunk]);
  upstream_.async_read_some(
      asio::buffer(res_buf_.get(), kBodyChunk),
      [self = shared_from_this()](beast::error_code ec, size_t n) {
        if (self->phase_ != Phase::kTunnel) return;
        if (self->going_away_) return self->SendGoingAway();
        if (ec) {
          if (ec == asio::error::eof) return self->TunnelSideDone(false);
          return self->EndTunnel();
        }
        self->OnTunnelDown(self->res_buf_.get(), n);
      });
}

void Session::OnTunnelDown(const char* data, size_t n) {
  ws_down_.Consume(reinterpret_cast<const unsigned char*>(data), n);
  TouchTunnel();
  down_writing_ = true;
  asio::async_write(client_, asio::buffer(data, n),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->down_writing_ = false;
                      if (self->phase_ != Phase::kTunnel) return;
                      if (ec) return self->EndTunnel();
                      self->TouchTunnel();
                      self->TunnelDown();
                    });
}

// One side closed its half: passed on as a half-close (a TLS client's
// connection ends instead), and the tunnel ends when both sides are done.
void Session::TunnelSideDone(bool up) {
  beast::error_code ignored;
  if (up) {
    up_done_ = true;
    upstream_.shutdown(tcp::socket::shutdown_send, ignored);
  } else {
    down_done_ = true;
    if (client_.tls()) return EndTunnel();
    client_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
  if (up_done_ && down_done_) EndTunnel();
}

void Session::GoAway() {
  if (phase_ != Phase::kTunnel || going_away_) return;
  going_away_ = true;
  w_->gw->tunnels_going_away_total.fetch_add(1, std::memory_order_relaxed);
  w_->gw->log->debug("app={}/{} instance {}: tunnel of {} closed (drained)",
                     app_->ns, app_->app, lease_->instance_id, client_ip_);
  if (down_done_) return SendGoingAway();
  // A write to the client in progress calls TunnelDown when done; a read
  // from the instance ends now. Either way SendGoingAway runs next.
  beast::error_code ignored;
  if (!down_writing_) upstream_.cancel(ignored);
}

// 1001 Going Away to a WebSocket client, between two of the instance's
// frames; then the client's close is awaited (2 s at most) before the
// connection ends. Anything else just ends.
void Session::SendGoingAway() {
  if (phase_ != Phase::kTunnel) return;
  if (!websocket_ || !ws_down_.AtBoundary() || down_done_) return EndTunnel();
  down_writing_ = true;
  SetDeadline(absl::Seconds(2));
  asio::async_write(client_, asio::buffer(kWsGoingAway, sizeof(kWsGoingAway)),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->down_writing_ = false;
                      if (self->phase_ != Phase::kTunnel) return;
                      if (ec || self->client_.tls()) return self->EndTunnel();
                      beast::error_code ignored;
                      self->client_.socket().shutdown(
                          tcp::socket::shutdown_send, ignored);
                      self->down_done_ = true;
                      self->SetDeadline(absl::Seconds(2));
                      if (self->up_done_) self->EndTunnel();
                    });
}

void Session::EndTunnel() {
  if (phase_ != Phase::kTunnel) return;
  if (tunnel_open_) {
    tunnel_open_ = false;
    lease_->tunnels.fetch_sub(1, std::memory_order_relaxed);
    w_->gw->tunnels_open.fetch_sub(1, std::memory_order_relaxed);
  }
  // In flight until now; its latency is that of the 101.
  const int64_t now = NowNs();
  if (app_started_) {
    app_->metrics.Finish(w_->index, start_ns_, now, 101, switch_ns_);
    app_started_ = false;
  }
  if (rev_metrics_) {
    rev_metrics_->Finish(w_->index, rev_start_ns_, now, 101, switch_ns_);
    rev_metrics_ = nullptr;
  }
  ReleaseLease(0);
  CloseClient();
}

}  // namespace tidal::gateway
