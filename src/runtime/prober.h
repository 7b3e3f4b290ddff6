#pragma once

// Readiness and liveness probes of the process runtime: a probe from the
// template resolved against its defaults (as Kubernetes has them), and one
// probe attempt run on an asio io_context (TCP connect, and for HTTP a GET
// whose status must be 2xx/3xx). What the results mean for an instance
// (ready, restarted, marked never-ready) is ProcessRuntime's.

#include <functional>
#include <string>

#include "absl/time/time.h"
#include "tidal/v1/app.pb.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace tidal {

// A probe resolved against its defaults and the instance's port.
struct ProbeConfig {
  bool http = false;
  std::string path = "/";
  int port = 0;
  absl::Duration initial_delay;
  absl::Duration period;
  absl::Duration timeout;
  int failure_threshold = 3;
  int success_threshold = 1;
};

// Defaults: the instance's port, path "/", a TCP probe when neither httpGet
// nor tcpSocket is set; period 1s for readiness and 10s for liveness,
// timeout 1s, failureThreshold 3, successThreshold 1 (each at least 1).
ProbeConfig ResolveProbe(const tidal::v1::Probe& p, bool liveness,
                         int instance_port);

struct ProbeResult {
  bool ok = false;
  bool connected = false;
  std::string message;    // why it failed ("" when ok)
  bool answered = false;  // an HTTP status line came back (ok or not)
};

// Runs one probe attempt against host:cfg.port on `io`; `done` is called
// once, on io's thread, with the result (a timer bounds the attempt by
// cfg.timeout).
void RunProbe(boost::asio::io_context& io, const ProbeConfig& cfg,
              const std::string& host,
              std::function<void(const ProbeResult&)> done);

// Whether connected socket `fd` is connected to itself: a connect to a
// local port nobody listens on can pick that very port as its own source
// port when the port lies in the kernel's ephemeral range (TCP simultaneous
// open), and then succeeds. A probe treats it as refused, as Go's dialer
// (kubelet's) does.
bool IsSelfConnected(int fd);

// "10s", "2m40s", "100ms": durations in messages, like kubelet's.
std::string ShortDuration(absl::Duration d);

}  // namespace tidal
