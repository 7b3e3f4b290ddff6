#pragma once

// The certificates of the gateway's HTTPS listener (GatewayOptions::
// tls_certs): an SSL context per certificate, chosen per connection by the
// server name the client sends (SNI), and reloaded when their files change.
// Internal to the gateway: Asio's SSL headers stay in the gateway's .cc
// files that include this one (gateway.cc, worker.cc, session.cc).

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "gateway/gateway.h"

namespace spdlog {
class logger;
}

namespace tidal::gateway {

// Which of `domains` serves `server_name` (SNI): an exact name
// ("apps.example.com") matches itself and every name under it, a wildcard
// ("*.apps.example.com") every name under it, at any depth
// (<app>.<ns>.apps.example.com); the longest match wins, an exact one over a
// wildcard of the same suffix. An empty domain matches nothing (it is the
// default). Case-insensitive; a trailing dot is ignored. -1: no match.
int MatchServerName(const std::vector<std::string>& domains,
                    absl::string_view server_name);

// Whether ALPN chose "h2" on `ssl`.
bool AlpnChoseH2(const SSL* ssl);

// One generation of the certificates: immutable, shared by the connections
// whose handshake began with it (each TLS connection holds it).
class CertSet {
 public:
  CertSet(std::vector<std::string> domains,
          std::vector<std::shared_ptr<boost::asio::ssl::context>> contexts);

  // The context a connection starts with: the default certificate's. The SNI
  // callback switches to the matching one.
  boost::asio::ssl::context& initial() const { return *contexts_[default_]; }
  // Makes `ssl` (a new server connection of initial()) use this set for SNI.
  void Attach(SSL* ssl) const;

  // The context for `server_name` (the default one if none matches).
  boost::asio::ssl::context& ForName(absl::string_view server_name) const;

 private:
  std::vector<std::string> domains_;
  std::vector<std::shared_ptr<boost::asio::ssl::context>> contexts_;
  size_t default_ = 0;
};

// The files of GatewayOptions::tls_certs, loaded, and reloaded when they
// change. Current() is lock-free from any thread; Reload() runs on one
// thread at a time (the gateway's ticker).
class TlsCerts {
 public:
  // Loads every certificate: an error names the files.
  static absl::StatusOr<std::unique_ptr<TlsCerts>> Load(
      const std::vector<GatewayTlsCert>& certs,
      std::shared_ptr<spdlog::logger> log);

  std::shared_ptr<const CertSet> Current() const {
    return std::atomic_load(&current_);
  }

  // Reloads the certificates whose files changed (modification time, size
  // or inode) and publishes a new CertSet if any did; a certificate that
  // does not load keeps the old one and is logged (once per change of its
  // files). Returns how many were replaced.
  int Reload();

  // An SSL context serving `cert` (ALPN http/1.1, TLS 1.2 and later, the
  // SNI callback of CertSet), from the files' contents.
  static absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> MakeContext(
      const GatewayTlsCert& cert);

 private:
  struct Stamp {
    int64_t mtime_ns = 0;
    int64_t size = -1;
    uint64_t inode = 0;
    bool operator==(const Stamp& o) const {
      return mtime_ns == o.mtime_ns && size == o.size && inode == o.inode;
    }
  };
  struct Entry {
    GatewayTlsCert cert;
    Stamp cert_stamp, key_stamp;    // of the files loaded
    Stamp failed_cert, failed_key;  // of the files that last failed to load
    std::shared_ptr<boost::asio::ssl::context> context;
  };
  static Stamp StampOf(const std::string& path);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<spdlog::logger> log_;
  absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Written under mu_, read with atomic_load.
  std::shared_ptr<const CertSet> current_;
};

}  // namespace tidal::gateway
