// The gateway's protocols beyond request/response (docs/gateway.md,
// "Protocols") with a real tidald, real instances of the sample app and real
// clients: a WebSocket echo (1,000 messages, then a release and a scale-down
// while connections are open) and server-sent events flushed as written.

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

constexpr int kGraceSeconds = 3;

std::string AppYaml(const std::string& version, int replicas) {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: chat}
spec:
  replicas: )",
                      replicas, R"(
  template:
    command: [")",
                      BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", ")",
                      version, R"("]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
    terminationGracePeriodSeconds: )",
                      kGraceSeconds, R"(
  rollout:
    maxSurge: "1"
    maxUnavailable: "0"
)");
}

// A WebSocket client through the gateway (Host: the app's), blocking.
class WsClient {
 public:
  WsClient(int port, const std::string& host) : ws_(ioc_) {
    beast::get_lowest_layer(ws_).connect(tcp::endpoint(
        net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
    websocket::response_type res;
    ws_.handshake(res, host, "/ws", ec_);
    beast::get_lowest_layer(ws_).expires_never();
    if (!ec_) version_ = std::string(res["X-Version"]);
  }
  bool ok() const { return !ec_; }
  const beast::error_code& error() const { return ec_; }
  const std::string& version() const { return version_; }

  // Sends `text` and reads one message: true if it came back the same.
  bool Echo(const std::string& text) {
    ws_.text(true);
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
    ws_.write(net::buffer(text), ec_);
    if (ec_) return false;
    beast::flat_buffer buf;
    ws_.read(buf, ec_);
    beast::get_lowest_layer(ws_).expires_never();
    if (ec_) return false;
    return beast::buffers_to_string(buf.data()) == text;
  }
  // The close code the peer sent (after a read ended with closed).
  int close_code() { return ws_.reason().code; }
  void Close() {
    beast::error_code ignored;
    ws_.close(websocket::close_code::normal, ignored);
  }

 private:
  net::io_context ioc_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::error_code ec_;
  std::string version_;
};

// Instances of the app that run (Running in `get instances`).
int64_t RunningInstances(Daemon& d) {
  auto r = d.Ctl({"get", "instances"});
  int64_t n = 0;
  for (size_t at = r.out.find("Running"); at != std::string::npos;
       at = r.out.find("Running", at + 1)) {
    ++n;
  }
  return n;
}

class ProtocolsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(
        data_.path(),
        std::vector<std::string>{"--resync=1s", "--stop-instances-on-exit"});
    ASSERT_TRUE(daemon_->Start());
    path_ = dir_.path() + "/chat.yaml";
  }
  void Apply(const std::string& version, int replicas, bool wait = true) {
    WriteFile(path_, AppYaml(version, replicas));
    std::vector<std::string> args = {"apply", "-f", path_};
    if (wait) {
      args.insert(args.end(), {"--wait", "--timeout", "90s"});
    }
    auto r = daemon_->Ctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  TempDir dir_, data_;
  std::unique_ptr<Daemon> daemon_;
  std::string path_;
};

// 1,000 messages echoed; then a release while the connection is open: it
// keeps working through the old instance's drain grace and is then closed
// with 1001 Going Away, and a new connection reaches the new revision.
TEST_F(ProtocolsE2eTest, WebSocketEchoSurvivesUntilTheReleasesGrace) {
  Apply("v1", 1);
  const std::string host = AppHost("chat");
  WsClient c(daemon_->gateway_port(), host);
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c.version(), "v1");
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(c.Echo(absl::StrCat("message ", i)))
        << i << ": " << c.error().message();
  }
  // The open connection is one request in flight: visible in the metrics.
  auto metrics = HttpGet(daemon_->admin_port(), "127.0.0.1", "/metrics");
  EXPECT_TRUE(absl::StrContains(metrics.body, "tidal_gateway_tunnels_open 1"))
      << metrics.body.substr(0, 2000);

  // The release. Until the old instance's grace is over the connection works.
  Apply("v2", 1, /*wait=*/false);
  const absl::Time released = absl::Now();
  int echoed = 0;
  absl::Time closed_at;
  while (absl::Now() - released < absl::Seconds(60)) {
    if (!c.Echo(absl::StrCat("during the release ", echoed))) {
      closed_at = absl::Now();
      break;
    }
    ++echoed;
  }
  ASSERT_NE(closed_at, absl::Time()) << "never closed";
  EXPECT_EQ(c.error(), websocket::error::closed) << c.error().message();
  EXPECT_EQ(c.close_code(), 1001);
  // v2 became ready (a few seconds), then the drain ran its whole grace.
  EXPECT_GE(closed_at - released, absl::Seconds(kGraceSeconds));
  EXPECT_GT(echoed, 10);
  // The gateway closed it at the end of the drain (the instance's own
  // SIGTERM handling would say 1001 too).
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(
        HttpGet(daemon_->admin_port(), "127.0.0.1", "/metrics").body,
        "tidal_gateway_tunnels_going_away_total 1");
  }));

  WsClient after(daemon_->gateway_port(), host);
  ASSERT_TRUE(after.ok()) << after.error().message();
  EXPECT_EQ(after.version(), "v2");
  EXPECT_TRUE(after.Echo("hello v2"));
  after.Close();
}

// A scale-down does not take instances that hold connections: two
// connections on two instances, scaled to one, both keep working past the
// grace; once they close, the app goes down to one instance.
TEST_F(ProtocolsE2eTest, ScaleDownLeavesInstancesThatHoldConnections) {
  Apply("v1", 2);
  const std::string host = AppHost("chat");
  WsClient a(daemon_->gateway_port(), host);
  WsClient b(daemon_->gateway_port(), host);
  ASSERT_TRUE(a.ok() && b.ok()) << a.error().message() << b.error().message();
  ASSERT_TRUE(a.Echo("a") && b.Echo("b"));
  // The gateway sends a new request to the least loaded instance: b's went
  // to the other one.
  ASSERT_EQ(RunningInstances(*daemon_), 2);

  auto r = daemon_->Ctl({"scale", "chat", "--replicas", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const absl::Time scaled = absl::Now();
  while (absl::Now() - scaled < absl::Seconds(kGraceSeconds + 3)) {
    ASSERT_TRUE(a.Echo("still a")) << a.error().message();
    ASSERT_TRUE(b.Echo("still b")) << b.error().message();
  }
  EXPECT_EQ(RunningInstances(*daemon_), 2);

  a.Close();
  b.Close();
  EXPECT_TRUE(Eventually([&] { return RunningInstances(*daemon_) == 1; },
                         absl::Seconds(60)))
      << daemon_->Ctl({"get", "instances"}).out;
}

// Server-sent events pass through as they are written: no buffering in the
// gateway. Each event carries the instant it was written (µs since the
// epoch, the same clock here).
TEST_F(ProtocolsE2eTest, ServerSentEventsArriveAsTheyAreWritten) {
  Apply("v1", 1);
  net::io_context ioc;
  tcp::socket s(ioc);
  s.connect(
      tcp::endpoint(net::ip::make_address("127.0.0.1"),
                    static_cast<unsigned short>(daemon_->gateway_port())));
  const std::string req = absl::StrCat(
      "GET /events?n=20&interval=50ms HTTP/1.1\r\nHost: ", AppHost("chat"),
      "\r\nAccept: text/event-stream\r\n\r\n");
  net::write(s, net::buffer(req));
  std::string got;
  // Per event, in order: when the app wrote it (its data) and when it was
  // read here.
  std::vector<int64_t> written_us, read_us;
  char buf[4096];
  size_t scanned = 0;
  while (written_us.size() < 20) {
    beast::error_code ec;
    size_t n = s.read_some(net::buffer(buf), ec);
    const int64_t now = absl::ToUnixMicros(absl::Now());
    ASSERT_FALSE(ec) << ec.message() << " after " << written_us.size()
                     << " events:\n"
                     << got;
    got.append(buf, n);
    for (size_t at = got.find("data: ", scanned); at != std::string::npos;
         at = got.find("data: ", scanned)) {
      size_t end = got.find('\n', at);
      if (end == std::string::npos) break;
      int64_t written = 0;
      ASSERT_TRUE(absl::SimpleAtoi(got.substr(at + 6, end - at - 6), &written));
      written_us.push_back(written);
      read_us.push_back(now);
      scanned = end;
    }
  }
  EXPECT_TRUE(absl::StrContains(got, "text/event-stream")) << got;
  // Nothing held back: an event is read before the app writes the next one
  // (50 ms later). A response buffered by the gateway would bring them
  // together, none before the next; a reader descheduled under load may
  // miss a few, so most, not all, must be on time. How soon they arrive is
  // printed (docs/gateway.md), not asserted: a timed bound fails on a
  // loaded machine.
  int on_time = 0;
  std::vector<int64_t> delays_us;
  for (size_t i = 0; i < written_us.size(); ++i) {
    delays_us.push_back(read_us[i] - written_us[i]);
    if (i + 1 < written_us.size() && read_us[i] < written_us[i + 1]) ++on_time;
  }
  EXPECT_GE(on_time, 10) << "of 19 events, " << on_time
                         << " were read before the next was written";
  std::sort(delays_us.begin(), delays_us.end());
  std::printf("sse: median %lld us, max %lld us over %zu events\n",
              static_cast<long long>(delays_us[delays_us.size() / 2]),
              static_cast<long long>(delays_us.back()), delays_us.size());
}

// The template's timeouts (Knative's names) bound the app's requests in the
// gateway: the wait for the response header, and a gap in an event stream.
TEST_F(ProtocolsE2eTest, TheTemplatesTimeoutsBoundTheAppsRequests) {
  WriteFile(path_, absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: chat}
spec:
  replicas: 1
  template:
    command: [")",
                                BuildDir(), R"(/examples/tidal-sample-app"]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
    responseStartTimeoutSeconds: 1
    idleTimeoutSeconds: 1
)"));
  auto r = daemon_->Ctl({"apply", "-f", path_, "--wait", "--timeout", "90s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string host = AppHost("chat");
  const int port = daemon_->gateway_port();
  EXPECT_EQ(HttpGet(port, host, "/?latency=10ms").status, 200);
  // A response that starts after 5 s: 504 at the app's 1 s.
  HttpResponse slow = HttpGet(port, host, "/?latency=5s");
  EXPECT_EQ(slow.status, 504) << slow.error;
  EXPECT_LT(slow.latency, absl::Seconds(4));
  // An event stream quiet for 3 s between events: cut after the first.
  HttpResponse quiet = HttpGet(port, host, "/events?n=3&interval=3s");
  EXPECT_LT(quiet.latency, absl::Seconds(5));
  size_t events = 0;
  for (size_t at = quiet.body.find("data: "); at != std::string::npos;
       at = quiet.body.find("data: ", at + 1)) {
    ++events;
  }
  EXPECT_LT(events, 3u) << quiet.status << " " << quiet.error << "\n"
                        << quiet.body;
}

}  // namespace
}  // namespace tidal::e2e
