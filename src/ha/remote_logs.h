#pragma once

// Logs of an instance that runs on another node (docs/ha.md): its node's API
// is asked (Logs with from_node set, so it answers from its own instances
// and never asks a third node) and the chunks come back as a LogStream, so
// `tidalctl logs` works the same against any node.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/log_stream.h"

namespace tidal::ha {

// Where an instance's logs are: the node's API (host:port) and the instance.
struct RemoteLogTarget {
  std::string node;
  std::string api_address;
  std::string namespace_;
  std::string app;
  std::string instance_id;
};

// Opens the logs of an instance on another node (ClusterRuntime's seam).
using RemoteLogOpener =
    std::function<absl::StatusOr<std::unique_ptr<LogStream>>(
        const RemoteLogTarget& target, const LogOptions& options)>;

// How this node reaches other nodes' APIs when they speak TLS (tidald's
// --tls-cert on every node: docs/tls.md). The files are read at every call,
// so a certificate rotated in place is used from the next call on.
struct PeerTls {
  bool enabled = false;
  // PEM CA certificate(s) the peers' API certificates are checked against
  // (--tls-peer-ca, else --tls-client-ca); empty: the system's roots. A
  // peer's certificate must name the address it advertises (--advertise).
  std::string ca_file;
  // This node's certificate and key, presented to peers that ask for a
  // client certificate (--tls-client-ca); may be empty.
  std::string cert_file;
  std::string key_file;
};

// A RemoteLogOpener over gRPC: one channel per call to the node's API, the
// Logs call read on a thread of its own. Next waits on what that thread
// read; Cancel cancels the call. An API that cannot be reached or fails is
// an error of Next naming the node and its address; unreadable TLS files are
// an error of the opener naming the file. `token` (may be null) gives the
// bearer token this node calls other nodes' APIs with (its node token:
// docs/auth.md).
RemoteLogOpener GrpcRemoteLogOpener(
    std::function<std::string()> token = nullptr, PeerTls tls = {});

}  // namespace tidal::ha
