#include "gateway/header_policy.h"

#include <boost/beast/core/string.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway/route_table.h"

namespace tidal::gateway {

namespace beast = boost::beast;
namespace http = beast::http;

void StripHopByHop(http::fields& h) {
  std::string connection(h[http::field::connection]);
  for (absl::string_view token : absl::StrSplit(connection, ',')) {
    token = absl::StripAsciiWhitespace(token);
    if (token.empty() || absl::EqualsIgnoreCase(token, "close") ||
        absl::EqualsIgnoreCase(token, "keep-alive") ||
        absl::EqualsIgnoreCase(token, "transfer-encoding")) {
      continue;
    }
    h.erase(beast::string_view(token.data(), token.size()));
  }
  h.erase(http::field::connection);
  h.erase(http::field::keep_alive);
  h.erase(http::field::proxy_connection);
  h.erase(http::field::te);
  h.erase(http::field::upgrade);
  h.erase(http::field::proxy_authenticate);
  h.erase(http::field::proxy_authorization);
}

bool ForbiddenTrailer(absl::string_view name) {
  static const char* const kNames[] = {
      "content-length", "transfer-encoding", "host",
      "connection",     "keep-alive",        "te",
      "trailer",        "upgrade",           "proxy-connection",
      "content-type",   "content-encoding",  "content-range",
      "authorization",  "cache-control",     "expect"};
  for (const char* n : kNames) {
    if (absl::EqualsIgnoreCase(name, n)) return true;
  }
  return false;
}

std::string NewRequestId(uint64_t* rng) {
  static const char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  uint64_t a = NextRandom(rng), b = NextRandom(rng);
  for (int i = 0; i < 16; ++i) {
    id[i] = kHex[(a >> (i * 4)) & 15];
    id[16 + i] = kHex[(b >> (i * 4)) & 15];
  }
  return id;
}

bool PrepareUpstreamRequest(ProxyRequest& req, absl::string_view client_ip,
                            uint64_t* rng, absl::string_view proto) {
  const bool expect_continue =
      beast::iequals(req[http::field::expect], "100-continue");
  // Every Expect field, empty ones too: an instance that saw "Expect:
  // 100-continue" (say after an empty first field) would answer 100 Continue,
  // which the gateway would take for the final response.
  req.erase(http::field::expect);
  StripHopByHop(req);
  auto xff = req["X-Forwarded-For"];
  if (xff.empty()) {
    req.set("X-Forwarded-For",
            beast::string_view(client_ip.data(), client_ip.size()));
  } else {
    req.set("X-Forwarded-For",
            absl::StrCat(absl::string_view(xff.data(), xff.size()), ", ",
                         client_ip));
  }
  req.set("X-Forwarded-Proto",
          boost::beast::string_view(proto.data(), proto.size()));
  if (req["X-Request-Id"].empty()) req.set("X-Request-Id", NewRequestId(rng));
  req.version(11);
  req.keep_alive(true);
  return expect_continue;
}

ResponseFraming PrepareClientResponse(ProxyResponse& res, bool need_eof,
                                      bool is_head, unsigned client_version,
                                      bool client_keep_alive) {
  ResponseFraming f;
  f.upstream_keep_alive = res.keep_alive() && !need_eof;
  f.client_keep_alive = client_keep_alive;
  StripHopByHop(res);
  f.chunked_in = res.chunked();
  if (!is_head && !res.has_content_length() && !res.chunked() && need_eof) {
    // Delimited by the instance's close: chunked for an HTTP/1.1 client.
    if (client_version >= 11) {
      res.chunked(true);
    } else {
      f.client_keep_alive = false;
    }
  }
  if (client_version < 11 && res.chunked()) {
    res.chunked(false);
    f.client_keep_alive = false;
  }
  if (!res.chunked()) res.erase(http::field::trailer);  // nothing to announce
  res.keep_alive(f.client_keep_alive);
  return f;
}

http::response<http::string_body> GatewayResponse(http::status status,
                                                  std::string body,
                                                  bool retry_after,
                                                  bool keep_alive) {
  http::response<http::string_body> res(status, 11);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set(http::field::server, "tidal-gateway");
  if (retry_after) res.set(http::field::retry_after, "1");
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

}  // namespace tidal::gateway
