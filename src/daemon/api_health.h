#pragma once

// ApiHealth: whether tidald's gRPC API serves new connections, for /readyz,
// and its recovery when it stops.
//
// Every `period` it calls Version over a fresh connection to the API's own
// listener (as tidalctl does), with a short deadline. gRPC 1.51 (Debian 12)
// stops polling its listener for good after one failed accept4 (EMFILE:
// grpc/grpc#20418, fixed in 1.57 by #33656): from then on every new
// connection waits in the backlog, while connections already open still
// work. When the probe fails `failures_before_restart` times in a row while
// the process has descriptors to spare, ApiHealth calls `restart` (which
// replaces the API server by a fresh one on the same address). Probes made
// while descriptors are exhausted count as failures for Healthy() but not
// towards a restart: the listener is not at fault then.
//
// Thread-safe; one probing thread between Start() and Stop().

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tidal {

class ApiHealth {
 public:
  struct Options {
    std::string target;  // "host:port" of the API listener
    // The listener speaks TLS (--tls-cert): a probe is a TLS ClientHello
    // over a fresh connection, answered by the server's first handshake
    // bytes (a Version call would need the clients' certificates with
    // mutual TLS; the listener's polling is what the probe is after).
    bool tls = false;
    absl::Duration period = absl::Seconds(1);
    absl::Duration deadline = absl::Seconds(1);
    int failures_before_restart = 3;
    int min_free_fds = 32;  // a restart needs at least this many
  };
  ApiHealth(Options options, std::function<absl::Status()> restart);
  ~ApiHealth();
  ApiHealth(const ApiHealth&) = delete;
  ApiHealth& operator=(const ApiHealth&) = delete;

  // Probes once (so Healthy() is right at once), then every period.
  void Start();
  void Stop();

  // The latest probe succeeded, and it is recent (within three periods).
  bool Healthy() const;
  // One probe: Version over a fresh connection.
  absl::Status Probe() const;

  // The API listener's address to dial for `listen` (a wildcard host is
  // dialled on loopback).
  static std::string DialTarget(const std::string& listen);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Free descriptors under the soft RLIMIT_NOFILE (counting /proc/self/fd).
int FreeDescriptors();

}  // namespace tidal
