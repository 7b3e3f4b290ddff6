#include "e2e/http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace tidal::e2e {

std::string AppHost(const std::string& app, const std::string& ns) {
  return absl::StrCat(app, ".", ns, ".tidal.localhost");
}

HttpClient::HttpClient(int port, std::string host, absl::Duration timeout,
                       std::string address)
    : port_(port),
      host_(std::move(host)),
      address_(std::move(address)),
      timeout_(timeout) {}

HttpClient::~HttpClient() { Close(); }

void HttpClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buf_.clear();
}

bool HttpClient::Connect(std::string* error) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    *error = absl::StrCat("socket: ", strerror(errno));
    return false;
  }
  timeval tv = absl::ToTimeval(timeout_);
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  if (inet_pton(AF_INET, address_.c_str(), &addr.sin_addr) != 1) {
    *error = absl::StrCat("not an IPv4 address: ", address_);
    Close();
    return false;
  }
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    *error = absl::StrCat("connect: ", strerror(errno));
    Close();
    return false;
  }
  return true;
}

bool HttpClient::Fill(std::string* error) {
  char chunk[16384];
  ssize_t n = read(fd_, chunk, sizeof(chunk));
  if (n > 0) {
    buf_.append(chunk, n);
    return true;
  }
  *error =
      n == 0 ? "connection closed" : absl::StrCat("read: ", strerror(errno));
  return false;
}

HttpResponse HttpClient::Once(const std::string& path, bool* retry) {
  HttpResponse r;
  *retry = false;
  const bool reused = fd_ >= 0;
  if (!reused && !Connect(&r.error)) return r;
  const absl::Time start = absl::Now();
  std::string req = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host_,
                                 "\r\nUser-Agent: tidal-e2e\r\n\r\n");
  size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      r.error = absl::StrCat("send: ", strerror(errno));
      *retry = reused;
      Close();
      return r;
    }
    sent += n;
  }
  // Headers.
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill(&r.error)) {
      *retry = reused && buf_.empty();
      Close();
      return r;
    }
  }
  std::vector<std::string> lines = absl::StrSplit(buf_.substr(0, end), "\r\n");
  buf_.erase(0, end + 4);
  std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
  if (first.size() < 2 || !absl::SimpleAtoi(first[1], &r.status)) {
    r.error = absl::StrCat("bad status line: ", lines[0]);
    r.status = 0;
    Close();
    return r;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    auto colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  const bool close_after =
      absl::AsciiStrToLower(r.headers["connection"]) == "close";
  std::string err;
  if (r.headers.count("content-length")) {
    size_t len = 0;
    if (!absl::SimpleAtoi(r.headers["content-length"], &len)) {
      r.error = "bad Content-Length: " + r.headers["content-length"];
      r.status = 0;
      Close();
      return r;
    }
    while (buf_.size() < len) {
      if (!Fill(&err)) {
        r.error = "body cut short: " + err;
        r.status = 0;
        Close();
        return r;
      }
    }
    r.body = buf_.substr(0, len);
    buf_.erase(0, len);
  } else if (absl::AsciiStrToLower(r.headers["transfer-encoding"]) ==
             "chunked") {
    while (true) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos) {
        if (!Fill(&err)) {
          r.error = "chunked body cut short: " + err;
          r.status = 0;
          Close();
          return r;
        }
      }
      size_t len = std::stoul(buf_.substr(0, eol), nullptr, 16);
      while (buf_.size() < eol + 2 + len + 2) {
        if (!Fill(&err)) {
          r.error = "chunked body cut short: " + err;
          r.status = 0;
          Close();
          return r;
        }
      }
      r.body += buf_.substr(eol + 2, len);
      buf_.erase(0, eol + 2 + len + 2);
      if (len == 0) break;
    }
  } else {
    while (Fill(&err)) {
    }
    r.body = buf_;
    buf_.clear();
    Close();
  }
  r.latency = absl::Now() - start;
  if (close_after) Close();
  return r;
}

HttpResponse HttpClient::Get(const std::string& path) {
  bool retry = false;
  HttpResponse r = Once(path, &retry);
  if (retry) r = Once(path, &retry);
  return r;
}

HttpResponse HttpGet(int port, const std::string& host, const std::string& path,
                     absl::Duration timeout, const std::string& address) {
  HttpClient c(port, host, timeout, address);
  return c.Get(path);
}

}  // namespace tidal::e2e
