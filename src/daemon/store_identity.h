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
#include "store/store.h"

namespace tidal {

// The store's id, made when the keyspace has none and the data directory
// remembers none, then remembered. FailedPrecondition (naming the store,
// both ids and what to do) when the store is not the remembered one;
// the store's own errors (Unavailable...) as they come.
absl::StatusOr<std::string> CheckStoreIdentity(Store* store,
                                               const std::string& data_dir,
                                               const std::string& store_name);

}  // namespace tidal
