// Fuzz target: the gateway's request handling. One Gateway (one I/O thread)
// routes app "a" to a TestUpstream; each input is written as-is to a fresh
// client connection, the write side is shut, and the response is read to
// EOF. Besides "no crash, no sanitizer report": the gateway answers or
// closes within a bound (no hang on any input), and whatever it answers
// starts with an HTTP/1.x status line, or, after HTTP/2's connection preface,
// with HTTP/2's SETTINGS frame. Slow by nature (real sockets): a few
// thousand inputs a second.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/fd_io.h"
#include "fuzz_check.h"
#include "gateway/gateway.h"
#include "test_upstream.h"

namespace {

struct Fixture {
  Fixture() : upstream("fuzz-upstream") {
    tidal::gateway::GatewayOptions o;
    o.port = 0;
    o.threads = 1;
    o.client_idle_timeout = absl::Seconds(1);
    o.response_header_timeout = absl::Seconds(1);
    o.queue_timeout = absl::Milliseconds(200);
    o.max_body_bytes = 1 << 20;
    gw = std::make_unique<tidal::gateway::Gateway>(o);
    tidal::fuzz::Check(gw->Start().ok(), "gateway start");
    tidal::gateway::Route r;
    r.ns = "default";
    r.app = "a";
    r.revisions.push_back(
        {1, 100, {{"i1", "127.0.0.1", upstream.port(), false}}});
    gw->SetRoute(r);
  }
  tidal::gateway::testing::TestUpstream upstream;
  std::unique_ptr<tidal::gateway::Gateway> gw;
};

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tidal::fuzz::Check;
  if (size > 64 * 1024) return 0;
  Fixture& f = F();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  Check(fd >= 0, "socket");
  timeval tv{5, 0};  // the gateway's own timeouts are 1 s
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(f.gw->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (rc != 0 && errno == EINTR) {
    // libFuzzer's SIGALRM timer interrupted it: the connection goes on
    // being made; wait until it is (connect(2), EINTR).
    int err = 0;
    socklen_t len = sizeof(err);
    const bool ready =
        tidal::common::WaitReady(fd, POLLOUT, absl::Now() + absl::Seconds(5));
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    rc = ready && err == 0 ? 0 : -1;
    if (err != 0) errno = err;
  }
  Check(rc == 0,
        std::string("connect to the gateway: ") + std::strerror(errno));
  size_t off = 0;
  while (off < size) {
    ssize_t n = ::send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;  // libFuzzer's SIGALRM timer
    if (n <= 0) break;  // the gateway may answer and close early (400, 413)
    off += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string response;
  char buf[16384];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    // libFuzzer's -timeout runs a SIGALRM timer; a socket with SO_RCVTIMEO
    // is not restarted after a handler (signal(7)), so EINTR is no answer.
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) break;
    if (n < 0) {
      Check(errno == ECONNRESET,
            std::string("no answer and no close: ") + std::strerror(errno));
      break;
    }
    if (response.size() < 1 << 20) response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (response.empty()) return 0;
  // A connection that opens with the first line of HTTP/2's preface (h2c
  // with prior knowledge; the gateway's IsH2Preface) is answered in HTTP/2,
  // whatever follows: the server's preface, a SETTINGS frame (type 4) on
  // stream 0, comes first.
  static constexpr char kPreface[] = "PRI * HTTP/2.0\r\n";
  const std::string input(reinterpret_cast<const char*>(data), size);
  if (input.rfind(kPreface, 0) == 0) {
    Check(response.size() >= 9 && response[3] == 4 &&
              response.compare(5, 4, std::string(4, '\0')) == 0,
          "the answer to HTTP/2's preface does not start with SETTINGS");
    return 0;
  }
  Check(response.rfind("HTTP/1.", 0) == 0,
        "the answer does not start with a status line: " +
            response.substr(0, 64));
  return 0;
}
