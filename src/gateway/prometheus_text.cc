#include "gateway/prometheus_text.h"

#include <algorithm>
#include <array>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/units.h"
#include "gateway/request_metrics.h"
#include "gateway/route_table.h"

namespace tidal::gateway {

namespace {

// The cumulative `_bucket` (every doubling: 0.1ms, 0.2ms, ... ~105s, then
// +Inf), `_sum` and `_count` samples of histogram `name`.
void AppendHistogram(std::string* out, absl::string_view name,
                     absl::string_view labels,
                     const std::array<uint64_t, kBuckets>& buckets,
                     double sum_s) {
  uint64_t cum = 0;
  for (int b = 0; b < kFiniteBuckets; ++b) {
    cum += buckets[b];
    if (b % 4 != 0) continue;
    absl::StrAppend(out, name, "_bucket{", labels, ",le=\"",
                    BucketBoundSeconds(b), "\"} ", cum, "\n");
  }
  cum += buckets[kFiniteBuckets];
  absl::StrAppend(out, name, "_bucket{", labels, ",le=\"+Inf\"} ", cum, "\n",
                  name, "_sum{", labels, "} ", FormatDouble(sum_s), "\n", name,
                  "_count{", labels, "} ", cum, "\n");
}

}  // namespace

std::string RenderPrometheusText(std::vector<const AppState*> apps,
                                 const GatewayCounters& counters,
                                 int64_t now_ns) {
  std::sort(apps.begin(), apps.end(), [](auto* a, auto* b) {
    return std::tie(a->ns, a->app) < std::tie(b->ns, b->app);
  });
  std::string requests, app_requests, revision_busy, app_busy, durations,
      in_flight, queue, held, last, cold_starts, cold_start_waits;
  static const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (const AppState* app : apps) {
    const AppState& s = *app;
    std::string labels =
        absl::StrCat("namespace=\"", s.ns, "\",app=\"", s.app, "\"");
    for (auto& [rev, m] : s.ExposedRevisionMetrics()) {
      Totals t = m->Read(now_ns);
      std::string rl = absl::StrCat(labels, ",revision=\"", rev, "\"");
      for (int c = 0; c < 5; ++c) {
        if (t.classes[c] == 0 && c != 1) continue;
        absl::StrAppend(&requests, "tidal_gateway_requests_total{", rl,
                        ",code_class=\"", kClasses[c], "\"} ", t.classes[c],
                        "\n");
      }
      absl::StrAppend(&revision_busy,
                      "tidal_gateway_revision_in_flight_seconds_total{", rl,
                      "} ", absl::StrFormat("%.6f", t.area), "\n");
      AppendHistogram(&durations, "tidal_gateway_request_duration_seconds", rl,
                      t.buckets, t.latency_sum_s);
    }
    Totals app_totals = s.metrics.Read(now_ns);
    // Every response of the app, the gateway's own (503 queue full, 504
    // queue timeout, 502 no instance reachable) included.
    for (int c = 0; c < 5; ++c) {
      if (app_totals.classes[c] == 0 && c != 1) continue;
      absl::StrAppend(&app_requests, "tidal_gateway_app_requests_total{",
                      labels, ",code_class=\"", kClasses[c], "\"} ",
                      app_totals.classes[c], "\n");
    }
    absl::StrAppend(&app_busy, "tidal_gateway_app_in_flight_seconds_total{",
                    labels, "} ", absl::StrFormat("%.6f", app_totals.area),
                    "\n");
    absl::StrAppend(&in_flight, "tidal_gateway_in_flight{", labels, "} ",
                    app_totals.in_flight, "\n");
    absl::StrAppend(&queue, "tidal_gateway_queue_length{", labels, "} ",
                    s.queued(), "\n");
    absl::StrAppend(&held, "tidal_gateway_activator_held{", labels, "} ",
                    s.held(), "\n");
    ColdStarts cs = s.cold_starts();
    absl::StrAppend(&cold_starts, "tidal_gateway_cold_starts_total{", labels,
                    "} ", cs.total, "\n");
    AppendHistogram(&cold_start_waits,
                    "tidal_gateway_cold_start_duration_seconds", labels,
                    cs.wait_buckets, cs.wait_sum_s);
    int64_t lr = s.last_request_ns.load(std::memory_order_relaxed);
    if (lr != 0) {
      absl::StrAppend(&last, "tidal_gateway_last_request_timestamp_seconds{",
                      labels, "} ", absl::StrFormat("%.3f", lr / 1e9), "\n");
    }
  }
  std::string out;
  absl::StrAppend(&out,
                  "# HELP tidal_gateway_requests_total Responses by app, "
                  "revision and status class.\n"
                  "# TYPE tidal_gateway_requests_total counter\n",
                  requests,
                  "# HELP tidal_gateway_app_requests_total Responses by app "
                  "and status class, the gateway's own 502/503/504 "
                  "included.\n"
                  "# TYPE tidal_gateway_app_requests_total counter\n",
                  app_requests,
                  "# HELP tidal_gateway_revision_in_flight_seconds_total "
                  "Requests in flight at the revision's instances, integrated "
                  "over time (request-seconds): rate() is the revision's "
                  "average concurrency.\n"
                  "# TYPE tidal_gateway_revision_in_flight_seconds_total "
                  "counter\n",
                  revision_busy,
                  "# HELP tidal_gateway_app_in_flight_seconds_total Requests "
                  "in flight per app, queued and held ones included, "
                  "integrated over time (request-seconds): rate() is the "
                  "app's average concurrency, what the scaler acts on.\n"
                  "# TYPE tidal_gateway_app_in_flight_seconds_total counter\n",
                  app_busy,
                  "# HELP tidal_gateway_request_duration_seconds Time from "
                  "request sent to the "
                  "instance to response end.\n"
                  "# TYPE tidal_gateway_request_duration_seconds histogram\n",
                  durations,
                  "# HELP tidal_gateway_in_flight Requests in flight per app, "
                  "queued ones included.\n"
                  "# TYPE tidal_gateway_in_flight gauge\n",
                  in_flight,
                  "# HELP tidal_gateway_queue_length Requests waiting for "
                  "capacity per app.\n"
                  "# TYPE tidal_gateway_queue_length gauge\n",
                  queue,
                  "# HELP tidal_gateway_activator_held Requests held while the "
                  "app has no ready "
                  "instance.\n"
                  "# TYPE tidal_gateway_activator_held gauge\n",
                  held,
                  "# HELP tidal_gateway_cold_starts_total Scales from zero "
                  "that served requests the activator held (counted when the "
                  "first instance takes the first of them).\n"
                  "# TYPE tidal_gateway_cold_starts_total counter\n",
                  cold_starts,
                  "# HELP tidal_gateway_cold_start_duration_seconds How long "
                  "each request held by the activator (the app had no ready "
                  "instance) waited for an instance, for those served.\n"
                  "# TYPE tidal_gateway_cold_start_duration_seconds "
                  "histogram\n",
                  cold_start_waits,
                  "# HELP tidal_gateway_last_request_timestamp_seconds Arrival "
                  "of the app's last "
                  "request.\n"
                  "# TYPE tidal_gateway_last_request_timestamp_seconds gauge\n",
                  last,
                  "# HELP tidal_gateway_unknown_host_total Requests for a host "
                  "with no app.\n"
                  "# TYPE tidal_gateway_unknown_host_total counter\n"
                  "tidal_gateway_unknown_host_total ",
                  counters.unknown_host_total, "\n",
                  "# HELP tidal_gateway_client_closed_total Requests whose "
                  "client went away before the response began (the upstream "
                  "connection is closed at once).\n"
                  "# TYPE tidal_gateway_client_closed_total counter\n"
                  "tidal_gateway_client_closed_total ",
                  counters.client_closed_total, "\n",
                  "# HELP tidal_gateway_connections_refused_total Client "
                  "connections refused at the connection limit.\n"
                  "# TYPE tidal_gateway_connections_refused_total counter\n"
                  "tidal_gateway_connections_refused_total ",
                  counters.connections_refused_total, "\n",
                  "# HELP tidal_gateway_client_connections_refused_total "
                  "Client connections refused because their address held "
                  "its limit (--gateway-max-connections-per-client).\n"
                  "# TYPE tidal_gateway_client_connections_refused_total "
                  "counter\n"
                  "tidal_gateway_client_connections_refused_total ",
                  counters.client_connections_refused_total, "\n",
                  "# HELP tidal_gateway_idle_connections Client connections "
                  "waiting for their next request (HTTP/1.1 keep-alive, "
                  "clear text and TLS), counted against "
                  "--gateway-max-idle-connections.\n"
                  "# TYPE tidal_gateway_idle_connections gauge\n"
                  "tidal_gateway_idle_connections ",
                  counters.idle_connections, "\n",
                  "# HELP tidal_gateway_idle_connections_closed_total Idle "
                  "client connections closed to stay under the idle cap "
                  "(--gateway-max-idle-connections).\n"
                  "# TYPE tidal_gateway_idle_connections_closed_total "
                  "counter\n"
                  "tidal_gateway_idle_connections_closed_total ",
                  counters.idle_connections_closed_total, "\n",
                  "# HELP tidal_gateway_accept_errors_total Failed accepts "
                  "(EMFILE and the like; retried after a short pause).\n"
                  "# TYPE tidal_gateway_accept_errors_total counter\n"
                  "tidal_gateway_accept_errors_total ",
                  counters.accept_errors_total, "\n",
                  "# HELP tidal_gateway_tls_handshake_errors_total Failed "
                  "TLS handshakes on the HTTPS listener.\n"
                  "# TYPE tidal_gateway_tls_handshake_errors_total counter\n"
                  "tidal_gateway_tls_handshake_errors_total ",
                  counters.tls_handshake_errors_total, "\n",
                  "# HELP tidal_gateway_tunnels_total Upgraded connections "
                  "(WebSocket and other Upgrades) opened.\n"
                  "# TYPE tidal_gateway_tunnels_total counter\n"
                  "tidal_gateway_tunnels_total ",
                  counters.tunnels_total, "\n",
                  "# HELP tidal_gateway_tunnels_open Upgraded connections "
                  "open now.\n"
                  "# TYPE tidal_gateway_tunnels_open gauge\n"
                  "tidal_gateway_tunnels_open ",
                  counters.tunnels_open, "\n",
                  "# HELP tidal_gateway_tunnels_going_away_total Upgraded "
                  "connections closed at the end of their instance's drain "
                  "(WebSocket: 1001 Going Away).\n"
                  "# TYPE tidal_gateway_tunnels_going_away_total counter\n"
                  "tidal_gateway_tunnels_going_away_total ",
                  counters.tunnels_going_away_total, "\n",
                  "# HELP tidal_gateway_connection_slots Sockets held or "
                  "reserved: two per client connection, one per idle pooled "
                  "upstream connection.\n"
                  "# TYPE tidal_gateway_connection_slots gauge\n"
                  "tidal_gateway_connection_slots ",
                  counters.connection_slots, "\n",
                  "# HELP tidal_gateway_max_connections The limit on "
                  "connection slots (0: none).\n"
                  "# TYPE tidal_gateway_max_connections gauge\n"
                  "tidal_gateway_max_connections ",
                  counters.max_connections, "\n");
  return out;
}

}  // namespace tidal::gateway
