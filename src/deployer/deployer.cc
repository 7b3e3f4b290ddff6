#include "deployer/deployer.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "api/spec.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "deployer/gates.h"
#include "deployer/steps.h"
#include "deployer/transitions.h"
#include "google/protobuf/util/message_differencer.h"
#include "store/keys.h"

namespace tidal::deployer {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;
using tidal::v1::Revision;
using tidal::v1::RolloutState;
using tidal::v1::Webhook;

std::string Dur(absl::Duration d) { return absl::FormatDuration(d); }

// The shortest wait any part of a plan asks for before the next one.
class Requeue {
 public:
  explicit Requeue(absl::Time now) : now_(now) {}
  // Plan again at `t` (at least 50ms from now).
  void At(absl::Time t) {
    after_ = std::min(after_, std::max(absl::Milliseconds(50), t - now_));
  }
  // Plan again within `d`.
  void Within(absl::Duration d) { after_ = std::min(after_, d); }
  absl::Duration after() const { return after_; }

 private:
  const absl::Time now_;
  absl::Duration after_ = absl::InfiniteDuration();
};

// The app's live instances counted by revision, and the health gates of the
// update and of the stable revision fed with them.
struct Census {
  Census(const RolloutState& st, const std::vector<Instance>& live,
         absl::Duration min_ready, absl::Time now)
      : update_health(now), stable_health(now) {
    for (const auto& inst : live) {
      if (st.update_revision() != 0 &&
          inst.template_hash() == st.update_hash()) {
        ++upd_live;
        upd_ready += inst.ready() ? 1 : 0;
        upd_avail += Available(inst, min_ready, now) ? 1 : 0;
        update_health.Add(inst);
      } else {
        ++old_live;
        if (inst.template_hash() == st.stable_hash()) {
          if (inst.ready()) ++stable_ready;
          if (Available(inst, min_ready, now)) ++stable_avail;
          stable_health.Add(inst);
        }
      }
    }
  }
  int32_t upd_live = 0, upd_ready = 0, upd_avail = 0, old_live = 0,
          stable_ready = 0, stable_avail = 0;
  HealthGate update_health, stable_health;
};

}  // namespace

bool Available(const Instance& inst, absl::Duration min_ready, absl::Time now) {
  if (!inst.ready()) return false;
  if (min_ready <= absl::ZeroDuration() || !inst.has_ready_time()) return true;
  return FromProtoTime(inst.ready_time()) + min_ready <= now;
}

absl::StatusOr<RolloutState> LoadRolloutState(Store* store,
                                              const std::string& ns,
                                              const std::string& name,
                                              int64_t* version) {
  *version = 0;
  RolloutState st;
  auto kv = store->Get(keys::RolloutKey(ns, name));
  if (absl::IsNotFound(kv.status())) return st;
  if (!kv.ok()) return kv.status();
  if (!st.ParseFromString(kv->value)) {
    return absl::DataLossError(
        absl::StrCat("rollout state of ", ns, "/", name, " does not parse"));
  }
  *version = kv->resource_version;
  return st;
}

Deployer::Deployer(Store* store, Clock* clock, MetricsSource* metrics,
                   WebhookSender* webhooks, NotificationOutbox* outbox)
    : store_(store),
      clock_(clock),
      metrics_(metrics),
      webhooks_(webhooks),
      outbox_(outbox),
      history_(store, clock) {}

absl::Status Deployer::Forget(const std::string& ns, const std::string& name) {
  auto st = store_->Delete(keys::RolloutKey(ns, name));
  if (!st.ok() && !absl::IsNotFound(st.status())) return st.status();
  return history_.DeleteAll(ns, name);
}

namespace {

// What every part of one plan reads.
struct Inputs {
  const App& app;
  absl::Time now;
  int32_t total;            // the scaler's target, >= 0
  absl::Duration interval;  // the analysis interval
  absl::Duration deadline;  // the progress deadline
  MetricsSource* metrics;   // may be null
  WebhookSender* webhooks;  // may be null
  std::vector<RolloutStep> steps;
  int32_t n() const { return static_cast<int32_t>(steps.size()); }
};

// The stable revision's share of `total` at `step`: what the update does not
// take, but at least one instance while a canary step weighs traffic
// between the two (below 100%): the gateway weighs only revisions with a
// ready instance, so a stable share of none would send every request to
// the canary (a one-instance app, a start from zero) while the status says
// its weight.
int32_t StableShare(const RolloutStep& step, int32_t total) {
  const int32_t rest = total - std::min(step.new_target, total);
  if (total > 0 && step.weight >= 0 && step.weight < 100)
    return std::max(1, rest);
  return rest;
}

// Calls every webhook of a gating type; the first that refuses fails the
// rollout with `reason`. True when all passed.
bool PassWebhooks(const Inputs& in, Rollout* ro, const std::string& type,
                  const std::string& reason) {
  const Verdict v = WebhookGate(in.webhooks, in.app.spec().webhooks(), type,
                                reason, WebhookPayload(ro->Event(type)));
  if (v.failed()) ro->Fail(v.reason, v.message, false);
  return v.passed();
}

// Before the steps: the pre-rollout webhooks, and confirm-promotion for a
// release of one step (that step is the full promotion, so it is gated
// before it starts).
void StartGates(const Inputs& in, Rollout* ro) {
  if (!ro->Active()) return;
  RolloutState* st = ro->mutable_state();
  if (st->step() >= in.n()) {
    // The total shrank (a scale-down, scale to zero): fewer steps. The
    // release goes on at the last one, but it must not complete past
    // manual pauses it had not reached the end of (every batch but the
    // last waits with pause: manual): that last step then waits for a
    // promote, as the step it was cut from did.
    if (in.app.spec().rollout().pause_manual() &&
        st->step() < st->total_steps() - 1) {
      st->set_hold_for_promote(true);
    }
    st->set_step(in.n() - 1);
  }
  st->set_total_steps(in.n());
  if (!st->pre_rollout_done() &&
      PassWebhooks(in, ro, "pre-rollout", "PreRolloutWebhookFailed")) {
    st->set_pre_rollout_done(true);
  }
  if (ro->Active() && in.n() == 1 && !st->confirmed() &&
      PassWebhooks(in, ro, "confirm-promotion",
                   "ConfirmPromotionWebhookFailed")) {
    st->set_confirmed(true);
  }
}

// The first revision's rollout: no steps, no analysis; it fails (there is
// nothing to roll back to: its instances stay for `logs`/`describe`) or
// succeeds once `total` instances are available.
void PlanFirstRollout(const Inputs& in, const Census& c, Rollout* ro,
                      Requeue* rq) {
  RolloutState* st = ro->mutable_state();
  if (!ro->FirstRollout() || st->phase() != "Progressing") return;
  const Verdict health = c.stable_health.Check(st->stable_revision());
  if (health.failed()) {
    ro->FailFirst(health.reason, health.message);
    return;
  }
  if (c.stable_avail >= in.total) {
    ro->SucceedFirst();
    return;
  }
  const absl::Time first_deadline =
      FromProtoTime(st->step_started()) + in.deadline;
  if (in.now >= first_deadline) {
    ro->FailFirst(
        "ProgressDeadlineExceeded",
        absl::StrCat("revision ", st->stable_revision(),
                     " made no progress within ", Dur(in.deadline), ": ",
                     c.stable_avail, "/", in.total, " instance(s) available"));
    return;
  }
  st->set_message(absl::StrCat("revision ", st->stable_revision(), ": ",
                               c.stable_avail, "/", in.total,
                               " instance(s) available"));
  rq->At(first_deadline);
  rq->At(in.now + absl::Seconds(1));
}

// Analysis of the new revision's own traffic, once it has ready instances.
// Successes count once per interval; a failing window counts at once when
// it is the step's first failure (fast rollback), else once per interval
// too. True when enough windows in a row passed.
bool Analyze(const Inputs& in, const Census& c, Rollout* ro, Requeue* rq) {
  const RolloutState& st = ro->state();
  const auto& an = in.app.spec().rollout().analysis();
  if (c.upd_ready == 0) {
    rq->At(in.now + absl::Milliseconds(500));
    return false;
  }
  const int32_t needed = std::max(1, an.consecutive_successes());
  const absl::Time next = st.has_next_analysis()
                              ? FromProtoTime(st.next_analysis())
                              : absl::InfinitePast();
  const bool due = in.now >= next;
  // The window reaches back no further than this release (or retry)
  // began: the gateway keeps a revision's figures by its number, and an
  // earlier attempt's requests are no evidence about this one.
  absl::Duration span = in.interval;
  if (st.has_started()) {
    span = std::min(
        span, std::max(absl::Seconds(1), in.now - FromProtoTime(st.started())));
  }
  const RequestStats s =
      in.metrics->Stats(in.app.metadata().namespace_(),
                        in.app.metadata().name(), st.update_revision(), span);
  const WindowAnalysis window = AnalyzeWindow(an, s, span);
  if (!due && !(window.verdict.failed() && st.failures() == 0)) {
    rq->At(std::min(next, in.now + absl::Milliseconds(250)));
  } else if (window.verdict.inconclusive() && st.analysis_passed()) {
    // The revision passed analysis at an earlier step of this release: a
    // window with too little traffic is no evidence against it, so it
    // counts as a pass (a release that stops getting traffic still
    // completes; a failing window still fails it).
    WindowAnalysis counted = window;
    counted.verdict = Verdict::Pass();
    counted.figures = absl::StrCat(
        window.figures, " (", window.verdict.message,
        "; counted as passed: it passed analysis at an earlier step)");
    ro->RecordAnalysis(counted, needed, an.failure_limit());
    rq->At(in.now + std::min(in.interval, absl::Milliseconds(250)));
  } else if (window.verdict.inconclusive()) {
    ro->RecordInconclusive(window);
    rq->At(in.now + std::min(in.interval, absl::Milliseconds(500)));
  } else {
    ro->RecordAnalysis(window, needed, an.failure_limit());
    rq->At(in.now + std::min(in.interval, absl::Milliseconds(250)));
  }
  return st.successes() >= needed;
}

// The time since `st.step_started` that the step spent in its timed pause
// (the step's `pause`, `batchInterval`), which the deadline does not count.
absl::Duration TimeInPause(const RolloutState& st, const RolloutStep& step,
                           absl::Time now) {
  if (!st.has_step_ready() || step.pause <= absl::ZeroDuration())
    return absl::ZeroDuration();
  const absl::Time ready_at = FromProtoTime(st.step_ready());
  const absl::Time hold_from =
      std::max(ready_at, FromProtoTime(st.step_started()));
  const absl::Time hold_to = std::min(now, ready_at + step.pause);
  return std::max(absl::ZeroDuration(), hold_to - hold_from);
}

// The current step of an active rollout: its analysis, its progress
// deadline, then whether it advances. Returns the note for the status
// message; `completed` when the update became the stable revision.
std::string PlanStep(const Inputs& in, const Census& c, Rollout* ro,
                     Requeue* rq, bool* completed) {
  RolloutState* st = ro->mutable_state();
  const int32_t n = in.n();
  const int32_t k = st->step();
  const RolloutStep& step = in.steps[k];
  const bool last = k == n - 1;
  const bool instances_done = c.upd_avail >= step.new_target &&
                              c.old_live <= StableShare(step, in.total);
  if (instances_done && !st->has_step_ready())
    *st->mutable_step_ready() = ToProtoTime(in.now);

  const auto& an = in.app.spec().rollout().analysis();
  const bool analysis_needed =
      AnalysisConfigured(an) && in.metrics != nullptr && !st->promote_full();
  bool analysis_passed = analysis_needed ? Analyze(in, c, ro, rq) : true;

  // The progress deadline measures lack of progress: time the step waits
  // for its instances and its analysis. It stops while the rollout is
  // paused by hand or a manual step waits for `promote`, and the time
  // spent in a timed pause (the step's `pause`, `batchInterval`) does not
  // count (as in Kubernetes and Argo Rollouts).
  const bool manual =
      (step.manual && !last) || (last && st->hold_for_promote());
  const bool at_manual_wait = instances_done && analysis_passed && manual;
  if (at_manual_wait) {
    st->set_awaiting_promote(true);
  } else if (st->awaiting_promote() && !st->paused()) {
    // The wait for promote ended without one: an instance of the step is
    // restarting, or tidald restarted (its adopted instances are probed
    // again, and minReadySeconds counts again). The step has its whole
    // deadline from now, not from before the wait (nor the downtime).
    *st->mutable_step_started() = ToProtoTime(in.now);
    st->set_awaiting_promote(false);
  }
  // A given promote waits for nothing but the step's instances (DecideStep
  // advances on it), so neither does the deadline.
  const bool waiting_manual =
      st->paused() || at_manual_wait || (instances_done && st->promote());
  const absl::Time step_deadline = FromProtoTime(st->step_started()) +
                                   in.deadline + TimeInPause(*st, step, in.now);
  if (ro->Active() && !waiting_manual) {
    if (in.now >= step_deadline) {
      // No verdict for lack of traffic is no reason to roll back a step
      // whose instances are out: it passes with `inconclusive: pass`, or
      // when the revision passed analysis at an earlier step.
      if (instances_done && !analysis_passed && st->failures() == 0 &&
          (an.inconclusive() == "pass" || st->analysis_passed())) {
        analysis_passed = true;
        st->set_analysis(absl::StrCat(
            st->analysis(), "; passed as inconclusive at the deadline (",
            st->analysis_passed() ? "passed at an earlier step"
                                  : "inconclusive: pass",
            ")"));
      } else {
        ro->Fail("ProgressDeadlineExceeded",
                 absl::StrCat(
                     "step ", k + 1, " of ", n, " made no progress within ",
                     Dur(in.deadline), ": ", c.upd_avail, "/", step.new_target,
                     " new instance(s) available",
                     analysis_needed && !analysis_passed
                         ? absl::StrCat("; analysis: ", st->analysis().empty()
                                                            ? "no traffic yet"
                                                            : st->analysis())
                         : ""),
                 false);
      }
    } else {
      rq->At(step_deadline);
    }
  } else if (ro->Active() && waiting_manual && !st->paused()) {
    // While the step waits for `promote`, its deadline clock stays at
    // zero (as `rollout resume` sets it): when the wait ends without a
    // promote (an instance of the step crashed once and is restarting),
    // the step has its whole deadline again, not what was left when the
    // wait began. Moved in ticks, so a long wait is not a write per plan.
    const absl::Duration tick = std::min(absl::Minutes(1), in.deadline / 10);
    if (in.now - FromProtoTime(st->step_started()) >= tick)
      *st->mutable_step_started() = ToProtoTime(in.now);
  }

  StepInputs si;
  si.active = ro->Active();
  si.paused = st->paused();
  si.instances_done = instances_done;
  si.analysis_passed = analysis_passed;
  si.promote = st->promote();
  si.promote_full = st->promote_full();
  // A last step normally completes on its own; one a shrunk total cut a
  // manual pause short to waits for the promote (StartGates).
  si.manual = manual;
  si.step = k;
  si.total_steps = n;
  si.now = in.now;
  si.pause_end = FromProtoTime(st->step_ready()) + step.pause;
  const StepDecision d = DecideStep(si);
  switch (d.action) {
    case StepAction::kWaitPause:
      rq->At(d.until);
      break;
    case StepAction::kComplete:
      // The confirm-promotion webhooks gate the full promotion however it
      // is reached (an advance to the last step calls them; a release whose
      // steps a shrunk total cut short may reach the end without one).
      if (!st->confirmed() && PassWebhooks(in, ro, "confirm-promotion",
                                           "ConfirmPromotionWebhookFailed")) {
        st->set_confirmed(true);
      }
      if (!ro->Active()) break;
      ro->Complete(in.total);
      *completed = true;
      break;
    case StepAction::kAdvance:
      if (d.next_step == n - 1 && !st->confirmed() &&
          PassWebhooks(in, ro, "confirm-promotion",
                       "ConfirmPromotionWebhookFailed")) {
        st->set_confirmed(true);
      }
      if (ro->Active()) {
        if (analysis_needed && analysis_passed) st->set_analysis_passed(true);
        ro->Advance(d.next_step, in.steps, in.total);
        rq->At(in.now);
      }
      break;
    default:
      break;
  }
  return d.note;
}

}  // namespace

void Deployer::SetPlanner(std::string planner) {
  absl::MutexLock lock(&mu_);
  planner_ = std::move(planner);
}

std::string Deployer::Planner() {
  absl::MutexLock lock(&mu_);
  return planner_;
}

absl::StatusOr<DeployPlan> Deployer::Plan(const App& app, int32_t total,
                                          const std::vector<Instance>& live) {
  const std::string& ns = app.metadata().namespace_();
  const std::string& name = app.metadata().name();
  const absl::Time now = clock_->Now();
  const auto& rs = app.spec().rollout();
  const std::string hash = spec::TemplateHash(app.spec().template_());
  total = std::max(0, total);
  DeployPlan plan;
  auto log = GetLogger("deployer");

  bool created = false;
  std::vector<Op> writes;  // a new revision, committed with the state below
  auto rev_or = history_.Ensure(app, &created, &writes);
  if (!rev_or.ok()) return rev_or.status();
  const Revision rev = *rev_or;
  if (created) {
    plan.events.push_back(
        {"Normal", "RevisionCreated",
         absl::StrCat("Revision ", rev.number(), " (template ", hash,
                      ") created",
                      rev.change_cause().empty()
                          ? ""
                          : absl::StrCat(": ", rev.change_cause()))});
  }

  int64_t version = 0;
  auto loaded = LoadRolloutState(store_, ns, name, &version);
  if (!loaded.ok()) return loaded.status();
  RolloutState st = *loaded;
  const RolloutState before = st;
  const std::string planner = Planner();
  // Only a release in progress records its planner: an election then
  // rewrites the states of the apps being released, not of every app.
  if (!planner.empty() && st.update_revision() != 0 &&
      (st.phase() == "Progressing" || st.phase() == "Paused")) {
    // A failover in the middle of a release: say so where the user looks.
    if (!st.planned_by().empty() && st.planned_by() != planner) {
      std::string msg =
          absl::StrCat("The rollout of revision ", st.update_revision(), " (",
                       st.phase(), ", step ", st.step() + 1, "/",
                       st.total_steps(), ") is resumed by the new leader, ",
                       planner, "; ", st.planned_by(), " ran it until now");
      log->info("app={}/{} {}", ns, name, msg);
      plan.events.push_back({"Normal", "RolloutResumed", std::move(msg)});
    }
    st.set_planned_by(planner);
  }
  Inputs in{app,
            now,
            total,
            absl::Milliseconds(rs.analysis().interval_ms() > 0
                                   ? rs.analysis().interval_ms()
                                   : 30000),
            absl::Milliseconds(rs.has_progress_deadline_ms()
                                   ? rs.progress_deadline_ms()
                                   : 600000),
            metrics_,
            webhooks_,
            BuildSteps(rs, total)};
  Rollout ro(&st, {ns, name, now, in.interval,
                   !rs.has_auto_rollback() || rs.auto_rollback(),
                   rs.supersede() == "restart" ||
                       (rs.supersede().empty() && rs.strategy() == "canary")});

  // The app's first template is its stable revision at once (there is
  // nothing to release from or roll back to), but its first rollout still
  // has to come up: it is Progressing until its instances are available and
  // Failed when it crash-loops, never gets ready or misses its deadline. A
  // new template while it is Progressing or Failed replaces it directly.
  if (st.stable_revision() == 0 ||
      (ro.FirstRollout() && hash != st.stable_hash())) {
    ro.AdoptFirst(rev.number(), hash);
  }
  // User actions recorded by RolloutControl, then the spec against the
  // state.
  ro.Abort();
  ro.ApplySpec(rev.number(), hash);

  // Revisions to run.
  auto template_of = [&](int64_t number, const std::string& h,
                         RevisionTarget* t) -> absl::Status {
    t->revision = number;
    t->hash = h;
    if (h == hash) {
      t->tmpl = app.spec().template_();
      return absl::OkStatus();
    }
    auto r = history_.Get(ns, name, number);
    if (!r.ok()) return r.status();
    t->tmpl = r->template_();
    return absl::OkStatus();
  };
  if (absl::Status s =
          template_of(st.stable_revision(), st.stable_hash(), &plan.stable);
      !s.ok()) {
    if (!absl::IsNotFound(s)) return s;
    // The stable revision is gone from the history: the spec's becomes it.
    log->warn("app={}/{} stable revision {} missing; adopting revision {}", ns,
              name, st.stable_revision(), rev.number());
    st.set_stable_revision(rev.number());
    st.set_stable_hash(hash);
    RETURN_IF_ERROR(template_of(rev.number(), hash, &plan.stable));
  }

  const int32_t n = in.n();
  plan.min_ready = absl::Seconds(rs.min_ready_seconds());
  const Census census(st, live, plan.min_ready, now);
  Requeue requeue(now);

  StartGates(in, &ro);
  // A crash loop or a never-ready revision fails at once (HealthGate).
  if (ro.Active()) {
    const Verdict health = census.update_health.Check(st.update_revision());
    if (health.failed()) ro.Fail(health.reason, health.message, false);
  }
  PlanFirstRollout(in, census, &ro, &requeue);

  std::string step_note;
  if (ro.Active()) {
    bool completed = false;
    step_note = PlanStep(in, census, &ro, &requeue, &completed);
    if (completed) {
      plan.stable.revision = st.stable_revision();
      plan.stable.hash = st.stable_hash();
      plan.stable.tmpl = app.spec().template_();
    }
  }

  // Targets.
  if (st.update_revision() != 0 && (ro.Active() || st.phase() == "Failed")) {
    const RolloutStep& step = in.steps[std::min(st.step(), n - 1)];
    plan.has_update = true;
    RETURN_IF_ERROR(
        template_of(st.update_revision(), st.update_hash(), &plan.update));
    plan.update.target = std::min(step.new_target, total);
    plan.stable.target = StableShare(step, total);
    if (step.weight >= 0) {
      plan.weights = {{st.update_revision(), step.weight},
                      {st.stable_revision(), 100 - step.weight}};
      st.set_weight(step.weight);
    } else {
      st.set_weight(total > 0 ? 100 * plan.update.target / total : 0);
    }
    if (ro.Active()) {
      st.set_phase(st.paused() || step_note == kWaitingForPromote
                       ? "Paused"
                       : "Progressing");
      st.set_message(
          absl::StrCat("step ", st.step() + 1, " of ", n, " (", step.kind,
                       "): ", census.upd_avail, "/", plan.update.target,
                       " new instance(s) available",
                       step_note.empty() ? "" : absl::StrCat("; ", step_note)));
      requeue.Within(absl::Seconds(1));
    }
  } else {
    plan.stable.target = total;
    // Counted after this plan's decisions, so the plan that rolls back
    // already sends all traffic to the stable revision and drains the failed
    // instances (not one requeue later).
    int32_t failed_live = 0;
    for (const auto& inst : live)
      if (!st.failed_hash().empty() && inst.template_hash() == st.failed_hash())
        ++failed_live;
    if (failed_live > 0) {
      plan.stop_now_hashes.push_back(st.failed_hash());
      plan.weights = {{st.stable_revision(), 100}};
      requeue.Within(absl::Seconds(1));
    }
  }
  const Capacity cap = ResolveCapacity(rs, total);
  plan.max_surge = cap.max_surge;
  plan.max_unavailable = cap.max_unavailable;
  plan.requeue_after = requeue.after();
  for (auto& ev : ro.events()) plan.events.push_back(std::move(ev));

  // Notifications are committed with the state that caused them.
  std::vector<std::pair<Webhook, std::string>> notify;
  for (const WebhookEvent& ev : ro.notifications()) {
    for (const auto& h : app.spec().webhooks())
      if (h.type() == ev.type) notify.emplace_back(h, WebhookPayload(ev));
  }
  std::vector<std::string> outbox_keys;
  if (outbox_ != nullptr) {
    for (auto& [h, body] : notify) {
      outbox_keys.emplace_back();
      writes.push_back(outbox_->Stage(ns, name, h, body, &outbox_keys.back()));
    }
  }
  // Persist before anyone acts on the plan.
  if (!writes.empty() || version == 0 ||
      !google::protobuf::util::MessageDifferencer::Equals(st, before)) {
    writes.push_back(
        Op::Put(keys::RolloutKey(ns, name), st.SerializeAsString(), version));
    auto w = store_->Txn(writes);
    if (!w.ok()) {
      if (absl::IsFailedPrecondition(w.status())) {
        return absl::AbortedError(absl::StrCat("rollout state or revisions of ",
                                               ns, "/", name,
                                               " changed while planning"));
      }
      return w.status();
    }
    if (st.stable_revision() != before.stable_revision()) {
      std::set<int64_t> keep = {st.stable_revision(), st.update_revision(),
                                rev.number()};
      int32_t limit = rs.history_limit() > 0 ? rs.history_limit() : 10;
      if (absl::Status s = history_.Prune(ns, name, limit, keep); !s.ok())
        log->warn("app={}/{} pruning revisions: {}", ns, name, s.ToString());
    }
  }
  if (outbox_ != nullptr) {
    for (size_t i = 0; i < notify.size(); ++i)
      outbox_->Send(outbox_keys[i], notify[i].first, notify[i].second);
  } else if (webhooks_ != nullptr) {
    for (auto& [h, body] : notify) webhooks_->Notify(h, body);
  }

  // Status.
  auto& s = plan.status;
  s.set_phase(st.phase());
  s.set_stable_revision(st.stable_revision());
  s.set_update_revision(st.update_revision());
  s.set_step(st.update_revision() != 0 ? st.step() + 1 : 0);
  s.set_total_steps(st.update_revision() != 0 ? st.total_steps() : 0);
  s.set_weight(st.weight());
  s.set_message(st.message());
  if (st.has_started()) *s.mutable_started() = st.started();
  if (st.has_step_started()) *s.mutable_step_started() = st.step_started();
  s.set_reason(st.reason());
  s.set_analysis(st.analysis());
  s.set_update_ready(census.upd_ready);
  s.set_update_target(plan.has_update ? plan.update.target : 0);
  s.set_stable_ready(census.stable_ready);
  s.set_stable_target(plan.stable.target);
  s.set_failed_revision(st.failed_revision());
  s.set_stable_hash(st.stable_hash());
  s.set_failed_hash(st.failed_hash());
  *s.mutable_rollbacks() = st.rollbacks();
  s.set_observed_generation(app.metadata().generation());
  return plan;
}

}  // namespace tidal::deployer
