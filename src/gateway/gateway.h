#pragma once

// Gateway: Tidal's HTTP/1.1 reverse proxy. Routes requests by Host
// (<app>.<namespace>.<domain>) to ready instances, balances load, splits
// traffic by revision, holds requests while an app scales from zero
// (activator), and measures the traffic the scaler acts on.
//
// Boost.Beast/Asio stay in the gateway's .cc files and internal headers
// (pimpl): include this header freely.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "scaler/metrics_source.h"

namespace tidal::gateway {

// One instance of a revision, as the controller sees it.
struct Endpoint {
  std::string instance_id;         // unique across the gateway
  std::string host = "127.0.0.1";  // numeric address or resolvable name
  int port = 0;
  // A draining endpoint gets no new requests; its in-flight requests finish.
  bool draining = false;
};

// One revision's share of an app's traffic.
struct RevisionRoute {
  int64_t revision = 0;
  int weight_percent = 100;  // relative weight; weights need not sum to 100
  std::vector<Endpoint> endpoints;  // ready (and draining) instances
};

// The complete route of one app. Replaces the previous route of the app.
struct Route {
  std::string ns;
  std::string app;
  int concurrency = 0;  // per-instance in-flight limit; 0 = unlimited
  std::vector<RevisionRoute> revisions;
  // The app's request timeouts (template.timeoutSeconds and friends, as
  // Knative names them); zero: the gateway's. `timeout`: arrival to the
  // response's last byte (none by default); `response_start_timeout`: to the
  // response header (GatewayOptions::response_header_timeout);
  // `idle_timeout`: the longest gap in a response body
  // (GatewayOptions::client_idle_timeout).
  absl::Duration timeout = absl::ZeroDuration();
  absl::Duration response_start_timeout = absl::ZeroDuration();
  absl::Duration idle_timeout = absl::ZeroDuration();
  // The instances speak HTTP/2 without TLS (template.protocol h2c or grpc):
  // HTTP/2 clients' streams are relayed to them as HTTP/2 streams.
  bool h2 = false;
  // Revisions the app still has beyond those in `revisions` (its stable and
  // update revisions, revisions with instances not ready yet): their series
  // stay on /metrics (an app at zero keeps its revision's). A revision that
  // is neither routed nor live leaves /metrics at once.
  std::vector<int64_t> live_revisions;
};

// Cumulative figures of one app (revision 0) or one revision since the
// gateway began routing it, in a form that sums across gateways (the metrics
// reports of highly available mode, src/ha/cluster_metrics.h).
struct CumulativeTraffic {
  std::string ns;
  std::string app;
  int64_t revision = 0;
  uint64_t requests = 0;
  std::array<uint64_t, 5> classes{};  // responses 1xx..5xx
  // request_metrics.h's latency buckets (BucketFor), kBuckets of them.
  std::vector<uint64_t> latency_buckets;
  double area = 0;  // integral of in-flight requests over time (req-seconds)
  int64_t in_flight = 0;
};

// A certificate the HTTPS listener serves (docs/tls.md).
struct GatewayTlsCert {
  // The server names (SNI) it is for: "apps.example.com" (that name and every
  // name under it), "*.apps.example.com" (every name under it); the longest
  // match wins. Empty: the default, for clients that send no name or a name
  // no certificate matches (without one, the first certificate).
  std::string domain;
  std::string cert_file;  // PEM chain, the leaf first
  std::string key_file;   // PEM private key
};

struct GatewayOptions {
  std::string listen_address = "127.0.0.1";
  int port = 8080;  // 0 picks a free port; see Gateway::port()
  int threads = 0;  // 0 = hardware concurrency
  std::string domain = "tidal.localhost";

  // Limits.
  size_t max_header_bytes = 16 * 1024;
  uint64_t max_body_bytes = 1ull << 32;  // per request body; 0 = unlimited
  size_t max_idle_upstream_per_instance = 64;  // per thread
  // Sockets the gateway may hold: each client connection counts two (itself
  // and the upstream connection it may open), each idle pooled upstream
  // connection one (closed first when a client needs room). Beyond it new
  // client connections get a 503 and are closed, so the gateway never takes
  // the descriptors the rest of the process needs. 0 = unlimited.
  int64_t max_connections = 0;
  // Client connections one address may hold at once; beyond it new ones get
  // a 503 and are closed. 0 = unlimited.
  int64_t max_connections_per_client = 1024;
  // Client connections waiting for a request (kept alive between requests,
  // or new and silent): beyond it, a new connection closes the longest idle
  // one of its thread. 0 = unlimited.
  int64_t max_idle_connections = 4096;
  // Largest response body relayed from an instance; beyond it the response
  // is cut (the client's connection closed mid-body: its headers are gone
  // already). Bodies are streamed, never held whole. 0 = unlimited.
  uint64_t max_response_body_bytes = 0;

  // Timeouts.
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration response_header_timeout = absl::Seconds(60);
  absl::Duration client_idle_timeout =
      absl::Seconds(60);  // keep-alive and body gaps
  // A request header must arrive whole within this: from the connection's
  // start for its first request, from its first byte on a kept-alive
  // connection (slowloris: a header sent a byte at a time is cut here).
  absl::Duration header_timeout = absl::Seconds(10);
  absl::Duration upstream_idle_timeout =
      absl::Seconds(30);  // pooled connections
  // An upgraded connection (WebSocket) with no byte either way this long is
  // closed.
  absl::Duration tunnel_idle_timeout = absl::Hours(1);

  // Per-app queue (activator at zero, or every instance at its concurrency
  // limit): overflow -> 503 with Retry-After, timeout -> 504.
  int queue_size = 1000;
  absl::Duration queue_timeout = absl::Seconds(30);

  // Connect retries on other instances for idempotent requests.
  int max_connect_attempts = 3;

  // A fresh upstream connection whose connect (or whose request's delivery)
  // takes longer than this, while other new connections to the instance are
  // pending, is taken for an overflowing accept backlog: the instance's
  // connect window halves and the request is queued again (docs/gateway.md,
  // "Scale from zero in tidald").
  absl::Duration connect_stall_threshold = absl::Milliseconds(250);

  // HTTPS (docs/tls.md): a second listener when tls_port >= 0 (0 picks a
  // free port; see Gateway::tls_port()), serving tls_certs by SNI. Their
  // files are checked every tls_reload_interval and a changed certificate is
  // served to new connections (a bad one keeps the old and is logged).
  std::string tls_listen_address = "127.0.0.1";
  int tls_port = -1;
  std::vector<GatewayTlsCert> tls_certs;
  absl::Duration tls_reload_interval = absl::Seconds(10);
  // The plain listener answers every request with 308 to https://
  // (but /.well-known/acme-challenge/, relayed for certificate issuers).
  bool https_redirect = false;

  // Called once when a request is held for an app that has no ready endpoint
  // (and again only after that queue has emptied). Runs on a gateway I/O
  // thread: it must return quickly (enqueue work) and must not block.
  std::function<void(const std::string& ns, const std::string& app)> on_demand;
  // Whether an app exists whose route has not been set yet: the controller
  // publishes an app's route moments after its spec is stored, and a request
  // sent as soon as `tidalctl apply` returns must not get 404. Such a request
  // waits, as it would for an app at zero, under a provisional route with no
  // instance, which the app's route replaces (or which is dropped when none
  // comes within queue_timeout). Without it, hosts without a route get 404 at
  // once. Called on a gateway I/O thread, only for hosts without a route: it
  // must be quick and must not block.
  std::function<bool(const std::string& ns, const std::string& app)> app_exists;
};

// The reverse proxy. Thread-safe: SetRoute/RemoveRoute/InFlight/metrics may be
// called from any thread while traffic flows. Start() once; Stop() (or the
// destructor) stops serving and joins the I/O threads.
class Gateway : public MetricsSource {
 public:
  explicit Gateway(GatewayOptions options);
  ~Gateway() override;
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds (SO_REUSEPORT, one acceptor per thread) and starts the threads.
  absl::Status Start();
  void Stop();
  int port() const;      // the bound port, valid after Start()
  int tls_port() const;  // the bound HTTPS port (-1: none), after Start()

  // Route table. Cheap, copy-on-write; requests held by the activator or the
  // concurrency queue are dispatched at once if the new route can take them.
  void SetRoute(const Route& route);
  // Removes the app: later requests get 404, held requests get 404.
  void RemoveRoute(const std::string& ns, const std::string& app);

  // Requests currently being served by an instance (0 if unknown).
  int InFlight(const std::string& instance_id) const;
  // Waits until the instance has no in-flight request. Returns false on
  // deadline. Mark it draining (or remove it) with SetRoute first.
  bool WaitDrained(const std::string& instance_id, absl::Time deadline) const;
  // Upgraded connections (WebSocket and other tunnels) open to the instance.
  // Each is also one in-flight request until it closes.
  int Tunnels(const std::string& instance_id) const;
  // Closes the upgraded connections to the instance (at the end of its
  // drain): a WebSocket client gets a close frame 1001 Going Away (when the
  // instance's side is between two frames), then the connection closes.
  // Returns at once; the connections close on the gateway's threads.
  void CloseTunnels(const std::string& instance_id);

  // Time of the last request that arrived for the app (InfinitePast if none).
  absl::Time LastRequestTime(const std::string& ns,
                             const std::string& app) const;
  // Requests waiting in the app's queue (activator and concurrency queue).
  int Queued(const std::string& ns, const std::string& app) const;

  // MetricsSource.
  std::vector<MetricSample> Samples(const std::string& ns,
                                    const std::string& app, int64_t revision,
                                    absl::Time after) override;
  RequestStats Stats(const std::string& ns, const std::string& app,
                     int64_t revision, absl::Duration window) override;

  // Every app and revision the gateway routes (or measured recently), with
  // its cumulative figures.
  std::vector<CumulativeTraffic> Traffic() const;

  // tidal_gateway_* metrics in Prometheus text exposition format.
  std::string PrometheusText() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal::gateway
