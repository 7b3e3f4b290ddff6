// The dashboard's HTTP side behind the admin server (docs/dashboard.md): the
// page's files built into the binary, the hand-over of /ui/ connections, and
// the JSON API's answers when no API runs. The API's own checks (tokens,
// roles) are tested through a real tidald in tests/e2e/dashboard_e2e_test.cc.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/admin_server.h"
#include "dashboard/assets.h"
#include "dashboard/dashboard.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"
#include "gtest/gtest.h"

namespace tidal {
namespace {

class DashboardServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dashboard_ = std::make_unique<dashboard::Dashboard>(
        dashboard::Dashboard::Options{});  // no API
    admin_.set_handoff(
        [](const std::string& t) { return dashboard::IsDashboardTarget(t); },
        [this](int fd, std::string consumed) {
          dashboard_->Adopt(fd, std::move(consumed));
        });
    ASSERT_TRUE(admin_.Start("127.0.0.1:0").ok());
  }
  void TearDown() override {
    admin_.Stop();
    dashboard_->Stop();
  }
  e2e::HttpResponse Get(const std::string& path) {
    return e2e::HttpGet(admin_.port(), "127.0.0.1", path);
  }
  // curl's status line and headers, with extra request headers.
  std::string Head(const std::string& path,
                   const std::vector<std::string>& headers = {}) {
    std::vector<std::string> argv = {"/usr/bin/curl", "-s", "-D", "-", "-o",
                                     "/dev/null"};
    for (const auto& h : headers) argv.insert(argv.end(), {"-H", h});
    argv.push_back(absl::StrCat("http://127.0.0.1:", admin_.port(), path));
    return e2e::Run(argv).out;
  }

  AdminServer admin_{[] { return std::string("up 1\n"); },
                     [] { return absl::OkStatus(); }};
  std::unique_ptr<dashboard::Dashboard> dashboard_;
};

TEST_F(DashboardServerTest, ServesThePageBuiltIntoTheBinary) {
  for (const char* name : {"index.html", "app.js", "boot.js", "style.css"}) {
    const dashboard::DashboardAsset* a = dashboard::FindDashboardAsset(name);
    ASSERT_NE(a, nullptr) << name;
    auto r = Get(absl::StrCat("/ui/", name));
    EXPECT_EQ(r.status, 200) << name;
    EXPECT_EQ(r.body,
              std::string(reinterpret_cast<const char*>(a->data), a->size));
    EXPECT_EQ(r.headers["content-type"], a->content_type);
    EXPECT_EQ(r.headers["x-content-type-options"], "nosniff");
    EXPECT_TRUE(absl::StartsWith(r.headers["content-security-policy"],
                                 "default-src 'self'"));
  }
  auto index = Get("/ui/");
  EXPECT_EQ(index.status, 200);
  EXPECT_TRUE(absl::StrContains(index.body, "<script src=\"app.js\" defer>"));
  // Nothing is loaded from elsewhere.
  EXPECT_FALSE(absl::StrContains(index.body, "http")) << index.body;
  // Views are addressed after '#': other paths without a dot are the page.
  EXPECT_EQ(Get("/ui/apps").body, index.body);
  EXPECT_EQ(Get("/ui/nothing.png").status, 404);
  auto moved = Get("/ui");
  EXPECT_EQ(moved.status, 301);
  EXPECT_EQ(moved.headers["location"], "/ui/");
  // The admin server's own paths stay its own.
  EXPECT_EQ(Get("/metrics").body, "up 1\n");
}

TEST_F(DashboardServerTest, UnchangedFilesAreNotSentAgain) {
  std::string first = Head("/ui/app.js");
  auto at = first.find("ETag: ");
  ASSERT_NE(at, std::string::npos) << first;
  std::string etag = first.substr(at + 6, first.find('\r', at) - at - 6);
  EXPECT_TRUE(absl::StartsWith(Head("/ui/app.js", {"If-None-Match: " + etag}),
                               "HTTP/1.1 304"));
  EXPECT_TRUE(absl::StartsWith(Head("/ui/app.js", {"If-None-Match: \"other\""}),
                               "HTTP/1.1 200"));
}

TEST_F(DashboardServerTest, TheJsonApiSaysWhenNoApiRuns) {
  auto r = Get("/ui/api/apps?all=1");
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(absl::StrContains(r.body, "the API is not running")) << r.body;
  EXPECT_EQ(r.headers["cache-control"], "no-store");
  auto unknown = Get("/ui/api/nothing");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_TRUE(
      absl::StrContains(unknown.body, "no such call: GET /ui/api/nothing"))
      << unknown.body;
}

TEST_F(DashboardServerTest, OneConnectionCarriesSeveralRequests) {
  // The admin server hands the connection over with its first request; the
  // dashboard answers that one and the next ones on the same connection.
  e2e::HttpClient client(admin_.port(), "127.0.0.1");
  EXPECT_EQ(client.Get("/ui/").status, 200);
  EXPECT_EQ(client.Get("/ui/style.css").status, 200);
  EXPECT_EQ(client.Get("/ui/app.js").status, 200);
}

// A raw connection: sends `bytes`, then reads until the server closes it or
// `deadline` passes (closed says which).
struct RawExchange {
  std::string got;
  bool closed = false;
};
RawExchange Exchange(int port, const std::string& bytes,
                     absl::Duration deadline) {
  RawExchange r;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return r;
  }
  if (!bytes.empty()) (void)::send(fd, bytes.data(), bytes.size(), 0);
  const absl::Time end = absl::Now() + deadline;
  char buf[65536];
  while (absl::Now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.closed = true;
      break;
    }
    r.got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return r;
}

// On its own listener, with short timeouts.
class DashboardListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dashboard::Dashboard::Options o;  // no API
    o.request_timeout_ms = 300;
    o.write_timeout_ms = 300;
    o.max_connections = 2;
    dashboard_ = std::make_unique<dashboard::Dashboard>(o);
    ASSERT_TRUE(dashboard_->Listen("127.0.0.1:0").ok());
  }
  void TearDown() override { dashboard_->Stop(); }
  int port() const { return dashboard_->port(); }
  std::unique_ptr<dashboard::Dashboard> dashboard_;
};

TEST_F(DashboardListenerTest, HostileRequestsGetAnAnswerAndNothingElse) {
  // Bytes gRPC metadata cannot carry, in the token: refused before the API.
  for (const std::string token : {"Bearer a\tb", "Bearer \xff\xfe"}) {
    auto r = Exchange(port(),
                      "GET /ui/api/whoami HTTP/1.1\r\nHost: x\r\n"
                      "Authorization: " +
                          token + "\r\nConnection: close\r\n\r\n",
                      absl::Seconds(10));
    EXPECT_TRUE(absl::StartsWith(r.got, "HTTP/1.1 401")) << r.got;
  }
  // Paths outside /ui/ (short ones included) on the dashboard's own port.
  for (const char* path : {"/", "/u", "/x/y", "/uix"}) {
    auto r = Exchange(port(),
                      absl::StrCat("GET ", path,
                                   " HTTP/1.1\r\nHost: x\r\nConnection: "
                                   "close\r\n\r\n"),
                      absl::Seconds(10));
    EXPECT_TRUE(absl::StartsWith(r.got, "HTTP/1.1 404")) << path << r.got;
  }
  // Still serving.
  EXPECT_EQ(e2e::HttpGet(port(), "127.0.0.1", "/ui/").status, 200);
}

TEST_F(DashboardListenerTest, HeadSendsNoBody) {
  // A HEAD then a GET on one connection: the second answer follows the first
  // one's header directly.
  auto r = Exchange(port(),
                    "HEAD /ui/app.js HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /ui/nothing.png HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n",
                    absl::Seconds(10));
  ASSERT_TRUE(absl::StartsWith(r.got, "HTTP/1.1 200")) << r.got;
  const size_t end = r.got.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos);
  EXPECT_TRUE(absl::StartsWith(r.got.substr(end + 4), "HTTP/1.1 404"))
      << r.got.substr(0, 600);
}

TEST_F(DashboardListenerTest, SilentAndSlowClientsAreClosedAtTheTimeout) {
  // Both connections (the limit) go silent or trickle half a request ...
  auto silent = std::async(std::launch::async, [&] {
    return Exchange(port(), "", absl::Seconds(20));
  });
  auto slow = std::async(std::launch::async, [&] {
    return Exchange(port(), "GET /ui/ HTTP/1.1\r\nHo", absl::Seconds(20));
  });
  // ... and are closed after the request timeout, without an answer.
  RawExchange a = silent.get(), b = slow.get();
  EXPECT_TRUE(a.closed);
  EXPECT_TRUE(b.closed);
  EXPECT_EQ(a.got, "");
  EXPECT_EQ(b.got, "");
  // Then a new connection is served.
  EXPECT_EQ(e2e::HttpGet(port(), "127.0.0.1", "/ui/").status, 200);
}

TEST(DashboardTargetTest, OnlyUiPaths) {
  EXPECT_TRUE(dashboard::IsDashboardTarget("/ui"));
  EXPECT_TRUE(dashboard::IsDashboardTarget("/ui/"));
  EXPECT_TRUE(dashboard::IsDashboardTarget("/ui/api/apps?all=1"));
  EXPECT_FALSE(dashboard::IsDashboardTarget("/uix"));
  EXPECT_FALSE(dashboard::IsDashboardTarget("/metrics"));
}

}  // namespace
}  // namespace tidal
