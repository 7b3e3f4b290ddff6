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
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "api/addresses.h"

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
  int port() const { return port_; }
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
              if (!absl::SimpleAtoi(req.substr(p + 16, e - p - 16), &want)) {
                want = 0;
              }
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

// The test servers listen on 127.0.0.1, which tidald refuses unless
// --allow-private-webhooks.
const WebhookSenderOptions kLoopbackAllowed{/*allow_private=*/true};

TEST(WebhooksTest, HmacMatchesAKnownVector) {
  // RFC 4231 test case 2.
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(WebhooksTest, SignedJsonPostAnd2xxPasses) {
  LoopbackServer server(204);
  CurlWebhookSender sender(kLoopbackAllowed);
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
  CurlWebhookSender sender(kLoopbackAllowed);
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
  CurlWebhookSender sender(kLoopbackAllowed);
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
    CurlWebhookSender sender(kLoopbackAllowed);
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

TEST(WebhookTargetsTest, ClassifiesAddressesAsATable) {
  struct Row {
    const char* host;
    AddressClass want;
  };
  const Row rows[] = {
      {"example.com", AddressClass::kNotAnAddress},
      {"", AddressClass::kNotAnAddress},
      {"10.0.0.1.nip.io", AddressClass::kNotAnAddress},
      {"8.8.8.8", AddressClass::kPublic},
      {"1.1.1.1", AddressClass::kPublic},
      {"127.0.0.1", AddressClass::kLoopback},
      {"127.255.255.254", AddressClass::kLoopback},
      // Every IPv4 form the C library (and so libcurl) takes.
      {"127.1", AddressClass::kLoopback},
      {"2130706433", AddressClass::kLoopback},
      {"0x7f000001", AddressClass::kLoopback},
      {"0177.0.0.1", AddressClass::kLoopback},
      {"0.0.0.0", AddressClass::kUnspecified},
      {"0", AddressClass::kUnspecified},
      {"10.1.2.3", AddressClass::kPrivate},
      {"172.16.0.1", AddressClass::kPrivate},
      {"172.31.255.255", AddressClass::kPrivate},
      {"172.32.0.1", AddressClass::kPublic},
      {"192.168.1.1", AddressClass::kPrivate},
      {"100.64.0.1", AddressClass::kPrivate},
      {"169.254.169.254", AddressClass::kLinkLocal},
      {"224.0.0.1", AddressClass::kMulticast},
      {"239.255.255.250", AddressClass::kMulticast},
      {"255.255.255.255", AddressClass::kReserved},
      {"240.0.0.1", AddressClass::kReserved},
      {"::", AddressClass::kUnspecified},
      {"::1", AddressClass::kLoopback},
      {"[::1]", AddressClass::kLoopback},
      {"fe80::1", AddressClass::kLinkLocal},
      {"fe80::1%eth0", AddressClass::kLinkLocal},
      {"fc00::1", AddressClass::kUniqueLocal},
      {"fd12:3456::1", AddressClass::kUniqueLocal},
      {"fec0::1", AddressClass::kPrivate},
      {"ff02::1", AddressClass::kMulticast},
      {"2606:4700:4700::1111", AddressClass::kPublic},
      {"2001:db8::1", AddressClass::kReserved},
      // IPv4 inside IPv6: mapped, compatible, NAT64 and 6to4.
      {"::ffff:127.0.0.1", AddressClass::kLoopback},
      {"::ffff:7f00:1", AddressClass::kLoopback},
      {"::ffff:169.254.169.254", AddressClass::kLinkLocal},
      {"::ffff:8.8.8.8", AddressClass::kPublic},
      {"::127.0.0.1", AddressClass::kLoopback},
      {"64:ff9b::a9fe:a9fe", AddressClass::kLinkLocal},
      {"2002:0a00:0001::1", AddressClass::kPrivate},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(ClassifyLiteral(row.host), row.want) << row.host;
  }
  EXPECT_EQ(UrlHost("http://127.0.0.1:8080/x"), "127.0.0.1");
  EXPECT_EQ(UrlHost("https://user:pw@evil.example@10.0.0.1/"), "10.0.0.1");
  EXPECT_EQ(UrlHost("http://[::1]:80/"), "::1");
  EXPECT_EQ(UrlHost("http://example.com?q=@127.0.0.1"), "example.com");
  EXPECT_EQ(UrlHost("http://example.com#@127.0.0.1"), "example.com");
}

TEST(WebhookTargetsTest, LoopbackIsRefusedAndNothingIsSent) {
  LoopbackServer server(204);
  tidal::v1::Webhook hook;
  hook.set_name("admin");
  hook.set_type("pre-rollout");
  hook.set_retries(3);
  {
    CurlWebhookSender sender;  // private targets refused (the default)
    hook.set_url(server.url());
    absl::Status s = sender.Call(hook, "{}");
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_TRUE(absl::StrContains(
        s.message(),
        "webhook admin (" + server.url() +
            ") refused: 127.0.0.1 is a loopback address; tidald sends "
            "webhooks only to public addresses unless started with "
            "--allow-private-webhooks"))
        << s;
    // A name is checked on the address it resolves to (the one curl is
    // about to connect to), so it cannot be used to get around the rule.
    hook.set_url(absl::StrCat("http://localhost:", server.port(), "/hook"));
    s = sender.Call(hook, "{}");
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "is a loopback address")) << s;
    // Notifications are refused the same way (the destructor sends what is
    // queued before it returns).
    sender.Notify(hook, "{}");
  }
  EXPECT_TRUE(server.requests().empty());
  // The server did answer all along: allowed, the same hook gets through,
  // and it is the first request the server saw.
  CurlWebhookSender allowed(kLoopbackAllowed);
  hook.set_url(server.url());
  ASSERT_TRUE(allowed.Call(hook, "{\"probe\":1}").ok());
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(absl::EndsWith(reqs[0], "{\"probe\":1}"));
}

TEST(WebhookTargetsTest, LoopbackIsSentWithAllowPrivate) {
  LoopbackServer server(200);
  CurlWebhookSender sender(kLoopbackAllowed);
  tidal::v1::Webhook hook;
  hook.set_name("local");
  hook.set_type("confirm-promotion");
  hook.set_url(server.url());
  ASSERT_TRUE(sender.Call(hook, "{}").ok());
  EXPECT_EQ(server.requests().size(), 1u);
}

}  // namespace
}  // namespace tidal::deployer
