// ApiHealth's probe of a TLS listener (--tls-cert): a ClientHello over a fresh
// connection must be answered within the deadline. Its success against
// tidald's real TLS and mutual TLS listeners is in tls_e2e_test (/readyz);
// here, the failures: a listener whose connections wait in the backlog
// unanswered (gRPC's stuck listener), a closed port, and a peer that hangs up.

#include "daemon/api_health.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tidal {
namespace {

// A loopback listening socket; its port.
int Listen(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

ApiHealth::Options TlsOptions(int port) {
  ApiHealth::Options o;
  o.target = absl::StrCat("127.0.0.1:", port);
  o.tls = true;
  o.deadline = absl::Milliseconds(300);
  return o;
}

TEST(ApiHealthTest, ATlsListenerThatDoesNotAnswerIsUnhealthyWithinTheDeadline) {
  int port = 0;
  int fd = Listen(&port);  // never accepts: connections wait in the backlog
  ApiHealth health(TlsOptions(port), [] { return absl::OkStatus(); });
  absl::Time start = absl::Now();
  absl::Status st = health.Probe();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "did not answer a TLS handshake"))
      << st;
  close(fd);
}

TEST(ApiHealthTest, AClosedPortAndAPeerThatHangsUpAreUnhealthy) {
  int port = 0;
  int fd = Listen(&port);
  close(fd);  // nothing listens there now
  ApiHealth closed(TlsOptions(port), [] { return absl::OkStatus(); });
  EXPECT_FALSE(closed.Probe().ok());

  fd = Listen(&port);
  std::thread hangup([fd] {
    int c = accept(fd, nullptr, nullptr);
    if (c >= 0) close(c);
  });
  ApiHealth hung(TlsOptions(port), [] { return absl::OkStatus(); });
  absl::Status st = hung.Probe();
  hangup.join();
  EXPECT_FALSE(st.ok());
  close(fd);
}

TEST(ApiHealthTest, AnyAnswerToTheClientHelloIsHealthy) {
  int port = 0;
  int fd = Listen(&port);
  // A TLS server's first bytes (here: any bytes) mean the listener works.
  std::thread answer([fd] {
    int c = accept(fd, nullptr, nullptr);
    char buf[512];
    (void)!read(c, buf, sizeof(buf));
    (void)!write(c, "\x16\x03\x03", 3);
    close(c);
  });
  ApiHealth health(TlsOptions(port), [] { return absl::OkStatus(); });
  absl::Status st = health.Probe();
  answer.join();
  EXPECT_TRUE(st.ok()) << st;
  close(fd);
}

}  // namespace
}  // namespace tidal
