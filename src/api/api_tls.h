#pragma once

// ApiTlsOptions: how the gRPC API listener serves TLS (tidald's --tls-*
// flags), apart from service.h so that the daemon's config carries it
// without the service's headers.

#include <string>

#include "absl/time/time.h"

namespace tidal {

// TLS of the API listener (docs/tls.md). Off when cert_file is empty.
// The files are watched: a certificate (or client CA) rewritten in place is
// served to new connections within `reload_interval`, without a restart.
struct ApiTlsOptions {
  std::string cert_file;       // PEM chain, the leaf first
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // non-empty: mutual TLS (client certs required)
  absl::Duration reload_interval = absl::Seconds(10);
  bool enabled() const { return !cert_file.empty(); }
};

}  // namespace tidal
