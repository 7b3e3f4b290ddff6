// GatewayRoutes over a recording RouteTarget and a fake clock: the routes it
// publishes (ready instances by revision, traffic split), removal, and drain
// timing (in-flight requests, grace period on the injected clock).

#include "gateway/route_sink.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/proto_time.h"
#include "fakes/eventually.h"
#include "fakes/fake_clock.h"

namespace tidal::gateway {
namespace {

using ::tidal::testing::Eventually;
using tidal::v1::App;
using tidal::v1::Instance;

// Records the last route of each app and answers InFlight from a table the
// test sets. Thread-safe (the drainer thread reads InFlight).
class RecordingTarget : public RouteTarget {
 public:
  void SetRoute(const Route& route) override {
    absl::MutexLock l(&mu_);
    routes_[route.ns + "/" + route.app] = route;
    ++sets_;
  }
  void RemoveRoute(const std::string& ns, const std::string& app) override {
    absl::MutexLock l(&mu_);
    routes_.erase(ns + "/" + app);
    removed_.push_back(ns + "/" + app);
  }
  int InFlight(const std::string& id) const override {
    absl::MutexLock l(&mu_);
    ++polls_[id];
    auto it = in_flight_.find(id);
    return it == in_flight_.end() ? 0 : it->second;
  }
  void set_in_flight(const std::string& id, int n) {
    absl::MutexLock l(&mu_);
    in_flight_[id] = n;
  }
  std::optional<Route> route(const std::string& key) {
    absl::MutexLock l(&mu_);
    auto it = routes_.find(key);
    if (it == routes_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> removed() {
    absl::MutexLock l(&mu_);
    return removed_;
  }
  // How often the drainer asked for the instance's in-flight requests.
  int polls(const std::string& id) {
    absl::MutexLock l(&mu_);
    return polls_[id];
  }
  int sets() {
    absl::MutexLock l(&mu_);
    return sets_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, Route> routes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> in_flight_ ABSL_GUARDED_BY(mu_);
  mutable std::map<std::string, int> polls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> removed_ ABSL_GUARDED_BY(mu_);
  int sets_ ABSL_GUARDED_BY(mu_) = 0;
};

App MakeApp(int concurrency) {
  App app;
  app.mutable_metadata()->set_namespace_("default");
  app.mutable_metadata()->set_name("hello");
  app.mutable_spec()->mutable_template_()->set_concurrency(concurrency);
  return app;
}

Instance MakeInstance(const std::string& id, int64_t revision, int port,
                      bool ready = true) {
  Instance inst;
  inst.set_id(id);
  inst.set_namespace_("default");
  inst.set_app("hello");
  inst.set_revision(revision);
  inst.set_port(port);
  inst.set_ready(ready);
  return inst;
}

// Weight of `revision` in `route`, or -1 when the revision is not routed.
int Weight(const Route& route, int64_t revision) {
  for (const auto& r : route.revisions) {
    if (r.revision == revision) return r.weight_percent;
  }
  return -1;
}

std::vector<std::string> EndpointIds(const Route& route, int64_t revision) {
  std::vector<std::string> ids;
  for (const auto& r : route.revisions) {
    if (r.revision != revision) continue;
    for (const auto& ep : r.endpoints) ids.push_back(ep.instance_id);
  }
  return ids;
}

TEST(GatewayRoutesTest, RoutesReadyInstancesByRevision) {
  RecordingTarget target;
  testing::FakeClock clock;
  GatewayRoutes routes(&target, &clock);
  routes.UpdateRoute(
      MakeApp(7),
      {MakeInstance("a", 1, 20001), MakeInstance("b", 1, 20002),
       MakeInstance("c", 2, 20003), MakeInstance("d", 2, 20004, false)});
  auto route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(route->ns, "default");
  EXPECT_EQ(route->app, "hello");
  EXPECT_EQ(route->concurrency, 7);
  EXPECT_EQ(EndpointIds(*route, 1), (std::vector<std::string>{"a", "b"}));
  // The instance that is not ready gets no traffic.
  EXPECT_EQ(EndpointIds(*route, 2), (std::vector<std::string>{"c"}));
  // Without a split, each revision weighs as many ready instances as it has.
  EXPECT_EQ(Weight(*route, 1), 2);
  EXPECT_EQ(Weight(*route, 2), 1);
  for (const auto& r : route->revisions) {
    for (const auto& ep : r.endpoints) EXPECT_EQ(ep.host, "127.0.0.1");
  }
}

TEST(GatewayRoutesTest, RoutesListInstancesInTheOrderToFillThem) {
  // The reverse of the order a scale-down stops them in (StopsBefore): the
  // fewest restarts first, then the oldest, then by id; whatever the order
  // the reconciler passes them in.
  RecordingTarget target;
  testing::FakeClock clock;
  GatewayRoutes routes(&target, &clock);
  auto started = [](Instance inst, int64_t second, int restarts) {
    *inst.mutable_start_time() = ToProtoTime(absl::FromUnixSeconds(second));
    inst.set_restarts(restarts);
    return inst;
  };
  std::vector<Instance> serving = {
      started(MakeInstance("a-new", 1, 20001), 300, 0),
      started(MakeInstance("z-crashy", 1, 20002), 50, 3),
      started(MakeInstance("x-old", 1, 20003), 100, 0),
      started(MakeInstance("m-mid", 1, 20004), 200, 0),
      started(MakeInstance("b-twin", 1, 20005), 100, 0)};
  routes.UpdateRoute(MakeApp(4), serving);
  auto route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  const std::vector<std::string> fill = {"b-twin", "x-old", "m-mid", "a-new",
                                         "z-crashy"};
  EXPECT_EQ(EndpointIds(*route, 1), fill);
  // The reconciler's stop order is the same, reversed.
  std::sort(serving.begin(), serving.end(), StopsBefore);
  std::vector<std::string> stop;
  for (const auto& inst : serving) stop.push_back(inst.id());
  EXPECT_EQ(stop, std::vector<std::string>(fill.rbegin(), fill.rend()));
}

TEST(GatewayRoutesTest, SplitWeightsListedAndRest) {
  RecordingTarget target;
  testing::FakeClock clock;
  GatewayRoutes routes(&target, &clock);
  // Weights for an app never routed are ignored.
  routes.SetWeights("default", "hello", {{2, 10}});
  EXPECT_EQ(target.sets(), 0);

  routes.UpdateRoute(
      MakeApp(0), {MakeInstance("a", 1, 20001), MakeInstance("b", 1, 20002),
                   MakeInstance("c", 2, 20003), MakeInstance("d", 3, 20004)});
  // A canary: revision 2 gets 10%, the unlisted revisions share the rest.
  routes.SetWeights("default", "hello", {{2, 10}});
  auto route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(Weight(*route, 2), 10);
  EXPECT_EQ(Weight(*route, 1), 45);
  EXPECT_EQ(Weight(*route, 3), 45);

  // The same weights again publish nothing new.
  const int sets = target.sets();
  routes.SetWeights("default", "hello", {{2, 10}});
  EXPECT_EQ(target.sets(), sets);

  // Every revision listed.
  routes.SetWeights("default", "hello", {{1, 20}, {2, 30}, {3, 50}});
  route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(Weight(*route, 1), 20);
  EXPECT_EQ(Weight(*route, 2), 30);
  EXPECT_EQ(Weight(*route, 3), 50);

  // The split survives a change of instances.
  routes.UpdateRoute(
      MakeApp(0), {MakeInstance("a", 1, 20001), MakeInstance("c", 2, 20003)});
  route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(Weight(*route, 1), 20);
  EXPECT_EQ(Weight(*route, 2), 30);
  EXPECT_EQ(Weight(*route, 3), -1);

  // Cleared: back to ready instances.
  routes.SetWeights("default", "hello", {});
  route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(Weight(*route, 1), 1);
  EXPECT_EQ(Weight(*route, 2), 1);
}

TEST(GatewayRoutesTest, NoReadyInstanceKeepsAnEmptyRoute) {
  RecordingTarget target;
  testing::FakeClock clock;
  GatewayRoutes routes(&target, &clock);
  routes.UpdateRoute(MakeApp(0), {MakeInstance("a", 1, 20001, false)});
  auto route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  // One revision without endpoints: the gateway holds requests (activator)
  // instead of answering 404.
  ASSERT_EQ(route->revisions.size(), 1u);
  EXPECT_TRUE(route->revisions[0].endpoints.empty());
}

TEST(GatewayRoutesTest, RemoveRouteForgetsTheApp) {
  RecordingTarget target;
  testing::FakeClock clock;
  GatewayRoutes routes(&target, &clock);
  routes.UpdateRoute(MakeApp(0), {MakeInstance("a", 1, 20001)});
  ASSERT_TRUE(target.route("default/hello").has_value());
  routes.RemoveRoute("default", "hello");
  EXPECT_FALSE(target.route("default/hello").has_value());
  EXPECT_EQ(target.removed(), (std::vector<std::string>{"default/hello"}));
  // Forgotten: weights for it publish nothing.
  const int sets = target.sets();
  routes.SetWeights("default", "hello", {{1, 100}});
  EXPECT_EQ(target.sets(), sets);
}

TEST(GatewayRoutesTest, DrainStopsWhenInFlightRequestsFinish) {
  RecordingTarget target;
  testing::FakeClock clock;
  GatewayRoutes routes(&target, &clock);
  routes.UpdateRoute(
      MakeApp(0), {MakeInstance("a", 1, 20001), MakeInstance("b", 1, 20002)});
  target.set_in_flight("a", 2);
  std::atomic<int> stopped{0};
  routes.Drain(MakeInstance("a", 1, 20001), absl::Seconds(30),
               [&] { ++stopped; });
  // Out of the route at once, and counted as draining.
  auto route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(EndpointIds(*route, 1), (std::vector<std::string>{"b"}));
  EXPECT_TRUE(routes.IsDraining("a"));
  EXPECT_FALSE(routes.IsDraining("b"));
  // Still serving requests, grace not over (the clock has not moved): the
  // drainer looks again and again and keeps waiting.
  const int polls = target.polls("a");
  ASSERT_TRUE(Eventually([&] { return target.polls("a") >= polls + 3; }));
  EXPECT_EQ(stopped.load(), 0);
  EXPECT_TRUE(routes.IsDraining("a"));

  target.set_in_flight("a", 0);
  ASSERT_TRUE(Eventually([&] { return !routes.IsDraining("a"); }));
  EXPECT_EQ(stopped.load(), 1);
}

TEST(GatewayRoutesTest, DrainStopsWhenTheGraceOnTheClockEnds) {
  RecordingTarget target;
  testing::FakeClock clock;
  GatewayRoutes routes(&target, &clock);
  routes.UpdateRoute(MakeApp(0), {MakeInstance("a", 1, 20001)});
  target.set_in_flight("a", 1);  // a request that never finishes
  std::atomic<int> stopped{0};
  routes.Drain(MakeInstance("a", 1, 20001), absl::Seconds(30),
               [&] { ++stopped; });
  clock.Advance(absl::Seconds(29));
  // The drainer has looked at least twice since: one second of grace left.
  const int polls = target.polls("a");
  ASSERT_TRUE(Eventually([&] { return target.polls("a") >= polls + 2; }));
  EXPECT_EQ(stopped.load(), 0);
  EXPECT_TRUE(routes.IsDraining("a"));

  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(Eventually([&] { return stopped.load() == 1; }));
  EXPECT_TRUE(Eventually([&] { return !routes.IsDraining("a"); }));
  // No ready instance left: an empty route, so requests are held.
  auto route = target.route("default/hello");
  ASSERT_TRUE(route.has_value());
  ASSERT_EQ(route->revisions.size(), 1u);
  EXPECT_TRUE(route->revisions[0].endpoints.empty());
}

TEST(GatewayRoutesTest, DestructionStopsWhatStillDrains) {
  RecordingTarget target;
  testing::FakeClock clock;
  std::atomic<int> stopped{0};
  {
    GatewayRoutes routes(&target, &clock);
    target.set_in_flight("a", 1);
    routes.Drain(MakeInstance("a", 1, 20001), absl::Hours(1),
                 [&] { ++stopped; });
  }
  EXPECT_EQ(stopped.load(), 1);
}

}  // namespace
}  // namespace tidal::gateway
