// The dashboard's HTTP side behind the admin server (docs/dashboard.md): the
// page's files built into the binary, the hand-over of /ui/ connections, and
// the JSON API's answers when no API runs. The API's own checks (tokens,
// roles) are tested through a real tidald in tests/e2e/dashboard_e2e_test.cc.

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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
  for (const char* name : {"index.html", "app.js", "style.css"}) {
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

TEST(DashboardTargetTest, OnlyUiPaths) {
  EXPECT_TRUE(dashboard::IsDashboardTarget("/ui"));
  EXPECT_TRUE(dashboard::IsDashboardTarget("/ui/"));
  EXPECT_TRUE(dashboard::IsDashboardTarget("/ui/api/apps?all=1"));
  EXPECT_FALSE(dashboard::IsDashboardTarget("/uix"));
  EXPECT_FALSE(dashboard::IsDashboardTarget("/metrics"));
}

}  // namespace
}  // namespace tidal
