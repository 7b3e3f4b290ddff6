#include "controller/controller.h"

#include <gtest/gtest.h>

#include <functional>

#include "api/spec.h"
#include "common/proto_time.h"
#include "fakes/eventually.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

namespace tidal {
namespace {

using testing::Eventually;
using tidal::v1::App;

App MakeApp(int replicas) {
  App app;
  app.mutable_metadata()->set_name("web");
  app.mutable_metadata()->set_namespace_("prod");
  app.mutable_metadata()->set_generation(1);
  app.mutable_spec()->set_replicas(replicas);
  app.mutable_spec()->mutable_template_()->add_command("tidal-sample-app");
  return app;
}

class ControllerTest : public ::testing::Test {
 protected:
  ControllerTest()
      : runtime_(/*auto_ready=*/true),
        events_(&store_, &clock_),
        reconciler_(&store_, &runtime_, &events_, &clock_, {}),
        controller_(&store_, &runtime_, &reconciler_, &events_, &queue_, {}) {}

  App Stored() {
    App app;
    auto kv = store_.Get(keys::App("prod", "web"));
    if (kv.ok()) app.ParseFromString(kv->value);
    return app;
  }
  // Writes `want`'s spec and metadata over the stored app, as a user's
  // apply does; the controller may write the status in between (a
  // FailedPrecondition on the version): then again over the newer record.
  void Put(const App& want) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      auto kv = store_.Get(keys::App("prod", "web"));
      ASSERT_TRUE(kv.ok());
      App app;
      ASSERT_TRUE(app.ParseFromString(kv->value));
      *app.mutable_spec() = want.spec();
      *app.mutable_metadata() = want.metadata();
      auto written =
          store_.Update(keys::App("prod", "web"), app.SerializeAsString(),
                        kv->resource_version);
      if (written.ok()) return;
      ASSERT_TRUE(absl::IsFailedPrecondition(written.status()))
          << written.status();
    }
    FAIL() << "the controller wrote the app 100 times in a row";
  }

  testing::MemoryStore store_;
  testing::FakeRuntime runtime_;
  testing::FakeClock clock_;
  EventRecorder events_;
  AppReconciler reconciler_;
  WorkQueue queue_;
  Controller controller_;
};

TEST_F(ControllerTest, CreateScaleAndDeleteThroughTheStore) {
  ASSERT_TRUE(controller_.Start().ok());
  ASSERT_TRUE(
      store_.Create(keys::App("prod", "web"), MakeApp(3).SerializeAsString())
          .ok());
  ASSERT_TRUE(
      Eventually([&] { return Stored().status().ready_replicas() == 3; }));
  EXPECT_EQ(runtime_.List("prod", "web").size(), 3u);

  App app = Stored();
  app.mutable_spec()->set_replicas(5);
  app.mutable_metadata()->set_generation(2);
  Put(app);
  ASSERT_TRUE(Eventually([&] {
    return Stored().status().ready_replicas() == 5 &&
           Stored().status().observed_generation() == 2;
  }));
  EXPECT_EQ(runtime_.List("prod", "web").size(), 5u);

  app = Stored();
  *app.mutable_metadata()->mutable_deletion_timestamp() =
      ToProtoTime(clock_.Now());
  Put(app);
  ASSERT_TRUE(
      Eventually([&] { return !store_.Get(keys::App("prod", "web")).ok(); }));
  EXPECT_TRUE(runtime_.List("prod", "web").empty());
  controller_.Stop();
}

// Stop and Start alternate (leadership lost and won back): while stopped
// nothing is queued or reconciled; a new Start lists the apps again and
// reconciles what changed meanwhile.
TEST_F(ControllerTest, StartsAgainAfterStop) {
  ASSERT_TRUE(controller_.Start().ok());
  ASSERT_TRUE(
      store_.Create(keys::App("prod", "web"), MakeApp(2).SerializeAsString())
          .ok());
  ASSERT_TRUE(
      Eventually([&] { return Stored().status().ready_replicas() == 2; }));
  controller_.Stop();
  controller_.Stop();  // idempotent

  App app = Stored();
  app.mutable_spec()->set_replicas(4);
  app.mutable_metadata()->set_generation(2);
  Put(app);
  queue_.Add("prod/web");  // dropped: the queue is shut down
  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(runtime_.List("prod", "web").size(), 2u);

  ASSERT_TRUE(controller_.Start().ok());
  ASSERT_TRUE(Eventually([&] {
    return Stored().status().ready_replicas() == 4 &&
           Stored().status().observed_generation() == 2;
  }));
  EXPECT_EQ(runtime_.List("prod", "web").size(), 4u);
  // And it keeps watching.
  app = Stored();
  app.mutable_spec()->set_replicas(1);
  app.mutable_metadata()->set_generation(3);
  Put(app);
  ASSERT_TRUE(
      Eventually([&] { return Stored().status().ready_replicas() == 1; }));
  controller_.Stop();
}

TEST_F(ControllerTest, SlowStopsFinishDeletionWhenTheRuntimeReportsThem) {
  runtime_.set_instant_stop(false);
  ASSERT_TRUE(controller_.Start().ok());
  ASSERT_TRUE(
      store_.Create(keys::App("prod", "web"), MakeApp(2).SerializeAsString())
          .ok());
  ASSERT_TRUE(
      Eventually([&] { return Stored().status().ready_replicas() == 2; }));
  App app = Stored();
  *app.mutable_metadata()->mutable_deletion_timestamp() =
      ToProtoTime(clock_.Now());
  Put(app);
  ASSERT_TRUE(Eventually([&] { return runtime_.stops() == 2; }));
  // Instances still terminating: the app must stay.
  EXPECT_TRUE(store_.Get(keys::App("prod", "web")).ok());
  runtime_.FinishStops();
  ASSERT_TRUE(
      Eventually([&] { return !store_.Get(keys::App("prod", "web")).ok(); }));
}

TEST_F(ControllerTest, ReplacesAnInstanceThatVanishes) {
  runtime_.set_instant_stop(true);
  ASSERT_TRUE(controller_.Start().ok());
  ASSERT_TRUE(
      store_.Create(keys::App("prod", "web"), MakeApp(2).SerializeAsString())
          .ok());
  ASSERT_TRUE(
      Eventually([&] { return runtime_.List("prod", "web").size() == 2; }));
  // Something outside the controller stops an instance for good.
  auto victim = runtime_.List("prod", "web")[0];
  ASSERT_TRUE(runtime_.Stop(victim.id(), absl::ZeroDuration()).ok());
  ASSERT_TRUE(Eventually([&] { return runtime_.starts() == 3; }));
  ASSERT_TRUE(
      Eventually([&] { return runtime_.List("prod", "web").size() == 2; }));
}

TEST_F(ControllerTest, RetriesWhenStartsFailAndRecordsWarning) {
  runtime_.set_fail_starts(true);
  ASSERT_TRUE(controller_.Start().ok());
  ASSERT_TRUE(
      store_.Create(keys::App("prod", "web"), MakeApp(1).SerializeAsString())
          .ok());
  ASSERT_TRUE(Eventually(
      [&] { return controller_.queue()->Failures("prod/web") >= 2; }));
  auto list = store_.List(keys::EventPrefix("prod", "web"));
  ASSERT_TRUE(list.ok());
  ASSERT_FALSE(list->items.empty());
  tidal::v1::Event ev;
  ASSERT_TRUE(ev.ParseFromString(list->items.back().value));
  EXPECT_EQ(ev.reason(), "FailedCreate");
  EXPECT_GE(ev.count(), 2);  // repeats fold into one event
  runtime_.set_fail_starts(false);
  ASSERT_TRUE(
      Eventually([&] { return Stored().status().ready_replicas() == 1; }));
}

}  // namespace
}  // namespace tidal
