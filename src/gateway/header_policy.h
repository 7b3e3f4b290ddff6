#pragma once

// The gateway's header policy, free of sockets: which fields a proxied
// request and response lose and gain on the way (hop-by-hop fields,
// X-Forwarded-*, X-Request-Id, Expect), how a response is framed for the
// client (chunked, delimited by close, trailers announced or not), which
// fields are never relayed as trailers, and the responses the gateway makes
// itself. Pure functions over Beast messages: an internal header of the
// gateway's .cc files, tests and fuzz targets (gateway.h stays free of Beast).

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "gateway/h2_relay.h"

namespace tidal::gateway {

// A request and a response as the gateway relays them: the header whole,
// the body streamed through fixed buffers.
using ProxyRequest =
    boost::beast::http::request<boost::beast::http::buffer_body>;
using ProxyResponse =
    boost::beast::http::response<boost::beast::http::buffer_body>;

// Removes the hop-by-hop fields (RFC 9110 7.6.1): Connection and every field
// it names (but Transfer-Encoding, and the close / keep-alive options),
// Keep-Alive, Proxy-Connection, TE, Upgrade, Proxy-Authenticate and
// Proxy-Authorization. Transfer-Encoding is kept (the body is re-framed with
// it), and so is Trailer (trailer fields are relayed with a chunked body).
void StripHopByHop(boost::beast::http::fields& fields);

// True for fields that framing or routing own (Content-Length, Host, TE,
// Authorization, ...): never relayed as trailer fields (RFC 9110 6.5.1).
// Case-insensitive.
bool ForbiddenTrailer(absl::string_view name);

// 32 lower-case hex digits from two draws of `rng` (NextRandom).
std::string NewRequestId(uint64_t* rng);

// Rewrites a client's request header into the one sent to the instance:
// drops every Expect field (the gateway answers 100-continue itself, when the
// first Expect field asks for it) and the hop-by-hop
// fields, appends the client's address to X-Forwarded-For (or sets it), sets
// X-Forwarded-Proto to `proto` (https on the HTTPS listener), adds an
// X-Request-Id when there is none (from `rng`), and makes it HTTP/1.1
// keep-alive (the upstream connection is pooled). Returns true if the client
// sent "Expect: 100-continue".
// With `upgrade` (IsUpgradeRequest), the Upgrade field is kept and the
// Connection field says "Upgrade" instead of keep-alive.
bool PrepareUpstreamRequest(ProxyRequest& req, absl::string_view client_ip,
                            uint64_t* rng, absl::string_view proto = "http",
                            bool upgrade = false);

// True for an HTTP/1.1 request that asks to switch protocols (RFC 9110
// 7.8): an Upgrade field and the "upgrade" option in Connection. WebSocket
// is one (RFC 6455).
bool IsUpgradeRequest(const ProxyRequest& req);

// An HTTP/1.1 request asking for HTTP/2 (Upgrade: h2c with one
// HTTP2-Settings field, both named by Connection, RFC 7540 section 3.2):
// fills `out` (the request for stream 1, without the connection's own
// fields). The caller checks that it has no body.
bool H2cUpgradeOf(const ProxyRequest& req, H2Upgrade* out);

// Rewrites an instance's 101 Switching Protocols for the client: the
// hop-by-hop fields go but Upgrade, and Connection says "Upgrade". Returns
// the protocol switched to (the Upgrade field, lower case: "websocket").
std::string PrepareSwitchingResponse(ProxyResponse& res);

// Where the WebSocket frames (RFC 6455 5.2) a server sends through a tunnel
// begin and end, so that the gateway adds its own close frame only between
// two frames. Feed it every byte relayed, in order.
class WsFrameBoundary {
 public:
  void Consume(const unsigned char* data, size_t n);
  // Between two frames (and not inside a frame's header).
  bool AtBoundary() const { return need_ == 0 && header_len_ == 0; }

 private:
  unsigned char header_[14] = {};
  size_t header_len_ = 0;  // bytes of the current frame's header seen
  uint64_t need_ = 0;      // payload bytes of the current frame still to come
};

// The close frame a server sends: 1001 Going Away (RFC 6455 7.4.1),
// unmasked.
inline constexpr unsigned char kWsGoingAway[] = {0x88, 0x02, 0x03, 0xE9};

// How a response travels on to the client.
struct ResponseFraming {
  // The instance's connection may be pooled once the body is read.
  bool upstream_keep_alive = false;
  // The instance's body is chunked: trailer fields may follow it.
  bool chunked_in = false;
  // The client's connection stays open after the response.
  bool client_keep_alive = false;
};

// Rewrites an instance's response header for the client: drops the hop-by-hop
// fields; a body delimited by the instance closing its connection is chunked
// for an HTTP/1.1 client, or delimited by close for an HTTP/1.0 one; an
// HTTP/1.0 client never gets a chunked body (it is delimited by close
// instead); Trailer is announced only with a chunked body; the Connection
// field says whether the client connection stays open. `need_eof`: the
// parser says the body ends when the instance closes; `is_head`: the request
// was HEAD; `client_version`: 10 or 11; `client_keep_alive`: the client's
// request allowed keep-alive.
ResponseFraming PrepareClientResponse(ProxyResponse& res, bool need_eof,
                                      bool is_head, unsigned client_version,
                                      bool client_keep_alive);

// A response the gateway makes itself (404 unknown host, 503 queue full,
// 504, ...): HTTP/1.1, text/plain, Server: tidal-gateway, Retry-After: 1 if
// `retry_after`, Content-Length, and Connection: close unless `keep_alive`.
boost::beast::http::response<boost::beast::http::string_body> GatewayResponse(
    boost::beast::http::status status, std::string body, bool retry_after,
    bool keep_alive);

}  // namespace tidal::gateway
