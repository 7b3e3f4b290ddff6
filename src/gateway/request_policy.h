#pragma once

// What the gateway accepts from a client, free of sockets: the limits of its
// request parser, which unreadable requests get which answer (400, 413, 431,
// or none), how the Host header names an app, and which methods may be sent
// to another instance after a failed attempt. An internal header of the
// gateway's .cc files, tests and fuzz targets (gateway.h stays free of
// Beast).

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace tidal::gateway {

using RequestParser =
    boost::beast::http::request_parser<boost::beast::http::buffer_body>;

// Sets the limits of a fresh parser for one client request:
// GatewayOptions::max_header_bytes, and max_body_bytes (0: unlimited).
void LimitRequestParser(RequestParser& parser, size_t max_header_bytes,
                        uint64_t max_body_bytes);

// An answer the gateway makes itself instead of relaying the request.
struct Rejection {
  boost::beast::http::status status;
  std::string body;
};

// What a client gets whose request header could not be read (`ec` from the
// parser or the socket; `timed_out`: the client idled past its timeout):
// 431 for a header over the limit, 413 for a body over it (Content-Length),
// 400 for anything malformed; nothing (the connection is closed) when the
// client went away or idled.
std::optional<Rejection> RejectUnreadRequest(boost::system::error_code ec,
                                             bool timed_out);

// What a client gets whose request header was read but cannot be relayed as
// it was read: 400 for a Transfer-Encoding whose last coding is not chunked
// (RFC 9112 6.3: its length cannot be known), or split over several fields. The
// parser reads the body as chunked when the last field ends with chunked,
// but the message's own framing (what the upstream request would be framed
// by) reads the first field only: the body would go out raw under a chunked
// header, and whatever it held would reach the instance as the next request
// on the connection (request smuggling). One field listing every coding is
// relayed. nullopt: relay it.
std::optional<Rejection> RejectUnrelayable(
    const boost::beast::http::fields& header);

// Brings a request's target and Host into the form it is routed and
// relayed in (RFC 9112 3.2): an absolute-form target ("GET
// http://app.ns.domain/p?q") becomes origin-form ("/p?q") and its authority
// the Host field, whatever Host said (3.2.2). Otherwise exactly one Host
// field that is a host[:port] is required: 400 for an HTTP/1.1 request
// without one, for several, or for one with userinfo ("a@b"), a path,
// whitespace or other bytes no host name has. nullopt: route it.
std::optional<Rejection> NormalizeRequestTarget(
    boost::beast::http::request_header<>& req);

// 413: the request body passed max_body_bytes while it was relayed.
Rejection BodyTooLarge();

// 431: the request header passed max_header_bytes.
Rejection HeaderTooLarge();

// 404: no app for `host` (as HostRoute::host gives it).
Rejection UnknownHost(absl::string_view host);

// Routing by Host: <app>.<namespace>.<domain>[:port]; a trailing dot
// (a fully qualified name) names the same app.
struct HostRoute {
  std::string host;  // the Host field lower-cased, without port or final dot
  // The route table key "<app>.<namespace>" when `host` ends in "." and
  // `domain`; empty otherwise.
  std::string key;
};
HostRoute RouteForHost(absl::string_view host_field, absl::string_view domain);

// Where the plain listener redirects a request with
// GatewayOptions::https_redirect: https:// and the request's host (its port
// replaced by `https_port`, left out when it is 443) and target. nullopt: the
// request is served as it is: an ACME HTTP-01 challenge
// (/.well-known/acme-challenge/, which certificate issuers ask over plain
// HTTP), or no Host to redirect to.
std::optional<std::string> HttpsRedirectLocation(absl::string_view host_field,
                                                 absl::string_view target,
                                                 int https_port);

// Methods that may be sent again, to another instance, when the first could
// not be reached (RFC 9110 9.2.2): GET, HEAD, OPTIONS, PUT, DELETE, TRACE.
bool Idempotent(boost::beast::http::verb method);

}  // namespace tidal::gateway
