#include "gateway/prometheus_text.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gateway/request_metrics.h"
#include "gateway/route_table.h"

namespace tidal::gateway {

std::string RenderPrometheusText(std::vector<const AppState*> apps,
                                 const GatewayCounters& counters,
                                 int64_t now_ns) {
  std::sort(apps.begin(), apps.end(), [](auto* a, auto* b) {
    return std::tie(a->ns, a->app) < std::tie(b->ns, b->app);
  });
  std::string requests, app_requests, concurrency, rps, durations, in_flight,
      queue, held, last;
  auto per_second = [&](const std::string& labels, const MetricSample& m) {
    absl::StrAppend(&concurrency, "tidal_gateway_concurrency{", labels, "} ",
                    absl::StrFormat("%.3f", m.concurrency), "\n");
    absl::StrAppend(&rps, "tidal_gateway_requests_per_second{", labels, "} ",
                    absl::StrFormat("%.3f", m.requests), "\n");
  };
  static const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (const AppState* app : apps) {
    const AppState& s = *app;
    std::string labels =
        absl::StrCat("namespace=\"", s.ns, "\",app=\"", s.app, "\"");
    for (auto& [rev, m] : s.RevisionMetrics()) {
      Totals t = m->Read(now_ns);
      std::string rl = absl::StrCat(labels, ",revision=\"", rev, "\"");
      per_second(rl, m->LastSecond());
      for (int c = 0; c < 5; ++c) {
        if (t.classes[c] == 0 && c != 1) continue;
        absl::StrAppend(&requests, "tidal_gateway_requests_total{", rl,
                        ",code_class=\"", kClasses[c], "\"} ", t.classes[c],
                        "\n");
      }
      uint64_t cum = 0;
      for (int b = 0; b < kFiniteBuckets; ++b) {
        cum += t.buckets[b];
        if (b % 4 != 0) continue;  // every doubling: 0.1ms, 0.2ms, ... ~105s
        absl::StrAppend(&durations,
                        "tidal_gateway_request_duration_seconds_bucket{", rl,
                        ",le=\"", BucketBoundSeconds(b), "\"} ", cum, "\n");
      }
      cum += t.buckets[kFiniteBuckets];
      absl::StrAppend(&durations,
                      "tidal_gateway_request_duration_seconds_bucket{", rl,
                      ",le=\"+Inf\"} ", cum, "\n");
      absl::StrAppend(&durations, "tidal_gateway_request_duration_seconds_sum{",
                      rl, "} ", t.latency_sum_s, "\n");
      absl::StrAppend(&durations,
                      "tidal_gateway_request_duration_seconds_count{", rl, "} ",
                      cum, "\n");
    }
    Totals app_totals = s.metrics.Read(now_ns);
    per_second(labels, s.metrics.LastSecond());
    // Every response of the app, the gateway's own (503 queue full, 504
    // queue timeout, 502 no instance reachable) included.
    for (int c = 0; c < 5; ++c) {
      if (app_totals.classes[c] == 0 && c != 1) continue;
      absl::StrAppend(&app_requests, "tidal_gateway_app_requests_total{",
                      labels, ",code_class=\"", kClasses[c], "\"} ",
                      app_totals.classes[c], "\n");
    }
    absl::StrAppend(&in_flight, "tidal_gateway_in_flight{", labels, "} ",
                    app_totals.in_flight, "\n");
    absl::StrAppend(&queue, "tidal_gateway_queue_length{", labels, "} ",
                    s.queued(), "\n");
    absl::StrAppend(&held, "tidal_gateway_activator_held{", labels, "} ",
                    s.held(), "\n");
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
                  "# HELP tidal_gateway_concurrency Requests in flight "
                  "averaged over the latest complete second, per app and "
                  "revision (what the scaler reads).\n"
                  "# TYPE tidal_gateway_concurrency gauge\n",
                  concurrency,
                  "# HELP tidal_gateway_requests_per_second Requests that "
                  "arrived in the latest complete second, per app and "
                  "revision.\n"
                  "# TYPE tidal_gateway_requests_per_second gauge\n",
                  rps,
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
