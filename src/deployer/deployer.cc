#include "deployer/deployer.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "api/spec.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "deployer/steps.h"
#include "google/protobuf/util/message_differencer.h"
#include "runtime/runtime.h"
#include "store/keys.h"

namespace tidal::deployer {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;
using tidal::v1::Revision;
using tidal::v1::RolloutState;
using tidal::v1::Webhook;

bool AnalysisConfigured(const tidal::v1::Analysis& a) {
  return a.min_requests() > 0 || a.has_max_error_rate() ||
         a.max_p99_latency_ms() > 0;
}

// How far back a crash still counts towards a crash loop (docs/rollouts.md,
// "Fail fast"): the process runtime's own horizon, a run this long resets
// its restart back-off (ProcessRuntime::Options::backoff_reset).
constexpr absl::Duration kCrashWindow = absl::Minutes(10);

// What an instance's recent behaviour says (docs/rollouts.md, "Fail fast").
// Only an instance that is down after a crash right now (CrashLoopBackOff)
// or that the runtime gave up on (Failed) can count: a restart long ago, an
// instance that restarted and is starting or running again, says nothing by
// itself. start_time is the start of the run that crashed (the runtime sets
// it on every (re)start), so when that run was itself a restart
// (restarts >= 1) and began within kCrashWindow, the instance crashed twice
// within the window.
enum class CrashState {
  kNone,
  kCrashed,  // failing: it crashed before it got ready (or the runtime gave up)
  kLoop,     // crashed twice within kCrashWindow: fails the revision alone
};
CrashState Crash(const Instance& i, absl::Time now) {
  if (i.phase() == "Failed") return CrashState::kCrashed;
  if (i.phase() != "CrashLoopBackOff") return CrashState::kNone;
  // A run that began long ago (e.g. adopted after a restart of tidald, or
  // ready for hours) and then crashed once is left to the runtime.
  const bool recent =
      !i.has_start_time() || now - FromProtoTime(i.start_time()) < kCrashWindow;
  if (!recent) return CrashState::kNone;
  if (i.restarts() >= 1) return CrashState::kLoop;
  // The first run crashed: failing when it never got ready (a crash at
  // start-up); one crash after being ready is the runtime's to restart.
  return i.has_ready_time() ? CrashState::kNone : CrashState::kCrashed;
}

// An instance the runtime gave up waiting for (docs/rollouts.md, "Fail
// fast"): its process runs, but its readiness probe answered "not ready"
// failureThreshold times in a row after it started listening
// (ReadinessProbeFailed), or it never opened its port within the startup
// bound (StartupTimeout). Only before the instance was first ready.
bool NeverReady(const Instance& i) {
  return !i.ready() && (i.reason() == kReasonReadinessProbeFailed ||
                        i.reason() == kReasonStartupTimeout);
}

// The instances of one revision that fail it at once: two failing, the only
// one, or one that crashed twice within kCrashWindow. A single crash among
// several (a port taken for a moment) is left to the runtime's restart.
struct FailFast {
  explicit FailFast(absl::Time now) : now(now) {}
  const absl::Time now;
  int32_t live = 0;
  int32_t crashed = 0;
  int32_t never_ready = 0;
  bool loop = false;
  const Instance* crash = nullptr;
  const Instance* stuck = nullptr;

  void Add(const Instance& inst) {
    ++live;
    const CrashState c = Crash(inst, now);
    if (c != CrashState::kNone) {
      ++crashed;
      // The message names a looping instance first, then the one with the
      // most restarts.
      const bool is_loop = c == CrashState::kLoop;
      if (crash == nullptr || (is_loop && !loop) ||
          (is_loop == loop && inst.restarts() > crash->restarts()))
        crash = &inst;
      loop = loop || is_loop;
    } else if (NeverReady(inst)) {
      ++never_ready;
      if (stuck == nullptr) stuck = &inst;
    }
  }
  // Empty when the revision is not failing; else the rollout's reason.
  std::string Reason() const {
    const int32_t failing = crashed + never_ready;
    if (failing == 0) return "";
    if (!(failing >= 2 || live == 1 || loop)) return "";
    return crash != nullptr ? "CrashLoop" : "NeverReady";
  }
  std::string Message(int64_t revision) const {
    if (crash != nullptr) {
      return absl::StrCat(
          "revision ", revision, " does not start: instance ", crash->id(),
          " is ", crash->phase(), " after ", crash->restarts(), " restart(s)",
          crash->message().empty() ? "" : absl::StrCat(": ", crash->message()));
    }
    return absl::StrCat(
        "revision ", revision, " never gets ready: instance ", stuck->id(),
        " (", stuck->reason(), ")",
        stuck->message().empty() ? "" : absl::StrCat(": ", stuck->message()));
  }
};

// A step observes its own analysis interval before a success counts.
void ResetStep(RolloutState* st, absl::Time now, absl::Duration interval) {
  *st->mutable_step_started() = ToProtoTime(now);
  st->clear_step_ready();
  *st->mutable_next_analysis() = ToProtoTime(now + interval);
  st->set_successes(0);
  st->set_failures(0);
  st->set_promote(false);
}

std::string Dur(absl::Duration d) { return absl::FormatDuration(d); }

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
  // The app's first template is its stable revision at once (there is
  // nothing to release from or roll back to), but its first rollout still
  // has to come up: it is Progressing until its instances are available and
  // Failed when it crash-loops, never gets ready or misses its deadline. A
  // new template while it is Progressing or Failed replaces it directly.
  auto first_rollout = [&] {
    return st.update_revision() == 0 &&
           (st.phase() == "Progressing" || st.phase() == "Failed");
  };
  if (st.stable_revision() == 0 ||
      (first_rollout() && hash != st.stable_hash())) {
    if (st.stable_revision() != 0) {
      plan.events.push_back(
          {"Normal", "RolloutStarted",
           absl::StrCat("Revision ", rev.number(), " replaces revision ",
                        st.stable_revision(),
                        ", which never came up (nothing to roll back to)")});
    }
    st.set_stable_revision(rev.number());
    st.set_stable_hash(hash);
    st.set_phase("Progressing");
    st.clear_reason();
    st.clear_analysis();
    *st.mutable_started() = ToProtoTime(now);
    *st.mutable_step_started() = ToProtoTime(now);
  }

  const absl::Duration interval = absl::Milliseconds(
      rs.analysis().interval_ms() > 0 ? rs.analysis().interval_ms() : 30000);
  std::vector<std::pair<Webhook, std::string>> notify;
  auto hooks_of = [&](const std::string& type) {
    std::vector<Webhook> out;
    for (const auto& h : app.spec().webhooks())
      if (h.type() == type) out.push_back(h);
    return out;
  };
  auto payload = [&](const std::string& type) {
    WebhookEvent ev;
    ev.type = type;
    ev.ns = ns;
    ev.app = name;
    ev.from_revision = st.stable_revision();
    ev.to_revision = st.update_revision();
    ev.phase = st.phase();
    ev.step = st.step() + 1;
    ev.total_steps = st.total_steps();
    ev.reason = st.reason();
    ev.message = st.message();
    ev.time = now;
    return WebhookPayload(ev);
  };
  auto active = [&] {
    return st.update_revision() != 0 && st.phase() != "Failed";
  };
  // A failed gate or deadline: roll back (or hold, with autoRollback off).
  auto fail = [&](const std::string& reason, const std::string& message,
                  bool force_rollback) {
    const bool rollback =
        force_rollback || !rs.has_auto_rollback() || rs.auto_rollback();
    st.set_reason(reason);
    st.set_message(message);
    log->warn("app={}/{} rollout of revision {} failed ({}): {}", ns, name,
              st.update_revision(), reason, message);
    if (rollback) {
      st.set_phase("RolledBack");
      for (const auto& h : hooks_of("rollback"))
        notify.emplace_back(h, payload("rollback"));
      plan.events.push_back(
          {"Warning", "RolledBack",
           absl::StrCat("Revision ", st.update_revision(),
                        " rolled back to revision ", st.stable_revision(), " (",
                        reason, "): ", message)});
      st.set_failed_hash(st.update_hash());
      st.set_failed_revision(st.update_revision());
      st.set_update_revision(0);
      st.clear_update_hash();
      st.set_weight(0);
      st.set_paused(false);
      st.set_promote(false);
      st.set_promote_full(false);
    } else {
      st.set_phase("Failed");
      plan.events.push_back(
          {"Warning", "RolloutFailed",
           absl::StrCat("Revision ", st.update_revision(), " failed (", reason,
                        "): ", message,
                        "; autoRollback is off: holding the current step")});
    }
  };
  auto start = [&](const std::string& why) {
    st.set_update_revision(rev.number());
    st.set_update_hash(hash);
    st.set_phase("Progressing");
    st.set_pre_rollout_done(false);
    st.set_confirmed(false);
    st.set_paused(false);
    st.set_promote_full(false);
    st.clear_reason();
    st.clear_analysis();
    st.clear_failed_hash();
    st.set_failed_revision(0);
    ResetStep(&st, now, interval);
    plan.events.push_back(
        {"Normal", "RolloutStarted",
         absl::StrCat(why.empty() ? "Revision " : why + "revision ",
                      rev.number(), " replaces revision ",
                      st.stable_revision())});
  };

  // User actions recorded by RolloutControl.
  if (st.abort()) {
    st.set_abort(false);
    if (st.update_revision() != 0)
      fail("Aborted",
           absl::StrCat("the rollout of revision ", st.update_revision(),
                        " was aborted"),
           true);
  }

  // The spec against the state.
  if (st.update_revision() != 0) {
    if (hash == st.update_hash()) {
      // Carry on.
    } else if (hash == st.stable_hash()) {
      plan.events.push_back(
          {"Normal", "RolloutCancelled",
           absl::StrCat("The spec is back at revision ", st.stable_revision(),
                        "; revision ", st.update_revision(), " is withdrawn")});
      st.set_update_revision(0);
      st.clear_update_hash();
      st.set_phase("Succeeded");
      st.set_weight(0);
      st.clear_reason();
      st.set_message(absl::StrCat("revision ", st.stable_revision(),
                                  " restored by a spec change"));
    } else {
      // Supersede from the current step: the previous update's instances
      // count as old ones and are replaced by the new revision.
      const int32_t step = st.step();
      start(absl::StrCat("Superseding revision ", st.update_revision(),
                         " at step ", step + 1, ": "));
      st.set_step(step);
    }
  } else if (hash != st.stable_hash() && hash != st.failed_hash()) {
    st.set_step(0);
    start("");
    st.clear_started();
  }
  if (st.update_revision() != 0 && !st.has_started())
    *st.mutable_started() = ToProtoTime(now);

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

  const std::vector<RolloutStep> steps = BuildSteps(rs, total);
  const int32_t n = static_cast<int32_t>(steps.size());
  int32_t upd_live = 0, upd_ready = 0, upd_avail = 0, old_live = 0,
          stable_ready = 0, stable_avail = 0;
  FailFast upd_fail(now), stable_fail(now);
  plan.min_ready = absl::Seconds(rs.min_ready_seconds());
  for (const auto& inst : live) {
    if (st.update_revision() != 0 && inst.template_hash() == st.update_hash()) {
      ++upd_live;
      upd_ready += inst.ready() ? 1 : 0;
      upd_avail += Available(inst, plan.min_ready, now) ? 1 : 0;
      upd_fail.Add(inst);
    } else {
      ++old_live;
      if (inst.template_hash() == st.stable_hash()) {
        if (inst.ready()) ++stable_ready;
        if (Available(inst, plan.min_ready, now)) ++stable_avail;
        stable_fail.Add(inst);
      }
    }
  }
  // Calls every webhook of a gating type; the first that refuses fails the
  // rollout with `reason`. True when all passed.
  auto gate = [&](const std::string& type, const std::string& reason) {
    for (const auto& h : hooks_of(type)) {
      absl::Status s = webhooks_ != nullptr ? webhooks_->Call(h, payload(type))
                                            : absl::OkStatus();
      if (!s.ok()) {
        fail(reason, std::string(s.message()), false);
        return false;
      }
    }
    return true;
  };
  const absl::Duration deadline = absl::Milliseconds(
      rs.has_progress_deadline_ms() ? rs.progress_deadline_ms() : 600000);
  absl::Duration requeue = absl::InfiniteDuration();
  auto requeue_at = [&](absl::Time t) {
    requeue = std::min(requeue, std::max(absl::Milliseconds(50), t - now));
  };

  if (active()) {
    st.set_total_steps(n);
    if (st.step() >= n) st.set_step(n - 1);
    if (!st.pre_rollout_done() &&
        gate("pre-rollout", "PreRolloutWebhookFailed")) {
      st.set_pre_rollout_done(true);
    }
    // One step (no batches, no canary steps): that step is the full
    // promotion, so confirm-promotion gates it before it starts.
    if (active() && n == 1 && !st.confirmed() &&
        gate("confirm-promotion", "ConfirmPromotionWebhookFailed")) {
      st.set_confirmed(true);
    }
  }
  // A crash loop or a never-ready revision fails at once (FailFast).
  if (active()) {
    const std::string why = upd_fail.Reason();
    if (!why.empty()) fail(why, upd_fail.Message(st.update_revision()), false);
  }

  // The first revision's rollout: no steps, no analysis; it fails (there is
  // nothing to roll back to: its instances stay for `logs`/`describe`) or
  // succeeds once `total` instances are available.
  if (first_rollout() && st.phase() == "Progressing") {
    std::string why = stable_fail.Reason();
    std::string message;
    if (!why.empty()) {
      message = stable_fail.Message(st.stable_revision());
    } else if (stable_avail >= total) {
      st.set_phase("Succeeded");
      st.set_message(absl::StrCat("revision ", st.stable_revision(),
                                  " is fully rolled out"));
    } else {
      const absl::Time first_deadline =
          FromProtoTime(st.step_started()) + deadline;
      if (now >= first_deadline) {
        why = "ProgressDeadlineExceeded";
        message =
            absl::StrCat("revision ", st.stable_revision(),
                         " made no progress within ", Dur(deadline), ": ",
                         stable_avail, "/", total, " instance(s) available");
      } else {
        st.set_message(absl::StrCat("revision ", st.stable_revision(), ": ",
                                    stable_avail, "/", total,
                                    " instance(s) available"));
        requeue_at(first_deadline);
        requeue_at(now + absl::Seconds(1));
      }
    }
    if (!why.empty()) {
      st.set_phase("Failed");
      st.set_reason(why);
      st.set_message(message);
      log->warn("app={}/{} first revision {} failed ({}): {}", ns, name,
                st.stable_revision(), why, message);
      plan.events.push_back(
          {"Warning", "RolloutFailed",
           absl::StrCat("Revision ", st.stable_revision(), " failed (", why,
                        "): ", message,
                        "; it is the app's first revision: nothing to roll "
                        "back to")});
    }
  }

  std::string step_note;
  if (active()) {
    const int32_t k = st.step();
    const RolloutStep& step = steps[k];
    const bool last = k == n - 1;
    const bool instances_done =
        upd_avail >= step.new_target && old_live <= total - step.new_target;
    if (instances_done && !st.has_step_ready())
      *st.mutable_step_ready() = ToProtoTime(now);

    // Analysis of the new revision's own traffic.
    const auto& an = rs.analysis();
    const bool analysis_needed =
        AnalysisConfigured(an) && metrics_ != nullptr && !st.promote_full();
    bool analysis_passed = !analysis_needed;
    const int32_t needed = std::max(1, an.consecutive_successes());
    if (analysis_needed && upd_ready > 0) {
      absl::Time next = st.has_next_analysis()
                            ? FromProtoTime(st.next_analysis())
                            : absl::InfinitePast();
      // Successes count once per interval; a failing window counts at once
      // when it is the step's first failure (fast rollback), else once per
      // interval too.
      const bool due = now >= next;
      {
        RequestStats s =
            metrics_->Stats(ns, name, st.update_revision(), interval);
        const double rate =
            s.requests > 0 ? static_cast<double>(s.responses_5xx) / s.requests
                           : 0;
        std::string figures =
            absl::StrFormat("requests=%d 5xx=%.1f%% p99=%.0fms over %s",
                            s.requests, rate * 100, s.p99_ms, Dur(interval));
        const int64_t min_requests = std::max<int64_t>(1, an.min_requests());
        const bool failing =
            s.requests >= min_requests &&
            ((an.has_max_error_rate() && rate > an.max_error_rate()) ||
             (an.max_p99_latency_ms() > 0 &&
              s.p99_ms > an.max_p99_latency_ms()));
        if (!due && !(failing && st.failures() == 0)) {
          requeue_at(std::min(next, now + absl::Milliseconds(250)));
        } else if (s.requests < min_requests) {
          st.set_analysis(absl::StrCat(figures, " (inconclusive: fewer than ",
                                       min_requests, " requests)"));
          requeue_at(now + std::min(interval, absl::Milliseconds(500)));
        } else {
          std::vector<std::string> over;
          if (an.has_max_error_rate() && rate > an.max_error_rate()) {
            over.push_back(absl::StrFormat("5xx rate %.1f%% > %.1f%%",
                                           rate * 100,
                                           an.max_error_rate() * 100));
          }
          if (an.max_p99_latency_ms() > 0 &&
              s.p99_ms > an.max_p99_latency_ms()) {
            over.push_back(absl::StrFormat("p99 %.0fms > %dms", s.p99_ms,
                                           an.max_p99_latency_ms()));
          }
          *st.mutable_next_analysis() = ToProtoTime(now + interval);
          if (over.empty()) {
            st.set_successes(st.successes() + 1);
            st.set_analysis(absl::StrCat(figures, ": passed (",
                                         std::min(st.successes(), needed), "/",
                                         needed, ")"));
          } else {
            st.set_successes(0);
            st.set_failures(st.failures() + 1);
            st.set_analysis(
                absl::StrCat(figures, ": ", absl::StrJoin(over, ", ")));
            if (st.failures() > an.failure_limit()) {
              fail("AnalysisFailed",
                   absl::StrCat("revision ", st.update_revision(),
                                " failed analysis: ", figures, ": ",
                                absl::StrJoin(over, ", ")),
                   false);
            }
          }
          requeue_at(now + std::min(interval, absl::Milliseconds(250)));
        }
      }
      analysis_passed = st.successes() >= needed;
    } else if (analysis_needed) {
      requeue_at(now + absl::Milliseconds(500));
    }

    // The progress deadline measures lack of progress: time the step waits
    // for its instances and its analysis. It stops while the rollout is
    // paused by hand or a manual step waits for `promote`, and the time
    // spent in a timed pause (the step's `pause`, `batchInterval`) does not
    // count (as in Kubernetes and Argo Rollouts).
    const bool waiting_manual =
        st.paused() ||
        (instances_done && analysis_passed && step.manual && !last);
    absl::Duration held = absl::ZeroDuration();
    if (st.has_step_ready() && step.pause > absl::ZeroDuration()) {
      const absl::Time ready_at = FromProtoTime(st.step_ready());
      const absl::Time hold_from =
          std::max(ready_at, FromProtoTime(st.step_started()));
      const absl::Time hold_to = std::min(now, ready_at + step.pause);
      held = std::max(absl::ZeroDuration(), hold_to - hold_from);
    }
    const absl::Time step_deadline =
        FromProtoTime(st.step_started()) + deadline + held;
    if (active() && !waiting_manual) {
      if (now >= step_deadline) {
        if (instances_done && !analysis_passed && an.inconclusive() == "pass" &&
            st.failures() == 0) {
          analysis_passed = true;
          st.set_analysis(absl::StrCat(st.analysis(),
                                       "; passed as inconclusive at the "
                                       "deadline (inconclusive: pass)"));
        } else {
          fail("ProgressDeadlineExceeded",
               absl::StrCat(
                   "step ", k + 1, " of ", n, " made no progress within ",
                   Dur(deadline), ": ", upd_avail, "/", step.new_target,
                   " new instance(s) available",
                   analysis_needed && !analysis_passed
                       ? absl::StrCat("; analysis: ", st.analysis().empty()
                                                          ? "no traffic yet"
                                                          : st.analysis())
                       : ""),
               false);
        }
      } else {
        requeue_at(step_deadline);
      }
    } else if (active() && waiting_manual && !st.paused()) {
      // While the step waits for `promote`, its deadline clock stays at
      // zero (as `rollout resume` sets it): when the wait ends without a
      // promote (an instance of the step crashed once and is restarting),
      // the step has its whole deadline again, not what was left when the
      // wait began. Moved in ticks, so a long wait is not a write per plan.
      const absl::Duration tick = std::min(absl::Minutes(1), deadline / 10);
      if (now - FromProtoTime(st.step_started()) >= tick)
        *st.mutable_step_started() = ToProtoTime(now);
    }

    // Advance.
    if (active() && !st.paused() && instances_done &&
        (analysis_passed || st.promote())) {
      const absl::Time pause_end = FromProtoTime(st.step_ready()) + step.pause;
      bool go = last || st.promote() || st.promote_full();
      if (!go && !step.manual) {
        go = now >= pause_end;
        if (!go) requeue_at(pause_end);
      }
      if (!go && step.manual) step_note = "waiting for `rollout promote`";
      if (go && last) {
        plan.events.push_back(
            {"Normal", "RolloutSucceeded",
             absl::StrCat("Revision ", st.update_revision(),
                          " is fully rolled out (", total, " instance(s))")});
        log->info("app={}/{} revision {} rolled out", ns, name,
                  st.update_revision());
        st.set_phase("Succeeded");
        st.set_message(absl::StrCat("revision ", st.update_revision(),
                                    " is fully rolled out"));
        for (const auto& h : hooks_of("post-rollout"))
          notify.emplace_back(h, payload("post-rollout"));
        st.set_stable_revision(st.update_revision());
        st.set_stable_hash(st.update_hash());
        st.set_update_revision(0);
        st.clear_update_hash();
        st.set_weight(0);
        st.set_promote(false);
        st.set_promote_full(false);
        plan.stable.revision = st.stable_revision();
        plan.stable.hash = st.stable_hash();
        plan.stable.tmpl = app.spec().template_();
      } else if (go) {
        const int32_t next = st.promote_full() ? n - 1 : k + 1;
        if (next == n - 1 && !st.confirmed() &&
            gate("confirm-promotion", "ConfirmPromotionWebhookFailed")) {
          st.set_confirmed(true);
        }
        if (active()) {
          st.set_step(next);
          ResetStep(&st, now, interval);
          const RolloutStep& ns_step = steps[next];
          plan.events.push_back(
              {"Normal", "RolloutStep",
               absl::StrCat(
                   "Revision ", st.update_revision(), ": step ", next + 1,
                   " of ", n, " (", ns_step.kind, "), ", ns_step.new_target,
                   "/", total, " instance(s)",
                   ns_step.weight >= 0
                       ? absl::StrCat(", ", ns_step.weight, "% of traffic")
                       : "")});
          requeue_at(now);
        }
      }
    } else if (active() && !instances_done) {
      step_note = "waiting for new instances to be available";
    } else if (active() && !analysis_passed) {
      step_note = "waiting for analysis";
    }
  }

  // Targets.
  if (st.update_revision() != 0 && (active() || st.phase() == "Failed")) {
    const RolloutStep& step = steps[std::min(st.step(), n - 1)];
    plan.has_update = true;
    RETURN_IF_ERROR(
        template_of(st.update_revision(), st.update_hash(), &plan.update));
    plan.update.target = std::min(step.new_target, total);
    plan.stable.target = total - plan.update.target;
    if (step.weight >= 0) {
      plan.weights = {{st.update_revision(), step.weight},
                      {st.stable_revision(), 100 - step.weight}};
      st.set_weight(step.weight);
    } else {
      st.set_weight(total > 0 ? 100 * plan.update.target / total : 0);
    }
    if (active()) {
      st.set_phase(st.paused() ? "Paused"
                               : (step_note == "waiting for `rollout promote`"
                                      ? "Paused"
                                      : "Progressing"));
      st.set_message(absl::StrCat(
          "step ", st.step() + 1, " of ", n, " (", step.kind, "): ", upd_avail,
          "/", plan.update.target, " new instance(s) available",
          step_note.empty() ? "" : absl::StrCat("; ", step_note)));
      requeue = std::min(requeue, absl::Seconds(1));
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
      requeue = std::min(requeue, absl::Seconds(1));
    }
  }
  const Capacity cap = ResolveCapacity(rs, total);
  plan.max_surge = cap.max_surge;
  plan.max_unavailable = cap.max_unavailable;
  plan.requeue_after = requeue;

  // Notifications are committed with the state that caused them.
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
  s.set_update_ready(upd_ready);
  s.set_update_target(plan.has_update ? plan.update.target : 0);
  s.set_stable_ready(stable_ready);
  s.set_stable_target(plan.stable.target);
  s.set_failed_revision(st.failed_revision());
  s.set_observed_generation(app.metadata().generation());
  return plan;
}

}  // namespace tidal::deployer
