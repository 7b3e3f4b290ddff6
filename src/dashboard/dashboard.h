#pragma once

// Dashboard: tidald's web dashboard (docs/dashboard.md). It serves the page
// (static files built into the binary) under /ui/ and a small JSON API under
// /ui/api/ that calls the gRPC API inside the process with the caller's
// token (the page's `Authorization: Bearer`), so authentication, the role
// checks and the audit log are the API's own; the page only hides what the
// API would refuse. Live views are one server-sent event stream per page
// (the app watch plus one history point a second); nothing polls.
//
// Connections come from its own listener (tidald --dashboard-listen) or are
// handed over by the admin server (the default: the admin port under /ui/).
// Each connection is served on a thread of its own (at most
// Options::max_connections; admin-like traffic). Boost.Beast and gRPC stay
// in the .cc.
//
// Thread-safe. Stop() ends every connection and stream and waits for them.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace grpc {
class Channel;
}

namespace tidal::dashboard {

class Dashboard {
 public:
  struct Options {
    // The API, in-process (ApiServer::InProcessChannel); null while none
    // runs (requests then get 503).
    std::function<std::shared_ptr<grpc::Channel>()> api;
    int max_connections = 64;
    // Seconds between two history events of a stream.
    int stream_period_ms = 1000;
    // How long a connection may take to send its next request (waiting
    // included), and one answer or event to leave; then it is closed.
    int request_timeout_ms = 120000;
    int write_timeout_ms = 30000;
  };
  explicit Dashboard(Options options);
  ~Dashboard();
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  // Listens on "host:port" (port 0: any) and serves every connection.
  absl::Status Listen(const std::string& address);
  int port() const;  // after Listen

  // Takes over a connection accepted elsewhere (the admin server): `fd` is
  // now the dashboard's, and `consumed` the bytes already read from it (a
  // whole first request, and whatever followed it).
  void Adopt(int fd, std::string consumed);

  // Closes the listener, every connection and every stream; waits for
  // their threads. Idempotent.
  void Stop();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Whether the admin server should hand a request for `target` over.
bool IsDashboardTarget(const std::string& target);

}  // namespace tidal::dashboard
