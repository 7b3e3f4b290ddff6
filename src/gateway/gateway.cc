#include "gateway/gateway.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <list>
#include <optional>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "gateway/request_metrics.h"
#include "gateway/route_table.h"

namespace tidal::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kBodyChunk = 64 * 1024;
constexpr int64_t kSweepMs = 50;
constexpr int64_t kAcceptBackoffMs = 50;
constexpr int64_t kTrustIdleMs =
    100;  // pooled connections younger than this are used unchecked
constexpr int64_t kDownForNs =
    1'000'000'000;  // skip a refusing instance for 1 s

int64_t NowNs() { return absl::GetCurrentTimeNanos(); }
int64_t MonoMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Hop-by-hop headers (RFC 9110 7.6.1) plus the ones named in Connection.
// Transfer-Encoding is kept: the body is re-framed with it. Trailer is kept:
// trailer fields are relayed when the outgoing body is chunked.
template <bool isRequest, class Fields>
void StripHopByHop(http::header<isRequest, Fields>& h) {
  std::string connection(h[http::field::connection]);
  for (absl::string_view token : absl::StrSplit(connection, ',')) {
    token = absl::StripAsciiWhitespace(token);
    if (token.empty() || absl::EqualsIgnoreCase(token, "close") ||
        absl::EqualsIgnoreCase(token, "keep-alive") ||
        absl::EqualsIgnoreCase(token, "transfer-encoding")) {
      continue;
    }
    h.erase(beast::string_view(token.data(), token.size()));
  }
  h.erase(http::field::connection);
  h.erase(http::field::keep_alive);
  h.erase(http::field::proxy_connection);
  h.erase(http::field::te);
  h.erase(http::field::upgrade);
  h.erase(http::field::proxy_authenticate);
  h.erase(http::field::proxy_authorization);
}

bool Idempotent(http::verb v) {
  switch (v) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::put:
    case http::verb::delete_:
    case http::verb::trace:
      return true;
    default:
      return false;
  }
}

// True if a pooled upstream connection is still open and has no stray bytes.
bool StillOpen(tcp::socket& s) {
  char c;
  ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

// What the kernel knows of a fresh upstream connection's request bytes.
enum class Delivery { kAcked, kPending, kLost };
// kAcked: the instance's kernel acknowledged everything sent (the
// connection sits in its accept queue or is accepted). kLost: the bytes were
// retransmitted and still not acknowledged: the instance's kernel has no
// such connection (its accept queue was full when the handshake's last ACK
// came, a SYN cookie connection it dropped), so nothing reached the app.
// kPending: neither yet.
Delivery RequestDelivery(tcp::socket& s) {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (::getsockopt(s.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
    return Delivery::kPending;
  if (info.tcpi_unacked == 0) return Delivery::kAcked;
  return info.tcpi_retransmits > 0 ? Delivery::kLost : Delivery::kPending;
}

// Fields that framing or routing own: never relayed as trailer fields
// (RFC 9110 6.5.1).
bool ForbiddenTrailer(beast::string_view name) {
  static const char* const kNames[] = {
      "content-length", "transfer-encoding", "host",
      "connection",     "keep-alive",        "te",
      "trailer",        "upgrade",           "proxy-connection",
      "content-type",   "content-encoding",  "content-range",
      "authorization",  "cache-control",     "expect"};
  for (const char* n : kNames) {
    if (beast::iequals(name, n)) return true;
  }
  return false;
}

// The outgoing side of one message's body. Beast's chunked serializer cannot
// relay a body read piece by piece (it turns an empty piece into the last
// chunk "0\r\n\r\n", and writes no trailers), so the serializer writes the
// header only and the body is framed here: raw bytes (Content-Length, or
// until close) or chunks, ending with the last chunk and the trailer fields
// the parser appended to the message after its header.
struct BodyOut {
  // Starts a message: `sr` (kept alive by the caller until the first write
  // completes) gives the header; `has_body` is false when the message ends
  // with its header (HEAD, 204, 304, Content-Length: 0).
  template <class Serializer, class Fields>
  void Begin(Serializer& sr, const Fields& fields, bool has_body,
             bool chunked_out, bool chunked_in) {
    bufs.clear();
    sr.split(true);
    beast::error_code ec;
    sr.next(ec, [&](beast::error_code&, const auto& buffers) {
      for (auto b : beast::buffers_range_ref(buffers)) bufs.push_back(b);
    });
    header_pending = true;
    body = has_body;
    chunked = has_body && chunked_out;
    header_fields.clear();
    if (chunked && chunked_in) {
      // Trailer fields arrive in the same field list: remember which
      // fields were the header's.
      for (const auto& f : fields) header_fields.push_back(&f);
      std::sort(header_fields.begin(), header_fields.end());
    }
  }

  // Buffers for one write: the header if not yet written, then `n` bytes at
  // `data` (n may be 0), then the end of the body if `last`. The buffers
  // stay valid until the next call.
  template <class Fields>
  const std::vector<asio::const_buffer>& Frame(const char* data, size_t n,
                                               bool last,
                                               const Fields& fields) {
    if (!header_pending) bufs.clear();
    header_pending = false;
    if (!body) return bufs;
    if (!chunked) {
      if (n > 0) bufs.emplace_back(data, n);
      return bufs;
    }
    if (n > 0) {
      int len = absl::SNPrintF(size_line, sizeof(size_line), "%x\r\n", n);
      bufs.emplace_back(size_line, static_cast<size_t>(len));
      bufs.emplace_back(data, n);
      bufs.emplace_back("\r\n", 2);
    }
    if (last) {
      tail = "0\r\n";
      if (!header_fields.empty()) {
        for (const auto& f : fields) {
          if (std::binary_search(header_fields.begin(), header_fields.end(),
                                 static_cast<const void*>(&f)) ||
              ForbiddenTrailer(f.name_string())) {
            continue;
          }
          absl::StrAppend(
              &tail,
              absl::string_view(f.name_string().data(), f.name_string().size()),
              ": ", absl::string_view(f.value().data(), f.value().size()),
              "\r\n");
        }
      }
      tail += "\r\n";
      bufs.emplace_back(tail.data(), tail.size());
    }
    return bufs;
  }

  std::vector<asio::const_buffer> bufs;
  std::vector<const void*> header_fields;  // sorted
  std::string tail;
  char size_line[20];
  bool header_pending = false;
  bool body = false;
  bool chunked = false;
};

}  // namespace

// An immutable snapshot of every app's entry, split into shards so that
// adding or removing an app copies one small shard, not the whole table.
struct RouteTable {
  struct Entry {
    std::shared_ptr<AppState> state;  // holds the app's current route snapshot
  };
  using Shard = absl::flat_hash_map<std::string, Entry>;  // key "<app>.<ns>"
  static constexpr size_t kShards = 256;

  RouteTable() {
    auto empty = std::make_shared<const Shard>();
    shards.fill(empty);
  }
  static size_t ShardOf(absl::string_view key) {
    return absl::Hash<absl::string_view>{}(key) % kShards;
  }
  const Entry* Find(absl::string_view key) const {
    const Shard& shard = *shards[ShardOf(key)];
    auto it = shard.find(key);
    return it == shard.end() ? nullptr : &it->second;
  }
  template <typename F>
  void ForEach(F f) const {
    for (const auto& shard : shards) {
      for (const auto& [key, entry] : *shard) f(entry);
    }
  }

  uint64_t version = 0;
  std::array<std::shared_ptr<const Shard>, kShards> shards;
};

class Session;

// One I/O thread: its io_context, its SO_REUSEPORT acceptor, its pools of
// idle upstream connections and its sessions. Everything here is touched only
// by the worker's thread, except `ioc` (post from anywhere).
struct Worker {
  struct IdleConn {
    tcp::socket socket;
    int64_t since_ms;
  };
  struct Pool {
    std::shared_ptr<EndpointState> endpoint;
    std::vector<IdleConn> idle;
  };

  Worker(Gateway::Impl* gw, int index)
      : gw(gw),
        index(index),
        rng(0x5851f42d4c957f2dull * (index + 1) ^ NowNs()) {}

  const RouteTable& Table();
  void Accept();
  void OnAccept(beast::error_code ec, tcp::socket socket);
  void Sweep();
  // Closes up to `n` idle pooled connections (oldest pools first); returns
  // how many it closed.
  int DropIdle(int n);

  Gateway::Impl* const gw;
  const int index;
  std::list<Session*> sessions;  // declared before ioc: sessions die with it
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer sweep_timer{ioc};
  asio::steady_timer accept_timer{ioc};  // backoff after EMFILE and the like
  int64_t accept_error_logged_ms = 0;
  uint64_t accept_errors_unlogged = 0;
  int64_t refused_logged_ms = 0;
  uint64_t refused_unlogged = 0;
  absl::flat_hash_map<uint64_t, Pool> pools;
  std::shared_ptr<const RouteTable> table;
  uint64_t table_version = ~uint64_t{0};
  uint64_t rng;
  std::thread thread;
};

class Gateway::Impl {
 public:
  explicit Impl(GatewayOptions o)
      : opts(std::move(o)), log(GetLogger("gateway")) {
    if (opts.threads <= 0)
      opts.threads = std::max(1u, std::thread::hardware_concurrency());
    config.shards = opts.threads;
    config.queue_size = opts.queue_size;
    config.on_demand = opts.on_demand;
    config.drain_mu = &drain_mu;
    config.drain_cv = &drain_cv;
    table_ = std::make_shared<RouteTable>();
  }

  absl::Status Start();
  void Stop();
  void SetRoute(const Route& route);
  void RemoveRoute(const std::string& ns, const std::string& app);
  std::shared_ptr<AppState> FindApp(const std::string& ns,
                                    const std::string& app) const;
  std::shared_ptr<EndpointState> FindInstance(const std::string& id) const;
  std::string PrometheusText() const;
  std::shared_ptr<const RouteTable> CurrentTable() const {
    return std::atomic_load(&table_);
  }
  void TickLoop();

  GatewayOptions opts;
  AppConfig config;
  std::shared_ptr<spdlog::logger> log;
  std::vector<std::unique_ptr<Worker>> workers;
  int port = 0;
  std::atomic<uint64_t> table_version{0};
  std::atomic<uint64_t> unknown_host_total{0};
  std::atomic<uint64_t> client_closed_total{0};
  std::atomic<uint64_t> connections_refused_total{0};
  std::atomic<uint64_t> accept_errors_total{0};
  // Sockets the gateway holds or has reserved (opts.max_connections bounds
  // it): each client connection reserves two (itself and the upstream
  // connection it may open), each idle pooled connection one.
  std::atomic<int64_t> open_slots{0};

  bool Reserve(int64_t n) {
    int64_t cur = open_slots.load(std::memory_order_relaxed);
    do {
      if (opts.max_connections > 0 && cur + n > opts.max_connections)
        return false;
    } while (!open_slots.compare_exchange_weak(cur, cur + n,
                                               std::memory_order_relaxed));
    return true;
  }
  void Unreserve(int64_t n) {
    open_slots.fetch_sub(n, std::memory_order_relaxed);
  }
  std::atomic<uint64_t> next_uid{1};

  mutable absl::Mutex drain_mu;
  absl::CondVar drain_cv;

 private:
  void PublishLocked(std::shared_ptr<RouteTable> t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::shared_ptr<const RouteTable>
      table_;  // written under mu_, read with atomic_load
  absl::flat_hash_map<std::string, std::weak_ptr<EndpointState>> instances_
      ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex tick_mu_;
  bool stopping_ ABSL_GUARDED_BY(tick_mu_) = false;
  std::thread ticker_;
};

const RouteTable& Worker::Table() {
  if (gw->table_version.load(std::memory_order_acquire) != table_version) {
    table = gw->CurrentTable();
    table_version = table->version;
  }
  return *table;
}

// One client connection: reads requests, routes each, relays it to an
// instance and the response back, streaming both bodies through fixed
// 64 KiB buffers. Runs on its worker's thread only; Dispatch() (activator,
// concurrency queue) posts back to it.
class Session : public Waiter, public std::enable_shared_from_this<Session> {
 public:
  Session(Worker* w, tcp::socket socket)
      : w_(w),
        opts_(w->gw->opts),
        client_(std::move(socket)),
        upstream_(w->ioc) {
    beast::error_code ec;
    auto remote = client_.remote_endpoint(ec);
    if (!ec) client_ip_ = remote.address().to_string();
    client_.set_option(tcp::no_delay(true), ec);
  }
  ~Session() override {
    w_->gw->Unreserve(2);
    if (rev_metrics_)
      rev_metrics_->Finish(w_->index, rev_start_ns_, NowNs(), 0);
    if (lease_) {
      SettleAttempt(AppState::Attempt::kAbandoned);
      app_->Release(lease_);
    }
    w_->sessions.erase(self_it_);
  }

  void Start() {
    self_it_ = w_->sessions.insert(w_->sessions.end(), this);
    ReadRequest();
  }

  void Dispatch(std::shared_ptr<EndpointState> lease) override {
    asio::post(w_->ioc,
               [self = shared_from_this(), lease = std::move(lease)]() mutable {
                 self->OnDispatched(std::move(lease));
               });
  }

  int64_t deadline_ms() const { return deadline_ms_; }
  void OnDeadline();

 private:
  enum class Phase {
    kReadHeader,
    kQueued,
    kConnect,
    kSendRequest,
    kAwaitResponse,
    kRelayResponse,
    kRespond,
    kClosed
  };

  void SetDeadline(absl::Duration d) {
    deadline_ms_ = MonoMs() + absl::ToInt64Milliseconds(d);
  }

  void ReadRequest();
  void OnRequestHeader(beast::error_code ec);
  void PrepareRequest(http::request<http::buffer_body>& req);
  void Acquire(bool retry = false);
  void OnDispatched(std::shared_ptr<EndpointState> lease);
  void OnLease(std::shared_ptr<EndpointState> lease);
  void OnConnect(beast::error_code ec);
  void OnConnectDeadline();
  void CheckDelivery();
  void Stall();
  void SettleAttempt(AppState::Attempt how);
  int64_t HoldDeadlineOr(int64_t ms) const {
    return hold_deadline_ms_ != 0 ? std::min(ms, hold_deadline_ms_) : ms;
  }
  void UpstreamFailed(bool connect_failure);
  void SendRequest();
  void RelayRequestStep();
  void WriteRequest(const char* data, size_t n, bool last);
  void OnRequestWritten(beast::error_code ec);
  void ReadResponseHeader();
  void OnResponseHeader(beast::error_code ec);
  void RelayResponseStep();
  void WriteResponse(const char* data, size_t n, bool last);
  void OnResponseWritten(beast::error_code ec);
  void FinishExchange();
  void Respond(http::status status, std::string body, bool retry_after = false);
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
  void OnClientReadable(beast::error_code ec, uint64_t gen);

  Worker* const w_;
  const GatewayOptions& opts_;
  tcp::socket client_;
  tcp::socket upstream_;
  std::string client_ip_;
  std::list<Session*>::iterator self_it_;
  int64_t deadline_ms_ = 0;
  Phase phase_ = Phase::kReadHeader;
  bool timed_out_ = false;
  // The connect path (slow start, EndpointState::unconfirmed). A request that
  // waited in the app's queue keeps its queue deadline while it is queued
  // again or connecting: it gets an answer by then at the latest.
  int64_t hold_deadline_ms_ = 0;  // 0: never queued
  int64_t connect_start_ms_ = 0;
  int64_t connect_deadline_ms_ = 0;
  int64_t response_deadline_ms_ = 0;
  bool unconfirmed_ = false;  // the lease's attempt is not settled yet
  bool stalled_ = false;      // upstream_ closed because the connect stalled
  bool watching_client_ = false;
  uint64_t watch_gen_ = 0;

  beast::flat_buffer cbuf_;
  beast::flat_buffer ubuf_;
  std::optional<http::request_parser<http::buffer_body>> req_parser_;
  std::optional<http::serializer<true, http::buffer_body>> req_sr_;
  std::optional<http::response_parser<http::buffer_body>> res_parser_;
  std::optional<http::serializer<false, http::buffer_body>> res_sr_;
  std::unique_ptr<http::response<http::string_body>> gen_res_;
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
};

void Session::ReadRequest() {
  StopWatchingClient();
  phase_ = Phase::kReadHeader;
  timed_out_ = false;
  SetDeadline(opts_.client_idle_timeout);
  req_parser_.emplace();
  req_parser_->header_limit(static_cast<std::uint32_t>(opts_.max_header_bytes));
  if (opts_.max_body_bytes > 0) {
    req_parser_->body_limit(opts_.max_body_bytes);
  } else {
    req_parser_->body_limit(boost::none);
  }
  http::async_read_header(
      client_, cbuf_, *req_parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) {
        self->OnRequestHeader(ec);
      });
}

void Session::OnRequestHeader(beast::error_code ec) {
  deadline_ms_ = 0;
  if (ec) {
    client_keep_alive_ = false;
    if (ec == http::error::header_limit) {
      Respond(http::status::request_header_fields_too_large,
              "request header too large\n");
    } else if (ec == http::error::body_limit) {
      Respond(http::status::payload_too_large, "request body too large\n");
    } else if (ec == http::error::end_of_stream || timed_out_ ||
               ec == asio::error::eof || ec == asio::error::connection_reset ||
               ec == asio::error::operation_aborted) {
      CloseClient();
    } else {
      Respond(http::status::bad_request, "bad request\n");
    }
    return;
  }
  auto& req = req_parser_->get();
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

  // Route by Host: <app>.<namespace>.<domain>[:port].
  absl::string_view host(req[http::field::host].data(),
                         req[http::field::host].size());
  size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos) host = host.substr(0, colon);
  host_ = absl::AsciiStrToLower(host);
  absl::string_view prefix = host_;
  const RouteTable::Entry* entry = nullptr;
  if (absl::ConsumeSuffix(&prefix, opts_.domain) &&
      absl::ConsumeSuffix(&prefix, ".")) {
    entry = w_->Table().Find(prefix);
  }
  if (entry == nullptr) {
    w_->gw->unknown_host_total.fetch_add(1, std::memory_order_relaxed);
    app_ = nullptr;
    Respond(http::status::not_found,
            absl::StrCat("no app for host \"", host_, "\"\n"));
    return;
  }
  app_ = entry->state;
  route_ = app_->route();
  start_ns_ = NowNs();
  app_->last_request_ns.store(start_ns_, std::memory_order_relaxed);
  app_->metrics.Start(w_->index, start_ns_);
  app_started_ = true;
  PrepareRequest(req);
  Acquire();
}

void Session::PrepareRequest(http::request<http::buffer_body>& req) {
  auto expect = req[http::field::expect];
  expect_continue_ = beast::iequals(expect, "100-continue");
  if (!expect.empty()) req.erase(http::field::expect);
  StripHopByHop(req);
  auto xff = req["X-Forwarded-For"];
  if (xff.empty()) {
    req.set("X-Forwarded-For", client_ip_);
  } else {
    req.set("X-Forwarded-For",
            absl::StrCat(absl::string_view(xff.data(), xff.size()), ", ",
                         client_ip_));
  }
  req.set("X-Forwarded-Proto", "http");
  if (req["X-Request-Id"].empty()) {
    static const char kHex[] = "0123456789abcdef";
    char id[32];
    uint64_t a = NextRandom(&w_->rng), b = NextRandom(&w_->rng);
    for (int i = 0; i < 16; ++i) {
      id[i] = kHex[(a >> (i * 4)) & 15];
      id[16 + i] = kHex[(b >> (i * 4)) & 15];
    }
    req.set("X-Request-Id", beast::string_view(id, 32));
  }
  req.version(11);
  req.keep_alive(true);
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
      if (hold_deadline_ms_ == 0)
        hold_deadline_ms_ =
            MonoMs() + absl::ToInt64Milliseconds(opts_.queue_timeout);
      deadline_ms_ = hold_deadline_ms_;
      return;
    case AppState::Outcome::kOverflow:
      Respond(http::status::service_unavailable, "queue full, retry later\n",
              true);
      return;
    case AppState::Outcome::kGone:
      Respond(http::status::not_found,
              absl::StrCat("no app for host \"", host_, "\"\n"));
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
    Respond(http::status::not_found,
            absl::StrCat("no app for host \"", host_, "\"\n"));
    return;
  }
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
  auto it = w_->pools.find(lease_->uid);
  if (it != w_->pools.end()) {
    auto& idle = it->second.idle;
    while (!idle.empty()) {
      tcp::socket s = std::move(idle.back().socket);
      int64_t idle_for = MonoMs() - idle.back().since_ms;
      idle.pop_back();
      w_->gw->Unreserve(1);  // this session's own slot covers it now
      // Under load a connection is idle for microseconds: skip the check (a
      // syscall). After a pause the instance may have closed it.
      if (idle_for < kTrustIdleMs || StillOpen(s)) {
        // The instance accepted this connection long ago.
        SettleAttempt(AppState::Attempt::kAbandoned);
        upstream_ = std::move(s);
        reused_ = true;
        ubuf_.clear();
        SendRequest();
        return;
      }
      beast::error_code ignored;
      s.close(ignored);
    }
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
  const int64_t now = MonoMs();
  beast::error_code ignored;
  if ((hold_deadline_ms_ != 0 && now >= hold_deadline_ms_) ||
      (hold_deadline_ms_ == 0 && now >= connect_deadline_ms_)) {
    timed_out_ = true;
    upstream_.close(ignored);
    return;
  }
  const int64_t stall_ms =
      absl::ToInt64Milliseconds(opts_.connect_stall_threshold);
  if (now >= connect_deadline_ms_ ||
      (now - connect_start_ms_ >= stall_ms &&
       lease_->unconfirmed.load(std::memory_order_relaxed) > 1)) {
    stalled_ = true;
    upstream_.close(ignored);
    return;
  }
  deadline_ms_ = HoldDeadlineOr(std::min(connect_deadline_ms_, now + stall_ms));
}

// A fresh connection's request awaits its response and the attempt is not
// confirmed: every stall threshold, ask the kernel whether the instance got
// the request. Acknowledged: confirmed, the response timeout applies. Lost
// (the instance's kernel dropped the connection when its backlog was full):
// nothing reached the app, so the request is queued again. Pending: wait,
// until the queue deadline of a held request at the latest.
void Session::CheckDelivery() {
  const int64_t now = MonoMs();
  beast::error_code ignored;
  switch (RequestDelivery(upstream_)) {
    case Delivery::kAcked:
      SettleAttempt(AppState::Attempt::kConfirmed);
      deadline_ms_ = response_deadline_ms_;
      return;
    case Delivery::kLost:
      if (!body_started_ && !expect_continue_) {
        // Reset, not FIN: the unacknowledged request must not reach the
        // instance later (a retransmission accepted once its backlog has
        // room), as the request is sent again on a new connection.
        stalled_ = true;
        upstream_.set_option(asio::socket_base::linger(true, 0), ignored);
        upstream_.close(ignored);
        return;
      }
      break;
    case Delivery::kPending:
      break;
  }
  if (now >= HoldDeadlineOr(response_deadline_ms_)) {
    timed_out_ = true;
    upstream_.close(ignored);
    return;
  }
  deadline_ms_ = HoldDeadlineOr(
      std::min(response_deadline_ms_,
               now + absl::ToInt64Milliseconds(opts_.connect_stall_threshold)));
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
  if (hold_deadline_ms_ == 0)
    hold_deadline_ms_ =
        MonoMs() + absl::ToInt64Milliseconds(opts_.queue_timeout);
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
  req_sr_.emplace(req);
  req_out_.Begin(*req_sr_, req.base(), !req_parser_->is_done(), req.chunked(),
                 req.chunked());
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
            return self->Respond(http::status::payload_too_large,
                                 "request body too large\n");
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
  res_parser_->body_limit(boost::none);
  res_parser_->header_limit(64 * 1024);
  if (is_head_) res_parser_->skip(true);
  SetDeadline(opts_.response_header_timeout);
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
  upstream_keep_alive_ = res.keep_alive() && !res_parser_->need_eof();
  StripHopByHop(res);
  bool chunked_in = res.chunked();
  if (!is_head_ && !res.has_content_length() && !res.chunked() &&
      res_parser_->need_eof()) {
    if (client_version_ >= 11) {
      res.chunked(true);
    } else {
      client_keep_alive_ = false;
    }
  }
  if (client_version_ < 11 && res.chunked()) {
    res.chunked(false);
    client_keep_alive_ = false;
  }
  if (!res.chunked()) res.erase(http::field::trailer);  // nothing to announce
  res.keep_alive(client_keep_alive_);
  res_sr_.emplace(res);
  // No body: HEAD, 1xx/204/304, Content-Length: 0 (the parser is done with
  // the header).
  res_out_.Begin(*res_sr_, res.base(), !res_parser_->is_done(), res.chunked(),
                 chunked_in);
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
  SetDeadline(opts_.client_idle_timeout);
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
  SetDeadline(opts_.client_idle_timeout);
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
    auto& pool = w_->pools[lease_->uid];
    if (!pool.endpoint) pool.endpoint = lease_;
    if (pool.idle.size() < opts_.max_idle_upstream_per_instance &&
        w_->gw->Reserve(1)) {
      pool.idle.push_back({std::move(upstream_), MonoMs()});
      upstream_ = tcp::socket(w_->ioc);
    }
  }
  beast::error_code ignored;
  if (upstream_.is_open()) upstream_.close(ignored);
  FinishMetrics(status_);
  ReleaseLease(status_);
  req_sr_.reset();
  res_sr_.reset();
  res_parser_.reset();
  if (client_keep_alive_) {
    ReadRequest();
  } else {
    CloseClient();
  }
}

void Session::Respond(http::status status, std::string body, bool retry_after) {
  StopWatchingClient();
  phase_ = Phase::kRespond;
  status_ = static_cast<int>(status);
  bool keep = client_keep_alive_ && req_parser_ && req_parser_->is_done() &&
              !body_started_;
  client_keep_alive_ = keep;
  gen_res_ = std::make_unique<http::response<http::string_body>>(status, 11);
  gen_res_->set(http::field::content_type, "text/plain; charset=utf-8");
  gen_res_->set(http::field::server, "tidal-gateway");
  if (retry_after) gen_res_->set(http::field::retry_after, "1");
  gen_res_->body() = std::move(body);
  gen_res_->keep_alive(keep);
  gen_res_->prepare_payload();
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
  client_.shutdown(tcp::socket::shutdown_send, ignored);
  client_.close(ignored);
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
      client_.close(ignored);
      upstream_.close(ignored);
      return;
    case Phase::kClosed:
      return;
  }
}

void Session::WatchClient() {
  if (watching_client_ || !req_parser_ || !req_parser_->is_done() ||
      !client_.is_open()) {
    return;
  }
  watching_client_ = true;
  client_.async_wait(
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
  client_.cancel(ignored);  // nothing else is pending on the client
}

void Session::OnClientReadable(beast::error_code ec, uint64_t gen) {
  if (gen != watch_gen_ || ec) return;  // stopped
  watching_client_ = false;
  char c;
  ssize_t n;
  do {
    n = ::recv(client_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
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

void Worker::Accept() {
  acceptor.async_accept(ioc, [this](beast::error_code ec, tcp::socket socket) {
    OnAccept(ec, std::move(socket));
  });
}

void Worker::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
  int64_t now = MonoMs();
  if (ec) {
    gw->accept_errors_total.fetch_add(1, std::memory_order_relaxed);
    ++accept_errors_unlogged;
    if (now - accept_error_logged_ms >= 10'000) {
      gw->log->error(
          "gateway: accepting connections failed {} time(s): {}; retrying "
          "(tidal_gateway_accept_errors_total)",
          accept_errors_unlogged, ec.message());
      accept_error_logged_ms = now;
      accept_errors_unlogged = 0;
    }
    // Out of descriptors or memory: the connection stays in the backlog.
    // Accepting again at once would spin; wait a little, as nginx does.
    if (ec == asio::error::no_descriptors || ec.value() == ENFILE ||
        ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
      accept_timer.expires_after(std::chrono::milliseconds(kAcceptBackoffMs));
      accept_timer.async_wait([this](beast::error_code ec) {
        if (!ec) Accept();
      });
      return;
    }
    return Accept();  // ECONNABORTED and the like: the next one
  }
  if (gw->Reserve(2) || (DropIdle(2) > 0 && gw->Reserve(2))) {
    std::make_shared<Session>(this, std::move(socket))->Start();
    return Accept();
  }
  // At the connection limit: refuse rather than take the process's last
  // descriptors (the API, the store and the instances need them).
  gw->connections_refused_total.fetch_add(1, std::memory_order_relaxed);
  ++refused_unlogged;
  if (now - refused_logged_ms >= 10'000) {
    gw->log->warn(
        "gateway: at its limit of {} connections (--gateway-max-connections): "
        "refused {} connection(s) (tidal_gateway_connections_refused_total)",
        gw->opts.max_connections, refused_unlogged);
    refused_logged_ms = now;
    refused_unlogged = 0;
  }
  static const char kBusy[] =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
      "Retry-After: 1\r\nConnection: close\r\nContent-Length: 29\r\n\r\n"
      "gateway at connection limit\r\n";
  (void)!::send(socket.native_handle(), kBusy, sizeof(kBusy) - 1,
                MSG_DONTWAIT | MSG_NOSIGNAL);
  beast::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  socket.close(ignored);
  Accept();
}

int Worker::DropIdle(int n) {
  int dropped = 0;
  for (auto it = pools.begin(); it != pools.end() && dropped < n; ++it) {
    auto& idle = it->second.idle;
    while (!idle.empty() && dropped < n) {
      idle.erase(idle.begin());  // the oldest
      ++dropped;
    }
  }
  gw->Unreserve(dropped);
  return dropped;
}

void Worker::Sweep() {
  sweep_timer.expires_after(std::chrono::milliseconds(kSweepMs));
  sweep_timer.async_wait([this](beast::error_code ec) {
    if (ec) return;
    int64_t now = MonoMs();
    std::vector<std::shared_ptr<Session>> due;
    for (Session* s : sessions) {
      if (s->deadline_ms() != 0 && s->deadline_ms() <= now)
        due.push_back(s->shared_from_this());
    }
    for (auto& s : due) s->OnDeadline();
    due.clear();
    // Idle upstream connections: expire, and drop pools of removed endpoints.
    int64_t idle_ms = absl::ToInt64Milliseconds(gw->opts.upstream_idle_timeout);
    for (auto it = pools.begin(); it != pools.end();) {
      auto& idle = it->second.idle;
      size_t before = idle.size();
      idle.erase(std::remove_if(
                     idle.begin(), idle.end(),
                     [&](IdleConn& c) { return now - c.since_ms > idle_ms; }),
                 idle.end());
      if (it->second.endpoint &&
          it->second.endpoint->removed.load(std::memory_order_relaxed)) {
        idle.clear();
      }
      gw->Unreserve(static_cast<int64_t>(before - idle.size()));
      if (idle.empty()) {
        pools.erase(it++);
      } else {
        ++it;
      }
    }
    Sweep();
  });
}

absl::Status Gateway::Impl::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_)
      return absl::FailedPreconditionError("gateway already started");
    started_ = true;
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(opts.listen_address, ec);
  if (ec)
    return absl::InvalidArgumentError(
        absl::StrCat("bad listen address ", opts.listen_address));
  int bind_port = opts.port;
  for (int i = 0; i < opts.threads; ++i) {
    auto w = std::make_unique<Worker>(this, i);
    tcp::endpoint ep(address, static_cast<uint16_t>(bind_port));
    w->acceptor.open(ep.protocol(), ec);
    if (!ec) w->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) {
      using reuse_port =
          asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
      w->acceptor.set_option(reuse_port(true), ec);
    }
    if (!ec) w->acceptor.bind(ep, ec);
    if (!ec) w->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      workers.clear();
      return absl::UnavailableError(
          absl::StrCat("gateway: cannot listen on ", opts.listen_address, ":",
                       bind_port, ": ", ec.message()));
    }
    if (i == 0) bind_port = w->acceptor.local_endpoint().port();
    workers.push_back(std::move(w));
  }
  port = bind_port;
  for (auto& w : workers) {
    Worker* wp = w.get();
    wp->Accept();
    wp->Sweep();
    wp->thread = std::thread([wp] { wp->ioc.run(); });
  }
  ticker_ = std::thread([this] { TickLoop(); });
  log->info("gateway listening on {}:{} with {} threads, domain {}",
            opts.listen_address, port, opts.threads, opts.domain);
  return absl::OkStatus();
}

void Gateway::Impl::Stop() {
  {
    absl::MutexLock lock(&tick_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
  for (auto& w : workers) w->ioc.stop();
  for (auto& w : workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  // Release held requests (their handlers die with the io_contexts).
  auto table = CurrentTable();
  table->ForEach([](const RouteTable::Entry& e) { e.state->Remove(); });
  workers.clear();
  absl::MutexLock lock(&mu_);
  table_ = std::make_shared<RouteTable>();
}

void Gateway::Impl::TickLoop() {
  absl::MutexLock lock(&tick_mu_);
  while (!stopping_) {
    absl::Time now = absl::Now();
    absl::Time next = absl::FromUnixSeconds(absl::ToUnixSeconds(now) + 1);
    if (tick_mu_.AwaitWithDeadline(absl::Condition(&stopping_), next)) break;
    int64_t now_ns = NowNs();
    auto table = CurrentTable();
    table->ForEach([&](const RouteTable::Entry& e) {
      e.state->Tick(next - absl::Seconds(1), now_ns);
    });
  }
}

void Gateway::Impl::PublishLocked(std::shared_ptr<RouteTable> t) {
  t->version = table_->version + 1;
  std::atomic_store(&table_, std::shared_ptr<const RouteTable>(std::move(t)));
  table_version.store(table_->version, std::memory_order_release);
}

void Gateway::Impl::SetRoute(const Route& in) {
  Route route = in;
  for (auto& rev : route.revisions) {
    for (auto& e : rev.endpoints) {
      beast::error_code ec;
      asio::ip::make_address(e.host, ec);
      if (!ec) continue;
      // Names are resolved once here (the controller's thread), not per
      // request.
      asio::io_context ioc;
      tcp::resolver resolver(ioc);
      auto results = resolver.resolve(e.host, std::to_string(e.port), ec);
      if (!ec && !results.empty()) {
        e.host = results.begin()->endpoint().address().to_string();
      } else {
        log->warn("app={}/{} instance {}: cannot resolve {}", route.ns,
                  route.app, e.instance_id, e.host);
      }
    }
  }
  std::string key = absl::StrCat(route.app, ".", route.ns);
  absl::MutexLock lock(&mu_);
  // The table is copied (copy-on-write) only when an app is added; a route
  // change of a known app swaps the snapshot inside its AppState, so updates
  // cost the same with 10 apps or 10,000.
  const RouteTable::Entry* found = table_->Find(key);
  std::shared_ptr<AppState> state =
      found != nullptr
          ? found->state
          : std::make_shared<AppState>(route.ns, route.app, &config, NowNs());
  std::vector<std::shared_ptr<EndpointState>> added;
  state->Update(route, &next_uid, &added);
  for (auto& e : added) instances_[e->instance_id] = e;
  for (auto i = instances_.begin(); i != instances_.end();) {
    if (i->second.expired()) {
      instances_.erase(i++);
    } else {
      ++i;
    }
  }
  if (found == nullptr) {
    auto table = std::make_shared<RouteTable>(*table_);
    size_t i = RouteTable::ShardOf(key);
    auto shard = std::make_shared<RouteTable::Shard>(*table->shards[i]);
    (*shard)[key].state = std::move(state);
    table->shards[i] = std::move(shard);
    PublishLocked(std::move(table));
  }
}

void Gateway::Impl::RemoveRoute(const std::string& ns, const std::string& app) {
  std::shared_ptr<AppState> state;
  {
    absl::MutexLock lock(&mu_);
    std::string key = absl::StrCat(app, ".", ns);
    const RouteTable::Entry* found = table_->Find(key);
    if (found == nullptr) return;
    state = found->state;
    auto table = std::make_shared<RouteTable>(*table_);
    size_t i = RouteTable::ShardOf(key);
    auto shard = std::make_shared<RouteTable::Shard>(*table->shards[i]);
    shard->erase(key);
    table->shards[i] = std::move(shard);
    PublishLocked(std::move(table));
  }
  state->Remove();
}

std::shared_ptr<AppState> Gateway::Impl::FindApp(const std::string& ns,
                                                 const std::string& app) const {
  auto table = CurrentTable();
  const RouteTable::Entry* e = table->Find(absl::StrCat(app, ".", ns));
  return e == nullptr ? nullptr : e->state;
}

std::shared_ptr<EndpointState> Gateway::Impl::FindInstance(
    const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = instances_.find(id);
  return it == instances_.end() ? nullptr : it->second.lock();
}

std::string Gateway::Impl::PrometheusText() const {
  auto table = CurrentTable();
  std::vector<const RouteTable::Entry*> apps;
  table->ForEach([&](const RouteTable::Entry& e) { apps.push_back(&e); });
  std::sort(apps.begin(), apps.end(), [](auto* a, auto* b) {
    return std::tie(a->state->ns, a->state->app) <
           std::tie(b->state->ns, b->state->app);
  });
  int64_t now = NowNs();
  std::string requests, app_requests, concurrency, rps, durations, in_flight,
      queue, held, last;
  auto per_second = [&](const std::string& labels, const MetricSample& m) {
    absl::StrAppend(&concurrency, "tidal_gateway_concurrency{", labels, "} ",
                    absl::StrFormat("%.3f", m.concurrency), "\n");
    absl::StrAppend(&rps, "tidal_gateway_requests_per_second{", labels, "} ",
                    absl::StrFormat("%.3f", m.requests), "\n");
  };
  static const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (auto* e : apps) {
    const AppState& s = *e->state;
    std::string labels =
        absl::StrCat("namespace=\"", s.ns, "\",app=\"", s.app, "\"");
    for (auto& [rev, m] : s.RevisionMetrics()) {
      Totals t = m->Read(now);
      std::string rl = absl::StrCat(labels, ",revision=\"", rev, "\"");
      per_second(rl, m->LastSecond());
      for (int c = 0; c < 5; ++c) {
        if (t.classes[c] == 0 && c != 1) continue;
        absl::StrAppend(&requests, "tidal_gateway_requests_total{", rl,
                        ",code_class=\"", kClasses[c], "\"} ", t.classes[c],
                        "\n");
      }
      uint64_t cum = 0;
      for (int b = 0; b < kFiniteBuckets; ++b) {
        cum += t.buckets[b];
        if (b % 4 != 0) continue;  // every doubling: 0.1ms, 0.2ms, ... ~105s
        absl::StrAppend(&durations,
                        "tidal_gateway_request_duration_seconds_bucket{", rl,
                        ",le=\"", BucketBoundSeconds(b), "\"} ", cum, "\n");
      }
      cum += t.buckets[kFiniteBuckets];
      absl::StrAppend(&durations,
                      "tidal_gateway_request_duration_seconds_bucket{", rl,
                      ",le=\"+Inf\"} ", cum, "\n");
      absl::StrAppend(&durations, "tidal_gateway_request_duration_seconds_sum{",
                      rl, "} ", t.latency_sum_s, "\n");
      absl::StrAppend(&durations,
                      "tidal_gateway_request_duration_seconds_count{", rl, "} ",
                      cum, "\n");
    }
    Totals app_totals = s.metrics.Read(now);
    per_second(labels, s.metrics.LastSecond());
    // Every response of the app, the gateway's own (503 queue full, 504
    // queue timeout, 502 no instance reachable) included.
    for (int c = 0; c < 5; ++c) {
      if (app_totals.classes[c] == 0 && c != 1) continue;
      absl::StrAppend(&app_requests, "tidal_gateway_app_requests_total{",
                      labels, ",code_class=\"", kClasses[c], "\"} ",
                      app_totals.classes[c], "\n");
    }
    absl::StrAppend(&in_flight, "tidal_gateway_in_flight{", labels, "} ",
                    app_totals.in_flight, "\n");
    absl::StrAppend(&queue, "tidal_gateway_queue_length{", labels, "} ",
                    s.queued(), "\n");
    absl::StrAppend(&held, "tidal_gateway_activator_held{", labels, "} ",
                    s.held(), "\n");
    int64_t lr = s.last_request_ns.load(std::memory_order_relaxed);
    if (lr != 0) {
      absl::StrAppend(&last, "tidal_gateway_last_request_timestamp_seconds{",
                      labels, "} ", absl::StrFormat("%.3f", lr / 1e9), "\n");
    }
  }
  std::string out;
  absl::StrAppend(&out,
                  "# HELP tidal_gateway_requests_total Responses by app, "
                  "revision and status class.\n"
                  "# TYPE tidal_gateway_requests_total counter\n",
                  requests,
                  "# HELP tidal_gateway_app_requests_total Responses by app "
                  "and status class, the gateway's own 502/503/504 "
                  "included.\n"
                  "# TYPE tidal_gateway_app_requests_total counter\n",
                  app_requests,
                  "# HELP tidal_gateway_concurrency Requests in flight "
                  "averaged over the latest complete second, per app and "
                  "revision (what the scaler reads).\n"
                  "# TYPE tidal_gateway_concurrency gauge\n",
                  concurrency,
                  "# HELP tidal_gateway_requests_per_second Requests that "
                  "arrived in the latest complete second, per app and "
                  "revision.\n"
                  "# TYPE tidal_gateway_requests_per_second gauge\n",
                  rps,
                  "# HELP tidal_gateway_request_duration_seconds Time from "
                  "request sent to the "
                  "instance to response end.\n"
                  "# TYPE tidal_gateway_request_duration_seconds histogram\n",
                  durations,
                  "# HELP tidal_gateway_in_flight Requests in flight per app, "
                  "queued ones included.\n"
                  "# TYPE tidal_gateway_in_flight gauge\n",
                  in_flight,
                  "# HELP tidal_gateway_queue_length Requests waiting for "
                  "capacity per app.\n"
                  "# TYPE tidal_gateway_queue_length gauge\n",
                  queue,
                  "# HELP tidal_gateway_activator_held Requests held while the "
                  "app has no ready "
                  "instance.\n"
                  "# TYPE tidal_gateway_activator_held gauge\n",
                  held,
                  "# HELP tidal_gateway_last_request_timestamp_seconds Arrival "
                  "of the app's last "
                  "request.\n"
                  "# TYPE tidal_gateway_last_request_timestamp_seconds gauge\n",
                  last,
                  "# HELP tidal_gateway_unknown_host_total Requests for a host "
                  "with no app.\n"
                  "# TYPE tidal_gateway_unknown_host_total counter\n"
                  "tidal_gateway_unknown_host_total ",
                  unknown_host_total.load(), "\n",
                  "# HELP tidal_gateway_client_closed_total Requests whose "
                  "client went away before the response began (the upstream "
                  "connection is closed at once).\n"
                  "# TYPE tidal_gateway_client_closed_total counter\n"
                  "tidal_gateway_client_closed_total ",
                  client_closed_total.load(), "\n",
                  "# HELP tidal_gateway_connections_refused_total Client "
                  "connections refused at the connection limit.\n"
                  "# TYPE tidal_gateway_connections_refused_total counter\n"
                  "tidal_gateway_connections_refused_total ",
                  connections_refused_total.load(), "\n",
                  "# HELP tidal_gateway_accept_errors_total Failed accepts "
                  "(EMFILE and the like; retried after a short pause).\n"
                  "# TYPE tidal_gateway_accept_errors_total counter\n"
                  "tidal_gateway_accept_errors_total ",
                  accept_errors_total.load(), "\n",
                  "# HELP tidal_gateway_connection_slots Sockets held or "
                  "reserved: two per client connection, one per idle pooled "
                  "upstream connection.\n"
                  "# TYPE tidal_gateway_connection_slots gauge\n"
                  "tidal_gateway_connection_slots ",
                  open_slots.load(), "\n",
                  "# HELP tidal_gateway_max_connections The limit on "
                  "connection slots (0: none).\n"
                  "# TYPE tidal_gateway_max_connections gauge\n"
                  "tidal_gateway_max_connections ",
                  opts.max_connections, "\n");
  return out;
}

Gateway::Gateway(GatewayOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Gateway::~Gateway() { impl_->Stop(); }
absl::Status Gateway::Start() { return impl_->Start(); }
void Gateway::Stop() { impl_->Stop(); }
int Gateway::port() const { return impl_->port; }
void Gateway::SetRoute(const Route& route) { impl_->SetRoute(route); }
void Gateway::RemoveRoute(const std::string& ns, const std::string& app) {
  impl_->RemoveRoute(ns, app);
}

int Gateway::InFlight(const std::string& instance_id) const {
  auto e = impl_->FindInstance(instance_id);
  return e ? e->outstanding.load() : 0;
}

bool Gateway::WaitDrained(const std::string& instance_id,
                          absl::Time deadline) const {
  auto e = impl_->FindInstance(instance_id);
  if (!e) return true;
  absl::MutexLock lock(&impl_->drain_mu);
  while (e->outstanding.load() > 0) {
    if (impl_->drain_cv.WaitWithDeadline(&impl_->drain_mu, deadline)) {
      return e->outstanding.load() == 0;
    }
  }
  return true;
}

absl::Time Gateway::LastRequestTime(const std::string& ns,
                                    const std::string& app) const {
  auto s = impl_->FindApp(ns, app);
  if (!s) return absl::InfinitePast();
  int64_t ns_time = s->last_request_ns.load(std::memory_order_relaxed);
  return ns_time == 0 ? absl::InfinitePast() : absl::FromUnixNanos(ns_time);
}

int Gateway::Queued(const std::string& ns, const std::string& app) const {
  auto s = impl_->FindApp(ns, app);
  return s ? s->queued() : 0;
}

std::vector<MetricSample> Gateway::Samples(const std::string& ns,
                                           const std::string& app,
                                           int64_t revision, absl::Time after) {
  auto s = impl_->FindApp(ns, app);
  if (!s) return {};
  if (revision == 0) return s->metrics.Samples(after);
  auto m = s->RevisionMetrics(revision);
  return m ? m->Samples(after) : std::vector<MetricSample>{};
}

RequestStats Gateway::Stats(const std::string& ns, const std::string& app,
                            int64_t revision, absl::Duration window) {
  auto s = impl_->FindApp(ns, app);
  if (!s) return {};
  if (revision == 0) return s->metrics.Stats(window, NowNs());
  auto m = s->RevisionMetrics(revision);
  return m ? m->Stats(window, NowNs()) : RequestStats{};
}

std::string Gateway::PrometheusText() const { return impl_->PrometheusText(); }

}  // namespace tidal::gateway
