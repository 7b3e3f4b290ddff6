// The libcurl webhook sender against a real HTTP server on loopback.

#include "deployer/webhooks.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"

namespace tidal::deployer {
namespace {

// A one-thread HTTP/1.1 server that answers each request with `status`
// (or never, when `hang`), recording requests.
class LoopbackServer {
 public:
  explicit LoopbackServer(int status, bool hang = false)
      : status_(status), hang_(hang) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~LoopbackServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/hook";
  }
  std::vector<std::string> requests() {
    absl::MutexLock l(&mu_);
    return requests_;
  }

 private:
  void Loop() {
    while (!stop_) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      size_t body_at = std::string::npos, want = 0;
      while (true) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        req.append(buf, n);
        if (body_at == std::string::npos) {
          body_at = req.find("\r\n\r\n");
          if (body_at != std::string::npos) {
            body_at += 4;
            auto p = req.find("Content-Length: ");
            if (p != std::string::npos) {
              auto e = req.find("\r\n", p);
              absl::SimpleAtoi(req.substr(p + 16, e - p - 16), &want);
            }
          }
        }
        if (body_at != std::string::npos && req.size() >= body_at + want) break;
      }
      {
        absl::MutexLock l(&mu_);
        requests_.push_back(req);
      }
      if (!hang_) {
        std::string resp = "HTTP/1.1 " + std::to_string(status_) +
                           " X\r\nContent-Length: 0\r\nConnection: "
                           "close\r\n\r\n";
        (void)!write(c, resp.data(), resp.size());
      } else {
        while (!stop_ && read(c, buf, sizeof(buf)) > 0) {
        }
      }
      close(c);
    }
  }
  int status_;
  bool hang_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::string> requests_ ABSL_GUARDED_BY(mu_);
};

TEST(WebhooksTest, HmacMatchesAKnownVector) {
  // RFC 4231 test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(WebhooksTest, SignedJsonPostAnd2xxPasses) {
  LoopbackServer server(204);
  CurlWebhookSender sender;
  tidal::v1::Webhook hook;
  hook.set_name("ci");
  hook.set_type("pre-rollout");
  hook.set_url(server.url());
  hook.set_secret("s3cret");
  WebhookEvent ev;
  ev.type = "pre-rollout";
  ev.ns = "default";
  ev.app = "web";
  ev.from_revision = 1;
  ev.to_revision = 2;
  std::string body = WebhookPayload(ev);
  ASSERT_TRUE(sender.Call(hook, body).ok());
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(reqs[0], "POST /hook HTTP/1.1"));
  EXPECT_TRUE(absl::StrContains(reqs[0], "X-Tidal-Event: pre-rollout"));
  EXPECT_TRUE(absl::StrContains(
      reqs[0], "X-Tidal-Signature: sha256=" + HmacSha256Hex("s3cret", body)));
  EXPECT_TRUE(absl::StrContains(reqs[0], "\"toRevision\":2"));
  EXPECT_TRUE(absl::EndsWith(reqs[0], body));
}

TEST(WebhooksTest, Non2xxFailsAfterRetries) {
  LoopbackServer server(500);
  CurlWebhookSender sender;
  tidal::v1::Webhook hook;
  hook.set_name("ci");
  hook.set_type("confirm-promotion");
  hook.set_url(server.url());
  hook.set_retries(2);
  absl::Status s = sender.Call(hook, "{}");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "answered 500")) << s;
  EXPECT_EQ(server.requests().size(), 3u);
}

TEST(WebhooksTest, TimeoutFails) {
  LoopbackServer server(200, /*hang=*/true);
  CurlWebhookSender sender;
  tidal::v1::Webhook hook;
  hook.set_name("slow");
  hook.set_type("pre-rollout");
  hook.set_url(server.url());
  hook.set_timeout_ms(300);
  absl::Time start = absl::Now();
  absl::Status s = sender.Call(hook, "{}");
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(WebhooksTest, NotificationsAreSentInTheBackground) {
  LoopbackServer server(200);
  {
    CurlWebhookSender sender;
    tidal::v1::Webhook hook;
    hook.set_name("chat");
    hook.set_type("rollback");
    hook.set_url(server.url());
    sender.Notify(hook, "{\"type\":\"rollback\"}");
  }  // the destructor sends what is queued
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_TRUE(
      absl::StrContains(server.requests()[0], "X-Tidal-Event: rollback"));
}

}  // namespace
}  // namespace tidal::deployer
