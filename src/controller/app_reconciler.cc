#include "controller/app_reconciler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "api/spec.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "google/protobuf/util/message_differencer.h"
#include "store/keys.h"

namespace tidal {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;

// Order in which surplus instances are stopped: not ready first, then the
// most restarted, then the newest.
bool StopFirst(const Instance& a, const Instance& b) {
  if (a.ready() != b.ready()) return !a.ready();
  if (a.restarts() != b.restarts()) return a.restarts() > b.restarts();
  return FromProtoTime(a.start_time()) > FromProtoTime(b.start_time());
}

absl::Duration GraceOf(const App& app) {
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
      options_(std::move(options)) {}

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
    if (!Live(inst)) continue;
    absl::Status st = runtime_->Stop(inst.id(), grace);
    if (!st.ok() && !absl::IsNotFound(st)) return st;
    ++stopping;
  }
  if (app == nullptr) {
    if (planner_ != nullptr) planner_->Forget(ns, name);
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
  std::vector<Instance> current, old;
  for (const auto& inst : all) {
    if (!Live(inst)) continue;
    (inst.template_hash() == hash ? current : old).push_back(inst);
  }

  ReplicaPlanner::Plan plan;
  if (planner_ != nullptr) {
    plan = planner_->Desired(app, all);
  } else {
    plan.replicas = spec::BaseReplicas(app.spec());
  }
  const int32_t desired = std::max(0, plan.replicas);
  const absl::Duration grace = GraceOf(app);
  const int32_t before = static_cast<int32_t>(current.size());

  // Scale the current template's instances to the target.
  absl::Status start_error;
  int started = 0;
  while (static_cast<int32_t>(current.size()) < desired) {
    InstanceRequest req;
    req.namespace_ = ns;
    req.app = name;
    req.template_hash = hash;
    req.tmpl = app.spec().template_();
    auto inst = runtime_->Start(req);
    if (!inst.ok()) {
      start_error = inst.status();
      events_->Record(ns, name, "Warning", "FailedCreate",
                      absl::StrCat("Starting an instance failed: ",
                                   inst.status().message()));
      break;
    }
    current.push_back(*inst);
    ++started;
  }
  int stopped = 0;
  if (static_cast<int32_t>(current.size()) > desired) {
    std::sort(current.begin(), current.end(), StopFirst);
    while (static_cast<int32_t>(current.size()) > desired) {
      absl::Status st = StopInstance(current.front(), grace);
      if (!st.ok() && !absl::IsNotFound(st)) return st;
      current.erase(current.begin());
      ++stopped;
    }
  }
  if (started > 0 || stopped > 0) {
    int32_t after = static_cast<int32_t>(current.size());
    std::string why =
        plan.reason.empty() ? "" : absl::StrCat(" (", plan.reason, ")");
    events_->Record(
        ns, name, "Normal", after > before ? "ScaledUp" : "ScaledDown",
        absl::StrCat("Scaled ", after > before ? "up" : "down", " from ",
                     before, " to ", after, " instances", why));
    log->info("app={} scaled {} -> {}{}", key, before, after, why);
  }

  // Replace instances of an older template: keep only as many old ones as
  // needed to cover the current template's instances that are not ready yet.
  int32_t ready_current = 0;
  for (const auto& inst : current) ready_current += inst.ready() ? 1 : 0;
  int32_t keep_old = std::max(0, desired - ready_current);
  int replaced = 0;
  if (static_cast<int32_t>(old.size()) > keep_old) {
    std::sort(old.begin(), old.end(), StopFirst);
    while (static_cast<int32_t>(old.size()) > keep_old) {
      absl::Status st = StopInstance(old.front(), grace);
      if (!st.ok() && !absl::IsNotFound(st)) return st;
      old.erase(old.begin());
      ++replaced;
    }
  }
  if (replaced > 0) {
    events_->Record(
        ns, name, "Normal", "Replaced",
        absl::StrCat("Stopped ", replaced,
                     " instance(s) of the previous template; template ", hash,
                     " has ", ready_current, "/", desired, " ready"));
  }

  std::vector<Instance> serving = current;
  serving.insert(serving.end(), old.begin(), old.end());
  if (routes_ != nullptr) routes_->UpdateRoute(app, serving);

  // Status.
  tidal::v1::AppStatus status = app.status();
  int32_t ready = 0;
  const Instance* crashing = nullptr;
  for (const auto& inst : serving) {
    ready += inst.ready() ? 1 : 0;
    if (inst.phase() == "CrashLoopBackOff" && inst.template_hash() == hash)
      crashing = &inst;
  }
  status.set_observed_generation(app.metadata().generation());
  status.set_desired_replicas(desired);
  status.set_current_replicas(static_cast<int32_t>(serving.size()));
  status.set_ready_replicas(ready);
  status.set_template_hash(hash);
  if (options_.url) status.set_url(options_.url(ns, name));
  if (plan.has_status) *status.mutable_scaling() = plan.status;
  if (crashing != nullptr) {
    SetCondition(
        &status, "Ready", "False", "CrashLoopBackOff",
        absl::StrCat("instance ", crashing->id(), ": ", crashing->message()),
        now);
  } else if (ready_current >= desired && old.empty()) {
    SetCondition(&status, "Ready", "True", "AllInstancesReady",
                 absl::StrCat(ready_current, "/", desired, " instances ready"),
                 now);
  } else {
    SetCondition(&status, "Ready", "False", "InstancesNotReady",
                 absl::StrCat(ready_current, "/", desired,
                              " instances of template ", hash, " ready"),
                 now);
  }
  if (old.empty() && static_cast<int32_t>(current.size()) == desired) {
    SetCondition(&status, "Progressing", "True", "Complete",
                 absl::StrCat("template ", hash, " is rolled out"), now);
  } else {
    SetCondition(&status, "Progressing", "True", "Updating",
                 absl::StrCat(current.size(), " instance(s) of template ", hash,
                              ", ", old.size(), " of older templates"),
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
  return Result{};
}

}  // namespace tidal
