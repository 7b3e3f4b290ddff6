#include "fakes/statusless_h2_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace tidal::testing {
namespace {

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr uint8_t kHeaders = 1, kSettings = 4, kPing = 6;
constexpr uint8_t kEndStream = 1, kAck = 1, kEndHeaders = 4;

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream,
                  const std::string& payload) {
  const uint32_t len = static_cast<uint32_t>(payload.size());
  std::string f;
  f.push_back(static_cast<char>((len >> 16) & 0xff));
  f.push_back(static_cast<char>((len >> 8) & 0xff));
  f.push_back(static_cast<char>(len & 0xff));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f.push_back(static_cast<char>((stream >> 24) & 0x7f));
  f.push_back(static_cast<char>((stream >> 16) & 0xff));
  f.push_back(static_cast<char>((stream >> 8) & 0xff));
  f.push_back(static_cast<char>(stream & 0xff));
  return f + payload;
}

// An HPACK literal header field without indexing (names and values under
// 127 bytes, no Huffman coding).
std::string Literal(const std::string& name, const std::string& value) {
  std::string s(1, '\0');
  s.push_back(static_cast<char>(name.size()));
  s += name;
  s.push_back(static_cast<char>(value.size()));
  s += value;
  return s;
}

uint32_t Be(const std::string& s, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v = (v << 8) | static_cast<uint8_t>(s[at + static_cast<size_t>(i)]);
  return v;
}

}  // namespace

StatuslessH2Server::StatuslessH2Server() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listen_fd_ < 0 ||
      ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0 ||
      ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) !=
          0) {
    return;
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] {
    while (!stop_.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      fds_.push_back(fd);
      connections_.emplace_back([this, fd] { Serve(fd); });
    }
  });
}

StatuslessH2Server::~StatuslessH2Server() {
  stop_.store(true);
  if (acceptor_.joinable()) acceptor_.join();  // no new connections after
  for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  for (std::thread& t : connections_) t.join();
  for (int fd : fds_) ::close(fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void StatuslessH2Server::Serve(int fd) {
  if (!WriteAll(fd, Frame(kSettings, 0, 0, ""))) return;
  std::string in;
  bool preface = false;
  char buf[16384];
  while (!stop_.load()) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return;
    in.append(buf, static_cast<size_t>(n));
    size_t at = 0;
    if (!preface) {
      if (in.size() < sizeof(kPreface) - 1) continue;
      if (in.compare(0, sizeof(kPreface) - 1, kPreface) != 0) return;
      preface = true;
      at = sizeof(kPreface) - 1;
    }
    while (in.size() >= at + 9) {
      const uint32_t len = Be(in, at, 3);
      const uint8_t type = static_cast<uint8_t>(in[at + 3]);
      const uint8_t flags = static_cast<uint8_t>(in[at + 4]);
      const uint32_t stream = Be(in, at + 5, 4) & 0x7fffffff;
      if (in.size() < at + 9 + len) break;
      std::string out;
      if (type == kSettings && !(flags & kAck)) {
        out = Frame(kSettings, kAck, 0, "");
      } else if (type == kPing && !(flags & kAck)) {
        out = Frame(kPing, kAck, 0, in.substr(at + 9, len));
      } else if (type == kHeaders && stream != 0) {
        // A trailers-only answer: :status 200 (static table entry 8) and
        // the gRPC content type, ending the stream, with no grpc-status.
        out = Frame(kHeaders, kEndHeaders | kEndStream, stream,
                    std::string(1, '\x88') +
                        Literal("content-type", "application/grpc"));
        ++answered_;
      }
      if (!out.empty() && !WriteAll(fd, out)) return;
      at += 9 + len;
    }
    in.erase(0, at);
  }
}

}  // namespace tidal::testing
