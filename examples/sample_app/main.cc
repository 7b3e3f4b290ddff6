// tidal-sample-app: a small, fast HTTP/1.1 server with knobs, used by the
// walkthrough, the tests and the benchmarks.
//
//   GET /            "hello from <version> (pid N)\n"
//   GET /healthz     200 "ok\n" (500 once --unhealthy-after is reached)
//   ANY /echo        the request body back
//   GET /bytes?n=N   N bytes of 'x'
//   GET /stats       "requests=N inflight=M\n" (M: other requests in progress)
//   GET /ws          WebSocket: every message echoed back as it came (text or
//                    binary); closed with 1001 Going Away on SIGTERM
//   GET /events?n=N&interval=D
//                    server-sent events: N events (default 10), one every D
//                    (default 100ms), each "data: <µs since the epoch when
//                    written>", each written at once (chunked)
//   any path         ?latency=5ms overrides --latency for that request
//
// Every response carries X-Version. Keep-alive, multithreaded (Boost.Beast on
// an io_context run by --threads threads). SIGTERM/SIGINT: stop accepting,
// finish in-flight requests, close idle connections, exit 0.
//
// Knobs (flag, or environment variable; a flag wins):
//   --port / PORT (8080)         --host / HOST (127.0.0.1)
//   --threads / THREADS (2)      --startup-delay / STARTUP_DELAY (0)
//   --latency / LATENCY (0)      --error-rate / ERROR_RATE (0..1, 0)
//   --version / VERSION (v1)     --crash-after / CRASH_AFTER (N requests, 0 =
//   never)
//   --exit-at-start / EXIT_AT_START (exit code, after the startup delay)
//   --unhealthy-after / UNHEALTHY_AFTER (N requests, or a duration like 2s)
// Durations: "250ms", "2s", "1m", "100us"; a bare number is milliseconds.

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

struct Config {
  std::string host = "127.0.0.1";
  int port = 8080;
  int threads = 2;
  int64_t startup_delay_us = 0;
  int64_t latency_us = 0;
  double error_rate = 0;
  std::string version = "v1";
  int64_t crash_after = 0;
  std::optional<int> exit_at_start;
  int64_t unhealthy_after_requests = -1;
  int64_t unhealthy_after_us = -1;
};

// Parses "250ms", "2s", "1.5s", "1m", "100us", "1h"; a bare number is ms.
bool ParseDurationUs(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  size_t i = 0;
  while (i < s.size() &&
         (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.'))
    ++i;
  if (i == 0) return false;
  double v = 0;
  try {
    v = std::stod(std::string(s.substr(0, i)));
  } catch (...) {
    return false;
  }
  std::string_view unit = s.substr(i);
  double mult;
  if (unit.empty() || unit == "ms") {
    mult = 1e3;
  } else if (unit == "us") {
    mult = 1;
  } else if (unit == "s") {
    mult = 1e6;
  } else if (unit == "m") {
    mult = 60e6;
  } else if (unit == "h") {
    mult = 3600e6;
  } else {
    return false;
  }
  *out = static_cast<int64_t>(v * mult);
  return true;
}

bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  std::string str(s);
  long long v = std::strtoll(str.c_str(), &end, 10);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

[[noreturn]] void Usage(const std::string& error) {
  if (!error.empty())
    std::fprintf(stderr, "tidal-sample-app: %s\n", error.c_str());
  std::fprintf(
      stderr,
      "usage: tidal-sample-app [--port N] [--host ADDR] [--threads N]\n"
      "  [--startup-delay D] [--latency D] [--error-rate F] [--version S]\n"
      "  [--crash-after N] [--exit-at-start CODE] [--unhealthy-after N|D]\n"
      "Each flag can also be given as an environment variable (PORT, HOST,\n"
      "THREADS, STARTUP_DELAY, LATENCY, ERROR_RATE, VERSION, CRASH_AFTER,\n"
      "EXIT_AT_START, UNHEALTHY_AFTER). Durations: 250ms, 2s, 1m; bare = "
      "ms.\n");
  std::exit(error.empty() ? 0 : 2);
}

void Apply(Config* c, const std::string& name, const std::string& value) {
  int64_t n = 0;
  auto bad = [&]() {
    Usage("invalid value for --" + name + ": '" + value + "'");
  };
  if (name == "port") {
    if (!ParseInt(value, &n) || n < 0 || n > 65535) bad();
    c->port = static_cast<int>(n);
  } else if (name == "host") {
    c->host = value;
  } else if (name == "threads") {
    if (!ParseInt(value, &n) || n < 1 || n > 256) bad();
    c->threads = static_cast<int>(n);
  } else if (name == "startup-delay") {
    if (!ParseDurationUs(value, &c->startup_delay_us)) bad();
  } else if (name == "latency") {
    if (!ParseDurationUs(value, &c->latency_us)) bad();
  } else if (name == "error-rate") {
    char* end = nullptr;
    c->error_rate = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || c->error_rate < 0 || c->error_rate > 1)
      bad();
  } else if (name == "version") {
    c->version = value;
  } else if (name == "crash-after") {
    if (!ParseInt(value, &c->crash_after) || c->crash_after < 0) bad();
  } else if (name == "exit-at-start") {
    if (!ParseInt(value, &n) || n < 0 || n > 255) bad();
    c->exit_at_start = static_cast<int>(n);
  } else if (name == "unhealthy-after") {
    if (ParseInt(value, &n)) {
      if (n < 0) bad();
      c->unhealthy_after_requests = n;
    } else if (!ParseDurationUs(value, &c->unhealthy_after_us)) {
      bad();
    }
  } else {
    Usage("unknown flag --" + name);
  }
}

Config ParseConfig(int argc, char** argv) {
  Config c;
  static const std::pair<const char*, const char*> kEnv[] = {
      {"PORT", "port"},
      {"HOST", "host"},
      {"THREADS", "threads"},
      {"STARTUP_DELAY", "startup-delay"},
      {"LATENCY", "latency"},
      {"ERROR_RATE", "error-rate"},
      {"VERSION", "version"},
      {"CRASH_AFTER", "crash-after"},
      {"EXIT_AT_START", "exit-at-start"},
      {"UNHEALTHY_AFTER", "unhealthy-after"},
  };
  for (const auto& [env, flag] : kEnv) {
    const char* v = std::getenv(env);
    if (v != nullptr && *v != '\0') Apply(&c, flag, v);
  }
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") Usage("");
    if (arg.rfind("--", 0) != 0) Usage("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= argc) Usage("missing value for --" + name);
      value = argv[++i];
    }
    Apply(&c, name, value);
  }
  return c;
}

// Process-wide server state.
Config g_config;
std::atomic<int64_t> g_requests{0};
std::atomic<int64_t> g_inflight{0};
std::atomic<bool> g_draining{false};
std::chrono::steady_clock::time_point g_start;
std::string g_hello;

class Session;
std::mutex g_sessions_mu;
std::unordered_map<Session*, std::weak_ptr<Session>> g_sessions;
class WsSession;
std::mutex g_ws_mu;
std::unordered_map<WsSession*, std::weak_ptr<WsSession>> g_ws;

std::string_view QueryParam(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string_view()
                                          : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

bool Healthy() {
  if (g_config.unhealthy_after_requests >= 0 &&
      g_requests.load(std::memory_order_relaxed) >=
          g_config.unhealthy_after_requests) {
    return false;
  }
  if (g_config.unhealthy_after_us >= 0) {
    auto up = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - g_start)
                  .count();
    if (up >= g_config.unhealthy_after_us) return false;
  }
  return true;
}

// A WebSocket connection (GET /ws): echoes every message.
class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  explicit WsSession(tcp::socket&& socket) : ws_(std::move(socket)) {}
  ~WsSession() {
    std::lock_guard<std::mutex> l(g_ws_mu);
    g_ws.erase(this);
  }

  void Start(http::request<http::string_body> req) {
    {
      std::lock_guard<std::mutex> l(g_ws_mu);
      g_ws[this] = weak_from_this();
    }
    ws_.set_option(
        websocket::stream_base::decorator([](websocket::response_type& res) {
          res.set("X-Version", g_config.version);
        }));
    ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->Read();
    });
  }

  // On drain: 1001 Going Away.
  void GoAway() {
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      if (self->closing_) return;
      self->closing_ = true;
      self->ws_.async_close(websocket::close_code::going_away,
                            [self](beast::error_code) {});
    });
  }

 private:
  void Read() {
    ws_.async_read(
        buffer_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return;  // closed (by either side) or failed
          self->ws_.text(self->ws_.got_text());
          self->ws_.async_write(self->buffer_.data(),
                                [self](beast::error_code ec, size_t) {
                                  if (ec) return;
                                  self->buffer_.consume(self->buffer_.size());
                                  self->Read();
                                });
        });
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  bool closing_ = false;
};

// One connection: reads requests and writes responses in order, on its strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket&& socket)
      : stream_(std::move(socket)), timer_(stream_.get_executor()) {}
  ~Session() {
    std::lock_guard<std::mutex> l(g_sessions_mu);
    g_sessions.erase(this);
  }

  void Start() {
    {
      std::lock_guard<std::mutex> l(g_sessions_mu);
      g_sessions[this] = weak_from_this();
    }
    stream_.socket().set_option(tcp::no_delay(true));
    net::dispatch(stream_.get_executor(),
                  [self = shared_from_this()] { self->Read(); });
  }

  // Called on drain: closes the connection unless a request is in flight.
  void CloseIfIdle() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->busy_) self->Close();
    });
  }

 private:
  void Read() {
    busy_ = false;
    if (g_draining.load()) return Close();
    parser_.emplace();
    parser_->body_limit(64ull << 20);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->OnRead(ec);
                     });
  }

  void OnRead(beast::error_code ec) {
    if (ec) return Close();
    busy_ = true;
    g_inflight.fetch_add(1, std::memory_order_relaxed);
    req_ = parser_->release();
    Handle();
  }

  void Handle() {
    std::string_view target(req_.target().data(), req_.target().size());
    std::string_view path = target, query;
    size_t q = target.find('?');
    if (q != std::string_view::npos) {
      path = target.substr(0, q);
      query = target.substr(q + 1);
    }
    res_ = {};
    res_.version(req_.version());
    res_.set(http::field::server, "tidal-sample-app");
    res_.set("X-Version", g_config.version);
    res_.set(http::field::content_type, "text/plain");
    int64_t latency_us = g_config.latency_us;
    if (std::string_view l = QueryParam(query, "latency"); !l.empty()) {
      ParseDurationUs(l, &latency_us);
    }
    thread_local std::mt19937_64 rng(std::random_device{}());
    if (path == "/ws" && websocket::is_upgrade(req_)) {
      g_inflight.fetch_sub(1, std::memory_order_relaxed);
      g_requests.fetch_add(1, std::memory_order_relaxed);
      std::make_shared<WsSession>(stream_.release_socket())
          ->Start(std::move(req_));
      return;
    }
    if (path == "/events") return StartEvents(query);
    if (path == "/healthz") {
      bool ok = Healthy();
      res_.result(ok ? http::status::ok : http::status::internal_server_error);
      res_.body() = ok ? "ok\n" : "unhealthy\n";
    } else if (g_config.error_rate > 0 &&
               std::uniform_real_distribution<double>(0, 1)(rng) <
                   g_config.error_rate) {
      res_.result(http::status::internal_server_error);
      res_.body() = "injected error\n";
    } else if (path == "/stats") {
      res_.result(http::status::ok);
      res_.body() = "requests=" + std::to_string(g_requests.load()) +
                    " inflight=" + std::to_string(g_inflight.load() - 1) + "\n";
    } else if (path == "/") {
      res_.result(http::status::ok);
      res_.body() = g_hello;
    } else if (path == "/echo") {
      res_.result(http::status::ok);
      if (auto it = req_.find(http::field::content_type); it != req_.end()) {
        res_.set(http::field::content_type, it->value());
      } else {
        res_.set(http::field::content_type, "application/octet-stream");
      }
      res_.body() = std::move(req_.body());
    } else if (path == "/bytes") {
      int64_t n = 0;
      if (!ParseInt(QueryParam(query, "n"), &n) || n < 0 || n > (1ll << 30)) {
        res_.result(http::status::bad_request);
        res_.body() = "n must be an integer in [0, 2^30]\n";
      } else {
        res_.result(http::status::ok);
        res_.set(http::field::content_type, "application/octet-stream");
        res_.body().assign(static_cast<size_t>(n), 'x');
      }
    } else {
      res_.result(http::status::not_found);
      res_.body() = "not found\n";
    }
    if (latency_us > 0) {
      timer_.expires_after(std::chrono::microseconds(latency_us));
      timer_.async_wait(
          [self = shared_from_this()](beast::error_code) { self->Write(); });
    } else {
      Write();
    }
  }

  void Write() {
    res_.keep_alive(req_.keep_alive() && !g_draining.load());
    res_.prepare_payload();
    http::async_write(stream_, res_,
                      [self = shared_from_this()](
                          beast::error_code ec, size_t) { self->OnWrite(ec); });
  }

  void OnWrite(beast::error_code ec) {
    g_inflight.fetch_sub(1, std::memory_order_relaxed);
    int64_t n = g_requests.fetch_add(1, std::memory_order_relaxed) + 1;
    if (g_config.crash_after > 0 && n >= g_config.crash_after) {
      std::fprintf(stderr, "tidal-sample-app: crashing after %lld requests\n",
                   static_cast<long long>(n));
      std::fflush(stderr);
      _exit(1);
    }
    if (ec || !res_.keep_alive()) return Close();
    Read();
  }

  // Server-sent events: the header, then one chunk per event.
  void StartEvents(std::string_view query) {
    events_left_ = 10;
    events_interval_us_ = 100000;
    int64_t n = 0;
    if (ParseInt(QueryParam(query, "n"), &n) && n >= 0) events_left_ = n;
    if (std::string_view d = QueryParam(query, "interval"); !d.empty()) {
      ParseDurationUs(d, &events_interval_us_);
    }
    events_res_.emplace(http::status::ok, req_.version());
    events_res_->set(http::field::server, "tidal-sample-app");
    events_res_->set("X-Version", g_config.version);
    events_res_->set(http::field::content_type, "text/event-stream");
    events_res_->set(http::field::cache_control, "no-cache");
    events_res_->chunked(true);
    events_res_->keep_alive(req_.keep_alive());
    events_sr_.emplace(*events_res_);
    http::async_write_header(
        stream_, *events_sr_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->Close();
          self->NextEvent();
        });
  }

  void NextEvent() {
    if (events_left_ == 0) {
      return net::async_write(
          stream_, http::make_chunk_last(),
          [self = shared_from_this()](beast::error_code ec, size_t) {
            self->events_sr_.reset();
            self->events_res_.reset();
            self->OnWrite(ec);
          });
    }
    timer_.expires_after(std::chrono::microseconds(events_interval_us_));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Close();
      --self->events_left_;
      auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
      self->event_ = "data: " + std::to_string(now) + "\n\n";
      net::async_write(self->stream_,
                       http::make_chunk(net::buffer(self->event_)),
                       [self](beast::error_code ec, size_t) {
                         if (ec) return self->Close();
                         self->NextEvent();
                       });
    });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
    timer_.cancel();
  }

  beast::tcp_stream stream_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  bool busy_ = false;
  // GET /events.
  int64_t events_left_ = 0;
  int64_t events_interval_us_ = 0;
  std::string event_;
  std::optional<http::response<http::empty_body>> events_res_;
  std::optional<http::response_serializer<http::empty_body>> events_sr_;
};

// Accepts connections until the drain starts.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, tcp::acceptor&& acceptor)
      : ioc_(ioc), acceptor_(std::move(acceptor)) {}

  void Accept() {
    acceptor_.async_accept(
        net::make_strand(ioc_),
        [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
          if (ec) {
            if (ec == net::error::operation_aborted || g_draining) return;
          } else if (!g_draining.load()) {
            std::make_shared<Session>(std::move(s))->Start();
          }
          if (!g_draining.load()) self->Accept();
        });
  }

  void Stop() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
    });
  }

 private:
  net::io_context& ioc_;
  tcp::acceptor acceptor_;
};

}  // namespace

int main(int argc, char** argv) {
  g_config = ParseConfig(argc, argv);
  g_start = std::chrono::steady_clock::now();
  g_hello = "hello from " + g_config.version + " (pid " +
            std::to_string(getpid()) + ")\n";

  if (g_config.startup_delay_us > 0) {
    std::this_thread::sleep_for(
        std::chrono::microseconds(g_config.startup_delay_us));
  }
  if (g_config.exit_at_start) {
    std::fprintf(stderr, "tidal-sample-app: exiting at start with code %d\n",
                 *g_config.exit_at_start);
    return *g_config.exit_at_start;
  }

  net::io_context ioc(g_config.threads);
  beast::error_code ec;
  auto address = net::ip::make_address(g_config.host, ec);
  if (ec) {
    std::fprintf(stderr, "tidal-sample-app: bad --host '%s'\n",
                 g_config.host.c_str());
    return 2;
  }
  // SIGTERM is handled from before the port accepts connections: a
  // readiness probe can succeed as soon as the socket listens, and a stop
  // right after must drain, not kill the app with no output. SIGTERM and
  // SIGINT are blocked in every thread and taken by a thread of their own in
  // sigwait(), never by a handler: ThreadSanitizer runs handlers late, at
  // points of its choosing, and lost about one stop in 60 under load.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::shared_ptr<Listener> listener;
  tcp::acceptor acceptor(net::make_strand(ioc));
  tcp::endpoint endpoint(address, static_cast<unsigned short>(g_config.port));
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "tidal-sample-app: cannot listen on %s:%d: %s\n",
                 g_config.host.c_str(), g_config.port, ec.message().c_str());
    return 1;
  }
  int port = acceptor.local_endpoint().port();
  listener = std::make_shared<Listener>(ioc, std::move(acceptor));
  listener->Accept();

  auto drain = [&](int sig) {
    std::fprintf(stdout, "tidal-sample-app: signal %d, draining\n", sig);
    std::fflush(stdout);
    g_draining = true;
    listener->Stop();
    std::vector<std::shared_ptr<Session>> sessions;
    {
      std::lock_guard<std::mutex> l(g_sessions_mu);
      for (auto& [ptr, weak] : g_sessions) {
        if (auto s = weak.lock()) sessions.push_back(std::move(s));
      }
    }
    for (auto& s : sessions) s->CloseIfIdle();
    std::vector<std::shared_ptr<WsSession>> ws;
    {
      std::lock_guard<std::mutex> l(g_ws_mu);
      for (auto& [ptr, weak] : g_ws) {
        if (auto s = weak.lock()) ws.push_back(std::move(s));
      }
    }
    for (auto& s : ws) s->GoAway();
  };

  std::fprintf(stdout,
               "tidal-sample-app %s listening on %s:%d (pid %d, %d threads)\n",
               g_config.version.c_str(), g_config.host.c_str(), port, getpid(),
               g_config.threads);
  std::fflush(stdout);

  // The first stop signal drains; `done` (set once the app has drained)
  // ends the wait without one.
  std::atomic<bool> done{false};
  std::thread signal_waiter([&] {
    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    if (!done.load()) net::post(ioc, [&drain, sig] { drain(sig); });
  });
  std::vector<std::thread> threads;
  for (int i = 1; i < g_config.threads; ++i)
    threads.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  done = true;
  pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  std::fprintf(stdout, "tidal-sample-app: drained, exiting\n");
  std::fflush(stdout);
  return 0;
}
