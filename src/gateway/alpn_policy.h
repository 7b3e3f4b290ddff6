#pragma once

// Which server names the HTTPS listener's ALPN gives HTTP/2 ("h2"): those of
// apps that speak HTTP/2 to their instances (h2_relay.h). The others get
// HTTP/1.1, which every app speaks. Apart from tls_certs.h so that
// gateway_impl.h holds one without OpenSSL's headers.

#include "absl/strings/string_view.h"

namespace tidal::gateway {

struct AlpnPolicy {
  // Runs during a handshake, on the session's thread.
  bool (*wants_h2)(const void* arg, absl::string_view server_name) = nullptr;
  const void* arg = nullptr;
};

}  // namespace tidal::gateway
