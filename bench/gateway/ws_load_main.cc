// tidal-ws-load: a WebSocket load client for bench/gateway/run_protocols.sh.
// Opens --conns connections (all handshakes first), then each echoes
// --messages text messages of --size bytes, one at a time (send, wait for the
// echo, send the next). Prints one line:
//
//   <messages/s> <p50 ms> <p99 ms> <errors>
//
// messages/s counts echoed messages over the echo phase (first send to last
// echo); latencies are per message round trip. Connections are spread over
// --threads threads, each with its own io_context.
//
//   tidal-ws-load --port P [--address 127.0.0.1] [--host HOST] [--path /ws]
//                 [--conns 64] [--messages 1000] [--size 64] [--threads 2]

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string address = "127.0.0.1";
  int port = 0;
  std::string host = "localhost";
  std::string path = "/ws";
  int conns = 64;
  int messages = 1000;
  int size = 64;
  int threads = 2;
};

[[noreturn]] void Usage(const std::string& error) {
  std::fprintf(stderr,
               "error: %s\nusage: tidal-ws-load --port P [--address A] "
               "[--host H] [--path /ws] [--conns N] [--messages M] "
               "[--size B] [--threads T]\n",
               error.c_str());
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) Usage("missing value for " + flag);
    std::string v = argv[++i];
    if (flag == "--address") {
      o.address = v;
    } else if (flag == "--port") {
      o.port = std::atoi(v.c_str());
    } else if (flag == "--host") {
      o.host = v;
    } else if (flag == "--path") {
      o.path = v;
    } else if (flag == "--conns") {
      o.conns = std::atoi(v.c_str());
    } else if (flag == "--messages") {
      o.messages = std::atoi(v.c_str());
    } else if (flag == "--size") {
      o.size = std::atoi(v.c_str());
    } else if (flag == "--threads") {
      o.threads = std::atoi(v.c_str());
    } else {
      Usage("unknown flag " + flag);
    }
  }
  if (o.port <= 0 || o.conns <= 0 || o.messages <= 0 || o.size <= 0 ||
      o.threads <= 0) {
    Usage("--port, --conns, --messages, --size and --threads must be > 0");
  }
  return o;
}

// One connection: handshake, then `messages` sequential echoes. Runs on its
// thread's io_context only (no strand needed: one operation at a time).
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(net::io_context& ioc, const Options& o, std::atomic<int>* errors)
      : ws_(ioc), o_(o), errors_(errors), payload_(o.size, 'x') {
    latencies_us_.reserve(o.messages);
  }

  void Connect() {
    tcp::endpoint ep(net::ip::make_address(o_.address),
                     static_cast<unsigned short>(o_.port));
    beast::get_lowest_layer(ws_).async_connect(
        ep, [self = shared_from_this()](beast::error_code ec) {
          if (ec) return self->Fail();
          beast::get_lowest_layer(self->ws_).socket().set_option(
              tcp::no_delay(true));
          self->ws_.async_handshake(self->o_.host, self->o_.path,
                                    [self](beast::error_code ec) {
                                      if (ec) return self->Fail();
                                      self->ok_ = true;
                                    });
        });
  }
  void Start() {
    if (!ok_) return;
    ws_.text(true);
    Send();
  }
  bool ok() const { return ok_; }
  const std::vector<int64_t>& latencies_us() const { return latencies_us_; }

 private:
  void Send() {
    sent_at_ = Clock::now();
    ws_.async_write(net::buffer(payload_),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      if (ec) return self->Fail();
                      self->Receive();
                    });
  }
  void Receive() {
    buf_.clear();
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec,
                                                     size_t n) {
      if (ec || n != self->payload_.size()) return self->Fail();
      self->latencies_us_.push_back(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() -
                                                                self->sent_at_)
              .count());
      if (static_cast<int>(self->latencies_us_.size()) < self->o_.messages) {
        self->Send();
      } else {
        self->ws_.async_close(websocket::close_code::normal,
                              [self](beast::error_code) {});
      }
    });
  }
  void Fail() {
    ok_ = false;
    errors_->fetch_add(1);
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  websocket::stream<beast::tcp_stream> ws_;
  const Options& o_;
  std::atomic<int>* errors_;
  const std::string payload_;
  beast::flat_buffer buf_;
  Clock::time_point sent_at_;
  std::vector<int64_t> latencies_us_;
  bool ok_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  std::atomic<int> errors{0};
  std::vector<std::unique_ptr<net::io_context>> iocs;
  std::vector<std::vector<std::shared_ptr<Conn>>> conns(o.threads);
  for (int t = 0; t < o.threads; ++t) {
    iocs.push_back(std::make_unique<net::io_context>(1));
  }
  for (int i = 0; i < o.conns; ++i) {
    conns[i % o.threads].push_back(
        std::make_shared<Conn>(*iocs[i % o.threads], o, &errors));
  }
  // Runs `f(t)` on one thread per io_context and waits for all.
  auto on_threads = [&](auto f) {
    std::vector<std::thread> threads;
    for (int t = 0; t < o.threads; ++t) threads.emplace_back(f, t);
    for (auto& th : threads) th.join();
  };
  // Phase 1: every handshake.
  on_threads([&](int t) {
    for (auto& c : conns[t]) c->Connect();
    iocs[t]->run();
  });
  // Phase 2: the echoes, timed.
  const auto start = Clock::now();
  on_threads([&](int t) {
    iocs[t]->restart();
    for (auto& c : conns[t]) c->Start();
    iocs[t]->run();
  });
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<int64_t> all;
  all.reserve(static_cast<size_t>(o.conns) * o.messages);
  for (auto& per_thread : conns) {
    for (auto& c : per_thread) {
      all.insert(all.end(), c->latencies_us().begin(), c->latencies_us().end());
    }
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    if (all.empty()) return 0.0;
    size_t i = std::min(all.size() - 1, static_cast<size_t>(p * all.size()));
    return all[i] / 1000.0;
  };
  std::printf("%.0f %.3f %.3f %d\n", all.size() / seconds, pct(0.50), pct(0.99),
              errors.load());
  return errors.load() == 0 ? 0 : 1;
}
