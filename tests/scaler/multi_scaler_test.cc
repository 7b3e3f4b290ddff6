#include "scaler/multi_scaler.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "cli/simulate_command.h"
#include "common/proto_time.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_metrics.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

namespace tidal {
namespace {

using tidal::v1::App;

App ScaledApp(const std::string& name, int min, int max, double target) {
  App app;
  app.mutable_metadata()->set_name(name);
  app.mutable_metadata()->set_namespace_("default");
  app.mutable_spec()->mutable_template_()->add_command("tidal-sample-app");
  auto* s = app.mutable_spec()->mutable_scaling();
  s->set_min_replicas(min);
  if (max > 0) s->set_max_replicas(max);
  s->set_metric("concurrency");
  s->set_target(target);
  s->set_scale_to_zero_grace_period_ms(3000);
  return app;
}

class MultiScalerTest : public ::testing::Test {
 protected:
  MultiScalerTest() : metrics_(&clock_), planner_(Inputs()) {}

  // The fixture's store, runtime, metrics, held requests and clock; changed
  // decisions are counted in changes_.
  MultiScaler::Inputs Inputs() {
    MultiScaler::Inputs in;
    in.store = &store_;
    in.runtime = &runtime_;
    in.metrics = &metrics_;
    in.queued = [this](const std::string&, const std::string&) {
      return queued_;
    };
    in.clock = &clock_;
    in.on_change = [this](const std::string& key) {
      absl::MutexLock l(&mu_);
      ++changes_[key];
    };
    return in;
  }
  int Changes(const std::string& key) {
    absl::MutexLock l(&mu_);
    return changes_[key];
  }
  // Brings the fake runtime to `n` ready instances of the app.
  void SetInstances(const App& app, int n) {
    auto insts = runtime_.List("default", app.metadata().name());
    while (static_cast<int>(insts.size()) < n) {
      InstanceRequest req;
      req.namespace_ = "default";
      req.app = app.metadata().name();
      ASSERT_TRUE(runtime_.Start(req).ok());
      insts = runtime_.List("default", app.metadata().name());
    }
    while (static_cast<int>(insts.size()) > n) {
      ASSERT_TRUE(runtime_.Stop(insts.back().id(), absl::ZeroDuration()).ok());
      insts.pop_back();
    }
    runtime_.SetAllReady();
  }
  ReplicaPlanner::Plan Desired(const App& app) {
    return planner_.Desired(app,
                            runtime_.List("default", app.metadata().name()));
  }
  // Advances the clock tick by tick, running the planner's due ticks.
  void Run(absl::Duration d) {
    for (absl::Duration t; t < d; t += absl::Seconds(1)) {
      clock_.Advance(absl::Seconds(1));
      planner_.RunDue();
    }
  }

  // Advances the clock second by second; before each tick every instance of
  // `app` has used `cores` of CPU over the second and holds `memory` bytes.
  void RunWithUsage(const App& app, absl::Duration d, double cores,
                    int64_t memory) {
    for (absl::Duration t; t < d; t += absl::Seconds(1)) {
      clock_.Advance(absl::Seconds(1));
      for (const auto& inst : runtime_.List("default", app.metadata().name())) {
        double& cpu = cpu_seconds_[inst.id()];
        cpu += cores;
        runtime_.SetUsage(inst.id(), cpu, memory, clock_.Now());
      }
      planner_.RunDue();
    }
  }

  // As RunWithUsage, but only the first `n` instances report usage.
  void RunWithUsageOfFirst(const App& app, size_t n, absl::Duration d,
                           double cores) {
    for (absl::Duration t; t < d; t += absl::Seconds(1)) {
      clock_.Advance(absl::Seconds(1));
      auto insts = runtime_.List("default", app.metadata().name());
      for (size_t i = 0; i < insts.size() && i < n; ++i) {
        double& cpu = cpu_seconds_[insts[i].id()];
        cpu += cores;
        runtime_.SetUsage(insts[i].id(), cpu, 10 << 20, clock_.Now());
      }
      planner_.RunDue();
    }
  }

  testing::FakeClock clock_;
  std::map<std::string, double> cpu_seconds_;
  testing::MemoryStore store_;
  testing::FakeRuntime runtime_;
  testing::FakeMetrics metrics_;
  int queued_ = 0;
  MultiScaler planner_;
  absl::Mutex mu_;
  std::map<std::string, int> changes_ ABSL_GUARDED_BY(mu_);
};

TEST_F(MultiScalerTest, FixedReplicasStayFixedAndCostNoScaler) {
  App app = ScaledApp("fixed", 0, 5, 10);
  app.mutable_spec()->set_replicas(3);
  auto plan = Desired(app);
  EXPECT_EQ(plan.replicas, 3);
  EXPECT_FALSE(plan.has_status);
  App plain;
  plain.mutable_metadata()->set_name("plain");
  plain.mutable_metadata()->set_namespace_("default");
  EXPECT_EQ(Desired(plain).replicas, 1);
  EXPECT_EQ(planner_.size(), 0u);
}

TEST_F(MultiScalerTest, MinZeroStartsAtZeroAndWakeScalesFromZeroAtOnce) {
  App app = ScaledApp("zero", 0, 10, 100);
  auto plan = Desired(app);
  EXPECT_EQ(plan.replicas, 0);
  ASSERT_TRUE(plan.has_status);
  EXPECT_EQ(plan.status.metric(), "concurrency");
  // The spec's target and the utilization apart (issue 16: a target of 100
  // is shown as 100, not as 70).
  EXPECT_EQ(plan.status.target(), 100);
  EXPECT_EQ(plan.status.target_utilization(), 70);
  EXPECT_EQ(planner_.size(), 1u);
  int before = Changes("default/zero");

  // The gateway holds a request: the decision changes without a tick.
  queued_ = 1;
  planner_.Wake("default", "zero");
  EXPECT_EQ(Changes("default/zero"), before + 1);
  plan = Desired(app);
  EXPECT_EQ(plan.replicas, 1);
  EXPECT_FALSE(plan.reason.empty());

  // Desired does not advance anything: asking again changes nothing.
  EXPECT_EQ(Desired(app).replicas, 1);
  EXPECT_EQ(Changes("default/zero"), before + 1);
}

// `tidalctl simulate` builds the AppScaler of a spec file as the planner does
// (scaler::AppScalerInputsFor): the same config, the same first decision.
TEST_F(MultiScalerTest, SimulateBuildsTheSameScalerAsThePlanner) {
  const std::string path = ::testing::TempDir() + "/planner_same.yaml";
  std::ofstream(path) << "apiVersion: tidal.dev/v1\nkind: App\n"
                         "metadata: {name: same}\nspec:\n"
                         "  template:\n    command: [x]\n    concurrency: 4\n"
                         "  scaling:\n    minReplicas: 0\n"
                         "    maxReplicas: 30\n    target: 3\n"
                         "    scaleToZeroGracePeriod: 45s\n";
  std::ostringstream err;
  auto app = cli::ReadSimulatedApp(path, "", err);
  ASSERT_TRUE(app.ok()) << app.status() << err.str();
  const auto plan = Desired(*app);
  ASSERT_TRUE(plan.has_status);

  const scaler::SimOptions so =
      cli::SimOptionsFor(*app, cli::SimulateOptions{});
  auto cfg = scaler::ResolveConfig(so.scaling, so.model.concurrency);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->initial_scale, 0);  // minReplicas 0 starts at zero
  EXPECT_EQ(so.scaler.tidal_fallback_keep_alive, absl::Seconds(45));
  scaler::AppScalerOptions opts = so.scaler;
  scaler::AppScaler sim(*cfg, clock_.Now(), opts);
  sim.SetInstances(0, 0);
  const scaler::Decision d = sim.Decide(clock_.Now());
  EXPECT_EQ(plan.replicas, 0);
  EXPECT_EQ(d.desired_replicas, plan.replicas);
  EXPECT_EQ(plan.status.target() * plan.status.target_utilization() / 100,
            d.target);
  EXPECT_EQ(plan.status.target(), 3);  // as written; the scaler aims at 2.1
  EXPECT_EQ(plan.status.target_utilization(), 70);
  EXPECT_EQ(plan.status.min_replicas(), d.min_replicas);
  EXPECT_EQ(plan.status.max_replicas(), d.max_replicas);
  EXPECT_EQ(plan.status.metric(), scaler::MetricName(d.metric));
}

TEST_F(MultiScalerTest, ScalesUpWithLoadAndBackToZeroAfterGrace) {
  App app = ScaledApp("load", 0, 20, 10);  // target 7 per instance
  EXPECT_EQ(Desired(app).replicas, 0);
  queued_ = 5;
  planner_.Wake("default", "load");
  SetInstances(app, Desired(app).replicas);
  queued_ = 0;
  metrics_.set_concurrency(70);
  Run(absl::Seconds(6));
  auto plan = Desired(app);
  EXPECT_GE(plan.replicas, 8) << plan.reason;
  EXPECT_LE(plan.replicas, 10) << plan.reason;
  EXPECT_TRUE(absl::StrContains(plan.reason, "concurrency")) << plan.reason;
  // The event names its own counts; the status keeps the scaler's.
  EXPECT_FALSE(absl::StrContains(plan.reason, "→")) << plan.reason;
  EXPECT_TRUE(absl::StrContains(plan.status.last_reason(),
                                absl::StrCat(plan.reason, ": ")))
      << plan.status.last_reason();
  EXPECT_TRUE(absl::StrContains(plan.status.last_reason(),
                                absl::StrCat(" → ", plan.replicas)))
      << plan.status.last_reason();
  EXPECT_EQ(plan.status.value(), 70);
  EXPECT_TRUE(plan.status.has_last_scale_time());
  SetInstances(app, plan.replicas);

  // Idle: back to zero once the panic window and the grace period passed,
  // the instances following the plan (as the reconciler does): at most
  // maxScaleDownRate (2) per tick, so 10 -> 5 -> 2 -> 1, never straight to 0.
  metrics_.set_concurrency(0);
  std::vector<int> counts;
  for (int i = 0; i < 90; ++i) {
    Run(absl::Seconds(1));
    plan = Desired(app);
    if (counts.empty() || counts.back() != plan.replicas)
      counts.push_back(plan.replicas);
    SetInstances(app, plan.replicas);
  }
  EXPECT_EQ(plan.replicas, 0) << plan.reason;
  ASSERT_GE(counts.size(), 2u);
  for (size_t i = 1; i < counts.size(); ++i) {
    EXPECT_GE(counts[i], counts[i - 1] / 2) << "step " << i;
  }
}

TEST_F(MultiScalerTest, SpecChangeRecreatesTheScaler) {
  App app = ScaledApp("bounds", 2, 0, 10);
  EXPECT_EQ(Desired(app).replicas, 2);
  SetInstances(app, 2);
  app.mutable_spec()->mutable_scaling()->set_min_replicas(4);
  auto plan = Desired(app);
  EXPECT_EQ(plan.replicas, 4);
  EXPECT_EQ(plan.status.min_replicas(), 4);
  EXPECT_EQ(planner_.size(), 1u);
  // A fixed count takes the app away from the scaler.
  app.mutable_spec()->set_replicas(1);
  EXPECT_EQ(Desired(app).replicas, 1);
  EXPECT_EQ(planner_.size(), 0u);
}

TEST_F(MultiScalerTest, StateIsSavedRestoredAndForgotten) {
  App app = ScaledApp("state", 1, 0, 10);
  Desired(app);
  planner_.SaveAll();
  auto kv = store_.Get(keys::ScalerStateKey("default", "state"));
  ASSERT_TRUE(kv.ok()) << kv.status();
  EXPECT_TRUE(absl::StartsWith(kv->value, "tidal-scaler-v1")) << kv->value;

  planner_.Forget("default", "state");
  EXPECT_EQ(planner_.size(), 0u);
  EXPECT_TRUE(absl::IsNotFound(
      store_.Get(keys::ScalerStateKey("default", "state")).status()));
}

// Without a store, the periodic save in RunDue (and Forget, SaveAll) must
// not touch one: the tick path used to call store_->Txn unconditionally.
TEST_F(MultiScalerTest, NoStoreTicksPastTheSaveIntervalAndForgets) {
  MultiScaler::Inputs in = Inputs();
  in.store = nullptr;
  in.queued = [](const std::string&, const std::string&) { return 0; };
  in.on_change = nullptr;
  MultiScaler planner(
      in, MultiScaler::Options{absl::Seconds(2), absl::Milliseconds(20)});
  App app = ScaledApp("nostore", 1, 5, 10);
  EXPECT_EQ(planner.Desired(app, {}).replicas, 1);
  metrics_.set_concurrency(30);
  for (int i = 0; i < 10; ++i) {  // five save intervals
    clock_.Advance(absl::Seconds(1));
    planner.RunDue();
  }
  EXPECT_GE(planner.Desired(app, {}).replicas, 2);
  planner.SaveAll();
  planner.Forget("default", "nostore");
  EXPECT_EQ(planner.size(), 0u);
}

// Instances whose ready time is 5 s after their start time.
class TimedRuntime : public testing::FakeRuntime {
 public:
  std::vector<tidal::v1::Instance> List(const std::string& ns,
                                        const std::string& app) override {
    auto out = FakeRuntime::List(ns, app);
    for (auto& inst : out) {
      *inst.mutable_start_time() = ToProtoTime(absl::FromUnixSeconds(100));
      if (inst.ready())
        *inst.mutable_ready_time() = ToProtoTime(absl::FromUnixSeconds(105));
    }
    return out;
  }
};

TEST_F(MultiScalerTest, ObservesStartDurationsOfNewlyReadyInstances) {
  TimedRuntime runtime;
  MultiScaler::Inputs in = Inputs();
  in.runtime = &runtime;
  in.queued = nullptr;
  in.on_change = nullptr;
  MultiScaler planner(in);
  App app = ScaledApp("starts", 1, 0, 10);
  planner.Desired(app, {});
  InstanceRequest req;
  req.namespace_ = "default";
  req.app = "starts";
  ASSERT_TRUE(runtime.Start(req).ok());
  runtime.SetAllReady();
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(absl::Seconds(1));
    planner.RunDue();
  }
  planner.SaveAll();
  auto kv = store_.Get(keys::ScalerStateKey("default", "starts"));
  ASSERT_TRUE(kv.ok());
  // Observed once (not every tick): 0.75 x 1 s (default) + 0.25 x 5 s.
  EXPECT_TRUE(absl::StrContains(kv->value, "start_ms=2000\n")) << kv->value;
}

TEST_F(MultiScalerTest, TickThreadDecidesWithoutHelp) {
  std::atomic<int> held{0};
  absl::Notification changed;
  MultiScaler::Inputs in = Inputs();
  in.queued = [&held](const std::string&, const std::string&) {
    return held.load();
  };
  in.clock = RealClock::Get();
  in.on_change = [&](const std::string& key) {
    if (key == "default/tick" && !changed.HasBeenNotified()) changed.Notify();
  };
  MultiScaler planner(
      in, MultiScaler::Options{absl::Minutes(5), absl::Milliseconds(20)});
  App app = ScaledApp("tick", 0, 5, 10);
  app.mutable_spec()->mutable_scaling()->set_tick_ms(100);
  EXPECT_EQ(planner.Desired(app, {}).replicas, 0);
  held = 3;
  planner.Start();
  // Requests are held and no one calls Wake: the next tick scales up.
  EXPECT_TRUE(changed.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(planner.Desired(app, {}).replicas, 1);
  planner.Stop();
}

// The gateway's on-demand hook reaches the scaler through a DemandSignal
// made before both: heard only while the scaler is started, and again after
// a Stop and a new Start (the controller side restarted).
TEST_F(MultiScalerTest, WakesOnDemandOnlyWhileStarted) {
  DemandSignal demand;
  MultiScaler::Inputs in = Inputs();
  in.demand = &demand;
  MultiScaler planner(in);
  // The longest tick, and the fake clock stands still: only wake-ups decide
  // in this test.
  App app = ScaledApp("wake", 0, 5, 10);
  app.mutable_spec()->mutable_scaling()->set_tick_ms(60 * 1000);
  EXPECT_EQ(planner.Desired(app, {}).replicas, 0);
  queued_ = 3;

  demand.Notify("default", "wake");  // not started: nobody listens
  EXPECT_EQ(Changes("default/wake"), 0);
  EXPECT_EQ(planner.Desired(app, {}).replicas, 0);

  planner.Start();
  demand.Notify("default", "wake");  // decides at once, on this thread
  EXPECT_GE(Changes("default/wake"), 1);
  EXPECT_EQ(planner.Desired(app, {}).replicas, 1);
  planner.Stop();

  // Stopped: the state was saved; a notification changes nothing.
  EXPECT_TRUE(store_.Get(keys::ScalerStateKey("default", "wake")).ok());
  const int changes = Changes("default/wake");
  demand.Notify("default", "other");
  demand.Notify("default", "wake");
  EXPECT_EQ(Changes("default/wake"), changes);

  // Started again: still the same decision, and listening again.
  planner.Start();
  EXPECT_EQ(planner.Desired(app, {}).replicas, 1);
  planner.Stop();
}

TEST(DemandSignalTest, CallsTheListenerUntilUnlisten) {
  DemandSignal demand;
  std::vector<std::string> heard;
  demand.Notify("default", "a");  // no listener: dropped
  demand.Listen([&](const std::string& ns, const std::string& app) {
    heard.push_back(ns + "/" + app);
  });
  demand.Notify("default", "b");
  demand.Unlisten();
  demand.Notify("default", "c");
  EXPECT_EQ(heard, std::vector<std::string>{"default/b"});
}

// An app scaled on cpu or memory utilization (KPA's rules, so the expected
// counts are Knative's).
App UtilizationApp(const std::string& name, const std::string& metric, int min,
                   int max, double target) {
  App app = ScaledApp(name, min, max, 0);
  auto* s = app.mutable_spec()->mutable_scaling();
  s->set_metric(metric);
  s->clear_target();
  s->set_target(target);
  s->set_algorithm("kpa");
  return app;
}

TEST_F(MultiScalerTest, CpuOverTargetScalesUp) {
  App app = UtilizationApp("cpu", "cpu", 1, 10, 50);
  app.mutable_spec()->mutable_template_()->mutable_resources()->set_cpu_millis(
      500);
  EXPECT_EQ(Desired(app).replicas, 1);
  SetInstances(app, 2);
  // Each instance uses half a core: 100% of its 500m.
  RunWithUsage(app, absl::Seconds(6), 0.5, 10 << 20);
  auto plan = Desired(app);
  // 2 instances x 100% against 50% per instance: 4.
  EXPECT_EQ(plan.replicas, 4) << plan.reason;
  EXPECT_EQ(plan.status.metric(), "cpu");
  EXPECT_NEAR(plan.status.value(), 100, 0.5) << plan.reason;
  EXPECT_EQ(plan.status.target(), 50);
  EXPECT_TRUE(absl::StrContains(plan.reason, "cpu 100 over target 50"))
      << plan.reason;
  EXPECT_GT(runtime_.usage_calls(), 0);
}

TEST_F(MultiScalerTest, LowCpuScalesDown) {
  App app = UtilizationApp("idlecpu", "cpu", 1, 10, 50);
  app.mutable_spec()->mutable_template_()->mutable_resources()->set_cpu_millis(
      1000);
  SetInstances(app, 4);
  EXPECT_EQ(Desired(app).replicas, 4);  // no data yet: keeps what runs
  // 5% of a core each: 4 x 5% = 20%, one instance is enough.
  RunWithUsage(app, absl::Seconds(70), 0.05, 10 << 20);
  auto plan = Desired(app);
  EXPECT_LT(plan.replicas, 4) << plan.reason;
  EXPECT_GE(plan.replicas, 1) << plan.reason;
  EXPECT_NEAR(plan.status.value(), 5, 0.5) << plan.reason;
  EXPECT_TRUE(absl::StrContains(plan.reason, "under target 50")) << plan.reason;
  SetInstances(app, plan.replicas);
  RunWithUsage(app, absl::Seconds(10), 0.05, 10 << 20);
  EXPECT_EQ(Desired(app).replicas, 1) << Desired(app).reason;
}

TEST_F(MultiScalerTest, CpuWithoutResourcesIsMeasuredAgainstOneCore) {
  App app = UtilizationApp("onecore", "cpu", 1, 10, 50);
  SetInstances(app, 1);
  Desired(app);
  // A whole core: 100%.
  RunWithUsage(app, absl::Seconds(6), 1.0, 10 << 20);
  auto plan = Desired(app);
  EXPECT_NEAR(plan.status.value(), 100, 0.5) << plan.reason;
  EXPECT_EQ(plan.replicas, 2) << plan.reason;
}

TEST_F(MultiScalerTest, MemoryOverTargetScalesUp) {
  App app = UtilizationApp("mem", "memory", 1, 10, 60);
  app.mutable_spec()
      ->mutable_template_()
      ->mutable_resources()
      ->set_memory_bytes(100 << 20);
  SetInstances(app, 2);
  Desired(app);
  // 90 MiB of 100 MiB each: 2 x 90% against 60%: 3.
  RunWithUsage(app, absl::Seconds(6), 0.01, 90 << 20);
  auto plan = Desired(app);
  EXPECT_EQ(plan.status.metric(), "memory");
  EXPECT_NEAR(plan.status.value(), 90, 0.5) << plan.reason;
  EXPECT_EQ(plan.replicas, 3) << plan.reason;
}

TEST_F(MultiScalerTest, ResourcesChangeTakesEffectWithoutRecreating) {
  App app = UtilizationApp("memres", "memory", 1, 10, 60);
  SetInstances(app, 1);
  Desired(app);
  // 256 MiB against the 512 MiB default: 50%, under the target.
  RunWithUsage(app, absl::Seconds(6), 0.01, 256 << 20);
  auto plan = Desired(app);
  EXPECT_NEAR(plan.status.value(), 50, 0.5) << plan.reason;
  EXPECT_EQ(plan.replicas, 1);
  app.mutable_spec()
      ->mutable_template_()
      ->mutable_resources()
      ->set_memory_bytes(256 << 20);
  Desired(app);
  RunWithUsage(app, absl::Seconds(70), 0.01, 256 << 20);
  plan = Desired(app);
  EXPECT_NEAR(plan.status.value(), 100, 0.5) << plan.reason;
  EXPECT_EQ(plan.replicas, 2) << plan.reason;
}

// algorithm hpa: a spec change keeps the recommendations, as the HPA
// controller's do across an HPA's update (keyed by the HPA, not its spec).
// Rebuilt, the scaler would take the count at the change as a new first
// recommendation and hold the scale-down 300 s past the change.
TEST_F(MultiScalerTest, AnHpaSpecChangeKeepsItsRecommendations) {
  App app = UtilizationApp("hpacpu", "cpu", 1, 10, 50);
  app.mutable_spec()->mutable_scaling()->set_algorithm("hpa");
  app.mutable_spec()->mutable_template_()->mutable_resources()->set_cpu_millis(
      1000);
  SetInstances(app, 10);
  Desired(app);
  // On target (50% each) for a minute, then 5% each: 1 is enough, held at
  // 10 while the window has the recommendations of 10.
  RunWithUsage(app, absl::Seconds(60), 0.5, 10 << 20);
  EXPECT_EQ(Desired(app).replicas, 10) << Desired(app).reason;
  RunWithUsage(app, absl::Seconds(200), 0.05, 10 << 20);
  EXPECT_EQ(Desired(app).replicas, 10) << Desired(app).reason;
  app.mutable_spec()->mutable_scaling()->set_max_replicas(20);
  EXPECT_EQ(Desired(app).replicas, 10);
  // 300 s after the last recommendation of 10 (not after the change).
  RunWithUsage(app, absl::Seconds(160), 0.05, 10 << 20);
  auto plan = Desired(app);
  EXPECT_LT(plan.replicas, 10) << plan.reason;
  EXPECT_EQ(plan.status.max_replicas(), 20);
}

// algorithm hpa: a ready instance with no usage figure of its own is a
// missing pod to the replica calculator: assumed at 0% on a scale-up and at
// 100% on a scale-down, not at the others' average.
App HpaCpuApp(const std::string& name) {
  App app = UtilizationApp(name, "cpu", 1, 10, 50);
  app.mutable_spec()->mutable_scaling()->set_algorithm("hpa");
  app.mutable_spec()->mutable_template_()->mutable_resources()->set_cpu_millis(
      1000);
  return app;
}

TEST_F(MultiScalerTest, AnHpaInstanceWithoutUsageIsMissingOnAScaleUp) {
  App app = HpaCpuApp("hpamissup");
  SetInstances(app, 3);
  Desired(app);
  // Two instances at 90% of a core; the third reports no usage. Averaged
  // over all three the ratio is 1.8 (6 instances); the replica calculator
  // counts the third at 0%: 60% against 50%, 4. (A 15 s sync period: the
  // first sample gives no rate, the second the first decision.)
  RunWithUsageOfFirst(app, 2, absl::Seconds(45), 0.9);
  auto plan = Desired(app);
  EXPECT_EQ(plan.replicas, 4) << plan.reason;
}

TEST_F(MultiScalerTest, AnHpaInstanceWithoutUsageIsMissingOnAScaleDown) {
  App app = HpaCpuApp("hpamissdown");
  SetInstances(app, 3);
  Desired(app);
  // Two instances at 10%, the third without a figure, past the 300 s
  // stabilization window from the first decision (the initial
  // recommendation): counted at 100% the average is 40% against 50%, ratio
  // 0.8, 3 instances (at the others' 10%, 1).
  RunWithUsageOfFirst(app, 2, absl::Seconds(360), 0.1);
  auto plan = Desired(app);
  EXPECT_EQ(plan.replicas, 3) << plan.reason;
  // Once it reports too, 10% each: 1, when the recommendations of 3 have
  // left the window (300 s after its second sample, the first with a rate).
  RunWithUsage(app, absl::Seconds(345), 0.1, 10 << 20);
  plan = Desired(app);
  EXPECT_EQ(plan.replicas, 1) << plan.reason;
}

TEST_F(MultiScalerTest, RequestMetricsNeverReadUsage) {
  App app = ScaledApp("conc", 1, 10, 10);
  SetInstances(app, 1);
  Desired(app);
  RunWithUsage(app, absl::Seconds(6), 0.5, 10 << 20);
  EXPECT_EQ(runtime_.usage_calls(), 0);
}

// Ticks fall 100 ms after whole seconds (the gateway closes a second at its
// boundary), whenever the app was created, and a raised count is reported
// at that tick: a step in load in second S is acted on at S + 1.1 s.
TEST_F(MultiScalerTest, TicksAlignToSecondsAndReportAScaleUpAtOnce) {
  clock_.Set(absl::FromUnixSeconds(1700000000) + absl::Milliseconds(500));
  App app = ScaledApp("aligned", 1, 30, 5);  // tidal: 1 s tick, 3.5 each
  SetInstances(app, 1);
  EXPECT_EQ(Desired(app).replicas, 1);
  metrics_.set_concurrency(50);  // second 1700000000 on
  clock_.Set(absl::FromUnixSeconds(1700000001) + absl::Milliseconds(50));
  planner_.RunDue();  // not due yet: the tick is at .100
  EXPECT_EQ(Changes("default/aligned"), 0);
  EXPECT_EQ(Desired(app).replicas, 1);
  clock_.Set(absl::FromUnixSeconds(1700000001) + absl::Milliseconds(100));
  planner_.RunDue();
  EXPECT_EQ(Changes("default/aligned"), 1);
  auto plan = Desired(app);
  // Sized for a waiting time (the default target, the start time plus a
  // tick, needs no Erlang headroom), the look-ahead covering the load's
  // spread: 50 + 1.2 x sqrt(50) = 58.5 slots at 5 per instance: 12.
  EXPECT_EQ(plan.replicas, 12) << plan.reason;
  EXPECT_TRUE(plan.status.panic());
  // The reason says what set the count: the look-ahead (the last second's
  // 50, one start time and a tick ahead).
  EXPECT_TRUE(absl::StrContains(plan.reason, "(look-ahead: 50 in 2s)"))
      << plan.reason;
}

}  // namespace
}  // namespace tidal
