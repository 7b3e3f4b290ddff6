#pragma once

// AdminServer: tidald's small HTTP endpoint for operators and Prometheus:
// GET /metrics (text format 0.0.4), /healthz, /readyz. One thread; admin
// traffic is light. Boost.Beast stays in the .cc. Thread-safe.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

class AdminServer {
 public:
  // `metrics` renders the whole /metrics body; `ready` answers /readyz (200
  // "ready", or 503 "not ready: <its message>"), followed by the lines
  // `ready_detail` returns, if given ("leader: n1 since ...").
  AdminServer(std::function<std::string()> metrics,
              std::function<absl::Status()> ready,
              std::function<std::string()> ready_detail = nullptr);
  ~AdminServer();

  // /readyz/gateway: 200 "ready" or 503 "not ready: <its message>" from
  // `ready` (for load balancers in front of the gateway). Before Start.
  void set_gateway_ready(std::function<absl::Status()> ready);

  // Requests whose target `takes` accepts are handed over with their
  // connection: `adopt` gets the socket and the bytes read from it (the
  // request, and what followed); the admin server forgets it (the
  // dashboard under /ui/). Before Start.
  void set_handoff(std::function<bool(const std::string& target)> takes,
                   std::function<void(int fd, std::string consumed)> adopt);

  // address "host:port" (port 0: any free port).
  absl::Status Start(const std::string& address);
  void Stop();
  int port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Process figures in Prometheus format (resident memory, CPU seconds,
// threads, open fds, start time) read from /proc/self.
std::string ProcessMetricsText();

// The scaler's and the deployer's series of each app, from its status
// (docs/operations.md, "Metrics"): tidal_app_desired_replicas,
// tidal_app_ready_replicas, tidal_app_scaler_panic (0/1) and
// tidal_app_rollout_phase{phase} (1 for the app's phase, 0 for the others,
// as kube-state-metrics writes a state), each with HELP and TYPE once.
std::string AppMetricsText(const std::vector<tidal::v1::App>& apps);

}  // namespace tidal
