// NodeAgent over a MemoryStore: heartbeats, assignments followed on a
// FakeRuntime (and on a real ProcessRuntime running tidal-sample-app where
// processes matter: ids, adoption), status records, store errors.

#include "ha/node_agent.h"

#include <signal.h>

#include <memory>

#include "absl/strings/match.h"
#include "fakes/eventually.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "gtest/gtest.h"
#include "ha/cluster_fixture.h"
#include "runtime/process_runtime.h"
#include "runtime/test_util.h"

namespace tidal::ha {
namespace {

using ::tidal::testing::Eventually;
using ::tidal::testing::FakeClock;
using ::tidal::testing::FakeRuntime;
using ::tidal::testing::MemoryStore;
using namespace ::tidal::ha::testing;  // NOLINT

class NodeAgentTest : public ::testing::Test {
 protected:
  void StartAgent() {
    NodeAgentOptions o = AgentOptions("a", &clock_);
    o.on_event = events_.listener();
    agent_ = std::make_unique<NodeAgent>(&store_, &rt_, o);
    ASSERT_TRUE(agent_->Start().ok());
  }

  bool Runs(const std::string& id) { return Find(rt_.List(), id).has_value(); }

  FakeClock clock_;
  MemoryStore store_;
  FakeRuntime rt_{/*auto_ready=*/true};
  Recorder events_;
  std::unique_ptr<NodeAgent> agent_;
};

TEST_F(NodeAgentTest, HeartbeatsRewriteTheNodeRecord) {
  StartAgent();
  auto rec = GetNode(&store_, "a");
  ASSERT_TRUE(rec.has_value());  // written by Start
  EXPECT_EQ(rec->name(), "a");
  EXPECT_EQ(rec->address(), "10.0.0.1");
  EXPECT_EQ(rec->api_address(), "10.0.0.1:7070");
  EXPECT_EQ(rec->gateway_port(), 8080);
  EXPECT_EQ(rec->started().seconds(), absl::ToUnixSeconds(clock_.Now()));
  const int64_t first = rec->heartbeats();
  EXPECT_GE(first, 1);

  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(Eventually([&] {
    auto r = GetNode(&store_, "a");
    return r && r->heartbeats() >= first + 3 &&
           r->heartbeat().seconds() == absl::ToUnixSeconds(clock_.Now());
  }));
  EXPECT_GE(agent_->heartbeats(), first + 3);
  // The gateway's port once it listens (tidald starts the agent first).
  agent_->SetGatewayPort(18080);
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(Eventually([&] {
    auto r = GetNode(&store_, "a");
    return r && r->gateway_port() == 18080;
  }));

  // Stopped: no more heartbeats.
  agent_->Stop();
  const int64_t last = GetNode(&store_, "a")->heartbeats();
  const int64_t txns = store_.txn_count();
  EXPECT_EQ(agent_->heartbeats(), last);
  EXPECT_EQ(store_.txn_count(), txns);
}

TEST_F(NodeAgentTest, RunsAssignmentsUnderTheirIdsAndPublishesTheirStatus) {
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-aaaaa")).ok());
  StartAgent();
  // One assigned before Start (the listing), one after (the watch), one for
  // another node (not ours).
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-bbbbb")).ok());
  ASSERT_TRUE(PutAssignment(&store_, "b", MakeAssignment("hello-ccccc")).ok());
  ASSERT_TRUE(
      Eventually([&] { return Runs("hello-aaaaa") && Runs("hello-bbbbb"); }));
  EXPECT_FALSE(Runs("hello-ccccc"));
  EXPECT_EQ(rt_.starts(), 2);
  ASSERT_TRUE(Eventually([&] {
    auto s = GetStatus(&store_, "a", "hello-bbbbb");
    return s && s->phase() == "Running" && s->ready();
  }));
  auto s = GetStatus(&store_, "a", "hello-bbbbb");
  EXPECT_EQ(s->node(), "a");
  EXPECT_EQ(s->host(), "127.0.0.1");  // the runtime's
  EXPECT_EQ(s->namespace_(), "default");
  EXPECT_EQ(s->app(), "hello");
  EXPECT_EQ(s->template_hash(), "h1");
  EXPECT_FALSE(GetStatus(&store_, "b", "hello-ccccc").has_value());

  // Later changes follow.
  rt_.SetReady("hello-aaaaa", false);
  ASSERT_TRUE(Eventually([&] {
    auto st = GetStatus(&store_, "a", "hello-aaaaa");
    return st && !st->ready();
  }));
  // The runtime's events go to on_event.
  EXPECT_TRUE(Eventually([&] {
    return events_.Saw([](const InstanceChange& c) {
      return c.event_reason == "Started" && c.instance.id() == "hello-bbbbb";
    });
  }));
  // Re-assigning the same running id starts nothing more.
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-bbbbb")).ok());
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-ddddd")).ok());
  ASSERT_TRUE(Eventually([&] { return Runs("hello-ddddd"); }));
  EXPECT_EQ(rt_.starts(), 3);
}

TEST_F(NodeAgentTest, StopAssignmentStopsTheInstanceThenBothRecordsGo) {
  rt_.set_instant_stop(false);
  StartAgent();
  tidal::v1::Assignment a = MakeAssignment("hello-aaaaa");
  ASSERT_TRUE(PutAssignment(&store_, "a", a).ok());
  ASSERT_TRUE(Eventually([&] {
    auto s = GetStatus(&store_, "a", "hello-aaaaa");
    return s && s->ready();
  }));
  a.set_stop(true);
  a.set_grace_ms(7000);
  ASSERT_TRUE(PutAssignment(&store_, "a", a).ok());
  // Terminating, as published; then gone with both its records.
  ASSERT_TRUE(Eventually([&] {
    auto s = GetStatus(&store_, "a", "hello-aaaaa");
    return s && s->phase() == "Terminating";
  }));
  EXPECT_EQ(rt_.stops(), 1);
  EXPECT_TRUE(GetAssignment(&store_, "a", "hello-aaaaa").has_value());
  rt_.FinishStops();
  ASSERT_TRUE(Eventually([&] {
    return !GetStatus(&store_, "a", "hello-aaaaa") &&
           !GetAssignment(&store_, "a", "hello-aaaaa");
  }));
  EXPECT_FALSE(Runs("hello-aaaaa"));
  EXPECT_EQ(rt_.starts(), 1);  // not started again

  // A stop assignment for something that does not run here is cleaned up.
  tidal::v1::Assignment gone = MakeAssignment("hello-zzzzz");
  gone.set_stop(true);
  ASSERT_TRUE(PutAssignment(&store_, "a", gone).ok());
  ASSERT_TRUE(
      Eventually([&] { return !GetAssignment(&store_, "a", "hello-zzzzz"); }));
  EXPECT_EQ(rt_.starts(), 1);
}

// The leader deletes the assignments of a node it declared lost: the node's
// agent stops those instances.
TEST_F(NodeAgentTest, DeletedAssignmentStopsItsInstance) {
  StartAgent();
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-aaaaa")).ok());
  ASSERT_TRUE(Eventually(
      [&] { return GetStatus(&store_, "a", "hello-aaaaa").has_value(); }));
  ASSERT_TRUE(store_.Delete(keys::Assignment("a", "hello-aaaaa")).ok());
  ASSERT_TRUE(Eventually([&] { return !Runs("hello-aaaaa"); }));
  EXPECT_EQ(rt_.stops(), 1);
  ASSERT_TRUE(Eventually(
      [&] { return !GetStatus(&store_, "a", "hello-aaaaa").has_value(); }));
}

// After a restart of tidald, an adopted instance whose assignment is gone
// (the leader replaced it elsewhere while this node was away) is stopped; an
// assigned one keeps running, not started again; a status record of
// nothing is deleted.
TEST_F(NodeAgentTest, RestartedAgentStopsAdoptedInstancesWithoutAssignment) {
  StartAgent();
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-keep1")).ok());
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-gone1")).ok());
  ASSERT_TRUE(Eventually([&] {
    return GetStatus(&store_, "a", "hello-keep1") &&
           GetStatus(&store_, "a", "hello-gone1");
  }));
  agent_->Stop();
  agent_.reset();
  // Meanwhile: the leader gave hello-gone1 up; a stale status record.
  ASSERT_TRUE(store_.Delete(keys::Assignment("a", "hello-gone1")).ok());
  tidal::v1::Instance ghost;
  ghost.set_id("hello-ghost");
  ghost.set_phase("Running");
  ASSERT_TRUE(store_
                  .Txn({Op::Put(keys::Instance("a", "hello-ghost"),
                                ghost.SerializeAsString())})
                  .ok());
  ASSERT_EQ(rt_.starts(), 2);

  StartAgent();
  ASSERT_TRUE(Eventually([&] { return agent_->synced(); }));
  ASSERT_TRUE(Eventually([&] { return !Runs("hello-gone1"); }));
  EXPECT_TRUE(Runs("hello-keep1"));
  EXPECT_EQ(rt_.stops(), 1);
  EXPECT_EQ(rt_.starts(), 2);
  ASSERT_TRUE(Eventually([&] {
    return !GetStatus(&store_, "a", "hello-gone1") &&
           !GetStatus(&store_, "a", "hello-ghost");
  }));
  EXPECT_TRUE(GetStatus(&store_, "a", "hello-keep1").has_value());
  EXPECT_TRUE(GetAssignment(&store_, "a", "hello-keep1").has_value());
}

TEST_F(NodeAgentTest, FailedStartIsReportedAndTriedAgain) {
  rt_.set_fail_starts(true);
  StartAgent();
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-aaaaa")).ok());
  ASSERT_TRUE(Eventually([&] {
    auto s = GetStatus(&store_, "a", "hello-aaaaa");
    return s && s->phase() == "Failed";
  }));
  auto s = GetStatus(&store_, "a", "hello-aaaaa");
  EXPECT_EQ(s->reason(), "StartFailed");
  EXPECT_TRUE(absl::StrContains(s->message(), "refuses to start"))
      << s->message();
  EXPECT_EQ(s->node(), "a");
  EXPECT_TRUE(Eventually([&] {
    return events_.Saw([](const InstanceChange& c) {
      return c.event_reason == "FailedCreate" && c.event_type == "Warning" &&
             absl::StrContains(c.event_message,
                               "node a could not start instance hello-aaaaa");
    });
  }));
  rt_.set_fail_starts(false);
  ASSERT_TRUE(Eventually([&] {
    auto st = GetStatus(&store_, "a", "hello-aaaaa");
    return Runs("hello-aaaaa") && st && st->phase() == "Running";
  }));
  EXPECT_EQ(rt_.starts(), 1);
}

// A start refused with AlreadyExists while nothing of that id runs here
// (something an interrupted start left keeps the id) is a failed start: said
// so and tried again, not taken for a running instance.
TEST_F(NodeAgentTest, AlreadyExistsWithoutAnInstanceIsAFailedStart) {
  rt_.set_start_error(
      absl::AlreadyExistsError("instance hello-aaaaa already exists"));
  StartAgent();
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-aaaaa")).ok());
  ASSERT_TRUE(Eventually([&] {
    auto s = GetStatus(&store_, "a", "hello-aaaaa");
    return s && s->phase() == "Failed" && s->reason() == "StartFailed";
  }));
  rt_.set_start_error(absl::OkStatus());
  ASSERT_TRUE(Eventually([&] {
    auto st = GetStatus(&store_, "a", "hello-aaaaa");
    return Runs("hello-aaaaa") && st && st->phase() == "Running";
  }));
}

TEST_F(NodeAgentTest, SurvivesStoreErrors) {
  StartAgent();
  ASSERT_TRUE(PutAssignment(&store_, "a", MakeAssignment("hello-aaaaa")).ok());
  ASSERT_TRUE(Eventually([&] {
    auto s = GetStatus(&store_, "a", "hello-aaaaa");
    return s && s->ready();
  }));
  store_.FailTxns(absl::UnavailableError("etcd is away"));
  const int64_t beats = agent_->heartbeats();
  rt_.SetReady("hello-aaaaa", false);  // not written while the store fails
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(GetStatus(&store_, "a", "hello-aaaaa")->ready());
  store_.FailTxns(absl::OkStatus());
  ASSERT_TRUE(Eventually([&] {
    auto s = GetStatus(&store_, "a", "hello-aaaaa");
    return s && !s->ready() && agent_->heartbeats() > beats;
  }));
}

// A watch that falls behind (OutOfRange) is listed again: nothing is missed.
TEST(NodeAgentRelistTest, WatchThatFellBehindListsAgain) {
  FakeClock clock;
  MemoryStore store(/*max_backlog=*/3);
  FakeRuntime rt(/*auto_ready=*/true);
  NodeAgent agent(&store, &rt, AgentOptions("a", &clock));
  ASSERT_TRUE(agent.Start().ok());
  ASSERT_TRUE(Eventually([&] { return agent.synced(); }));
  std::vector<Op> ops;
  for (int i = 0; i < 10; ++i) {
    ops.push_back(
        Op::Put(keys::Assignment("a", absl::StrCat("hello-", i)),
                MakeAssignment(absl::StrCat("hello-", i)).SerializeAsString()));
  }
  ASSERT_TRUE(store.Txn(ops).ok());  // 10 events at once: past the backlog
  ASSERT_TRUE(Eventually([&] { return rt.List().size() == 10u; }));
  EXPECT_EQ(rt.starts(), 10);
}

// With real processes: the instance runs under the assignment's id and
// listens where its status says; after a restart of tidald (a new runtime
// and agent over the same data directory), the adopted instance whose
// assignment is gone is stopped.
TEST(NodeAgentProcessTest, RealInstancesRunUnderTheirIdAndOrphansStop) {
  ::tidal::testing::TempDir dir;
  ProcessRuntimeOptions ro;
  ro.data_dir = dir.path();
  // Under the ephemeral range (process_runtime_test.cc says why).
  ro.port_min = 12000;
  ro.port_max = 13999;
  ro.extra_path = {::tidal::testing::BuildDir() + "/examples"};
  FakeClock clock;
  MemoryStore store;
  auto rt = std::make_unique<ProcessRuntime>(ro);
  auto agent =
      std::make_unique<NodeAgent>(&store, rt.get(), AgentOptions("a", &clock));
  ASSERT_TRUE(agent->Start().ok());

  // Unique on the machine: without cgroups, instances are found by id.
  const std::string id = absl::StrCat("hello-real", getpid());
  tidal::v1::Assignment a = MakeAssignment(id);
  a.mutable_template_()->clear_command();
  a.mutable_template_()->clear_args();
  a.mutable_template_()->add_command("tidal-sample-app");
  ASSERT_TRUE(PutAssignment(&store, "a", a).ok());
  std::optional<tidal::v1::Instance> status;
  ASSERT_TRUE(Eventually([&] {
    status = GetStatus(&store, "a", id);
    return status && status->ready();
  }));
  EXPECT_EQ(status->node(), "a");
  EXPECT_EQ(status->host(), "127.0.0.1");
  EXPECT_GT(status->pid(), 0);
  auto r = ::tidal::testing::HttpGet(status->port(), "/healthz");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  const pid_t pid = static_cast<pid_t>(status->pid());

  // tidald goes away; the instance keeps running; the leader gives it up.
  agent->Stop();
  agent.reset();
  rt->Shutdown(false);
  rt.reset();
  EXPECT_EQ(kill(pid, 0), 0);
  ASSERT_TRUE(store.Delete(keys::Assignment("a", id)).ok());

  rt = std::make_unique<ProcessRuntime>(ro);
  agent =
      std::make_unique<NodeAgent>(&store, rt.get(), AgentOptions("a", &clock));
  ASSERT_TRUE(agent->Start().ok());  // adopts it, then stops it
  EXPECT_TRUE(rt->WaitForNoInstances(absl::Seconds(20)));
  EXPECT_TRUE(Eventually([&] {
    return ::tidal::testing::ReadFile(absl::StrCat("/proc/", pid, "/stat"))
        .empty();
  })) << "the orphan still runs (or is left a zombie)";
  EXPECT_TRUE(
      Eventually([&] { return !GetStatus(&store, "a", id).has_value(); }));
  agent->Stop();
  rt->Shutdown(true);
}

}  // namespace
}  // namespace tidal::ha
