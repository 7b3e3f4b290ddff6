#pragma once

// Which kind of IP address a webhook would reach, for the rule that tidald
// sends webhooks only to public addresses unless --allow-private-webhooks
// (docs/rollouts.md, "Webhook targets"). Used at validation on literal
// addresses in URLs, and by the webhook sender on the exact address it is
// about to connect to. Pure functions; thread-safe.

#include <string>
#include <string_view>

struct sockaddr;

namespace tidal {

enum class AddressClass {
  kNotAnAddress,  // a host name (or nothing)
  kPublic,
  kLoopback,     // 127.0.0.0/8, ::1
  kPrivate,      // 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), fec0::/10
  kLinkLocal,    // 169.254/16 (cloud metadata), fe80::/10
  kUniqueLocal,  // fc00::/7
  kMulticast,    // 224/4, ff00::/8
  kUnspecified,  // 0.0.0.0/8, ::
  kReserved,     // 240/4 and broadcast, 192.0.0/24, 198.18/15, documentation
};

// "a loopback", "a link-local", ... (for "X is a loopback address").
const char* AddressClassName(AddressClass c);

// The class of `host` when it is an IP literal: IPv4 in any form the C
// library (and so libcurl) accepts ("127.0.0.1", "127.1", "0x7f000001",
// "2130706433"), IPv6 with or without brackets, IPv4-mapped, -compatible,
// NAT64 (64:ff9b::/96) and 6to4 (2002::/16) IPv6 by their IPv4 address.
// kNotAnAddress for a host name.
AddressClass ClassifyLiteral(std::string_view host);

// The class of a socket address (AF_INET or AF_INET6; others kReserved).
AddressClass ClassifySockaddr(const struct sockaddr* addr);

// The numeric text of a socket address ("127.0.0.1", "::1").
std::string SockaddrText(const struct sockaddr* addr);

// The host part of an http(s) URL: after "scheme://" and any "user@", before
// the port, path, query or fragment; IPv6 without its brackets.
std::string UrlHost(std::string_view url);

}  // namespace tidal
