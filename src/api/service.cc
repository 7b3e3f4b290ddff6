#include "api/service.h"

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "api/grpc_status.h"
#include "api/label_selector.h"
#include "api/limits.h"
#include "api/spec.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "store/keys.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal {
namespace {

using google::protobuf::util::MessageDifferencer;

std::string NamespaceOr(const std::string& ns) {
  return ns.empty() ? "default" : ns;
}

absl::Status AppNotFound(const std::string& ns, const std::string& name) {
  return absl::NotFoundError(
      absl::StrCat("app \"", name, "\" not found in namespace \"", ns, "\""));
}

// "/apps/ns/name" -> (ns, name).
std::pair<std::string, std::string> SplitAppKey(const std::string& key);

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

template <typename MapT>
std::map<std::string, std::string> ToStdMap(const MapT& m) {
  return std::map<std::string, std::string>(m.begin(), m.end());
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

constexpr int64_t kLogChunk = 64 * 1024;

}  // namespace

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
      auto rev =
          store->Txn({Op::Put(key, EncodeApp(app), kv->resource_version)});
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

  // Removes the app at ns/name from the store when its value cannot be
  // decoded (there is nothing to mark for deletion; the controller then
  // stops its instances). nullopt when the app is not damaged.
  absl::StatusOr<std::optional<v1::App>> RemoveDamagedApp(
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

  // The per-app bound that an unbounded maxReplicas stands for.
  int64_t PerAppMax() const {
    int64_t m = INT32_MAX;
    const auto& v = options.validation;
    if (v.max_instances_per_app > 0)
      m = std::min<int64_t>(m, v.max_instances_per_app);
    if (v.ports > 0) m = std::min<int64_t>(m, v.ports);
    return m;
  }

  // For each of `apps` (to be written over the stored apps of the same
  // names), why its namespace would exceed --max-instances-per-namespace,
  // or "" when it does not. A namespace already over the limit (lowered
  // since) may keep or lower its total, not raise it.
  absl::StatusOr<std::vector<std::string>> OverNamespaceLimit(
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
        stored[app.metadata().name()] =
            spec::MaxInstances(app.spec(), unbounded);
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

  std::string NewUid() {
    absl::MutexLock lock(&mu);
    uint64_t hi = absl::Uniform<uint64_t>(bitgen);
    uint64_t lo = absl::Uniform<uint64_t>(bitgen);
    hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
    lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
    return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32,
                           (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48,
                           lo & 0xffffffffffffULL);
  }

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

TidalService::TidalService(Store* store, Runtime* runtime, Clock* clock,
                           ServiceOptions options)
    : impl_(std::make_unique<Impl>(store, runtime, clock, std::move(options))) {
}

TidalService::~TidalService() = default;

absl::StatusOr<v1::ApplyResponse> TidalService::Apply(
    const v1::ApplyRequest& req) {
  const std::string default_ns = NamespaceOr(req.default_namespace());
  const spec::ValidationOptions& vopts = impl_->options.validation;
  std::vector<v1::App> apps;
  // Where each app was written, for errors found after parsing:
  // "file:line: field: " of a field path.
  std::vector<std::function<std::string(const std::string&)>> where;
  std::vector<std::string> errors;
  if (!req.yaml().empty()) {
    spec::ParseResult parsed = spec::ParseApps(
        req.yaml(), req.source().empty() ? "<request>" : req.source(),
        default_ns, vopts);
    for (const auto& e : parsed.errors) errors.push_back(e.ToString());
    for (auto& p : parsed.apps) {
      apps.push_back(std::move(p.app));
      where.push_back([p = std::make_shared<spec::ParsedApp>(std::move(p))](
                          const std::string& path) {
        return absl::StrCat(p->source, ":", p->LineOf(path), ": ", path, ": ");
      });
    }
  }
  for (int i = 0; i < req.apps_size(); ++i) {
    v1::App app = req.apps(i);
    if (app.metadata().namespace_().empty())
      app.mutable_metadata()->set_namespace_(default_ns);
    std::string name = app.metadata().name().empty()
                           ? absl::StrCat("apps[", i, "]")
                           : absl::StrCat("app ", app.metadata().namespace_(),
                                          "/", app.metadata().name());
    for (const auto& e : spec::ValidateApp(app, vopts)) {
      errors.push_back(absl::StrCat(name, ": ", e.ToString()));
    }
    apps.push_back(std::move(app));
    where.push_back([name](const std::string& path) {
      return absl::StrCat(name, ": ", path, ": ");
    });
  }
  if (req.change_cause().find('\0') != std::string::npos ||
      req.change_cause().size() > 64 * 1024) {
    errors.push_back(
        "--message (change cause): must be at most 65536 bytes, without NUL "
        "bytes");
  }
  if (errors.empty()) {
    std::set<std::string> seen;
    for (const auto& app : apps) {
      std::string key =
          keys::App(app.metadata().namespace_(), app.metadata().name());
      if (!seen.insert(key).second) {
        errors.push_back(
            absl::StrCat("app \"", app.metadata().name(), "\" in namespace \"",
                         app.metadata().namespace_(),
                         "\" appears more than once in this apply"));
      }
    }
  }
  if (!errors.empty())
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  if (apps.empty())
    return absl::InvalidArgumentError("nothing to apply: no App documents");

  std::optional<absl::MutexLock> quota_lock;
  if (impl_->options.max_instances_per_namespace > 0)
    quota_lock.emplace(&impl_->quota_mu);
  absl::Status last;
  for (int attempt = 0; attempt < std::max(1, impl_->options.apply_attempts);
       ++attempt) {
    ASSIGN_OR_RETURN(std::vector<std::string> over,
                     impl_->OverNamespaceLimit(apps));
    for (size_t i = 0; i < over.size(); ++i) {
      if (over[i].empty()) continue;
      errors.push_back(absl::StrCat(
          where[i](spec::MaxInstancesField(apps[i].spec())), over[i]));
    }
    if (!errors.empty())
      return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
    v1::ApplyResponse resp;
    std::vector<Op> ops;
    std::vector<int> written;  // result index of each op
    const absl::Time now = impl_->clock->Now();
    for (const v1::App& in : apps) {
      const std::string& ns = in.metadata().namespace_();
      const std::string& name = in.metadata().name();
      const std::string key = keys::App(ns, name);
      v1::App out;
      std::string action;
      int64_t expected = 0;
      auto cur = impl_->store->Get(key);
      if (cur.ok()) {
        ASSIGN_OR_RETURN(v1::App existing, DecodeApp(*cur));
        if (existing.metadata().has_deletion_timestamp()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "app \"", name, "\" in namespace \"", ns,
              "\" is being deleted; apply it again once it is gone"));
        }
        expected = cur->resource_version;
        out = existing;
        *out.mutable_spec() = in.spec();
        *out.mutable_metadata()->mutable_labels() = in.metadata().labels();
        *out.mutable_metadata()->mutable_annotations() =
            in.metadata().annotations();
        if (!req.change_cause().empty()) {
          (*out.mutable_metadata()
                ->mutable_annotations())[kChangeCauseAnnotation] =
              req.change_cause();
        }
        if (SameMetaAndSpec(existing, out)) {
          action = "unchanged";
        } else {
          action = "configured";
          out.mutable_metadata()->set_generation(
              existing.metadata().generation() + 1);
        }
      } else if (absl::IsNotFound(cur.status())) {
        action = "created";
        out = in;
        out.clear_status();
        auto* md = out.mutable_metadata();
        md->set_uid(impl_->NewUid());
        md->set_generation(1);
        md->set_resource_version(0);
        *md->mutable_creation_timestamp() = ToProtoTime(now);
        md->clear_deletion_timestamp();
        md->clear_deletion_grace_period_seconds();
        if (!req.change_cause().empty()) {
          (*md->mutable_annotations())[kChangeCauseAnnotation] =
              req.change_cause();
        }
      } else {
        return cur.status();
      }
      if (out.api_version().empty()) out.set_api_version("tidal.dev/v1");
      if (out.kind().empty()) out.set_kind("App");
      v1::ApplyResult* r = resp.add_results();
      r->set_namespace_(ns);
      r->set_name(name);
      r->set_action(action);
      if (action != "unchanged") {
        ops.push_back(Op::Put(key, EncodeApp(out), expected));
        written.push_back(resp.results_size() - 1);
      }
      *r->mutable_app() = std::move(out);
    }
    if (req.dry_run() || ops.empty()) return resp;
    auto rev = impl_->store->Txn(ops);
    if (rev.ok()) {
      for (int i : written)
        resp.mutable_results(i)
            ->mutable_app()
            ->mutable_metadata()
            ->set_resource_version(*rev);
      for (const auto& r : resp.results()) {
        impl_->log->info("apply app={}/{} action={} generation={}",
                         r.namespace_(), r.name(), r.action(),
                         r.app().metadata().generation());
      }
      return resp;
    }
    if (!absl::IsFailedPrecondition(rev.status())) return rev.status();
    last = rev.status();
    impl_->log->debug("apply conflict (attempt {}): {}", attempt + 1,
                      last.ToString());
  }
  return absl::AbortedError(absl::StrCat(
      "apply kept conflicting with concurrent writers: ", last.message()));
}

absl::StatusOr<v1::App> TidalService::Get(const v1::GetRequest& req) {
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.name().empty())
    return absl::InvalidArgumentError("app name is required");
  auto kv = impl_->store->Get(keys::App(ns, req.name()));
  if (absl::IsNotFound(kv.status())) return AppNotFound(ns, req.name());
  if (!kv.ok()) return kv.status();
  return DecodeApp(*kv);
}

absl::StatusOr<v1::ListResponse> TidalService::List(
    const v1::ListRequest& req) {
  ASSIGN_OR_RETURN(LabelSelector sel,
                   LabelSelector::Parse(req.label_selector()));
  std::string prefix = req.all_namespaces()
                           ? keys::AppPrefix()
                           : keys::AppPrefix(NamespaceOr(req.namespace_()));
  ASSIGN_OR_RETURN(ListResult list, impl_->store->List(prefix));
  v1::ListResponse resp;
  resp.set_resource_version(list.resource_version);
  for (const KeyValue& kv : list.items) {
    v1::App app = DecodeOrDamaged(kv, *impl_->log);
    if (!sel.Matches(ToStdMap(app.metadata().labels()))) continue;
    *resp.add_apps() = std::move(app);
  }
  return resp;
}

absl::StatusOr<v1::App> TidalService::Scale(const v1::ScaleRequest& req) {
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.name().empty())
    return absl::InvalidArgumentError("app name is required");
  if (!req.has_replicas() && !req.has_min_replicas() &&
      !req.has_max_replicas()) {
    return absl::InvalidArgumentError("scale needs --replicas, --min or --max");
  }
  std::optional<absl::MutexLock> quota_lock;
  if (impl_->options.max_instances_per_namespace > 0)
    quota_lock.emplace(&impl_->quota_mu);
  ASSIGN_OR_RETURN(
      v1::App app,
      impl_->UpdateApp(
          ns, req.name(), "scale", [&](v1::App* app) -> absl::StatusOr<bool> {
            auto* spec = app->mutable_spec();
            if (req.has_replicas()) spec->set_replicas(req.replicas());
            if (req.has_min_replicas() || req.has_max_replicas()) {
              // Scaling bounds replace a fixed replica count.
              spec->clear_replicas();
              if (req.has_min_replicas())
                spec->mutable_scaling()->set_min_replicas(req.min_replicas());
              if (req.has_max_replicas())
                spec->mutable_scaling()->set_max_replicas(req.max_replicas());
            }
            std::vector<spec::SpecError> errors =
                spec::ValidateApp(*app, impl_->options.validation);
            ASSIGN_OR_RETURN(std::vector<std::string> over,
                             impl_->OverNamespaceLimit({*app}));
            if (!over[0].empty()) {
              errors.push_back(
                  {"", 0, 0, spec::MaxInstancesField(app->spec()), over[0]});
            }
            if (!errors.empty()) {
              std::string msg;
              for (const auto& e : errors)
                absl::StrAppend(&msg, msg.empty() ? "" : "\n", e.ToString());
              return absl::InvalidArgumentError(msg);
            }
            app->mutable_metadata()->set_generation(
                app->metadata().generation() + 1);
            return true;
          }));
  impl_->log->info("scale app={}/{}: {}", ns, req.name(),
                   req.ShortDebugString());
  return app;
}

absl::StatusOr<v1::TopResponse> TidalService::Top(const v1::TopRequest& req) {
  if (metrics_ == nullptr) {
    return absl::FailedPreconditionError(
        "this tidald serves no request metrics (no gateway)");
  }
  v1::ListRequest list_req;
  list_req.set_namespace_(req.namespace_());
  list_req.set_all_namespaces(req.all_namespaces());
  ASSIGN_OR_RETURN(v1::ListResponse apps, List(list_req));
  absl::Duration window =
      absl::Seconds(req.window_seconds() > 0 ? req.window_seconds() : 60);
  v1::TopResponse resp;
  for (const auto& app : apps.apps()) {
    if (!req.app().empty() && app.metadata().name() != req.app()) continue;
    RequestStats st = metrics_->Stats(app.metadata().namespace_(),
                                      app.metadata().name(), 0, window);
    auto* m = resp.add_apps();
    m->set_namespace_(app.metadata().namespace_());
    m->set_app(app.metadata().name());
    m->set_rps(st.rps);
    m->set_concurrency(st.concurrency);
    m->set_p50_ms(st.p50_ms);
    m->set_p90_ms(st.p90_ms);
    m->set_p99_ms(st.p99_ms);
    m->set_requests(st.requests);
    m->set_responses_2xx(st.responses_2xx);
    m->set_responses_3xx(st.responses_3xx);
    m->set_responses_4xx(st.responses_4xx);
    m->set_responses_5xx(st.responses_5xx);
    m->set_ready_replicas(app.status().ready_replicas());
    m->set_desired_replicas(app.status().desired_replicas());
  }
  if (!req.app().empty() && resp.apps().empty()) {
    return AppNotFound(NamespaceOr(req.namespace_()), req.app());
  }
  return resp;
}

absl::StatusOr<v1::App> TidalService::Rollout(const v1::RolloutRequest& req) {
  if (rollouts_ == nullptr) {
    return absl::FailedPreconditionError("this tidald runs no deployer");
  }
  return rollouts_->Rollout(req);
}

absl::StatusOr<v1::ListRevisionsResponse> TidalService::ListRevisions(
    const v1::ListRevisionsRequest& req) {
  if (rollouts_ == nullptr) {
    return absl::FailedPreconditionError("this tidald runs no deployer");
  }
  return rollouts_->ListRevisions(req);
}

absl::StatusOr<v1::DeleteResponse> TidalService::Delete(
    const v1::DeleteRequest& req) {
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.name().empty())
    return absl::InvalidArgumentError("app name is required");
  // kubectl's rules: --force alone is a grace period of 0, and 0 needs
  // --force.
  std::optional<int64_t> grace;
  if (req.has_grace_period_seconds()) {
    grace = req.grace_period_seconds();
    if (*grace < 0 || *grace > spec::limits::kMaxTerminationGracePeriodSeconds)
      return absl::InvalidArgumentError(
          absl::StrCat("grace period: must be between 0 and ",
                       spec::limits::kMaxTerminationGracePeriodSeconds,
                       " seconds, got ", *grace));
    if (*grace == 0 && !req.force())
      return absl::InvalidArgumentError(
          "grace period 0 (kill at once) needs force (tidalctl delete "
          "--grace-period=0 --force)");
  } else if (req.force()) {
    grace = 0;
  }
  bool marked_now = false, shortened = false;
  v1::DeleteResponse resp;
  auto damaged = impl_->RemoveDamagedApp(ns, req.name(), req.dry_run());
  if (!damaged.ok() || damaged->has_value()) {
    RETURN_IF_ERROR(damaged.status());
    *resp.mutable_app() = **damaged;
    return resp;
  }
  ASSIGN_OR_RETURN(
      *resp.mutable_app(),
      impl_->UpdateApp(
          ns, req.name(), "delete", [&](v1::App* app) -> absl::StatusOr<bool> {
            marked_now = shortened = false;
            auto* md = app->mutable_metadata();
            if (md->has_deletion_timestamp()) {
              // Already being deleted: a shorter grace period cuts the
              // wait of the instances still stopping; a longer one is
              // ignored.
              const auto& t = app->spec().template_();
              int64_t current = md->has_deletion_grace_period_seconds()
                                    ? md->deletion_grace_period_seconds()
                                : t.has_termination_grace_period_seconds()
                                    ? t.termination_grace_period_seconds()
                                    : 30;
              if (!grace.has_value() || *grace >= current) return false;
              md->set_deletion_grace_period_seconds(*grace);
              shortened = !req.dry_run();
              return shortened;
            }
            *md->mutable_deletion_timestamp() =
                ToProtoTime(impl_->clock->Now());
            if (grace.has_value())
              md->set_deletion_grace_period_seconds(*grace);
            marked_now = !req.dry_run();
            return marked_now;
          }));
  if (marked_now) {
    impl_->log->info(
        "delete app={}/{}: marked for deletion{}", ns, req.name(),
        grace.has_value() ? absl::StrCat(" (grace period ", *grace, "s)") : "");
  } else if (shortened) {
    impl_->log->info("delete app={}/{}: grace period shortened to {}s", ns,
                     req.name(), *grace);
  }
  return resp;
}

absl::StatusOr<v1::ListInstancesResponse> TidalService::ListInstances(
    const v1::ListInstancesRequest& req) {
  if (impl_->runtime == nullptr) {
    return absl::FailedPreconditionError(
        "this tidald runs no runtime, so it has no instances");
  }
  std::string ns = req.all_namespaces() ? "" : NamespaceOr(req.namespace_());
  v1::ListInstancesResponse resp;
  std::vector<v1::Instance> list = impl_->runtime->List(ns, req.app());
  std::sort(list.begin(), list.end(),
            [](const v1::Instance& a, const v1::Instance& b) {
              return std::tie(a.namespace_(), a.app(), a.id()) <
                     std::tie(b.namespace_(), b.app(), b.id());
            });
  for (auto& inst : list) *resp.add_instances() = std::move(inst);
  return resp;
}

absl::StatusOr<v1::ListEventsResponse> TidalService::ListEvents(
    const v1::ListEventsRequest& req) {
  std::string prefix;
  if (req.all_namespaces()) {
    prefix = "/events/";
  } else if (req.app().empty()) {
    prefix = absl::StrCat("/events/", NamespaceOr(req.namespace_()), "/");
  } else {
    prefix = keys::EventPrefix(NamespaceOr(req.namespace_()), req.app());
  }
  ASSIGN_OR_RETURN(ListResult list, impl_->store->List(prefix));
  std::vector<std::pair<v1::Event, int64_t>> events;
  for (const KeyValue& kv : list.items) {
    v1::Event e;
    if (!e.ParseFromString(kv.value)) {
      impl_->log->warn("cannot decode the event stored at {}", kv.key);
      continue;
    }
    if (req.all_namespaces() && !req.app().empty() &&
        e.involved().name() != req.app())
      continue;
    events.emplace_back(std::move(e), kv.resource_version);
  }
  auto when = [](const v1::Event& e) {
    return e.has_last_time() ? FromProtoTime(e.last_time())
                             : FromProtoTime(e.first_time());
  };
  std::stable_sort(events.begin(), events.end(),
                   [&](const auto& a, const auto& b) {
                     absl::Time ta = when(a.first), tb = when(b.first);
                     if (ta != tb) return ta < tb;
                     return a.second < b.second;
                   });
  size_t start = 0;
  if (req.limit() > 0 && events.size() > static_cast<size_t>(req.limit())) {
    start = events.size() - req.limit();
  }
  v1::ListEventsResponse resp;
  for (size_t i = start; i < events.size(); ++i)
    *resp.add_events() = std::move(events[i].first);
  return resp;
}

v1::VersionResponse TidalService::Version() const {
  v1::VersionResponse v;
  v.set_version(impl_->options.version);
  v.set_store(impl_->options.store_name);
  v.set_runtime(impl_->options.runtime_name);
  return v;
}

absl::Status TidalService::Watch(
    const v1::WatchRequest& req,
    const std::function<bool(const v1::WatchEvent&)>& send,
    const Cancelled& cancelled) {
  ASSIGN_OR_RETURN(LabelSelector sel,
                   LabelSelector::Parse(req.label_selector()));
  const std::string prefix =
      req.all_namespaces() ? keys::AppPrefix()
                           : keys::AppPrefix(NamespaceOr(req.namespace_()));
  // What this client has been told: key -> the app as last sent (matching
  // only).
  std::map<std::string, v1::App> known;
  auto done = [&] { return stopping() || (cancelled && cancelled()); };
  auto emit = [&](const char* type, const v1::App& app) {
    v1::WatchEvent ev;
    ev.set_type(type);
    *ev.mutable_app() = app;
    return send(ev);
  };
  // Lists the current state and sends the differences from `known`.
  auto relist = [&](int64_t* from) -> absl::Status {
    ASSIGN_OR_RETURN(ListResult list, impl_->store->List(prefix));
    std::map<std::string, v1::App> now;
    for (const KeyValue& kv : list.items) {
      v1::App app = DecodeOrDamaged(kv, *impl_->log);
      if (sel.Matches(ToStdMap(app.metadata().labels())))
        now.emplace(kv.key, std::move(app));
    }
    for (const auto& [key, app] : known) {
      if (!now.count(key) && !emit("DELETED", app))
        return absl::CancelledError("client gone");
    }
    for (const auto& [key, app] : now) {
      auto it = known.find(key);
      if (it == known.end()) {
        if (!emit("ADDED", app)) return absl::CancelledError("client gone");
      } else if (it->second.metadata().resource_version() !=
                 app.metadata().resource_version()) {
        if (!emit("MODIFIED", app)) return absl::CancelledError("client gone");
      }
    }
    known = std::move(now);
    *from = list.resource_version;
    return absl::OkStatus();
  };

  int64_t from = req.resource_version();
  const bool resumed = from > 0;
  if (!resumed) RETURN_IF_ERROR(relist(&from));
  std::unique_ptr<tidal::Watch> watch;
  while (!done()) {
    if (!watch) {
      auto w = impl_->store->WatchPrefix(prefix, from);
      if (absl::IsOutOfRange(w.status())) {
        RETURN_IF_ERROR(relist(&from));
        continue;
      }
      if (!w.ok()) return w.status();
      watch = std::move(*w);
    }
    auto events = watch->Next(impl_->options.poll_interval);
    if (absl::IsOutOfRange(events.status())) {
      impl_->log->info("watch {} fell behind; re-listing", prefix);
      watch.reset();
      RETURN_IF_ERROR(relist(&from));
      continue;
    }
    if (!events.ok()) {
      if (done()) break;
      return events.status();
    }
    for (const tidal::WatchEvent& e : *events) {
      from = std::max(from, e.kv.resource_version);
      auto it = known.find(e.kv.key);
      if (e.type == tidal::WatchEvent::Type::kDelete) {
        v1::App app;
        if (it != known.end()) {
          app = it->second;
        } else if (e.kv.value.empty() || !app.ParseFromString(e.kv.value)) {
          if (!sel.empty()) continue;
          auto [ns, name] = SplitAppKey(e.kv.key);
          app.mutable_metadata()->set_namespace_(ns);
          app.mutable_metadata()->set_name(name);
        } else if (!sel.Matches(ToStdMap(app.metadata().labels()))) {
          continue;
        }
        app.mutable_metadata()->set_resource_version(e.kv.resource_version);
        if (it != known.end()) known.erase(it);
        if (!emit("DELETED", app)) return absl::OkStatus();
        continue;
      }
      v1::App decoded = DecodeOrDamaged(e.kv, *impl_->log);
      const bool matches = sel.Matches(ToStdMap(decoded.metadata().labels()));
      const char* type = nullptr;
      if (matches) {
        if (it != known.end()) {
          type = "MODIFIED";
        } else if (e.prev_version != 0 && resumed) {
          type = "MODIFIED";  // the client may know it from its own list
        } else {
          type = "ADDED";  // new, or newly selected
        }
        known[e.kv.key] = decoded;
      } else if (it != known.end()) {
        type = "DELETED";  // no longer selected
        known.erase(it);
      }
      if (type != nullptr && !emit(type, decoded)) return absl::OkStatus();
    }
  }
  if (watch) watch->Cancel();
  return absl::OkStatus();
}

absl::Status TidalService::Logs(
    const v1::LogsRequest& req,
    const std::function<bool(const v1::LogChunk&)>& send,
    const Cancelled& cancelled) {
  if (impl_->runtime == nullptr) {
    return absl::FailedPreconditionError(
        "this tidald runs no runtime, so it has no logs");
  }
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.app().empty())
    return absl::InvalidArgumentError("app name is required");
  auto list_instances = [&]() {
    std::vector<v1::Instance> out;
    for (auto& inst : impl_->runtime->List(ns, req.app())) {
      if (req.instance().empty() || inst.id() == req.instance())
        out.push_back(std::move(inst));
    }
    std::sort(out.begin(), out.end(),
              [](const v1::Instance& a, const v1::Instance& b) {
                return a.id() < b.id();
              });
    return out;
  };
  std::vector<v1::Instance> instances = list_instances();
  if (instances.empty()) {
    if (!req.instance().empty()) {
      return absl::NotFoundError(
          absl::StrCat("instance \"", req.instance(), "\" of app \"", req.app(),
                       "\" not found in namespace \"", ns, "\""));
    }
    auto app = impl_->store->Get(keys::App(ns, req.app()));
    if (absl::IsNotFound(app.status())) return AppNotFound(ns, req.app());
    if (!req.follow()) return absl::OkStatus();
  }
  // One stream per instance, opened once (nullptr: ended or unreadable).
  std::map<std::string, std::unique_ptr<LogStream>> streams;
  auto send_data = [&](const std::string& instance, const std::string& data) {
    for (size_t pos = 0; pos < data.size(); pos += kLogChunk) {
      v1::LogChunk chunk;
      chunk.set_instance(instance);
      chunk.set_data(data.substr(pos, kLogChunk));
      if (!send(chunk)) return false;
    }
    return true;
  };
  // Sends what the instance's stream has now; false when the client is
  // gone. A stream that ended is dropped.
  auto drain = [&](const std::string& id) {
    std::unique_ptr<LogStream>& stream = streams[id];
    while (stream != nullptr) {
      absl::StatusOr<std::string> data = stream->Next(absl::ZeroDuration());
      if (!data.ok()) {
        if (!absl::IsOutOfRange(data.status())) {
          impl_->log->warn("logs app={}/{} instance {}: {}", ns, req.app(), id,
                           data.status().ToString());
        }
        stream.reset();
        break;
      }
      if (data->empty()) break;
      if (!send_data(id, *data)) return false;
    }
    return true;
  };
  // Starts reading an instance: its current output (the last tail_lines of
  // it at first), then, with follow, what it writes.
  auto open = [&](const v1::Instance& inst, bool initial) -> absl::Status {
    LogOptions options;
    options.tail_lines = initial ? req.tail_lines() : 0;
    options.follow = req.follow();
    auto stream = impl_->runtime->OpenLogs(inst.id(), options);
    if (!stream.ok()) {
      streams[inst.id()] = nullptr;
      if (!initial) return absl::OkStatus();
      return stream.status();
    }
    streams[inst.id()] = *std::move(stream);
    if (!drain(inst.id())) return absl::CancelledError("client gone");
    return absl::OkStatus();
  };
  for (const auto& inst : instances) {
    absl::Status s = open(inst, true);
    if (absl::IsCancelled(s)) return absl::OkStatus();
    if (!s.ok()) return s;
  }
  if (!req.follow()) return absl::OkStatus();
  auto done = [&] { return stopping() || (cancelled && cancelled()); };
  while (!done()) {
    impl_->clock->SleepFor(impl_->options.poll_interval);
    for (const auto& inst : list_instances()) {
      if (!streams.count(inst.id())) {
        absl::Status s = open(inst, false);
        if (absl::IsCancelled(s)) return absl::OkStatus();
      }
    }
    for (auto& [id, stream] : streams) {
      if (!drain(id)) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

// ---- gRPC ----

namespace {

// Adapts TidalService to the generated gRPC service. Thread-safe.
class GrpcTidal final : public v1::Tidal::Service {
 public:
  explicit GrpcTidal(TidalService* s) : s_(s) {}

  template <typename T>
  static grpc::Status Reply(absl::StatusOr<T> r, T* out) {
    if (!r.ok()) return ToGrpc(r.status());
    *out = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Apply(grpc::ServerContext*, const v1::ApplyRequest* req,
                     v1::ApplyResponse* resp) override {
    return Reply(s_->Apply(*req), resp);
  }
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* req,
                   v1::App* resp) override {
    return Reply(s_->Get(*req), resp);
  }
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* req,
                    v1::ListResponse* resp) override {
    return Reply(s_->List(*req), resp);
  }
  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest* req,
                      v1::DeleteResponse* resp) override {
    return Reply(s_->Delete(*req), resp);
  }
  grpc::Status ListInstances(grpc::ServerContext*,
                             const v1::ListInstancesRequest* req,
                             v1::ListInstancesResponse* resp) override {
    return Reply(s_->ListInstances(*req), resp);
  }
  grpc::Status ListEvents(grpc::ServerContext*,
                          const v1::ListEventsRequest* req,
                          v1::ListEventsResponse* resp) override {
    return Reply(s_->ListEvents(*req), resp);
  }
  grpc::Status Version(grpc::ServerContext*, const v1::VersionRequest*,
                       v1::VersionResponse* resp) override {
    *resp = s_->Version();
    return grpc::Status::OK;
  }
  grpc::Status Scale(grpc::ServerContext*, const v1::ScaleRequest* req,
                     v1::App* resp) override {
    return Reply(s_->Scale(*req), resp);
  }
  grpc::Status Top(grpc::ServerContext*, const v1::TopRequest* req,
                   v1::TopResponse* resp) override {
    return Reply(s_->Top(*req), resp);
  }
  grpc::Status Rollout(grpc::ServerContext*, const v1::RolloutRequest* req,
                       v1::App* resp) override {
    return Reply(s_->Rollout(*req), resp);
  }
  grpc::Status ListRevisions(grpc::ServerContext*,
                             const v1::ListRevisionsRequest* req,
                             v1::ListRevisionsResponse* resp) override {
    return Reply(s_->ListRevisions(*req), resp);
  }
  grpc::Status Watch(grpc::ServerContext* ctx, const v1::WatchRequest* req,
                     grpc::ServerWriter<v1::WatchEvent>* writer) override {
    return ToGrpc(s_->Watch(
        *req, [&](const v1::WatchEvent& e) { return writer->Write(e); },
        [ctx] { return ctx->IsCancelled(); }));
  }
  grpc::Status Logs(grpc::ServerContext* ctx, const v1::LogsRequest* req,
                    grpc::ServerWriter<v1::LogChunk>* writer) override {
    return ToGrpc(s_->Logs(
        *req, [&](const v1::LogChunk& c) { return writer->Write(c); },
        [ctx] { return ctx->IsCancelled(); }));
  }

 private:
  TidalService* const s_;
};

}  // namespace

struct ApiServer::Impl {
  TidalService* service = nullptr;
  std::unique_ptr<GrpcTidal> grpc_service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() { Shutdown(); }

int ApiServer::port() const { return impl_->port; }

void ApiServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  impl_->service->Stop();
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

void ApiServer::Wait() { impl_->server->Wait(); }

absl::StatusOr<std::unique_ptr<ApiServer>> StartServer(
    const std::string& address, TidalService* service) {
  auto impl = std::make_unique<ApiServer::Impl>();
  impl->service = service;
  impl->grpc_service = std::make_unique<GrpcTidal>(service);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(),
                           &impl->port);
  builder.RegisterService(impl->grpc_service.get());
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT,
                             0);  // a busy port is an error
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    if (impl->server) impl->server->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", address, " (address in use or not valid)"));
  }
  GetLogger("api")->info("tidal API listening on {} (port {})", address,
                         impl->port);
  return std::make_unique<ApiServer>(std::move(impl));
}

}  // namespace tidal
