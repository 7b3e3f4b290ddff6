// Deployer table tests in the shape of knative's TableTest
// (knative.dev/pkg/reconciler/testing): each row is the world before one
// plan (the app's spec, its revisions and rollout state in the store, its
// live instances, the new revision's metrics, the webhooks' answers) and
// what the plan must be: the targets and traffic split, the events, the
// rollout status, the webhooks called and notified, and further checks on
// the store. The runner seeds a MemoryStore, plans once and diffs.

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "deployer/deployer.h"
#include "deployer/revisions.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_metrics.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

namespace tidal::deployer {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;
using tidal::v1::RolloutState;

constexpr char kNs[] = "default";
constexpr char kName[] = "web";
const absl::Time kNow = absl::FromUnixSeconds(1700000000);

// --- Objects ---

tidal::v1::Template TemplateOf(const std::string& version) {
  tidal::v1::Template t;
  t.add_command("tidal-sample-app");
  t.add_args("--version");
  t.add_args(version);
  return t;
}
std::string HashOf(const std::string& version) {
  return spec::TemplateHash(TemplateOf(version));
}

App AppObj(const std::string& version,
           std::function<void(tidal::v1::RolloutSpec*)> rollout = nullptr) {
  App app;
  app.mutable_metadata()->set_name(kName);
  app.mutable_metadata()->set_namespace_(kNs);
  app.mutable_metadata()->set_generation(3);
  *app.mutable_spec()->mutable_template_() = TemplateOf(version);
  if (rollout) rollout(app.mutable_spec()->mutable_rollout());
  return app;
}
App WithHook(App app, const std::string& type) {
  auto* h = app.mutable_spec()->add_webhooks();
  h->set_type(type);
  h->set_url(absl::StrCat("http://hooks.example/", type));
  return app;
}

tidal::v1::Revision Rev(int64_t number, const std::string& version) {
  tidal::v1::Revision r;
  r.set_namespace_(kNs);
  r.set_app(kName);
  r.set_number(number);
  r.set_template_hash(HashOf(version));
  *r.mutable_template_() = TemplateOf(version);
  return r;
}

RolloutState Settled(int64_t stable, const std::string& version) {
  RolloutState st;
  st.set_stable_revision(stable);
  st.set_stable_hash(HashOf(version));
  st.set_phase("Succeeded");
  return st;
}
// A rollout from revision 1 (v1) to 2 (v2) at `step` (0-based) of `steps`,
// its gates passed, the step begun `ago`.
RolloutState Rolling(int32_t step, int32_t steps,
                     absl::Duration ago = absl::Seconds(10)) {
  RolloutState st = Settled(1, "v1");
  st.set_update_revision(2);
  st.set_update_hash(HashOf("v2"));
  st.set_phase("Progressing");
  st.set_step(step);
  st.set_total_steps(steps);
  st.set_pre_rollout_done(true);
  *st.mutable_started() = ToProtoTime(kNow - ago);
  *st.mutable_step_started() = ToProtoTime(kNow - ago);
  *st.mutable_next_analysis() = ToProtoTime(kNow - absl::Seconds(1));
  return st;
}

// A live instance: `count` of them of `version`'s revision.
struct Inst {
  int count = 1;
  std::string version = "v1";
  bool ready = true;
  std::string phase = "Running";
  int restarts = 0;
};

// Figures of the new revision's traffic (revision 2).
struct Window {
  int64_t requests = 0;
  int64_t errors = 0;
  double p99 = 0;
};

// --- Rows ---

// The rollout status a row checks.
struct WantRollout {
  std::string phase;
  std::string reason;
  int64_t stable = 0;
  int64_t update = 0;
  int32_t step = 0;  // 1-based; 0 without an update
  int32_t total_steps = 0;
};
std::string Str(const WantRollout& w) {
  return absl::StrCat("phase=", w.phase, " reason=", w.reason,
                      " stable=", w.stable, " update=", w.update,
                      " step=", w.step, "/", w.total_steps);
}

struct TableRow {
  std::string name;
  // The world before the plan.
  App app;
  std::vector<tidal::v1::Revision> revisions;
  std::optional<RolloutState> rollout;
  int32_t total = 0;
  std::vector<Inst> live;
  std::optional<Window> metrics;
  std::map<std::string, absl::Status> refuse;  // webhook answers by type
  // What the plan must be. Targets as "r<revision>(<version>)=<count>".
  std::string want_stable;
  std::string want_update;               // "" without an update
  std::string want_weights;              // "r1=80 r2=20"; "" by instances
  std::string want_stop_now;             // versions, "v2"
  std::vector<std::string> want_events;  // "Type Reason", in order
  WantRollout want_rollout;
  std::vector<std::string> want_calls;     // gating webhooks called
  std::vector<std::string> want_notified;  // notifications sent
  std::function<void(const DeployPlan&, const RolloutState&)> post;
};

void PrintTo(const TableRow& r, std::ostream* os) { *os << r.name; }

// --- The runner ---

class RecordingWebhooks : public WebhookSender {
 public:
  absl::Status Call(const tidal::v1::Webhook& hook,
                    const std::string&) override {
    calls.push_back(hook.type());
    auto it = refuse.find(hook.type());
    return it == refuse.end() ? absl::OkStatus() : it->second;
  }
  void Notify(const tidal::v1::Webhook& hook, const std::string&) override {
    notified.push_back(hook.type());
  }
  std::map<std::string, absl::Status> refuse;
  std::vector<std::string> calls, notified;
};

// What a deployer is made of.
struct Deps {
  Store* store;
  Clock* clock;
  MetricsSource* metrics;
  WebhookSender* webhooks;
};

// The one place that builds the deployer under test.
std::unique_ptr<Deployer> MakeDeployer(const Deps& d) {
  return std::make_unique<Deployer>(d.store, d.clock, d.metrics, d.webhooks);
}

std::string VersionOf(const std::string& hash) {
  for (const char* v : {"v1", "v2", "v3"})
    if (HashOf(v) == hash) return v;
  return hash;
}
std::string Target(const RevisionTarget& t) {
  return absl::StrCat("r", t.revision, "(", VersionOf(t.hash), ")=", t.target);
}

class DeployerTableTest : public ::testing::TestWithParam<TableRow> {};

TEST_P(DeployerTableTest, Row) {
  const TableRow& row = GetParam();
  testing::MemoryStore store;
  testing::FakeClock clock(kNow);
  testing::FakeMetrics metrics;
  RecordingWebhooks hooks;
  hooks.refuse = row.refuse;

  for (const auto& r : row.revisions) {
    ASSERT_TRUE(
        store.Create(RevisionKey(kNs, kName, r.number()), r.SerializeAsString())
            .ok());
  }
  if (row.rollout) {
    ASSERT_TRUE(store
                    .Create(keys::RolloutKey(kNs, kName),
                            row.rollout->SerializeAsString())
                    .ok());
  }
  if (row.metrics)
    metrics.Set(2, row.metrics->requests, row.metrics->errors,
                row.metrics->p99);
  std::vector<Instance> live;
  for (const Inst& i : row.live) {
    for (int k = 0; k < i.count; ++k) {
      Instance inst;
      inst.set_id(absl::StrCat(i.version, "-", live.size()));
      inst.set_template_hash(HashOf(i.version));
      inst.set_revision(i.version == "v1" ? 1 : 2);
      inst.set_phase(i.phase);
      inst.set_ready(i.ready);
      inst.set_restarts(i.restarts);
      *inst.mutable_start_time() = ToProtoTime(kNow - absl::Minutes(1));
      if (i.ready)
        *inst.mutable_ready_time() = ToProtoTime(kNow - absl::Minutes(1));
      live.push_back(inst);
    }
  }

  auto deployer = MakeDeployer({&store, &clock, &metrics, &hooks});
  auto plan_or = deployer->Plan(row.app, row.total, live);
  ASSERT_TRUE(plan_or.ok()) << plan_or.status();
  const DeployPlan& plan = *plan_or;

  // Targets and traffic.
  EXPECT_EQ(Target(plan.stable), row.want_stable) << "stable";
  EXPECT_EQ(plan.has_update ? Target(plan.update) : "", row.want_update)
      << "update";
  std::vector<std::string> weights, stop_now;
  auto sorted = plan.weights;
  std::sort(sorted.begin(), sorted.end());
  for (const auto& [rev, w] : sorted)
    weights.push_back(absl::StrCat("r", rev, "=", w));
  for (const auto& h : plan.stop_now_hashes) stop_now.push_back(VersionOf(h));
  EXPECT_EQ(absl::StrJoin(weights, " "), row.want_weights) << "weights";
  EXPECT_EQ(absl::StrJoin(stop_now, " "), row.want_stop_now) << "stop now";

  // Events, in order.
  std::vector<std::string> events;
  for (const auto& e : plan.events)
    events.push_back(absl::StrCat(e.type, " ", e.reason));
  EXPECT_EQ(absl::StrJoin(events, ", "), absl::StrJoin(row.want_events, ", "))
      << "events";

  // The rollout status, and the state persisted with it.
  const auto& s = plan.status;
  EXPECT_EQ(Str({s.phase(), s.reason(), s.stable_revision(),
                 s.update_revision(), s.step(), s.total_steps()}),
            Str(row.want_rollout))
      << "rollout status";
  int64_t version = 0;
  auto st = LoadRolloutState(&store, kNs, kName, &version);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_GT(version, 0);
  EXPECT_EQ(st->phase(), s.phase());
  EXPECT_EQ(st->stable_revision(), s.stable_revision());
  EXPECT_EQ(st->update_revision(), s.update_revision());

  // Webhooks.
  EXPECT_EQ(absl::StrJoin(hooks.calls, " "), absl::StrJoin(row.want_calls, " "))
      << "webhook calls";
  EXPECT_EQ(absl::StrJoin(hooks.notified, " "),
            absl::StrJoin(row.want_notified, " "))
      << "notifications";
  if (row.post) row.post(plan, *st);
}

void Batches(tidal::v1::RolloutSpec* rs, int n) { rs->set_batches(n); }

std::vector<TableRow> Rows() {
  std::vector<TableRow> rows;
  auto row = [&](TableRow r) { rows.push_back(std::move(r)); };

  {
    // The first plan of an app: its template is revision 1, the stable one
    // at once; its first rollout comes up.
    TableRow r{"FirstPlanAdoptsTheTemplate"};
    r.app = AppObj("v1");
    r.total = 3;
    r.want_stable = "r1(v1)=3";
    r.want_events = {"Normal RevisionCreated"};
    r.want_rollout = {"Progressing", "", 1, 0, 0, 0};
    r.post = [](const DeployPlan& plan, const RolloutState& st) {
      EXPECT_EQ(plan.status.message(), "revision 1: 0/3 instance(s) available");
      EXPECT_LE(plan.requeue_after, absl::Seconds(1));
    };
    row(std::move(r));
  }
  {
    TableRow r{"FirstRevisionAvailableSucceeds"};
    r.app = AppObj("v1");
    r.revisions = {Rev(1, "v1")};
    RolloutState st = Settled(1, "v1");
    st.set_phase("Progressing");
    *st.mutable_step_started() = ToProtoTime(kNow - absl::Seconds(5));
    r.rollout = st;
    r.total = 2;
    r.live = {{2}};
    r.want_stable = "r1(v1)=2";
    r.want_rollout = {"Succeeded", "", 1, 0, 0, 0};
    row(std::move(r));
  }
  {
    // Nothing to roll back to: it fails and stays for `logs`/`describe`.
    TableRow r{"FirstRevisionThatCrashesFails"};
    r.app = AppObj("v1");
    r.revisions = {Rev(1, "v1")};
    RolloutState st = Settled(1, "v1");
    st.set_phase("Progressing");
    *st.mutable_step_started() = ToProtoTime(kNow - absl::Seconds(5));
    r.rollout = st;
    r.total = 1;
    r.live = {{1, "v1", false, "CrashLoopBackOff", 0}};
    r.want_stable = "r1(v1)=1";
    r.want_events = {"Warning RolloutFailed"};
    r.want_rollout = {"Failed", "CrashLoop", 1, 0, 0, 0};
    row(std::move(r));
  }
  {
    // A new template: revision 2, first of two batches; the pre-rollout
    // webhook is called before anything starts.
    TableRow r{"NewTemplateStartsTheFirstBatch"};
    r.app =
        WithHook(AppObj("v2", [](auto* rs) { Batches(rs, 2); }), "pre-rollout");
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.total = 4;
    r.live = {{4}};
    r.want_stable = "r1(v1)=2";
    r.want_update = "r2(v2)=2";
    r.want_events = {"Normal RevisionCreated", "Normal RolloutStarted"};
    r.want_rollout = {"Progressing", "", 1, 2, 1, 2};
    r.want_calls = {"pre-rollout"};
    r.post = [](const DeployPlan& plan, const RolloutState& st) {
      EXPECT_TRUE(st.pre_rollout_done());
      EXPECT_EQ(plan.status.message(),
                "step 1 of 2 (batch): 0/2 new instance(s) available; waiting "
                "for new instances to be available");
    };
    row(std::move(r));
  }
  {
    TableRow r{"PreRolloutRefusalRollsBack"};
    r.app =
        WithHook(AppObj("v2", [](auto* rs) { Batches(rs, 2); }), "pre-rollout");
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.total = 4;
    r.live = {{4}};
    r.refuse = {{"pre-rollout", absl::UnavailableError("answered 503")}};
    r.want_stable = "r1(v1)=4";
    r.want_events = {"Normal RevisionCreated", "Normal RolloutStarted",
                     "Warning RolledBack"};
    r.want_rollout = {"RolledBack", "PreRolloutWebhookFailed", 1, 0, 0, 0};
    r.want_calls = {"pre-rollout"};
    r.post = [](const DeployPlan& plan, const RolloutState& st) {
      EXPECT_EQ(st.message(), "answered 503");
      EXPECT_EQ(st.failed_revision(), 2);
    };
    row(std::move(r));
  }
  {
    // Its instances are available: on to the last batch, which the
    // confirm-promotion webhook gates.
    TableRow r{"DoneBatchAdvancesAfterConfirmation"};
    r.app = WithHook(AppObj("v2", [](auto* rs) { Batches(rs, 2); }),
                     "confirm-promotion");
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2);
    r.total = 4;
    r.live = {{2, "v2"}, {2, "v1"}};
    r.want_stable = "r1(v1)=0";
    r.want_update = "r2(v2)=4";
    r.want_events = {"Normal RolloutStep"};
    r.want_rollout = {"Progressing", "", 1, 2, 2, 2};
    r.want_calls = {"confirm-promotion"};
    r.post = [](const DeployPlan& plan, const RolloutState& st) {
      EXPECT_TRUE(st.confirmed());
      EXPECT_EQ(FromProtoTime(st.step_started()), kNow);
    };
    row(std::move(r));
  }
  {
    TableRow r{"ConfirmationRefusedRollsBack"};
    r.app = WithHook(AppObj("v2", [](auto* rs) { Batches(rs, 2); }),
                     "confirm-promotion");
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2);
    r.total = 4;
    r.live = {{2, "v2"}, {2, "v1"}};
    r.refuse = {{"confirm-promotion", absl::PermissionDeniedError("no")}};
    r.want_stable = "r1(v1)=4";
    r.want_stop_now = "v2";
    r.want_weights = "r1=100";
    r.want_events = {"Warning RolledBack"};
    r.want_rollout = {
        "RolledBack", "ConfirmPromotionWebhookFailed", 1, 0, 0, 0};
    r.want_calls = {"confirm-promotion"};
    row(std::move(r));
  }
  {
    // A batch interval holds the next batch until it ends.
    TableRow r{"BatchIntervalHolds"};
    r.app = AppObj("v2", [](auto* rs) {
      Batches(rs, 2);
      rs->set_batch_interval_ms(60000);
    });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2);
    r.total = 4;
    r.live = {{2, "v2"}, {2, "v1"}};
    r.want_stable = "r1(v1)=2";
    r.want_update = "r2(v2)=2";
    r.want_rollout = {"Progressing", "", 1, 2, 1, 2};
    r.post = [](const DeployPlan& plan, const RolloutState& st) {
      EXPECT_EQ(FromProtoTime(st.step_ready()), kNow);
      EXPECT_LE(plan.requeue_after, absl::Seconds(1));
    };
    row(std::move(r));
  }
  {
    TableRow r{"LastBatchDoneCompletes"};
    r.app = WithHook(AppObj("v2", [](auto* rs) { Batches(rs, 2); }),
                     "post-rollout");
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    RolloutState st = Rolling(1, 2);
    st.set_confirmed(true);
    r.rollout = st;
    r.total = 4;
    r.live = {{4, "v2"}};
    r.want_stable = "r2(v2)=4";
    r.want_events = {"Normal RolloutSucceeded"};
    r.want_rollout = {"Succeeded", "", 2, 0, 0, 0};
    r.want_notified = {"post-rollout"};
    row(std::move(r));
  }
  {
    // A canary step: one instance and 20% of the traffic.
    TableRow r{"CanaryStepSplitsTraffic"};
    r.app = AppObj("v2", [](auto* rs) {
      rs->set_strategy("canary");
      rs->add_steps()->set_weight(20);
    });
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.total = 5;
    r.live = {{5}};
    r.want_stable = "r1(v1)=4";
    r.want_update = "r2(v2)=1";
    r.want_weights = "r1=80 r2=20";
    r.want_events = {"Normal RevisionCreated", "Normal RolloutStarted"};
    r.want_rollout = {"Progressing", "", 1, 2, 1, 2};
    row(std::move(r));
  }
  {
    // The error-rate gate fails the canary's first window: roll back at
    // once (no need to wait for the interval).
    TableRow r{"ErrorRateOverTheLimitRollsBack"};
    r.app = WithHook(AppObj("v2",
                            [](auto* rs) {
                              rs->set_strategy("canary");
                              rs->add_steps()->set_weight(20);
                              rs->mutable_analysis()->set_min_requests(10);
                              rs->mutable_analysis()->set_max_error_rate(0.1);
                            }),
                     "rollback");
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    RolloutState st = Rolling(0, 2);
    *st.mutable_next_analysis() = ToProtoTime(kNow + absl::Seconds(20));
    r.rollout = st;
    r.total = 5;
    r.live = {{1, "v2"}, {4, "v1"}};
    r.metrics = Window{100, 50, 20};
    r.want_stable = "r1(v1)=5";
    r.want_stop_now = "v2";
    r.want_weights = "r1=100";
    r.want_events = {"Warning RolledBack"};
    r.want_rollout = {"RolledBack", "AnalysisFailed", 1, 0, 0, 0};
    r.want_notified = {"rollback"};
    r.post = [](const DeployPlan& plan, const RolloutState& st) {
      // The window is the analysis interval (30s), cut to the 10s since
      // the release began.
      EXPECT_EQ(st.analysis(),
                "requests=100 5xx=50.0% p99=20ms over 10s: 5xx rate 50.0% > "
                "10.0%");
    };
    row(std::move(r));
  }
  {
    // The same failure with autoRollback off holds the step.
    TableRow r{"AutoRollbackOffHoldsTheStep"};
    r.app = AppObj("v2", [](auto* rs) {
      rs->set_strategy("canary");
      rs->add_steps()->set_weight(20);
      rs->mutable_analysis()->set_max_error_rate(0.1);
      rs->set_auto_rollback(false);
    });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2);
    r.total = 5;
    r.live = {{1, "v2"}, {4, "v1"}};
    r.metrics = Window{100, 50, 20};
    r.want_stable = "r1(v1)=4";
    r.want_update = "r2(v2)=1";
    r.want_weights = "r1=80 r2=20";
    r.want_events = {"Warning RolloutFailed"};
    r.want_rollout = {"Failed", "AnalysisFailed", 1, 2, 1, 2};
    row(std::move(r));
  }
  {
    // The latency gate passes: one success of the two needed; the step
    // waits for the next window.
    TableRow r{"PassingWindowCountsTowardsTheAnalysis"};
    r.app = AppObj("v2", [](auto* rs) {
      rs->set_strategy("canary");
      rs->add_steps()->set_weight(20);
      rs->mutable_analysis()->set_max_p99_latency_ms(500);
      rs->mutable_analysis()->set_consecutive_successes(2);
    });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2);
    r.total = 5;
    r.live = {{1, "v2"}, {4, "v1"}};
    r.metrics = Window{100, 0, 120};
    r.want_stable = "r1(v1)=4";
    r.want_update = "r2(v2)=1";
    r.want_weights = "r1=80 r2=20";
    r.want_rollout = {"Progressing", "", 1, 2, 1, 2};
    r.post = [](const DeployPlan& plan, const RolloutState& st) {
      EXPECT_EQ(st.successes(), 1);
      EXPECT_EQ(plan.status.analysis(),
                "requests=100 5xx=0.0% p99=120ms over 10s: passed (1/2)");
      EXPECT_EQ(plan.status.message(),
                "step 1 of 2 (canary): 1/1 new instance(s) available; waiting "
                "for analysis");
    };
    row(std::move(r));
  }
  {
    TableRow r{"ManualStepWaitsForPromote"};
    r.app = AppObj("v2", [](auto* rs) {
      Batches(rs, 2);
      rs->set_pause_manual(true);
    });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2);
    r.total = 4;
    r.live = {{2, "v2"}, {2, "v1"}};
    r.want_stable = "r1(v1)=2";
    r.want_update = "r2(v2)=2";
    r.want_rollout = {"Paused", "", 1, 2, 1, 2};
    r.post = [](const DeployPlan& plan, const RolloutState&) {
      EXPECT_EQ(plan.status.message(),
                "step 1 of 2 (batch): 2/2 new instance(s) available; waiting "
                "for `rollout promote`");
    };
    row(std::move(r));
  }
  {
    TableRow r{"PromoteAdvancesAManualStep"};
    r.app = AppObj("v2", [](auto* rs) {
      Batches(rs, 2);
      rs->set_pause_manual(true);
    });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    RolloutState st = Rolling(0, 2);
    st.set_promote(true);
    r.rollout = st;
    r.total = 4;
    r.live = {{2, "v2"}, {2, "v1"}};
    r.want_stable = "r1(v1)=0";
    r.want_update = "r2(v2)=4";
    r.want_events = {"Normal RolloutStep"};
    r.want_rollout = {"Progressing", "", 1, 2, 2, 2};
    r.post = [](const DeployPlan&, const RolloutState& st) {
      EXPECT_FALSE(st.promote());
    };
    row(std::move(r));
  }
  {
    TableRow r{"AbortRollsBack"};
    r.app = AppObj("v2", [](auto* rs) { Batches(rs, 2); });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    RolloutState st = Rolling(0, 2);
    st.set_abort(true);
    r.rollout = st;
    r.total = 4;
    r.live = {{1, "v2"}, {3, "v1"}};
    r.want_stable = "r1(v1)=4";
    r.want_stop_now = "v2";
    r.want_weights = "r1=100";
    r.want_events = {"Warning RolledBack"};
    r.want_rollout = {"RolledBack", "Aborted", 1, 0, 0, 0};
    row(std::move(r));
  }
  {
    // A crash loop of the new revision fails it without its deadline.
    TableRow r{"CrashLoopOfTheUpdateRollsBack"};
    r.app = AppObj("v2", [](auto* rs) { Batches(rs, 2); });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2);
    r.total = 4;
    r.live = {{1, "v2", false, "CrashLoopBackOff", 1}, {3, "v1"}};
    r.want_stable = "r1(v1)=4";
    r.want_stop_now = "v2";
    r.want_weights = "r1=100";
    r.want_events = {"Warning RolledBack"};
    r.want_rollout = {"RolledBack", "CrashLoop", 1, 0, 0, 0};
    row(std::move(r));
  }
  {
    TableRow r{"ProgressDeadlineRollsBack"};
    r.app = AppObj("v2", [](auto* rs) { Batches(rs, 2); });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2, absl::Minutes(11));
    r.total = 4;
    r.live = {{2, "v2", false, "Starting"}, {2, "v1"}};
    r.want_stable = "r1(v1)=4";
    r.want_stop_now = "v2";
    r.want_weights = "r1=100";
    r.want_events = {"Warning RolledBack"};
    r.want_rollout = {"RolledBack", "ProgressDeadlineExceeded", 1, 0, 0, 0};
    r.post = [](const DeployPlan&, const RolloutState& st) {
      EXPECT_EQ(st.message(),
                "step 1 of 2 made no progress within 10m: 0/2 new "
                "instance(s) available");
    };
    row(std::move(r));
  }
  {
    // The spec goes back to the stable template: the update is withdrawn.
    TableRow r{"SpecBackAtStableCancels"};
    r.app = AppObj("v1", [](auto* rs) { Batches(rs, 2); });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(0, 2);
    r.total = 4;
    r.live = {{2, "v2"}, {2, "v1"}};
    r.want_stable = "r1(v1)=4";
    r.want_events = {"Normal RolloutCancelled"};
    r.want_rollout = {"Succeeded", "", 1, 0, 0, 0};
    row(std::move(r));
  }
  {
    // A third template during a rollout supersedes it from its step.
    TableRow r{"ThirdTemplateSupersedes"};
    r.app = AppObj("v3", [](auto* rs) { Batches(rs, 2); });
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Rolling(1, 2);
    r.total = 4;
    r.live = {{4, "v2"}};
    r.want_stable = "r1(v1)=0";
    r.want_update = "r3(v3)=4";
    r.want_events = {"Normal RevisionCreated", "Normal RolloutStarted"};
    r.want_rollout = {"Progressing", "", 1, 3, 2, 2};
    row(std::move(r));
  }
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Table, DeployerTableTest, ::testing::ValuesIn(Rows()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::deployer
