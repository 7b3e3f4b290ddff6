#include "controller/app_reconciler.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "api/spec.h"
#include "common/proto_time.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

namespace tidal {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;

App MakeApp(int replicas, const std::string& version = "v1") {
  App app;
  app.set_api_version("tidal.dev/v1");
  app.set_kind("App");
  app.mutable_metadata()->set_name("hello");
  app.mutable_metadata()->set_namespace_("default");
  app.mutable_metadata()->set_generation(1);
  app.mutable_spec()->set_replicas(replicas);
  auto* t = app.mutable_spec()->mutable_template_();
  t->add_command("tidal-sample-app");
  t->add_args("--version");
  t->add_args(version);
  return app;
}

// An instance to seed the runtime with before the reconcile.
struct Seed {
  bool current_template = true;  // else an older template
  bool ready = true;
  std::string phase = "";  // "" keeps what SetReady sets
};

// One row: the world before, what Reconcile must do, and the status after.
struct Row {
  std::string name;
  int replicas = 3;
  bool in_store = true;
  bool deleting = false;
  std::vector<Seed> seeds;
  int want_starts = 0;
  int want_stops = 0;
  bool want_in_store = true;
  int want_desired = 0;
  int want_current = 0;
  int want_ready = 0;
  std::string want_ready_reason;  // "" skips the check
  // After the reconcile, of the stopped instances: how many were ready.
  int want_ready_stopped = -1;  // -1 skips the check
};

// Test names show the row, not its bytes.
void PrintTo(const Row& r, std::ostream* os) { *os << r.name; }

class ReconcileTableTest : public ::testing::TestWithParam<Row> {};

TEST_P(ReconcileTableTest, Row) {
  const Row& row = GetParam();
  testing::MemoryStore store;
  testing::FakeRuntime runtime;
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);
  AppReconciler reconciler(&store, &runtime, &events, &clock, {});

  App app = MakeApp(row.replicas);
  if (row.deleting)
    *app.mutable_metadata()->mutable_deletion_timestamp() =
        ToProtoTime(clock.Now());
  if (row.in_store)
    ASSERT_TRUE(
        store.Create(keys::App("default", "hello"), app.SerializeAsString())
            .ok());
  std::string hash = spec::TemplateHash(app.spec().template_());
  for (const auto& seed : row.seeds) {
    InstanceRequest req;
    req.namespace_ = "default";
    req.app = "hello";
    req.template_hash = seed.current_template ? hash : "0ldtemplate";
    auto inst = runtime.Start(req);
    ASSERT_TRUE(inst.ok());
    runtime.SetReady(inst->id(), seed.ready);
  }
  std::vector<Instance> before = runtime.List();
  int starts_before = runtime.starts();

  auto result = reconciler.Reconcile("default/hello");
  ASSERT_TRUE(result.ok()) << result.status();

  EXPECT_EQ(runtime.starts() - starts_before, row.want_starts);
  EXPECT_EQ(runtime.stops(), row.want_stops);
  if (row.want_ready_stopped >= 0) {
    std::vector<Instance> after = runtime.List();
    int ready_stopped = 0;
    for (const auto& b : before) {
      bool still = false;
      for (const auto& a : after) still |= a.id() == b.id();
      if (!still && b.ready()) ++ready_stopped;
    }
    EXPECT_EQ(ready_stopped, row.want_ready_stopped);
  }
  auto kv = store.Get(keys::App("default", "hello"));
  EXPECT_EQ(kv.ok(), row.want_in_store) << kv.status();
  if (!kv.ok() || !row.want_in_store || row.deleting) return;
  App stored;
  ASSERT_TRUE(stored.ParseFromString(kv->value));
  EXPECT_EQ(stored.status().desired_replicas(), row.want_desired);
  EXPECT_EQ(stored.status().current_replicas(), row.want_current);
  EXPECT_EQ(stored.status().ready_replicas(), row.want_ready);
  EXPECT_EQ(stored.status().observed_generation(), 1);
  EXPECT_EQ(stored.status().template_hash(), hash);
  if (!row.want_ready_reason.empty()) {
    bool found = false;
    for (const auto& c : stored.status().conditions()) {
      if (c.type() == "Ready") {
        found = true;
        EXPECT_EQ(c.reason(), row.want_ready_reason);
      }
    }
    EXPECT_TRUE(found);
  }
}

std::vector<Row> Rows() {
  std::vector<Row> rows;
  {
    Row r{"NewAppStartsAll"};
    r.replicas = 3, r.want_starts = 3, r.want_desired = 3, r.want_current = 3,
    r.want_ready = 0;
    r.want_ready_reason = "InstancesNotReady";
    rows.push_back(r);
  }
  {
    Row r{"SteadyStateDoesNothing"};
    r.seeds = {{}, {}, {}};
    r.want_desired = 3, r.want_current = 3, r.want_ready = 3;
    r.want_ready_reason = "AllInstancesReady";
    rows.push_back(r);
  }
  {
    Row r{"ScaleUpStartsTheDifference"};
    r.replicas = 5, r.seeds = {{}, {}, {}};
    r.want_starts = 2, r.want_desired = 5, r.want_current = 5, r.want_ready = 3;
    rows.push_back(r);
  }
  {
    Row r{"ScaleDownStopsNotReadyFirst"};
    r.replicas = 2, r.seeds = {{true, true}, {true, false}, {true, true}};
    r.want_stops = 1, r.want_ready_stopped = 0;
    r.want_desired = 2, r.want_current = 2, r.want_ready = 2;
    rows.push_back(r);
  }
  {
    Row r{"ScaleToZero"};
    r.replicas = 0, r.seeds = {{}, {}};
    r.want_stops = 2, r.want_desired = 0, r.want_current = 0, r.want_ready = 0;
    r.want_ready_reason = "AllInstancesReady";
    rows.push_back(r);
  }
  {
    // maxSurge 25% of 2 rounds up to 1, maxUnavailable down to 0.
    Row r{"TemplateChangeStartsNewKeepsOldUntilReady"};
    r.replicas = 2, r.seeds = {{false, true}, {false, true}};
    r.want_starts = 1, r.want_stops = 0;
    r.want_desired = 2, r.want_current = 3, r.want_ready = 2;
    r.want_ready_reason = "InstancesNotReady";
    rows.push_back(r);
  }
  {
    Row r{"TemplateChangeStopsOldAsNewBecomeReady"};
    r.replicas = 2,
    r.seeds = {{false, true}, {false, true}, {true, true}, {true, false}};
    r.want_stops = 1, r.want_desired = 2, r.want_current = 3, r.want_ready = 2;
    rows.push_back(r);
  }
  {
    Row r{"TemplateChangeDoneStopsAllOld"};
    r.replicas = 2, r.seeds = {{false, true}, {true, true}, {true, true}};
    r.want_stops = 1, r.want_desired = 2, r.want_current = 2, r.want_ready = 2;
    r.want_ready_reason = "AllInstancesReady";
    rows.push_back(r);
  }
  {
    Row r{"DeletingStopsInstancesKeepsApp"};
    r.deleting = true, r.seeds = {{}, {}};
    r.want_stops = 2, r.want_in_store = true;
    rows.push_back(r);
  }
  {
    Row r{"DeletingWithNoInstancesRemovesApp"};
    r.deleting = true, r.want_in_store = false;
    rows.push_back(r);
  }
  {
    Row r{"OrphanInstancesOfMissingAppAreStopped"};
    r.in_store = false, r.seeds = {{}, {false, true}};
    r.want_stops = 2, r.want_in_store = false;
    rows.push_back(r);
  }
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Table, ReconcileTableTest, ::testing::ValuesIn(Rows()),
                         [](const auto& info) { return info.param.name; });

TEST(AppReconcilerTest, CrashLoopShowsInReadyCondition) {
  testing::MemoryStore store;
  testing::FakeRuntime runtime;
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);
  AppReconciler reconciler(&store, &runtime, &events, &clock, {});
  App app = MakeApp(1);
  ASSERT_TRUE(
      store.Create(keys::App("default", "hello"), app.SerializeAsString())
          .ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  ASSERT_EQ(runtime.List().size(), 1u);
  auto inst = runtime.List()[0];
  runtime.SetPhase(inst.id(), "CrashLoopBackOff",
                   "back-off 20s restarting failed instance");
  auto result = reconciler.Reconcile("default/hello");
  ASSERT_TRUE(result.ok());
  auto kv = store.Get(keys::App("default", "hello"));
  ASSERT_TRUE(kv.ok());
  App stored;
  ASSERT_TRUE(stored.ParseFromString(kv->value));
  EXPECT_EQ(stored.status().ready_replicas(), 0);
  ASSERT_FALSE(stored.status().conditions().empty());
  EXPECT_EQ(stored.status().conditions(0).reason(), "CrashLoopBackOff");
  EXPECT_NE(stored.status().conditions(0).message().find("back-off 20s"),
            std::string::npos);
  EXPECT_EQ(runtime.starts(),
            1);  // the runtime restarts it; the controller does not add one
}

TEST(AppReconcilerTest, StatusUnchangedMeansNoWrite) {
  testing::MemoryStore store;
  testing::FakeRuntime runtime(/*auto_ready=*/true);
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);
  AppReconciler reconciler(&store, &runtime, &events, &clock, {});
  App app = MakeApp(2);
  ASSERT_TRUE(
      store.Create(keys::App("default", "hello"), app.SerializeAsString())
          .ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  int64_t v1 = store.Get(keys::App("default", "hello"))->resource_version;
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_EQ(store.Get(keys::App("default", "hello"))->resource_version, v1);
}

TEST(AppReconcilerTest, ScalingRecordsAnEvent) {
  testing::MemoryStore store;
  testing::FakeRuntime runtime(true);
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);
  AppReconciler reconciler(&store, &runtime, &events, &clock, {});
  App app = MakeApp(3);
  ASSERT_TRUE(
      store.Create(keys::App("default", "hello"), app.SerializeAsString())
          .ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  auto list = store.List(keys::EventPrefix("default", "hello"));
  ASSERT_TRUE(list.ok());
  bool scaled = false;
  for (const auto& kv : list->items) {
    tidal::v1::Event ev;
    ASSERT_TRUE(ev.ParseFromString(kv.value));
    if (ev.reason() == "ScaledUp") {
      scaled = true;
      EXPECT_EQ(ev.message(), "Scaled up from 0 to 3 instances");
    }
  }
  EXPECT_TRUE(scaled);
}

// A RouteSink that records what the reconciler asks of the gateway and runs
// a drain's stop only when the test says the in-flight requests are done.
class RecordingRoutes : public RouteSink {
 public:
  void UpdateRoute(const App& app, const std::vector<Instance>&) override {
    ++updates;
  }
  void RemoveRoute(const std::string& ns, const std::string& name) override {
    removed.push_back(ns + "/" + name);
  }
  void Drain(const Instance& instance, absl::Duration grace,
             std::function<void()> stop) override {
    draining[instance.id()] = std::move(stop);
  }
  bool IsDraining(const std::string& id) override {
    return draining.count(id) > 0;
  }
  void FinishDrains() {
    for (auto& [id, stop] : draining) stop();
    draining.clear();
  }
  int Tunnels(const std::string& id) override {
    return tunnels.count(id) ? tunnels[id] : 0;
  }
  int updates = 0;
  std::vector<std::string> removed;
  std::map<std::string, std::function<void()>> draining;
  std::map<std::string, int> tunnels;  // upgraded connections per instance
};

// A scale-down leaves the instances that hold WebSocket connections: the
// app runs above its target until they close (docs/gateway.md).
TEST(AppReconcilerTest, ScaleDownKeepsInstancesThatHoldTunnels) {
  testing::MemoryStore store;
  testing::FakeRuntime runtime(true);
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);
  RecordingRoutes routes;
  AppReconciler::Options opts;
  opts.routes = &routes;
  AppReconciler reconciler(&store, &runtime, &events, &clock, opts);
  const std::string key = keys::App("default", "hello");
  ASSERT_TRUE(store.Create(key, MakeApp(3).SerializeAsString()).ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  auto running = runtime.List();
  ASSERT_EQ(running.size(), 3u);
  // Two of the three hold a WebSocket each.
  routes.tunnels[running[0].id()] = 1;
  routes.tunnels[running[2].id()] = 2;

  auto scale = [&](int replicas) {
    auto kv = store.Get(key);
    ASSERT_TRUE(kv.ok());
    App a;
    ASSERT_TRUE(a.ParseFromString(kv->value));
    a.mutable_spec()->set_replicas(replicas);
    ASSERT_TRUE(
        store.Update(key, a.SerializeAsString(), kv->resource_version).ok());
    ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  };
  scale(1);
  // Only the idle one drains.
  ASSERT_EQ(routes.draining.size(), 1u);
  EXPECT_EQ(routes.draining.begin()->first, running[1].id());
  routes.FinishDrains();
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_TRUE(routes.draining.empty());
  // One closes its connection: the next reconcile lets it go.
  routes.tunnels.erase(running[0].id());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  ASSERT_EQ(routes.draining.size(), 1u);
  EXPECT_EQ(routes.draining.begin()->first, running[0].id());
  routes.FinishDrains();

  // A release replaces the instance that still holds a connection: it
  // drains (and the drain's end closes the connection) like any other.
  auto kv = store.Get(key);
  ASSERT_TRUE(kv.ok());
  App a;
  ASSERT_TRUE(a.ParseFromString(kv->value));
  a.mutable_spec()->mutable_template_()->add_args("--v2");
  ASSERT_TRUE(
      store.Update(key, a.SerializeAsString(), kv->resource_version).ok());
  bool drained = false;
  for (int i = 0; i < 20 && !drained; ++i) {
    ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
    drained = routes.draining.count(running[2].id()) > 0;
    routes.FinishDrains();
  }
  EXPECT_TRUE(drained) << "the release never replaced the busy instance";
}

TEST(AppReconcilerTest, DeleteRemovesTheRouteThenDrainsBeforeStopping) {
  testing::MemoryStore store;
  testing::FakeRuntime runtime(true);
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);
  RecordingRoutes routes;
  AppReconciler::Options opts;
  opts.routes = &routes;
  AppReconciler reconciler(&store, &runtime, &events, &clock, opts);
  App app = MakeApp(2);
  ASSERT_TRUE(
      store.Create(keys::App("default", "hello"), app.SerializeAsString())
          .ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  ASSERT_EQ(runtime.List().size(), 2u);

  // Marked for deletion: new requests get 404 (route removed) and both
  // instances drain; none is stopped while its requests are in flight.
  auto kv = store.Get(keys::App("default", "hello"));
  ASSERT_TRUE(kv.ok());
  App deleting;
  ASSERT_TRUE(deleting.ParseFromString(kv->value));
  *deleting.mutable_metadata()->mutable_deletion_timestamp() =
      ToProtoTime(clock.Now());
  ASSERT_TRUE(store
                  .Update(keys::App("default", "hello"),
                          deleting.SerializeAsString(), kv->resource_version)
                  .ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_EQ(routes.removed, std::vector<std::string>{"default/hello"});
  EXPECT_EQ(routes.draining.size(), 2u);
  EXPECT_EQ(runtime.stops(), 0);
  EXPECT_TRUE(store.Get(keys::App("default", "hello")).ok());
  // A second reconcile while they drain does not drain or stop them twice.
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_EQ(routes.draining.size(), 2u);
  EXPECT_EQ(runtime.stops(), 0);

  // Drained: they are stopped, and then the app goes.
  routes.FinishDrains();
  EXPECT_EQ(runtime.stops(), 2);
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_TRUE(
      absl::IsNotFound(store.Get(keys::App("default", "hello")).status()));
}

// A FakeRuntime that records the grace period of each Stop.
class GraceRecordingRuntime : public testing::FakeRuntime {
 public:
  // Stopped instances stay Terminating until FinishStops (they ignore
  // SIGTERM).
  GraceRecordingRuntime() : FakeRuntime(true) { set_instant_stop(false); }
  absl::Status Stop(const std::string& id, absl::Duration grace) override {
    graces.push_back(grace);
    return FakeRuntime::Stop(id, grace);
  }
  std::vector<absl::Duration> graces;
};

// delete --grace-period/--force (metadata.deletionGracePeriodSeconds)
// replaces the template's period, also for instances already stopping.
TEST(AppReconcilerTest, DeleteGracePeriodOverridesTheTemplatesAndCutsTheWait) {
  testing::MemoryStore store;
  GraceRecordingRuntime runtime;
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);
  AppReconciler reconciler(&store, &runtime, &events, &clock, {});
  App app = MakeApp(2);
  app.mutable_spec()->mutable_template_()->set_termination_grace_period_seconds(
      3600);
  const std::string key = keys::App("default", "hello");
  ASSERT_TRUE(store.Create(key, app.SerializeAsString()).ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  ASSERT_EQ(runtime.List().size(), 2u);

  auto mark = [&](std::optional<int64_t> grace) {
    auto kv = store.Get(key);
    ASSERT_TRUE(kv.ok()) << kv.status();
    App a;
    ASSERT_TRUE(a.ParseFromString(kv->value));
    *a.mutable_metadata()->mutable_deletion_timestamp() =
        ToProtoTime(clock.Now());
    if (grace.has_value()) {
      a.mutable_metadata()->set_deletion_grace_period_seconds(*grace);
    }
    ASSERT_TRUE(
        store.Update(key, a.SerializeAsString(), kv->resource_version).ok());
  };
  mark(std::nullopt);
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_EQ(runtime.graces,
            std::vector<absl::Duration>(2, absl::Seconds(3600)));
  // Both are Terminating (they ignore SIGTERM): a plain reconcile leaves
  // them; --force (0) stops them again at once.
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_EQ(runtime.graces.size(), 2u);
  mark(0);
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  ASSERT_EQ(runtime.graces.size(), 4u);
  EXPECT_EQ(runtime.graces[2], absl::ZeroDuration());
  EXPECT_EQ(runtime.graces[3], absl::ZeroDuration());
  runtime.FinishStops();
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_TRUE(absl::IsNotFound(store.Get(key).status()));
}

// The scaler may want more than tidald allows (an unbounded maxReplicas):
// the reconciler holds the app to --max-instances-per-app, with an event.
TEST(AppReconcilerTest, InstancesAreHeldToThePerAppMaximum) {
  testing::MemoryStore store;
  testing::FakeRuntime runtime(true);
  testing::FakeClock clock;
  EventRecorder events(&store, &clock);
  AppReconciler::Options opts;
  opts.max_instances = 3;
  AppReconciler reconciler(&store, &runtime, &events, &clock, opts);
  ASSERT_TRUE(
      store
          .Create(keys::App("default", "hello"), MakeApp(5).SerializeAsString())
          .ok());
  ASSERT_TRUE(reconciler.Reconcile("default/hello").ok());
  EXPECT_EQ(runtime.List().size(), 3u);
  auto list = store.List(keys::EventPrefix("default", "hello"));
  ASSERT_TRUE(list.ok());
  bool held = false;
  for (const auto& kv : list->items) {
    tidal::v1::Event ev;
    ASSERT_TRUE(ev.ParseFromString(kv.value));
    if (ev.reason() == "InstanceLimit") {
      held = true;
      EXPECT_EQ(ev.type(), "Warning");
      EXPECT_EQ(ev.message(),
                "5 instances wanted; held to 3 (tidald "
                "--max-instances-per-app)");
    }
  }
  EXPECT_TRUE(held);
}

}  // namespace
}  // namespace tidal
