#include "common/port_check.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tidal::common {

absl::Status CheckPortFree(const std::string& ip, int port,
                           absl::string_view what) {
  if (port == 0) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (getaddrinfo(ip.c_str(), service.c_str(), &hints, &found) != 0) {
    return absl::OkStatus();  // not an IP literal
  }
  int err = 0;
  const int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC,
                        found->ai_protocol);
  if (fd < 0) {
    err = errno;
  } else {
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0) err = errno;
    close(fd);
  }
  freeaddrinfo(found);
  if (err == 0) return absl::OkStatus();
  const bool v6 = ip.find(':') != std::string::npos;
  return absl::UnavailableError(absl::StrCat(
      what, ": cannot listen on ", v6 ? "[" : "", ip, v6 ? "]" : "", ":", port,
      ": ", std::strerror(err),
      err == EADDRINUSE ? " (another program, or another tidald, listens there)"
                        : ""));
}

absl::Status CheckListenAddressFree(const std::string& host_port,
                                    absl::string_view what) {
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
    return absl::OkStatus();  // the server that binds it says what is wrong
  }
  std::string host = host_port.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return CheckPortFree(host, port, what);
}

}  // namespace tidal::common
