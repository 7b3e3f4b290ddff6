// Probe resolution and single probe attempts (runtime/prober.h) against
// small servers on 127.0.0.1.

#include "runtime/prober.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tidal {
namespace {

TEST(ProberTest, ResolveProbeDefaults) {
  tidal::v1::Probe none;
  ProbeConfig r = ResolveProbe(none, /*liveness=*/false, 8080);
  EXPECT_FALSE(r.http);
  EXPECT_EQ(r.port, 8080);
  EXPECT_EQ(r.initial_delay, absl::ZeroDuration());
  EXPECT_EQ(r.period, absl::Seconds(1));
  EXPECT_EQ(r.timeout, absl::Seconds(1));
  EXPECT_EQ(r.failure_threshold, 3);
  EXPECT_EQ(r.success_threshold, 1);
  EXPECT_EQ(ResolveProbe(none, /*liveness=*/true, 8080).period,
            absl::Seconds(10));

  tidal::v1::Probe http;
  http.mutable_http_get()->set_path("healthz");
  http.set_initial_delay_seconds(5);
  http.set_period_seconds(0);  // at least 1s
  http.set_timeout_seconds(3);
  http.set_failure_threshold(0);
  http.set_success_threshold(2);
  r = ResolveProbe(http, false, 8080);
  EXPECT_TRUE(r.http);
  EXPECT_EQ(r.path, "/healthz");
  EXPECT_EQ(r.port, 8080);
  EXPECT_EQ(r.initial_delay, absl::Seconds(5));
  EXPECT_EQ(r.period, absl::Seconds(1));
  EXPECT_EQ(r.timeout, absl::Seconds(3));
  EXPECT_EQ(r.failure_threshold, 1);
  EXPECT_EQ(r.success_threshold, 2);

  tidal::v1::Probe tcp;
  tcp.mutable_tcp_socket()->set_port(9090);
  r = ResolveProbe(tcp, true, 8080);
  EXPECT_FALSE(r.http);
  EXPECT_EQ(r.port, 9090);
}

TEST(ProberTest, ShortDuration) {
  EXPECT_EQ(ShortDuration(absl::Seconds(10)), "10s");
  EXPECT_EQ(ShortDuration(absl::Seconds(160)), "2m40s");
  EXPECT_EQ(ShortDuration(absl::Minutes(5)), "5m");
  EXPECT_EQ(ShortDuration(absl::Milliseconds(100)), "100ms");
}

// Listens on 127.0.0.1:0; each accepted connection gets `response` (after
// reading the request) unless it is empty, in which case the connection is
// held open without an answer until the server goes away.
class Server {
 public:
  explicit Server(std::string response) : response_(std::move(response)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 8);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[1024];
      ssize_t n = read(c, buf, sizeof(buf));
      if (n > 0) request_.assign(buf, static_cast<size_t>(n));
      if (!response_.empty()) {
        (void)!send(c, response_.data(), response_.size(), MSG_NOSIGNAL);
        close(c);
      } else {
        held_ = c;
      }
    });
  }
  ~Server() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    if (held_ >= 0) close(held_);
    close(fd_);
  }
  int port() const { return port_; }
  // Valid once a probe has finished.
  const std::string& request() const { return request_; }

 private:
  std::string response_;
  int fd_ = -1;
  int port_ = 0;
  int held_ = -1;
  std::string request_;
  std::thread thread_;
};

ProbeResult Probe(const ProbeConfig& cfg) {
  boost::asio::io_context io;
  std::optional<ProbeResult> got;
  int calls = 0;
  RunProbe(io, cfg, "127.0.0.1", [&](const ProbeResult& r) {
    got = r;
    ++calls;
  });
  io.run();  // returns once the probe's socket and timer are done
  EXPECT_EQ(calls, 1);
  return got.value_or(ProbeResult{});
}

ProbeConfig Http(int port, const std::string& path = "/ready") {
  ProbeConfig cfg;
  cfg.http = true;
  cfg.path = path;
  cfg.port = port;
  cfg.timeout = absl::Seconds(1);
  return cfg;
}

TEST(ProberTest, HttpProbeSucceedsOn2xxAnd3xx) {
  for (const char* status : {"200 OK", "204 No Content", "302 Found"}) {
    Server server(absl::StrCat("HTTP/1.1 ", status, "\r\n\r\n"));
    ProbeResult r = Probe(Http(server.port()));
    EXPECT_TRUE(r.ok) << status << ": " << r.message;
    EXPECT_TRUE(r.connected);
    EXPECT_TRUE(r.answered);
    EXPECT_EQ(server.request().rfind("GET /ready HTTP/1.1\r\n", 0), 0u)
        << server.request();
  }
}

TEST(ProberTest, HttpProbeFailsOnOtherStatusesAsAnAnswer) {
  Server server("HTTP/1.1 503 Service Unavailable\r\n\r\n");
  ProbeResult r = Probe(Http(server.port()));
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.connected);
  EXPECT_TRUE(r.answered);
  EXPECT_EQ(r.message, "HTTP probe failed with statuscode: 503");
}

TEST(ProberTest, HttpProbeFailsOnGarbage) {
  Server server("hello there\r\n");
  ProbeResult r = Probe(Http(server.port()));
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.connected);
  EXPECT_FALSE(r.answered);
  EXPECT_EQ(r.message, "malformed HTTP status line");
}

TEST(ProberTest, RefusedConnectionIsNotConnected) {
  int port;
  {
    Server server("HTTP/1.1 200 OK\r\n\r\n");
    port = server.port();
  }  // closed: nothing listens there now
  ProbeConfig cfg = Http(port);
  cfg.http = false;
  ProbeResult r = Probe(cfg);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.connected);
  EXPECT_EQ(r.message.rfind(absl::StrCat("dial tcp 127.0.0.1:", port, ": "), 0),
            0u)
      << r.message;
}

TEST(ProberTest, TcpProbeSucceedsOnConnect) {
  Server server("x");
  ProbeConfig cfg = Http(server.port());
  cfg.http = false;
  ProbeResult r = Probe(cfg);
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_TRUE(r.connected);
  EXPECT_FALSE(r.answered);
}

TEST(ProberTest, SilentServerTimesOut) {
  Server server("");  // accepts, never answers
  ProbeResult r = Probe(Http(server.port()));
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.connected);
  EXPECT_EQ(r.message, "timeout after 1s");
}

// A new TCP socket bound to 127.0.0.1 on a port the kernel picks, and that
// address.
int BoundSocket(sockaddr_in* addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  *addr = sockaddr_in{};
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(*addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(addr), len) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(addr), &len) != 0) {
    ADD_FAILURE() << "socket: " << strerror(errno);
  }
  return fd;
}

// A socket bound to a port and connected to that same port (what a probe's
// connect can become when the instance's port is in the ephemeral range and
// nothing listens on it yet) is connected to itself; one connected to a
// listener is not. Seen in CI: a 60 s starter "ready" after 1.4 s.
TEST(ProberTest, ASocketConnectedToItselfIsTold) {
  sockaddr_in a;
  int self = BoundSocket(&a);
  // TCP simultaneous open with itself: the connect succeeds.
  ASSERT_EQ(connect(self, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0)
      << strerror(errno);
  EXPECT_TRUE(IsSelfConnected(self));
  close(self);

  sockaddr_in l;
  int listener = BoundSocket(&l);
  ASSERT_EQ(listen(listener, 1), 0);
  int client = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(client, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&l), sizeof(l)), 0);
  EXPECT_FALSE(IsSelfConnected(client));
  EXPECT_FALSE(IsSelfConnected(listener));  // not connected at all
  close(client);
  close(listener);
}

}  // namespace
}  // namespace tidal
