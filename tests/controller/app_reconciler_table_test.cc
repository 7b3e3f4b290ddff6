// AppReconciler table tests in the shape of knative's TableTest
// (knative.dev/pkg/reconciler/testing): each row is the world before one
// reconcile (apps, revisions and rollout state in the store, instances in
// the runtime), the key to reconcile, and what must happen: the instances
// started and stopped (in order), the events recorded (in order), the app's
// status, and further checks on the store afterwards. The runner seeds a
// MemoryStore and a FakeRuntime, reconciles the key once and diffs.

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
#include "controller/app_reconciler.h"
#include "deployer/deployer.h"
#include "deployer/revisions.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "fakes/forwarding_runtime.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

namespace tidal {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;
using tidal::v1::RolloutState;

constexpr char kNs[] = "default";
constexpr char kName[] = "hello";
constexpr char kKey[] = "default/hello";

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

// The app as `apply` leaves it: `version` of the sample app, `replicas`.
App AppObj(int replicas, const std::string& version = "v1",
           int64_t generation = 1) {
  App app;
  app.set_api_version("tidal.dev/v1");
  app.set_kind("App");
  app.mutable_metadata()->set_name(kName);
  app.mutable_metadata()->set_namespace_(kNs);
  app.mutable_metadata()->set_generation(generation);
  app.mutable_spec()->set_replicas(replicas);
  *app.mutable_spec()->mutable_template_() = TemplateOf(version);
  return app;
}
App Deleting(App app) {
  *app.mutable_metadata()->mutable_deletion_timestamp() =
      ToProtoTime(absl::FromUnixSeconds(1700000000));
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

// The deployer's state of an app whose revision `stable` (of `version`) is
// rolled out.
RolloutState Settled(int64_t stable, const std::string& version) {
  RolloutState st;
  st.set_stable_revision(stable);
  st.set_stable_hash(HashOf(version));
  st.set_phase("Succeeded");
  return st;
}

// Revision `failed` rolled back to `stable` (its analysis failed).
RolloutState RolledBack(int64_t stable, const std::string& version,
                        int64_t failed, const std::string& failed_version) {
  RolloutState st = Settled(stable, version);
  st.set_phase("RolledBack");
  st.set_reason("AnalysisFailed");
  st.set_failed_hash(HashOf(failed_version));
  st.set_failed_revision(failed);
  return st;
}

// An instance in the runtime before the reconcile, named for the row.
struct Inst {
  std::string label;
  int64_t revision = 1;
  std::string version = "v1";
  bool ready = true;
  std::string phase = "Running";
  int restarts = 0;
  absl::Duration started_ago = absl::Minutes(5);
};

// --- Rows ---

struct Start {
  int64_t revision;
  std::string version;
};
std::string Str(const Start& s) {
  return absl::StrCat("r", s.revision, "(", s.version, ")");
}

// The parts of the app's status a row checks.
struct WantStatus {
  int desired = 0;
  int current = 0;
  int ready = 0;
  std::string ready_reason;        // the Ready condition's reason
  std::string progressing_reason;  // the Progressing condition's reason
  std::string rollout_phase;
  int64_t stable_revision = 0;
  int64_t update_revision = 0;
};
std::string Str(const WantStatus& s) {
  return absl::StrCat(
      "desired=", s.desired, " current=", s.current, " ready=", s.ready,
      " Ready=", s.ready_reason, " Progressing=", s.progressing_reason,
      " rollout=", s.rollout_phase, " stable=", s.stable_revision,
      " update=", s.update_revision);
}

struct TableRow {
  std::string name;
  // The world before the reconcile.
  std::vector<App> apps;
  std::vector<tidal::v1::Revision> revisions;
  std::optional<RolloutState> rollout;
  std::vector<Inst> instances;
  AppReconciler::Options options;
  bool fail_starts = false;
  absl::Status start_error;  // when set, what every Start fails with
  // The reconcile.
  std::string key = kKey;
  bool want_err = false;
  // What must happen.
  std::vector<Start> want_starts;
  std::vector<std::string> want_stops;   // labels of seeded instances
  std::vector<std::string> want_events;  // "Type Reason", in order
  std::optional<WantStatus> want_status;
  bool want_app_deleted = false;
  // Further checks, with the store after the reconcile.
  std::function<void(Store*)> post;
};

void PrintTo(const TableRow& r, std::ostream* os) { *os << r.name; }

// --- The runner ---

// The runtime as the reconciler sees it: the FakeRuntime, with every Start
// and Stop recorded.
class RecordingRuntime : public testing::ForwardingRuntime {
 public:
  using ForwardingRuntime::ForwardingRuntime;
  absl::StatusOr<Instance> Start(const InstanceRequest& req) override {
    starts.push_back(req);
    return ForwardingRuntime::Start(req);
  }
  absl::Status Stop(const std::string& id, absl::Duration grace) override {
    stops.push_back(id);
    return ForwardingRuntime::Stop(id, grace);
  }

  std::vector<InstanceRequest> starts;
  std::vector<std::string> stops;
};

// What a reconciler is made of.
struct Deps {
  Store* store;
  Runtime* runtime;
  EventRecorder* events;
  Clock* clock;
  AppReconciler::Options options;
};

// The one place that builds the reconciler under test.
std::unique_ptr<AppReconciler> MakeReconciler(const Deps& d) {
  return std::make_unique<AppReconciler>(d.store, d.runtime, d.events, d.clock,
                                         d.options);
}

class AppReconcilerTableTest : public ::testing::TestWithParam<TableRow> {};

TEST_P(AppReconcilerTableTest, Row) {
  const TableRow& row = GetParam();
  testing::MemoryStore store;
  testing::FakeRuntime fake;
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);

  // Seed the store.
  for (const App& app : row.apps) {
    ASSERT_TRUE(store
                    .Create(keys::App(app.metadata().namespace_(),
                                      app.metadata().name()),
                            app.SerializeAsString())
                    .ok());
  }
  for (const auto& r : row.revisions) {
    ASSERT_TRUE(
        store
            .Create(deployer::RevisionKey(r.namespace_(), r.app(), r.number()),
                    r.SerializeAsString())
            .ok());
  }
  if (row.rollout) {
    ASSERT_TRUE(store
                    .Create(keys::RolloutKey(kNs, kName),
                            row.rollout->SerializeAsString())
                    .ok());
  }
  // Seed the runtime.
  std::map<std::string, std::string> label_of;  // instance id -> label
  for (const Inst& i : row.instances) {
    InstanceRequest req;
    req.namespace_ = kNs;
    req.app = kName;
    req.template_hash = HashOf(i.version);
    req.revision = i.revision;
    req.tmpl = TemplateOf(i.version);
    auto inst = fake.Start(req);
    ASSERT_TRUE(inst.ok());
    const absl::Time now = clock.Now();
    fake.Update(inst->id(), [&](Instance* x) {
      x->set_phase(i.phase);
      x->set_ready(i.ready);
      x->set_restarts(i.restarts);
      *x->mutable_start_time() = ToProtoTime(now - i.started_ago);
      if (i.ready) *x->mutable_ready_time() = ToProtoTime(now - i.started_ago);
    });
    label_of[inst->id()] = i.label;
  }
  fake.set_fail_starts(row.fail_starts);
  if (!row.start_error.ok()) fake.set_start_error(row.start_error);

  RecordingRuntime runtime(&fake);
  auto reconciler =
      MakeReconciler({&store, &runtime, &events, &clock, row.options});

  // Reconcile once.
  auto result = reconciler->Reconcile(row.key);
  EXPECT_EQ(!result.ok(), row.want_err) << result.status();

  // Starts and stops, in order.
  std::vector<std::string> got_starts, want_starts;
  for (const auto& req : runtime.starts) {
    got_starts.push_back(
        Str({req.revision, req.tmpl.args_size() > 1 ? req.tmpl.args(1) : ""}));
    EXPECT_EQ(req.template_hash, spec::TemplateHash(req.tmpl));
  }
  for (const auto& s : row.want_starts) want_starts.push_back(Str(s));
  EXPECT_EQ(absl::StrJoin(got_starts, " "), absl::StrJoin(want_starts, " "))
      << "starts";
  std::vector<std::string> got_stops;
  for (const auto& id : runtime.stops) {
    auto it = label_of.find(id);
    got_stops.push_back(it == label_of.end() ? "new:" + id : it->second);
  }
  EXPECT_EQ(absl::StrJoin(got_stops, " "), absl::StrJoin(row.want_stops, " "))
      << "stops";

  // Events, in order.
  std::vector<std::string> got_events;
  auto list = store.List(keys::EventPrefix(kNs, kName));
  ASSERT_TRUE(list.ok());
  for (const auto& kv : list->items) {
    tidal::v1::Event ev;
    ASSERT_TRUE(ev.ParseFromString(kv.value));
    got_events.push_back(absl::StrCat(ev.type(), " ", ev.reason()));
  }
  EXPECT_EQ(absl::StrJoin(got_events, ", "),
            absl::StrJoin(row.want_events, ", "))
      << "events";

  // The app.
  auto kv = store.Get(keys::App(kNs, kName));
  EXPECT_EQ(absl::IsNotFound(kv.status()), row.want_app_deleted) << kv.status();
  if (row.want_status) {
    ASSERT_TRUE(kv.ok()) << kv.status();
    App app;
    ASSERT_TRUE(app.ParseFromString(kv->value));
    const auto& s = app.status();
    WantStatus got;
    got.desired = s.desired_replicas();
    got.current = s.current_replicas();
    got.ready = s.ready_replicas();
    for (const auto& c : s.conditions()) {
      if (c.type() == "Ready") got.ready_reason = c.reason();
      if (c.type() == "Progressing") got.progressing_reason = c.reason();
    }
    got.rollout_phase = s.rollout().phase();
    got.stable_revision = s.rollout().stable_revision();
    got.update_revision = s.rollout().update_revision();
    EXPECT_EQ(Str(got), Str(*row.want_status)) << "status";
    EXPECT_EQ(s.observed_generation(), app.metadata().generation());
    EXPECT_EQ(s.template_hash(), spec::TemplateHash(app.spec().template_()));
  }
  if (row.post) row.post(&store);
}

int64_t CountKeys(Store* store, const std::string& prefix) {
  auto list = store->List(prefix);
  return list.ok() ? static_cast<int64_t>(list->items.size()) : -1;
}

std::vector<TableRow> Rows() {
  std::vector<TableRow> rows;
  auto row = [&](TableRow r) { rows.push_back(std::move(r)); };

  // A new app: its first revision is made and its instances started; its
  // first rollout is Progressing until they are available.
  {
    TableRow r{"NewAppStartsItsInstances"};
    r.apps = {AppObj(3)};
    r.want_starts = {{1, "v1"}, {1, "v1"}, {1, "v1"}};
    r.want_events = {"Normal RevisionCreated", "Normal ScaledUp"};
    r.want_status = {3, 3, 0, "InstancesNotReady", "Complete", "Progressing",
                     1, 0};
    r.post = [](Store* store) {
      EXPECT_EQ(CountKeys(store, keys::RevisionPrefix(kNs, kName)), 1);
      EXPECT_TRUE(store->Get(keys::RolloutKey(kNs, kName)).ok());
    };
    row(std::move(r));
  }
  // The same app once its instances are ready: the first rollout succeeds.
  {
    TableRow r{"FirstRevisionComesUp"};
    r.apps = {AppObj(2)};
    r.revisions = {Rev(1, "v1")};
    RolloutState st = Settled(1, "v1");
    st.set_phase("Progressing");
    r.rollout = st;
    r.instances = {{"a"}, {"b"}};
    r.want_status = {2,          2,           2, "AllInstancesReady",
                     "Complete", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    TableRow r{"SteadyStateDoesNothing"};
    r.apps = {AppObj(2)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"a"}, {"b"}};
    r.want_status = {2,          2,           2, "AllInstancesReady",
                     "Complete", "Succeeded", 1, 0};
    r.post = [](Store* store) {
      // Nothing to write but the status (the rollout state is unchanged).
      auto kv = store->Get(keys::RolloutKey(kNs, kName));
      ASSERT_TRUE(kv.ok());
      EXPECT_EQ(kv->create_version, kv->resource_version);
    };
    row(std::move(r));
  }
  {
    TableRow r{"ScaleUpStartsTheDifference"};
    r.apps = {AppObj(4)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"a"}, {"b"}};
    r.want_starts = {{1, "v1"}, {1, "v1"}};
    r.want_events = {"Normal ScaledUp"};
    r.want_status = {4,          4,           2, "InstancesNotReady",
                     "Complete", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    // Surplus goes not-ready first; a not-ready instance costs no capacity.
    TableRow r{"ScaleDownStopsNotReadyFirst"};
    r.apps = {AppObj(2)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"a"}, {"b", 1, "v1", /*ready=*/false, "Starting"}, {"c"}};
    r.want_stops = {"b"};
    r.want_events = {"Normal ScaledDown"};
    r.want_status = {2,          2,           2, "AllInstancesReady",
                     "Complete", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    // Among ready ones: the most restarted, then the newest.
    TableRow r{"ScaleDownStopsTheMostRestartedThenTheNewest"};
    r.apps = {AppObj(1)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"old", 1, "v1", true, "Running", 0, absl::Hours(2)},
                   {"flaky", 1, "v1", true, "Running", 3, absl::Hours(1)},
                   {"new", 1, "v1", true, "Running", 0, absl::Minutes(1)}};
    r.want_stops = {"flaky", "new"};
    r.want_events = {"Normal ScaledDown"};
    r.want_status = {1,          1,           1, "AllInstancesReady",
                     "Complete", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    TableRow r{"ScaleToZeroStopsAll"};
    r.apps = {AppObj(0)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"older", 1, "v1", true, "Running", 0, absl::Minutes(10)},
                   {"newer"}};
    r.want_stops = {"newer", "older"};
    r.want_events = {"Normal ScaledDown"};
    r.want_status = {0,          0,           0, "AllInstancesReady",
                     "Complete", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    // The runtime dropped an instance (it exited for good): the reconciler
    // starts a replacement.
    TableRow r{"VanishedInstanceIsReplaced"};
    r.apps = {AppObj(3)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"a"}, {"b"}};
    r.want_starts = {{1, "v1"}};
    r.want_events = {"Normal ScaledUp"};
    r.want_status = {3,          3,           2, "InstancesNotReady",
                     "Complete", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    // A crash-looping instance is the runtime's to restart: no extra
    // instance, and the Ready condition says why.
    TableRow r{"CrashLoopingInstanceIsLeftToTheRuntime"};
    r.apps = {AppObj(2)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {
        {"a"}, {"b", 1, "v1", false, "CrashLoopBackOff", 2, absl::Hours(1)}};
    r.want_status = {2,          2,           1, "CrashLoopBackOff",
                     "Complete", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    // A new template: a new revision and a rollout; maxSurge 25% of 2 = 1
    // new instance, maxUnavailable 0 keeps both old ones until it is ready.
    TableRow r{"SpecChangeMakesARevisionAndStartsTheRollout"};
    r.apps = {AppObj(2, "v2", 2)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"a"}, {"b"}};
    r.want_starts = {{2, "v2"}};
    r.want_events = {"Normal RevisionCreated", "Normal RolloutStarted",
                     "Normal Replacing"};
    r.want_status = {2, 3, 2, "InstancesNotReady", "Updating", "Progressing",
                     1, 2};
    r.post = [](Store* store) {
      auto kv = store->Get(deployer::RevisionKey(kNs, kName, 2));
      ASSERT_TRUE(kv.ok()) << kv.status();
      tidal::v1::Revision rev;
      ASSERT_TRUE(rev.ParseFromString(kv->value));
      EXPECT_EQ(rev.template_hash(), HashOf("v2"));
    };
    row(std::move(r));
  }
  {
    // The first new instance is ready: with maxSurge 1 used up, nothing
    // starts; an old one goes (newest first), which maxUnavailable 0
    // allows for one only. The second new one starts next time.
    TableRow r{"RolloutReplacesOldInstancesAsNewOnesGetReady"};
    r.apps = {AppObj(2, "v2", 2)};
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    RolloutState st = Settled(1, "v1");
    st.set_update_revision(2);
    st.set_update_hash(HashOf("v2"));
    st.set_phase("Progressing");
    st.set_total_steps(1);
    st.set_pre_rollout_done(true);
    st.set_confirmed(true);
    *st.mutable_started() = ToProtoTime(absl::FromUnixSeconds(1700000000));
    *st.mutable_step_started() = st.started();
    r.rollout = st;
    r.instances = {{"old-a", 1, "v1", true, "Running", 0, absl::Hours(2)},
                   {"old-b", 1, "v1", true, "Running", 0, absl::Hours(1)},
                   {"new-a", 2, "v2"}};
    r.want_stops = {"old-b"};
    r.want_events = {"Normal Replacing"};
    r.want_status = {2, 2, 2, "InstancesNotReady", "Updating", "Progressing",
                     1, 2};
    row(std::move(r));
  }
  {
    // A rolled-back revision's instances go at once, outside
    // maxUnavailable, and traffic is all the stable revision's.
    TableRow r{"RolledBackRevisionIsStoppedAtOnce"};
    r.apps = {AppObj(2, "v2", 2)};
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = RolledBack(1, "v1", 2, "v2");
    r.instances = {{"a"}, {"b"}, {"bad", 2, "v2"}};
    r.want_stops = {"bad"};
    r.want_events = {"Normal Stopping"};
    r.want_status = {2, 2, 2, "AllInstancesReady", "RolledBack", "RolledBack",
                     1, 0};
    row(std::move(r));
  }
  {
    // The stable revision started back up to the target after a rollback
    // is a replacement, not a scale-up: the count did not change.
    TableRow r{"RollbackRestartsTheStableRevisionWithoutAScaleEvent"};
    r.apps = {AppObj(2, "v2", 2)};
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = RolledBack(1, "v1", 2, "v2");
    r.instances = {{"a"}, {"bad", 2, "v2"}};
    r.want_stops = {"bad"};
    r.want_starts = {{1, "v1"}};
    r.want_events = {"Normal Stopping", "Normal Replacing"};
    r.want_status = {2, 2, 1, "InstancesNotReady", "RolledBack", "RolledBack",
                     1, 0};
    row(std::move(r));
  }
  {
    // tidald --max-instances-per-app holds the scaler's wish.
    TableRow r{"InstanceLimitHoldsTheTarget"};
    r.apps = {AppObj(5)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.options.max_instances = 3;
    r.want_starts = {{1, "v1"}, {1, "v1"}, {1, "v1"}};
    r.want_events = {"Warning InstanceLimit", "Normal ScaledUp"};
    r.want_status = {3,          3,           0, "InstancesNotReady",
                     "Complete", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    // A runtime that cannot start: the error goes back to the work queue
    // (retried with backoff) after an event and the status are written.
    TableRow r{"StartFailureIsAnErrorAndAnEvent"};
    r.apps = {AppObj(1)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.fail_starts = true;
    r.want_err = true;
    r.want_starts = {{1, "v1"}};
    r.want_events = {"Warning FailedCreate"};
    r.want_status = {1,          0,           0, "InstancesNotReady",
                     "Updating", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    // A secret reference that does not resolve (docs/secrets.md): Kubernetes'
    // reason, and an error retried with backoff (the secret may come).
    TableRow r{"MissingSecretIsCreateContainerConfigError"};
    r.apps = {AppObj(1)};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.start_error = absl::FailedPreconditionError(
        "CreateContainerConfigError: env DB: secret \"default/db\" not "
        "found");
    r.want_err = true;
    r.want_starts = {{1, "v1"}};
    r.want_events = {"Warning CreateContainerConfigError"};
    r.want_status = {1,          0,           0, "InstancesNotReady",
                     "Updating", "Succeeded", 1, 0};
    row(std::move(r));
  }
  {
    // A deleted app: its instances are stopped first; the app stays until
    // they are gone.
    TableRow r{"DeletedAppStopsItsInstancesFirst"};
    r.apps = {Deleting(AppObj(2))};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"a"}, {"b"}};
    r.want_stops = {"a", "b"};
    r.want_events = {"Normal Stopping"};
    r.post = [](Store* store) {
      EXPECT_TRUE(store->Get(keys::RolloutKey(kNs, kName)).ok());
    };
    row(std::move(r));
  }
  {
    // ... then it goes with its revisions and rollout state.
    TableRow r{"DeletedAppWithoutInstancesIsCleanedUp"};
    r.apps = {Deleting(AppObj(2))};
    r.revisions = {Rev(1, "v1"), Rev(2, "v2")};
    r.rollout = Settled(2, "v2");
    r.want_app_deleted = true;
    r.post = [](Store* store) {
      EXPECT_TRUE(
          absl::IsNotFound(store->Get(keys::RolloutKey(kNs, kName)).status()));
      EXPECT_EQ(CountKeys(store, keys::RevisionPrefix(kNs, kName)), 0);
    };
    row(std::move(r));
  }
  {
    // The app is gone from the store (deleted while tidald was down):
    // leftover instances are stopped; its state stays until they are gone.
    TableRow r{"InstancesOfAMissingAppAreStopped"};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.instances = {{"a"}, {"b", 2, "v2"}};
    r.want_stops = {"a", "b"};
    r.want_app_deleted = true;
    r.post = [](Store* store) {
      EXPECT_TRUE(store->Get(keys::RolloutKey(kNs, kName)).ok());
    };
    row(std::move(r));
  }
  {
    TableRow r{"MissingAppWithNothingLeftIsForgotten"};
    r.revisions = {Rev(1, "v1")};
    r.rollout = Settled(1, "v1");
    r.want_app_deleted = true;
    r.post = [](Store* store) {
      EXPECT_TRUE(
          absl::IsNotFound(store->Get(keys::RolloutKey(kNs, kName)).status()));
      EXPECT_EQ(CountKeys(store, keys::RevisionPrefix(kNs, kName)), 0);
    };
    row(std::move(r));
  }
  {
    TableRow r{"MalformedKeyIsAnError"};
    r.apps = {AppObj(1)};
    r.key = "no-namespace";
    r.want_err = true;
    row(std::move(r));
  }
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Table, AppReconcilerTableTest,
                         ::testing::ValuesIn(Rows()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace tidal
