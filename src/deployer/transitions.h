#pragma once

// The rollout state machine's transitions over an app's RolloutState: which
// phase, step and revisions come next (start, supersede, cancel, advance a
// step, complete, fail: roll back or hold) and the decisions that choose
// between them (what a new spec means for the state, what the current step
// does next). The deployer gathers the evidence (instances, gates: gates.h)
// and calls these; they neither read the store nor call out.
//
// Phases: Progressing -> (Paused <-> Progressing) -> Succeeded | RolledBack |
// Failed (autoRollback off, or the app's first revision: nothing to roll
// back to). Thread-compatible: one Rollout per plan.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "deployer/gates.h"
#include "deployer/steps.h"
#include "deployer/webhooks.h"
#include "tidal/v1/app.pb.h"

namespace tidal::deployer {

// An event about the rollout, for `tidalctl describe`.
struct DeployEvent {
  std::string type;  // Normal | Warning
  std::string reason;
  std::string message;
};

// What a new spec's template means for the rollout state.
enum class SpecChange {
  kNone,       // no rollout, and the template is the stable or failed one
  kCarryOn,    // the template is the update's: carry on
  kCancel,     // the template is back at the stable one: withdraw the update
  kSupersede,  // another template during a rollout: replace the update
  kStart,      // a new template, no rollout running: start one
};
// The templates that rolled back and have not rolled out since
// (RolloutState.rolled_back_hashes, the newest 20): `rollout undo` does not
// pick one of them by itself.
void RememberRolledBack(tidal::v1::RolloutState* st, const std::string& hash);
void ForgetRolledBack(tidal::v1::RolloutState* st, const std::string& hash);
bool RolledBack(const tidal::v1::RolloutState& st, const std::string& hash);

SpecChange ClassifySpec(const tidal::v1::RolloutState& st,
                        const std::string& hash);

// What the current step of an active rollout does next.
enum class StepAction {
  kNone,           // nothing to do (inactive, or paused with the step done)
  kWaitInstances,  // its new instances are not all available yet
  kWaitAnalysis,   // its analysis has not passed yet
  kWaitPause,      // a timed pause (step pause, batchInterval) runs
  kWaitPromote,    // a manual step waits for `rollout promote`
  kAdvance,        // on to `next_step`
  kComplete,       // the last step is done: the update becomes stable
};
struct StepInputs {
  bool active = false;           // a rollout runs and has not failed
  bool paused = false;           // `rollout pause`
  bool instances_done = false;   // the step's instances are available
  bool analysis_passed = false;  // or no analysis is needed
  bool promote = false;          // `rollout promote`
  bool promote_full = false;     // `rollout promote --full`
  bool manual = false;           // the step holds until `promote`
  int32_t step = 0;              // 0-based
  int32_t total_steps = 1;
  absl::Time now;
  absl::Time pause_end;  // when the step's timed pause ends
};
struct StepDecision {
  StepAction action = StepAction::kNone;
  int32_t next_step = 0;  // kAdvance
  absl::Time until;       // kWaitPause
  // For the status message ("waiting for analysis"); "" for none.
  std::string note;
};
StepDecision DecideStep(const StepInputs& in);

// The note DecideStep gives a step waiting for `rollout promote` (the
// rollout's phase is then Paused).
inline constexpr char kWaitingForPromote[] = "waiting for `rollout promote`";

// The transitions of one app's rollout during one plan. Mutates the state
// it is given and collects the events and notifications the transitions
// cause, in order.
class Rollout {
 public:
  struct Context {
    std::string ns, name;
    absl::Time now;
    absl::Duration interval;    // the analysis interval
    bool auto_rollback = true;  // spec.rollout.autoRollback
    // spec.rollout.supersede: a new template during a release starts from
    // the first step (else at the current one).
    bool supersede_restarts = false;
  };
  Rollout(tidal::v1::RolloutState* st, Context ctx);

  const tidal::v1::RolloutState& state() const { return *st_; }
  // For the deployer's bookkeeping that is no transition (step counts,
  // readiness times, status messages).
  tidal::v1::RolloutState* mutable_state() { return st_; }

  // An update runs and has not failed.
  bool Active() const;
  // The app's first revision is still coming up (or failed to): there is no
  // update and nothing to roll back to.
  bool FirstRollout() const;

  // The app's first template (or a new template while the first rollout is
  // Progressing or Failed) becomes the stable revision at once.
  void AdoptFirst(int64_t revision, const std::string& hash);
  // Acts on a recorded `rollout abort`: the update is rolled back.
  void Abort();
  // Acts on the spec's template (ClassifySpec) whose revision is `revision`.
  void ApplySpec(int64_t revision, const std::string& hash);

  // A failed gate or deadline: roll back, or hold in Failed when
  // autoRollback is off (unless `force_rollback`).
  void Fail(const std::string& reason, const std::string& message,
            bool force_rollback);
  // The first revision failed (there is nothing to roll back to).
  void FailFirst(const std::string& reason, const std::string& message);
  // The first revision is up.
  void SucceedFirst();

  // Counts one analysis window of the update (not an inconclusive one):
  // a pass adds a success; a failure resets the successes, adds a failure
  // and fails the rollout past `failure_limit`. Schedules the next window.
  void RecordAnalysis(const WindowAnalysis& window, int32_t needed,
                      int32_t failure_limit);
  // An inconclusive window: recorded for the status only.
  void RecordInconclusive(const WindowAnalysis& window);

  // On to step `next` (0-based) of `steps` over `total` instances.
  void Advance(int32_t next, const std::vector<RolloutStep>& steps,
               int32_t total);
  // The last step is done: the update becomes the stable revision.
  void Complete(int32_t total);

  // The webhook payload for `type` in the current state.
  WebhookEvent Event(const std::string& type) const;

  // What the transitions caused, in order.
  std::vector<DeployEvent>& events() { return events_; }
  // Notifications to send (post-rollout, rollback), in order.
  const std::vector<WebhookEvent>& notifications() const {
    return notifications_;
  }

 private:
  void Start(int64_t revision, const std::string& hash, const std::string& why);
  // A step observes its own analysis interval before a success counts.
  void ResetStep();

  tidal::v1::RolloutState* const st_;
  const Context ctx_;
  std::vector<DeployEvent> events_;
  std::vector<WebhookEvent> notifications_;
};

}  // namespace tidal::deployer
