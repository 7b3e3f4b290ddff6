#pragma once

// The store's identity (docs/store.md, "Integrity and identity"). etcd checks
// its own data, but it cannot tell "this keyspace is not the one tidald was
// using": pointed at a wiped or another cluster, tidald would see a store
// with no apps, and the controller would stop every instance it adopts. So
// the keyspace holds a random id (keys::StoreId, written once, when tidald
// first uses it), and the data directory remembers the id it last ran
// against (<data dir>/store-id). A store whose id differs from the
// remembered one, or that has none while one is remembered, is refused
// before anything is adopted or stopped.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace tidal {

// The store's id, made when the keyspace has none and the data directory
// remembers none, then remembered. FailedPrecondition (naming the store,
// both ids and what to do) when the store is not the remembered one;
// the store's own errors (Unavailable...) as they come.
absl::StatusOr<std::string> CheckStoreIdentity(Store* store,
                                               const std::string& data_dir,
                                               const std::string& store_name);

// The data directory's node uid (<data dir>/node-uid, made once), checked
// against the record of `node` in the store (NodeRecord.uid). Another uid
// whose node still heartbeats (its record changes within `watch`, a few
// heartbeats) is a second tidald under the same --node-name: refused with
// FailedPrecondition naming the other node's address, before this one
// adopts, stops or writes anything (it would take over that node's
// assignments and revoke its token). A record that does not change is a
// node gone (or this node's data directory wiped): taken over.
absl::StatusOr<std::string> CheckNodeIdentity(Store* store,
                                              const std::string& data_dir,
                                              const std::string& node,
                                              absl::Duration watch);

// With the etcd store: refuses (FailedPrecondition) a data directory whose
// embedded store (`sqlite_path`) holds apps while the etcd keyspace has
// none, that is the first start of a single machine moved to etcd: the
// instances it runs are listed nowhere in etcd, and would all be stopped.
absl::Status CheckNotMovedFromEmbedded(Store* etcd,
                                       const std::string& sqlite_path,
                                       const std::string& store_name);

}  // namespace tidal
