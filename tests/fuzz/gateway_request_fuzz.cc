// Fuzz target: the gateway's request handling, in process and without
// sockets. Each input is what a client sends on one connection. It is read
// as the gateway's session reads it (request_policy.h's parser limits, with
// GatewayOptions' defaults; Beast's read algorithms over an in-memory
// stream: the header, then the body through a 64 KiB window), and each
// pipelined request goes through what the session does with it: the answer
// to an unreadable one (400, 413, 431), Host routing against a table with
// one app, the header rewritten for the instance (header_policy.h) and the
// body framed for it (BodyOut), until the connection would close.
// Properties, besides "no crash, no sanitizer report":
//  - a rejected request gets the status its error calls for (400 for a
//    Transfer-Encoding split over several fields), in a response that
//    parses back whole;
//  - Host routing names a key only for <key>.<domain>, in lower case, and
//    finds the one app for its key only;
//  - the request for the instance carries no hop-by-hop field and no
//    Expect, is HTTP/1.1, has X-Forwarded-For ending with the client's
//    address, X-Forwarded-Proto: http and an X-Request-Id;
//  - the bytes sent to the instance parse (as an instance's Beast would) to
//    exactly one complete request with the client's method, target and
//    body, and nothing after it: no request smuggled past the gateway.
// 5,000 to 10,000 inputs a second under ASan and UBSan (gateway_fuzz.cc, which
// drives a real Gateway over sockets, is far slower). The seeds in
// corpus/gateway_request/ stay under 4 KiB: libFuzzer's -max_len follows the
// largest seed, and 16 KiB inputs (to reach 431) run several times slower; 431
// is request_policy_test's.

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "fuzz_check.h"
#include "gateway/body_out.h"
#include "gateway/gateway.h"
#include "gateway/header_policy.h"
#include "gateway/request_policy.h"
#include "gateway/route_table.h"
#include "memory_stream.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tidal::fuzz::Check;
using namespace tidal::gateway;  // NOLINT

constexpr char kClientIp[] = "192.0.2.1";
constexpr char kAppKey[] = "a.default";
constexpr int kMaxRequests = 16;  // per connection

struct Fixture {
  Fixture() {
    auto app = std::make_shared<AppState>("default", "a", &config, 0);
    auto shard = std::make_shared<RouteTable::Shard>();
    (*shard)[kAppKey].state = std::move(app);
    table.shards[RouteTable::ShardOf(kAppKey)] = std::move(shard);
  }
  GatewayOptions opts;  // the gateway's default limits and domain
  AppConfig config;
  RouteTable table;
};

const Fixture& F() {
  static const Fixture* f = new Fixture();
  return *f;
}

absl::string_view SV(beast::string_view v) { return {v.data(), v.size()}; }

bool Has(const http::fields& f, http::field name) {
  return f.find(name) != f.end();
}

// Parses `bytes` whole with `parser`; false if they are not exactly one
// complete message.
template <class Parser>
bool ParseWhole(const std::string& bytes, Parser& parser, std::string* why) {
  parser.eager(true);
  size_t used = 0;
  while (!parser.is_done()) {
    beast::error_code ec;
    size_t n =
        parser.put(asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == http::error::need_more && n > 0) continue;
    if (ec) {
      *why = ec == http::error::need_more ? "incomplete" : ec.message();
      return false;
    }
  }
  if (used != bytes.size()) {
    *why = absl::StrCat(bytes.size() - used, " bytes after the message");
    return false;
  }
  return true;
}

// The gateway's own answer to a request: it parses back whole, with the
// status and body it was made with.
void CheckAnswer(const Rejection& r, bool keep_alive) {
  std::ostringstream os;
  os << GatewayResponse(r.status, r.body, false, keep_alive);
  http::response_parser<http::string_body> p;
  std::string why;
  Check(ParseWhole(os.str(), p, &why), "the gateway's answer: " + why);
  Check(p.get().result() == r.status && p.get().body() == r.body &&
            p.get().keep_alive() == keep_alive,
        "the gateway's answer does not say what it was made with");
}

void Append(const std::vector<asio::const_buffer>& bufs, std::string* out) {
  for (const auto& b : bufs) {
    out->append(static_cast<const char*>(b.data()), b.size());
  }
}

// What the gateway sends the instance, read as the instance reads it.
void CheckUpstream(const std::string& bytes, const std::string& method,
                   const std::string& target, const std::string& body) {
  http::request_parser<http::string_body> p;
  p.header_limit(std::numeric_limits<std::uint32_t>::max());
  p.body_limit(boost::none);
  std::string why;
  Check(ParseWhole(bytes, p, &why),
        "the request sent upstream is not one whole request: " + why + "\n" +
            bytes.substr(0, 512));
  const auto& req = p.get();
  Check(SV(req.method_string()) == method && SV(req.target()) == target,
        "the request sent upstream has another method or target");
  Check(req.body() == body, "the request sent upstream has another body");
  Check(req.version() == 11 && req.keep_alive(),
        "the request sent upstream is not HTTP/1.1 keep-alive");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 * 1024) return 0;
  const Fixture& f = F();
  tidal::gateway::testing::MemoryStream stream(
      std::string_view(reinterpret_cast<const char*>(data), size));
  // The session's client buffer (kept across pipelined requests) and body
  // window. Allocated once: fresh 64 KiB blocks per input would cost page
  // faults under ASan (its quarantine never hands memory back soon).
  static beast::flat_buffer& cbuf = *new beast::flat_buffer();
  static char* const window = new char[tidal::gateway::testing::kBodyWindow];
  cbuf.clear();
  uint64_t rng = 1;
  for (int i = 0; i < kMaxRequests; ++i) {
    RequestParser parser;
    LimitRequestParser(parser, f.opts.max_header_bytes, f.opts.max_body_bytes);
    beast::error_code ec =
        tidal::gateway::testing::ReadHeader(stream, cbuf, parser);
    if (ec) {
      if (auto r = RejectUnreadRequest(ec, false)) {
        const int status = static_cast<int>(r->status);
        Check(status == 400 || status == 413 || status == 431,
              "a read error answered with " + std::to_string(status));
        Check((status == 431) == (ec == http::error::header_limit) &&
                  (status == 413) == (ec == http::error::body_limit),
              "read error " + ec.message() + " answered with " +
                  std::to_string(status));
        CheckAnswer(*r, false);
      }
      return 0;  // the connection ends
    }
    ProxyRequest& req = parser.get();
    auto te = req.equal_range(http::field::transfer_encoding);
    const bool several_te =
        te.first != te.second && std::next(te.first) != te.second;
    // A single field whose last coding is not chunked (RFC 9112 6.3).
    bool unframed_te = false;
    // A coding with parameters, a quoted string or any byte that is not
    // part of a plain token list (RFC 9110 5.6.2 tchar, comma, space, tab):
    // Beast stops reading the list there, so the gateway refuses it rather
    // than guess the framing.
    bool te_params = false;
    if (te.first != te.second && !several_te) {
      std::vector<absl::string_view> codings =
          absl::StrSplit(SV(te.first->value()), ',');
      unframed_te = !absl::EqualsIgnoreCase(
          absl::StripAsciiWhitespace(codings.back()), "chunked");
      for (unsigned char c : SV(te.first->value())) {
        const bool tchar =
            (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
            (c >= 'A' && c <= 'Z') ||
            std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                std::string_view::npos;
        if (!tchar && c != ',' && c != ' ' && c != '\t') te_params = true;
      }
    }
    if (auto r = RejectUnrelayable(req)) {
      Check(r->status == http::status::bad_request &&
                (several_te || unframed_te || te_params),
            "a readable request refused: " + r->body);
      CheckAnswer(*r, false);
      return 0;  // the connection ends
    }
    Check(!several_te, "several Transfer-Encoding fields relayed");
    Check(!unframed_te, "a Transfer-Encoding not ending in chunked relayed");
    if (auto r = NormalizeRequestTarget(req.base())) {
      Check(r->status == http::status::bad_request,
            "a bad target or Host answered " + r->body);
      CheckAnswer(*r, false);
      return 0;
    }
    const bool keep_alive = req.keep_alive();
    const std::string method(SV(req.method_string()));
    const std::string target(SV(req.target()));

    HostRoute host = RouteForHost(SV(req[http::field::host]), f.opts.domain);
    Check(host.host == absl::AsciiStrToLower(host.host),
          "the routed host is not in lower case: " + host.host);
    if (!host.key.empty()) {
      Check(host.host == absl::StrCat(host.key, ".", f.opts.domain),
            "key " + host.key + " from host " + host.host);
    }
    const RouteTable::Entry* entry =
        host.key.empty() ? nullptr : f.table.Find(host.key);
    Check((entry != nullptr) == (host.key == kAppKey),
          "host key " + host.key + " routed wrongly");
    if (entry == nullptr) {
      // 404, keeping the connection only if nothing of the body is unread.
      const bool keep = keep_alive && parser.is_done();
      CheckAnswer(UnknownHost(host.host), keep);
      if (!keep) return 0;
      continue;
    }

    PrepareUpstreamRequest(req, kClientIp, &rng);
    for (http::field gone :
         {http::field::connection, http::field::keep_alive,
          http::field::proxy_connection, http::field::te, http::field::upgrade,
          http::field::proxy_authenticate, http::field::proxy_authorization,
          http::field::expect}) {
      Check(!Has(req, gone), "a hop-by-hop field went upstream: " +
                                 std::string(SV(http::to_string(gone))));
    }
    Check(req.version() == 11, "the upstream request is not HTTP/1.1");
    Check(absl::EndsWith(SV(req["X-Forwarded-For"]), kClientIp),
          "X-Forwarded-For does not end with the client");
    Check(SV(req["X-Forwarded-Proto"]) == "http", "X-Forwarded-Proto");
    Check(!req["X-Request-Id"].empty(), "no X-Request-Id");

    // The header and the body, framed as the session sends them.
    BodyOut out;
    out.Begin(req.base(), !parser.is_done(), req.chunked(), req.chunked());
    std::string upstream, body;
    bool last = parser.is_done();
    if (last) Append(out.Frame(nullptr, 0, true, req), &upstream);
    while (!last) {
      size_t n = 0;
      ec = tidal::gateway::testing::ReadBodyPiece(stream, cbuf, parser, window,
                                                  &n);
      if (ec) {
        // 413 once the body passes the limit; else the client went away
        // or sent a bad chunk, and the session closes both connections.
        if (ec == http::error::body_limit) CheckAnswer(BodyTooLarge(), false);
        return 0;
      }
      last = parser.is_done();
      if (n == 0 && !last) continue;  // a chunk header or a chunk's CRLF
      body.append(window, n);
      Append(out.Frame(window, n, last, req), &upstream);
    }
    CheckUpstream(upstream, method, target, body);
    if (!keep_alive) return 0;
  }
  return 0;
}
