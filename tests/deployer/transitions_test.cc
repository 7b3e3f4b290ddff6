// Table tests of the rollout state machine: each row is a rollout state and
// an input (a spec, a verdict, a user action, a step's progress), and the
// state, events and notifications that must follow.

#include "deployer/transitions.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "common/proto_time.h"

namespace tidal::deployer {
namespace {

using tidal::v1::RolloutState;

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

// --- What a new spec means ---

struct SpecRow {
  std::string name;
  std::string stable_hash;
  int64_t update_revision = 0;
  std::string update_hash;
  std::string failed_hash;
  std::string spec_hash;
  SpecChange want;
};

void PrintTo(const SpecRow& r, std::ostream* os) { *os << r.name; }

class ClassifySpecTest : public ::testing::TestWithParam<SpecRow> {};

TEST_P(ClassifySpecTest, Row) {
  const SpecRow& row = GetParam();
  RolloutState st;
  st.set_stable_revision(1);
  st.set_stable_hash(row.stable_hash);
  st.set_update_revision(row.update_revision);
  st.set_update_hash(row.update_hash);
  st.set_failed_hash(row.failed_hash);
  EXPECT_EQ(static_cast<int>(ClassifySpec(st, row.spec_hash)),
            static_cast<int>(row.want));
}

INSTANTIATE_TEST_SUITE_P(
    Rows, ClassifySpecTest,
    ::testing::ValuesIn(std::vector<SpecRow>{
        {"StableTemplateNoRollout", "h1", 0, "", "", "h1", SpecChange::kNone},
        {"NewTemplateStarts", "h1", 0, "", "", "h2", SpecChange::kStart},
        {"FailedTemplateIsNotRetried", "h1", 0, "", "h2", "h2",
         SpecChange::kNone},
        {"AnotherTemplateAfterAFailureStarts", "h1", 0, "", "h2", "h3",
         SpecChange::kStart},
        {"UpdateTemplateCarriesOn", "h1", 2, "h2", "", "h2",
         SpecChange::kCarryOn},
        {"BackToStableCancels", "h1", 2, "h2", "", "h1", SpecChange::kCancel},
        {"ThirdTemplateSupersedes", "h1", 2, "h2", "", "h3",
         SpecChange::kSupersede},
        {"FailedTemplateDuringAnUpdateSupersedes", "h1", 3, "h3", "h2", "h2",
         SpecChange::kSupersede},
    }),
    [](const auto& info) { return info.param.name; });

// --- What the current step does next ---

struct StepRow {
  std::string name;
  StepInputs in;
  StepAction want;
  int32_t want_next = 0;
  std::string want_note;
};

void PrintTo(const StepRow& r, std::ostream* os) { *os << r.name; }

class DecideStepTest : public ::testing::TestWithParam<StepRow> {};

TEST_P(DecideStepTest, Row) {
  const StepRow& row = GetParam();
  const StepDecision d = DecideStep(row.in);
  EXPECT_EQ(static_cast<int>(d.action), static_cast<int>(row.want));
  if (row.want == StepAction::kAdvance) {
    EXPECT_EQ(d.next_step, row.want_next);
  }
  if (row.want == StepAction::kWaitPause) {
    EXPECT_EQ(d.until, row.in.pause_end);
  }
  EXPECT_EQ(d.note, row.want_note);
}

// A step of three whose instances and analysis are done, its pause over.
StepInputs Done(int32_t step = 0) {
  StepInputs in;
  in.active = true;
  in.instances_done = true;
  in.analysis_passed = true;
  in.step = step;
  in.total_steps = 3;
  in.now = kNow;
  in.pause_end = kNow - absl::Seconds(1);
  return in;
}
template <typename F>
StepInputs With(F change, int32_t step = 0) {
  StepInputs in = Done(step);
  change(&in);
  return in;
}

INSTANTIATE_TEST_SUITE_P(
    Rows, DecideStepTest,
    ::testing::ValuesIn(std::vector<StepRow>{
        {"InactiveDoesNothing", With([](StepInputs* i) { i->active = false; }),
         StepAction::kNone},
        {"DoneAdvances", Done(), StepAction::kAdvance, 1},
        {"LastStepCompletes", Done(2), StepAction::kComplete},
        {"InstancesNotAvailableWait",
         With([](StepInputs* i) { i->instances_done = false; }),
         StepAction::kWaitInstances, 0,
         "waiting for new instances to be available"},
        {"AnalysisNotPassedWaits",
         With([](StepInputs* i) { i->analysis_passed = false; }),
         StepAction::kWaitAnalysis, 0, "waiting for analysis"},
        {"PromoteSkipsTheAnalysis", With([](StepInputs* i) {
           i->analysis_passed = false;
           i->promote = true;
         }),
         StepAction::kAdvance, 1},
        {"PromoteDoesNotSkipTheInstances", With([](StepInputs* i) {
           i->instances_done = false;
           i->promote = true;
         }),
         StepAction::kWaitInstances, 0,
         "waiting for new instances to be available"},
        {"TimedPauseHolds",
         With([](StepInputs* i) { i->pause_end = kNow + absl::Seconds(5); }),
         StepAction::kWaitPause},
        {"TimedPauseEndsAtItsEnd",
         With([](StepInputs* i) { i->pause_end = kNow; }), StepAction::kAdvance,
         1},
        {"PromoteCutsATimedPause", With([](StepInputs* i) {
           i->pause_end = kNow + absl::Seconds(5);
           i->promote = true;
         }),
         StepAction::kAdvance, 1},
        {"LastStepIgnoresItsPause",
         With([](StepInputs* i) { i->pause_end = kNow + absl::Hours(1); }, 2),
         StepAction::kComplete},
        {"ManualStepWaitsForPromote",
         With([](StepInputs* i) { i->manual = true; }),
         StepAction::kWaitPromote, 0, kWaitingForPromote},
        {"ManualStepAdvancesOnPromote", With([](StepInputs* i) {
           i->manual = true;
           i->promote = true;
         }),
         StepAction::kAdvance, 1},
        {"PromoteFullJumpsToTheLastStep", With([](StepInputs* i) {
           i->manual = true;
           i->promote_full = true;
         }),
         StepAction::kAdvance, 2},
        {"PausedHoldsADoneStepSilently",
         With([](StepInputs* i) { i->paused = true; }), StepAction::kNone},
        {"PausedStillSaysWhatItWaitsFor", With([](StepInputs* i) {
           i->paused = true;
           i->instances_done = false;
         }),
         StepAction::kWaitInstances, 0,
         "waiting for new instances to be available"},
        {"PausedPromotedStepWaitsForItsAnalysis", With([](StepInputs* i) {
           i->paused = true;
           i->promote = true;
           i->analysis_passed = false;
         }),
         StepAction::kWaitAnalysis, 0, "waiting for analysis"},
    }),
    [](const auto& info) { return info.param.name; });

// --- Transitions ---

struct TransitionRow {
  std::string name;
  // The state before (starts from a Succeeded app at revision 1, "h1").
  std::function<void(RolloutState*)> given;
  bool auto_rollback = true;
  std::function<void(Rollout*)> act;
  // Wanted state.
  std::string want_phase;
  int64_t want_stable = 1;
  int64_t want_update = 0;
  int32_t want_step = 0;
  std::string want_reason;
  int64_t want_failed_revision = 0;
  std::vector<std::string> want_events;         // reasons, in order
  std::vector<std::string> want_notifications;  // webhook types, in order
  // Further checks on the state, e.g. its message.
  std::function<void(const RolloutState&, Rollout*)> check;
  bool supersede_restarts = false;  // spec.rollout.supersede: restart
};

void PrintTo(const TransitionRow& r, std::ostream* os) { *os << r.name; }

class TransitionTest : public ::testing::TestWithParam<TransitionRow> {};

TEST_P(TransitionTest, Row) {
  const TransitionRow& row = GetParam();
  RolloutState st;
  st.set_stable_revision(1);
  st.set_stable_hash("h1");
  st.set_phase("Succeeded");
  if (row.given) row.given(&st);
  Rollout ro(&st, {"default", "web", kNow, absl::Seconds(30), row.auto_rollback,
                   row.supersede_restarts});
  row.act(&ro);

  EXPECT_EQ(st.phase(), row.want_phase);
  EXPECT_EQ(st.stable_revision(), row.want_stable);
  EXPECT_EQ(st.update_revision(), row.want_update);
  EXPECT_EQ(st.step(), row.want_step);
  EXPECT_EQ(st.reason(), row.want_reason);
  EXPECT_EQ(st.failed_revision(), row.want_failed_revision);
  std::vector<std::string> events;
  for (const auto& e : ro.events()) events.push_back(e.reason);
  EXPECT_EQ(events, row.want_events);
  std::vector<std::string> notes;
  for (const auto& n : ro.notifications()) notes.push_back(n.type);
  EXPECT_EQ(notes, row.want_notifications);
  if (row.check) row.check(st, &ro);
}

// A rollout of revision 2 ("h2") at `step` of 3.
std::function<void(RolloutState*)> Updating(int32_t step = 0) {
  return [step](RolloutState* st) {
    st->set_update_revision(2);
    st->set_update_hash("h2");
    st->set_phase("Progressing");
    st->set_step(step);
    st->set_total_steps(3);
  };
}

WindowAnalysis PassingWindow() {
  return {"requests=50 5xx=0.0% p99=10ms over 30s", Verdict::Pass()};
}
WindowAnalysis FailingWindow() {
  return {"requests=50 5xx=20.0% p99=10ms over 30s",
          Verdict::Fail("AnalysisFailed", "5xx rate 20.0% > 5.0%")};
}

std::vector<RolloutStep> ThreeBatches() {
  std::vector<RolloutStep> steps(3);
  for (int i = 0; i < 3; ++i) {
    steps[i].new_target = (i + 1) * 2;
    steps[i].kind = "batch";
  }
  steps[1].weight = 40;
  return steps;
}

std::vector<TransitionRow> TransitionRows() {
  std::vector<TransitionRow> rows;
  auto row = [&](TransitionRow r) { rows.push_back(std::move(r)); };

  row({"FirstTemplateIsAdoptedAsStable",
       [](RolloutState* st) { *st = RolloutState(); },
       true,
       [](Rollout* ro) { ro->AdoptFirst(1, "h1"); },
       "Progressing",
       1,
       0,
       0,
       "",
       0,
       {},
       {},
       [](const RolloutState& st, Rollout*) {
         EXPECT_EQ(st.stable_hash(), "h1");
         EXPECT_EQ(FromProtoTime(st.started()), kNow);
       }});
  row({"NewTemplateReplacesAFirstRevisionThatNeverCameUp",
       [](RolloutState* st) {
         st->set_phase("Failed");
         st->set_reason("CrashLoop");
       },
       true,
       [](Rollout* ro) {
         ASSERT_TRUE(ro->FirstRollout());
         ro->AdoptFirst(2, "h2");
       },
       "Progressing",
       2,
       0,
       0,
       "",
       0,
       {"RolloutStarted"}});
  row({"NewTemplateStartsARollout",
       nullptr,
       true,
       [](Rollout* ro) { ro->ApplySpec(2, "h2"); },
       "Progressing",
       1,
       2,
       0,
       "",
       0,
       {"RolloutStarted"},
       {},
       [](const RolloutState& st, Rollout* ro) {
         EXPECT_TRUE(ro->Active());
         EXPECT_EQ(st.update_hash(), "h2");
         EXPECT_EQ(FromProtoTime(st.started()), kNow);
         EXPECT_EQ(FromProtoTime(st.next_analysis()), kNow + absl::Seconds(30));
         EXPECT_EQ(ro->events()[0].message, "Revision 2 replaces revision 1");
       }});
  row({"SameTemplateChangesNothing", nullptr, true,
       [](Rollout* ro) { ro->ApplySpec(1, "h1"); }, "Succeeded"});
  row({"FailedTemplateIsNotRetried",
       [](RolloutState* st) {
         st->set_phase("RolledBack");
         st->set_failed_hash("h2");
         st->set_failed_revision(2);
         st->set_reason("AnalysisFailed");
       },
       true, [](Rollout* ro) { ro->ApplySpec(2, "h2"); }, "RolledBack", 1, 0, 0,
       "AnalysisFailed", 2});
  row({"SpecBackAtStableCancelsTheUpdate",
       Updating(1),
       true,
       [](Rollout* ro) { ro->ApplySpec(1, "h1"); },
       "Succeeded",
       1,
       0,
       1,
       "",
       0,
       {"RolloutCancelled"},
       {},
       [](const RolloutState& st, Rollout*) {
         EXPECT_EQ(st.message(), "revision 1 restored by a spec change");
         EXPECT_EQ(st.weight(), 0);
       }});
  row({"ThirdTemplateSupersedesFromTheCurrentStep",
       Updating(2),
       true,
       [](Rollout* ro) { ro->ApplySpec(3, "h3"); },
       "Progressing",
       1,
       3,
       2,
       "",
       0,
       {"RolloutStarted"},
       {},
       [](const RolloutState& st, Rollout* ro) {
         EXPECT_EQ(ro->events()[0].message,
                   "Superseding revision 2 at step 3: revision 3 replaces "
                   "revision 1");
       }});
  row({"ThirdTemplateSupersedesFromTheFirstStepWhenToldTo",
       [](RolloutState* st) {
         Updating(2)(st);
         *st->mutable_started() = ToProtoTime(kNow - absl::Hours(1));
       },
       true,
       [](Rollout* ro) { ro->ApplySpec(3, "h3"); },
       "Progressing",
       1,
       3,
       0,
       "",
       0,
       {"RolloutStarted"},
       {},
       [](const RolloutState& st, Rollout* ro) {
         EXPECT_EQ(ro->events()[0].message,
                   "Superseding revision 2 (at step 3) from step 1: revision "
                   "3 replaces revision 1");
         // A new release: its analysis counts from now.
         EXPECT_EQ(FromProtoTime(st.started()), kNow);
       },
       /*supersede_restarts=*/true});
  row({"FailureRollsBack",
       Updating(1),
       true,
       [](Rollout* ro) { ro->Fail("AnalysisFailed", "too many 5xx", false); },
       "RolledBack",
       1,
       0,
       1,
       "AnalysisFailed",
       2,
       {"RolledBack"},
       {"rollback"},
       [](const RolloutState& st, Rollout* ro) {
         EXPECT_EQ(st.failed_hash(), "h2");
         EXPECT_FALSE(ro->Active());
         // The notification describes the rollout as it failed.
         const WebhookEvent& ev = ro->notifications()[0];
         EXPECT_EQ(ev.from_revision, 1);
         EXPECT_EQ(ev.to_revision, 2);
         EXPECT_EQ(ev.phase, "RolledBack");
         EXPECT_EQ(ev.reason, "AnalysisFailed");
         EXPECT_EQ(ev.message, "too many 5xx");
         EXPECT_EQ(ev.step, 2);
       }});
  row({"FailureHoldsWithAutoRollbackOff",
       Updating(1),
       false,
       [](Rollout* ro) { ro->Fail("AnalysisFailed", "too many 5xx", false); },
       "Failed",
       1,
       2,
       1,
       "AnalysisFailed",
       0,
       {"RolloutFailed"},
       {},
       [](const RolloutState&, Rollout* ro) { EXPECT_FALSE(ro->Active()); }});
  row({"AbortRollsBackEvenWithAutoRollbackOff",
       [](RolloutState* st) {
         Updating(0)(st);
         st->set_abort(true);
       },
       false,
       [](Rollout* ro) { ro->Abort(); },
       "RolledBack",
       1,
       0,
       0,
       "Aborted",
       2,
       {"RolledBack"},
       {"rollback"},
       [](const RolloutState& st, Rollout*) {
         EXPECT_FALSE(st.abort());
         EXPECT_EQ(st.message(), "the rollout of revision 2 was aborted");
       }});
  row({"AbortWithoutARolloutOnlyClearsTheRequest",
       [](RolloutState* st) { st->set_abort(true); },
       true,
       [](Rollout* ro) { ro->Abort(); },
       "Succeeded",
       1,
       0,
       0,
       "",
       0,
       {},
       {},
       [](const RolloutState& st, Rollout*) { EXPECT_FALSE(st.abort()); }});
  row({"AdvanceStartsTheNextStepAfresh",
       [](RolloutState* st) {
         Updating(0)(st);
         st->set_successes(3);
         st->set_failures(1);
         st->set_promote(true);
         *st->mutable_step_ready() = ToProtoTime(kNow - absl::Minutes(1));
       },
       true,
       [](Rollout* ro) { ro->Advance(1, ThreeBatches(), 10); },
       "Progressing",
       1,
       2,
       1,
       "",
       0,
       {"RolloutStep"},
       {},
       [](const RolloutState& st, Rollout* ro) {
         EXPECT_EQ(st.successes(), 0);
         EXPECT_EQ(st.failures(), 0);
         EXPECT_FALSE(st.promote());
         EXPECT_FALSE(st.has_step_ready());
         EXPECT_EQ(FromProtoTime(st.step_started()), kNow);
         EXPECT_EQ(ro->events()[0].message,
                   "Revision 2: step 2 of 3 (batch), 4/10 instance(s), 40% of "
                   "traffic");
       }});
  row({"CompletePromotesTheUpdate",
       [](RolloutState* st) {
         Updating(2)(st);
         st->set_promote_full(true);
         st->set_weight(60);
       },
       true,
       [](Rollout* ro) { ro->Complete(10); },
       "Succeeded",
       2,
       0,
       2,
       "",
       0,
       {"RolloutSucceeded"},
       {"post-rollout"},
       [](const RolloutState& st, Rollout* ro) {
         EXPECT_EQ(st.stable_hash(), "h2");
         EXPECT_EQ(st.weight(), 0);
         EXPECT_FALSE(st.promote_full());
         EXPECT_EQ(st.message(), "revision 2 is fully rolled out");
         // Sent as the update completes: from the old stable revision.
         EXPECT_EQ(ro->notifications()[0].from_revision, 1);
         EXPECT_EQ(ro->notifications()[0].to_revision, 2);
       }});
  row({"PassingWindowCountsASuccess",
       Updating(0),
       true,
       [](Rollout* ro) { ro->RecordAnalysis(PassingWindow(), 2, 0); },
       "Progressing",
       1,
       2,
       0,
       "",
       0,
       {},
       {},
       [](const RolloutState& st, Rollout*) {
         EXPECT_EQ(st.successes(), 1);
         EXPECT_EQ(st.analysis(),
                   "requests=50 5xx=0.0% p99=10ms over 30s: passed (1/2)");
         EXPECT_EQ(FromProtoTime(st.next_analysis()), kNow + absl::Seconds(30));
       }});
  row({"FailingWindowWithinTheLimitIsCounted",
       [](RolloutState* st) {
         Updating(0)(st);
         st->set_successes(1);
       },
       true,
       [](Rollout* ro) { ro->RecordAnalysis(FailingWindow(), 2, 1); },
       "Progressing",
       1,
       2,
       0,
       "",
       0,
       {},
       {},
       [](const RolloutState& st, Rollout*) {
         EXPECT_EQ(st.successes(), 0);
         EXPECT_EQ(st.failures(), 1);
         EXPECT_EQ(st.analysis(),
                   "requests=50 5xx=20.0% p99=10ms over 30s: 5xx rate 20.0% > "
                   "5.0%");
       }});
  row({"FailingWindowPastTheLimitRollsBack",
       Updating(0),
       true,
       [](Rollout* ro) { ro->RecordAnalysis(FailingWindow(), 2, 0); },
       "RolledBack",
       1,
       0,
       0,
       "AnalysisFailed",
       2,
       {"RolledBack"},
       {"rollback"},
       [](const RolloutState& st, Rollout*) {
         EXPECT_EQ(st.message(),
                   "revision 2 failed analysis: requests=50 5xx=20.0% p99=10ms "
                   "over 30s: 5xx rate 20.0% > 5.0%");
       }});
  row({"InconclusiveWindowIsOnlyRecorded",
       Updating(0),
       true,
       [](Rollout* ro) {
         ro->RecordInconclusive(
             {"requests=0 5xx=0.0% p99=0ms over 30s",
              Verdict::Inconclusive("inconclusive: fewer than 5 requests")});
       },
       "Progressing",
       1,
       2,
       0,
       "",
       0,
       {},
       {},
       [](const RolloutState& st, Rollout*) {
         EXPECT_EQ(st.successes(), 0);
         EXPECT_EQ(st.failures(), 0);
         EXPECT_EQ(st.analysis(),
                   "requests=0 5xx=0.0% p99=0ms over 30s (inconclusive: fewer "
                   "than 5 requests)");
       }});
  row({"FirstRevisionFailsWithNothingToRollBackTo",
       [](RolloutState* st) { st->set_phase("Progressing"); },
       true,
       [](Rollout* ro) { ro->FailFirst("CrashLoop", "it crashes"); },
       "Failed",
       1,
       0,
       0,
       "CrashLoop",
       0,
       {"RolloutFailed"},
       {},
       [](const RolloutState&, Rollout* ro) {
         EXPECT_TRUE(ro->FirstRollout());  // a new template replaces it
       }});
  row({"FirstRevisionSucceeds",
       [](RolloutState* st) { st->set_phase("Progressing"); },
       true,
       [](Rollout* ro) { ro->SucceedFirst(); },
       "Succeeded",
       1,
       0,
       0,
       "",
       0,
       {},
       {},
       [](const RolloutState& st, Rollout* ro) {
         EXPECT_EQ(st.message(), "revision 1 is fully rolled out");
         EXPECT_FALSE(ro->FirstRollout());
       }});
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Rows, TransitionTest,
                         ::testing::ValuesIn(TransitionRows()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::deployer
