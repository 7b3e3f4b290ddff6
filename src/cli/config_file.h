#pragma once

#include <sys/types.h>

// tidalctl's config file (~/.config/tidal/config.yaml, like a kubeconfig):
// named contexts, each a server with the credentials and default namespace
// to use with it, and the current one. docs/auth.md has the format:
//
//   current-context: prod
//   contexts:
//   - name: prod
//     server: tidal.example.com:7070
//     token: tidal_...            # or token-file: /path
//     namespace: team-a
//     certificate-authority: /etc/tidal/ca.pem
//     client-certificate: ...     # mTLS
//     client-key: ...
//   server: 127.0.0.1:7070        # older files: a server and nothing else

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tidal::cli {

struct ClientContext {
  std::string name;
  std::string server;
  std::string token;
  std::string token_file;
  std::string ns;
  std::string certificate_authority;
  std::string client_certificate;
  std::string client_key;
  std::string tls_server_name;
};

struct ClientConfig {
  std::string current_context;
  std::vector<ClientContext> contexts;
  std::string server;  // the older top-level `server:`

  // The named context, or the current one for ""; nullptr when none.
  const ClientContext* Find(const std::string& name) const;
  ClientContext* FindOrAdd(const std::string& name);
};

// A missing file is an empty config; a file that cannot be parsed is
// InvalidArgument naming it and the line.
absl::StatusOr<ClientConfig> LoadClientConfig(const std::string& path);
// Written whole (mode 0600: it holds tokens), through a temporary file.
absl::Status SaveClientConfig(const std::string& path,
                              const ClientConfig& config);

// The token a context names (its token, or the first line of its token
// file); "" when it names none.
absl::StatusOr<std::string> ContextToken(const ClientContext& c);

// Where tidald writes its bootstrap admin token by default
// (<data dir>/admin.token of each default data directory), for a tidalctl
// on the same machine: the first of them this user can read, and its
// owner (the user tidald runs as).
struct LocalToken {
  std::string token;
  std::string file;
  uid_t owner = 0;
};
std::optional<LocalToken> LocalBootstrapToken();

// The users of the sockets listening on TCP `port` (any local address, IPv4
// or IPv6; /proc/net/tcp, tcp6): the local bootstrap token goes only to a
// server its owner runs, not to whatever process of another user (an
// instance) listens on the port.
std::vector<uid_t> ListenerUids(int port);

}  // namespace tidal::cli
