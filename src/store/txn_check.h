#pragma once

// Helpers shared by the Store implementations so they agree on semantics:
// which txns are valid, how a precondition is checked and what its error
// says, and how a key prefix becomes a key range. Stateless, thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "store/store.h"

namespace tidal::store_internal {

// InvalidArgument for an empty txn, an empty key, a bad expected_version, a
// key written twice in one txn (checks may name a key written too), a check
// without a create_version > 0 or with a value, expected version or lease, or
// a negative lease or a lease on a delete.
absl::Status ValidateOps(const std::vector<Op>& ops);

// InvalidArgument when an op sets a lease: for the stores without leases.
absl::Status RejectLeases(const std::vector<Op>& ops);

// Whether the txn writes nothing (checks alone).
bool ChecksOnly(const std::vector<Op>& ops);

// The state of one key when a txn is checked.
struct KeyState {
  bool exists = false;
  int64_t resource_version = 0;
  int64_t create_version = 0;
};

// OK when `op` may apply to a key in state `cur`. FailedPrecondition (naming
// the key, the expected and the actual version) when the expected version
// does not match, or (kCheck) the key is missing or has another
// create_version; NotFound for a delete of a key that does not exist.
absl::Status CheckPrecondition(const Op& op, const KeyState& cur);

// The smallest key greater than every key starting with `prefix`; empty when
// there is none (empty prefix, or all 0xff bytes).
std::string PrefixEnd(const std::string& prefix);

// The OutOfRange message for a watch that cannot resume at `from`.
std::string WatchTooOld(int64_t from, int64_t oldest_retained);

}  // namespace tidal::store_internal
