#pragma once

// The gateway's /metrics page: tidal_gateway_* series in the Prometheus text
// exposition format, rendered from the apps' metrics and the gateway's own
// counters. No locks of its own: reads AppState and TrafficMetrics, which
// are thread-safe.

#include <cstdint>
#include <string>
#include <vector>

namespace tidal::gateway {

class AppState;

// The gateway-wide counters and gauges, read once per rendering.
struct GatewayCounters {
  uint64_t unknown_host_total = 0;
  uint64_t client_closed_total = 0;
  uint64_t connections_refused_total = 0;
  uint64_t client_connections_refused_total = 0;  // per-address limit
  int64_t idle_connections = 0;                // waiting for their next request
  uint64_t idle_connections_closed_total = 0;  // idle cap
  uint64_t accept_errors_total = 0;
  uint64_t tls_handshake_errors_total = 0;
  uint64_t tunnels_total = 0;
  int64_t tunnels_open = 0;
  uint64_t tunnels_going_away_total = 0;
  int64_t connection_slots = 0;  // held or reserved
  int64_t max_connections = 0;   // 0: no limit
};

// Every series of every app in `apps` (in namespace, app order; per revision
// where there are revisions), then the gateway-wide ones. `now_ns`: the
// instant the cumulative figures are read at (wall clock, nanoseconds).
std::string RenderPrometheusText(std::vector<const AppState*> apps,
                                 const GatewayCounters& counters,
                                 int64_t now_ns);

}  // namespace tidal::gateway
