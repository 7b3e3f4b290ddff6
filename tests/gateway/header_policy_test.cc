// The gateway's header policy on parsed messages: which fields a request
// and a response lose and gain, how a response is framed for HTTP/1.0 and
// 1.1 clients, and the gateway's own responses. No sockets.

#include "gateway/header_policy.h"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "memory_stream.h"

namespace tidal::gateway {
namespace {

namespace http = boost::beast::http;
using testing::MemoryStream;

std::string Field(const http::fields& f, absl::string_view name) {
  auto v = f[boost::beast::string_view(name.data(), name.size())];
  return std::string(v.data(), v.size());
}

bool Has(const http::fields& f, absl::string_view name) {
  return f.find(boost::beast::string_view(name.data(), name.size())) != f.end();
}

// A request header as the gateway's parser reads it.
ProxyRequest ParseRequest(const std::string& text) {
  MemoryStream stream(text);
  boost::beast::flat_buffer buf;
  RequestParser parser;
  auto ec = testing::ReadHeader(stream, buf, parser);
  EXPECT_FALSE(ec) << ec.message() << " in " << text;
  return parser.release();
}

// A response header as the gateway's parser reads it; `need_eof` from the
// parser (the body ends when the instance closes).
struct ParsedResponse {
  ProxyResponse res;
  bool need_eof = false;
};
ParsedResponse ParseResponse(const std::string& text, bool head = false) {
  MemoryStream stream(text);
  boost::beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  if (head) parser.skip(true);
  boost::system::error_code ec;
  http::read_header(stream, buf, parser, ec);
  EXPECT_FALSE(ec) << ec.message() << " in " << text;
  ParsedResponse r;
  r.need_eof = parser.need_eof();
  r.res = parser.release();
  return r;
}

TEST(HeaderPolicyTest, StripsHopByHopFieldsAndTheOnesConnectionNames) {
  ProxyRequest req = ParseRequest(
      "GET / HTTP/1.1\r\n"
      "Host: a.default.tidal.localhost\r\n"
      "Connection: keep-alive, X-Secret ,Upgrade, transfer-encoding, close\r\n"
      "X-Secret: s\r\n"
      "Keep-Alive: timeout=5\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "TE: trailers\r\n"
      "Upgrade: websocket\r\n"
      "Proxy-Authenticate: Basic\r\n"
      "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
      "Trailer: X-Checksum\r\n"
      "Authorization: Bearer t\r\n"
      "X-Kept: k\r\n"
      "\r\n");
  StripHopByHop(req);
  for (const char* gone :
       {"Connection", "X-Secret", "Keep-Alive", "Proxy-Connection", "TE",
        "Upgrade", "Proxy-Authenticate", "Proxy-Authorization"}) {
    EXPECT_FALSE(Has(req, gone)) << gone;
  }
  EXPECT_EQ(Field(req, "Host"), "a.default.tidal.localhost");
  EXPECT_EQ(Field(req, "Trailer"), "X-Checksum");
  EXPECT_EQ(Field(req, "Authorization"), "Bearer t");
  EXPECT_EQ(Field(req, "X-Kept"), "k");
}

TEST(HeaderPolicyTest, ConnectionCannotRemoveTransferEncoding) {
  ProxyRequest req = ParseRequest(
      "POST / HTTP/1.1\r\nHost: h\r\nConnection: Transfer-Encoding\r\n"
      "Transfer-Encoding: chunked\r\n\r\n");
  StripHopByHop(req);
  EXPECT_EQ(Field(req, "Transfer-Encoding"), "chunked");
  EXPECT_TRUE(req.chunked());
}

TEST(HeaderPolicyTest, UpstreamRequestGetsForwardedHeadersAndARequestId) {
  uint64_t rng = 42;
  ProxyRequest req = ParseRequest(
      "GET /p?q=1 HTTP/1.0\r\nHost: a.default.tidal.localhost\r\n"
      "X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(PrepareUpstreamRequest(req, "192.0.2.7", &rng));
  EXPECT_EQ(req.version(), 11);
  EXPECT_EQ(req.target(), "/p?q=1");
  EXPECT_EQ(Field(req, "X-Forwarded-For"), "192.0.2.7");
  // The client's claim is not relayed: the gateway serves plain HTTP.
  EXPECT_EQ(Field(req, "X-Forwarded-Proto"), "http");
  // HTTP/1.1 keep-alive toward the instance: no Connection field at all.
  EXPECT_FALSE(Has(req, "Connection"));
  EXPECT_TRUE(req.keep_alive());
  std::string id = Field(req, "X-Request-Id");
  ASSERT_EQ(id.size(), 32u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(HeaderPolicyTest, XForwardedForIsAppendedAndARequestIdKept) {
  uint64_t rng = 42;
  ProxyRequest req = ParseRequest(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.1\r\n"
      "X-Request-Id: abc\r\n\r\n");
  PrepareUpstreamRequest(req, "192.0.2.7", &rng);
  EXPECT_EQ(Field(req, "X-Forwarded-For"), "203.0.113.1, 192.0.2.7");
  EXPECT_EQ(Field(req, "X-Request-Id"), "abc");
  EXPECT_EQ(rng, 42u);  // no id drawn
}

TEST(HeaderPolicyTest, AnEmptyRequestIdIsReplaced) {
  uint64_t rng = 42;
  ProxyRequest req =
      ParseRequest("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: \r\n\r\n");
  PrepareUpstreamRequest(req, "192.0.2.7", &rng);
  auto ids = req.equal_range("X-Request-Id");
  ASSERT_NE(ids.first, ids.second);
  EXPECT_FALSE(ids.first->value().empty());
  EXPECT_EQ(std::next(ids.first), ids.second) << "one X-Request-Id only";
  EXPECT_NE(rng, 42u);  // an id drawn
}

TEST(HeaderPolicyTest, XForwardedProtoSaysHowTheClientCame) {
  uint64_t rng = 42;
  ProxyRequest plain = ParseRequest(
      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n");
  PrepareUpstreamRequest(plain, "192.0.2.7", &rng);
  EXPECT_EQ(Field(plain, "X-Forwarded-Proto"), "http");  // not the client's
  ProxyRequest tls = ParseRequest("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  PrepareUpstreamRequest(tls, "192.0.2.7", &rng, "https");
  EXPECT_EQ(Field(tls, "X-Forwarded-Proto"), "https");
}

TEST(HeaderPolicyTest, ExpectIsAnsweredByTheGatewayNotRelayed) {
  struct Row {
    const char* expect;
    bool continue_wanted;
  };
  for (const Row& row : std::vector<Row>{{"100-continue", true},
                                         {"100-Continue", true},
                                         {"something-else", false}}) {
    uint64_t rng = 1;
    ProxyRequest req = ParseRequest(
        std::string("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n") +
        "Expect: " + row.expect + "\r\n\r\n");
    EXPECT_EQ(PrepareUpstreamRequest(req, "127.0.0.1", &rng),
              row.continue_wanted)
        << row.expect;
    EXPECT_FALSE(Has(req, "Expect")) << row.expect;
    EXPECT_EQ(Field(req, "Content-Length"), "3");
  }
}

// An empty Expect field went upstream, and with it any later one: an instance
// answering "100-continue" there sends a 100 the gateway would relay as the
// final response. Found by gateway_request_fuzz.
TEST(HeaderPolicyTest, EveryExpectFieldIsDropped) {
  uint64_t rng = 1;
  ProxyRequest req = ParseRequest(
      "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: \r\n"
      "Expect: 100-continue\r\n\r\n");
  // Only the first field says whether the gateway answers 100 Continue.
  EXPECT_FALSE(PrepareUpstreamRequest(req, "127.0.0.1", &rng));
  EXPECT_FALSE(Has(req, "Expect"));
}

TEST(HeaderPolicyTest, RequestIdsAreHexAndDiffer) {
  uint64_t rng = 7;
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) ids.insert(NewRequestId(&rng));
  EXPECT_EQ(ids.size(), 100u);
  for (const std::string& id : ids) {
    ASSERT_EQ(id.size(), 32u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  }
  uint64_t a = 7, b = 7;  // the same seed draws the same id
  EXPECT_EQ(NewRequestId(&a), NewRequestId(&b));
}

TEST(HeaderPolicyTest, FieldsThatFramingOrRoutingOwnAreNeverTrailers) {
  for (const char* name :
       {"Content-Length", "transfer-encoding", "HOST", "Connection",
        "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Connection",
        "Content-Type", "Content-Encoding", "Content-Range", "Authorization",
        "Cache-Control", "Expect"}) {
    EXPECT_TRUE(ForbiddenTrailer(name)) << name;
  }
  for (const char* name : {"X-Checksum", "Server-Timing", "Digest", "ETag",
                           "Content-Length-X", ""}) {
    EXPECT_FALSE(ForbiddenTrailer(name)) << name;
  }
}

// How each kind of instance response reaches HTTP/1.1 and HTTP/1.0 clients.
TEST(HeaderPolicyTest, ResponseFramingForTheClient) {
  struct Row {
    const char* what;
    std::string response;
    bool head;
    unsigned client_version;
    bool client_keep_alive;
    // Wanted.
    bool upstream_keep_alive;
    bool chunked_in;
    bool client_keep;
    bool chunked_out;
    bool trailer_announced;
    std::string connection;  // the Connection field sent to the client
  };
  const std::string kLength =
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n"
      "Connection: keep-alive\r\n\r\n";
  const std::string kUntilClose =
      "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
  const std::string kChunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
      "Trailer: X-Checksum\r\n\r\n";
  const std::vector<Row> rows = {
      {"length, 1.1", kLength, false, 11, true, true, false, true, false, false,
       ""},
      {"length, 1.1 client closes", kLength, false, 11, false, true, false,
       false, false, false, "close"},
      {"length, 1.0 keep-alive", kLength, false, 10, true, true, false, true,
       false, false, ""},
      {"until close, 1.1: chunked", kUntilClose, false, 11, true, false, false,
       true, true, false, ""},
      {"until close, 1.0: until close", kUntilClose, false, 10, true, false,
       false, false, false, false, "close"},
      {"chunked, 1.1: chunked with trailers", kChunked, false, 11, true, true,
       true, true, true, true, ""},
      {"chunked, 1.0: until close, no trailers", kChunked, false, 10, true,
       true, true, false, false, false, "close"},
      {"HEAD without length: not re-framed", kUntilClose, true, 11, true, false,
       false, true, false, false, ""},
      {"204: no body", "HTTP/1.1 204 No Content\r\n\r\n", false, 11, true, true,
       false, true, false, false, ""},
  };
  for (const Row& row : rows) {
    ParsedResponse p = ParseResponse(row.response, row.head);
    ResponseFraming f = PrepareClientResponse(
        p.res, p.need_eof, row.head, row.client_version, row.client_keep_alive);
    EXPECT_EQ(f.upstream_keep_alive, row.upstream_keep_alive) << row.what;
    EXPECT_EQ(f.chunked_in, row.chunked_in) << row.what;
    EXPECT_EQ(f.client_keep_alive, row.client_keep) << row.what;
    EXPECT_EQ(p.res.chunked(), row.chunked_out) << row.what;
    EXPECT_EQ(Has(p.res, "Trailer"), row.trailer_announced) << row.what;
    EXPECT_EQ(Field(p.res, "Connection"), row.connection) << row.what;
    EXPECT_FALSE(Has(p.res, "Keep-Alive")) << row.what;
  }
}

TEST(HeaderPolicyTest, ResponseLosesTheFieldsItsConnectionNames) {
  ParsedResponse p = ParseResponse(
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: X-Internal\r\n"
      "X-Internal: 1\r\nUpgrade: h2c\r\nX-Public: 2\r\n\r\n");
  PrepareClientResponse(p.res, p.need_eof, false, 11, true);
  EXPECT_FALSE(Has(p.res, "X-Internal"));
  EXPECT_FALSE(Has(p.res, "Upgrade"));
  EXPECT_EQ(Field(p.res, "X-Public"), "2");
}

TEST(HeaderPolicyTest, GatewayResponsesAreComplete) {
  auto res = GatewayResponse(http::status::service_unavailable,
                             "queue full, retry later\n", true, false);
  std::ostringstream out;
  out << res;
  EXPECT_EQ(out.str(),
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Server: tidal-gateway\r\n"
            "Retry-After: 1\r\n"
            "Connection: close\r\n"
            "Content-Length: 24\r\n"
            "\r\n"
            "queue full, retry later\n");
  auto kept = GatewayResponse(http::status::not_found, "no app\n", false, true);
  EXPECT_FALSE(Has(kept, "Retry-After"));
  EXPECT_FALSE(Has(kept, "Connection"));
  EXPECT_TRUE(kept.keep_alive());
  EXPECT_EQ(Field(kept, "Content-Length"), "7");
}

// WebSocket (RFC 6455) and any other Upgrade: asked for by an HTTP/1.1
// request with the upgrade option in Connection, relayed with its Upgrade
// field to the instance, and the 101 back with it.
TEST(HeaderPolicyTest, UpgradeRequestsAreRecognizedAndRelayed) {
  const std::string ws =
      "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
      "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: k\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  ProxyRequest req = ParseRequest(ws);
  EXPECT_TRUE(IsUpgradeRequest(req));
  uint64_t rng = 1;
  PrepareUpstreamRequest(req, "10.0.0.1", &rng, "http", /*upgrade=*/true);
  EXPECT_EQ(req[http::field::upgrade], "websocket");
  EXPECT_EQ(req[http::field::connection], "Upgrade");
  EXPECT_EQ(req["Sec-WebSocket-Key"], "k");
  EXPECT_EQ(req["X-Forwarded-For"], "10.0.0.1");

  // Not an upgrade: no Connection option, HTTP/1.0, no Upgrade field. And a
  // plain request loses its Upgrade field on the way.
  ProxyRequest no_option =
      ParseRequest("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_FALSE(IsUpgradeRequest(no_option));
  PrepareUpstreamRequest(no_option, "10.0.0.1", &rng);
  EXPECT_EQ(no_option.count(http::field::upgrade), 0u);
  EXPECT_FALSE(IsUpgradeRequest(ParseRequest(
      "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")));
  EXPECT_FALSE(IsUpgradeRequest(ParseRequest(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n")));
  // HTTP/2 by Upgrade is not offered: answered over HTTP/1.1, and neither
  // Upgrade nor HTTP2-Settings reaches the instance.
  ProxyRequest h2c = ParseRequest(
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n"
      "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQ\r\n"
      "\r\n");
  EXPECT_FALSE(IsUpgradeRequest(h2c));
  PrepareUpstreamRequest(h2c, "10.0.0.1", &rng);
  EXPECT_EQ(h2c.count(http::field::upgrade), 0u);
  EXPECT_EQ(h2c.count("HTTP2-Settings"), 0u);

  ParsedResponse r = ParseResponse(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
      "Connection: Upgrade, X-Hop\r\nX-Hop: 1\r\n"
      "Sec-WebSocket-Accept: a\r\n\r\n");
  EXPECT_EQ(PrepareSwitchingResponse(r.res), "websocket");
  EXPECT_EQ(r.res[http::field::upgrade], "WebSocket");
  EXPECT_EQ(r.res[http::field::connection], "Upgrade");
  EXPECT_EQ(r.res.count("X-Hop"), 0u);
  EXPECT_EQ(r.res["Sec-WebSocket-Accept"], "a");
}

// Upgrade: h2c (RFC 7540 section 3.2): recognized only with one
// HTTP2-Settings field and both named by Connection; the request for stream
// 1 keeps its own fields, lower-cased, and none of the connection's.
TEST(HeaderPolicyTest, H2cUpgradeRequestsAreRecognized) {
  H2Upgrade u;
  ProxyRequest req = ParseRequest(
      "GET /a?b=1 HTTP/1.1\r\nHost: app.ns.example\r\nUpgrade: h2c\r\n"
      "Connection: Upgrade, HTTP2-Settings, X-Hop\r\nHTTP2-Settings: "
      "AAMAAABk\r\n"
      "X-Hop: 1\r\nKeep-Alive: timeout=5\r\nAccept: */*\r\nX-Trace: t\r\n\r\n");
  ASSERT_TRUE(H2cUpgradeOf(req, &u));
  EXPECT_EQ(u.http2_settings, "AAMAAABk");
  EXPECT_EQ(u.method, "GET");
  EXPECT_EQ(u.target, "/a?b=1");
  EXPECT_EQ(u.host, "app.ns.example");
  using Fields = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(u.fields, (Fields{{"accept", "*/*"}, {"x-trace", "t"}}));

  // Not an h2c upgrade: no HTTP2-Settings, two of them, Connection without
  // HTTP2-Settings, another protocol, HTTP/1.0.
  for (const char* text :
       {"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, "
        "HTTP2-Settings\r\nHTTP2-Settings: A\r\nHTTP2-Settings: B\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
        "HTTP2-Settings: A\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade, "
        "HTTP2-Settings\r\nHTTP2-Settings: A\r\n\r\n",
        "GET / HTTP/1.0\r\nUpgrade: h2c\r\nConnection: Upgrade, "
        "HTTP2-Settings\r\nHTTP2-Settings: A\r\n\r\n"}) {
    EXPECT_FALSE(H2cUpgradeOf(ParseRequest(text), &u)) << text;
  }
}

// The gateway's own close frame goes only between two of the instance's
// frames: the boundary tracker follows 7-bit, 16-bit and 64-bit lengths and
// masked frames, fed in pieces of any size.
TEST(HeaderPolicyTest, WebSocketFrameBoundariesAreFollowed) {
  std::string stream;
  auto frame = [&](uint64_t len, bool masked) {
    stream.push_back(static_cast<char>(0x82));  // FIN, binary
    const char m = masked ? static_cast<char>(0x80) : 0;
    if (len < 126) {
      stream.push_back(static_cast<char>(m | len));
    } else if (len < 65536) {
      stream.push_back(static_cast<char>(m | 126));
      stream.push_back(static_cast<char>(len >> 8));
      stream.push_back(static_cast<char>(len & 0xFF));
    } else {
      stream.push_back(static_cast<char>(m | 127));
      for (int i = 7; i >= 0; --i) {
        stream.push_back(static_cast<char>((len >> (8 * i)) & 0xFF));
      }
    }
    if (masked) stream.append("\x01\x02\x03\x04", 4);
    stream.append(len, 'p');
    return stream.size();  // the boundary after it
  };
  std::set<size_t> ends = {frame(0, false),     frame(5, false),
                           frame(125, true),    frame(300, false),
                           frame(70000, false), frame(3, true)};
  for (size_t piece : {size_t{1}, size_t{7}, size_t{4096}}) {
    WsFrameBoundary b;
    EXPECT_TRUE(b.AtBoundary());
    size_t at = 0;
    while (at < stream.size()) {
      size_t n = std::min(piece, stream.size() - at);
      b.Consume(reinterpret_cast<const unsigned char*>(stream.data() + at), n);
      at += n;
      if (piece == 1) {
        EXPECT_EQ(b.AtBoundary(), ends.count(at) > 0) << "at " << at;
      }
    }
    EXPECT_TRUE(b.AtBoundary()) << "pieces of " << piece;
  }
}

}  // namespace
}  // namespace tidal::gateway
