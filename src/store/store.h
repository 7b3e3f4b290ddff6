#pragma once

// The Store: Tidal's source of truth. A flat, ordered key space of versioned
// values with compare-and-swap writes, multi-key transactions and ordered
// watches, modelled on etcd v3 so the embedded SQLite store and the etcd store
// behave alike. Values are serialized protos (see store/keys.h for the layout).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidal {

// One stored value. `resource_version` is the store-wide revision of its last
// write (strictly increasing across the whole store, like etcd's mod_revision).
struct KeyValue {
  std::string key;
  std::string value;
  int64_t resource_version = 0;
  int64_t create_version = 0;
};

// One operation inside a transaction: a write (kPut, kDelete) or a check
// (kCheck) that writes nothing and only guards the others.
struct Op {
  enum class Type { kPut, kDelete, kCheck };
  Type type = Type::kPut;
  std::string key;
  std::string value;
  // Precondition on the key's current resource_version (kPut, kDelete):
  //   kAny: none;  0: the key must not exist;  N > 0: it must be at exactly N.
  static constexpr int64_t kAny = -1;
  int64_t expected_version = kAny;
  // kCheck only: the key must exist with exactly this create_version (> 0).
  // A fencing guard: the key's creation revision identifies one "life" of it.
  int64_t create_version = 0;
  // kPut only: an etcd lease the key is attached to (it is deleted when the
  // lease ends). 0 = none. Only the etcd store supports leases; the others
  // reject a txn that sets one (InvalidArgument).
  int64_t lease = 0;

  static Op Put(std::string key, std::string value, int64_t expected = kAny) {
    return Op{Type::kPut, std::move(key), std::move(value), expected};
  }
  static Op Delete(std::string key, int64_t expected = kAny) {
    return Op{Type::kDelete, std::move(key), "", expected};
  }
  // Fails the whole txn (FailedPrecondition naming the key) unless `key`
  // exists and its create_version is `create_version`.
  static Op Check(std::string key, int64_t create_version) {
    return Op{Type::kCheck, std::move(key), "", kAny, create_version};
  }
};

struct ListResult {
  std::vector<KeyValue> items;   // ordered by key
  int64_t resource_version = 0;  // the store's revision the list was read at
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  // For kPut the new value; for kDelete the key and the deleting revision
  // (value is the last value before deletion when the store knows it).
  KeyValue kv;
  int64_t prev_version = 0;  // 0: the key was created by this event
};

// A stream of changes under a prefix, in revision order. Thread-compatible:
// one reader at a time; Cancel() may be called from any thread.
class Watch {
 public:
  virtual ~Watch() = default;
  // Waits up to `timeout` for the next events. Returns an empty vector on
  // timeout. Errors: OutOfRange when the watcher fell too far behind (or its
  // start revision was compacted) — re-list and watch again from the list's
  // revision; Cancelled after Cancel() or store shutdown.
  virtual absl::StatusOr<std::vector<WatchEvent>> Next(
      absl::Duration timeout) = 0;
  virtual void Cancel() = 0;
};

// Thread-safe.
class Store {
 public:
  virtual ~Store() = default;

  // Applies every op or none. Errors: FailedPrecondition naming the key when
  // an expected_version or a kCheck does not match (Aborted is reserved for
  // retryable backend conflicts); Unavailable when the backend cannot be
  // reached; ResourceExhausted when its disk is full; DataLoss when it is
  // damaged; InvalidArgument for a malformed txn or (stores without leases)
  // an op with a lease. Returns the revision of the commit (a txn of checks
  // alone writes nothing and returns the current revision).
  virtual absl::StatusOr<int64_t> Txn(const std::vector<Op>& ops) = 0;

  // NotFound when the key does not exist.
  virtual absl::StatusOr<KeyValue> Get(const std::string& key) = 0;

  // Every key starting with `prefix`, read at one revision. limit 0 = all.
  virtual absl::StatusOr<ListResult> List(const std::string& prefix,
                                          int64_t limit = 0) = 0;

  // A page of a list: the keys starting with `prefix` that sort after
  // `after` (empty: from the first), at most `limit` (0 = all), read at one
  // revision. Each page is read at its own revision. This default reads the
  // whole prefix; the stores read only the page.
  virtual absl::StatusOr<ListResult> ListAfter(const std::string& prefix,
                                               const std::string& after,
                                               int64_t limit) {
    if (limit < 0) return absl::InvalidArgumentError("negative list limit");
    absl::StatusOr<ListResult> all = List(prefix);
    if (!all.ok()) return all.status();
    ListResult out;
    out.resource_version = all->resource_version;
    for (KeyValue& kv : all->items) {
      if (kv.key <= after) continue;
      if (limit > 0 && static_cast<int64_t>(out.items.size()) >= limit) break;
      out.items.push_back(std::move(kv));
    }
    return out;
  }

  // Changes under `prefix` with revision > from_version.
  virtual absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(
      const std::string& prefix, int64_t from_version) = 0;

  // The store's current revision.
  virtual absl::StatusOr<int64_t> CurrentVersion() = 0;

  // Whether the store can serve reads now, from a real read of its data (for
  // /readyz). DataLoss when it is damaged, ResourceExhausted while its disk
  // is full, Unavailable when it cannot be reached.
  virtual absl::Status Health() { return CurrentVersion().status(); }

  // Convenience wrappers over Txn.
  absl::StatusOr<int64_t> Create(const std::string& key,
                                 const std::string& value) {
    return Txn({Op::Put(key, value, 0)});
  }
  absl::StatusOr<int64_t> Update(const std::string& key,
                                 const std::string& value,
                                 int64_t expected_version) {
    return Txn({Op::Put(key, value, expected_version)});
  }
  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 int64_t expected_version = Op::kAny) {
    return Txn({Op::Delete(key, expected_version)});
  }
};

}  // namespace tidal
