// The rollout state machine driven through the AppReconciler with fakes: a
// MemoryStore, a FakeRuntime, a FakeClock, scripted metrics and webhooks.

#include "deployer/deployer.h"

#include <gtest/gtest.h>

#include <map>

#include "absl/strings/match.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "controller/app_reconciler.h"
#include "deployer/control.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_metrics.h"
#include "fakes/fake_runtime.h"
#include "fakes/forwarding_runtime.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

namespace tidal::deployer {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;
using tidal::v1::Webhook;

class FakeWebhooks : public WebhookSender {
 public:
  absl::Status Call(const tidal::v1::Webhook& hook,
                    const std::string& payload) override {
    absl::MutexLock l(&mu_);
    calls.push_back(hook.type());
    payloads.push_back(payload);
    auto it = answers.find(hook.type());
    return it == answers.end() ? absl::OkStatus() : it->second;
  }
  void Notify(const tidal::v1::Webhook& hook,
              const std::string& payload) override {
    absl::MutexLock l(&mu_);
    notified.push_back(hook.type());
    payloads.push_back(payload);
  }
  absl::Mutex mu_;
  std::vector<std::string> calls, notified, payloads;
  std::map<std::string, absl::Status> answers;
};

// Records the weights the reconciler publishes.
class FakeRoutes : public RouteSink {
 public:
  void UpdateRoute(const App&, const std::vector<Instance>&) override {}
  void RemoveRoute(const std::string&, const std::string&) override {}
  void Drain(const Instance&, absl::Duration,
             std::function<void()> stop) override {
    stop();
  }
  bool IsDraining(const std::string&) override { return false; }
  void SetWeights(const std::string&, const std::string&,
                  std::vector<std::pair<int64_t, int>> w) override {
    weights = w;
  }
  std::vector<std::pair<int64_t, int>> weights;
};

// The FakeRuntime, with Instance.reason/message overridden per instance (a
// runtime's never-ready marks, runtime.h).
class MarkingRuntime : public testing::ForwardingRuntime {
 public:
  explicit MarkingRuntime(testing::FakeRuntime* base)
      : ForwardingRuntime(base) {}
  void Mark(const std::string& id, const std::string& reason,
            const std::string& message) {
    absl::MutexLock l(&mu_);
    marks_[id] = {reason, message};
  }
  std::vector<Instance> List(const std::string& ns = "",
                             const std::string& app = "") override {
    std::vector<Instance> out = ForwardingRuntime::List(ns, app);
    absl::MutexLock l(&mu_);
    for (auto& i : out) {
      auto it = marks_.find(i.id());
      if (it == marks_.end() || i.ready()) continue;
      i.set_reason(it->second.first);
      i.set_message(it->second.second);
    }
    return out;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::pair<std::string, std::string>> marks_
      ABSL_GUARDED_BY(mu_);
};

class DeployerTest : public ::testing::Test {
 protected:
  DeployerTest() : events_(&store_, &clock_) { Restart(); }

  App MakeApp(int replicas, const std::string& version) {
    App app;
    app.set_api_version("tidal.dev/v1");
    app.set_kind("App");
    app.mutable_metadata()->set_name("web");
    app.mutable_metadata()->set_namespace_("default");
    app.mutable_spec()->set_replicas(replicas);
    auto* t = app.mutable_spec()->mutable_template_();
    t->add_command("tidal-sample-app");
    t->add_args("--version");
    t->add_args(version);
    *app.mutable_spec()->mutable_rollout() = rollout_;
    for (const auto& h : hooks_spec_) *app.mutable_spec()->add_webhooks() = h;
    return app;
  }
  // Writes the app as `apply` would (generation + 1).
  void Apply(int replicas, const std::string& version) {
    App app = MakeApp(replicas, version);
    auto kv = store_.Get(keys::App("default", "web"));
    if (kv.ok()) {
      App old;
      ASSERT_TRUE(old.ParseFromString(kv->value));
      app.mutable_metadata()->set_generation(old.metadata().generation() + 1);
      *app.mutable_status() = old.status();
      ASSERT_TRUE(store_
                      .Update(keys::App("default", "web"),
                              app.SerializeAsString(), kv->resource_version)
                      .ok());
    } else {
      app.mutable_metadata()->set_generation(1);
      ASSERT_TRUE(
          store_.Create(keys::App("default", "web"), app.SerializeAsString())
              .ok());
    }
  }
  void Reconcile() {
    auto r = reconciler_->Reconcile("default/web");
    ASSERT_TRUE(r.ok()) << r.status();
  }
  App Stored() {
    App app;
    auto kv = store_.Get(keys::App("default", "web"));
    EXPECT_TRUE(kv.ok());
    if (kv.ok()) EXPECT_TRUE(app.ParseFromString(kv->value));
    return app;
  }
  tidal::v1::RolloutStatus Rollout() { return Stored().status().rollout(); }
  std::vector<Instance> Live() {
    std::vector<Instance> out;
    for (auto& i : runtime_.List("default", "web"))
      if (i.phase() != "Terminating") out.push_back(i);
    return out;
  }
  int CountRevision(int64_t revision, bool ready_only = false) {
    int n = 0;
    for (const auto& i : Live())
      if (i.revision() == revision && (!ready_only || i.ready())) ++n;
    return n;
  }
  int ReadyLive() {
    int n = 0;
    for (const auto& i : Live()) n += i.ready() ? 1 : 0;
    return n;
  }
  // Deploys v1 with `replicas` ready instances.
  void Steady(int replicas) {
    Apply(replicas, "v1");
    Reconcile();
    runtime_.SetAllReady();
    Reconcile();
    ASSERT_EQ(CountRevision(1, true), replicas);
    ASSERT_EQ(Rollout().phase(), "Succeeded");
  }
  // Simulates a restart of tidald: new deployer and reconciler, same store
  // and runtime.
  // `outbox`: the deployer's notification outbox (none by default).
  void Restart(NotificationOutbox* outbox = nullptr) {
    deployer_ = std::make_unique<Deployer>(&store_, &clock_, &metrics_, &hooks_,
                                           outbox);
    AppReconciler::Options opts;
    opts.deployer = deployer_.get();
    opts.routes = &routes_;
    reconciler_ = std::make_unique<AppReconciler>(&store_, &marking_, &events_,
                                                  &clock_, opts);
  }
  // A confirm-promotion webhook (its answers: hooks_.answers).
  static tidal::v1::Webhook ConfirmPromotionHook() {
    tidal::v1::Webhook confirm;
    confirm.set_name("gate");
    confirm.set_type("confirm-promotion");
    confirm.set_url("http://127.0.0.1:1/");
    return confirm;
  }
  // A `tidalctl rollout ACTION` of the app.
  absl::Status Act(const std::string& action) {
    DeployerControl control(&store_, &clock_, nullptr);
    v1::RolloutRequest req;
    req.set_name("web");
    req.set_action(action);
    return control.Rollout(req).status();
  }
  // `rounds` reconciles, every instance made ready after each.
  // A canary of two manual steps (10%, 50%) on 10 instances, promoted to
  // its second step, then a third template applied with `supersede` = mode.
  void HotfixAtTheSecondCanaryStep(const std::string& mode) {
    rollout_.set_strategy("canary");
    rollout_.set_supersede(mode);
    for (int weight : {10, 50}) {
      auto* step = rollout_.add_steps();
      step->set_weight(weight);
      step->set_pause_manual(true);
    }
    Steady(10);
    Apply(10, "v2");
    Settle(6);
    ASSERT_TRUE(Act("promote").ok());
    Settle(6);
    ASSERT_EQ(Rollout().step(), 2) << Rollout().message();  // 1-based
    Apply(10, "v3");
    Settle(8);
  }
  void Settle(int rounds) {
    for (int i = 0; i < rounds; ++i) {
      Reconcile();
      runtime_.SetAllReady();
    }
  }
  bool HasEvent(const std::string& reason) {
    auto list = store_.List(keys::EventPrefix("default", "web"));
    for (const auto& kv : list->items) {
      tidal::v1::Event ev;
      ev.ParseFromString(kv.value);
      if (ev.reason() == reason) return true;
    }
    return false;
  }

  testing::MemoryStore store_;
  testing::FakeRuntime runtime_;
  MarkingRuntime marking_{&runtime_};
  testing::FakeClock clock_;
  EventRecorder events_;
  testing::FakeMetrics metrics_;
  FakeWebhooks hooks_;
  FakeRoutes routes_;
  tidal::v1::RolloutSpec rollout_;
  std::vector<tidal::v1::Webhook> hooks_spec_;
  std::unique_ptr<Deployer> deployer_;
  std::unique_ptr<AppReconciler> reconciler_;
};

TEST_F(DeployerTest, RevisionsOnTemplateChangesOnly) {
  Steady(2);
  Apply(4, "v1");  // scaling only
  Reconcile();
  auto list = deployer_->history()->List("default", "web");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
  App app = MakeApp(4, "v2");
  Apply(4, "v2");
  Reconcile();
  list = deployer_->history()->List("default", "web");
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].number(), 2);
  EXPECT_EQ((*list)[1].template_hash(),
            spec::TemplateHash(app.spec().template_()));
  EXPECT_TRUE(HasEvent("RevisionCreated"));
}

TEST_F(DeployerTest, BatchRolloutKeepsCapacityAndCompletes) {
  rollout_.set_batches(5);
  Steady(10);
  Apply(10, "v2");
  Reconcile();
  std::vector<int32_t> targets = {Rollout().update_target()};
  for (int i = 0; i < 40 && Rollout().phase() != "Succeeded"; ++i) {
    Reconcile();
    // maxUnavailable 25% of 10 = 2: never fewer than 8 ready; maxSurge 3.
    EXPECT_GE(ReadyLive(), 8);
    EXPECT_LE(static_cast<int>(Live().size()), 13);
    auto r = Rollout();
    if (r.phase() == "Progressing" &&
        (targets.empty() || targets.back() != r.update_target()))
      targets.push_back(r.update_target());
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded");
  EXPECT_EQ(targets, (std::vector<int32_t>{2, 4, 6, 8, 10}));
  EXPECT_EQ(CountRevision(2, true), 10);
  EXPECT_EQ(CountRevision(1), 0);
  EXPECT_EQ(Rollout().stable_revision(), 2);
  EXPECT_TRUE(HasEvent("RolloutSucceeded"));
}

TEST_F(DeployerTest, BatchIntervalHoldsBetweenBatches) {
  rollout_.set_batches(2);
  rollout_.set_batch_interval_ms(30000);
  Steady(4);
  Apply(4, "v2");
  for (int i = 0; i < 5; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().step(), 1);
  EXPECT_EQ(CountRevision(2), 2);
  clock_.Advance(absl::Seconds(31));
  for (int i = 0; i < 5; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded");
  EXPECT_EQ(CountRevision(2), 4);
}

TEST_F(DeployerTest, CanaryAnalysisFailureRollsBackAndIsNotRetried) {
  rollout_.set_strategy("canary");
  rollout_.add_steps()->set_weight(20);
  rollout_.mutable_analysis()->set_interval_ms(10000);
  rollout_.mutable_analysis()->set_min_requests(20);
  rollout_.mutable_analysis()->set_max_error_rate(0.1);
  tidal::v1::Webhook rb;
  rb.set_name("chat");
  rb.set_type("rollback");
  rb.set_url("http://127.0.0.1:1/");
  hooks_spec_.push_back(rb);
  Steady(10);
  Apply(10, "v2");
  Reconcile();
  runtime_.SetAllReady();
  Reconcile();
  EXPECT_EQ(CountRevision(2), 2);
  EXPECT_EQ(routes_.weights,
            (std::vector<std::pair<int64_t, int>>{{2, 20}, {1, 80}}));
  // Too little traffic: inconclusive, no verdict.
  metrics_.Set(2, 5, 5, 10);
  clock_.Advance(absl::Seconds(10));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");
  EXPECT_NE(Rollout().analysis().find("inconclusive"), std::string::npos);
  // Enough traffic, 50% errors: rolled back at once (no interval to wait).
  metrics_.Set(2, 40, 20, 10);
  clock_.Advance(absl::Milliseconds(100));
  Reconcile();
  auto r = Rollout();
  EXPECT_EQ(r.phase(), "RolledBack");
  EXPECT_EQ(r.reason(), "AnalysisFailed");
  EXPECT_NE(r.message().find("5xx rate 50.0% > 10.0%"), std::string::npos)
      << r.message();
  EXPECT_EQ(r.failed_revision(), 2);
  // Counted by reason (tidal_app_rollbacks_total, issue 16).
  EXPECT_EQ(r.rollbacks().size(), 1u);
  EXPECT_EQ(r.rollbacks().at("AnalysisFailed"), 1);
  EXPECT_EQ(CountRevision(2), 0);
  // The deciding plan itself sends everything to the stable revision.
  EXPECT_EQ(routes_.weights, (std::vector<std::pair<int64_t, int>>{{1, 100}}));
  EXPECT_EQ(hooks_.notified, (std::vector<std::string>{"rollback"}));
  EXPECT_TRUE(HasEvent("RolledBack"));
  // The stable revision is back to full strength, and v2 is not retried.
  for (int i = 0; i < 3; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(CountRevision(1, true), 10);
  EXPECT_EQ(CountRevision(2), 0);
  EXPECT_EQ(routes_.weights.size(), 0u);  // none left: by instances again
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  // `rollout retry` starts it again.
  DeployerControl control(&store_, &clock_, nullptr);
  v1::RolloutRequest req;
  req.set_name("web");
  req.set_action("retry");
  ASSERT_TRUE(control.Rollout(req).ok());
  metrics_.Set(2, 0, 0, 0);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");
  EXPECT_EQ(CountRevision(2), 2);
  // A new release keeps the count; its own rollback adds to it.
  EXPECT_EQ(Rollout().rollbacks().at("AnalysisFailed"), 1);
  runtime_.SetAllReady();
  Reconcile();
  metrics_.Set(2, 40, 20, 10);
  clock_.Advance(absl::Milliseconds(100));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().rollbacks().at("AnalysisFailed"), 2);
}

TEST_F(DeployerTest, AnalysisPassesThenCanaryCompletes) {
  rollout_.set_strategy("canary");
  rollout_.add_steps()->set_weight(20);
  rollout_.mutable_analysis()->set_interval_ms(10000);
  rollout_.mutable_analysis()->set_min_requests(20);
  rollout_.mutable_analysis()->set_max_error_rate(0.1);
  rollout_.mutable_analysis()->set_max_p99_latency_ms(200);
  rollout_.mutable_analysis()->set_consecutive_successes(2);
  Steady(5);
  Apply(5, "v2");
  Reconcile();
  runtime_.SetAllReady();
  metrics_.Set(2, 100, 1, 50);
  Reconcile();
  EXPECT_EQ(Rollout().analysis(), "");  // a success needs a whole interval
  clock_.Advance(absl::Seconds(10));
  Reconcile();
  EXPECT_EQ(Rollout().step(), 1);  // one success of two
  clock_.Advance(absl::Seconds(10));
  Reconcile();
  EXPECT_EQ(Rollout().step(), 2);
  for (int i = 0; i < 5; ++i) {
    runtime_.SetAllReady();
    clock_.Advance(absl::Seconds(10));
    Reconcile();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded");
  EXPECT_EQ(CountRevision(2, true), 5);
}

TEST_F(DeployerTest, LatencyOverLimitFails) {
  rollout_.mutable_analysis()->set_min_requests(10);
  rollout_.mutable_analysis()->set_max_p99_latency_ms(100);
  rollout_.mutable_analysis()->set_failure_limit(1);
  Steady(2);
  Apply(2, "v2");
  Reconcile();
  runtime_.SetAllReady();
  metrics_.Set(2, 50, 0, 400);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");  // one failure tolerated
  clock_.Advance(absl::Seconds(30));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_NE(Rollout().message().find("p99 400ms > 100ms"), std::string::npos);
}

TEST_F(DeployerTest, CrashLoopFailsFastWithoutTheDeadline) {
  Steady(3);
  Apply(3, "v2");
  Reconcile();
  auto live = Live();
  for (const auto& i : live)
    if (i.revision() == 2)
      runtime_.SetPhase(i.id(), "CrashLoopBackOff", "exit code 1");
  Reconcile();  // no time has passed
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "CrashLoop");
  EXPECT_EQ(CountRevision(2), 0);
  EXPECT_EQ(CountRevision(1, true), 3);
}

// `rollout undo` after a restart: the revision before the stable one is the
// build that rolled back; undo goes past it to the last good template.
// `rollout history` marks every revision whose template rolled back (and
// has not rolled out since), not only the latest.
TEST_F(DeployerTest, RevisionsSayWhichRolledBack) {
  Steady(2);
  for (const char* version : {"v2", "v3"}) {
    Apply(2, version);
    Reconcile();
    for (const auto& i : Live())
      if (i.revision() != 1) runtime_.SetPhase(i.id(), "CrashLoopBackOff", "x");
    Reconcile();
    ASSERT_EQ(Rollout().phase(), "RolledBack");
  }
  EXPECT_EQ(Rollout().failed_revision(), 3);
  DeployerControl control(&store_, &clock_, nullptr);
  v1::ListRevisionsRequest req;
  req.set_app("web");
  auto list = control.ListRevisions(req);
  ASSERT_TRUE(list.ok()) << list.status();
  std::map<int64_t, bool> rolled_back;
  for (const auto& r : list->revisions())
    rolled_back[r.number()] = r.rolled_back();
  EXPECT_EQ(rolled_back,
            (std::map<int64_t, bool>{{1, false}, {2, true}, {3, true}}));
}

TEST_F(DeployerTest, UndoSkipsATemplateThatRolledBack) {
  auto settle = [&] {
    for (int i = 0; i < 8; ++i) {
      Reconcile();
      runtime_.SetAllReady();
    }
    Reconcile();
  };
  Steady(2);       // revision 1: v1
  Apply(2, "v2");  // revision 2: v2, rolls out
  settle();
  ASSERT_EQ(Rollout().phase(), "Succeeded");
  ASSERT_EQ(Rollout().stable_revision(), 2);
  Apply(2, "v3");  // revision 3: crashes, rolls back
  Reconcile();
  for (const auto& i : Live())
    if (i.revision() == 3)
      runtime_.SetPhase(i.id(), "CrashLoopBackOff", "exit code 1");
  Reconcile();
  ASSERT_EQ(Rollout().phase(), "RolledBack");
  Apply(2, "v2");  // the file back at v2: nothing to release
  Reconcile();
  DeployerControl control(&store_, &clock_, nullptr);
  v1::RolloutRequest req;
  req.set_name("web");
  req.set_action("restart");  // revision 4: v2 restarted
  ASSERT_TRUE(control.Rollout(req).ok());
  settle();
  ASSERT_EQ(Rollout().phase(), "Succeeded");
  ASSERT_EQ(Rollout().stable_revision(), 4);
  req.set_action("undo");
  ASSERT_TRUE(control.Rollout(req).ok());
  App app = Stored();
  EXPECT_EQ(spec::TemplateHash(app.spec().template_()),
            spec::TemplateHash(MakeApp(2, "v2").spec().template_()));
  EXPECT_EQ(app.metadata().annotations().at(kChangeCauseAnnotation),
            "undo to revision 2");
  // Named by number, a rolled-back revision is still taken.
  req.set_to_revision(3);
  ASSERT_TRUE(control.Rollout(req).ok());
  EXPECT_EQ(spec::TemplateHash(Stored().spec().template_()),
            spec::TemplateHash(MakeApp(2, "v3").spec().template_()));
}

TEST_F(DeployerTest, OneCrashAmongSeveralIsLeftToTheRuntime) {
  rollout_.set_max_surge("4");
  Steady(4);
  Apply(4, "v2");
  Reconcile();
  std::vector<std::string> news;
  for (const auto& i : Live())
    if (i.revision() == 2) news.push_back(i.id());
  ASSERT_EQ(news.size(), 4u);
  runtime_.SetPhase(news[0], "CrashLoopBackOff", "address in use");
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");
  runtime_.SetPhase(news[1], "CrashLoopBackOff", "exit code 1");
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "CrashLoop");
}

// Fail fast looks at recent behaviour (docs/rollouts.md, "Fail fast"): the
// only canary instance crashing once after hours of being ready, and its
// restart count afterwards, do not fail the release; a crash loop now does.
TEST_F(DeployerTest, OldRestartDoesNotFailALaterStepButACrashLoopDoes) {
  rollout_.set_strategy("canary");
  auto* s1 = rollout_.add_steps();
  s1->set_weight(25);
  s1->set_pause_ms(absl::ToInt64Milliseconds(absl::Hours(3)));
  auto* s2 = rollout_.add_steps();
  s2->set_weight(50);
  s2->set_pause_ms(absl::ToInt64Milliseconds(absl::Hours(3)));
  Steady(4);
  // What the process runtime does to an instance (process_runtime.cc).
  auto ready = [&](const std::string& id) {
    runtime_.Update(id, [&](Instance* i) {
      i->set_phase("Running");
      i->set_ready(true);
      *i->mutable_ready_time() = ToProtoTime(clock_.Now());
    });
  };
  auto crash = [&](const std::string& id) {
    runtime_.Update(id, [&](Instance* i) {
      i->set_phase("CrashLoopBackOff");
      i->set_ready(false);
      i->set_message("back-off 10s restarting failed instance (exit code 1)");
    });
  };
  auto restart = [&](const std::string& id) {
    runtime_.Update(id, [&](Instance* i) {
      i->set_phase("Starting");
      i->set_restarts(i->restarts() + 1);
      i->clear_ready_time();
      *i->mutable_start_time() = ToProtoTime(clock_.Now());
    });
  };
  auto new_ids = [&] {
    std::vector<std::string> ids;
    for (const auto& i : Live())
      if (i.revision() == 2) ids.push_back(i.id());
    return ids;
  };
  auto settle = [&] {
    for (int i = 0; i < 4; ++i) {
      Reconcile();
      for (const auto& inst : Live())
        if (!inst.ready()) {
          runtime_.Update(inst.id(), [&](Instance* x) {
            if (!x->has_start_time())
              *x->mutable_start_time() = ToProtoTime(clock_.Now());
          });
          ready(inst.id());
        }
    }
  };

  Apply(4, "v2");
  settle();
  ASSERT_EQ(Rollout().step(), 1);
  ASSERT_EQ(new_ids().size(), 1u);
  const std::string canary = new_ids()[0];

  // An hour in, the only canary instance crashes once after being ready all
  // along: the runtime restarts it, the release goes on.
  clock_.Advance(absl::Hours(1));
  crash(canary);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  clock_.Advance(absl::Seconds(10));
  restart(canary);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  ready(canary);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();

  // Hours later the next step starts, the canary still with its old restart.
  clock_.Advance(absl::Hours(2) + absl::Minutes(1));
  settle();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  ASSERT_EQ(Rollout().step(), 2);
  ASSERT_EQ(new_ids().size(), 2u);
  clock_.Advance(absl::Hours(1));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  // Its second crash comes three hours after its first: still no loop.
  crash(canary);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  restart(canary);
  ready(canary);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();

  // Now it crashes again 30 s after that restart: two crashes within the
  // window fail the release at once, though it is one instance of two.
  clock_.Advance(absl::Seconds(30));
  crash(canary);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "CrashLoop");
  EXPECT_NE(Rollout().message().find(canary), std::string::npos)
      << Rollout().message();
  EXPECT_NE(Rollout().message().find("after 2 restart(s)"), std::string::npos)
      << Rollout().message();
  EXPECT_EQ(CountRevision(2), 0);
}

// A crash at start-up (before it was ever ready) of the only new instance
// still fails at once.
TEST_F(DeployerTest, StartupCrashOfTheOnlyNewInstanceFailsFast) {
  Steady(1);
  Apply(1, "v2");
  Reconcile();
  std::string id;
  for (const auto& i : Live())
    if (i.revision() == 2) id = i.id();
  ASSERT_FALSE(id.empty());
  runtime_.Update(id, [&](Instance* i) {
    *i->mutable_start_time() = ToProtoTime(clock_.Now());
  });
  clock_.Advance(absl::Seconds(1));
  runtime_.SetPhase(id, "CrashLoopBackOff", "exit code 1");
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "CrashLoop");
}

// Among several new instances, the first crash after being ready is the
// runtime's to restart; a second one minutes later fails the release.
TEST_F(DeployerTest, SecondCrashWithinMinutesFailsFastAmongSeveral) {
  rollout_.set_batches(2);
  rollout_.set_max_surge("2");
  rollout_.set_batch_interval_ms(absl::ToInt64Milliseconds(absl::Hours(1)));
  Steady(4);
  Apply(4, "v2");
  for (int k = 0; k < 3; ++k) {
    Reconcile();
    runtime_.SetAllReady();
  }
  ASSERT_EQ(Rollout().update_revision(), 2);
  ASSERT_EQ(CountRevision(2, true), 2);
  std::string one;
  for (const auto& i : Live())
    if (i.revision() == 2) one = i.id();
  ASSERT_FALSE(one.empty());
  runtime_.Update(one, [&](Instance* i) {
    *i->mutable_start_time() = ToProtoTime(clock_.Now());
    *i->mutable_ready_time() = ToProtoTime(clock_.Now());
  });
  clock_.Advance(absl::Minutes(2));
  runtime_.Update(one, [&](Instance* i) {
    i->set_phase("CrashLoopBackOff");
    i->set_ready(false);
  });
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  clock_.Advance(absl::Seconds(10));
  runtime_.Update(one, [&](Instance* i) {
    i->set_phase("Starting");
    i->set_restarts(1);
    i->clear_ready_time();
    *i->mutable_start_time() = ToProtoTime(clock_.Now());
  });
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  clock_.Advance(absl::Seconds(3));
  runtime_.Update(one, [&](Instance* i) {
    i->set_phase("CrashLoopBackOff");
    i->set_ready(false);
  });
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "CrashLoop");
}

// The same on a step held for a manual promote: one crash of the only
// canary instance an hour into the hold fails neither fast nor on the
// deadline (which does not run while the step waits for `promote`).
TEST_F(DeployerTest, OneCrashDuringAManualHoldIsLeftToTheRuntime) {
  rollout_.set_strategy("canary");
  auto* s1 = rollout_.add_steps();
  s1->set_weight(25);
  s1->set_pause_manual(true);
  Steady(4);
  Apply(4, "v2");
  for (int k = 0; k < 4; ++k) {
    Reconcile();
    runtime_.SetAllReady();
  }
  ASSERT_EQ(Rollout().phase(), "Paused") << Rollout().message();
  std::string canary;
  for (const auto& i : Live())
    if (i.revision() == 2) canary = i.id();
  ASSERT_FALSE(canary.empty());
  runtime_.Update(canary, [&](Instance* i) {
    *i->mutable_start_time() = ToProtoTime(clock_.Now());
    *i->mutable_ready_time() = ToProtoTime(clock_.Now());
  });
  clock_.Advance(absl::Hours(1));
  Reconcile();
  ASSERT_EQ(Rollout().phase(), "Paused") << Rollout().message();
  runtime_.Update(canary, [&](Instance* i) {
    i->set_phase("CrashLoopBackOff");
    i->set_ready(false);
  });
  Reconcile();
  EXPECT_NE(Rollout().phase(), "RolledBack") << Rollout().message();
  clock_.Advance(absl::Seconds(10));
  runtime_.Update(canary, [&](Instance* i) {
    i->set_phase("Starting");
    i->set_restarts(1);
    i->clear_ready_time();
    *i->mutable_start_time() = ToProtoTime(clock_.Now());
  });
  Reconcile();
  EXPECT_NE(Rollout().phase(), "RolledBack") << Rollout().message();
  clock_.Advance(absl::Seconds(2));
  runtime_.SetReady(canary, true);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Paused") << Rollout().message();
}

TEST_F(DeployerTest, ResumesFromItsStepAfterARestart) {
  rollout_.set_batches(5);
  Steady(10);
  Apply(10, "v2");
  for (int i = 0; i < 40; ++i) {
    Reconcile();
    if (Rollout().step() == 3) break;
    runtime_.SetAllReady();
  }
  ASSERT_EQ(Rollout().step(), 3);
  int starts = runtime_.starts();
  Restart();
  Reconcile();
  EXPECT_EQ(Rollout().step(), 3);
  EXPECT_EQ(Rollout().phase(), "Progressing");
  EXPECT_EQ(runtime_.starts(), starts);  // nothing doubled
  for (int i = 0; i < 20 && Rollout().phase() != "Succeeded"; ++i) {
    runtime_.SetAllReady();
    Reconcile();
  }
  EXPECT_EQ(CountRevision(2, true), 10);
  EXPECT_EQ(static_cast<int>(Live().size()), 10);
}

// A new leader takes a release over in the middle: the event says so, once.
TEST_F(DeployerTest, ARolloutResumedByANewLeaderIsAnEvent) {
  rollout_.set_batches(5);
  deployer_->SetPlanner("node n1 (fencing token 5)");
  Steady(10);
  Apply(10, "v2");
  for (int i = 0; i < 40 && Rollout().step() < 2; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  ASSERT_EQ(Rollout().step(), 2);
  EXPECT_FALSE(HasEvent("RolloutResumed"));
  Restart();
  deployer_->SetPlanner("node n2 (fencing token 9)");
  Reconcile();
  EXPECT_TRUE(HasEvent("RolloutResumed"));
  auto list = store_.List(keys::EventPrefix("default", "web"));
  int resumed = 0;
  for (const auto& kv : list->items) {
    tidal::v1::Event ev;
    ASSERT_TRUE(ev.ParseFromString(kv.value));
    if (ev.reason() != "RolloutResumed") continue;
    ++resumed;
    EXPECT_EQ(ev.message(),
              "The rollout of revision 2 (Progressing, step 2/5) is resumed by "
              "the new leader, node n2 (fencing token 9); node n1 (fencing "
              "token 5) ran it until now");
  }
  Reconcile();
  runtime_.SetAllReady();
  Reconcile();
  list = store_.List(keys::EventPrefix("default", "web"));
  int again = 0;
  for (const auto& kv : list->items) {
    tidal::v1::Event ev;
    ASSERT_TRUE(ev.ParseFromString(kv.value));
    if (ev.reason() == "RolloutResumed") again += ev.count();
  }
  EXPECT_EQ(resumed, 1);
  EXPECT_EQ(again, 1);  // said once
}

// A release waiting for `promote` when tidald stops, down longer than the
// progress deadline: after the restart its adopted instances are probed
// again (not ready for a moment), and that is no lack of progress: the step
// has its whole deadline again, and goes on waiting for the promote.
TEST_F(DeployerTest, AWaitForPromoteOutlastsADowntimeLongerThanTheDeadline) {
  rollout_.set_strategy("canary");
  auto* step = rollout_.add_steps();
  step->set_weight(50);
  step->set_pause_manual(true);
  rollout_.set_progress_deadline_ms(20000);
  Steady(2);
  Apply(2, "v2");
  for (int i = 0; i < 4; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  clock_.Advance(absl::Seconds(30));
  Reconcile();
  ASSERT_EQ(Rollout().phase(), "Paused") << Rollout().message();
  // Down for a minute; back, the step's instance is not ready yet.
  clock_.Advance(absl::Minutes(1));
  Restart();
  for (const auto& i : Live())
    if (i.revision() == 2) runtime_.SetReady(i.id(), false);
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  EXPECT_FALSE(HasEvent("RolledBack"));
  runtime_.SetAllReady();
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Paused") << Rollout().message();
  // A step that then makes no progress still fails at its deadline.
  for (const auto& i : Live())
    if (i.revision() == 2) runtime_.SetReady(i.id(), false);
  Reconcile();
  clock_.Advance(absl::Seconds(21));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "ProgressDeadlineExceeded");
}

TEST_F(DeployerTest, PassedDeadlineRollsBackAfterRestart) {
  rollout_.set_progress_deadline_ms(60000);
  Steady(2);
  Apply(2, "v2");
  Reconcile();  // new instances never become ready
  clock_.Advance(absl::Minutes(5));
  Restart();
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "ProgressDeadlineExceeded");
  EXPECT_EQ(CountRevision(2), 0);
}

TEST_F(DeployerTest, NoTrafficIsInconclusiveUntilTheDeadline) {
  rollout_.set_progress_deadline_ms(60000);
  rollout_.mutable_analysis()->set_min_requests(10);
  Steady(2);
  Apply(2, "v2");
  Reconcile();
  runtime_.SetAllReady();
  Reconcile();
  clock_.Advance(absl::Seconds(59));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");
  clock_.Advance(absl::Seconds(2));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_NE(Rollout().message().find("inconclusive"), std::string::npos)
      << Rollout().message();
}

// Issue 16: a canary that passed analysis and reached its last step (100%)
// must complete when its traffic stops, not roll back at the progress
// deadline for "fewer than minRequests"; and the status does not show the
// previous step's verdict as this step's.
TEST_F(DeployerTest, PassedCanaryCompletesWhenTrafficStops) {
  rollout_.set_strategy("canary");
  rollout_.add_steps()->set_weight(50);
  rollout_.set_progress_deadline_ms(60000);
  auto* an = rollout_.mutable_analysis();
  an->set_interval_ms(10000);
  an->set_min_requests(20);
  an->set_consecutive_successes(2);
  an->set_inconclusive("fail");
  Steady(4);
  Apply(4, "v2");
  Reconcile();
  runtime_.SetAllReady();
  Reconcile();
  ASSERT_EQ(Rollout().step(), 1);  // status steps count from 1
  metrics_.Set(2, 100, 0, 10);
  for (int i = 0; i < 6 && Rollout().step() == 1; ++i) {
    clock_.Advance(absl::Seconds(10));
    Reconcile();
    runtime_.SetAllReady();
  }
  ASSERT_EQ(Rollout().step(), 2) << Rollout().analysis();
  EXPECT_EQ(Rollout().analysis().find("passed (2/2)"), std::string::npos)
      << Rollout().analysis();
  metrics_.Set(2, 0, 0, 0);  // nobody sends requests any more
  for (int i = 0; i < 20 && Rollout().phase() == "Progressing"; ++i) {
    clock_.Advance(absl::Seconds(10));
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded")
      << Rollout().reason() << ": " << Rollout().message();
  EXPECT_EQ(Rollout().stable_revision(), 2);
  EXPECT_EQ(CountRevision(2), 4);
}

// Issue 16: `rollout undo` after a rollback puts the spec back at the
// stable revision, which runs: the release of that generation is done
// (Succeeded, Progressing Complete), not still "RolledBack" (which made
// `rollout status` exit 1 after a successful undo); the rolled-back
// template stays marked, and the status names the hash of what runs.
TEST_F(DeployerTest, UndoAfterRollbackCompletes) {
  rollout_.set_strategy("canary");
  rollout_.add_steps()->set_weight(50);
  rollout_.mutable_analysis()->set_interval_ms(10000);
  rollout_.mutable_analysis()->set_min_requests(20);
  rollout_.mutable_analysis()->set_max_error_rate(0.1);
  Steady(4);
  const std::string v1_hash = Stored().status().template_hash();
  Apply(4, "v2");
  Reconcile();
  runtime_.SetAllReady();
  Reconcile();
  metrics_.Set(2, 40, 20, 10);
  clock_.Advance(absl::Milliseconds(100));
  Reconcile();
  ASSERT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().stable_hash(), v1_hash);
  EXPECT_FALSE(Rollout().failed_hash().empty());
  EXPECT_NE(Rollout().failed_hash(), v1_hash);

  DeployerControl control(&store_, &clock_, nullptr);
  v1::RolloutRequest req;
  req.set_name("web");
  req.set_action("undo");
  ASSERT_TRUE(control.Rollout(req).ok());
  for (int i = 0; i < 3; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  const App app = Stored();
  EXPECT_EQ(app.status().observed_generation(), app.metadata().generation());
  EXPECT_EQ(app.status().rollout().phase(), "Succeeded")
      << app.status().rollout().message();
  EXPECT_EQ(app.status().rollout().stable_revision(), 1);
  EXPECT_EQ(app.status().rollout().failed_revision(), 2);
  bool complete = false;
  for (const auto& c : app.status().conditions())
    complete =
        complete || (c.type() == "Progressing" && c.reason() == "Complete");
  EXPECT_TRUE(complete);
  EXPECT_TRUE(HasEvent("RolloutRestored"));
  EXPECT_EQ(CountRevision(1, true), 4);
  // The spec no longer names the template that rolled back: nothing to
  // retry, and `retry` says so rather than reporting a retry that never
  // comes.
  req.set_action("retry");
  absl::Status retried = control.Rollout(req).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(retried)) << retried;
  EXPECT_TRUE(
      absl::StrContains(retried.message(), "no failed rollout to retry"))
      << retried;
}

TEST_F(DeployerTest, InconclusivePassAtTheDeadline) {
  rollout_.set_progress_deadline_ms(60000);
  rollout_.mutable_analysis()->set_min_requests(10);
  rollout_.mutable_analysis()->set_inconclusive("pass");
  Steady(2);
  Apply(2, "v2");
  for (int i = 0; i < 4; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Progressing");
  clock_.Advance(absl::Seconds(61));
  for (int i = 0; i < 4; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded");
}

TEST_F(DeployerTest, ManualPauseWaitsForPromote) {
  rollout_.set_batches(2);
  rollout_.set_pause_manual(true);
  Steady(4);
  Apply(4, "v2");
  for (int i = 0; i < 5; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  clock_.Advance(absl::Hours(1));  // no deadline while waiting by hand
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Paused");
  EXPECT_EQ(CountRevision(2), 2);
  DeployerControl control(&store_, &clock_, nullptr);
  v1::RolloutRequest req;
  req.set_name("web");
  // `resume` undoes `pause`; here nothing was paused by hand, and the
  // refusal names the command that goes on.
  req.set_action("resume");
  absl::Status resumed = control.Rollout(req).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(resumed)) << resumed;
  EXPECT_TRUE(
      absl::StrContains(resumed.message(), "`tidalctl rollout promote web`"))
      << resumed;
  req.set_action("promote");
  ASSERT_TRUE(control.Rollout(req).ok());
  for (int i = 0; i < 5; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded");
}

TEST_F(DeployerTest, PauseAbortAndUndo) {
  rollout_.set_batches(4);
  Steady(4);
  Apply(4, "v2");
  Reconcile();
  DeployerControl control(&store_, &clock_, nullptr);
  v1::RolloutRequest req;
  req.set_name("web");
  req.set_action("pause");
  ASSERT_TRUE(control.Rollout(req).ok());
  for (int i = 0; i < 4; ++i) {
    runtime_.SetAllReady();
    Reconcile();
  }
  EXPECT_EQ(Rollout().phase(), "Paused");
  EXPECT_EQ(Rollout().step(), 1);
  req.set_action("abort");
  ASSERT_TRUE(control.Rollout(req).ok());
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "Aborted");
  EXPECT_EQ(CountRevision(2), 0);
  // undo: the spec goes back to revision 1's template; nothing to release.
  req.set_action("undo");
  ASSERT_TRUE(control.Rollout(req).ok());
  Reconcile();
  App app = Stored();
  EXPECT_EQ(spec::TemplateHash(app.spec().template_()),
            spec::TemplateHash(MakeApp(4, "v1").spec().template_()));
  EXPECT_EQ(app.metadata().annotations().at(kChangeCauseAnnotation),
            "undo to revision 1");
  // Unknown revision.
  req.set_to_revision(42);
  EXPECT_TRUE(absl::IsNotFound(control.Rollout(req).status()));
}

TEST_F(DeployerTest, NewSpecSupersedesFromTheCurrentStep) {
  rollout_.set_batches(5);
  Steady(10);
  Apply(10, "v2");
  while (Rollout().step() < 2) {
    Reconcile();
    runtime_.SetAllReady();
  }
  Apply(10, "v3");
  Reconcile();
  EXPECT_EQ(Rollout().update_revision(), 3);
  EXPECT_EQ(Rollout().step(), 2);
  for (int i = 0; i < 30 && Rollout().phase() != "Succeeded"; ++i) {
    runtime_.SetAllReady();
    Reconcile();
    EXPECT_GE(ReadyLive(), 8);
  }
  EXPECT_EQ(CountRevision(3, true), 10);
  EXPECT_EQ(static_cast<int>(Live().size()), 10);
}

// A hotfix during a canary's 50% step starts over at the first weight (as
// Argo Rollouts does): it has not been judged at 10%.
TEST_F(DeployerTest, ANewSpecDuringACanaryStartsItsStepsOver) {
  HotfixAtTheSecondCanaryStep("");
  EXPECT_EQ(Rollout().update_revision(), 3);
  EXPECT_EQ(Rollout().phase(), "Paused") << Rollout().message();
  EXPECT_EQ(Rollout().step(), 1);
  EXPECT_EQ(routes_.weights,
            (std::vector<std::pair<int64_t, int>>{{3, 10}, {1, 90}}));
  EXPECT_TRUE(HasEvent("RolloutStarted"));
}

// `supersede: continue`: the hotfix takes over at the current step.
TEST_F(DeployerTest, ANewSpecDuringACanaryCanTakeOverAtItsStep) {
  HotfixAtTheSecondCanaryStep("continue");
  EXPECT_EQ(Rollout().update_revision(), 3);
  EXPECT_EQ(Rollout().phase(), "Paused") << Rollout().message();
  EXPECT_EQ(Rollout().step(), 2);
  EXPECT_EQ(routes_.weights,
            (std::vector<std::pair<int64_t, int>>{{3, 50}, {1, 50}}));
}

// A new spec during `rollout pause` supersedes the update but stays paused:
// the operator's pause is not undone by a pipeline's apply.
TEST_F(DeployerTest, APausedReleaseStaysPausedWhenANewSpecSupersedesIt) {
  rollout_.set_batches(4);
  Steady(4);
  Apply(4, "v2");
  Reconcile();
  ASSERT_TRUE(Act("pause").ok());
  Apply(4, "v3");
  Settle(6);
  EXPECT_EQ(Rollout().update_revision(), 3);
  EXPECT_EQ(Rollout().phase(), "Paused");
  EXPECT_EQ(Rollout().step(), 1);
  ASSERT_TRUE(Act("resume").ok());
  Settle(12);
  EXPECT_EQ(Rollout().phase(), "Succeeded");
  EXPECT_EQ(CountRevision(3, true), 4);
}

// A canary weight on a one-instance app: the stable revision keeps an
// instance, so the gateway sends the canary its weight, not everything.
TEST_F(DeployerTest, ACanaryWeightKeepsAStableInstance) {
  rollout_.set_strategy("canary");
  auto* step = rollout_.add_steps();
  step->set_weight(10);
  step->set_pause_manual(true);
  Steady(1);
  Apply(1, "v2");
  Settle(6);
  EXPECT_EQ(Rollout().phase(), "Paused") << Rollout().message();
  EXPECT_EQ(CountRevision(1, true), 1);
  EXPECT_EQ(CountRevision(2, true), 1);
  EXPECT_EQ(routes_.weights,
            (std::vector<std::pair<int64_t, int>>{{2, 10}, {1, 90}}));
  ASSERT_TRUE(Act("promote").ok());
  Settle(6);
  EXPECT_EQ(Rollout().phase(), "Succeeded") << Rollout().message();
  EXPECT_EQ(CountRevision(1), 0);
  EXPECT_EQ(CountRevision(2, true), 1);
}

TEST_F(DeployerTest, BothRevisionsGetTheirShareWhenTheTotalChanges) {
  rollout_.set_batches(5);
  Steady(10);
  Apply(10, "v2");
  while (Rollout().step() < 2) {
    Reconcile();
    runtime_.SetAllReady();
  }
  Apply(20, "v2");  // the target doubles mid-release
  for (int i = 0; i < 6; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  auto r = Rollout();
  EXPECT_EQ(r.update_target() + r.stable_target(), 20);
  EXPECT_EQ(r.update_target(), 4 * r.step());
}

TEST_F(DeployerTest, WebhookGates) {
  rollout_.set_batches(2);
  tidal::v1::Webhook pre;
  pre.set_name("gate");
  pre.set_type("pre-rollout");
  pre.set_url("http://127.0.0.1:1/");
  tidal::v1::Webhook confirm = pre;
  confirm.set_type("confirm-promotion");
  tidal::v1::Webhook post = pre;
  post.set_type("post-rollout");
  hooks_spec_ = {pre, confirm, post};
  Steady(4);
  Apply(4, "v2");
  for (int i = 0; i < 6; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded");
  EXPECT_EQ(hooks_.calls,
            (std::vector<std::string>{"pre-rollout", "confirm-promotion"}));
  EXPECT_EQ(hooks_.notified, (std::vector<std::string>{"post-rollout"}));
  EXPECT_NE(hooks_.payloads[0].find("\"toRevision\":2"), std::string::npos);
  // A refused confirm-promotion fails the step and rolls back.
  hooks_.answers["confirm-promotion"] =
      absl::FailedPreconditionError("webhook gate answered 403");
  Apply(4, "v3");
  for (int i = 0; i < 6; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "ConfirmPromotionWebhookFailed");
  EXPECT_EQ(CountRevision(2, true), 4);
}

// A scale-down during a release (fewer instances: fewer batches) cuts its
// steps short: it must neither complete past the manual pauses it had not
// passed nor skip the confirm-promotion webhook.
TEST_F(DeployerTest, AScaleDownDuringAReleaseKeepsItsGates) {
  rollout_.set_batches(4);
  rollout_.set_pause_manual(true);
  rollout_.set_max_surge("1");
  rollout_.set_max_unavailable("0");
  hooks_spec_ = {ConfirmPromotionHook()};
  Steady(4);
  hooks_.answers["confirm-promotion"] =
      absl::FailedPreconditionError("webhook gate answered 500");
  Apply(4, "v2");
  Settle(6);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(Rollout().phase(), "Paused") << Rollout().message();
    ASSERT_TRUE(Act("promote").ok());
    Settle(6);
  }
  ASSERT_EQ(Rollout().step(), 3);  // of 4, waiting for its promote
  ASSERT_EQ(Rollout().phase(), "Paused");
  EXPECT_TRUE(hooks_.calls.empty());

  Apply(2, "v2");  // scaled down: 2 instances make 2 batches
  Settle(6);
  EXPECT_EQ(Rollout().phase(), "Paused") << Rollout().message();
  EXPECT_EQ(Rollout().total_steps(), 2);
  EXPECT_FALSE(HasEvent("RolloutSucceeded"));
  EXPECT_TRUE(hooks_.calls.empty());
  // The promote it was waiting for goes on, through the webhook, which
  // refuses.
  ASSERT_TRUE(Act("promote").ok());
  Settle(6);
  EXPECT_EQ(hooks_.calls, (std::vector<std::string>{"confirm-promotion"}));
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "ConfirmPromotionWebhookFailed");
}

TEST_F(DeployerTest, ConfirmPromotionGatesASingleStepReleaseBeforeItStarts) {
  // No batches, no steps: the one step is the full promotion.
  hooks_spec_ = {ConfirmPromotionHook()};
  Steady(3);
  hooks_.answers["confirm-promotion"] =
      absl::FailedPreconditionError("webhook gate answered 403");
  Apply(3, "v2");
  for (int i = 0; i < 4; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "ConfirmPromotionWebhookFailed");
  EXPECT_EQ(CountRevision(1, true), 3);
  EXPECT_EQ(CountRevision(2), 0) << "no new instance before the gate passed";

  hooks_.answers.clear();
  hooks_.calls.clear();
  Apply(3, "v3");
  for (int i = 0; i < 12; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded") << Rollout().ShortDebugString();
  EXPECT_EQ(hooks_.calls, std::vector<std::string>{"confirm-promotion"});
}

TEST_F(DeployerTest, NotificationsSurviveACrashThroughTheOutbox) {
  tidal::v1::Webhook post;
  post.set_name("notify");
  post.set_type("post-rollout");
  post.set_url("http://127.0.0.1:1/");
  hooks_spec_ = {post};
  // tidald commits the release's end and dies before delivering: its outbox
  // never runs.
  NotificationOutbox dead(&store_, &hooks_);
  Restart(&dead);
  Steady(2);
  Apply(2, "v2");
  for (int i = 0; i < 6; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  ASSERT_EQ(Rollout().phase(), "Succeeded");
  EXPECT_TRUE(hooks_.notified.empty());
  EXPECT_TRUE(hooks_.calls.empty());
  auto stored = store_.List("/outbox/");
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->items.size(), 1u);
  Webhook hook;
  std::string payload;
  ASSERT_TRUE(
      NotificationOutbox::Decode(stored->items[0].value, &hook, &payload));
  EXPECT_EQ(hook.type(), "post-rollout");
  EXPECT_NE(payload.find("\"toRevision\":2"), std::string::npos) << payload;

  // The next tidald sends it, then forgets it.
  NotificationOutbox next(&store_, &hooks_);
  ASSERT_TRUE(next.Resume().ok());
  EXPECT_EQ(next.pending(), 1u);
  next.Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (next.pending() > 0 && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(next.pending(), 0u);
  {
    absl::MutexLock l(&hooks_.mu_);
    EXPECT_EQ(hooks_.calls, std::vector<std::string>{"post-rollout"});
  }
  stored = store_.List("/outbox/");
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->items.empty());
  Restart();
}

TEST(NotificationOutboxTest, EncodeDecodeRoundTripAndRejectsGarbage) {
  tidal::v1::Webhook h;
  h.set_name("n");
  h.set_type("rollback");
  h.set_url("http://x/");
  const std::string payload = "{\"a\":\"b:c\"}";
  Webhook got;
  std::string body;
  ASSERT_TRUE(NotificationOutbox::Decode(NotificationOutbox::Encode(h, payload),
                                         &got, &body));
  EXPECT_EQ(got.url(), "http://x/");
  EXPECT_EQ(body, payload);
  EXPECT_FALSE(NotificationOutbox::Decode("zz", &got, &body));
  EXPECT_FALSE(NotificationOutbox::Decode("99:short", &got, &body));
}

TEST_F(DeployerTest, AutoRollbackOffHoldsTheStep) {
  rollout_.set_auto_rollback(false);
  Steady(2);
  Apply(2, "v2");
  Reconcile();
  for (const auto& i : Live())
    if (i.revision() == 2) runtime_.SetPhase(i.id(), "CrashLoopBackOff", "x");
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Failed");
  EXPECT_GT(CountRevision(2), 0);  // held for inspection
  DeployerControl control(&store_, &clock_, nullptr);
  v1::RolloutRequest req;
  req.set_name("web");
  req.set_action("abort");
  ASSERT_TRUE(control.Rollout(req).ok());
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(CountRevision(2), 0);
}

// `promote` after a `rollout pause` longer than the progress deadline goes
// on: the pause did not run the deadline (as `resume`), and a promote waits
// for nothing but the step's instances.
TEST_F(DeployerTest, PromoteAfterALongPauseGoesOnNotBack) {
  rollout_.set_strategy("canary");
  rollout_.add_steps()->set_weight(50);
  rollout_.set_progress_deadline_ms(20000);
  rollout_.mutable_analysis()->set_interval_ms(5000);
  rollout_.mutable_analysis()->set_min_requests(5);  // no traffic comes
  Steady(2);
  Apply(2, "v2");
  Reconcile();
  runtime_.SetAllReady();
  Reconcile();
  ASSERT_TRUE(Act("pause").ok());
  clock_.Advance(absl::Seconds(30));
  Reconcile();
  ASSERT_EQ(Rollout().phase(), "Paused");
  ASSERT_TRUE(Act("promote").ok());
  Settle(4);
  // On at the last step, whose analysis (no traffic yet) has its own
  // deadline from now.
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  EXPECT_EQ(Rollout().step(), 2);
  EXPECT_FALSE(HasEvent("RolledBack"));
}

// A failed release (autoRollback off) refuses `promote`, which would do
// nothing now and skip the retried step's analysis later; `retry` is a new
// attempt whose analysis judges its own requests only.
TEST_F(DeployerTest, AFailedReleaseRefusesPromoteAndRetryJudgesItsOwnRequests) {
  rollout_.set_auto_rollback(false);
  rollout_.set_strategy("canary");
  rollout_.add_steps()->set_weight(50);
  rollout_.mutable_analysis()->set_interval_ms(30000);
  rollout_.mutable_analysis()->set_min_requests(5);
  rollout_.mutable_analysis()->set_max_error_rate(0.1);
  Steady(2);
  Apply(2, "v2");
  Reconcile();
  runtime_.SetAllReady();
  clock_.Advance(absl::Seconds(40));
  metrics_.Set(2, 40, 20, 10);
  Reconcile();
  ASSERT_EQ(Rollout().phase(), "Failed") << Rollout().message();
  EXPECT_EQ(metrics_.last_window(), absl::Seconds(30));
  absl::Status promoted = Act("promote");
  EXPECT_TRUE(absl::IsFailedPrecondition(promoted)) << promoted;
  EXPECT_TRUE(absl::StrContains(promoted.message(), "rollout retry web"))
      << promoted;
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(Act("retry").ok());
  metrics_.Set(2, 0, 0, 0);
  clock_.Advance(absl::Seconds(3));
  Reconcile();
  // The window reaches back to the retry, not over the failed attempt.
  EXPECT_EQ(metrics_.last_window(), absl::Seconds(3));
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
}

// `rollout restart` after a rollback restarts what runs (the stable
// revision's template), not the build that rolled back, which the spec
// still names.
TEST_F(DeployerTest, RestartAfterARollbackRestartsTheStableTemplate) {
  Steady(2);
  Apply(2, "v2");
  Reconcile();
  for (const auto& i : Live())
    if (i.revision() == 2) runtime_.SetPhase(i.id(), "CrashLoopBackOff", "x");
  Reconcile();
  ASSERT_EQ(Rollout().phase(), "RolledBack");
  ASSERT_TRUE(Act("restart").ok());
  const App app = Stored();
  EXPECT_EQ(app.spec().template_().args(1), "v1");
  EXPECT_EQ(app.spec().template_().annotations().count(kRestartedAtAnnotation),
            1u);
  EXPECT_EQ(app.metadata().annotations().at(kChangeCauseAnnotation),
            "rollout restart of revision 1 (the spec's template had rolled "
            "back)");
  Settle(8);
  EXPECT_EQ(Rollout().phase(), "Succeeded") << Rollout().message();
  EXPECT_EQ(Rollout().stable_revision(), 3);
  for (const auto& i : Live()) EXPECT_EQ(i.revision(), 3);
}

TEST_F(DeployerTest, HistoryLimitPrunesOldRevisions) {
  rollout_.set_history_limit(3);
  Steady(1);
  for (int v = 2; v <= 6; ++v) {
    Apply(1, "v" + std::to_string(v));
    for (int i = 0; i < 4; ++i) {
      Reconcile();
      runtime_.SetAllReady();
    }
    ASSERT_EQ(Rollout().phase(), "Succeeded") << v;
  }
  auto list = deployer_->history()->List("default", "web");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ(list->back().number(), 6);
}

// A canary bigger than maxUnavailable: the plan that decides the rollback
// moves all traffic to the stable revision and drains every canary instance
// at once (not one requeue later, and not within maxUnavailable), and the
// stable revision is started back up to the full target in the same
// reconcile (within maxSurge).
TEST_F(DeployerTest, RollbackMovesTrafficAndDrainsAtOnce) {
  rollout_.set_strategy("canary");
  rollout_.add_steps()->set_weight(50);
  rollout_.set_max_surge("5");
  rollout_.set_max_unavailable("0");
  rollout_.mutable_analysis()->set_interval_ms(10000);
  rollout_.mutable_analysis()->set_min_requests(20);
  rollout_.mutable_analysis()->set_max_error_rate(0.1);
  Steady(10);
  Apply(10, "v2");
  for (int i = 0; i < 6 && CountRevision(2, true) < 5; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  Reconcile();
  ASSERT_EQ(CountRevision(2, true), 5);
  ASSERT_EQ(CountRevision(1, true), 5);
  ASSERT_EQ(routes_.weights,
            (std::vector<std::pair<int64_t, int>>{{2, 50}, {1, 50}}));
  metrics_.Set(2, 40, 20, 10);
  clock_.Advance(absl::Milliseconds(100));
  const int stops = runtime_.stops();
  Reconcile();  // the deciding plan
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(routes_.weights, (std::vector<std::pair<int64_t, int>>{{1, 100}}));
  EXPECT_EQ(CountRevision(2), 0);
  EXPECT_EQ(runtime_.stops() - stops, 5);
  // No stable instance was stopped, and the missing 5 were all started.
  EXPECT_EQ(CountRevision(1, true), 5);
  EXPECT_EQ(CountRevision(1), 10);
  EXPECT_LE(static_cast<int>(Live().size()), 10 + 5);
}

// A timed pause is a deliberate hold, not a lack of progress: a canary step
// {weight: 10, pause: 15m} with the default 10m deadline goes on; the
// deadline still counts the time spent waiting on analysis after it.
TEST_F(DeployerTest, TimedPauseDoesNotCountTowardsTheDeadline) {
  rollout_.set_strategy("canary");
  auto* step = rollout_.add_steps();
  step->set_weight(10);
  step->set_pause_ms(absl::ToInt64Milliseconds(absl::Minutes(15)));
  Steady(10);
  Apply(10, "v2");
  Reconcile();
  runtime_.SetAllReady();
  Reconcile();
  ASSERT_EQ(CountRevision(2, true), 1);
  clock_.Advance(absl::Minutes(11));  // past the 10m deadline, in the pause
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  EXPECT_EQ(Rollout().step(), 1);
  clock_.Advance(absl::Minutes(4) + absl::Seconds(1));  // the pause is over
  Reconcile();
  EXPECT_EQ(Rollout().step(), 2);
  for (int i = 0; i < 10 && Rollout().phase() != "Succeeded"; ++i) {
    runtime_.SetAllReady();
    Reconcile();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded");
}

TEST_F(DeployerTest, LongBatchIntervalDoesNotCountTowardsTheDeadline) {
  rollout_.set_batches(2);
  rollout_.set_batch_interval_ms(absl::ToInt64Milliseconds(absl::Minutes(20)));
  rollout_.set_progress_deadline_ms(60000);
  Steady(4);
  Apply(4, "v2");
  for (int i = 0; i < 5; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  ASSERT_EQ(Rollout().step(), 1);
  clock_.Advance(absl::Minutes(19));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  clock_.Advance(absl::Minutes(1) + absl::Seconds(1));
  for (int i = 0; i < 5; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  EXPECT_EQ(Rollout().phase(), "Succeeded");
}

TEST_F(DeployerTest, DeadlineStillCountsAnalysisWaitAfterAPause) {
  rollout_.set_strategy("canary");
  auto* step = rollout_.add_steps();
  step->set_weight(10);
  step->set_pause_ms(absl::ToInt64Milliseconds(absl::Minutes(15)));
  rollout_.mutable_analysis()->set_min_requests(10);  // no traffic comes
  Steady(10);
  Apply(10, "v2");
  Reconcile();
  runtime_.SetAllReady();
  Reconcile();
  ASSERT_EQ(CountRevision(2, true), 1);
  // 15m of pause + 10m of deadline, less a second: still waiting.
  clock_.Advance(absl::Minutes(24) + absl::Seconds(59));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing") << Rollout().message();
  clock_.Advance(absl::Seconds(2));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "RolledBack");
  EXPECT_EQ(Rollout().reason(), "ProgressDeadlineExceeded");
}

// A new revision whose instances run but never get ready (the runtime marks
// them, runtime.h) fails at once, without the deadline.
TEST_F(DeployerTest, NeverReadyFailsFastWithoutTheDeadline) {
  rollout_.set_max_surge("2");
  Steady(4);
  Apply(4, "v2");
  Reconcile();
  std::vector<std::string> news;
  for (const auto& i : Live())
    if (i.revision() == 2) news.push_back(i.id());
  ASSERT_EQ(news.size(), 2u);
  marking_.Mark(news[0], kReasonReadinessProbeFailed,
                "readiness probe answered not ready 3 times in a row");
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");  // one among several
  marking_.Mark(news[1], kReasonStartupTimeout,
                "port 20001 still refuses connections 2m after start");
  Reconcile();  // no time has passed
  auto r = Rollout();
  EXPECT_EQ(r.phase(), "RolledBack");
  EXPECT_EQ(r.reason(), "NeverReady");
  EXPECT_NE(r.message().find("never gets ready"), std::string::npos)
      << r.message();
  EXPECT_EQ(CountRevision(2), 0);
  EXPECT_EQ(CountRevision(1), 4);
}

// The app's first revision has nothing to roll back to: when it crash-loops
// it is Failed (not Succeeded), and a fixed template replaces it directly.
TEST_F(DeployerTest, FirstRevisionThatCrashLoopsFails) {
  Apply(2, "v1");
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");
  for (const auto& i : Live())
    runtime_.SetPhase(i.id(), "CrashLoopBackOff", "exit code 3");
  Reconcile();
  auto r = Rollout();
  EXPECT_EQ(r.phase(), "Failed");
  EXPECT_EQ(r.reason(), "CrashLoop");
  EXPECT_EQ(r.stable_revision(), 1);
  EXPECT_TRUE(HasEvent("RolloutFailed"));
  EXPECT_EQ(CountRevision(1), 2);  // kept, for logs and describe
  // A fixed template: the new revision replaces it without a rollout.
  Apply(2, "v2");
  for (int i = 0; i < 5; ++i) {
    Reconcile();
    runtime_.SetAllReady();
  }
  Reconcile();
  r = Rollout();
  EXPECT_EQ(r.phase(), "Succeeded");
  EXPECT_EQ(r.stable_revision(), 2);
  EXPECT_EQ(r.update_revision(), 0);
  EXPECT_EQ(CountRevision(2, true), 2);
  EXPECT_EQ(CountRevision(1), 0);
}

TEST_F(DeployerTest, FirstRevisionNeverReadyOrPastItsDeadlineFails) {
  rollout_.set_progress_deadline_ms(60000);
  Apply(1, "v1");
  Reconcile();
  ASSERT_EQ(Live().size(), 1u);
  marking_.Mark(Live()[0].id(), kReasonStartupTimeout, "port refuses");
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Failed");
  EXPECT_EQ(Rollout().reason(), "NeverReady");
  // `rollout retry`, then it just never gets ready: the deadline.
  marking_.Mark(Live()[0].id(), "", "");
  DeployerControl control(&store_, &clock_, nullptr);
  v1::RolloutRequest req;
  req.set_name("web");
  req.set_action("retry");
  ASSERT_TRUE(control.Rollout(req).ok());
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");
  clock_.Advance(absl::Seconds(59));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Progressing");
  clock_.Advance(absl::Seconds(2));
  Reconcile();
  EXPECT_EQ(Rollout().phase(), "Failed");
  EXPECT_EQ(Rollout().reason(), "ProgressDeadlineExceeded");
}

}  // namespace
}  // namespace tidal::deployer
