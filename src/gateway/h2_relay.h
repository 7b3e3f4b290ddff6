#pragma once

// HTTP/2 in the gateway (nghttp2): a client connection that speaks HTTP/2
// (h2c with prior knowledge, or "h2" chosen by ALPN on the HTTPS listener)
// is served by an H2Conn, and each of its streams is one request: routed by
// :authority, counted in the app's and revision's metrics, held by the
// activator like any request, and relayed as a stream of a multiplexed
// HTTP/2 connection to an instance of an app whose template says
// `protocol: h2c` or `grpc` (H2Upstream, one per instance and worker).
// Bodies flow both ways as they come, bounded by HTTP/2 flow control: the
// gateway returns window to a sender only once the other side took the
// bytes. Response trailers (gRPC's grpc-status) are relayed; `grpc-timeout`
// bounds the stream. A stream for an app that speaks HTTP/1.1 is refused
// with HTTP_1_1_REQUIRED (RFC 9113 section 7), on which clients retry over
// HTTP/1.1. Internal to the gateway; everything here runs on its worker's
// thread.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

struct nghttp2_session;

namespace tidal::gateway {

struct Worker;
class ClientStream;
struct EndpointState;
struct H2Stream;
class H2Upstream;

// Whether `received` (what a connection sent first) begins with the request
// line of HTTP/2's client preface, "PRI * HTTP/2.0\r\n".
bool IsH2Preface(absl::string_view received);

// gRPC's status code as the HTTP status the metrics count it as (the
// mapping of grpc-gateway and Google's API guidelines: OK 200, CANCELLED
// 499, INVALID_ARGUMENT 400, DEADLINE_EXCEEDED 504, NOT_FOUND 404, ...,
// UNAVAILABLE 503, INTERNAL 500).
int GrpcStatusToHttp(int grpc_status);

// The seconds/milliseconds of a grpc-timeout value ("100m", "5S"); -1 when
// it does not parse.
int64_t ParseGrpcTimeoutMs(absl::string_view value);

// An HTTP/1.1 request that asked for HTTP/2 (Upgrade: h2c, RFC 7540
// section 3.2), without a body.
struct H2Upgrade {
  std::string http2_settings;  // the HTTP2-Settings field (base64url)
  std::string method, target, host;
  // The other fields, names lower-case, without the connection's own
  // (Connection, Upgrade, HTTP2-Settings, Host, Keep-Alive, TE...).
  std::vector<std::pair<std::string, std::string>> fields;
};

// One client connection speaking HTTP/2. Owned by its Session (which keeps
// the socket).
class H2Conn : public std::enable_shared_from_this<H2Conn> {
 public:
  // `owner` (the session, which owns this and the socket) is held by every
  // pending operation. `deadline` is the session's deadline slot, which the
  // worker's sweep reads: the connection keeps it at its earliest deadline.
  H2Conn(Worker* w, ClientStream& client, std::string client_ip, bool tls,
         std::weak_ptr<void> owner, int64_t* deadline);
  ~H2Conn();
  H2Conn(const H2Conn&) = delete;
  H2Conn& operator=(const H2Conn&) = delete;

  // Starts the session with `received`: the bytes already read from the
  // client (the preface). With `upgrade`, the connection switches from
  // HTTP/1.1 (the 101 is sent first) and its request is stream 1. False: the
  // session could not start (the connection closes).
  bool Start(absl::string_view received, const H2Upgrade* upgrade = nullptr);

  // The sweep: expires held, silent or timed-out streams and an idle
  // connection.
  void OnDeadline();

  // From H2Upstream and H2Stream (same thread).
  // `waited`: dispatched from the app's queue.
  void OnLease(const std::shared_ptr<H2Stream>& s,
               std::shared_ptr<EndpointState> lease, bool waited = false);
  void OnUpstreamConnectFailed(const std::shared_ptr<H2Stream>& s);
  void OnResponseHeaders(H2Stream* s, bool end_stream);
  void OnResponseData(H2Stream* s);
  void OnUpstreamClosed(H2Stream* s, uint32_t error_code);
  // The upstream took `n` request bytes: the client may send more.
  void Consume(H2Stream* s, size_t n);
  void ScheduleFlush();

  nghttp2_session* session() const { return session_; }
  Worker* worker() const { return w_; }

 private:
  friend struct H2Callbacks;

  void Read();
  void Flush();
  void CloseClient();
  // No stream is open: the connection closes after the idle timeout.
  void MarkIdle();
  void SetDeadlineAtMost(int64_t ms) {
    if (*deadline_ == 0 || ms < *deadline_) *deadline_ = ms;
  }

  // Stream events from nghttp2.
  void OnRequest(H2Stream* s);
  // A gRPC call (not gRPC-Web) to an app whose route says HTTP/1.1: answers
  // UNIMPLEMENTED naming spec.template.protocol and returns true.
  bool RefusedGrpcToHttp1(H2Stream* s);
  void OnStreamClose(int32_t id, uint32_t error_code);
  void Acquire(const std::shared_ptr<H2Stream>& s);
  // `grpc_code` (>= 0): the grpc-status of a gRPC call's answer, instead of
  // the one `status` maps to.
  void Respond(H2Stream* s, int status, const std::string& body,
               const std::string& location = "", int grpc_code = -1);
  void FinishStream(H2Stream* s, int status);
  void ResetStream(H2Stream* s, uint32_t error_code);
  // The request body passed --gateway-max-body: 413, or a reset when the
  // response has begun.
  void OnBodyTooLarge(H2Stream* s);

  Worker* const w_;
  ClientStream& client_;
  const std::string client_ip_;
  const bool tls_;
  std::weak_ptr<void> owner_;
  int64_t* const deadline_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::shared_ptr<H2Stream>> streams_;
  std::unique_ptr<uint8_t[]> rbuf_;
  std::string wbuf_;
  std::string prefix_;  // written before the frames: the 101 of an upgrade
  bool reading_ = false;
  bool writing_ = false;
  bool flush_posted_ = false;
  bool closed_ = false;
  bool dying_ = false;
  int64_t idle_since_ms_ = 0;
};

// The HTTP/2 connections of one worker to instances, one per endpoint.
class H2UpstreamPool {
 public:
  explicit H2UpstreamPool(Worker* w) : w_(w) {}
  ~H2UpstreamPool();
  // A usable connection to `lease`'s endpoint (connecting, or a new one).
  std::shared_ptr<H2Upstream> Get(const std::shared_ptr<EndpointState>& lease);
  void Forget(uint64_t uid, const H2Upstream* conn);
  // Closes connections idle for `idle_ms` or to removed endpoints.
  void Expire(int64_t now_ms, int64_t idle_ms);

 private:
  Worker* const w_;
  std::unordered_map<uint64_t, std::shared_ptr<H2Upstream>> conns_;
};

}  // namespace tidal::gateway
