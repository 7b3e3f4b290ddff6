// TidalService: secrets (GetSecret, ListSecrets, DeleteSecret; Apply writes
// them, service_apps.cc). No answer carries a value.
#include "absl/strings/str_cat.h"
#include "api/label_selector.h"
#include "api/secret_store.h"
#include "api/service.h"
#include "api/service_internal.h"
#include "api/spec.h"
#include "common/status_macros.h"
#include "store/keys.h"

namespace tidal {

using namespace service_internal;  // NOLINT: the service's own helpers

namespace {
absl::Status SecretNotFound(const std::string& ns, const std::string& name) {
  return absl::NotFoundError(absl::StrCat(
      "secret \"", name, "\" not found in namespace \"", ns, "\""));
}
}  // namespace

absl::StatusOr<v1::Secret> TidalService::GetSecret(const v1::GetRequest& req) {
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.name().empty())
    return absl::InvalidArgumentError("secret name is required");
  auto kv = impl_->store->Get(keys::Secret(ns, req.name()));
  if (absl::IsNotFound(kv.status())) return SecretNotFound(ns, req.name());
  if (!kv.ok()) return kv.status();
  return secrets::Redacted(*kv);
}

absl::StatusOr<v1::ListSecretsResponse> TidalService::ListSecrets(
    const v1::ListSecretsRequest& req) {
  ASSIGN_OR_RETURN(LabelSelector sel,
                   LabelSelector::Parse(req.label_selector()));
  const std::string prefix =
      req.all_namespaces() ? keys::SecretPrefix()
                           : keys::SecretPrefix(NamespaceOr(req.namespace_()));
  ASSIGN_OR_RETURN(ListResult list, impl_->store->List(prefix));
  v1::ListSecretsResponse resp;
  for (const KeyValue& kv : list.items) {
    absl::StatusOr<v1::Secret> s = secrets::Redacted(kv);
    if (!s.ok()) {
      impl_->log->warn("list secrets: {}", s.status().ToString());
      continue;
    }
    if (!sel.Matches(ToStdMap(s->metadata().labels()))) continue;
    *resp.add_secrets() = std::move(*s);
  }
  return resp;
}

absl::StatusOr<v1::Secret> TidalService::DeleteSecret(
    const v1::DeleteRequest& req) {
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.name().empty())
    return absl::InvalidArgumentError("secret name is required");
  const std::string key = keys::Secret(ns, req.name());
  auto kv = impl_->store->Get(key);
  if (absl::IsNotFound(kv.status())) return SecretNotFound(ns, req.name());
  if (!kv.ok()) return kv.status();
  absl::StatusOr<v1::Secret> shown = secrets::Redacted(*kv);
  if (!shown.ok()) {  // damaged: still deletable
    shown = v1::Secret();
    shown->mutable_metadata()->set_namespace_(ns);
    shown->mutable_metadata()->set_name(req.name());
  }
  if (req.dry_run()) return shown;
  auto rev = impl_->store->Txn({Op::Delete(key, kv->resource_version)});
  if (absl::IsFailedPrecondition(rev.status())) {
    return absl::AbortedError(absl::StrCat(
        "secret \"", req.name(), "\" changed while deleting it; try again"));
  }
  if (!rev.ok()) return rev.status();
  impl_->log->info("delete secret={}/{}", ns, req.name());
  return shown;
}

}  // namespace tidal
