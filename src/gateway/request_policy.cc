#include "gateway/request_policy.h"

#include <boost/asio/error.hpp>
#include <boost/beast/http/error.hpp>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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
  if (ec == http::error::header_limit) {
    return Rejection{http::status::request_header_fields_too_large,
                     "request header too large\n"};
  }
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
  return std::nullopt;
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
  size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos) host = host.substr(0, colon);
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
