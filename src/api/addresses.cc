#include "api/addresses.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>

namespace tidal {
namespace {

bool In(uint32_t a, uint32_t net, int bits) {
  uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (a & mask) == (net & mask);
}

constexpr uint32_t Ip(int a, int b, int c, int d) {
  return (uint32_t(a) << 24) | (uint32_t(b) << 16) | (uint32_t(c) << 8) |
         uint32_t(d);
}

// `a` in host byte order.
AddressClass ClassifyV4(uint32_t a) {
  if (In(a, Ip(0, 0, 0, 0), 8)) return AddressClass::kUnspecified;
  if (In(a, Ip(127, 0, 0, 0), 8)) return AddressClass::kLoopback;
  if (In(a, Ip(10, 0, 0, 0), 8) || In(a, Ip(172, 16, 0, 0), 12) ||
      In(a, Ip(192, 168, 0, 0), 16) || In(a, Ip(100, 64, 0, 0), 10)) {
    return AddressClass::kPrivate;
  }
  if (In(a, Ip(169, 254, 0, 0), 16)) return AddressClass::kLinkLocal;
  if (In(a, Ip(224, 0, 0, 0), 4)) return AddressClass::kMulticast;
  if (In(a, Ip(240, 0, 0, 0), 4) || In(a, Ip(192, 0, 0, 0), 24) ||
      In(a, Ip(198, 18, 0, 0), 15) || In(a, Ip(192, 0, 2, 0), 24) ||
      In(a, Ip(198, 51, 100, 0), 24) || In(a, Ip(203, 0, 113, 0), 24)) {
    return AddressClass::kReserved;
  }
  return AddressClass::kPublic;
}

uint32_t V4At(const uint8_t* b) {
  return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) |
         (uint32_t(b[2]) << 8) | uint32_t(b[3]);
}

AddressClass ClassifyV6(const uint8_t* b) {
  static const uint8_t kZero[16] = {};
  bool zero10 = std::memcmp(b, kZero, 10) == 0;
  if (std::memcmp(b, kZero, 16) == 0) return AddressClass::kUnspecified;
  if (std::memcmp(b, kZero, 15) == 0 && b[15] == 1) {
    return AddressClass::kLoopback;
  }
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
  if (zero10 &&
      ((b[10] == 0xff && b[11] == 0xff) || (b[10] == 0 && b[11] == 0))) {
    return ClassifyV4(V4At(b + 12));
  }
  // 64:ff9b::a.b.c.d (NAT64) reaches the IPv4 address through a gateway.
  static const uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0,
                                     0, 0,    0,    0,    0, 0};
  if (std::memcmp(b, kNat64, 12) == 0) return ClassifyV4(V4At(b + 12));
  // 2002:a.b.c.d::/48 (6to4).
  if (b[0] == 0x20 && b[1] == 0x02) {
    AddressClass c = ClassifyV4(V4At(b + 2));
    if (c != AddressClass::kPublic) return c;
  }
  if (b[0] == 0xff) return AddressClass::kMulticast;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return AddressClass::kLinkLocal;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return AddressClass::kPrivate;
  if ((b[0] & 0xfe) == 0xfc) return AddressClass::kUniqueLocal;
  // 2001:db8::/32, documentation.
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) {
    return AddressClass::kReserved;
  }
  return AddressClass::kPublic;
}

}  // namespace

const char* AddressClassName(AddressClass c) {
  switch (c) {
    case AddressClass::kNotAnAddress:
      return "not an";
    case AddressClass::kPublic:
      return "a public";
    case AddressClass::kLoopback:
      return "a loopback";
    case AddressClass::kPrivate:
      return "a private";
    case AddressClass::kLinkLocal:
      return "a link-local";
    case AddressClass::kUniqueLocal:
      return "a unique-local";
    case AddressClass::kMulticast:
      return "a multicast";
    case AddressClass::kUnspecified:
      return "an unspecified";
    case AddressClass::kReserved:
      return "a reserved";
  }
  return "an unknown";
}

AddressClass ClassifyLiteral(std::string_view host_in) {
  std::string host(host_in);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  // A zone ("fe80::1%eth0") does not change the class.
  if (size_t pct = host.find('%'); pct != std::string::npos) {
    host.resize(pct);
  }
  if (host.empty() || host.find('\0') != std::string::npos) {
    return AddressClass::kNotAnAddress;
  }
  in6_addr a6;
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    return ClassifyV6(a6.s6_addr);
  }
  // inet_aton takes what getaddrinfo takes as numeric IPv4: "127.1",
  // "0x7f.1", "2130706433" as well as dotted quads.
  in_addr a4;
  if (inet_aton(host.c_str(), &a4) != 0) return ClassifyV4(ntohl(a4.s_addr));
  return AddressClass::kNotAnAddress;
}

AddressClass ClassifySockaddr(const struct sockaddr* addr) {
  if (addr == nullptr) return AddressClass::kReserved;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return ClassifyV4(ntohl(in->sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    return ClassifyV6(in6->sin6_addr.s6_addr);
  }
  return AddressClass::kReserved;
}

std::string SockaddrText(const struct sockaddr* addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr == nullptr) return "";
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr,
              buf, sizeof(buf));
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr,
              buf, sizeof(buf));
  }
  return buf;
}

std::string UrlHost(std::string_view url) {
  size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return "";
  std::string_view rest = url.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    rest = rest.substr(at + 1);
  }
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    return std::string(rest.substr(1, close == std::string_view::npos
                                          ? std::string_view::npos
                                          : close - 1));
  }
  return std::string(rest.substr(0, rest.rfind(':')));
}

}  // namespace tidal
