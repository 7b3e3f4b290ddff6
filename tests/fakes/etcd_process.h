#pragma once

// EtcdProcess: a real single-member etcd for tests, running as a child
// process on free loopback ports with its data in a temp dir; stopped and
// removed on destruction. Used by the etcd store tests, tests/ha and e2e.

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/etcd_store.h"

namespace tidal::testing {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";

// Whether the etcd binary is installed (tests skip without it).
bool HaveEtcd();

// Not thread-safe (one owner, the test thread); the stores it opens are.
class EtcdProcess {
 public:
  // Serving clients over TLS: etcd's certificate and key, and the CA client
  // certificates must be signed by (etcd --client-cert-auth) unless empty.
  struct Tls {
    std::string cert_file;
    std::string key_file;
    std::string client_ca_file;
  };
  EtcdProcess();  // starts etcd (it may still be booting on return)
  explicit EtcdProcess(const Tls& tls);
  ~EtcdProcess();
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // "127.0.0.1:PORT", the client endpoint ("https://127.0.0.1:PORT" with
  // TLS).
  std::string endpoint() const;
  // Freezes etcd (SIGSTOP) / lets it run again (SIGCONT): an etcd that
  // stops answering, as behind a network partition.
  void Pause();
  void Resume();

  // What etcd wrote to stdout/stderr so far.
  std::string Log() const;

  // Opens a client, retrying until etcd answers or `timeout` passes (the
  // error then carries etcd's log).
  absl::StatusOr<std::unique_ptr<EtcdStore>> Open(
      EtcdStore::Options options = EtcdStore::Options(),
      absl::Duration timeout = absl::Seconds(30)) const;

 private:
  std::string dir_;
  bool tls_ = false;
  int client_port_ = -1;
  pid_t pid_ = -1;
};

}  // namespace tidal::testing
