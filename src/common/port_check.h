#pragma once

// Whether a TCP port is free to listen on, asked before a server binds it.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tidal::common {

// Binds `ip`:`port` once without SO_REUSEPORT (SO_REUSEADDR only, so a port
// left in TIME_WAIT counts as free) and lets it go. A listener that set
// SO_REUSEPORT, as the gateway's do, would otherwise let a second program of
// the same user (another tidald by mistake) share its port, the kernel
// splitting the connections. Unavailable "WHAT: cannot listen on IP:PORT:
// REASON" when the port is taken; OK when it is free, for port 0, and for
// an `ip` that is not an IP literal (the server that binds it reports).
absl::Status CheckPortFree(const std::string& ip, int port,
                           absl::string_view what);

// CheckPortFree of a "HOST:PORT" or "[V6]:PORT" listen address.
absl::Status CheckListenAddressFree(const std::string& host_port,
                                    absl::string_view what);

}  // namespace tidal::common
