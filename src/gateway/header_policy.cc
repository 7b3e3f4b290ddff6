#include "gateway/header_policy.h"

#include <algorithm>
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
  // One pass drops the fixed hop-by-hop fields and reads Connection (no
  // lookups: each costs more than a pass over a dozen fields); a second one,
  // only if Connection names other fields, drops those.
  std::string connection;
  for (auto it = h.begin(); it != h.end();) {
    switch (it->name()) {
      case http::field::connection:
        if (!connection.empty()) connection += ',';
        connection.append(it->value().data(), it->value().size());
        [[fallthrough]];
      case http::field::keep_alive:
      case http::field::proxy_connection:
      case http::field::te:
      case http::field::upgrade:
      case http::field::proxy_authenticate:
      case http::field::proxy_authorization:
        it = h.erase(it);
        break;
      default:
        ++it;
    }
  }
  if (connection.empty()) return;
  std::vector<absl::string_view> listed;
  for (absl::string_view token : absl::StrSplit(connection, ',')) {
    token = absl::StripAsciiWhitespace(token);
    if (token.empty() || absl::EqualsIgnoreCase(token, "close") ||
        absl::EqualsIgnoreCase(token, "keep-alive") ||
        absl::EqualsIgnoreCase(token, "transfer-encoding")) {
      continue;
    }
    listed.push_back(token);
  }
  if (listed.empty()) return;
  for (auto it = h.begin(); it != h.end();) {
    absl::string_view name(it->name_string().data(), it->name_string().size());
    bool drop = false;
    for (absl::string_view l : listed)
      drop = drop || absl::EqualsIgnoreCase(l, name);
    it = drop ? h.erase(it) : std::next(it);
  }
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

bool IsUpgradeRequest(const ProxyRequest& req) {
  if (req.version() < 11 || req[http::field::upgrade].empty()) return false;
  // HTTP/2 by Upgrade (RFC 7540's h2c) is not offered: the request is
  // answered over HTTP/1.1, as RFC 9113 allows (Upgrade and HTTP2-Settings
  // are hop-by-hop and go no further).
  auto upgrade = req[http::field::upgrade];
  if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(absl::string_view(
                                 upgrade.data(), upgrade.size())),
                             "h2c")) {
    return false;
  }
  auto connection = req[http::field::connection];
  for (absl::string_view token : absl::StrSplit(
           absl::string_view(connection.data(), connection.size()), ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(token), "upgrade")) {
      return true;
    }
  }
  return false;
}

bool H2cUpgradeOf(const ProxyRequest& req, H2Upgrade* out) {
  auto sv = [](boost::beast::string_view v) {
    return absl::string_view(v.data(), v.size());
  };
  auto lists = [](absl::string_view list, absl::string_view token) {
    for (absl::string_view t : absl::StrSplit(list, ',')) {
      if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(t), token)) {
        return true;
      }
    }
    return false;
  };
  if (req.version() != 11 || req.count("HTTP2-Settings") != 1) return false;
  const absl::string_view connection = sv(req[http::field::connection]);
  if (!lists(sv(req[http::field::upgrade]), "h2c") ||
      !lists(connection, "upgrade") || !lists(connection, "http2-settings")) {
    return false;
  }
  out->http2_settings = std::string(sv(req["HTTP2-Settings"]));
  out->method = std::string(sv(req.method_string()));
  out->target = std::string(sv(req.target()));
  out->host = std::string(sv(req[http::field::host]));
  out->fields.clear();
  for (const auto& f : req) {
    std::string name = absl::AsciiStrToLower(sv(f.name_string()));
    if (name == "connection" || name == "upgrade" || name == "http2-settings" ||
        name == "host" || name == "keep-alive" || name == "proxy-connection" ||
        name == "te" || name == "transfer-encoding" ||
        lists(connection, name)) {
      continue;
    }
    out->fields.emplace_back(std::move(name), std::string(sv(f.value())));
  }
  return true;
}

std::string PrepareSwitchingResponse(ProxyResponse& res) {
  std::string protocol(res[http::field::upgrade]);
  StripHopByHop(res);
  res.set(http::field::upgrade, protocol);
  res.set(http::field::connection, "Upgrade");
  return absl::AsciiStrToLower(protocol);
}

void WsFrameBoundary::Consume(const unsigned char* data, size_t n) {
  while (n > 0) {
    if (need_ > 0) {
      uint64_t take = std::min<uint64_t>(need_, n);
      need_ -= take;
      data += take;
      n -= take;
      continue;
    }
    header_[header_len_++] = *data++;
    --n;
    if (header_len_ < 2) continue;
    const unsigned len7 = header_[1] & 0x7F;
    const size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    const size_t mask = (header_[1] & 0x80) ? 4 : 0;
    if (header_len_ < 2 + ext + mask) continue;
    uint64_t len = len7;
    if (ext > 0) {
      len = 0;
      for (size_t i = 0; i < ext; ++i) len = (len << 8) | header_[2 + i];
    }
    need_ = len;
    header_len_ = 0;
  }
}

bool PrepareUpstreamRequest(ProxyRequest& req, absl::string_view client_ip,
                            uint64_t* rng, absl::string_view proto,
                            bool upgrade) {
  const std::string upgrade_to =
      upgrade ? std::string(req[http::field::upgrade]) : std::string();
  // One pass over the fields (lookups cost more than a pass): Expect and
  // the forwarding fields the gateway writes itself are taken out.
  bool expect_continue = false;
  bool seen_expect = false;
  bool have_request_id = false;
  std::string forwarded_for;  // the X-Forwarded-For fields, joined
  for (auto it = req.begin(); it != req.end();) {
    const absl::string_view value(it->value().data(), it->value().size());
    if (it->name() == http::field::expect) {
      // Every Expect field, empty ones too: an instance that saw "Expect:
      // 100-continue" (say after an empty first field) would answer 100
      // Continue, which the gateway would take for the final response. The
      // first one decides whether the gateway answers 100 Continue.
      if (!seen_expect) {
        expect_continue = absl::EqualsIgnoreCase(value, "100-continue");
      }
      seen_expect = true;
      it = req.erase(it);
      continue;
    }
    if (it->name() == http::field::unknown) {  // X-* fields
      const absl::string_view name(it->name_string().data(),
                                   it->name_string().size());
      if (absl::EqualsIgnoreCase(name, "X-Forwarded-For")) {
        if (!forwarded_for.empty()) forwarded_for += ", ";
        forwarded_for.append(value.data(), value.size());
        it = req.erase(it);
        continue;
      }
      if (absl::EqualsIgnoreCase(name, "X-Forwarded-Proto")) {
        it = req.erase(it);
        continue;
      }
      if (absl::EqualsIgnoreCase(name, "X-Request-Id")) {
        // An empty one is dropped: the instance would read it before the
        // one the gateway adds, and log requests without an id.
        if (value.empty()) {
          it = req.erase(it);
          continue;
        }
        have_request_id = true;
      }
    }
    ++it;
  }
  StripHopByHop(req);
  if (forwarded_for.empty()) {
    req.insert("X-Forwarded-For",
               beast::string_view(client_ip.data(), client_ip.size()));
  } else {
    req.insert("X-Forwarded-For", absl::StrCat(forwarded_for, ", ", client_ip));
  }
  req.insert("X-Forwarded-Proto",
             boost::beast::string_view(proto.data(), proto.size()));
  if (!have_request_id) req.insert("X-Request-Id", NewRequestId(rng));
  // HTTP/1.1 keeps the connection by default, and Connection is gone.
  req.version(11);
  if (upgrade) {
    req.set(http::field::upgrade, upgrade_to);
    req.set(http::field::connection, "Upgrade");
  }
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
  bool chunked = f.chunked_in;
  if (!is_head && !chunked && need_eof && !res.has_content_length()) {
    // Delimited by the instance's close: chunked for an HTTP/1.1 client.
    if (client_version >= 11) {
      res.chunked(true);
      chunked = true;
    } else {
      f.client_keep_alive = false;
    }
  }
  if (client_version < 11 && chunked) {
    res.chunked(false);
    chunked = false;
    f.client_keep_alive = false;
  }
  if (!chunked) res.erase(http::field::trailer);  // nothing to announce
  // Connection is gone (StripHopByHop): say what differs from the default
  // of the response's version, as keep_alive() would.
  if (res.version() >= 11) {
    if (!f.client_keep_alive) res.set(http::field::connection, "close");
  } else if (f.client_keep_alive) {
    res.set(http::field::connection, "keep-alive");
  }
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
