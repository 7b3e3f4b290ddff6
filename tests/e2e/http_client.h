#pragma once

// A small blocking HTTP/1.1 client for end-to-end tests: loopback only, GET
// without a body, Content-Length, chunked and read-to-close responses. Each
// HttpClient keeps one keep-alive connection; not thread-safe (one per
// thread).

#include <map>
#include <string>

#include "absl/time/time.h"

namespace tidal::e2e {

struct HttpResponse {
  int status = 0;  // 0: no response (error says why)
  std::string error;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  absl::Duration latency;  // from sending to the end of the body
};

class HttpClient {
 public:
  // Requests go to address:port (an IPv4 literal) with `Host: host`.
  HttpClient(int port, std::string host,
             absl::Duration timeout = absl::Seconds(30),
             std::string address = "127.0.0.1");
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // GET `path`. A reused connection the server closed before answering is
  // reopened once (as browsers and curl do for idempotent requests).
  HttpResponse Get(const std::string& path = "/");
  // Closes the connection; the next request opens a new one.
  void Close();

 private:
  bool Connect(std::string* error);
  HttpResponse Once(const std::string& path, bool* retry);
  bool Fill(std::string* error);  // reads more into buf_

  const int port_;
  const std::string host_;
  const std::string address_;
  const absl::Duration timeout_;
  int fd_ = -1;
  std::string buf_;
};

// One GET on a fresh connection that is closed after the response.
HttpResponse HttpGet(int port, const std::string& host,
                     const std::string& path = "/",
                     absl::Duration timeout = absl::Seconds(30),
                     const std::string& address = "127.0.0.1");

// "<app>.<ns>.tidal.localhost".
std::string AppHost(const std::string& app, const std::string& ns = "default");

}  // namespace tidal::e2e
