#pragma once

// FreeLoopbackPort: a TCP port on 127.0.0.1 that was free a moment ago (the
// kernel picked it for a socket bound to port 0, then closed). Far less
// likely to be taken than a fixed port, which any test's outgoing
// connection may get from the ephemeral range.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tidal::testing {

inline int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace tidal::testing
