// StoreRouteSink (the leader's routes in the store) and RouteWatcher (every
// node applies them to its gateway), over a MemoryStore: two nodes see the
// leader's route with its weights, lose it on RemoveRoute, re-list after
// falling behind; a drain waits for another node's in-flight requests (from
// its metrics report) or the grace period.

#include "ha/store_routes.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "common/proto_time.h"
#include "fakes/eventually.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_metrics.h"
#include "fakes/memory_store.h"
#include "ha/cluster_metrics.h"
#include "ha/metrics_publisher.h"
#include "ha/route_watcher.h"
#include "ha/test_targets.h"
#include "store/keys.h"
#include "tidal/v1/traffic.pb.h"

namespace tidal::ha {
namespace {

using ::tidal::testing::Eventually;
using tidal::v1::App;
using tidal::v1::Instance;

App MakeApp(const std::string& name) {
  App app;
  app.mutable_metadata()->set_namespace_("default");
  app.mutable_metadata()->set_name(name);
  app.mutable_spec()->mutable_template_()->set_concurrency(5);
  return app;
}

Instance MakeInstance(const std::string& id, int64_t revision,
                      const std::string& host, int port) {
  Instance inst;
  inst.set_id(id);
  inst.set_namespace_("default");
  inst.set_app("hello");
  inst.set_revision(revision);
  inst.set_host(host);
  inst.set_port(port);
  inst.set_ready(true);
  return inst;
}

int Weight(const gateway::Route& route, int64_t revision) {
  for (const auto& r : route.revisions) {
    if (r.revision == revision) return r.weight_percent;
  }
  return -1;
}

std::vector<std::string> Ids(const std::optional<gateway::Route>& route) {
  std::vector<std::string> ids;
  if (!route) return ids;
  for (const auto& r : route->revisions) {
    for (const auto& e : r.endpoints) ids.push_back(e.instance_id);
  }
  return ids;
}

class RoutesTest : public ::testing::Test {
 protected:
  RoutesTest()
      : watcher_a_(&store_, &target_a_, RouteWatcher::Options()),
        watcher_b_(&store_, &target_b_, RouteWatcher::Options()) {
    watcher_a_.Start();
    watcher_b_.Start();
  }

  testing::MemoryStore store_;
  testing::FakeClock clock_;
  fakes::RecordingTarget target_a_, target_b_;  // node a (leader), node b
  RouteWatcher watcher_a_, watcher_b_;
};

TEST_F(RoutesTest, EveryNodeRoutesThePublishedRouteWithWeights) {
  StoreRouteSink::Options o;
  o.clock = &clock_;
  o.views = {&watcher_a_};
  StoreRouteSink sink(&store_, o);
  sink.UpdateRoute(MakeApp("hello"), {MakeInstance("x", 1, "10.0.0.1", 20001),
                                      MakeInstance("y", 2, "10.0.0.2", 20002)});
  sink.SetWeights("default", "hello", {{2, 20}});
  for (auto* t : {&target_a_, &target_b_}) {
    ASSERT_TRUE(Eventually([&] {
      auto r = t->route("default/hello");
      return r && Weight(*r, 2) == 20;
    }));
    auto r = t->route("default/hello");
    EXPECT_EQ(r->concurrency, 5);
    EXPECT_EQ(Weight(*r, 1), 80);  // what the split leaves
    ASSERT_EQ(r->revisions.size(), 2u);
    // Instances on other nodes are reached at their node's address.
    EXPECT_EQ(r->revisions[0].endpoints[0].host, "10.0.0.1");
    EXPECT_EQ(r->revisions[1].endpoints[0].host, "10.0.0.2");
    EXPECT_EQ(r->revisions[1].endpoints[0].port, 20002);
  }

  // Unchanged routes are not written again.
  const int64_t writes = sink.writes();
  const int64_t hello_version =
      store_.Get(keys::Route("default", "hello"))->resource_version;
  sink.UpdateRoute(MakeApp("hello"), {MakeInstance("x", 1, "10.0.0.1", 20001),
                                      MakeInstance("y", 2, "10.0.0.2", 20002)});
  sink.SetWeights("default", "hello", {{2, 20}});
  App other = MakeApp("other");
  sink.UpdateRoute(other, {});
  ASSERT_TRUE(
      Eventually([&] { return target_b_.route("default/other").has_value(); }));
  EXPECT_TRUE(Eventually([&] { return sink.writes() == writes + 1; }));
  EXPECT_EQ(store_.Get(keys::Route("default", "hello"))->resource_version,
            hello_version);
  // No ready instance: a route without endpoints (requests are held).
  EXPECT_TRUE(Ids(target_b_.route("default/other")).empty());

  sink.RemoveRoute("default", "hello");
  for (auto* t : {&target_a_, &target_b_}) {
    EXPECT_TRUE(
        Eventually([&] { return !t->route("default/hello").has_value(); }));
  }
  auto kv = store_.Get(keys::Route("default", "hello"));
  EXPECT_TRUE(absl::IsNotFound(kv.status()));
}

// Every node's gateway fills the instances in the same order, the leader's
// (the reverse of the order a scale-down stops them in), whatever order the
// instances came in.
TEST_F(RoutesTest, EveryNodeGetsTheOrderToFillTheInstancesIn) {
  StoreRouteSink::Options o;
  o.clock = &clock_;
  StoreRouteSink sink(&store_, o);
  auto started = [](Instance inst, int64_t second) {
    *inst.mutable_start_time() = ToProtoTime(absl::FromUnixSeconds(second));
    return inst;
  };
  sink.UpdateRoute(MakeApp("hello"),
                   {started(MakeInstance("new", 1, "10.0.0.1", 20001), 300),
                    started(MakeInstance("old", 1, "10.0.0.2", 20002), 100),
                    started(MakeInstance("mid", 1, "10.0.0.3", 20003), 200)});
  for (auto* t : {&target_a_, &target_b_}) {
    ASSERT_TRUE(
        Eventually([&] { return Ids(t->route("default/hello")).size() == 3; }));
    EXPECT_EQ(Ids(t->route("default/hello")),
              (std::vector<std::string>{"old", "mid", "new"}));
  }
}

// An app's request timeouts and its HTTP/2 relaying reach every node's
// gateway, not only the leader's (they once stayed behind in the record).
TEST_F(RoutesTest, EveryNodeGetsTheAppsTimeoutsAndProtocol) {
  StoreRouteSink::Options o;
  o.clock = &clock_;
  StoreRouteSink sink(&store_, o);
  App app = MakeApp("hello");
  auto* t = app.mutable_spec()->mutable_template_();
  t->set_timeout_seconds(30);
  t->set_response_start_timeout_seconds(7);
  t->set_idle_timeout_seconds(90);
  t->set_protocol("grpc");
  sink.UpdateRoute(app, {MakeInstance("x", 1, "10.0.0.1", 20001)});
  for (auto* target : {&target_a_, &target_b_}) {
    ASSERT_TRUE(
        Eventually([&] { return target->route("default/hello").has_value(); }));
    auto r = target->route("default/hello");
    EXPECT_EQ(r->timeout, absl::Seconds(30));
    EXPECT_EQ(r->response_start_timeout, absl::Seconds(7));
    EXPECT_EQ(r->idle_timeout, absl::Seconds(90));
    EXPECT_TRUE(r->h2);
  }
  // Back to the defaults: the change is written and applied too.
  App plain = MakeApp("hello");
  sink.UpdateRoute(plain, {MakeInstance("x", 1, "10.0.0.1", 20001)});
  for (auto* target : {&target_a_, &target_b_}) {
    EXPECT_TRUE(Eventually([&] {
      auto r = target->route("default/hello");
      return r && !r->h2 && r->timeout == absl::ZeroDuration() &&
             r->idle_timeout == absl::ZeroDuration();
    }));
  }
}

TEST_F(RoutesTest, NewLeaderDoesNotRewriteIdenticalRoutes) {
  StoreRouteSink::Options o;
  o.clock = &clock_;
  {
    StoreRouteSink first(&store_, o);
    first.UpdateRoute(MakeApp("hello"),
                      {MakeInstance("x", 1, "10.0.0.1", 20001)});
    ASSERT_TRUE(Eventually([&] { return first.writes() == 1; }));
  }
  const int64_t hello_version =
      store_.Get(keys::Route("default", "hello"))->resource_version;
  StoreRouteSink second(&store_, o);
  second.UpdateRoute(MakeApp("hello"),
                     {MakeInstance("x", 1, "10.0.0.1", 20001)});
  second.UpdateRoute(MakeApp("other"), {});
  ASSERT_TRUE(Eventually([&] { return second.writes() == 1; }));
  EXPECT_TRUE(store_.Get(keys::Route("default", "other")).ok());
  // The identical route was left as it was.
  EXPECT_EQ(store_.Get(keys::Route("default", "hello"))->resource_version,
            hello_version);
}

// Leadership went elsewhere and came back: what the sink believed it had
// published may have been overwritten; Resync compares with the store again.
TEST_F(RoutesTest, ResyncRepublishesRoutesAnotherLeaderChanged) {
  StoreRouteSink::Options o;
  o.clock = &clock_;
  StoreRouteSink sink(&store_, o);
  sink.UpdateRoute(MakeApp("hello"), {MakeInstance("x", 1, "10.0.0.1", 1)});
  ASSERT_TRUE(Eventually([&] {
    return Ids(target_b_.route("default/hello")) ==
           std::vector<std::string>{"x"};
  }));
  // Another leader's route.
  tidal::v1::RouteRecord other;
  other.set_namespace_("default");
  other.set_app("hello");
  other.add_revisions()->add_endpoints()->set_instance_id("z");
  ASSERT_TRUE(store_
                  .Txn({Op::Put(keys::Route("default", "hello"),
                                other.SerializeAsString())})
                  .ok());
  ASSERT_TRUE(Eventually([&] {
    return Ids(target_b_.route("default/hello")) ==
           std::vector<std::string>{"z"};
  }));
  sink.Resync();
  sink.UpdateRoute(MakeApp("hello"), {MakeInstance("x", 1, "10.0.0.1", 1)});
  EXPECT_TRUE(Eventually([&] {
    return Ids(target_b_.route("default/hello")) ==
           std::vector<std::string>{"x"};
  }));
}

TEST_F(RoutesTest, FailedWritesAreRetried) {
  StoreRouteSink::Options o;
  o.clock = &clock_;
  o.retry = absl::Milliseconds(5);
  StoreRouteSink sink(&store_, o);
  store_.FailTxns(absl::UnavailableError("etcd down"));
  sink.UpdateRoute(MakeApp("hello"), {MakeInstance("x", 1, "10.0.0.1", 20001)});
  const int64_t txns = store_.txn_count();
  store_.FailTxns(absl::OkStatus());
  ASSERT_TRUE(Eventually(
      [&] { return Ids(target_b_.route("default/hello")).size() == 1; }));
  EXPECT_GT(store_.txn_count(), txns);
}

TEST(RouteWatcherTest, RelistsAfterFallingBehind) {
  testing::MemoryStore store(/*max_backlog=*/2);
  fakes::RecordingTarget target;
  RouteWatcher::Options wo;
  wo.poll = absl::Milliseconds(20);
  RouteWatcher watcher(&store, &target, wo);
  auto put = [&](const std::string& app, int port) {
    tidal::v1::RouteRecord r;
    r.set_namespace_("default");
    r.set_app(app);
    auto* rev = r.add_revisions();
    rev->set_revision(1);
    rev->set_weight_percent(100);
    auto* ep = rev->add_endpoints();
    ep->set_instance_id(app + "-1");
    ep->set_host("10.0.0.9");
    ep->set_port(port);
    ASSERT_TRUE(
        store.Txn({Op::Put(keys::Route("default", app), r.SerializeAsString())})
            .ok());
  };
  put("gone", 1);
  watcher.Start();
  ASSERT_TRUE(Eventually([&] { return watcher.synced(); }));
  ASSERT_TRUE(target.route("default/gone").has_value());
  // Many changes at once: the watch falls behind and the watcher lists again
  // (the deleted app disappears, the last port wins).
  ASSERT_TRUE(store.Delete(keys::Route("default", "gone")).ok());
  for (int i = 0; i < 20; ++i) put("busy", 30000 + i);
  ASSERT_TRUE(Eventually([&] {
    auto r = target.route("default/busy");
    return r && r->revisions[0].endpoints[0].port == 30019 &&
           !target.route("default/gone").has_value();
  }));
  EXPECT_GE(watcher.applied_version(), store.CurrentVersion().value());
}

// Node b's gateway still serves requests on the drained instance: the
// leader stops it only once b's metrics report says they are done (or the
// grace period passes), and only after b has applied the route without it.
TEST_F(RoutesTest, DrainWaitsForOtherNodesInFlightThenGrace) {
  ClusterMetrics::Options co;
  co.node = "a";
  co.clock = &clock_;
  co.live_nodes = [] { return std::vector<std::string>{"a", "b"}; };
  ClusterMetrics cluster(&store_, co);
  cluster.Start();
  testing::FakeMetrics metrics_b(&clock_);
  MetricsPublisher::Options po;
  po.node = "b";
  po.clock = &clock_;
  po.local = &metrics_b;
  po.traffic = [] { return std::vector<gateway::CumulativeTraffic>{}; };
  po.routes = &watcher_b_;
  MetricsPublisher publisher_b(&store_, po);

  StoreRouteSink::Options o;
  o.clock = &clock_;
  o.views = {&watcher_a_, &cluster};
  StoreRouteSink sink(&store_, o);
  Instance x = MakeInstance("x", 1, "10.0.0.1", 20001);
  Instance y = MakeInstance("y", 1, "10.0.0.2", 20002);
  sink.UpdateRoute(MakeApp("hello"), {x, y});
  ASSERT_TRUE(Eventually(
      [&] { return Ids(target_b_.route("default/hello")).size() == 2; }));

  target_b_.set_in_flight("x", 2);
  ASSERT_TRUE(publisher_b.PublishOnce().ok());
  std::atomic<bool> stopped_x{false};
  sink.Drain(x, absl::Seconds(30), [&] { stopped_x = true; });
  EXPECT_TRUE(sink.IsDraining("x"));
  // Out of every node's route at once.
  for (auto* t : {&target_a_, &target_b_}) {
    ASSERT_TRUE(Eventually([&] {
      return Ids(t->route("default/hello")) == std::vector<std::string>{"y"};
    }));
  }
  // b reports its two requests after applying the route without x.
  ASSERT_TRUE(publisher_b.PublishOnce().ok());
  ASSERT_TRUE(Eventually([&] {
    return cluster.InFlight("x", watcher_b_.applied_version()) == 2;
  }));
  EXPECT_FALSE(stopped_x.load());
  // They finish: stopped without waiting for the grace (the clock stands).
  target_b_.set_in_flight("x", 0);
  ASSERT_TRUE(publisher_b.PublishOnce().ok());
  EXPECT_TRUE(Eventually([&] { return stopped_x.load(); }));
  EXPECT_TRUE(Eventually([&] { return !sink.IsDraining("x"); }));

  // The reconciler sees x gone. y: b keeps a request in flight; the grace
  // period ends the drain.
  sink.UpdateRoute(MakeApp("hello"), {y});
  target_b_.set_in_flight("y", 1);
  std::atomic<bool> stopped_y{false};
  sink.Drain(y, absl::Seconds(30), [&] { stopped_y = true; });
  ASSERT_TRUE(Eventually(
      [&] { return Ids(target_b_.route("default/hello")).empty(); }));
  ASSERT_TRUE(publisher_b.PublishOnce().ok());
  ASSERT_TRUE(Eventually([&] {
    return cluster.InFlight("y", watcher_b_.applied_version()) == 1;
  }));
  EXPECT_FALSE(stopped_y.load());
  clock_.Advance(absl::Seconds(31));
  EXPECT_TRUE(Eventually([&] { return stopped_y.load(); }));
}

// A live node that never reports: the drain cannot know, so it lasts the
// grace period.
TEST_F(RoutesTest, DrainWithASilentLiveNodeLastsTheGrace) {
  ClusterMetrics::Options co;
  co.node = "a";
  co.clock = &clock_;
  co.live_nodes = [] { return std::vector<std::string>{"a", "b"}; };
  ClusterMetrics cluster(&store_, co);
  cluster.Start();
  StoreRouteSink::Options o;
  o.clock = &clock_;
  o.views = {&watcher_a_, &cluster};
  StoreRouteSink sink(&store_, o);
  Instance x = MakeInstance("x", 1, "10.0.0.1", 20001);
  sink.UpdateRoute(MakeApp("hello"), {x});
  ASSERT_TRUE(Eventually(
      [&] { return Ids(target_a_.route("default/hello")).size() == 1; }));
  std::atomic<bool> stopped{false};
  sink.Drain(x, absl::Seconds(10), [&] { stopped = true; });
  ASSERT_TRUE(Eventually(
      [&] { return Ids(target_a_.route("default/hello")).empty(); }));
  EXPECT_EQ(cluster.InFlight("x", watcher_a_.applied_version()), -1);
  EXPECT_FALSE(stopped.load());
  clock_.Advance(absl::Seconds(11));
  EXPECT_TRUE(Eventually([&] { return stopped.load(); }));
}

}  // namespace
}  // namespace tidal::ha
