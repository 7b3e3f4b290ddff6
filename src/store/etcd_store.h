#pragma once

// The Store over an etcd v3 cluster (gRPC KV and Watch services), for running
// several tidald replicas against one highly available source of truth.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace tidal {

namespace etcd_internal {
class Client;
class WatchRegistry;
// "[http://|https://]HOST:PORT,..." split: the HOST:PORTs, and whether they
// are https://. InvalidArgument for none, or a mix of https:// and not.
struct Endpoints {
  std::vector<std::string> hosts;
  bool tls = false;
};
absl::StatusOr<Endpoints> ParseEndpoints(const std::string& endpoints);
}  // namespace etcd_internal

// EtcdStore implements Store with etcd's own revisions: a txn is one etcd Txn
// whose compares check mod_revision (expected N), version == 0 (expected no
// key) or version > 0 (delete of an existing key); resource_version is the
// key's mod_revision, create_version its create_revision, and the store
// revision etcd's header revision; an Op::Check compares the key's create
// revision. Watches are etcd watches starting at
// from_version + 1; a compacted start revision, or a watch whose client-side
// buffer overflows because nobody reads it, fails with OutOfRange.
//
// Reads are linearizable. A Txn that fails with Unavailable may or may not
// have been applied (etcd semantics): callers re-read before retrying.
//
// Thread-safe. Each watch runs one gRPC stream with one reader thread.
class EtcdStore : public Store {
 public:
  struct Options {
    // Deadline of each unary call (Txn, Range, Compact).
    absl::Duration rpc_timeout = absl::Seconds(10);
    // How long Open waits for a first successful call.
    absl::Duration connect_timeout = absl::Seconds(5);
    // Events a watch buffers before the reader is declared too slow.
    int64_t watch_buffer_events = 100000;
    // TLS to etcd (docs/ha.md, "Securing etcd"): on when `enabled` or when
    // the endpoints are https://. PEM contents, not file names.
    struct Tls {
      bool enabled = false;
      std::string root_certs;   // the CA etcd's certificates are checked
                                // against; empty: the system's roots
      std::string cert_chain;   // a client certificate (etcd
      std::string private_key;  // --client-cert-auth), with its key
      // The name every member's certificate must carry; empty: each
      // carries one of the endpoints' hosts (its own).
      std::string server_name;
    };
    Tls tls;
  };

  // `endpoints` is "HOST:PORT[,HOST:PORT...]" (IPv4, [IPv6] or names, which
  // are resolved once here), each optionally http:// or https:// (all
  // alike; https:// turns TLS on); the client fails over between them.
  // Errors: InvalidArgument for a malformed list, Unavailable when no
  // endpoint answers within connect_timeout.
  static absl::StatusOr<std::unique_ptr<EtcdStore>> Open(
      const std::string& endpoints, Options options);
  static absl::StatusOr<std::unique_ptr<EtcdStore>> Open(
      const std::string& endpoints) {
    return Open(endpoints, Options());
  }

  // Cancels open watches (their Next returns Cancelled).
  ~EtcdStore() override;

  EtcdStore(const EtcdStore&) = delete;
  EtcdStore& operator=(const EtcdStore&) = delete;

  absl::StatusOr<int64_t> Txn(const std::vector<Op>& ops) override;
  absl::StatusOr<KeyValue> Get(const std::string& key) override;
  absl::StatusOr<ListResult> List(const std::string& prefix,
                                  int64_t limit = 0) override;
  absl::StatusOr<ListResult> ListAfter(const std::string& prefix,
                                       const std::string& after,
                                       int64_t limit) override;
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(
      const std::string& prefix, int64_t from_version) override;
  absl::StatusOr<int64_t> CurrentVersion() override;

  // WatchPrefix that waits at most `timeout` (instead of rpc_timeout) for
  // etcd to confirm the watch: Unavailable after that.
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefixWithin(
      const std::string& prefix, int64_t from_version, absl::Duration timeout);

  // Discards history up to `revision` (etcd Compact, physical). Watches from
  // older revisions then get OutOfRange. OutOfRange when `revision` was
  // compacted already (or is in the future).
  absl::Status Compact(int64_t revision);

  // Leases (etcd's Lease service). A put with Op::lease attaches the key to
  // a lease; etcd deletes the key when the lease is revoked or expires.
  //
  // Grants a lease of at least `ttl` (rounded up to whole seconds; etcd may
  // raise a small TTL to its minimum) and returns its id.
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl);
  // Renews lease `id` once (one round trip on a LeaseKeepAlive stream) and
  // returns its remaining TTL, counted from when etcd answered. NotFound
  // when the lease is gone (revoked or expired). `timeout` bounds the call
  // (zero: Options::rpc_timeout); Unavailable when it passes.
  absl::StatusOr<absl::Duration> KeepAliveOnce(
      int64_t id, absl::Duration timeout = absl::ZeroDuration());
  // Revokes lease `id`, deleting its keys. NotFound when it is gone.
  // `timeout` as for KeepAliveOnce.
  absl::Status RevokeLease(int64_t id,
                           absl::Duration timeout = absl::ZeroDuration());

 private:
  EtcdStore(Options options, std::shared_ptr<etcd_internal::Client> client);

  // Constant after construction.
  const Options options_;
  const std::shared_ptr<etcd_internal::Client> client_;
  const std::shared_ptr<etcd_internal::WatchRegistry> watches_;
};

}  // namespace tidal
