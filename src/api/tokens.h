#pragma once

// API tokens (docs/auth.md). A token reads "tidal_<id>_<secret>": the id (16
// hex digits) finds its record at keys::Token(id), the secret (43 base64url
// characters, 256 random bits) is never stored: only SHA-256(salt || secret)
// with 16 random bytes of salt per token. Names are unique (an index key at
// keys::TokenName(name), written in the same transaction as the record).
// Thread-safe. Verify keeps the records it read for a short while
// (kRecordCacheTtl), so a busy API does not read the store on every call: a
// token revoked on this node stops working at once, one revoked on another
// node of an HA cluster within kRecordCacheTtl. Expiry is checked on every
// call.

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/auth.h"
#include "common/clock.h"
#include "store/store.h"
#include "tidal/v1/auth.pb.h"

namespace tidal::auth {

class TokenStore {
 public:
  static constexpr absl::Duration kRecordCacheTtl = absl::Seconds(2);

  // `store` and `clock` are not owned and must outlive this.
  TokenStore(Store* store, Clock* clock) : store_(store), clock_(clock) {}

  struct Created {
    std::string token;  // the whole token, to show once
    v1::TokenInfo info;
  };
  // AlreadyExists when the name is taken; InvalidArgument for a bad name,
  // namespace or ttl. `secret` empty: a random one (else: the given token,
  // which must be well-formed; used by the bootstrap token file).
  absl::StatusOr<Created> Create(const std::string& name,
                                 std::vector<Binding> bindings,
                                 absl::Duration ttl,
                                 const std::string& created_by,
                                 const std::string& token = "");

  // The principal a token stands for; Unauthenticated for a malformed,
  // unknown, revoked or expired token (the message does not say which).
  absl::StatusOr<Principal> Verify(const std::string& token);

  absl::StatusOr<std::vector<v1::TokenInfo>> List();
  // By name or id; NotFound when there is none.
  absl::StatusOr<v1::TokenInfo> Get(const std::string& name_or_id);
  absl::StatusOr<v1::TokenInfo> Revoke(const std::string& name_or_id);

  // Whether any token exists (the bootstrap token is made when none does).
  absl::StatusOr<bool> Empty();

  // A fresh random token (well-formed, not stored).
  static std::string NewToken();
  // Splits "tidal_<id>_<secret>"; InvalidArgument when malformed.
  static absl::Status Parse(const std::string& token, std::string* id,
                            std::string* secret);

 private:
  absl::StatusOr<v1::TokenRecord> Find(const std::string& name_or_id,
                                       int64_t* version);

  Store* const store_;
  Clock* const clock_;
  struct Cached {
    v1::TokenRecord record;
    absl::Time read_at;
  };
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
};

v1::TokenInfo InfoOf(const v1::TokenRecord& r);
std::vector<Binding> BindingsOf(const v1::TokenRecord& r);

// Makes the first cluster-wide admin token when the store has no token yet:
// from `token_file` when given (an operator's file, the same on every node
// of an HA cluster; made with a random token and mode 0600 when missing),
// else written to `default_file` (0600). Returns the file that holds it,
// or "" when tokens existed already. A token file is never made when the
// store has tokens (its token would open nothing); `*warning` then says
// what the operator must do when `token_file` is missing or holds a token
// the store does not know, or when another node made the bootstrap token
// at the same moment.
absl::StatusOr<std::string> EnsureBootstrapToken(
    TokenStore* tokens, const std::string& token_file,
    const std::string& default_file, std::string* warning);

}  // namespace tidal::auth
