// ClusterRuntime with two NodeAgents on one MemoryStore (FakeRuntimes, and a
// real ProcessRuntime running tidal-sample-app for the whole path): where
// Start lands, status into List and the listener, Stop, lost nodes, a new
// leader's patience, assigned-but-unreported instances, no double start.

#include "ha/cluster_runtime.h"

#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "fakes/eventually.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "gtest/gtest.h"
#include "ha/cluster_fixture.h"
#include "ha/node_agent.h"
#include "ha/remote_logs.h"
#include "runtime/process_runtime.h"
#include "runtime/test_util.h"

namespace tidal::ha {
namespace {

using ::tidal::testing::Eventually;
using ::tidal::testing::FakeClock;
using ::tidal::testing::FakeRuntime;
using ::tidal::testing::MemoryStore;
using namespace ::tidal::ha::testing;  // NOLINT

std::optional<ClusterRuntime::NodeInfo> NodeOf(ClusterRuntime& cr,
                                               const std::string& name) {
  for (auto& n : cr.Nodes()) {
    if (n.name == name) return n;
  }
  return std::nullopt;
}

// A store whose writes are refused, as a standby's fenced store refuses.
class RefusingStore : public Store {
 public:
  explicit RefusingStore(Store* reads) : reads_(reads) {}
  absl::StatusOr<int64_t> Txn(const std::vector<Op>& ops) override {
    ++refused;
    return absl::FailedPreconditionError("not the leader");
  }
  absl::StatusOr<KeyValue> Get(const std::string& key) override {
    return reads_->Get(key);
  }
  absl::StatusOr<ListResult> List(const std::string& prefix,
                                  int64_t limit) override {
    return reads_->List(prefix, limit);
  }
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(const std::string& prefix,
                                                     int64_t from) override {
    return reads_->WatchPrefix(prefix, from);
  }
  absl::StatusOr<int64_t> CurrentVersion() override {
    return reads_->CurrentVersion();
  }
  std::atomic<int> refused{0};

 private:
  Store* const reads_;
};

class ClusterRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    agent_a_ = std::make_unique<NodeAgent>(&store_, &rt_a_,
                                           AgentOptions("a", &clock_));
    agent_b_ = std::make_unique<NodeAgent>(&store_, &rt_b_,
                                           AgentOptions("b", &clock_));
    ASSERT_TRUE(agent_a_->Start().ok());
    ASSERT_TRUE(agent_b_->Start().ok());
    cr_ = std::make_unique<ClusterRuntime>(&store_, &store_, &rt_a_,
                                           ClusterOptions("a", &clock_));
    cr_->SetListener(rec_.listener());
    ASSERT_TRUE(cr_->Adopt().ok());
    // Both nodes heartbeat as this process sees it.
    ASSERT_TRUE(Eventually([&] {
      auto a = NodeOf(*cr_, "a");
      auto b = NodeOf(*cr_, "b");
      return a && b && a->heartbeating && b->heartbeating && a->live && b->live;
    }));
  }

  void TearDown() override {
    if (cr_) cr_->Shutdown(false);
    if (agent_a_) agent_a_->Stop();
    if (agent_b_) agent_b_->Stop();
  }

  FakeRuntime& RuntimeOf(const std::string& node) {
    return node == "a" ? rt_a_ : rt_b_;
  }

  // Waits until `cr` has seen a heartbeat of `node` at the clock's time
  // (after an Advance).
  bool SeenNow(ClusterRuntime& cr, const std::string& node) {
    return Eventually([&] {
      auto n = NodeOf(cr, node);
      return n && n->last_seen == clock_.Now();
    });
  }

  FakeClock clock_;
  MemoryStore store_;
  FakeRuntime rt_a_{/*auto_ready=*/true};
  FakeRuntime rt_b_{/*auto_ready=*/true};
  std::unique_ptr<NodeAgent> agent_a_;
  std::unique_ptr<NodeAgent> agent_b_;
  Recorder rec_;
  std::unique_ptr<ClusterRuntime> cr_;
};

TEST_F(ClusterRuntimeTest, StartLandsOnALiveNodeAndRunsThereUnderItsId) {
  auto inst = cr_->Start(Request());
  ASSERT_TRUE(inst.ok()) << inst.status();
  EXPECT_EQ(inst->phase(), "Starting");
  EXPECT_FALSE(inst->ready());
  EXPECT_EQ(inst->node(), "a");  // a tie: the first name
  EXPECT_TRUE(absl::StartsWith(inst->id(), "hello-"));
  EXPECT_EQ(inst->id().size(), std::string("hello-").size() + 5);
  auto a = GetAssignment(&store_, "a", inst->id());
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->app(), "hello");
  EXPECT_EQ(a->template_().command(0), "/bin/sleep");
  EXPECT_FALSE(a->stop());
  EXPECT_EQ(a->created().seconds(), absl::ToUnixSeconds(clock_.Now()));

  // Runs on a under the assignment's id; reported back as Running.
  ASSERT_TRUE(
      Eventually([&] { return Find(rt_a_.List(), inst->id()).has_value(); }));
  EXPECT_TRUE(rt_b_.List().empty());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(cr_->List("default", "hello"), inst->id());
    return i && i->phase() == "Running" && i->ready();
  }));
  auto listed = Find(cr_->List(), inst->id());
  EXPECT_EQ(listed->node(), "a");
  EXPECT_EQ(listed->host(), "127.0.0.1");
  EXPECT_GT(listed->port(), 0);
  EXPECT_TRUE(cr_->List("default", "other").empty());
  EXPECT_TRUE(cr_->List("team", "hello").empty());
  // The listener saw it ready.
  EXPECT_TRUE(Eventually([&] {
    return rec_.Saw([&](const InstanceChange& c) {
      return c.instance.id() == inst->id() && c.instance.ready() && !c.removed;
    });
  }));

  // The next goes to b (fewer assignments), then a, b again.
  std::vector<std::string> nodes;
  for (int i = 0; i < 3; ++i) {
    auto more = cr_->Start(Request());
    ASSERT_TRUE(more.ok()) << more.status();
    nodes.push_back(more->node());
  }
  EXPECT_EQ(nodes, (std::vector<std::string>{"b", "a", "b"}));
  ASSERT_TRUE(Eventually(
      [&] { return rt_a_.List().size() == 2u && rt_b_.List().size() == 2u; }));
  ASSERT_TRUE(Eventually([&] {
    int ready = 0;
    for (const auto& i : cr_->List()) ready += i.ready() ? 1 : 0;
    return ready == 4;
  }));
  EXPECT_EQ(rt_a_.starts() + rt_b_.starts(), 4);

  // A given id: used, and refused a second time.
  InstanceRequest req = Request();
  req.id = "hello-given";
  auto given = cr_->Start(req);
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->id(), "hello-given");
  EXPECT_EQ(cr_->Start(req).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(cr_->Start(InstanceRequest()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ClusterRuntimeTest, StopStopsOnItsNodeAndBothRecordsGo) {
  rt_b_.set_instant_stop(false);
  cr_->Start(Request()).IgnoreError();  // to a
  auto inst = cr_->Start(Request());    // to b
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_EQ(inst->node(), "b");
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(cr_->List(), inst->id());
    return i && i->ready();
  }));

  ASSERT_TRUE(cr_->Stop(inst->id(), absl::Seconds(20)).ok());
  // At once: shown Terminating (the assignment says stop).
  auto now = Find(cr_->List(), inst->id());
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->phase(), "Terminating");
  EXPECT_FALSE(now->ready());
  auto a = GetAssignment(&store_, "b", inst->id());
  EXPECT_TRUE(a->stop());
  EXPECT_EQ(a->grace_ms(), 20000);
  ASSERT_TRUE(Eventually([&] { return rt_b_.stops() == 1; }));
  // A shorter grace again brings the kill forward; a longer one does not.
  ASSERT_TRUE(cr_->Stop(inst->id(), absl::Seconds(2)).ok());
  EXPECT_EQ(GetAssignment(&store_, "b", inst->id())->grace_ms(), 2000);
  ASSERT_TRUE(cr_->Stop(inst->id(), absl::Seconds(60)).ok());
  EXPECT_EQ(GetAssignment(&store_, "b", inst->id())->grace_ms(), 2000);

  EXPECT_FALSE(rec_.Removed(inst->id()));
  rt_b_.FinishStops();
  ASSERT_TRUE(Eventually([&] { return rec_.Removed(inst->id()); }));
  EXPECT_FALSE(Find(cr_->List(), inst->id()).has_value());
  EXPECT_FALSE(GetAssignment(&store_, "b", inst->id()).has_value());
  EXPECT_FALSE(GetStatus(&store_, "b", inst->id()).has_value());
  EXPECT_TRUE(rt_b_.List().empty());
  EXPECT_EQ(rt_a_.List().size(), 1u);  // the other is untouched
  EXPECT_EQ(cr_->List().size(), 1u);
  EXPECT_EQ(cr_->Stop(inst->id(), absl::Seconds(1)).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ClusterRuntimeTest, LostNodesInstancesLeaveListAndTheirAssignmentsGo) {
  auto on_a = cr_->Start(Request());
  auto on_b = cr_->Start(Request());
  ASSERT_TRUE(on_a.ok() && on_b.ok());
  ASSERT_EQ(on_b->node(), "b");
  ASSERT_TRUE(Eventually([&] {
    int ready = 0;
    for (const auto& i : cr_->List()) ready += i.ready() ? 1 : 0;
    return ready == 2;
  }));

  // b's tidald dies: no more heartbeats. Within the timeout nothing changes.
  agent_b_->Stop();
  clock_.Advance(absl::Seconds(29));
  ASSERT_TRUE(SeenNow(*cr_, "a"));
  cr_->CheckLiveness();
  EXPECT_EQ(cr_->List().size(), 2u);
  EXPECT_TRUE(NodeOf(*cr_, "b")->live);

  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(SeenNow(*cr_, "a"));
  cr_->CheckLiveness();
  EXPECT_FALSE(NodeOf(*cr_, "b")->live);
  EXPECT_TRUE(NodeOf(*cr_, "a")->live);
  auto list = cr_->List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].id(), on_a->id());
  // The controller is told, with an event, so it replaces the instance.
  EXPECT_TRUE(rec_.Saw([&](const InstanceChange& c) {
    return c.removed && c.instance.id() == on_b->id() &&
           c.event_type == "Warning" && c.event_reason == "NodeLost" &&
           absl::StrContains(c.event_message, "node b");
  }));
  // Not leading: the records stay.
  EXPECT_TRUE(GetAssignment(&store_, "b", on_b->id()).has_value());
  // New instances go to a only.
  auto next = cr_->Start(Request());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->node(), "a");

  // Leading: the lost node's assignment and status are deleted (through
  // `writes`); a's are not.
  cr_->SetActing(true);
  ASSERT_TRUE(Eventually([&] {
    return !GetAssignment(&store_, "b", on_b->id()) &&
           !GetStatus(&store_, "b", on_b->id());
  }));
  EXPECT_TRUE(GetAssignment(&store_, "a", on_a->id()).has_value());
  EXPECT_TRUE(GetStatus(&store_, "a", on_a->id()).has_value());

  // b comes back (tidald restarted): its instance has no assignment any
  // more, so its agent stops it: no doubles.
  ASSERT_EQ(rt_b_.List().size(), 1u);
  agent_b_ =
      std::make_unique<NodeAgent>(&store_, &rt_b_, AgentOptions("b", &clock_));
  ASSERT_TRUE(agent_b_->Start().ok());
  ASSERT_TRUE(Eventually([&] { return rt_b_.List().empty(); }));
  ASSERT_TRUE(Eventually([&] {
    auto b = NodeOf(*cr_, "b");
    return b && b->live && b->heartbeating;
  }));
  ASSERT_TRUE(Eventually([&] {
    return !Find(cr_->List(), on_b->id()) &&
           !GetStatus(&store_, "b", on_b->id());
  }));
  EXPECT_EQ(cr_->List().size(), 2u);  // on_a and next
}

// A new leader (a ClusterRuntime that starts following the store now)
// treats every listed node as just seen: nobody is lost before a full
// timeout. It places nothing on a node it has not seen heartbeating.
TEST_F(ClusterRuntimeTest, NewLeaderWaitsAFullTimeoutBeforeDeclaringLoss) {
  auto on_b = cr_->Start(Request("hello"));
  auto on_b2 = cr_->Start(Request("hello"));  // a, then b
  ASSERT_TRUE(on_b.ok() && on_b2.ok());
  ASSERT_TRUE(Eventually([&] { return rt_b_.List().size() == 1u; }));
  ASSERT_TRUE(Eventually([&] {
    return GetStatus(&store_, "b", rt_b_.List()[0].id()).has_value();
  }));
  const std::string b_id = rt_b_.List()[0].id();
  agent_b_->Stop();
  clock_.Advance(absl::Minutes(5));  // b silent for long already

  ClusterRuntime fresh(&store_, &store_, &rt_a_, ClusterOptions("a", &clock_));
  Recorder rec;
  fresh.SetListener(rec.listener());
  ASSERT_TRUE(fresh.Adopt().ok());
  fresh.CheckLiveness();
  EXPECT_EQ(fresh.List().size(), 2u);
  EXPECT_TRUE(Find(fresh.List(), b_id).has_value());
  auto b = NodeOf(fresh, "b");
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->live);
  EXPECT_FALSE(b->heartbeating);
  EXPECT_EQ(b->assignments, 1);
  // a has more assignments, but b was never seen heartbeating.
  ASSERT_TRUE(Eventually([&] { return NodeOf(fresh, "a")->heartbeating; }));
  for (int i = 0; i < 2; ++i) {
    auto inst = fresh.Start(Request("other"));
    ASSERT_TRUE(inst.ok()) << inst.status();
    EXPECT_EQ(inst->node(), "a");
  }

  clock_.Advance(absl::Seconds(31));
  ASSERT_TRUE(SeenNow(fresh, "a"));
  fresh.CheckLiveness();
  EXPECT_FALSE(Find(fresh.List(), b_id).has_value());
  EXPECT_TRUE(rec.Removed(b_id));
  fresh.Shutdown(false);
}

TEST_F(ClusterRuntimeTest, OpenLogsOfLocalAndRemoteInstances) {
  auto on_a = cr_->Start(Request());
  auto on_b = cr_->Start(Request());
  ASSERT_TRUE(on_a.ok() && on_b.ok());
  ASSERT_TRUE(Eventually([&] {
    return Find(rt_a_.List(), on_a->id()).has_value() &&
           Find(rt_b_.List(), on_b->id()).has_value();
  }));
  rt_a_.AppendLog(on_a->id(), "hello from a\n");
  auto stream = cr_->OpenLogs(on_a->id(), LogOptions());
  ASSERT_TRUE(stream.ok()) << stream.status();
  auto chunk = (*stream)->Next(absl::Seconds(1));
  ASSERT_TRUE(chunk.ok());
  EXPECT_EQ(*chunk, "hello from a\n");

  auto remote = cr_->OpenLogs(on_b->id(), LogOptions());
  EXPECT_EQ(remote.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(remote.status().message(),
            absl::StrCat("instance ", on_b->id(),
                         " runs on node b; ask its API at 10.0.0.2:7070"));
  // Unknown here and to the local runtime.
  EXPECT_EQ(cr_->OpenLogs("nope", LogOptions()).status().code(),
            absl::StatusCode::kNotFound);

  // Usage: the local runtime's figures, and the other node's from its
  // heartbeat.
  rt_a_.SetUsage(on_a->id(), 1.5, 1 << 20, clock_.Now());
  auto usage = cr_->Usage();
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].instance_id, on_a->id());
  rt_b_.SetUsage(on_b->id(), 2.5, 3 << 20, clock_.Now());
  ASSERT_TRUE(Eventually([&] { return cr_->Usage().size() == 2; }));
  for (const InstanceUsage& u : cr_->Usage("default", "hello")) {
    if (u.instance_id != on_b->id()) continue;
    EXPECT_DOUBLE_EQ(u.cpu_seconds, 2.5);
    EXPECT_EQ(u.memory_bytes, 3 << 20);
    EXPECT_EQ(u.sampled_at, clock_.Now());
  }
  EXPECT_EQ(cr_->Usage("default", "other").size(), 0u);
}

// The gRPC opener with peer TLS reads its files at every call: one it
// cannot read is an error naming the flag and the file, before dialling.
TEST(GrpcRemoteLogOpenerTest, UnreadableTlsFilesAreNamed) {
  PeerTls tls;
  tls.enabled = true;
  tls.ca_file = "/nonexistent/peer-ca.crt";
  auto open = GrpcRemoteLogOpener(nullptr, tls);
  RemoteLogTarget target{"b", "127.0.0.1:1", "default", "web", "web-1"};
  auto logs = open(target, LogOptions{});
  ASSERT_FALSE(logs.ok());
  EXPECT_TRUE(absl::StrContains(logs.status().message(),
                                "--tls-peer-ca: /nonexistent/peer-ca.crt"))
      << logs.status();
  target.api_address.clear();
  EXPECT_EQ(open(target, LogOptions{}).status().code(),
            absl::StatusCode::kUnavailable);
}

// instance on another node come from that node; asked on another node's
// behalf (local_only), the answer names the node instead.
TEST_F(ClusterRuntimeTest, OpenLogsOfARemoteInstanceAsksItsNode) {
  auto on_a = cr_->Start(Request());  // ties go to "a"
  auto on_b = cr_->Start(Request());
  ASSERT_TRUE(on_a.ok() && on_b.ok());
  ASSERT_TRUE(
      Eventually([&] { return Find(rt_b_.List(), on_b->id()).has_value(); }));
  rt_b_.AppendLog(on_b->id(), "hello from b\n");
  std::vector<RemoteLogTarget> asked;
  ClusterRuntime::Options o = ClusterOptions("a", &clock_);
  o.remote_logs = [&](const RemoteLogTarget& t, const LogOptions& lo) {
    asked.push_back(t);
    return rt_b_.OpenLogs(t.instance_id, lo);
  };
  ClusterRuntime cr(&store_, &store_, &rt_a_, o);
  ASSERT_TRUE(cr.Adopt().ok());
  ASSERT_TRUE(Eventually([&] {
    auto b = NodeOf(cr, "b");
    return b && b->heartbeating && Find(cr.List(), on_b->id()).has_value();
  }));
  auto stream = cr.OpenLogs(on_b->id(), LogOptions());
  ASSERT_TRUE(stream.ok()) << stream.status();
  auto chunk = (*stream)->Next(absl::Seconds(1));
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_EQ(*chunk, "hello from b\n");
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].node, "b");
  EXPECT_EQ(asked[0].api_address, "10.0.0.2:7070");
  EXPECT_EQ(asked[0].namespace_, "default");
  EXPECT_EQ(asked[0].app, "hello");
  EXPECT_EQ(asked[0].instance_id, on_b->id());

  LogOptions local_only;
  local_only.local_only = true;
  auto refused = cr.OpenLogs(on_b->id(), local_only);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(asked.size(), 1u);
  cr.Shutdown(false);
}

// Issue 16, `logs --previous` in HA mode: an instance that stopped on
// another node is listed from that node's heartbeat (NodeRecord.stopped) and
// its log is read from that node with `previous`; asked on another node's
// behalf (local_only), the answer names the node instead.
TEST_F(ClusterRuntimeTest, StoppedInstancesOfAnotherNodeAreReadFromIt) {
  rt_b_.set_instant_stop(true);
  auto on_a = cr_->Start(Request());  // ties go to "a"
  auto on_b = cr_->Start(Request());
  ASSERT_TRUE(on_a.ok() && on_b.ok());
  ASSERT_TRUE(
      Eventually([&] { return Find(rt_b_.List(), on_b->id()).has_value(); }));
  rt_b_.AppendLog(on_b->id(), "crashed on b\n");
  std::vector<std::pair<RemoteLogTarget, LogOptions>> asked;
  ClusterRuntime::Options o = ClusterOptions("a", &clock_);
  o.remote_logs = [&](const RemoteLogTarget& t, const LogOptions& lo) {
    asked.emplace_back(t, lo);
    return rt_b_.OpenLogs(t.instance_id, lo);
  };
  ClusterRuntime cr(&store_, &store_, &rt_a_, o);
  ASSERT_TRUE(cr.Adopt().ok());
  EXPECT_TRUE(cr.StoppedInstances("default", "hello").empty());
  ASSERT_TRUE(cr_->Stop(on_b->id(), absl::ZeroDuration()).ok());
  const StoppedInstance want{on_b->id(), "default", "hello"};
  ASSERT_TRUE(Eventually([&] {
    return cr.StoppedInstances("default", "hello") ==
               std::vector<StoppedInstance>{want} &&
           !Find(cr.List(), on_b->id()).has_value();
  }));
  EXPECT_EQ(cr.StoppedInstances(), std::vector<StoppedInstance>{want});
  EXPECT_TRUE(cr.StoppedInstances("default", "other").empty());

  auto stream = cr.OpenLogs(on_b->id(), LogOptions());
  ASSERT_TRUE(stream.ok()) << stream.status();
  auto chunk = (*stream)->Next(absl::Seconds(1));
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_EQ(*chunk, "crashed on b\n");
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].first.node, "b");
  EXPECT_EQ(asked[0].first.api_address, "10.0.0.2:7070");
  EXPECT_EQ(asked[0].first.namespace_, "default");
  EXPECT_EQ(asked[0].first.app, "hello");
  EXPECT_TRUE(asked[0].second.previous);

  LogOptions local_only;
  local_only.local_only = true;
  auto refused = cr.OpenLogs(on_b->id(), local_only);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(),
            absl::StrCat("instance ", on_b->id(),
                         " ran on node b; ask its API at 10.0.0.2:7070"));
  EXPECT_EQ(asked.size(), 1u);
  // Never heard of anywhere: the local runtime's NotFound.
  EXPECT_EQ(cr.OpenLogs("nope", LogOptions()).status().code(),
            absl::StatusCode::kNotFound);
  cr.Shutdown(false);
}

// Writes go through `writes` (the leader's fenced store): a standby's
// refuses, and nothing is written.
TEST_F(ClusterRuntimeTest, WritesGoThroughTheWritesStore) {
  auto inst = cr_->Start(Request());
  ASSERT_TRUE(inst.ok());
  RefusingStore refusing(&store_);
  ClusterRuntime standby(&store_, &refusing, &rt_b_,
                         ClusterOptions("b", &clock_));
  ASSERT_TRUE(standby.Adopt().ok());
  ASSERT_TRUE(Eventually([&] { return NodeOf(standby, "b")->heartbeating; }));
  const int64_t txns = store_.txn_count();
  auto refused = standby.Start(Request());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(), "not the leader");
  EXPECT_EQ(standby.Stop(inst->id(), absl::Seconds(1)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refusing.refused.load(), 2);
  // It still sees everything (the API of a standby lists from it).
  ASSERT_TRUE(
      Eventually([&] { return Find(standby.List(), inst->id()).has_value(); }));
  EXPECT_FALSE(GetAssignment(&store_, "a", inst->id())->stop());
  (void)txns;
  standby.Shutdown(false);
}

TEST(ClusterRuntimeAloneTest, UnavailableWithoutALiveNode) {
  FakeClock clock;
  MemoryStore store;
  ClusterRuntime cr(&store, &store, nullptr, ClusterOptions("a", &clock));
  EXPECT_EQ(cr.Start(Request()).status().code(),
            absl::StatusCode::kUnavailable);  // not following the store yet
  ASSERT_TRUE(cr.Adopt().ok());
  auto none = cr.Start(Request());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(none.status().message(), "no live node"))
      << none.status();
  // Its own node's record is enough (this process runs its agent).
  ASSERT_TRUE(Beat(&store, "a", 1).ok());
  ASSERT_TRUE(Eventually([&] { return cr.Start(Request()).ok(); }));
  cr.Shutdown(false);
}

// An app's replicas spread over the nodes before the emptiest node takes
// them all; a node gone quiet for a few heartbeats (dead, not yet lost) gets
// none while another node can take them.
TEST(ClusterRuntimeAloneTest, ReplicasSpreadAndQuietNodesAreSkipped) {
  FakeClock clock;
  MemoryStore store;
  ClusterRuntime cr(&store, &store, nullptr, ClusterOptions("a", &clock));
  ASSERT_TRUE(cr.Adopt().ok());
  int64_t beat = 0;
  auto beat_all = [&](std::vector<std::string> nodes) {
    ++beat;
    for (const auto& n : nodes) ASSERT_TRUE(Beat(&store, n, beat).ok());
    ASSERT_TRUE(Eventually([&] {
      for (const auto& n : nodes) {
        auto info = NodeOf(cr, n);
        if (!info || !info->heartbeating || info->last_seen != clock.Now())
          return false;
      }
      return true;
    }));
  };
  beat_all({"c", "d", "e"});
  // c and d run two instances of another app each; e none.
  for (const char* id : {"other-1", "other-2"}) {
    ASSERT_TRUE(PutAssignment(&store, "c",
                              MakeAssignment(absl::StrCat(id, "c"), "other"))
                    .ok());
    ASSERT_TRUE(PutAssignment(&store, "d",
                              MakeAssignment(absl::StrCat(id, "d"), "other"))
                    .ok());
  }
  ASSERT_TRUE(Eventually([&] { return cr.List().size() == 4u; }));
  std::vector<std::string> nodes;
  for (int i = 0; i < 3; ++i) {
    auto inst = cr.Start(Request("hello"));
    ASSERT_TRUE(inst.ok()) << inst.status();
    nodes.push_back(inst->node());
  }
  // Not e, e, then c (the fewest instances each time): one per node.
  EXPECT_EQ(nodes, (std::vector<std::string>{"e", "c", "d"}));

  // e (the emptiest) falls silent for more than three heartbeats: a new app
  // goes to c and d, which are heard from, until e beats again.
  clock.Advance(absl::Seconds(4));
  beat_all({"c", "d"});
  nodes.clear();
  for (int i = 0; i < 2; ++i) {
    auto inst = cr.Start(Request("fresh"));
    ASSERT_TRUE(inst.ok()) << inst.status();
    nodes.push_back(inst->node());
  }
  EXPECT_EQ(nodes, (std::vector<std::string>{"c", "d"}));
  beat_all({"c", "d", "e"});
  auto back = cr.Start(Request("fresh"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->node(), "e");
  // Only quiet nodes left: they still take instances (not yet lost).
  clock.Advance(absl::Seconds(5));
  auto quiet = cr.Start(Request("late"));
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  cr.Shutdown(false);
}

// A node without an agent (heartbeats written by hand): what is assigned to
// it shows in List at once (phase Starting), so a reconcile loop that reads
// List after each Start never starts more than it wants.
TEST(ClusterRuntimeAloneTest, AssignedButUnreportedInstancesAreListed) {
  FakeClock clock;
  MemoryStore store;
  ASSERT_TRUE(Beat(&store, "c", 1).ok());
  ClusterRuntime cr(&store, &store, nullptr, ClusterOptions("a", &clock));
  Recorder rec;
  cr.SetListener(rec.listener());
  ASSERT_TRUE(cr.Adopt().ok());
  ASSERT_TRUE(Beat(&store, "c", 2).ok());  // seen heartbeating
  ASSERT_TRUE(Eventually([&] { return NodeOf(cr, "c")->heartbeating; }));

  for (int round = 0; round < 5; ++round) {
    while (cr.List("default", "hello").size() < 2) {
      ASSERT_TRUE(cr.Start(Request()).ok());
    }
  }
  auto assigned = store.List(keys::AssignmentPrefix("c"));
  ASSERT_TRUE(assigned.ok());
  EXPECT_EQ(assigned->items.size(), 2u);
  auto list = cr.List();
  ASSERT_EQ(list.size(), 2u);
  for (const auto& i : list) {
    EXPECT_EQ(i.phase(), "Starting");
    EXPECT_EQ(i.node(), "c");
    EXPECT_EQ(i.app(), "hello");
    EXPECT_EQ(i.template_hash(), "h1");
  }

  // Another writer's assignment shows through the watch.
  ASSERT_TRUE(PutAssignment(&store, "c", MakeAssignment("hello-other")).ok());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(cr.List(), "hello-other");
    return i && i->phase() == "Starting" && i->node() == "c";
  }));
  EXPECT_TRUE(Eventually([&] {
    return rec.Saw([](const InstanceChange& c) {
      return c.instance.id() == "hello-other" && !c.removed;
    });
  }));
  // Asked to stop, not reported yet: Terminating, still listed.
  ASSERT_TRUE(cr.Stop("hello-other", absl::Seconds(3)).ok());
  auto stopping = Find(cr.List(), "hello-other");
  ASSERT_TRUE(stopping.has_value());
  EXPECT_EQ(stopping->phase(), "Terminating");
  // A status record without an assignment (its node stops it): Terminating.
  tidal::v1::Instance orphan;
  orphan.set_id("hello-orphan");
  orphan.set_namespace_("default");
  orphan.set_app("hello");
  orphan.set_phase("Running");
  orphan.set_ready(true);
  ASSERT_TRUE(store
                  .Txn({Op::Put(keys::Instance("c", "hello-orphan"),
                                orphan.SerializeAsString())})
                  .ok());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(cr.List(), "hello-orphan");
    return i && i->phase() == "Terminating" && !i->ready();
  }));
  EXPECT_TRUE(cr.Stop("hello-orphan", absl::Seconds(1)).ok());
  cr.Shutdown(false);
}

// A watch that falls behind (OutOfRange) is listed again: nothing is missed.
TEST(ClusterRuntimeAloneTest, WatchThatFellBehindListsAgain) {
  FakeClock clock;
  MemoryStore store(/*max_backlog=*/3);
  ClusterRuntime cr(&store, &store, nullptr, ClusterOptions("a", &clock));
  Recorder rec;
  cr.SetListener(rec.listener());
  ASSERT_TRUE(cr.Adopt().ok());
  std::vector<Op> ops;
  for (int i = 0; i < 10; ++i) {
    std::string id = absl::StrCat("hello-", i);
    ops.push_back(Op::Put(keys::Assignment("c", id),
                          MakeAssignment(id).SerializeAsString()));
  }
  ASSERT_TRUE(store.Txn(ops).ok());
  ASSERT_TRUE(Eventually([&] { return cr.List().size() == 10u; }));
  EXPECT_TRUE(Eventually([&] {
    std::set<std::string> told;
    for (const auto& c : rec.changes()) told.insert(c.instance.id());
    return told.size() == 10u;
  }));
  cr.Shutdown(false);
}

// The whole path with a real process: Start through the cluster runtime,
// node a's agent runs tidal-sample-app under the assignment's id, its status
// comes back ready with where it listens, logs are read locally, Stop ends
// the process and both records.
TEST(ClusterRuntimeProcessTest, RealInstanceFromStartToStop) {
  ::tidal::testing::TempDir dir;
  ProcessRuntimeOptions ro;
  ro.data_dir = dir.path();
  // Under the ephemeral range (process_runtime_test.cc says why).
  ro.port_min = 18000;
  ro.port_max = 19999;
  ro.extra_path = {::tidal::testing::BuildDir() + "/examples"};
  FakeClock clock;
  MemoryStore store;
  ProcessRuntime rt(ro);
  NodeAgent agent(&store, &rt, AgentOptions("a", &clock));
  ASSERT_TRUE(agent.Start().ok());
  ClusterRuntime cr(&store, &store, &rt, ClusterOptions("a", &clock));
  Recorder rec;
  cr.SetListener(rec.listener());
  ASSERT_TRUE(cr.Adopt().ok());

  InstanceRequest req = Request();
  req.tmpl.clear_command();
  req.tmpl.clear_args();
  req.tmpl.add_command("tidal-sample-app");
  auto inst = cr.Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  EXPECT_EQ(inst->node(), "a");
  std::optional<tidal::v1::Instance> seen;
  ASSERT_TRUE(Eventually([&] {
    seen = Find(cr.List(), inst->id());
    return seen && seen->ready();
  }));
  EXPECT_EQ(seen->phase(), "Running");
  EXPECT_EQ(seen->host(), "127.0.0.1");
  EXPECT_EQ(Find(rt.List(), inst->id())->pid(), seen->pid());
  auto r = ::tidal::testing::HttpGet(seen->port(), "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(::tidal::testing::ReadLogs(cr, inst->id()),
                             "listening on");
  }));

  ASSERT_TRUE(cr.Stop(inst->id(), absl::Seconds(5)).ok());
  ASSERT_TRUE(Eventually([&] { return rec.Removed(inst->id()); }));
  EXPECT_TRUE(rt.List().empty());
  EXPECT_TRUE(
      ::tidal::testing::ReadFile(absl::StrCat("/proc/", seen->pid(), "/stat"))
          .empty());
  EXPECT_FALSE(GetAssignment(&store, "a", inst->id()).has_value());
  EXPECT_FALSE(GetStatus(&store, "a", inst->id()).has_value());
  EXPECT_TRUE(cr.List().empty());
  cr.Shutdown(false);
  agent.Stop();
  rt.Shutdown(true);
}

}  // namespace
}  // namespace tidal::ha
