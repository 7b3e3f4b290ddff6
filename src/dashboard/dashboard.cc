#include "dashboard/dashboard.h"

#include <google/protobuf/arena.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/fd_io.h"
#include "common/json_string.h"
#include "common/logging.h"
#include "dashboard/assets.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal::dashboard {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Query = std::map<std::string, std::string>;

bool IsDashboardTarget(const std::string& target) {
  return target == "/ui" || absl::StartsWith(target, "/ui/") ||
         absl::StartsWith(target, "/ui?");
}

namespace {

// Writes `parts` whole to the (non-blocking) socket within `timeout`: a
// client that stops reading holds its connection (one of
// Options::max_connections) no longer.
bool WriteAll(int fd, absl::Duration timeout,
              std::initializer_list<absl::string_view> parts) {
  const absl::Time deadline = absl::Now() + timeout;
  for (absl::string_view part : parts) {
    if (common::SendAll(fd, part, deadline) != 0) return false;
  }
  return true;
}

// gRPC metadata values are printable ASCII; anything else would make the
// in-process call fail inside gRPC's C++ layer.
bool PrintableAscii(absl::string_view v) {
  for (unsigned char c : v) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

constexpr char kSecurityHeaders[] =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'\r\n";

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() &&
               absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      int v = 0;
      (void)absl::SimpleHexAtoi(s.substr(i + 1, 2), &v);
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

Query ParseQuery(absl::string_view q) {
  Query out;
  for (absl::string_view kv : absl::StrSplit(q, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> p =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    out[PercentDecode(p.first)] = PercentDecode(p.second);
  }
  return out;
}

int64_t Int(const Query& q, const std::string& key) {
  auto it = q.find(key);
  int64_t v = 0;
  if (it != q.end()) (void)absl::SimpleAtoi(it->second, &v);
  return v;
}

std::string Str(const Query& q, const std::string& key) {
  auto it = q.find(key);
  return it == q.end() ? "" : it->second;
}

http::status HttpStatus(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAUTHENTICATED:
      return http::status::unauthorized;
    case grpc::StatusCode::PERMISSION_DENIED:
      return http::status::forbidden;
    case grpc::StatusCode::NOT_FOUND:
      return http::status::not_found;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return http::status::bad_request;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return http::status::conflict;
    case grpc::StatusCode::UNAVAILABLE:
      return http::status::service_unavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return http::status::gateway_timeout;
    default:
      return http::status::internal_server_error;
  }
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    default:
      return "ERROR";
  }
}

std::string ErrorJson(const grpc::Status& s) {
  return absl::StrCat("{\"code\":\"", CodeName(s.error_code()),
                      "\",\"error\":", common::JsonQuoted(s.error_message()),
                      "}");
}

// The app as a row of the list: what the page shows, nothing more (the
// list of 1,000 apps stays small).
std::string AppRow(const v1::App& a) {
  const auto& st = a.status();
  std::string ready = "Unknown", reason;
  for (const auto& c : st.conditions()) {
    if (c.type() == "Ready") {
      ready = c.status();
      reason = c.reason();
    }
  }
  return absl::StrCat("{\"ns\":", common::JsonQuoted(a.metadata().namespace_()),
                      ",\"name\":", common::JsonQuoted(a.metadata().name()),
                      ",\"rv\":", a.metadata().resource_version(),
                      ",\"ready\":", st.ready_replicas(),
                      ",\"desired\":", st.desired_replicas(),
                      ",\"url\":", common::JsonQuoted(st.url()),
                      ",\"metric\":", common::JsonQuoted(st.scaling().metric()),
                      ",\"value\":", st.scaling().value(),
                      ",\"target\":", st.scaling().target(),
                      ",\"status\":", common::JsonQuoted(ready),
                      ",\"reason\":", common::JsonQuoted(reason),
                      ",\"phase\":", common::JsonQuoted(st.rollout().phase()),
                      ",\"weight\":", st.rollout().weight(), ",\"deleting\":",
                      a.metadata().has_deletion_timestamp() ? "true" : "false",
                      "}");
}

}  // namespace

class Dashboard::Impl {
 public:
  explicit Impl(Options options) : options_(std::move(options)) {}

  absl::Status Listen(const std::string& address) {
    std::pair<std::string, std::string> hp =
        absl::StrSplit(address, absl::MaxSplits(':', 1));
    if (address.rfind(':') != std::string::npos) {
      hp.first = address.substr(0, address.rfind(':'));
      hp.second = address.substr(address.rfind(':') + 1);
    }
    if (hp.first.size() > 2 && hp.first.front() == '[') {
      hp.first = hp.first.substr(1, hp.first.size() - 2);
    }
    int port = 0;
    beast::error_code ec;
    auto addr = asio::ip::make_address(hp.first, ec);
    if (ec || !absl::SimpleAtoi(hp.second, &port) || port < 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dashboard-listen: \"", address, "\" is not HOST:PORT"));
    }
    tcp::endpoint ep(addr, static_cast<uint16_t>(port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(64, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", address, " (dashboard): ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { AcceptLoop(); });
    return absl::OkStatus();
  }

  int port() const { return port_; }

  void Adopt(int fd, std::string consumed) {
    absl::MutexLock lock(&mu_);
    // Join the connections that have ended.
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    // Counted by open sockets: a connection's socket leaves fds_ before it
    // is shut down (Serve), so a client that saw its connection end can open
    // the next one at once (its thread may not have ended yet).
    if (stopping_ ||
        static_cast<int>(fds_.size()) >= options_.max_connections) {
      ::close(fd);
      return;
    }
    fds_.insert(fd);
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back({std::thread([this, fd, done,
                                     consumed = std::move(consumed)]() mutable {
                          Serve(fd, std::move(consumed));
                          {
                            absl::MutexLock lock(&mu_);
                            fds_.erase(fd);
                            ::close(fd);
                          }
                          done->store(true);
                        }),
                        done});
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
      stop_flag_.store(true);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
      for (grpc::ClientContext* c : calls_) c->TryCancel();
    }
    if (acceptor_.is_open()) {
      ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    beast::error_code ec;
    acceptor_.close(ec);
    // No connection starts once stopping_ is set: the list is final.
    std::list<Connection> threads;
    {
      absl::MutexLock lock(&mu_);
      threads.swap(threads_);
    }
    for (auto& c : threads) c.thread.join();
  }

 private:
  void AcceptLoop() {
    for (;;) {
      beast::error_code ec;
      tcp::socket s(io_);
      acceptor_.accept(s, ec);
      if (stop_flag_.load()) return;
      if (ec) {
        // Out of descriptors: the connection waits in the backlog.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      Adopt(s.release(), "");
    }
  }

  // One connection: requests one after another (keep-alive) until the
  // client closes, a stream ends or tidald stops.
  void Serve(int fd, std::string consumed) {
    // Answers go out whole at once (no wait for the ACK of the last one).
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    asio::io_context io;
    tcp::socket sock(io);
    beast::error_code ec;
    // The socket stays the caller's (Adopt closes it): release it below.
    sock.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) return;
    // Reads and writes wait in poll() with a deadline (WaitReady): a
    // blocking socket's timeouts do not bound Asio's reads.
    sock.non_blocking(true, ec);
    if (ec) {
      (void)sock.release(ec);
      return;
    }
    std::string peer;
    auto remote = sock.remote_endpoint(ec);
    if (!ec) peer = remote.address().to_string();
    beast::flat_buffer buf;
    if (!consumed.empty()) {
      auto b = buf.prepare(consumed.size());
      std::memcpy(b.data(), consumed.data(), consumed.size());
      buf.commit(consumed.size());
    }
    while (!stop_flag_.load()) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(1 << 20);
      const absl::Time deadline =
          absl::Now() + absl::Milliseconds(options_.request_timeout_ms);
      ec = {};
      while (!parser.is_done()) {
        http::read_some(sock, buf, parser, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
          ec = {};
          if (!common::WaitReady(fd, POLLIN, deadline)) {
            ec = asio::error::timed_out;
            break;
          }
        } else if (ec) {
          break;
        }
      }
      if (ec) break;
      Request req = parser.release();
      if (!Handle(req, sock, peer)) break;
    }
    {
      // No longer counted (Adopt) before the client can see the end: a
      // client that opens its next connection at once finds the slot free.
      absl::MutexLock lock(&mu_);
      fds_.erase(fd);
    }
    sock.shutdown(tcp::socket::shutdown_both, ec);
    (void)sock.release(ec);
  }

  // Writes a whole response; returns whether the connection goes on.
  bool Reply(tcp::socket& sock, const Request& req, http::status status,
             const std::string& type, std::string body,
             const std::string& extra = "") {
    std::string head = absl::StrCat(
        "HTTP/1.1 ", static_cast<int>(status), " ",
        std::string(http::obsolete_reason(status)), "\r\nServer: tidald\r\n",
        "Content-Type: ", type, "\r\nContent-Length: ", body.size(), "\r\n",
        kSecurityHeaders, extra,
        req.keep_alive() ? "" : "Connection: close\r\n", "\r\n");
    const bool head_only = req.method() == http::verb::head;
    return WriteAll(sock.native_handle(), WriteTimeout(),
                    {head, head_only ? absl::string_view() : body}) &&
           req.keep_alive();
  }
  bool Json(tcp::socket& sock, const Request& req, const std::string& body) {
    return Reply(sock, req, http::status::ok, "application/json", body,
                 "Cache-Control: no-store\r\n");
  }
  bool Error(tcp::socket& sock, const Request& req, const grpc::Status& s) {
    return Reply(sock, req, HttpStatus(s.error_code()), "application/json",
                 ErrorJson(s), "Cache-Control: no-store\r\n");
  }
  bool Plain(tcp::socket& sock, const Request& req, http::status status,
             const std::string& message) {
    return Reply(sock, req, status, "application/json",
                 absl::StrCat("{\"error\":", common::JsonQuoted(message), "}"),
                 "Cache-Control: no-store\r\n");
  }

  bool Handle(const Request& req, tcp::socket& sock, const std::string& peer) {
    std::string target(req.target());
    std::string path = target.substr(0, target.find('?'));
    Query q = ParseQuery(target.size() > path.size()
                             ? absl::string_view(target).substr(path.size() + 1)
                             : absl::string_view());
    if (path == "/ui") {
      return Reply(sock, req, http::status::moved_permanently, "text/plain", "",
                   "Location: /ui/\r\n");
    }
    if (!absl::StartsWith(path, "/ui/")) {
      return Plain(sock, req, http::status::not_found,
                   "the dashboard is under /ui/");
    }
    if (absl::StartsWith(path, "/ui/api/")) {
      return Api(req, sock, peer, path.substr(8), q);
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return Plain(sock, req, http::status::method_not_allowed,
                   "only GET here");
    }
    std::string name = path.substr(4);
    const DashboardAsset* asset = FindDashboardAsset(name);
    // Views are addressed after '#': every other path is the page.
    if (asset == nullptr && name.find('.') == std::string::npos) {
      asset = FindDashboardAsset("index.html");
    }
    if (asset == nullptr) {
      return Plain(sock, req, http::status::not_found,
                   absl::StrCat("no such file: ", name));
    }
    const std::string etag = absl::StrCat("\"", absl::Hex(Fingerprint(*asset)),
                                          "-", asset->size, "\"");
    auto inm = req.find(http::field::if_none_match);
    if (inm != req.end() && inm->value() == etag) {
      return Reply(sock, req, http::status::not_modified, asset->content_type,
                   "", absl::StrCat("ETag: ", etag, "\r\n"));
    }
    return Reply(
        sock, req, http::status::ok, asset->content_type,
        std::string(reinterpret_cast<const char*>(asset->data), asset->size),
        absl::StrCat("ETag: ", etag, "\r\nCache-Control: no-cache\r\n"));
  }

  absl::Duration WriteTimeout() const {
    return absl::Milliseconds(options_.write_timeout_ms);
  }

  static uint64_t Fingerprint(const DashboardAsset& a) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < a.size; ++i) {
      h = (h ^ a.data[i]) * 1099511628211ULL;
    }
    return h;
  }

  // A call's context: the caller's token and address, a deadline, and
  // registered so that Stop cancels it.
  class CallContext {
   public:
    CallContext(Impl* impl, const Request& req, const std::string& peer,
                absl::Duration timeout)
        : impl_(impl) {
      auto auth = req.find(http::field::authorization);
      if (auth != req.end()) {
        ctx_.AddMetadata("authorization", std::string(auth->value()));
      }
      if (!peer.empty()) ctx_.AddMetadata("x-tidal-client-address", peer);
      if (timeout != absl::InfiniteDuration()) {
        ctx_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
      }
      absl::MutexLock lock(&impl_->mu_);
      impl_->calls_.insert(&ctx_);
      if (impl_->stopping_) ctx_.TryCancel();
    }
    ~CallContext() {
      absl::MutexLock lock(&impl_->mu_);
      impl_->calls_.erase(&ctx_);
    }
    grpc::ClientContext* get() { return &ctx_; }

   private:
    Impl* const impl_;
    grpc::ClientContext ctx_;
  };

  std::unique_ptr<v1::Tidal::Stub> Stub() {
    std::shared_ptr<grpc::Channel> ch = options_.api ? options_.api() : nullptr;
    if (!ch) return nullptr;
    return v1::Tidal::NewStub(ch);
  }

  // Runs one unary call; answers its JSON (or `render`'s) or its error.
  template <typename Req, typename Resp, typename Method>
  bool Unary(tcp::socket& sock, const Request& http_req,
             const std::string& peer, Method method, const Req& req,
             const std::function<std::string(const Resp&)>& render = nullptr) {
    auto stub = Stub();
    if (!stub) {
      return Plain(sock, http_req, http::status::service_unavailable,
                   "the API is not running");
    }
    CallContext ctx(this, http_req, peer, absl::Seconds(15));
    // The answer on an arena: a list of a thousand apps is tens of
    // thousands of small fields, freed at once here.
    google::protobuf::Arena arena;
    Resp& resp = *google::protobuf::Arena::CreateMessage<Resp>(&arena);
    const absl::Time start = absl::Now();
    grpc::Status s = ((*stub).*method)(ctx.get(), req, &resp);
    if (!s.ok()) return Error(sock, http_req, s);
    const absl::Time called = absl::Now();
    std::string body = render ? render(resp) : ToJson(resp);
    // Where the server's time went, for the browser's resource timing
    // (docs/dashboard.md): the API call and making the JSON.
    const std::string timing =
        absl::StrFormat("Server-Timing: api;dur=%.1f, json;dur=%.1f\r\n",
                        absl::ToDoubleMilliseconds(called - start),
                        absl::ToDoubleMilliseconds(absl::Now() - called));
    return Reply(sock, http_req, http::status::ok, "application/json",
                 std::move(body),
                 absl::StrCat("Cache-Control: no-store\r\n", timing));
  }

  static v1::HistoryRequest HistoryFrom(const Query& q) {
    v1::HistoryRequest h;
    h.set_namespace_(Str(q, "ns"));
    h.set_all_namespaces(Str(q, "all") == "1");
    h.set_app(Str(q, "app"));
    h.set_window_seconds(Int(q, "window"));
    h.set_step_seconds(Int(q, "step"));
    h.set_after_unix(Int(q, "after"));
    h.set_rps_only(Str(q, "rpsOnly") == "1");
    h.set_omit_idle(Str(q, "omitIdle") == "1");
    return h;
  }

  bool Api(const Request& req, tcp::socket& sock, const std::string& peer,
           const std::string& path, const Query& q) {
    const bool get = req.method() == http::verb::get;
    const bool post = req.method() == http::verb::post;
    std::vector<std::string> parts = absl::StrSplit(path, '/');
    for (auto& p : parts) p = PercentDecode(p);
    using Stub = v1::Tidal::Stub;
    auto auth = req.find(http::field::authorization);
    if (auth != req.end() && !PrintableAscii(absl::string_view(
                                 auth->value().data(), auth->value().size()))) {
      return Plain(sock, req, http::status::unauthorized,
                   "the Authorization header holds bytes a token never has");
    }
    if (get && path == "whoami") {
      return Unary<v1::WhoAmIRequest, v1::WhoAmIResponse>(
          sock, req, peer, &Stub::WhoAmI, v1::WhoAmIRequest());
    }
    if (get && path == "can-i") {
      v1::CanIRequest r;
      r.set_verb(Str(q, "verb"));
      r.set_resource(Str(q, "resource"));
      r.set_namespace_(Str(q, "ns"));
      return Unary<v1::CanIRequest, v1::CanIResponse>(sock, req, peer,
                                                      &Stub::CanI, r);
    }
    if (get && path == "history") {
      return Unary<v1::HistoryRequest, v1::HistoryResponse>(
          sock, req, peer, &Stub::History, HistoryFrom(q));
    }
    if (get && path == "stream") return Stream(req, sock, peer, q);
    if (get && path == "apps") {
      v1::ListRequest r;
      r.set_namespace_(Str(q, "ns"));
      r.set_all_namespaces(Str(q, "all") == "1");
      r.set_limit(Int(q, "limit"));
      r.set_continue_(Str(q, "continue"));
      return Unary<v1::ListRequest, v1::ListResponse>(
          sock, req, peer, &Stub::List, r, [](const v1::ListResponse& l) {
            // The token is web-safe base64: no JSON escaping needed.
            std::string out = absl::StrCat(
                "{\"resourceVersion\":", l.resource_version(),
                ",\"continue\":\"", l.continue_(), "\",\"apps\":[");
            for (int i = 0; i < l.apps_size(); ++i) {
              if (i > 0) out += ',';
              out += AppRow(l.apps(i));
            }
            return out + "]}";
          });
    }
    if (parts.size() >= 3 && parts[0] == "apps") {
      const std::string& ns = parts[1];
      const std::string& name = parts[2];
      const std::string what = parts.size() >= 4 ? parts[3] : "";
      if (get && parts.size() == 3) {
        v1::GetRequest r;
        r.set_namespace_(ns);
        r.set_name(name);
        return Unary<v1::GetRequest, v1::App>(sock, req, peer, &Stub::Get, r);
      }
      if (get && what == "revisions") {
        v1::ListRevisionsRequest r;
        r.set_namespace_(ns);
        r.set_app(name);
        return Unary<v1::ListRevisionsRequest, v1::ListRevisionsResponse>(
            sock, req, peer, &Stub::ListRevisions, r);
      }
      if (get && what == "events") {
        v1::ListEventsRequest r;
        r.set_namespace_(ns);
        r.set_app(name);
        r.set_limit(
            static_cast<int32_t>(Int(q, "limit") > 0 ? Int(q, "limit") : 50));
        return Unary<v1::ListEventsRequest, v1::ListEventsResponse>(
            sock, req, peer, &Stub::ListEvents, r);
      }
      if (get && what == "instances") {
        v1::ListInstancesRequest r;
        r.set_namespace_(ns);
        r.set_app(name);
        return Unary<v1::ListInstancesRequest, v1::ListInstancesResponse>(
            sock, req, peer, &Stub::ListInstances, r);
      }
      if (get && what == "logs") return Logs(req, sock, peer, ns, name, q);
      if (post && (what == "rollout" || what == "scale")) {
        return Action(req, sock, peer, ns, name, what);
      }
    }
    return Plain(
        sock, req, http::status::not_found,
        absl::StrCat("no such call: ", std::string(req.method_string()),
                     " /ui/api/", path));
  }

  // POST .../rollout {"action":"promote","full":false,"toRevision":"0"}
  // POST .../scale {"replicas":3} | {"minReplicas":1,"maxReplicas":5}
  bool Action(const Request& req, tcp::socket& sock, const std::string& peer,
              const std::string& ns, const std::string& name,
              const std::string& what) {
    google::protobuf::util::JsonParseOptions o;
    o.ignore_unknown_fields = false;
    using Stub = v1::Tidal::Stub;
    if (what == "rollout") {
      v1::RolloutRequest r;
      auto s = google::protobuf::util::JsonStringToMessage(req.body(), &r, o);
      if (!s.ok() || r.action().empty() || r.action() == "status") {
        return Plain(sock, req, http::status::bad_request,
                     "the body must be {\"action\": \"promote\" | \"abort\" | "
                     "\"undo\" | \"pause\" | \"resume\" | ...}");
      }
      r.set_namespace_(ns);
      r.set_name(name);
      return Unary<v1::RolloutRequest, v1::App>(sock, req, peer, &Stub::Rollout,
                                                r);
    }
    v1::ScaleRequest r;
    auto s = google::protobuf::util::JsonStringToMessage(req.body(), &r, o);
    if (!s.ok()) {
      return Plain(sock, req, http::status::bad_request,
                   "the body must be {\"replicas\": N} or {\"minReplicas\": "
                   "N, \"maxReplicas\": M}");
    }
    r.set_namespace_(ns);
    r.set_name(name);
    return Unary<v1::ScaleRequest, v1::App>(sock, req, peer, &Stub::Scale, r);
  }

  // The last lines of an instance's output (or every instance's), as text.
  bool Logs(const Request& req, tcp::socket& sock, const std::string& peer,
            const std::string& ns, const std::string& name, const Query& q) {
    auto stub = Stub();
    if (!stub) {
      return Plain(sock, req, http::status::service_unavailable,
                   "the API is not running");
    }
    v1::LogsRequest r;
    r.set_namespace_(ns);
    r.set_app(name);
    r.set_instance(Str(q, "instance"));
    r.set_tail_lines(
        Int(q, "tail") > 0 ? std::min<int64_t>(Int(q, "tail"), 5000) : 200);
    r.set_previous(Str(q, "previous") == "1");
    CallContext ctx(this, req, peer, absl::Seconds(15));
    auto reader = stub->Logs(ctx.get(), r);
    std::string text;
    v1::LogChunk chunk;
    while (reader->Read(&chunk) && text.size() < (8 << 20)) {
      text += chunk.data();
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) return Error(sock, req, s);
    return Reply(sock, req, http::status::ok, "text/plain; charset=utf-8",
                 std::move(text), "Cache-Control: no-store\r\n");
  }

  // GET /ui/api/stream?ns=&all=1&app=&rv=&after=: server-sent events, one
  // connection per page: "app" (a change of an app: a row of the list, or
  // the whole app on an app's page), "history" (the points recorded since
  // the last one, once a second) and "end" (the stream failed; the page
  // reconnects).
  bool Stream(const Request& req, tcp::socket& sock, const std::string& peer,
              const Query& q) {
    auto stub = Stub();
    if (!stub) {
      return Plain(sock, req, http::status::service_unavailable,
                   "the API is not running");
    }
    const std::string app = Str(q, "app");
    const bool list = app.empty();
    v1::HistoryRequest hreq = HistoryFrom(q);
    if (list) {
      hreq.set_rps_only(true);
      hreq.set_omit_idle(true);
      if (hreq.window_seconds() == 0) hreq.set_window_seconds(300);
    }
    // The first history call also checks the token and the role: a refusal
    // is an HTTP status, before the stream starts.
    v1::HistoryResponse hist;
    {
      CallContext ctx(this, req, peer, absl::Seconds(15));
      grpc::Status s = stub->History(ctx.get(), hreq, &hist);
      if (!s.ok()) return Error(sock, req, s);
    }
    std::string head = absl::StrCat(
        "HTTP/1.1 200 OK\r\nServer: tidald\r\n"
        "Content-Type: text/event-stream\r\nCache-Control: no-store\r\n",
        kSecurityHeaders, "Connection: close\r\n\r\n");
    const int fd = sock.native_handle();
    if (!WriteAll(fd, WriteTimeout(), {head})) return false;
    auto send = [&](const char* event, const std::string& data) {
      return WriteAll(fd, WriteTimeout(),
                      {"event: ", event, "\ndata: ", data, "\n\n"});
    };
    if (!send("history", ToJson(hist))) return false;
    hreq.set_after_unix(std::max(hreq.after_unix(), hist.now_unix()));

    // The watch, on a thread of its own: events queue up for this one.
    struct Shared {
      absl::Mutex mu;
      std::deque<std::string> events ABSL_GUARDED_BY(mu);
      bool ended ABSL_GUARDED_BY(mu) = false;
      std::string error ABSL_GUARDED_BY(mu);
      static bool Ready(Shared* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
        return !s->events.empty() || s->ended;
      }
    } shared;
    v1::WatchRequest wreq;
    wreq.set_namespace_(hreq.namespace_());
    wreq.set_all_namespaces(hreq.all_namespaces());
    wreq.set_resource_version(Int(q, "rv"));
    CallContext wctx(this, req, peer, absl::InfiniteDuration());
    std::thread watcher([&] {
      auto reader = stub->Watch(wctx.get(), wreq);
      v1::WatchEvent ev;
      while (reader->Read(&ev)) {
        if (!list && ev.app().metadata().name() != app) continue;
        std::string json =
            list ? absl::StrCat("{\"type\":", common::JsonQuoted(ev.type()),
                                ",\"app\":", AppRow(ev.app()), "}")
                 : ToJson(ev);
        absl::MutexLock lock(&shared.mu);
        if (shared.events.size() >= 5000) {
          // A reader this slow gets a fresh start instead.
          shared.error = "too far behind";
          shared.ended = true;
          break;
        }
        shared.events.push_back(std::move(json));
      }
      grpc::Status s = reader->Finish();
      absl::MutexLock lock(&shared.mu);
      if (!shared.ended) {
        shared.ended = true;
        shared.error = s.ok() ? "the watch ended" : s.error_message();
      }
    });

    const absl::Duration period = absl::Milliseconds(options_.stream_period_ms);
    absl::Time next = absl::Now() + period;
    absl::Time last_write = absl::Now();
    bool ok = true;
    while (ok && !stop_flag_.load()) {
      std::deque<std::string> events;
      bool ended = false;
      std::string error;
      {
        absl::MutexLock lock(&shared.mu);
        shared.mu.AwaitWithTimeout(
            absl::Condition(&Shared::Ready, &shared),
            std::max(next - absl::Now(), absl::ZeroDuration()));
        events.swap(shared.events);
        ended = shared.ended;
        error = shared.error;
      }
      for (const auto& e : events) {
        if (!(ok = send("app", e))) break;
        last_write = absl::Now();
      }
      if (!ok) break;
      if (ended) {
        send("end",
             absl::StrCat("{\"error\":", common::JsonQuoted(error), "}"));
        break;
      }
      if (absl::Now() < next) continue;
      next += period;
      if (next < absl::Now()) next = absl::Now() + period;
      CallContext ctx(this, req, peer, absl::Seconds(15));
      v1::HistoryResponse h;
      grpc::Status s = stub->History(ctx.get(), hreq, &h);
      if (!s.ok()) {
        send("end", ErrorJson(s));
        break;
      }
      if (h.now_unix() > hreq.after_unix() || !h.apps().empty()) {
        ok = send("history", ToJson(h));
        last_write = absl::Now();
        hreq.set_after_unix(std::max(hreq.after_unix(), h.now_unix()));
      } else if (absl::Now() - last_write > absl::Seconds(15)) {
        ok = WriteAll(fd, WriteTimeout(), {": ping\n\n"});
        last_write = absl::Now();
      }
    }
    wctx.get()->TryCancel();
    watcher.join();
    return false;
  }

  const Options options_;
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  std::thread accept_thread_;
  int port_ = 0;
  std::atomic<bool> stop_flag_{false};

  struct Connection {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::list<Connection> threads_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<int> fds_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
};

Dashboard::Dashboard(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Dashboard::~Dashboard() { Stop(); }
absl::Status Dashboard::Listen(const std::string& address) {
  return impl_->Listen(address);
}
int Dashboard::port() const { return impl_->port(); }
void Dashboard::Adopt(int fd, std::string consumed) {
  impl_->Adopt(fd, std::move(consumed));
}
void Dashboard::Stop() { impl_->Stop(); }

}  // namespace tidal::dashboard
