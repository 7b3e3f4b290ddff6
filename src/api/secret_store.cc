#include "api/secret_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "store/keys.h"

namespace tidal::secrets {

absl::StatusOr<std::string> Seal(const SecretBox& box,
                                 const std::string& store_key,
                                 const v1::Secret& secret) {
  v1::SecretData data;
  *data.mutable_data() = secret.data();
  std::string plain;
  if (!data.SerializeToString(&plain)) {
    return absl::InternalError("cannot serialize a secret's values");
  }
  absl::StatusOr<Sealed> sealed = box.Seal(plain, store_key);
  std::fill(plain.begin(), plain.end(), '\0');
  if (!sealed.ok()) return sealed.status();
  v1::SealedSecret out;
  *out.mutable_secret() = secret;
  out.mutable_secret()->clear_data();
  out.mutable_secret()->clear_string_data();
  out.mutable_secret()->mutable_metadata()->set_resource_version(0);
  out.set_key_id(sealed->key_id);
  out.set_nonce(std::move(sealed->nonce));
  out.set_ciphertext(std::move(sealed->ciphertext));
  return out.SerializeAsString();
}

namespace {
absl::StatusOr<v1::SealedSecret> Decode(const std::string& store_key,
                                        const std::string& stored) {
  v1::SealedSecret sealed;
  if (!sealed.ParseFromString(stored)) {
    return absl::DataLossError(
        absl::StrCat("the stored secret at ", store_key, " does not decode"));
  }
  return sealed;
}
}  // namespace

absl::StatusOr<v1::Secret> Unseal(const SecretBox& box,
                                  const std::string& store_key,
                                  const std::string& stored) {
  ASSIGN_OR_RETURN(v1::SealedSecret sealed, Decode(store_key, stored));
  Sealed s{sealed.key_id(), sealed.nonce(), sealed.ciphertext()};
  absl::StatusOr<std::string> plain = box.Open(s, store_key);
  if (!plain.ok()) {
    return absl::DataLossError(
        absl::StrCat("the secret at ", store_key,
                     " does not open: ", plain.status().message()));
  }
  v1::SecretData data;
  bool ok = data.ParseFromString(*plain);
  std::fill(plain->begin(), plain->end(), '\0');
  if (!ok) {
    return absl::DataLossError(absl::StrCat("the values of the secret at ",
                                            store_key, " do not decode"));
  }
  v1::Secret out = std::move(*sealed.mutable_secret());
  *out.mutable_data() = std::move(*data.mutable_data());
  return out;
}

absl::StatusOr<v1::Secret> Redacted(const KeyValue& kv) {
  ASSIGN_OR_RETURN(v1::SealedSecret sealed, Decode(kv.key, kv.value));
  v1::Secret out = std::move(*sealed.mutable_secret());
  out.clear_data();
  out.clear_string_data();
  out.mutable_metadata()->set_resource_version(kv.resource_version);
  return out;
}

absl::StatusOr<std::map<std::string, int>> SealedKeyIds(Store* store) {
  ASSIGN_OR_RETURN(ListResult list, store->List(keys::SecretPrefix()));
  std::map<std::string, int> out;
  for (const KeyValue& kv : list.items) {
    absl::StatusOr<v1::SealedSecret> sealed = Decode(kv.key, kv.value);
    if (sealed.ok()) ++out[sealed->key_id()];
  }
  return out;
}

SecretResolver MakeResolver(Store* store,
                            std::shared_ptr<const SecretBox> box) {
  return [store, box](const std::string& ns, const std::string& name,
                      const std::string& key) -> absl::StatusOr<std::string> {
    const std::string k = keys::Secret(ns, name);
    absl::StatusOr<KeyValue> kv = store->Get(k);
    if (absl::IsNotFound(kv.status())) {
      return absl::NotFoundError(
          absl::StrCat("secret \"", ns, "/", name, "\" not found"));
    }
    if (!kv.ok()) return kv.status();
    if (box == nullptr) {
      return absl::FailedPreconditionError(
          "this tidald has no secrets key (--secrets-key-file)");
    }
    ASSIGN_OR_RETURN(v1::Secret secret, Unseal(*box, k, kv->value));
    auto it = secret.data().find(key);
    if (it == secret.data().end()) {
      return absl::NotFoundError(absl::StrCat(
          "key \"", key, "\" not found in secret \"", ns, "/", name, "\""));
    }
    return it->second;
  };
}

}  // namespace tidal::secrets
