#include "gateway/h2_relay.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/client_stream_tls.h"
#include "gateway/clocks.h"
#include "gateway/gateway_impl.h"
#include "gateway/h2_stream.h"
#include "gateway/header_policy.h"
#include "gateway/request_policy.h"
#include "gateway/route_table.h"
#include "gateway/worker.h"

namespace tidal::gateway {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kWriteBatch = 64 * 1024;
// Per-stream and per-connection receive windows: what the gateway holds for
// a stream that the other side does not take yet.
constexpr int32_t kStreamWindow = 256 * 1024;
constexpr int32_t kConnectionWindow = 4 * 1024 * 1024;
constexpr uint32_t kMaxConcurrentStreams = 256;
constexpr int64_t kDownForNs = 1'000'000'000;

nghttp2_nv Nv(const std::string& name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

std::vector<nghttp2_nv> Nvs(const Headers& h) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(h.size());
  for (const auto& [n, v] : h) nva.push_back(Nv(n, v));
  return nva;
}

}  // namespace

// A multiplexed HTTP/2 (h2c) connection to one instance.
class H2Upstream : public StreamUpstream,
                   public std::enable_shared_from_this<H2Upstream> {
 public:
  H2Upstream(Worker* w, std::shared_ptr<EndpointState> ep)
      : ep(std::move(ep)), w_(w), sock_(w->ioc) {}
  ~H2Upstream() {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }

  bool usable() const { return !failed_ && !goaway_; }
  bool idle() const { return streams_.empty() && pending_.empty(); }

  void Connect();
  void Submit(const std::shared_ptr<H2Stream>& s);
  // The client side is done with `s`: resets its upstream stream if open.
  void Detach(H2Stream* s, bool flush) override;
  void Resume(H2Stream* s) override {
    if (s->up_id > 0 && session_ != nullptr) {
      nghttp2_session_resume_data(session_, s->up_id);
      ScheduleFlush();
    }
  }
  void Consume(H2Stream* s, size_t n) override {
    if (n == 0 || session_ == nullptr || s->up_id <= 0) return;
    s->res_unconsumed -= std::min(n, s->res_unconsumed);
    nghttp2_session_consume(session_, s->up_id, n);
    ScheduleFlush();
  }
  void Close() {
    boost::system::error_code ignored;
    sock_.close(ignored);
  }

  const std::shared_ptr<EndpointState> ep;
  int64_t idle_since_ms = 0;

 private:
  friend struct H2Callbacks;

  void OnConnect(boost::system::error_code ec);
  void SubmitNow(const std::shared_ptr<H2Stream>& s);
  void Read();
  void Flush();
  void ScheduleFlush();
  void Fail();
  H2Stream* Find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second;
  }
  void Forget(int32_t id) {
    streams_.erase(id);
    if (idle()) idle_since_ms = MonoMs();
  }

  Worker* const w_;
  tcp::socket sock_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, H2Stream*> streams_;
  std::vector<std::weak_ptr<H2Stream>> pending_;  // until connected
  bool connecting_ = false;
  bool connected_ = false;
  bool failed_ = false;
  bool goaway_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool flush_posted_ = false;
  uint8_t rbuf_[kReadChunk];
  std::string wbuf_;
};

// nghttp2's callbacks for both sides.
struct H2Callbacks {
  // --- The client side (server session). ---
  static int OnBeginHeaders(nghttp2_session* session,
                            const nghttp2_frame* frame, void* user) {
    auto* c = static_cast<H2Conn*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      return 0;
    }
    auto s = std::make_shared<H2Stream>();
    s->w = c->w_;
    s->conn = c->weak_from_this();
    s->id = frame->hd.stream_id;
    nghttp2_session_set_stream_user_data(session, s->id, s.get());
    c->streams_[s->id] = std::move(s);
    return 0;
  }

  static int OnRequestHeader(nghttp2_session* session,
                             const nghttp2_frame* frame, const uint8_t* name,
                             size_t namelen, const uint8_t* value,
                             size_t valuelen, uint8_t, void*) {
    auto* s = static_cast<H2Stream*>(
        nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (s == nullptr || s->routed) return 0;  // request trailers: dropped
    s->header_bytes += namelen + valuelen + 4;
    absl::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":method") {
      s->method = std::move(v);
    } else if (n == ":scheme") {
      s->scheme = std::move(v);
    } else if (n == ":authority") {
      s->authority = std::move(v);
    } else if (n == ":path") {
      s->path = std::move(v);
    } else if (!n.empty() && n[0] != ':') {
      if (n == "host") s->host_field = v;
      if (n == "content-type") s->SetContentType(v);
      if (n == "grpc-timeout") s->grpc_timeout_ms = ParseGrpcTimeoutMs(v);
      s->headers.emplace_back(std::string(n), std::move(v));
    }
    return 0;
  }

  static int OnClientFrame(nghttp2_session* session, const nghttp2_frame* frame,
                           void* user) {
    auto* c = static_cast<H2Conn*>(user);
    auto* s = static_cast<H2Stream*>(
        nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (s == nullptr) return 0;
    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && !s->routed) {
      s->req_ended = end;
      c->OnRequest(s);
      return 0;
    }
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        end) {
      s->req_ended = true;
      if (s->up) s->up->Resume(s);
    }
    return 0;
  }

  static int OnClientData(nghttp2_session* session, uint8_t, int32_t id,
                          const uint8_t* data, size_t len, void* user) {
    auto* s = static_cast<H2Stream*>(
        nghttp2_session_get_stream_user_data(session, id));
    if (s == nullptr) {
      nghttp2_session_consume(session, id, len);
      return 0;
    }
    s->req_bytes += len;
    const uint64_t limit = s->w->gw->opts.max_body_bytes;
    if (limit > 0 && s->req_bytes > limit && !s->req_over_limit) {
      s->req_over_limit = true;
      static_cast<H2Conn*>(user)->OnBodyTooLarge(s);
    }
    if (s->req_over_limit) {  // dropped, its window given back
      nghttp2_session_consume(session, id, len);
      return 0;
    }
    s->req.Append(data, len);
    s->req_unconsumed += len;
    if (s->up) s->up->Resume(s);
    return 0;
  }

  static int OnClientStreamClose(nghttp2_session*, int32_t id,
                                 uint32_t error_code, void* user) {
    static_cast<H2Conn*>(user)->OnStreamClose(id, error_code);
    return 0;
  }

  // The response body to the client, from what the instance sent.
  static ssize_t ReadResponse(nghttp2_session* session, int32_t id,
                              uint8_t* buf, size_t len, uint32_t* flags,
                              nghttp2_data_source*, void*) {
    auto* s = static_cast<H2Stream*>(
        nghttp2_session_get_stream_user_data(session, id));
    if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = s->res.Take(buf, len);
    if (n > 0 && s->up) s->up->Consume(s, n);
    if (s->res.empty() && s->res_ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s->has_trailers) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto nva = Nvs(s->trailers);
        nghttp2_submit_trailer(session, id, nva.data(), nva.size());
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) return NGHTTP2_ERR_DEFERRED;
    return static_cast<ssize_t>(n);
  }

  // --- The instance side (client session). ---
  static int OnResponseHeader(nghttp2_session* session,
                              const nghttp2_frame* frame, const uint8_t* name,
                              size_t namelen, const uint8_t* value,
                              size_t valuelen, uint8_t, void* user) {
    auto* u = static_cast<H2Upstream*>(user);
    H2Stream* s = u->Find(frame->hd.stream_id);
    if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS) return 0;
    std::string n(reinterpret_cast<const char*>(name), namelen);
    std::string v(reinterpret_cast<const char*>(value), valuelen);
    if (n == "grpc-status") {
      int code;
      if (absl::SimpleAtoi(v, &code)) s->grpc_status = code;
    }
    if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE ||
        (frame->headers.cat == NGHTTP2_HCAT_HEADERS && !s->res_headers_done)) {
      if (n == ":status") {
        int code;
        if (absl::SimpleAtoi(v, &code)) s->status = code;
      }
      s->res_headers.emplace_back(std::move(n), std::move(v));
    } else {
      s->trailers.emplace_back(std::move(n), std::move(v));
    }
    (void)session;
    return 0;
  }

  static int OnUpstreamFrame(nghttp2_session*, const nghttp2_frame* frame,
                             void* user) {
    auto* u = static_cast<H2Upstream*>(user);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      u->goaway_ = true;
      return 0;
    }
    H2Stream* s = u->Find(frame->hd.stream_id);
    if (s == nullptr) return 0;
    auto c = s->conn.lock();
    if (!c) return 0;
    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (!s->res_headers_done) {
        if (s->status >= 100 && s->status < 200) {  // informational: skipped
          s->res_headers.clear();
          s->status = 0;
          return 0;
        }
        s->res_headers_done = true;
        if (end) s->res_ended = true;
        c->OnResponseHeaders(s, end);
        return 0;
      }
      s->has_trailers = true;
      s->res_ended = true;
      c->OnResponseData(s);
      return 0;
    }
    if (frame->hd.type == NGHTTP2_DATA && end) {
      s->res_ended = true;
      c->OnResponseData(s);
    }
    return 0;
  }

  static int OnUpstreamData(nghttp2_session* session, uint8_t, int32_t id,
                            const uint8_t* data, size_t len, void* user) {
    auto* u = static_cast<H2Upstream*>(user);
    H2Stream* s = u->Find(id);
    auto c = s ? s->conn.lock() : nullptr;
    if (!c) {
      nghttp2_session_consume(session, id, len);
      return 0;
    }
    s->res.Append(data, len);
    s->res_unconsumed += len;
    c->OnResponseData(s);
    return 0;
  }

  static int OnUpstreamStreamClose(nghttp2_session*, int32_t id,
                                   uint32_t error_code, void* user) {
    auto* u = static_cast<H2Upstream*>(user);
    H2Stream* s = u->Find(id);
    u->Forget(id);
    if (s == nullptr) return 0;
    if (s->res_unconsumed > 0) {
      nghttp2_session_consume_connection(u->session_, s->res_unconsumed);
      s->res_unconsumed = 0;
    }
    s->up_id = 0;  // closed
    if (auto c = s->conn.lock()) c->OnUpstreamClosed(s, error_code);
    return 0;
  }

  // The request body to the instance, from what the client sent.
  static ssize_t ReadRequest(nghttp2_session* session, int32_t id, uint8_t* buf,
                             size_t len, uint32_t* flags, nghttp2_data_source*,
                             void* user) {
    auto* u = static_cast<H2Upstream*>(user);
    H2Stream* s = u->Find(id);
    auto c = s ? s->conn.lock() : nullptr;
    if (!c) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    (void)session;
    size_t n = s->req.Take(buf, len);
    if (n > 0) c->Consume(s, n);
    if (s->req.empty() && s->req_ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    }
    if (n == 0) return NGHTTP2_ERR_DEFERRED;
    return static_cast<ssize_t>(n);
  }
};

bool IsH2Preface(absl::string_view received) {
  return absl::StartsWith(received, "PRI * HTTP/2.0\r\n");
}

int GrpcStatusToHttp(int code) {
  switch (code) {
    case 0:
      return 200;
    case 1:
      return 499;
    case 3:
    case 9:
    case 11:
      return 400;
    case 4:
      return 504;
    case 5:
      return 404;
    case 6:
    case 10:
      return 409;
    case 7:
      return 403;
    case 8:
      return 429;
    case 12:
      return 501;
    case 14:
      return 503;
    case 16:
      return 401;
    default:
      return 500;  // UNKNOWN, INTERNAL, DATA_LOSS, anything else
  }
}

int64_t ParseGrpcTimeoutMs(absl::string_view v) {
  if (v.size() < 2 || v.size() > 9) return -1;
  int64_t n;
  if (!absl::SimpleAtoi(v.substr(0, v.size() - 1), &n) || n < 0) return -1;
  switch (v.back()) {
    case 'H':
      return n * 3600 * 1000;
    case 'M':
      return n * 60 * 1000;
    case 'S':
      return n * 1000;
    case 'm':
      return n;
    case 'u':
      return (n + 999) / 1000;
    case 'n':
      return (n + 999999) / 1000000;
    default:
      return -1;
  }
}

// ---------------------------------------------------------------- H2Conn

H2Conn::H2Conn(Worker* w, ClientStream& client, std::string client_ip, bool tls,
               std::weak_ptr<void> owner, int64_t* deadline)
    : w_(w),
      client_(client),
      client_ip_(std::move(client_ip)),
      tls_(tls),
      owner_(std::move(owner)),
      deadline_(deadline),
      rbuf_(new uint8_t[kReadChunk]) {}

H2Conn::~H2Conn() {
  dying_ = true;
  for (auto& [id, s] : streams_) {
    if (s->queued) s->app->Cancel(s.get());
    FinishStream(s.get(), s->res_submitted ? s->status : 499);
  }
  streams_.clear();
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool H2Conn::Start(absl::string_view received, const H2Upgrade* upgrade) {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(
      cbs, &H2Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(
      cbs, &H2Callbacks::OnRequestHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      cbs, &H2Callbacks::OnClientFrame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cbs, &H2Callbacks::OnClientData);
  nghttp2_session_callbacks_set_on_stream_close_callback(
      cbs, &H2Callbacks::OnClientStreamClose);
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  int rv = nghttp2_session_server_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) return false;
  if (upgrade != nullptr) {
    // HTTP/1.1 Upgrade: h2c. The 101 goes first; the request becomes
    // stream 1, half-closed: its answer is the first HTTP/2 response.
    std::string settings;
    if (!absl::WebSafeBase64Unescape(upgrade->http2_settings, &settings) ||
        nghttp2_session_upgrade2(
            session_, reinterpret_cast<const uint8_t*>(settings.data()),
            settings.size(), upgrade->method == "HEAD", nullptr) != 0) {
      return false;
    }
    prefix_ =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        "Upgrade: h2c\r\n\r\n";
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      // Advisory (RFC 9113 6.5.2); OnRequest answers 431 past it.
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(w_->gw->opts.max_header_bytes)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, 3);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        kConnectionWindow);
  MarkIdle();
  if (upgrade != nullptr) {
    auto s = std::make_shared<H2Stream>();
    s->w = w_;
    s->conn = weak_from_this();
    s->id = 1;
    s->method = upgrade->method;
    s->path = upgrade->target;
    s->scheme = "http";
    s->authority = upgrade->host;
    for (const auto& [n, v] : upgrade->fields) {
      if (n == "content-type") s->SetContentType(v);
      s->headers.emplace_back(n, v);
    }
    s->req_ended = true;
    nghttp2_session_set_stream_user_data(session_, 1, s.get());
    streams_[1] = s;
    OnRequest(s.get());
  }
  if (!received.empty()) {
    ssize_t n = nghttp2_session_mem_recv(
        session_, reinterpret_cast<const uint8_t*>(received.data()),
        received.size());
    if (n < 0) return false;
  }
  Flush();
  Read();
  return true;
}

void H2Conn::Read() {
  if (reading_ || closed_) return;
  if (!nghttp2_session_want_read(session_)) {
    if (!writing_ && !nghttp2_session_want_write(session_)) CloseClient();
    return;
  }
  reading_ = true;
  client_.async_read_some(
      asio::buffer(rbuf_.get(), kReadChunk),
      [self = shared_from_this(), keep = owner_.lock()](
          boost::system::error_code ec, size_t n) {
        self->reading_ = false;
        if (self->closed_) return;
        if (ec) return self->CloseClient();
        ssize_t rv =
            nghttp2_session_mem_recv(self->session_, self->rbuf_.get(), n);
        if (rv < 0) {
          self->w_->gw->log->debug("gateway: HTTP/2 client {}: {}",
                                   self->client_ip_,
                                   nghttp2_strerror(static_cast<int>(rv)));
          self->Flush();  // the GOAWAY nghttp2 queued, if any
          return self->CloseClient();
        }
        self->Flush();
        self->Read();
      });
}

void H2Conn::ScheduleFlush() {
  if (flush_posted_ || closed_) return;
  flush_posted_ = true;
  asio::post(w_->ioc, [self = shared_from_this(), keep = owner_.lock()] {
    self->flush_posted_ = false;
    self->Flush();
  });
}

void H2Conn::Flush() {
  if (writing_ || closed_) return;
  wbuf_.clear();
  wbuf_.swap(prefix_);  // the 101 of an upgrade, before any frame
  while (wbuf_.size() < kWriteBatch) {
    const uint8_t* data;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) return CloseClient();
    if (n == 0) break;
    wbuf_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (wbuf_.empty()) {
    if (!nghttp2_session_want_read(session_) &&
        !nghttp2_session_want_write(session_)) {
      CloseClient();
    }
    return;
  }
  writing_ = true;
  asio::async_write(client_, asio::buffer(wbuf_),
                    [self = shared_from_this(), keep = owner_.lock()](
                        boost::system::error_code ec, size_t) {
                      self->writing_ = false;
                      if (ec) return self->CloseClient();
                      self->Flush();
                      self->Read();
                    });
}

void H2Conn::MarkIdle() {
  idle_since_ms_ = MonoMs();
  SetDeadlineAtMost(idle_since_ms_ + absl::ToInt64Milliseconds(
                                         w_->gw->opts.client_idle_timeout));
}

void H2Conn::CloseClient() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  client_.socket().close(ignored);
  *deadline_ = 0;
}

bool H2Conn::RefusedGrpcToHttp1(H2Stream* s) {
  if (!s->grpc || s->grpc_web || s->route->h2 || s->route->provisional)
    return false;
  // gRPC needs HTTP/2 to the instance (its status is in trailers): an app
  // of HTTP/1.1 would answer with whatever its server says of the path.
  Respond(s, 404,
          absl::StrCat("app ", s->app->app, " in namespace ", s->app->ns,
                       " speaks HTTP/1.1, not gRPC: set its "
                       "spec.template.protocol to grpc (or h2c)"),
          "", /*grpc_code=*/12);
  return true;
}

void H2Conn::OnRequest(H2Stream* s) {
  s->routed = true;
  idle_since_ms_ = 0;
  auto self_stream = streams_[s->id];
  const Worker& w = *w_;
  // --gateway-https-redirect holds for HTTP/2 in clear text too (prior
  // knowledge; gRPC clients read the 308 as UNAVAILABLE, with its message).
  if (w.gw->opts.https_redirect && !tls_) {
    absl::string_view host =
        s->authority.empty() ? absl::string_view(s->host_field) : s->authority;
    if (auto location = HttpsRedirectLocation(host, s->path, w.gw->tls_port)) {
      return Respond(s, 308, "see " + *location + "\n", *location);
    }
  }
  // The limits of HTTP/1.1 requests (request_policy.h), before routing.
  if (s->header_bytes > w.gw->opts.max_header_bytes) {
    Rejection r = HeaderTooLarge();
    return Respond(s, static_cast<int>(r.status), r.body);
  }
  if (w.gw->opts.max_body_bytes > 0) {
    for (const auto& [n, v] : s->headers) {
      uint64_t length = 0;
      if (n == "content-length" && absl::SimpleAtoi(v, &length) &&
          length > w.gw->opts.max_body_bytes) {
        Rejection r = BodyTooLarge();
        return Respond(s, static_cast<int>(r.status), r.body);
      }
    }
  }
  absl::string_view host_field =
      s->authority.empty() ? absl::string_view(s->host_field) : s->authority;
  HostRoute host_route = RouteForHost(host_field, w.gw->opts.domain);
  s->host = std::move(host_route.host);
  s->app = w_->FindApp(host_route.key);
  if (s->app == nullptr) {
    w_->gw->unknown_host_total.fetch_add(1, std::memory_order_relaxed);
    Rejection r = UnknownHost(s->host);
    return Respond(s, static_cast<int>(r.status), r.body);
  }
  s->route = s->app->route();
  s->start_ns = NowNs();
  s->app->last_request_ns.store(s->start_ns, std::memory_order_relaxed);
  s->app->metrics.Start(w_->index, s->start_ns);
  s->app_started = true;
  // Known now unless the app's route has not come yet (then on the lease):
  // refused before it could wake an app at zero.
  if (RefusedGrpcToHttp1(s)) return;
  const int64_t now = MonoMs();
  int64_t total = s->route->timeout_ms;
  if (s->grpc_timeout_ms >= 0 && (total == 0 || s->grpc_timeout_ms < total)) {
    total = std::max<int64_t>(s->grpc_timeout_ms, 1);
  }
  if (total > 0) {
    s->total_deadline_ms = now + total;
    SetDeadlineAtMost(s->total_deadline_ms);
  }
  s->idle_ms = s->route->idle_timeout_ms;
  // The request's fields for the instance, as header_policy.h does for
  // HTTP/1.1: X-Forwarded-For gets the client, X-Forwarded-Proto the scheme,
  // X-Request-Id one if none.
  bool have_xff = false, have_rid = false;
  for (auto& [n, v] : s->headers) {
    if (n == "x-forwarded-for") {
      have_xff = true;
      absl::StrAppend(&v, ", ", client_ip_);
    } else if (n == "x-forwarded-proto") {
      v = tls_ ? "https" : "http";
    } else if (n == "x-request-id") {
      have_rid = !v.empty();
    }
  }
  if (!have_xff) s->headers.emplace_back("x-forwarded-for", client_ip_);
  s->headers.emplace_back("x-forwarded-proto", tls_ ? "https" : "http");
  if (!have_rid)
    s->headers.emplace_back("x-request-id", NewRequestId(&w_->rng));
  Acquire(self_stream);
}

void H2Conn::Acquire(const std::shared_ptr<H2Stream>& s) {
  std::shared_ptr<EndpointState> lease;
  s->queued = true;
  switch (s->app->AcquireOrWait(*s->route, s, s->excluded, &w_->rng, NowNs(),
                                &lease)) {
    case AppState::Outcome::kLeased:
      return OnLease(s, std::move(lease));
    case AppState::Outcome::kQueued:
      if (s->hold_deadline_ms == 0) {
        s->hold_deadline_ms =
            MonoMs() + absl::ToInt64Milliseconds(w_->gw->opts.queue_timeout);
        if (s->total_deadline_ms != 0) {
          s->hold_deadline_ms =
              std::min(s->hold_deadline_ms, s->total_deadline_ms);
        }
      }
      SetDeadlineAtMost(s->hold_deadline_ms);
      return;
    case AppState::Outcome::kOverflow:
      s->queued = false;
      return Respond(s.get(), 503, "queue full, retry later\n");
    case AppState::Outcome::kGone: {
      s->queued = false;
      Rejection r = UnknownHost(s->host);
      return Respond(s.get(), static_cast<int>(r.status), r.body);
    }
  }
}

void H2Conn::OnLease(const std::shared_ptr<H2Stream>& s,
                     std::shared_ptr<EndpointState> lease, bool waited) {
  // The route may have changed while the stream waited (from a provisional
  // one to the app's own, Gateway::Impl::Provisional).
  if (waited) s->route = s->app->route();
  s->queued = false;
  if (!lease) {
    Rejection r = UnknownHost(s->host);
    return Respond(s.get(), static_cast<int>(r.status), r.body);
  }
  // A multiplexed connection has no connect window to confirm per request.
  s->app->Settle(*lease, AppState::Attempt::kAbandoned);
  s->lease = std::move(lease);
  s->rev_metrics = s->lease->revision_metrics;
  s->rev_start_ns = NowNs();
  s->rev_metrics->Start(w_->index, s->rev_start_ns);
  const GatewayOptions& o = w_->gw->opts;
  int64_t start_ms = s->route->response_start_timeout_ms > 0
                         ? s->route->response_start_timeout_ms
                         : absl::ToInt64Milliseconds(o.response_header_timeout);
  s->response_deadline_ms = MonoMs() + start_ms;
  SetDeadlineAtMost(s->response_deadline_ms);
  if (RefusedGrpcToHttp1(s.get())) return;
  if (s->route->h2) {
    auto up = w_->h2_pool->Get(s->lease);
    s->up = up;
    up->Submit(s);
  } else {
    s->up = StartHttp1Exchange(w_, s);
  }
}

void H2Conn::OnUpstreamConnectFailed(const std::shared_ptr<H2Stream>& s) {
  s->lease->down_until_ns.store(NowNs() + kDownForNs,
                                std::memory_order_relaxed);
  s->excluded_hold.push_back(s->lease);
  s->excluded.push_back(s->lease.get());
  s->rev_metrics->Finish(w_->index, s->rev_start_ns, NowNs(), 502);
  s->rev_metrics = nullptr;
  s->app->Release(s->lease);
  s->lease = nullptr;
  s->up = nullptr;
  s->up_id = -1;
  // Nothing reached the instance: safe to try another whatever the method.
  if (++s->attempts < w_->gw->opts.max_connect_attempts) {
    s->route = s->app->route();
    return Acquire(s);
  }
  Respond(s.get(), 502, "bad gateway: no instance could be reached\n");
}

void H2Conn::OnResponseHeaders(H2Stream* s, bool end_stream) {
  if (s->res_submitted || closed_) return;
  s->res_submitted = true;
  s->response_deadline_ms = 0;
  if (s->idle_ms > 0) {
    s->idle_deadline_ms = MonoMs() + s->idle_ms;
    SetDeadlineAtMost(s->idle_deadline_ms);
  }
  auto nva = Nvs(s->res_headers);
  nghttp2_data_provider prd;
  prd.source.ptr = nullptr;
  prd.read_callback = &H2Callbacks::ReadResponse;
  nghttp2_submit_response(session_, s->id, nva.data(), nva.size(),
                          end_stream ? nullptr : &prd);
  ScheduleFlush();
}

void H2Conn::OnResponseData(H2Stream* s) {
  if (closed_) return;
  if (s->idle_ms > 0) s->idle_deadline_ms = MonoMs() + s->idle_ms;
  if (!s->res_submitted) return;
  nghttp2_session_resume_data(session_, s->id);
  ScheduleFlush();
}

void H2Conn::OnUpstreamClosed(H2Stream* s, uint32_t error_code) {
  if (error_code == NGHTTP2_NO_ERROR && s->res_ended) return;  // relayed
  if (!s->res_submitted && error_code == NGHTTP2_REFUSED_STREAM) {
    // The instance refused the stream before it processed it (GOAWAY,
    // stream limit): safe to send it elsewhere.
    auto it = streams_.find(s->id);
    if (it != streams_.end()) return OnUpstreamConnectFailed(it->second);
  }
  if (!s->res_submitted) {
    return Respond(s, 502, "bad gateway: the instance reset the stream\n");
  }
  s->status = 502;
  ResetStream(
      s, error_code == NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : error_code);
}

void H2Conn::Consume(H2Stream* s, size_t n) {
  if (closed_ || n == 0) return;
  s->req_unconsumed -= std::min(n, s->req_unconsumed);
  nghttp2_session_consume(session_, s->id, n);
  ScheduleFlush();
}

void H2Conn::Respond(H2Stream* s, int status, const std::string& body,
                     const std::string& location, int grpc_code) {
  if (s->res_submitted) return;
  s->res_submitted = true;
  s->status = status;
  s->res_headers_done = true;
  if (s->up) s->up->Detach(s, true);
  if (s->grpc) {
    // gRPC clients read the outcome from grpc-status (trailers-only).
    int code = grpc_code >= 0  ? grpc_code
               : status == 404 ? 12
               : status == 504 ? 4
                               : 14;
    s->grpc_status = code;
    Headers h = {
        {":status", "200"},
        {"content-type", "application/grpc"},
        {"grpc-status", absl::StrCat(code)},
        {"grpc-message", std::string(absl::StripAsciiWhitespace(body))}};
    auto nva = Nvs(h);
    nghttp2_submit_response(session_, s->id, nva.data(), nva.size(), nullptr);
  } else {
    s->res.Append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    s->res_ended = true;
    Headers h = {{":status", absl::StrCat(status)},
                 {"content-type", "text/plain; charset=utf-8"},
                 {"content-length", absl::StrCat(body.size())}};
    if (status == 503) h.emplace_back("retry-after", "1");
    if (!location.empty()) h.emplace_back("location", location);
    auto nva = Nvs(h);
    nghttp2_data_provider prd;
    prd.source.ptr = nullptr;
    prd.read_callback = &H2Callbacks::ReadResponse;
    nghttp2_submit_response(session_, s->id, nva.data(), nva.size(), &prd);
  }
  ScheduleFlush();
}

void H2Conn::OnBodyTooLarge(H2Stream* s) {
  if (!s->res_submitted) {
    Rejection r = BodyTooLarge();
    return Respond(s, static_cast<int>(r.status), r.body);
  }
  // The instance answered already (a streamed upload): the rest of the
  // request cannot reach it.
  s->status = 413;
  ResetStream(s, NGHTTP2_CANCEL);
}

void H2Conn::ResetStream(H2Stream* s, uint32_t error_code) {
  if (s->up) s->up->Detach(s, true);
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id, error_code);
  ScheduleFlush();
}

// Records the stream's outcome once, and ends its lease.
void H2Conn::FinishStream(H2Stream* s, int status) {
  if (s->finished) return;
  s->finished = true;
  if (s->up) s->up->Detach(s, !dying_);
  if (s->grpc && s->grpc_status >= 0) status = GrpcStatusToHttp(s->grpc_status);
  const int64_t now = NowNs();
  if (s->rev_metrics) {
    s->rev_metrics->Finish(w_->index, s->rev_start_ns, now, status);
    s->rev_metrics = nullptr;
  }
  if (s->lease) {
    s->app->Release(s->lease);
    s->lease = nullptr;
  }
  if (s->app_started) {
    s->app->metrics.Finish(w_->index, s->start_ns, now, status);
    s->app_started = false;
  }
}

void H2Conn::OnStreamClose(int32_t id, uint32_t error_code) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  std::shared_ptr<H2Stream> s = std::move(it->second);
  streams_.erase(it);
  if (s->queued) {
    s->app->Cancel(s.get());
    s->queued = false;
  }
  if (s->req_unconsumed > 0) {
    nghttp2_session_consume_connection(session_, s->req_unconsumed);
    s->req_unconsumed = 0;
  }
  // A stream the client reset before its response ended: 499, as nginx
  // counts a client that went away.
  int status = s->status;
  if (error_code != NGHTTP2_NO_ERROR && !(s->res_ended && s->res.empty())) {
    if (status == 0 || status < 400) status = 499;
  }
  if (!s->routed) status = 400;
  FinishStream(s.get(), status == 0 ? 499 : status);
  if (streams_.empty()) MarkIdle();
}

void H2Conn::OnDeadline() {
  auto keep = shared_from_this();
  const int64_t now = MonoMs();
  int64_t next = 0;
  auto consider = [&](int64_t ms) {
    if (ms != 0 && (next == 0 || ms < next)) next = ms;
  };
  std::vector<std::shared_ptr<H2Stream>> due;
  for (auto& [id, s] : streams_) {
    if (s->finished) continue;
    int64_t d = 0;
    auto take = [&](int64_t ms) {
      if (ms != 0 && (d == 0 || ms < d)) d = ms;
    };
    if (s->queued) take(s->hold_deadline_ms);
    if (!s->res_submitted) take(s->response_deadline_ms);
    take(s->total_deadline_ms);
    if (s->res_submitted && !s->res_ended) take(s->idle_deadline_ms);
    if (d != 0 && d <= now) {
      due.push_back(s);
    } else {
      consider(d);
    }
  }
  for (auto& s : due) {
    if (s->queued) {
      if (!s->app->Cancel(s.get())) continue;  // dispatched meanwhile
      s->queued = false;
      Respond(s.get(), 504, "timed out waiting for an instance\n");
      continue;
    }
    if (!s->res_submitted) {
      Respond(s.get(), 504, "upstream timed out\n");
      continue;
    }
    s->status = 504;
    ResetStream(s.get(), NGHTTP2_CANCEL);
  }
  if (streams_.empty() && idle_since_ms_ != 0) {
    int64_t idle_end = idle_since_ms_ + absl::ToInt64Milliseconds(
                                            w_->gw->opts.client_idle_timeout);
    if (idle_end <= now) {
      nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
      Flush();
      if (!writing_) CloseClient();
      return;
    }
    consider(idle_end);
  }
  *deadline_ = closed_ ? 0 : next;
}

// ------------------------------------------------------------- H2Upstream

void H2Upstream::Connect() {
  connecting_ = true;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(ep->host, ec);
  if (ec) return Fail();
  sock_.async_connect(
      tcp::endpoint(address, static_cast<uint16_t>(ep->port)),
      [self = shared_from_this()](boost::system::error_code ec) {
        self->OnConnect(ec);
      });
}

void H2Upstream::OnConnect(boost::system::error_code ec) {
  connecting_ = false;
  if (ec || failed_) return Fail();
  sock_.set_option(tcp::no_delay(true), ec);
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(
      cbs, &H2Callbacks::OnResponseHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      cbs, &H2Callbacks::OnUpstreamFrame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cbs, &H2Callbacks::OnUpstreamData);
  nghttp2_session_callbacks_set_on_stream_close_callback(
      cbs, &H2Callbacks::OnUpstreamStreamClose);
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  int rv = nghttp2_session_client_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) return Fail();
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, 2);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        kConnectionWindow);
  connected_ = true;
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& weak : pending) {
    if (auto s = weak.lock(); s && s->up.get() == this && s->up_id == -1) {
      SubmitNow(s);
    }
  }
  Flush();
  Read();
}

void H2Upstream::Submit(const std::shared_ptr<H2Stream>& s) {
  idle_since_ms = 0;
  if (connected_) {
    SubmitNow(s);
    ScheduleFlush();
    return;
  }
  pending_.push_back(s);
  if (!connecting_) Connect();
}

void H2Upstream::SubmitNow(const std::shared_ptr<H2Stream>& s) {
  Headers h;
  h.reserve(s->headers.size() + 4);
  h.emplace_back(":method", s->method);
  h.emplace_back(":scheme", "http");
  h.emplace_back(":authority",
                 s->authority.empty() ? s->host_field : s->authority);
  h.emplace_back(":path", s->path);
  for (const auto& kv : s->headers) {
    if (kv.first != "host") h.push_back(kv);
  }
  auto nva = Nvs(h);
  nghttp2_data_provider prd;
  prd.source.ptr = nullptr;
  prd.read_callback = &H2Callbacks::ReadRequest;
  const bool no_body = s->req_ended && s->req.empty();
  int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                      no_body ? nullptr : &prd, nullptr);
  if (id < 0) {
    if (auto c = s->conn.lock()) c->OnUpstreamConnectFailed(s);
    return;
  }
  s->up_id = id;
  streams_[id] = s.get();
}

void H2Upstream::Detach(H2Stream* s, bool flush) {
  if (s->up.get() != this) return;
  if (s->up_id > 0) {
    streams_.erase(s->up_id);
    if (session_ != nullptr && !failed_ &&
        nghttp2_session_find_stream(session_, s->up_id) != nullptr) {
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->up_id,
                                NGHTTP2_CANCEL);
      if (s->res_unconsumed > 0) {
        nghttp2_session_consume(session_, s->up_id, s->res_unconsumed);
        s->res_unconsumed = 0;
      }
      if (flush) ScheduleFlush();
    }
    if (idle()) idle_since_ms = MonoMs();
  }
  s->up_id = 0;
  auto self = shared_from_this();
  s->up = nullptr;
}

void H2Upstream::Read() {
  if (reading_ || failed_) return;
  reading_ = true;
  sock_.async_read_some(
      asio::buffer(rbuf_, sizeof rbuf_),
      [self = shared_from_this()](boost::system::error_code ec, size_t n) {
        self->reading_ = false;
        if (self->failed_) return;
        if (ec) return self->Fail();
        if (nghttp2_session_mem_recv(self->session_, self->rbuf_, n) < 0) {
          return self->Fail();
        }
        self->Flush();
        self->Read();
      });
}

void H2Upstream::ScheduleFlush() {
  if (flush_posted_ || failed_ || !connected_) return;
  flush_posted_ = true;
  asio::post(w_->ioc, [self = shared_from_this()] {
    self->flush_posted_ = false;
    self->Flush();
  });
}

void H2Upstream::Flush() {
  if (writing_ || failed_ || session_ == nullptr) return;
  wbuf_.clear();
  while (wbuf_.size() < kWriteBatch) {
    const uint8_t* data;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) return Fail();
    if (n == 0) break;
    wbuf_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (wbuf_.empty()) {
    if (!nghttp2_session_want_read(session_) &&
        !nghttp2_session_want_write(session_)) {
      Fail();  // GOAWAY exchanged, nothing left
    }
    return;
  }
  writing_ = true;
  asio::async_write(
      sock_, asio::buffer(wbuf_),
      [self = shared_from_this()](boost::system::error_code ec, size_t) {
        self->writing_ = false;
        if (ec) return self->Fail();
        self->Flush();
      });
}

// The connection failed or ended: streams not yet answered are retried
// elsewhere when nothing of them reached the instance, else fail.
void H2Upstream::Fail() {
  if (failed_) return;
  failed_ = true;
  Close();
  w_->h2_pool->Forget(ep->uid, this);
  auto self = shared_from_this();
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& weak : pending) {
    auto s = weak.lock();
    if (!s || s->up.get() != this) continue;
    if (auto c = s->conn.lock()) c->OnUpstreamConnectFailed(s);
  }
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, s] : streams) {
    s->up_id = 0;
    if (auto c = s->conn.lock()) c->OnUpstreamClosed(s, NGHTTP2_INTERNAL_ERROR);
  }
}

// ---------------------------------------------------------- H2UpstreamPool

H2UpstreamPool::~H2UpstreamPool() {
  for (auto& [uid, c] : conns_) c->Close();
}

std::shared_ptr<H2Upstream> H2UpstreamPool::Get(
    const std::shared_ptr<EndpointState>& lease) {
  auto it = conns_.find(lease->uid);
  if (it != conns_.end() && it->second->usable()) return it->second;
  auto conn = std::make_shared<H2Upstream>(w_, lease);
  conns_[lease->uid] = conn;
  return conn;
}

void H2UpstreamPool::Forget(uint64_t uid, const H2Upstream* conn) {
  auto it = conns_.find(uid);
  if (it != conns_.end() && it->second.get() == conn) conns_.erase(it);
}

void H2UpstreamPool::Expire(int64_t now_ms, int64_t idle_ms) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    H2Upstream& c = *it->second;
    bool removed = c.ep->removed.load(std::memory_order_relaxed);
    if (c.idle() && c.idle_since_ms != 0 &&
        (removed || now_ms - c.idle_since_ms >= idle_ms)) {
      c.Close();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace tidal::gateway
