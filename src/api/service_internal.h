#pragma once

// Internals of TidalService shared by its files (include only from
// src/api/service*.cc): the Impl every method works on, and the helpers that
// read and write apps in the store. The methods are split by concern:
// service.cc (Impl, helpers, Version), service_apps.cc (Apply, Get, List,
// Scale, Delete), service_rollouts.cc (Rollout, ListRevisions),
// service_status.cc (Top, ListEvents, Watch), service_instances.cc
// (ListInstances, Logs) and service_grpc.cc (the gRPC server).

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "api/service.h"
#include "common/logging.h"
#include "store/store.h"
#include "tidal/v1/api.pb.h"

namespace tidal {
namespace service_internal {

// "" -> "default".
std::string NamespaceOr(const std::string& ns);

absl::Status AppNotFound(const std::string& ns, const std::string& name);

// "/apps/ns/name" -> (ns, name).
std::pair<std::string, std::string> SplitAppKey(const std::string& key);

// An app as stored (resource_version from the store); DataLoss when the
// value cannot be decoded.
absl::StatusOr<v1::App> DecodeApp(const KeyValue& kv);

// What lists and watches show for an app whose stored value cannot be
// decoded: its name, and a Ready=False condition with reason StoreDamaged.
v1::App DamagedApp(const KeyValue& kv, const absl::Status& why);

// Decodes an app for a list or a watch: a value that cannot be decoded is
// logged and shown as a damaged app, so the others are still served.
v1::App DecodeOrDamaged(const KeyValue& kv, spdlog::logger& log);

// The stored form of an app (resource_version left 0).
std::string EncodeApp(v1::App app);

template <typename MapT>
std::map<std::string, std::string> ToStdMap(const MapT& m) {
  return std::map<std::string, std::string>(m.begin(), m.end());
}

// Same spec, labels and annotations.
bool SameMetaAndSpec(const v1::App& a, const v1::App& b);

}  // namespace service_internal

struct TidalService::Impl {
  Impl(Store* s, Runtime* r, Clock* c, ServiceOptions o)
      : store(s),
        runtime(r),
        clock(c),
        options(std::move(o)),
        log(GetLogger("api")) {}

  // Reads the app, lets `change` edit it (it returns whether to write), and
  // writes it back with compare-and-swap, retrying on a concurrent writer.
  absl::StatusOr<v1::App> UpdateApp(
      const std::string& ns, const std::string& name, const char* verb,
      const std::function<absl::StatusOr<bool>(v1::App*)>& change);

  // Removes the app at ns/name from the store when its value cannot be
  // decoded (there is nothing to mark for deletion; the controller then
  // stops its instances). nullopt when the app is not damaged.
  absl::StatusOr<std::optional<v1::App>> RemoveDamagedApp(
      const std::string& ns, const std::string& name, bool dry_run);

  // The per-app bound that an unbounded maxReplicas stands for.
  int64_t PerAppMax() const;

  // For each of `apps` (to be written over the stored apps of the same
  // names), why its namespace would exceed --max-instances-per-namespace,
  // or "" when it does not. A namespace already over the limit (lowered
  // since) may keep or lower its total, not raise it.
  absl::StatusOr<std::vector<std::string>> OverNamespaceLimit(
      const std::vector<v1::App>& apps);

  std::string NewUid();

  // A secret of an Apply (values in data), compared with the stored one:
  // the action (created | configured | unchanged), the write unless
  // unchanged (its values sealed), and what the answer shows (no values).
  // Needs options.secret_box.
  struct SecretWrite {
    std::string action;
    Op op;
    v1::Secret shown;
  };
  absl::StatusOr<SecretWrite> PrepareSecret(const v1::Secret& in,
                                            absl::Time now);

  // Constant after construction.
  Store* const store;
  Runtime* const runtime;
  Clock* const clock;
  const ServiceOptions options;
  const std::shared_ptr<spdlog::logger> log;

  absl::Mutex mu;
  absl::BitGen bitgen ABSL_GUARDED_BY(mu);
  // Held by Apply and Scale from reading the namespace's apps to writing,
  // while a per-namespace limit is set, so that two of them cannot both
  // take the last room.
  absl::Mutex quota_mu;
};

}  // namespace tidal
