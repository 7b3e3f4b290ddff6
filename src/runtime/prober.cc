#include "runtime/prober.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace tidal {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(d));
}

// One probe attempt: TCP connect, and for HTTP a GET whose status line must
// be 2xx/3xx. Runs on the supervisor's io_context; a timer bounds it.
class ProbeOp : public std::enable_shared_from_this<ProbeOp> {
 public:
  using Callback = std::function<void(const ProbeResult&)>;
  ProbeOp(net::io_context& io, const ProbeConfig& cfg, const std::string& host,
          Callback cb)
      : socket_(io), timer_(io), cfg_(cfg), host_(host), cb_(std::move(cb)) {}

  void Run() {
    boost::system::error_code ec;
    auto addr = net::ip::make_address(host_, ec);
    if (ec) return Finish(false, false, "bad probe host " + host_);
    timer_.expires_after(ToChrono(cfg_.timeout));
    timer_.async_wait(
        [self = shared_from_this()](boost::system::error_code ec) {
          if (!ec)
            self->Finish(false, self->connected_,
                         "timeout after " + ShortDuration(self->cfg_.timeout));
        });
    socket_.async_connect(
        tcp::endpoint(addr, static_cast<uint16_t>(cfg_.port)),
        [self = shared_from_this()](boost::system::error_code ec) {
          self->OnConnect(ec);
        });
  }

 private:
  void OnConnect(boost::system::error_code ec) {
    if (done_) return;
    if (ec) {
      return Finish(
          false, false,
          absl::StrCat("dial tcp ", host_, ":", cfg_.port, ": ", ec.message()));
    }
    if (IsSelfConnected(socket_.native_handle())) {
      return Finish(false, false,
                    absl::StrCat("dial tcp ", host_, ":", cfg_.port,
                                 ": connected to itself (nothing listens)"));
    }
    connected_ = true;
    if (!cfg_.http) return Finish(true, true, "");
    request_ = absl::StrCat(
        "GET ", cfg_.path, " HTTP/1.1\r\nHost: ", host_, ":", cfg_.port,
        "\r\nUser-Agent: tidal-probe\r\nConnection: close\r\n\r\n");
    net::async_write(
        socket_, net::buffer(request_),
        [self = shared_from_this()](boost::system::error_code ec, size_t) {
          if (self->done_) return;
          if (ec) return self->Finish(false, true, "write: " + ec.message());
          self->ReadMore();
        });
  }

  void ReadMore() {
    socket_.async_read_some(
        net::buffer(buf_.data() + got_, buf_.size() - got_),
        [self = shared_from_this()](boost::system::error_code ec, size_t n) {
          if (self->done_) return;
          self->got_ += n;
          std::string_view data(self->buf_.data(), self->got_);
          size_t eol = data.find("\r\n");
          if (eol == std::string_view::npos) {
            if (ec || self->got_ == self->buf_.size()) {
              return self->Finish(false, true,
                                  "no HTTP status line in response");
            }
            return self->ReadMore();
          }
          // "HTTP/1.1 200 OK"
          std::string_view line = data.substr(0, eol);
          size_t sp = line.find(' ');
          int code = 0;
          if (sp != std::string_view::npos && line.size() >= sp + 4) {
            code = atoi(std::string(line.substr(sp + 1, 3)).c_str());
          }
          if (code >= 200 && code < 400) return self->Finish(true, true, "");
          self->Finish(
              false, true,
              code == 0
                  ? "malformed HTTP status line"
                  : absl::StrCat("HTTP probe failed with statuscode: ", code),
              code != 0);
        });
  }

  void Finish(bool ok, bool connected, const std::string& message,
              bool answered = false) {
    if (done_) return;
    done_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
    cb_(ProbeResult{ok, connected, message, answered || (ok && cfg_.http)});
  }

  tcp::socket socket_;
  net::steady_timer timer_;
  ProbeConfig cfg_;
  std::string host_;
  Callback cb_;
  std::string request_;
  std::array<char, 512> buf_{};
  size_t got_ = 0;
  bool done_ = false;
  bool connected_ = false;
};

}  // namespace

std::string ShortDuration(absl::Duration d) {
  // "10s", "2m40s", "100ms": like kubelet's messages.
  int64_t ms = absl::ToInt64Milliseconds(d);
  if (ms % 1000 != 0) return absl::StrCat(ms, "ms");
  int64_t s = ms / 1000;
  if (s < 60) return absl::StrCat(s, "s");
  if (s % 60 == 0) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s / 60, "m", s % 60, "s");
}

ProbeConfig ResolveProbe(const tidal::v1::Probe& p, bool liveness,
                         int instance_port) {
  ProbeConfig c;
  if (p.has_http_get()) {
    c.http = true;
    c.path = p.http_get().path().empty() ? "/" : p.http_get().path();
    if (c.path[0] != '/') c.path = "/" + c.path;
    c.port = p.http_get().port();
  } else if (p.has_tcp_socket()) {
    c.port = p.tcp_socket().port();
  }
  if (c.port <= 0) c.port = instance_port;
  c.initial_delay = absl::Seconds(std::max(0, p.initial_delay_seconds()));
  int period =
      p.has_period_seconds() ? p.period_seconds() : (liveness ? 10 : 1);
  c.period = absl::Seconds(std::max(1, period));
  c.timeout = absl::Seconds(
      std::max(1, p.has_timeout_seconds() ? p.timeout_seconds() : 1));
  c.failure_threshold =
      std::max(1, p.has_failure_threshold() ? p.failure_threshold() : 3);
  c.success_threshold =
      std::max(1, p.has_success_threshold() ? p.success_threshold() : 1);
  return c;
}

bool IsSelfConnected(int fd) {
  sockaddr_storage local{}, peer{};
  socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
    return false;
  }
  return local_len == peer_len && std::memcmp(&local, &peer, local_len) == 0;
}

void RunProbe(net::io_context& io, const ProbeConfig& cfg,
              const std::string& host,
              std::function<void(const ProbeResult&)> done) {
  std::make_shared<ProbeOp>(io, cfg, host, std::move(done))->Run();
}

}  // namespace tidal
