// What the gateway accepts from a client: raw request bytes through the
// gateway's parser limits and Beast's read algorithms (as the session runs
// them, minus the socket), and the answer each kind of bad request gets;
// Host routing; which methods are retried. No sockets.

#include "gateway/request_policy.h"

#include <boost/asio/error.hpp>
#include <boost/beast/http/error.hpp>
#include <optional>
#include <string>
#include <vector>

#include "gateway/gateway.h"
#include "gtest/gtest.h"
#include "memory_stream.h"

namespace tidal::gateway {
namespace {

namespace http = boost::beast::http;
using testing::MemoryStream;

// What the gateway answers to `bytes` sent on a fresh connection, with
// GatewayOptions' default limits unless given: its status, or 0 when it
// reads a whole request (header and body) and would relay it, or -1 when it
// closes without an answer.
int Answer(const std::string& bytes, size_t max_header = 0,
           uint64_t max_body = ~uint64_t{0}) {
  GatewayOptions o;
  if (max_header == 0) max_header = o.max_header_bytes;
  if (max_body == ~uint64_t{0}) max_body = o.max_body_bytes;
  MemoryStream stream(bytes);
  boost::beast::flat_buffer buf;
  RequestParser parser;
  LimitRequestParser(parser, max_header, max_body);
  auto ec = testing::ReadHeader(stream, buf, parser);
  if (ec) {
    auto r = RejectUnreadRequest(ec, false);
    return r ? static_cast<int>(r->status) : -1;
  }
  if (auto r = RejectUnrelayable(parser.get())) {
    return static_cast<int>(r->status);
  }
  if (auto r = NormalizeRequestTarget(parser.get().base())) {
    return static_cast<int>(r->status);
  }
  std::string body;
  ec = testing::ReadBody(stream, buf, parser, &body);
  if (ec == http::error::body_limit) {
    return static_cast<int>(BodyTooLarge().status);
  }
  return ec ? -1 : 0;  // the session aborts on other body errors
}

TEST(RequestPolicyTest, WhatIsRejectedWithWhichStatus) {
  struct Row {
    const char* what;
    std::string bytes;
    int answer;
  };
  const std::string kGet =
      "GET / HTTP/1.1\r\nHost: a.default.tidal.localhost\r\n";
  const std::vector<Row> rows = {
      {"a plain GET", kGet + "\r\n", 0},
      {"a body with Content-Length", kGet + "Content-Length: 3\r\n\r\nabc", 0},
      {"a chunked body",
       kGet + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0},
      {"an unknown method is relayed", "BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n",
       0},
      {"nothing sent: closed", "", -1},
      {"header cut short: 400", kGet, 400},
      {"not HTTP: 400", "hello\r\n\r\n", 400},
      {"bad version: 400", "GET / HTTP/x.1\r\nHost: h\r\n\r\n", 400},
      {"space before colon: 400", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
      {"two Content-Lengths: 400",
       kGet + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
      {"Content-Length not a number: 400", kGet + "Content-Length: x\r\n\r\n",
       400},
      {"Content-Length and chunked: 400",
       kGet + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
              "3\r\nabc\r\n0\r\n\r\n",
       400},
      {"codings in one Transfer-Encoding field",
       kGet + "Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
       0},
      {"Transfer-Encoding split over two fields: 400",
       kGet + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
              "3\r\nabc\r\n0\r\n\r\n",
       400},
      {"Transfer-Encoding: chunked twice: 400",
       kGet + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
              "3\r\nabc\r\n0\r\n\r\n",
       400},
      {"a Content-Length list that differs: 400",
       kGet + "Content-Length: 3, 4\r\n\r\nabcd", 400},
      {"a Content-Length list that agrees",
       kGet + "Content-Length: 3, 3\r\n\r\nabc", 0},
      {"a signed Content-Length: 400", kGet + "Content-Length: +3\r\n\r\nabc",
       400},
      {"Transfer-Encoding without chunked: 400 (no length, RFC 9112 6.3)",
       kGet + "Transfer-Encoding: gzip\r\n\r\nabc", 400},
      {"Transfer-Encoding with chunked not last: 400",
       kGet + "Transfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
       400},
      {"a coding with a parameter before chunked: 400 (the parser would "
       "read no body, the app a chunked one)",
       kGet +
           "Transfer-Encoding: gzip;q=1, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
       400},
      {"a quoted coding before chunked: 400",
       kGet + "Transfer-Encoding: \"x\", chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
       400},
      {"Transfer-Encoding gzip and Content-Length: 400",
       kGet + "Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc", 400},
      {"a folded field is joined (RFC 9112 5.2)", kGet + "X-A: a\r\n b\r\n\r\n",
       0},
      {"a NUL in a field value: 400",
       kGet + std::string("X-A: a\0b\r\n\r\n", 12), 400},
      {"no Host in HTTP/1.1: 400", "GET / HTTP/1.1\r\n\r\n", 400},
      {"no Host in HTTP/1.0: routed nowhere", "GET / HTTP/1.0\r\n\r\n", 0},
      {"two Hosts: 400", kGet + "Host: b.default.tidal.localhost\r\n\r\n", 400},
      {"userinfo in Host: 400", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400},
      {"a path in Host: 400", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", 400},
      {"a port that is no number: 400", "GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n",
       400},
      {"an absolute-form target",
       "GET http://a.default.tidal.localhost/x HTTP/1.1\r\nHost: y\r\n\r\n", 0},
      {"an absolute-form target with userinfo: 400",
       "GET http://u@a.b.tidal.localhost/ HTTP/1.1\r\nHost: y\r\n\r\n", 400},
      {"Content-Length over the body limit: 413",
       kGet + "Content-Length: 5000000000\r\n\r\n", 413},
      {"a header over the header limit: 431",
       kGet + "X-Big: " + std::string(17 * 1024, 'x') + "\r\n\r\n", 431},
      {"body cut short: closed", kGet + "Content-Length: 10\r\n\r\nabc", -1},
      {"bad chunk size: closed",
       kGet + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", -1},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(Answer(row.bytes), row.answer) << row.what;
  }
}

TEST(RequestPolicyTest, TheLimitsAreTheGatewayOptions) {
  const std::string get = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
  // 431 past max_header_bytes, whatever it is.
  EXPECT_EQ(Answer(get + std::string(100, 'x') + "\r\n\r\n", 4096), 0);
  EXPECT_EQ(Answer(get + std::string(5000, 'x') + "\r\n\r\n", 4096), 431);
  // A chunked body that grows past max_body_bytes while it is read: 413.
  std::string chunked =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i)
    chunked += "400\r\n" + std::string(1024, 'b') + "\r\n";
  chunked += "0\r\n\r\n";
  EXPECT_EQ(Answer(chunked, 0, 8 * 1024), 0);
  EXPECT_EQ(Answer(chunked, 0, 2 * 1024), 413);
  // max_body_bytes 0: no limit.
  EXPECT_EQ(Answer("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
                   0, 2),
            413);
  EXPECT_EQ(Answer("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
                   0, 0),
            0);
}

TEST(RequestPolicyTest, ReadErrorsThatMeanTheClientLeftGetNoAnswer) {
  for (auto ec :
       {boost::system::error_code(http::error::end_of_stream),
        boost::system::error_code(boost::asio::error::eof),
        boost::system::error_code(boost::asio::error::connection_reset),
        boost::system::error_code(boost::asio::error::operation_aborted)}) {
    EXPECT_EQ(RejectUnreadRequest(ec, false), std::nullopt) << ec.message();
  }
  // Idle past client_idle_timeout: the session closed the socket itself.
  EXPECT_EQ(RejectUnreadRequest(boost::asio::error::bad_descriptor, true),
            std::nullopt);
  auto r = RejectUnreadRequest(http::error::header_limit, false);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, http::status::request_header_fields_too_large);
  EXPECT_EQ(r->body, "request header too large\n");
  r = RejectUnreadRequest(http::error::body_limit, false);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, http::status::payload_too_large);
  EXPECT_EQ(r->body, "request body too large\n");
  r = RejectUnreadRequest(http::error::bad_method, false);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, http::status::bad_request);
  EXPECT_EQ(r->body, "bad request\n");
  Rejection unknown = UnknownHost("x.y.tidal.localhost");
  EXPECT_EQ(unknown.status, http::status::not_found);
  EXPECT_EQ(unknown.body, "no app for host \"x.y.tidal.localhost\"\n");
}

TEST(RequestPolicyTest, HostRouting) {
  struct Row {
    const char* host_field;
    const char* host;  // named in a 404
    const char* key;   // "" = no app
  };
  const std::vector<Row> rows = {
      {"hello.default.tidal.localhost", "hello.default.tidal.localhost",
       "hello.default"},
      {"hello.default.tidal.localhost:8080", "hello.default.tidal.localhost",
       "hello.default"},
      {"HELLO.Default.Tidal.LOCALHOST", "hello.default.tidal.localhost",
       "hello.default"},
      {"a.b.c.tidal.localhost", "a.b.c.tidal.localhost", "a.b.c"},
      {"x.tidal.localhost", "x.tidal.localhost", "x"},
      {"tidal.localhost", "tidal.localhost", ""},
      {".tidal.localhost", ".tidal.localhost", ""},
      {"hellotidal.localhost", "hellotidal.localhost", ""},
      {"hello.default.example.com", "hello.default.example.com", ""},
      {"hello.default.tidal.localhost.", "hello.default.tidal.localhost",
       "hello.default"},
      {"hello.default.tidal.localhost.:80", "hello.default.tidal.localhost",
       "hello.default"},
      {"", "", ""},
      {"[::1]:8080", "[::1]", ""},
      {"[::1]", "[::1]", ""},
  };
  for (const Row& row : rows) {
    HostRoute r = RouteForHost(row.host_field, "tidal.localhost");
    EXPECT_EQ(r.host, row.host) << row.host_field;
    EXPECT_EQ(r.key, row.key) << row.host_field;
  }
  EXPECT_EQ(RouteForHost("a.b.apps.example.com:80", "apps.example.com").key,
            "a.b");
}

TEST(RequestPolicyTest, AbsoluteFormTargetsBecomeOriginFormAndTheirHost) {
  struct Row {
    const char* target;
    const char* host;  // the Host field sent; nullptr: none
    const char* want_target;
    const char* want_host;
  };
  const std::vector<Row> rows = {
      {"http://a.b.tidal.localhost/x?y=1", "other", "/x?y=1",
       "a.b.tidal.localhost"},
      {"HTTP://a.b.tidal.localhost:8080", nullptr, "/",
       "a.b.tidal.localhost:8080"},
      {"https://a.b.tidal.localhost?q", "other", "/?q", "a.b.tidal.localhost"},
      {"/plain", "a.b.tidal.localhost", "/plain", "a.b.tidal.localhost"},
  };
  for (const Row& row : rows) {
    http::request_header<> req;
    req.version(11);
    req.method(http::verb::get);
    req.target(row.target);
    if (row.host != nullptr) req.set(http::field::host, row.host);
    EXPECT_EQ(NormalizeRequestTarget(req), std::nullopt) << row.target;
    EXPECT_EQ(std::string(req.target()), row.want_target) << row.target;
    EXPECT_EQ(std::string(req[http::field::host]), row.want_host) << row.target;
    EXPECT_EQ(req.count(http::field::host), 1u) << row.target;
  }
}

TEST(RequestPolicyTest, HttpsRedirectKeepsHostAndTarget) {
  struct Row {
    const char* host_field;
    const char* target;
    int https_port;
    const char* location;  // "" = not redirected
  };
  const std::vector<Row> rows = {
      {"a.b.tidal.localhost:8080", "/x?y=1", 8443,
       "https://a.b.tidal.localhost:8443/x?y=1"},
      {"a.b.tidal.localhost", "/", 443, "https://a.b.tidal.localhost/"},
      {"[::1]:8080", "/p", 8443, "https://[::1]:8443/p"},
      {"[::1]", "/p", 443, "https://[::1]/p"},
      {"a.example", "http://a.example/abs", 443, "https://a.example/"},
      {"a.example", "/.well-known/acme-challenge/token", 443, ""},
      {"", "/", 443, ""},
  };
  for (const Row& row : rows) {
    auto location =
        HttpsRedirectLocation(row.host_field, row.target, row.https_port);
    EXPECT_EQ(location.value_or(""), row.location)
        << row.host_field << " " << row.target;
  }
}

TEST(RequestPolicyTest, OnlyIdempotentMethodsAreRetried) {
  for (auto v : {http::verb::get, http::verb::head, http::verb::options,
                 http::verb::put, http::verb::delete_, http::verb::trace}) {
    EXPECT_TRUE(Idempotent(v)) << http::to_string(v);
  }
  for (auto v : {http::verb::post, http::verb::patch, http::verb::connect,
                 http::verb::unknown}) {
    EXPECT_FALSE(Idempotent(v)) << http::to_string(v);
  }
}

}  // namespace
}  // namespace tidal::gateway
