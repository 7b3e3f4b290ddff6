#pragma once

// Helpers for the runtime tests: a temp dir, a tiny blocking HTTP client for
// 127.0.0.1, the sample app's path and polling with a deadline.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "fakes/eventually.h"
#include "runtime/runtime.h"

namespace tidal::testing {

// $TIDAL_BUILD_DIR (set by tidal_add_test), else three levels above this
// test binary (build/tests/runtime/<test>).
inline std::string BuildDir() {
  const char* d = std::getenv("TIDAL_BUILD_DIR");
  if (d != nullptr && *d != '\0') return d;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return ".";
  return exe.parent_path().parent_path().parent_path().string();
}

inline std::string SampleAppPath() {
  return BuildDir() + "/examples/tidal-sample-app";
}

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tidal-rt-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// A blocking HTTP/1.1 connection to 127.0.0.1:port (keep-alive capable).
class HttpConn {
 public:
  explicit HttpConn(int port, absl::Duration timeout = absl::Seconds(5)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{};
    tv.tv_sec = absl::ToInt64Seconds(timeout);
    tv.tv_usec = absl::ToInt64Microseconds(timeout) % 1000000;
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ =
        connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~HttpConn() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return connected_; }

  std::optional<HttpResponse> Request(const std::string& method,
                                      const std::string& target,
                                      const std::string& body = "",
                                      bool keep_alive = true) {
    if (!connected_) return std::nullopt;
    std::string req =
        absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                     keep_alive ? "" : "Connection: close\r\n",
                     "Content-Length: ", body.size(), "\r\n\r\n", body);
    size_t off = 0;
    while (off < req.size()) {
      ssize_t n = send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return std::nullopt;
      off += static_cast<size_t>(n);
    }
    size_t hdr_end;
    while ((hdr_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return std::nullopt;
    }
    HttpResponse r;
    std::istringstream hs(buf_.substr(0, hdr_end));
    std::string line;
    std::getline(hs, line);
    if (line.size() < 12) return std::nullopt;
    r.status = std::atoi(line.substr(9, 3).c_str());
    while (std::getline(hs, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = absl::AsciiStrToLower(line.substr(0, colon));
      std::string value =
          std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      r.headers[name] = value;
    }
    buf_.erase(0, hdr_end + 4);
    size_t len = 0;
    if (auto it = r.headers.find("content-length"); it != r.headers.end()) {
      if (!absl::SimpleAtoi(it->second, &len)) return std::nullopt;
    }
    while (buf_.size() < len) {
      if (!Fill()) return std::nullopt;
    }
    r.body = buf_.substr(0, len);
    buf_.erase(0, len);
    return r;
  }

  // True once the peer closed the connection (reads EOF).
  bool PeerClosed() {
    char c;
    ssize_t n = recv(fd_, &c, 1, 0);
    return n == 0;
  }

 private:
  bool Fill() {
    char tmp[65536];
    ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

inline std::optional<HttpResponse> HttpGet(int port,
                                           const std::string& target) {
  HttpConn c(port);
  return c.Request("GET", target, "", false);
}

inline bool CanConnect(int port) {
  return HttpConn(port, absl::Milliseconds(200)).connected();
}

// Everything a runtime's log stream of `id` has now (without follow); ""
// when it has none.
inline std::string ReadLogs(Runtime& rt, const std::string& id) {
  auto stream = rt.OpenLogs(id, LogOptions());
  if (!stream.ok()) return "";
  std::string out;
  for (;;) {
    auto data = (*stream)->Next(absl::ZeroDuration());
    if (!data.ok() || data->empty()) return out;
    out += *data;
  }
}

}  // namespace tidal::testing
