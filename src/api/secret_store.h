#pragma once

// Secrets in the store (docs/secrets.md): a Secret lives at
// keys::Secret(ns, name) as a serialized tidal.v1.SealedSecret, its values
// encrypted by a SecretBox with the store key as additional authenticated
// data (a sealed value copied to another key does not open). Reading a
// secret's names, keys and sizes needs no key; reading its values does.
// Pure functions over their arguments; thread-safe.

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/secret_box.h"
#include "runtime/runtime.h"
#include "store/store.h"
#include "tidal/v1/secret.pb.h"

namespace tidal::secrets {

// The stored form of `secret` (spec::NormalizeSecret'ed: values in data):
// the secret without values, and its values sealed for `store_key`.
absl::StatusOr<std::string> Seal(const SecretBox& box,
                                 const std::string& store_key,
                                 const v1::Secret& secret);

// The secret at `store_key` with its values (in data). DataLoss when the
// value does not decode or does not open (another key, moved, damaged).
absl::StatusOr<v1::Secret> Unseal(const SecretBox& box,
                                  const std::string& store_key,
                                  const std::string& stored);

// The secret without values (keys and sizes only); needs no key.
absl::StatusOr<v1::Secret> Redacted(const KeyValue& kv);

// How many stored secrets each key id sealed (values that do not decode are
// left out), for checking a node's key against the cluster's at start.
absl::StatusOr<std::map<std::string, int>> SealedKeyIds(Store* store);

// Resolves template.env[].valueFrom.secretKeyRef from `store` (not owned;
// outlives the resolver): NotFound "secret \"ns/name\" not found" or "key
// \"k\" not found in secret \"ns/name\""; DataLoss when it does not open.
// The error never holds a value.
SecretResolver MakeResolver(Store* store, std::shared_ptr<const SecretBox> box);

}  // namespace tidal::secrets
