#include "deployer/transitions.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"

namespace tidal::deployer {

using tidal::v1::RolloutState;

SpecChange ClassifySpec(const RolloutState& st, const std::string& hash) {
  if (st.update_revision() != 0) {
    if (hash == st.update_hash()) return SpecChange::kCarryOn;
    if (hash == st.stable_hash()) return SpecChange::kCancel;
    return SpecChange::kSupersede;
  }
  if (hash != st.stable_hash() && hash != st.failed_hash())
    return SpecChange::kStart;
  return SpecChange::kNone;
}

StepDecision DecideStep(const StepInputs& in) {
  StepDecision d;
  if (!in.active) return d;
  const bool last = in.step == in.total_steps - 1;
  if (!in.paused && in.instances_done && (in.analysis_passed || in.promote)) {
    bool go = (last && !in.manual) || in.promote || in.promote_full;
    if (!go && !in.manual) {
      go = in.now >= in.pause_end;
      if (!go) {
        d.action = StepAction::kWaitPause;
        d.until = in.pause_end;
        return d;
      }
    }
    if (!go) {
      d.action = StepAction::kWaitPromote;
      d.note = kWaitingForPromote;
      return d;
    }
    if (last) {
      d.action = StepAction::kComplete;
    } else {
      d.action = StepAction::kAdvance;
      d.next_step = in.promote_full ? in.total_steps - 1 : in.step + 1;
    }
    return d;
  }
  if (!in.instances_done) {
    d.action = StepAction::kWaitInstances;
    d.note = "waiting for new instances to be available";
  } else if (!in.analysis_passed) {
    d.action = StepAction::kWaitAnalysis;
    d.note = "waiting for analysis";
  }
  return d;
}

Rollout::Rollout(RolloutState* st, Context ctx)
    : st_(st), ctx_(std::move(ctx)) {}

bool Rollout::Active() const {
  return st_->update_revision() != 0 && st_->phase() != "Failed";
}

bool Rollout::FirstRollout() const {
  return st_->update_revision() == 0 &&
         (st_->phase() == "Progressing" || st_->phase() == "Failed");
}

void Rollout::ResetStep() {
  *st_->mutable_step_started() = ToProtoTime(ctx_.now);
  st_->clear_step_ready();
  *st_->mutable_next_analysis() = ToProtoTime(ctx_.now + ctx_.interval);
  st_->set_successes(0);
  st_->set_failures(0);
  st_->set_promote(false);
  st_->set_hold_for_promote(false);
  st_->set_awaiting_promote(false);
}

WebhookEvent Rollout::Event(const std::string& type) const {
  WebhookEvent ev;
  ev.type = type;
  ev.ns = ctx_.ns;
  ev.app = ctx_.name;
  ev.from_revision = st_->stable_revision();
  ev.to_revision = st_->update_revision();
  ev.phase = st_->phase();
  ev.step = st_->step() + 1;
  ev.total_steps = st_->total_steps();
  ev.reason = st_->reason();
  ev.message = st_->message();
  ev.time = ctx_.now;
  return ev;
}

void Rollout::AdoptFirst(int64_t revision, const std::string& hash) {
  if (st_->stable_revision() != 0) {
    events_.push_back(
        {"Normal", "RolloutStarted",
         absl::StrCat("Revision ", revision, " replaces revision ",
                      st_->stable_revision(),
                      ", which never came up (nothing to roll back to)")});
  }
  st_->set_stable_revision(revision);
  st_->set_stable_hash(hash);
  st_->set_phase("Progressing");
  st_->clear_reason();
  st_->clear_analysis();
  *st_->mutable_started() = ToProtoTime(ctx_.now);
  *st_->mutable_step_started() = ToProtoTime(ctx_.now);
}

void RememberRolledBack(tidal::v1::RolloutState* st, const std::string& hash) {
  if (hash.empty()) return;
  ForgetRolledBack(st, hash);  // once, as the newest
  st->add_rolled_back_hashes(hash);
  constexpr int kKept = 20;
  auto* list = st->mutable_rolled_back_hashes();
  if (list->size() > kKept) list->DeleteSubrange(0, list->size() - kKept);
}

void ForgetRolledBack(tidal::v1::RolloutState* st, const std::string& hash) {
  auto* list = st->mutable_rolled_back_hashes();
  list->erase(std::remove(list->begin(), list->end(), hash), list->end());
}

bool RolledBack(const tidal::v1::RolloutState& st, const std::string& hash) {
  return std::find(st.rolled_back_hashes().begin(),
                   st.rolled_back_hashes().end(),
                   hash) != st.rolled_back_hashes().end();
}

void Rollout::Fail(const std::string& reason, const std::string& message,
                   bool force_rollback) {
  const bool rollback = force_rollback || ctx_.auto_rollback;
  st_->set_reason(reason);
  st_->set_message(message);
  GetLogger("deployer")
      ->warn("app={}/{} rollout of revision {} failed ({}): {}", ctx_.ns,
             ctx_.name, st_->update_revision(), reason, message);
  if (rollback) {
    st_->set_phase("RolledBack");
    ++(*st_->mutable_rollbacks())[reason.empty() ? "Unknown" : reason];
    notifications_.push_back(Event("rollback"));
    events_.push_back(
        {"Warning", "RolledBack",
         absl::StrCat("Revision ", st_->update_revision(),
                      " rolled back to revision ", st_->stable_revision(), " (",
                      reason, "): ", message)});
    st_->set_failed_hash(st_->update_hash());
    st_->set_failed_revision(st_->update_revision());
    RememberRolledBack(st_, st_->update_hash());
    st_->set_update_revision(0);
    st_->clear_update_hash();
    st_->set_weight(0);
    st_->set_paused(false);
    st_->set_promote(false);
    st_->set_promote_full(false);
  } else {
    st_->set_phase("Failed");
    events_.push_back(
        {"Warning", "RolloutFailed",
         absl::StrCat("Revision ", st_->update_revision(), " failed (", reason,
                      "): ", message,
                      "; autoRollback is off: holding the current step")});
  }
}

void Rollout::FailFirst(const std::string& reason, const std::string& message) {
  st_->set_phase("Failed");
  st_->set_reason(reason);
  st_->set_message(message);
  GetLogger("deployer")
      ->warn("app={}/{} first revision {} failed ({}): {}", ctx_.ns, ctx_.name,
             st_->stable_revision(), reason, message);
  events_.push_back(
      {"Warning", "RolloutFailed",
       absl::StrCat("Revision ", st_->stable_revision(), " failed (", reason,
                    "): ", message,
                    "; it is the app's first revision: nothing to roll "
                    "back to")});
}

void Rollout::SucceedFirst() {
  st_->set_phase("Succeeded");
  st_->set_message(absl::StrCat("revision ", st_->stable_revision(),
                                " is fully rolled out"));
}

void Rollout::Start(int64_t revision, const std::string& hash,
                    const std::string& why) {
  st_->set_update_revision(revision);
  st_->set_update_hash(hash);
  st_->set_phase("Progressing");
  st_->set_pre_rollout_done(false);
  st_->set_confirmed(false);
  st_->set_paused(false);
  st_->set_promote_full(false);
  st_->clear_reason();
  st_->clear_analysis();
  st_->set_analysis_passed(false);
  st_->clear_failed_hash();
  st_->set_failed_revision(0);
  ResetStep();
  events_.push_back(
      {"Normal", "RolloutStarted",
       absl::StrCat(why.empty() ? "Revision " : why + "revision ", revision,
                    " replaces revision ", st_->stable_revision())});
}

void Rollout::Abort() {
  if (!st_->abort()) return;
  st_->set_abort(false);
  if (st_->update_revision() != 0) {
    Fail("Aborted",
         absl::StrCat("the rollout of revision ", st_->update_revision(),
                      " was aborted"),
         true);
  }
}

void Rollout::ApplySpec(int64_t revision, const std::string& hash) {
  switch (ClassifySpec(*st_, hash)) {
    case SpecChange::kNone:
      // The spec is back at the stable template after a rollback (`rollout
      // undo`, or the old file applied again): what runs is what the spec
      // says, so the release of this generation is done. The rolled-back
      // template stays marked (failed_hash): applying it again does not
      // release it.
      if (hash == st_->stable_hash() && st_->phase() == "RolledBack") {
        events_.push_back(
            {"Normal", "RolloutRestored",
             absl::StrCat("The spec is back at revision ",
                          st_->stable_revision(), ", which runs")});
        st_->set_phase("Succeeded");
        st_->clear_reason();
        st_->set_message(absl::StrCat("revision ", st_->stable_revision(),
                                      " restored by a spec change"));
      }
      break;
    case SpecChange::kCarryOn:
      break;
    case SpecChange::kCancel:
      events_.push_back(
          {"Normal", "RolloutCancelled",
           absl::StrCat("The spec is back at revision ", st_->stable_revision(),
                        "; revision ", st_->update_revision(),
                        " is withdrawn")});
      st_->set_update_revision(0);
      st_->clear_update_hash();
      st_->set_phase("Succeeded");
      st_->set_weight(0);
      st_->clear_reason();
      st_->set_message(absl::StrCat("revision ", st_->stable_revision(),
                                    " restored by a spec change"));
      break;
    case SpecChange::kSupersede: {
      // The previous update's instances count as old ones and are replaced
      // by the new revision: from the first step (spec.rollout.supersede:
      // restart, a new release judged from its first share), or at the
      // current one (continue).
      const int32_t step = st_->step();
      const bool paused = st_->paused();
      const bool restart = ctx_.supersede_restarts;
      Start(revision, hash,
            absl::StrCat(
                "Superseding revision ", st_->update_revision(),
                restart ? absl::StrCat(" (at step ", step + 1, ") from step 1")
                        : absl::StrCat(" at step ", step + 1),
                paused ? " (paused)" : "", ": "));
      st_->set_step(restart ? 0 : step);
      // A restarted release is a new one: its analysis window and deadline
      // start now.
      if (restart) st_->clear_started();
      // A `rollout pause` holds the new revision too, as spec.paused
      // outlives a template change in Kubernetes and Argo Rollouts: a
      // pipeline's apply does not undo an operator's pause.
      st_->set_paused(paused);
      break;
    }
    case SpecChange::kStart:
      st_->set_step(0);
      Start(revision, hash, "");
      st_->clear_started();
      break;
  }
  if (st_->update_revision() != 0 && !st_->has_started())
    *st_->mutable_started() = ToProtoTime(ctx_.now);
}

void Rollout::RecordInconclusive(const WindowAnalysis& window) {
  st_->set_analysis(
      absl::StrCat(window.figures, " (", window.verdict.message, ")"));
}

void Rollout::RecordAnalysis(const WindowAnalysis& window, int32_t needed,
                             int32_t failure_limit) {
  *st_->mutable_next_analysis() = ToProtoTime(ctx_.now + ctx_.interval);
  if (!window.verdict.failed()) {
    st_->set_successes(st_->successes() + 1);
    st_->set_analysis(absl::StrCat(window.figures, ": passed (",
                                   std::min(st_->successes(), needed), "/",
                                   needed, ")"));
    return;
  }
  st_->set_successes(0);
  st_->set_failures(st_->failures() + 1);
  st_->set_analysis(absl::StrCat(window.figures, ": ", window.verdict.message));
  if (st_->failures() > failure_limit) {
    Fail(window.verdict.reason,
         absl::StrCat("revision ", st_->update_revision(), " failed analysis: ",
                      window.figures, ": ", window.verdict.message),
         false);
  }
}

void Rollout::Advance(int32_t next, const std::vector<RolloutStep>& steps,
                      int32_t total) {
  st_->set_step(next);
  ResetStep();
  // The last window was the previous step's verdict; this step has none
  // yet (a stale "passed (2/2)" would say it had).
  st_->clear_analysis();
  const RolloutStep& step = steps[next];
  const int32_t n = static_cast<int32_t>(steps.size());
  events_.push_back(
      {"Normal", "RolloutStep",
       absl::StrCat(
           "Revision ", st_->update_revision(), ": step ", next + 1, " of ", n,
           " (", step.kind, "), ", step.new_target, "/", total, " instance(s)",
           step.weight >= 0 ? absl::StrCat(", ", step.weight, "% of traffic")
                            : "")});
}

void Rollout::Complete(int32_t total) {
  events_.push_back(
      {"Normal", "RolloutSucceeded",
       absl::StrCat("Revision ", st_->update_revision(),
                    " is fully rolled out (", total, " instance(s))")});
  GetLogger("deployer")
      ->info("app={}/{} revision {} rolled out", ctx_.ns, ctx_.name,
             st_->update_revision());
  st_->set_phase("Succeeded");
  st_->set_message(absl::StrCat("revision ", st_->update_revision(),
                                " is fully rolled out"));
  notifications_.push_back(Event("post-rollout"));
  st_->set_stable_revision(st_->update_revision());
  st_->set_stable_hash(st_->update_hash());
  ForgetRolledBack(st_, st_->update_hash());
  st_->set_update_revision(0);
  st_->clear_update_hash();
  st_->set_weight(0);
  st_->set_promote(false);
  st_->set_promote_full(false);
}

}  // namespace tidal::deployer
