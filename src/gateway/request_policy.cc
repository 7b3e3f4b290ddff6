#include "gateway/request_policy.h"

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/beast/http/error.hpp>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace tidal::gateway {

namespace asio = boost::asio;
namespace http = boost::beast::http;

void LimitRequestParser(RequestParser& parser, size_t max_header_bytes,
                        uint64_t max_body_bytes) {
  parser.header_limit(static_cast<std::uint32_t>(max_header_bytes));
  if (max_body_bytes > 0) {
    parser.body_limit(max_body_bytes);
  } else {
    parser.body_limit(boost::none);
  }
}

std::optional<Rejection> RejectUnreadRequest(boost::system::error_code ec,
                                             bool timed_out) {
  if (ec == http::error::header_limit) return HeaderTooLarge();
  if (ec == http::error::body_limit) return BodyTooLarge();
  if (ec == http::error::end_of_stream || timed_out || ec == asio::error::eof ||
      ec == asio::error::connection_reset ||
      ec == asio::error::operation_aborted) {
    return std::nullopt;
  }
  return Rejection{http::status::bad_request, "bad request\n"};
}

std::optional<Rejection> RejectUnrelayable(const http::fields& header) {
  auto te = header.equal_range(http::field::transfer_encoding);
  if (te.first != te.second && std::next(te.first) != te.second) {
    return Rejection{http::status::bad_request, "bad request\n"};
  }
  if (te.first != te.second) {
    // RFC 9112 6.3: a request whose last coding is not chunked has no
    // length a server could find (and the parser took it for no body).
    absl::string_view v(te.first->value().data(), te.first->value().size());
    // Codings as plain tokens only: the parser stops reading the list at a
    // parameter (`;`) or a quote, so "gzip;q=1, chunked" would be relayed
    // with a chunked body the gateway never read (request smuggling).
    for (unsigned char c : v) {
      if (!(absl::ascii_isalnum(c) || c == ',' || c == ' ' || c == '\t' ||
            absl::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                absl::string_view::npos)) {
        return Rejection{http::status::bad_request,
                         "bad request: Transfer-Encoding with parameters or "
                         "quotes\n"};
      }
    }
    v = absl::StripTrailingAsciiWhitespace(v);
    const size_t comma = v.rfind(',');
    absl::string_view last = absl::StripLeadingAsciiWhitespace(
        comma == absl::string_view::npos ? v : v.substr(comma + 1));
    if (!absl::EqualsIgnoreCase(last, "chunked")) {
      return Rejection{http::status::bad_request,
                       "bad request: Transfer-Encoding must end with "
                       "chunked\n"};
    }
  }
  return std::nullopt;
}

namespace {

// Whether `host` (a Host field, or the authority of an absolute-form
// target) is a host and an optional port: a reg-name or IPv4 address, or an
// IP literal in brackets (RFC 3986 3.2.2). No userinfo, no path, no
// whitespace or control bytes.
bool ValidHost(absl::string_view host) {
  absl::string_view name = host;
  if (absl::StartsWith(name, "[")) {
    const size_t close = name.find(']');
    if (close == absl::string_view::npos) return false;
    for (char c : name.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' &&
          c != '.') {
        return false;
      }
    }
    name = name.substr(close + 1);
    if (name.empty()) return true;
    if (name[0] != ':') return false;
  } else {
    const size_t colon = name.find(':');
    for (char c : name.substr(0, colon)) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
          !absl::StrContains("-._~!$&'()*+,;=%", c)) {
        return false;
      }
    }
    if (colon == absl::string_view::npos) return true;
    name = name.substr(colon);
  }
  for (char c : name.substr(1)) {  // the port
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return name.size() <= 6;
}

Rejection BadHost(absl::string_view why) {
  return {http::status::bad_request, absl::StrCat("bad request: ", why, "\n")};
}

}  // namespace

std::optional<Rejection> NormalizeRequestTarget(http::request_header<>& req) {
  auto target = req.target();
  absl::string_view t(target.data(), target.size());
  const bool absolute = absl::StartsWithIgnoreCase(t, "http://") ||
                        absl::StartsWithIgnoreCase(t, "https://");
  if (absolute) {
    absl::string_view rest = t.substr(t.find("//") + 2);
    const size_t end = rest.find_first_of("/?#");
    absl::string_view authority = rest.substr(0, std::min(end, rest.size()));
    if (authority.empty() || !ValidHost(authority)) {
      return BadHost("the request target's authority is not a host[:port]");
    }
    std::string path =
        end == absl::string_view::npos ? "/" : std::string(rest.substr(end));
    if (path[0] != '/') path.insert(0, "/");  // "http://h?q" -> "/?q"
    const std::string host(authority);
    // RFC 9112 3.2.2: the target's authority wins over any Host field.
    req.erase(http::field::host);
    req.set(http::field::host, host);
    req.target(path);
    return std::nullopt;
  }
  auto hosts = req.equal_range(http::field::host);
  if (hosts.first == hosts.second) {
    // RFC 9112 3.2: HTTP/1.1 requires one (HTTP/1.0 may go without: it is
    // then routed nowhere, 404).
    if (req.version() >= 11) return BadHost("no Host header");
    return std::nullopt;
  }
  if (std::next(hosts.first) != hosts.second) {
    return BadHost("more than one Host header");
  }
  absl::string_view host(hosts.first->value().data(),
                         hosts.first->value().size());
  if (!host.empty() && !ValidHost(host)) {
    return BadHost("the Host header is not a host[:port]");
  }
  return std::nullopt;
}

Rejection HeaderTooLarge() {
  return {http::status::request_header_fields_too_large,
          "request header too large\n"};
}

Rejection BodyTooLarge() {
  return {http::status::payload_too_large, "request body too large\n"};
}

Rejection UnknownHost(absl::string_view host) {
  return {http::status::not_found,
          absl::StrCat("no app for host \"", host, "\"\n")};
}

HostRoute RouteForHost(absl::string_view host_field, absl::string_view domain) {
  HostRoute r;
  absl::string_view host = host_field;
  // Without the port: "a.example:8080" -> "a.example", "[::1]:80" -> "[::1]"
  // (but "[::1]" stays whole).
  size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos &&
      host.find(']', colon) == absl::string_view::npos) {
    host = host.substr(0, colon);
  }
  // A fully qualified name's trailing dot names the same host.
  absl::ConsumeSuffix(&host, ".");
  r.host = absl::AsciiStrToLower(host);
  absl::string_view prefix = r.host;
  if (absl::ConsumeSuffix(&prefix, domain) &&
      absl::ConsumeSuffix(&prefix, ".")) {
    r.key = std::string(prefix);
  }
  return r;
}

bool Idempotent(http::verb v) {
  switch (v) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::put:
    case http::verb::delete_:
    case http::verb::trace:
      return true;
    default:
      return false;
  }
}

std::optional<std::string> HttpsRedirectLocation(absl::string_view host_field,
                                                 absl::string_view target,
                                                 int https_port) {
  if (absl::StartsWith(target, "/.well-known/acme-challenge/")) {
    return std::nullopt;
  }
  absl::string_view host = host_field;
  // Without the port: "[::1]:8080" -> "[::1]", "a.example:8080" -> "a.example".
  size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos &&
      host.find(']', colon) == absl::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host.empty()) return std::nullopt;
  std::string location = absl::StrCat("https://", host);
  if (https_port > 0 && https_port != 443) {
    absl::StrAppend(&location, ":", https_port);
  }
  absl::StrAppend(&location, absl::StartsWith(target, "/") ? target : "/");
  return location;
}

}  // namespace tidal::gateway
