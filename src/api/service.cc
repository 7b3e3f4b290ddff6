#include "api/service.h"

#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "api/service_internal.h"
#include "api/spec.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "store/keys.h"

namespace tidal {
namespace service_internal {

using google::protobuf::util::MessageDifferencer;

std::string NamespaceOr(const std::string& ns) {
  return ns.empty() ? "default" : ns;
}

absl::Status AppNotFound(const std::string& ns, const std::string& name) {
  return absl::NotFoundError(
      absl::StrCat("app \"", name, "\" not found in namespace \"", ns, "\""));
}

absl::StatusOr<v1::App> DecodeApp(const KeyValue& kv) {
  v1::App app;
  if (!app.ParseFromString(kv.value)) {
    auto [ns, name] = SplitAppKey(kv.key);
    return absl::DataLossError(absl::StrCat(
        "app \"", name, "\" in namespace \"", ns,
        "\" is damaged in the store: its value at ", kv.key, " (",
        kv.value.size(), " bytes, revision ", kv.resource_version,
        ") cannot be decoded; delete it (tidalctl delete app ", name, " -n ",
        ns, ") and apply it again, or restore a backup (docs/store.md)"));
  }
  app.mutable_metadata()->set_resource_version(kv.resource_version);
  return app;
}

// What lists and watches show for an app whose stored value cannot be
// decoded: its name, and a Ready=False condition with reason StoreDamaged.
v1::App DamagedApp(const KeyValue& kv, const absl::Status& why) {
  auto [ns, name] = SplitAppKey(kv.key);
  v1::App app;
  app.set_api_version("tidal.dev/v1");
  app.set_kind("App");
  app.mutable_metadata()->set_namespace_(ns);
  app.mutable_metadata()->set_name(name);
  app.mutable_metadata()->set_resource_version(kv.resource_version);
  v1::Condition* c = app.mutable_status()->add_conditions();
  c->set_type("Ready");
  c->set_status("False");
  c->set_reason("StoreDamaged");
  c->set_message(std::string(why.message()));
  return app;
}

// Decodes an app for a list or a watch: a value that cannot be decoded is
// logged and shown as a damaged app, so the others are still served.
v1::App DecodeOrDamaged(const KeyValue& kv, spdlog::logger& log) {
  auto app = DecodeApp(kv);
  if (app.ok()) return *std::move(app);
  log.error("{}", std::string(app.status().message()));
  return DamagedApp(kv, app.status());
}

std::string EncodeApp(v1::App app) {
  app.mutable_metadata()->set_resource_version(0);
  return app.SerializeAsString();
}

bool SameMetaAndSpec(const v1::App& a, const v1::App& b) {
  return MessageDifferencer::Equals(a.spec(), b.spec()) &&
         ToStdMap(a.metadata().labels()) == ToStdMap(b.metadata().labels()) &&
         ToStdMap(a.metadata().annotations()) ==
             ToStdMap(b.metadata().annotations());
}

// "/apps/ns/name" -> (ns, name).
std::pair<std::string, std::string> SplitAppKey(const std::string& key) {
  absl::string_view rest = key;
  absl::ConsumePrefix(&rest, keys::AppPrefix());
  size_t slash = rest.find('/');
  if (slash == absl::string_view::npos) return {"", std::string(rest)};
  return {std::string(rest.substr(0, slash)),
          std::string(rest.substr(slash + 1))};
}

}  // namespace service_internal

using namespace service_internal;  // NOLINT: the service's own helpers

absl::StatusOr<v1::App> TidalService::Impl::UpdateApp(
    const std::string& ns, const std::string& name, const char* verb,
    const std::function<absl::StatusOr<bool>(v1::App*)>& change) {
  const std::string key = keys::App(ns, name);
  absl::Status last;
  for (int attempt = 0; attempt < std::max(1, options.apply_attempts);
       ++attempt) {
    auto kv = store->Get(key);
    if (absl::IsNotFound(kv.status())) return AppNotFound(ns, name);
    if (!kv.ok()) return kv.status();
    ASSIGN_OR_RETURN(v1::App app, DecodeApp(*kv));
    ASSIGN_OR_RETURN(bool write, change(&app));
    if (!write) return app;
    auto rev = store->Txn({Op::Put(key, EncodeApp(app), kv->resource_version)});
    if (rev.ok()) {
      app.mutable_metadata()->set_resource_version(*rev);
      return app;
    }
    if (!absl::IsFailedPrecondition(rev.status())) return rev.status();
    last = rev.status();
  }
  return absl::AbortedError(absl::StrCat(
      verb, " kept conflicting with concurrent writers: ", last.message()));
}

absl::StatusOr<std::optional<v1::App>> TidalService::Impl::RemoveDamagedApp(
    const std::string& ns, const std::string& name, bool dry_run) {
  auto kv = store->Get(keys::App(ns, name));
  if (!kv.ok()) return std::nullopt;
  auto decoded = DecodeApp(*kv);
  if (decoded.ok()) return std::nullopt;
  v1::App app = DamagedApp(*kv, decoded.status());
  if (dry_run) return app;
  RETURN_IF_ERROR(
      store->Txn({Op::Delete(kv->key, kv->resource_version)}).status());
  log->warn(
      "delete app={}/{}: its stored value could not be decoded; "
      "removed it from the store",
      ns, name);
  return app;
}

int64_t TidalService::Impl::PerAppMax() const {
  int64_t m = INT32_MAX;
  const auto& v = options.validation;
  if (v.max_instances_per_app > 0)
    m = std::min<int64_t>(m, v.max_instances_per_app);
  if (v.ports > 0) m = std::min<int64_t>(m, v.ports);
  return m;
}

absl::StatusOr<std::vector<std::string>> TidalService::Impl::OverNamespaceLimit(
    const std::vector<v1::App>& apps) {
  std::vector<std::string> why(apps.size());
  const int64_t limit = options.max_instances_per_namespace;
  if (limit <= 0) return why;
  const int64_t unbounded = PerAppMax();
  std::map<std::string, std::vector<size_t>> by_ns;
  for (size_t i = 0; i < apps.size(); ++i)
    by_ns[apps[i].metadata().namespace_()].push_back(i);
  for (const auto& [ns, idx] : by_ns) {
    ASSIGN_OR_RETURN(ListResult list, store->List(keys::AppPrefix(ns)));
    std::map<std::string, int64_t> stored;  // name -> instances
    for (const KeyValue& kv : list.items) {
      v1::App app;
      if (!app.ParseFromString(kv.value)) continue;
      if (app.metadata().has_deletion_timestamp()) continue;
      stored[app.metadata().name()] = spec::MaxInstances(app.spec(), unbounded);
    }
    int64_t before = 0;
    for (const auto& [name, n] : stored) before += n;
    std::map<std::string, int64_t> after_map = stored;
    for (size_t i : idx) {
      after_map[apps[i].metadata().name()] =
          spec::MaxInstances(apps[i].spec(), unbounded);
    }
    int64_t after = 0;
    for (const auto& [name, n] : after_map) after += n;
    if (after <= limit || after <= before) continue;
    for (size_t i : idx) {
      int64_t mine = after_map[apps[i].metadata().name()];
      why[i] = absl::StrCat(
          "namespace \"", ns, "\" could run ", after,
          " instances with this app's ", mine,
          " (the other apps: ", after - mine,
          "); the per-namespace maximum is ", limit,
          " (tidald --max-instances-per-namespace). Counted: spec.replicas, "
          "else the largest of scaling.maxReplicas (unset or 0: ",
          unbounded, "), its schedules and initialScale");
    }
  }
  return why;
}

std::string TidalService::Impl::NewUid() {
  absl::MutexLock lock(&mu);
  uint64_t hi = absl::Uniform<uint64_t>(bitgen);
  uint64_t lo = absl::Uniform<uint64_t>(bitgen);
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32,
                         (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48,
                         lo & 0xffffffffffffULL);
}

TidalService::TidalService(Store* store, Runtime* runtime, Clock* clock,
                           ServiceOptions options)
    : metrics_(options.metrics), rollouts_(options.rollouts) {
  impl_ = std::make_unique<Impl>(store, runtime, clock, std::move(options));
}

TidalService::~TidalService() = default;

v1::VersionResponse TidalService::Version() const {
  v1::VersionResponse v;
  v.set_version(impl_->options.version);
  v.set_store(impl_->options.store_name);
  v.set_runtime(impl_->options.runtime_name);
  const int dashboard =
      impl_->options.dashboard_port ? impl_->options.dashboard_port() : 0;
  if (dashboard > 0) {
    v.set_dashboard_port(dashboard);
    v.set_dashboard_path(impl_->options.dashboard_path);
  }
  return v;
}

absl::StatusOr<v1::GetClusterResponse> TidalService::GetCluster(
    const v1::GetClusterRequest&) {
  v1::GetClusterResponse resp;
  resp.set_ha(impl_->options.ha);
  resp.set_answered_by(impl_->options.node_name);
  if (!impl_->options.ha) return resp;
  Store* store = impl_->store;
  auto leader = store->Get(keys::LeaderKey());
  if (leader.ok()) {
    if (!resp.mutable_leader()->ParseFromString(leader->value)) {
      return absl::DataLossError(absl::StrCat(
          "the leader record at ", keys::LeaderKey(), " cannot be decoded"));
    }
    resp.set_fencing_token(leader->create_version);
  } else if (!absl::IsNotFound(leader.status())) {
    return leader.status();
  }
  ASSIGN_OR_RETURN(ListResult nodes, store->List(keys::NodePrefix()));
  const absl::Time now = impl_->clock->Now();
  for (const KeyValue& kv : nodes.items) {
    v1::NodeRecord* n = resp.add_nodes();
    if (!n->ParseFromString(kv.value)) {
      return absl::DataLossError(
          absl::StrCat("the node record at ", kv.key, " cannot be decoded"));
    }
    std::optional<absl::Time> seen;
    if (impl_->options.node_last_seen) {
      seen = impl_->options.node_last_seen(n->name());
    }
    resp.add_node_status(
        n->name() == impl_->options.node_name            ? "Ready"
        : !seen                                          ? "Unknown"
        : now - *seen > impl_->options.node_lost_timeout ? "Lost"
        : now - *seen > impl_->options.node_quiet_after  ? "NotReady"
                                                         : "Ready");
  }
  return resp;
}

absl::StatusOr<v1::DeleteNodeResponse> TidalService::DeleteNode(
    const v1::DeleteNodeRequest& req) {
  if (!impl_->options.ha) {
    return absl::FailedPreconditionError(
        "this tidald is a single node (the embedded store): there are no "
        "nodes to delete");
  }
  const std::string& name = req.name();
  if (name.empty() || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad node name \"", name, "\""));
  }
  Store* store = impl_->store;
  auto node = store->Get(keys::Node(name));
  if (absl::IsNotFound(node.status())) {
    return absl::NotFoundError(absl::StrCat("node \"", name, "\" not found"));
  }
  if (!node.ok()) return node.status();
  v1::DeleteNodeResponse resp;
  if (!resp.mutable_node()->ParseFromString(node->value)) {
    return absl::DataLossError(absl::StrCat(
        "the node record at ", keys::Node(name), " cannot be decoded"));
  }
  // Live by this process's clock (the node's heartbeat changed lately), so
  // no clock skew between nodes counts.
  const absl::Duration timeout = impl_->options.node_lost_timeout;
  std::optional<absl::Time> seen;
  if (impl_->options.node_last_seen) seen = impl_->options.node_last_seen(name);
  const bool live = name == impl_->options.node_name ||
                    !impl_->options.node_last_seen ||
                    (seen && impl_->clock->Now() - *seen < timeout);
  if (live) {
    const absl::Duration ago =
        seen ? absl::Trunc(impl_->clock->Now() - *seen, absl::Seconds(1))
             : absl::ZeroDuration();
    std::string heard =
        !seen ? "live"
        : ago < absl::Seconds(1)
            ? "heard from less than a second ago"
            : absl::StrCat("heard from ", absl::FormatDuration(ago), " ago");
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", name, " is live (", heard, ", within --node-lost-timeout ",
        absl::FormatDuration(timeout),
        "): stop its tidald first; its next heartbeat would add it back"));
  }
  // The node record first, on its version: a heartbeat meanwhile refuses
  // the whole deletion.
  std::vector<Op> ops = {Op::Delete(keys::Node(name), node->resource_version)};
  auto metrics = store->Get(keys::Metrics(name));
  if (metrics.ok()) {
    ops.push_back(Op::Delete(metrics->key));
  } else if (!absl::IsNotFound(metrics.status())) {
    return metrics.status();
  }
  for (const std::string& prefix :
       {keys::AssignmentPrefix(name), keys::InstancePrefix(name),
        absl::StrCat(keys::DemandPrefix(), name, "/")}) {
    ASSIGN_OR_RETURN(ListResult list, store->List(prefix));
    for (const KeyValue& kv : list.items) {
      ops.push_back(Op::Delete(kv.key));
    }
  }
  resp.set_records(static_cast<int32_t>(ops.size()));
  if (req.dry_run()) return resp;
  // In pieces etcd accepts (--max-txn-ops defaults to 128).
  constexpr size_t kPiece = 100;
  for (size_t at = 0; at < ops.size(); at += kPiece) {
    std::vector<Op> piece(ops.begin() + at,
                          ops.begin() + std::min(ops.size(), at + kPiece));
    absl::StatusOr<int64_t> rev = store->Txn(piece);
    if (rev.ok()) continue;
    if (at == 0 && absl::IsFailedPrecondition(rev.status())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "node ", name,
          " changed while being deleted (a heartbeat?): nothing deleted"));
    }
    // Deleted meanwhile (the leader's clean-up of a lost node): fine.
    if (!absl::IsNotFound(rev.status())) return rev.status();
  }
  impl_->log->info("deleted node {} ({} records)", name, ops.size());
  return resp;
}

}  // namespace tidal
