#include "controller/app_reconciler.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "api/spec.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "store/keys.h"

namespace tidal {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;

absl::Duration GraceOf(const App& app) {
  // `tidalctl delete --grace-period/--force` overrides the template's.
  if (app.metadata().has_deletion_timestamp() &&
      app.metadata().has_deletion_grace_period_seconds()) {
    return absl::Seconds(app.metadata().deletion_grace_period_seconds());
  }
  const auto& t = app.spec().template_();
  return absl::Seconds(t.has_termination_grace_period_seconds()
                           ? t.termination_grace_period_seconds()
                           : 30);
}

}  // namespace

void SetCondition(tidal::v1::AppStatus* status, const std::string& type,
                  const std::string& cond_status, const std::string& reason,
                  const std::string& message, absl::Time now) {
  tidal::v1::Condition* cond = nullptr;
  for (auto& c : *status->mutable_conditions()) {
    if (c.type() == type) cond = &c;
  }
  if (cond == nullptr) {
    cond = status->add_conditions();
    cond->set_type(type);
  }
  if (cond->status() != cond_status || !cond->has_last_transition_time()) {
    *cond->mutable_last_transition_time() = ToProtoTime(now);
  }
  cond->set_status(cond_status);
  cond->set_reason(reason);
  cond->set_message(message);
}

AppReconciler::AppReconciler(Store* store, Runtime* runtime,
                             EventRecorder* events, Clock* clock,
                             Options options)
    : store_(store),
      runtime_(runtime),
      events_(events),
      clock_(clock),
      options_(std::move(options)),
      planner_(options_.planner),
      routes_(options_.routes),
      own_deployer_(store, clock, nullptr, nullptr),
      deployer_(options_.deployer != nullptr ? options_.deployer
                                             : &own_deployer_) {}

bool AppReconciler::Live(const Instance& inst) {
  if (inst.phase() == "Terminating") return false;
  return routes_ == nullptr || !routes_->IsDraining(inst.id());
}

absl::Status AppReconciler::StopInstance(const Instance& inst,
                                         absl::Duration grace) {
  if (routes_ == nullptr) return runtime_->Stop(inst.id(), grace);
  Runtime* runtime = runtime_;
  std::string id = inst.id();
  routes_->Drain(inst, grace,
                 [runtime, id, grace] { (void)runtime->Stop(id, grace); });
  return absl::OkStatus();
}

absl::StatusOr<AppReconciler::Result> AppReconciler::ReconcileDeleted(
    const std::string& ns, const std::string& name, const App* app,
    int64_t version) {
  std::vector<Instance> instances = runtime_->List(ns, name);
  if (routes_ != nullptr) routes_->RemoveRoute(ns, name);
  absl::Duration grace = app != nullptr ? GraceOf(*app) : absl::Seconds(30);
  int stopping = 0;
  for (const auto& inst : instances) {
    if (!Live(inst)) {
      // Already stopping: a delete with a shorter grace period (--force)
      // cuts its wait (the runtime ignores a longer one).
      if (app != nullptr &&
          app->metadata().has_deletion_grace_period_seconds()) {
        absl::Status st = runtime_->Stop(inst.id(), grace);
        if (!st.ok() && !absl::IsNotFound(st)) return st;
      }
      continue;
    }
    // New requests already get 404; the ones in flight finish (within the
    // grace period) before the instance gets SIGTERM.
    absl::Status st = StopInstance(inst, grace);
    if (!st.ok() && !absl::IsNotFound(st)) return st;
    ++stopping;
  }
  if (app == nullptr) {
    if (planner_ != nullptr) planner_->Forget(ns, name);
    if (instances.empty()) RETURN_IF_ERROR(deployer_->Forget(ns, name));
    return Result{};
  }
  if (stopping > 0) {
    events_->Record(ns, name, "Normal", "Stopping",
                    absl::StrCat("Stopping ", stopping,
                                 " instance(s) before deleting the app"));
  }
  if (!instances.empty())
    return Result{};  // the runtime's removal events requeue us
  // Everything is stopped: the App can go.
  auto st = store_->Delete(keys::App(ns, name), version);
  if (!st.ok() && !absl::IsNotFound(st.status())) return st.status();
  events_->Purge(ns, name);
  RETURN_IF_ERROR(deployer_->Forget(ns, name));
  if (planner_ != nullptr) planner_->Forget(ns, name);
  GetLogger("controller")->info("app={}/{} deleted", ns, name);
  return Result{};
}

absl::StatusOr<AppReconciler::Result> AppReconciler::Reconcile(
    const std::string& key) {
  std::vector<std::string> parts = absl::StrSplit(key, absl::MaxSplits('/', 1));
  if (parts.size() != 2)
    return absl::InvalidArgumentError(absl::StrCat("bad key ", key));
  const std::string& ns = parts[0];
  const std::string& name = parts[1];
  auto log = GetLogger("controller");

  auto kv = store_->Get(keys::App(ns, name));
  if (absl::IsNotFound(kv.status()))
    return ReconcileDeleted(ns, name, nullptr, 0);
  if (!kv.ok()) return kv.status();
  App app;
  if (!app.ParseFromString(kv->value)) {
    return absl::DataLossError(
        absl::StrCat("app ", key, " in the store does not parse"));
  }
  if (app.metadata().has_deletion_timestamp()) {
    return ReconcileDeleted(ns, name, &app, kv->resource_version);
  }

  const absl::Time now = clock_->Now();
  const std::string hash = spec::TemplateHash(app.spec().template_());
  std::vector<Instance> all = runtime_->List(ns, name);
  std::vector<Instance> live;
  for (const auto& inst : all)
    if (Live(inst)) live.push_back(inst);

  ReplicaPlanner::Plan plan;
  if (planner_ != nullptr) {
    plan = planner_->Desired(app, all);
  } else {
    plan.replicas = spec::BaseReplicas(app.spec());
  }
  int32_t desired = std::max(0, plan.replicas);
  if (options_.max_instances > 0 && desired > options_.max_instances) {
    // An unbounded maxReplicas stands for the per-app maximum.
    events_->Record(ns, name, "Warning", "InstanceLimit",
                    absl::StrCat(desired, " instances wanted; held to ",
                                 options_.max_instances,
                                 " (tidald --max-instances-per-app)"));
    desired = options_.max_instances;
  }
  const absl::Duration grace = GraceOf(app);

  auto dp_or = deployer_->Plan(app, desired, live);
  if (!dp_or.ok()) return dp_or.status();
  const deployer::DeployPlan& dp = *dp_or;
  for (const auto& ev : dp.events)
    events_->Record(ns, name, ev.type, ev.reason, ev.message, "deployer");

  // Instances by revision: the update, the stable one, and any other.
  std::vector<Instance> upd, stable, other;
  int force_stopped = 0;
  for (const auto& inst : live) {
    if (dp.has_update && inst.template_hash() == dp.update.hash) {
      upd.push_back(inst);
    } else if (inst.template_hash() == dp.stable.hash) {
      stable.push_back(inst);
    } else if (std::find(dp.stop_now_hashes.begin(), dp.stop_now_hashes.end(),
                         inst.template_hash()) != dp.stop_now_hashes.end()) {
      // A rolled-back revision (Argo Rollouts' abort): it gets no traffic
      // from this plan on, so it is drained and stopped at once, outside
      // maxUnavailable (it is not capacity worth keeping), and it does not
      // count against maxSurge below, so the stable revision is started
      // back up to the full target in this same reconcile
      // (docs/rollouts.md, "Capacity during a rollback").
      absl::Status st = StopInstance(inst, grace);
      if (!st.ok() && !absl::IsNotFound(st)) return st;
      ++force_stopped;
    } else {
      other.push_back(inst);
    }
  }
  if (force_stopped > 0) {
    events_->Record(ns, name, "Normal", "Stopping",
                    absl::StrCat("Draining and stopping ", force_stopped,
                                 " instance(s) of the rolled-back revision"),
                    "deployer");
  }
  const int32_t before =
      static_cast<int32_t>(upd.size() + stable.size() + other.size());
  const int32_t max_total = desired + dp.max_surge;
  const int32_t min_available = std::max(0, desired - dp.max_unavailable);
  int32_t room = max_total - before;

  // Starts, within maxSurge: the update first, then the stable revision.
  absl::Status start_error;
  int started = 0;
  auto start = [&](const deployer::RevisionTarget& t,
                   std::vector<Instance>* group) {
    while (start_error.ok() && room > 0 &&
           static_cast<int32_t>(group->size()) < t.target) {
      InstanceRequest req;
      req.namespace_ = ns;
      req.app = name;
      req.template_hash = t.hash;
      req.revision = t.revision;
      req.tmpl = t.tmpl;
      auto inst = runtime_->Start(req);
      if (!inst.ok()) {
        start_error = inst.status();
        // A missing secret or key (docs/secrets.md): Kubernetes' reason.
        constexpr absl::string_view kConfig = "CreateContainerConfigError: ";
        absl::string_view msg = inst.status().message();
        const bool config = absl::StartsWith(msg, kConfig);
        if (config) {
          msg.remove_prefix(kConfig.size());
          // Retried with back-off: the secret may be created any time.
          start_error = absl::UnavailableError(msg);
        }
        events_->Record(ns, name, "Warning",
                        config ? "CreateContainerConfigError" : "FailedCreate",
                        absl::StrCat("Starting an instance failed: ", msg));
        break;
      }
      group->push_back(*inst);
      --room;
      ++started;
    }
  };
  if (dp.has_update) start(dp.update, &upd);
  start(dp.stable, &stable);

  // Stops, within maxUnavailable: instances of other revisions and the
  // surplus of each; unavailable ones first (they cost no capacity).
  std::vector<Instance> candidates = other;
  // A scale-down keeps the instances that hold upgraded connections
  // (WebSocket): the app runs above its target until they close. A release
  // (the stable revision shrinking while an update grows, other revisions)
  // drains them; the drain's end closes them.
  auto surplus = [&](std::vector<Instance>* group, int32_t target,
                     bool keep_tunnels) {
    // Not ready first, then the most restarted, then the newest: the ones
    // the gateway fills last (gateway/route_sink.h).
    std::sort(group->begin(), group->end(), StopsBefore);
    int32_t extra = static_cast<int32_t>(group->size()) - target;
    for (size_t i = 0; i < group->size() && extra > 0; ++i) {
      if (keep_tunnels && routes_ != nullptr &&
          routes_->Tunnels((*group)[i].id()) > 0) {
        continue;
      }
      candidates.push_back((*group)[i]);
      --extra;
    }
  };
  surplus(&stable, dp.stable.target, /*keep_tunnels=*/!dp.has_update);
  if (dp.has_update) surplus(&upd, dp.update.target, /*keep_tunnels=*/true);
  auto available = [&](const Instance& i) {
    return deployer::Available(i, dp.min_ready, now);
  };
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const Instance& a, const Instance& b) {
                     return !available(a) && available(b);
                   });
  int32_t available_count = 0;
  for (const auto* g : {&upd, &stable, &other})
    for (const auto& i : *g) available_count += available(i) ? 1 : 0;
  std::vector<std::string> stopped_ids;
  for (const auto& c : candidates) {
    if (available(c)) {
      if (available_count - 1 < min_available) continue;
      --available_count;
    }
    absl::Status st = StopInstance(c, grace);
    if (!st.ok() && !absl::IsNotFound(st)) return st;
    stopped_ids.push_back(c.id());
  }
  auto drop_stopped = [&](std::vector<Instance>* g) {
    g->erase(std::remove_if(g->begin(), g->end(),
                            [&](const Instance& i) {
                              return std::find(stopped_ids.begin(),
                                               stopped_ids.end(),
                                               i.id()) != stopped_ids.end();
                            }),
             g->end());
  };
  drop_stopped(&upd);
  drop_stopped(&stable);
  drop_stopped(&other);
  const int stopped = static_cast<int>(stopped_ids.size());

  // Where the app is heading: the update while one runs, else stable.
  std::vector<Instance>& current = dp.has_update ? upd : stable;
  std::vector<Instance> old = dp.has_update ? stable : std::vector<Instance>{};
  old.insert(old.end(), other.begin(), other.end());
  const int32_t after =
      static_cast<int32_t>(upd.size() + stable.size() + other.size());
  // A rollback's stop of the rolled-back revision and the stable revision's
  // start back up to the target is a replacement, not a scale: the count
  // was the target all along.
  if ((started > 0 || stopped > 0) && !dp.has_update && other.empty() &&
      force_stopped == 0 && after != before) {
    std::string why =
        plan.reason.empty() ? "" : absl::StrCat(" (", plan.reason, ")");
    events_->Record(
        ns, name, "Normal", after > before ? "ScaledUp" : "ScaledDown",
        absl::StrCat("Scaled ", after > before ? "up" : "down", " from ",
                     before, " to ", after, " instances", why));
    log->info("app={} scaled {} -> {}{}", key, before, after, why);
  } else if (started > 0 || stopped > 0) {
    events_->Record(
        ns, name, "Normal", "Replacing",
        absl::StrCat("Started ", started, ", stopped ", stopped + force_stopped,
                     " instance(s); revision ",
                     dp.has_update ? dp.update.revision : dp.stable.revision,
                     " has ", current.size(), "/",
                     dp.has_update ? dp.update.target : dp.stable.target,
                     ", other revisions ", old.size()),
        "deployer");
  }

  std::vector<Instance> serving = current;
  serving.insert(serving.end(), old.begin(), old.end());
  if (routes_ != nullptr) {
    routes_->UpdateRoute(app, serving);
    routes_->SetWeights(ns, name, dp.weights);
  }

  // Status.
  tidal::v1::AppStatus status = app.status();
  int32_t ready = 0, ready_current = 0;
  const Instance* crashing = nullptr;
  for (const auto& inst : serving) ready += inst.ready() ? 1 : 0;
  for (const auto& inst : current) {
    ready_current += inst.ready() ? 1 : 0;
    if (inst.phase() == "CrashLoopBackOff" ||
        (!inst.ready() && (inst.reason() == kReasonReadinessProbeFailed ||
                           inst.reason() == kReasonStartupTimeout)))
      crashing = &inst;
  }
  status.set_observed_generation(app.metadata().generation());
  status.set_desired_replicas(desired);
  status.set_current_replicas(static_cast<int32_t>(serving.size()));
  status.set_ready_replicas(ready);
  status.set_template_hash(hash);
  *status.mutable_rollout() = dp.status;
  if (options_.url) status.set_url(options_.url(ns, name));
  if (plan.has_status) *status.mutable_scaling() = plan.status;
  const std::string& phase = dp.status.phase();
  if (crashing != nullptr) {
    SetCondition(
        &status, "Ready", "False",
        crashing->phase() == "CrashLoopBackOff" ? "CrashLoopBackOff"
                                                : crashing->reason(),
        absl::StrCat("instance ", crashing->id(), ": ", crashing->message()),
        now);
  } else if (ready_current >= desired && old.empty()) {
    SetCondition(&status, "Ready", "True", "AllInstancesReady",
                 absl::StrCat(ready_current, "/", desired, " instances ready"),
                 now);
  } else {
    SetCondition(
        &status, "Ready", "False", "InstancesNotReady",
        absl::StrCat(ready_current, "/", desired, " instances of revision ",
                     dp.has_update ? dp.update.revision : dp.stable.revision,
                     " ready"),
        now);
  }
  if (phase == "RolledBack") {
    SetCondition(&status, "Progressing", "False", "RolledBack",
                 dp.status.message(), now);
  } else if (phase == "Failed") {
    SetCondition(&status, "Progressing", "False", "RolloutFailed",
                 dp.status.message(), now);
  } else if (dp.has_update) {
    SetCondition(&status, "Progressing", "True",
                 phase == "Paused" ? "Paused" : "Updating",
                 absl::StrCat("revision ", dp.update.revision, ": ",
                              dp.status.message()),
                 now);
  } else if (old.empty() && static_cast<int32_t>(current.size()) == desired) {
    SetCondition(&status, "Progressing", "True", "Complete",
                 absl::StrCat("revision ", dp.stable.revision, " (template ",
                              dp.stable.hash, ") is rolled out"),
                 now);
  } else {
    SetCondition(&status, "Progressing", "True", "Updating",
                 absl::StrCat(current.size(), " instance(s) of revision ",
                              dp.stable.revision, ", ", old.size(),
                              " of other revisions"),
                 now);
  }
  if (!google::protobuf::util::MessageDifferencer::Equals(status,
                                                          app.status())) {
    *app.mutable_status() = status;
    app.mutable_metadata()->set_resource_version(0);
    auto st = store_->Update(keys::App(ns, name), app.SerializeAsString(),
                             kv->resource_version);
    if (!st.ok()) {
      if (absl::IsFailedPrecondition(st.status())) {
        return absl::AbortedError(
            absl::StrCat("app ", key, " changed while reconciling"));
      }
      return st.status();
    }
  }
  if (!start_error.ok()) return start_error;
  Result result;
  result.requeue_after = dp.requeue_after;
  if (!old.empty() || static_cast<int32_t>(current.size()) != desired ||
      ready_current < desired) {
    // Capacity-limited steps continue as instances change; poll too, in
    // case a change is missed.
    result.requeue_after = std::min(result.requeue_after, absl::Seconds(2));
  }
  return result;
}

}  // namespace tidal
