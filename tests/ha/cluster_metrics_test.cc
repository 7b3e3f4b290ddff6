// MetricsPublisher (every node) and ClusterMetrics (the leader) over a
// MemoryStore: two nodes' samples sum per second; a second is returned only
// once every live node reported through it; a live node whose reports stop
// makes the figures incomplete, and the scaler (MultiScaler) does not scale
// down while they are; Stats merges counts and latency histograms.

#include "ha/cluster_metrics.h"

#include <gtest/gtest.h>

#include "fakes/eventually.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_metrics.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "gateway/request_metrics.h"
#include "ha/metrics_publisher.h"
#include "scaler/multi_scaler.h"

namespace tidal::ha {
namespace {

using ::tidal::testing::Eventually;

constexpr int64_t kT0 = 1700000000;  // FakeClock's start

class ClusterMetricsTest : public ::testing::Test {
 protected:
  ClusterMetricsTest() : local_a_(&clock_), local_b_(&clock_) {
    clock_.Advance(absl::Milliseconds(500));
    local_a_.set_concurrency(1);
    local_b_.set_concurrency(2);
    ClusterMetrics::Options co;
    co.node = "a";
    co.clock = &clock_;
    co.local = &local_a_;
    co.live_nodes = [this] {
      absl::MutexLock l(&mu_);
      return live_;
    };
    cluster_ = std::make_unique<ClusterMetrics>(&store_, co);
    cluster_->Start();
    publisher_b_ = Publisher("b", &local_b_, &traffic_b_);
    publisher_a_ = Publisher("a", &local_a_, &traffic_a_);
  }

  std::unique_ptr<MetricsPublisher> Publisher(
      const std::string& node, MetricsSource* local,
      std::vector<gateway::CumulativeTraffic>* traffic) {
    MetricsPublisher::Options po;
    po.node = node;
    po.clock = &clock_;
    po.local = local;
    po.traffic = [this, traffic] {
      absl::MutexLock l(&mu_);
      return *traffic;
    };
    return std::make_unique<MetricsPublisher>(&store_, po);
  }
  static gateway::CumulativeTraffic Traffic(uint64_t requests, uint64_t errors,
                                            double latency_ms) {
    gateway::CumulativeTraffic c;
    c.ns = "default";
    c.app = "hello";
    c.requests = requests;
    c.classes[1] = requests - errors;
    c.classes[4] = errors;
    c.latency_buckets.assign(gateway::kBuckets, 0);
    c.latency_buckets[gateway::BucketFor(
        static_cast<int64_t>(latency_ms * 1e6))] = requests;
    c.area = static_cast<double>(requests);
    return c;
  }
  void SetLive(std::vector<std::string> live) {
    absl::MutexLock l(&mu_);
    live_ = std::move(live);
  }
  std::vector<MetricSample> Samples(int64_t after_second) {
    return cluster_->Samples("default", "hello", 0,
                             absl::FromUnixSeconds(after_second));
  }
  // Publishes b's report and waits until the leader has it (b's seconds
  // through the last complete one are released).
  void PublishB() {
    ASSERT_TRUE(publisher_b_->PublishOnce().ok());
    const int64_t last = absl::ToUnixSeconds(clock_.Now()) - 1;
    ASSERT_TRUE(Eventually([&] {
      auto s = Samples(last - 1);
      return !s.empty() && absl::ToUnixSeconds(s.back().time) == last;
    }));
  }

  testing::MemoryStore store_;
  testing::FakeClock clock_;
  testing::FakeMetrics local_a_, local_b_;
  absl::Mutex mu_;
  std::vector<std::string> live_ ABSL_GUARDED_BY(mu_) = {"a", "b"};
  std::vector<gateway::CumulativeTraffic> traffic_a_ ABSL_GUARDED_BY(mu_) = {
      Traffic(1, 0, 1)};
  std::vector<gateway::CumulativeTraffic> traffic_b_ ABSL_GUARDED_BY(mu_) = {
      Traffic(1, 0, 1)};
  std::unique_ptr<ClusterMetrics> cluster_;
  std::unique_ptr<MetricsPublisher> publisher_a_, publisher_b_;
};

TEST_F(ClusterMetricsTest, TwoNodesSumPerSecond) {
  // b has not reported: nothing is released.
  EXPECT_TRUE(Samples(kT0 - 5).empty());
  PublishB();
  auto s = Samples(kT0 - 4);
  ASSERT_EQ(s.size(), 3u);  // kT0-3 .. kT0-1
  for (const auto& m : s) {
    EXPECT_DOUBLE_EQ(m.concurrency, 3);  // 1 here + 2 on b
    EXPECT_DOUBLE_EQ(m.requests, 30);
  }
  EXPECT_EQ(absl::ToUnixSeconds(s.front().time), kT0 - 3);
  EXPECT_FALSE(cluster_->Incomplete("default", "hello"));

  // Two more seconds here, b has not reported them yet: held back.
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(Samples(kT0 - 1).empty());
  EXPECT_FALSE(cluster_->Incomplete("default", "hello"));
  PublishB();
  s = Samples(kT0 - 1);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_DOUBLE_EQ(s[1].concurrency, 3);
}

TEST_F(ClusterMetricsTest, StaleLiveNodeHoldsSamplesAndMakesThemIncomplete) {
  PublishB();
  // b's reports stop.
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE(cluster_->Incomplete("default", "hello"));
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(cluster_->Incomplete("default", "hello"));
  EXPECT_EQ(cluster_->MissingNodes(), std::vector<std::string>{"b"});
  EXPECT_TRUE(Samples(kT0 - 1).empty());

  // They resume: every second missed comes with b's figures.
  PublishB();
  EXPECT_FALSE(cluster_->Incomplete("default", "hello"));
  auto s = Samples(kT0 - 1);
  ASSERT_EQ(s.size(), 4u);  // kT0 .. kT0+3
  for (const auto& m : s) EXPECT_DOUBLE_EQ(m.concurrency, 3);

  // b is no longer live (declared dead): only this node's figures count.
  clock_.Advance(absl::Seconds(5));
  SetLive({"a", "gone"});
  EXPECT_TRUE(cluster_->Incomplete("default", "hello"));  // gone: no report
  SetLive({"a"});
  EXPECT_FALSE(cluster_->Incomplete("default", "hello"));
  s = Samples(kT0 + 3);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_DOUBLE_EQ(s.back().concurrency, 1);
}

TEST_F(ClusterMetricsTest, StatsMergeCountsAndHistograms) {
  // Without reports for the app: this gateway's own figures.
  RequestStats own;
  own.requests = 77;
  local_a_.SetAppStats("hello", 0, own);
  EXPECT_EQ(cluster_->Stats("default", "hello", 0, absl::Seconds(60)).requests,
            77);

  clock_.Advance(absl::Minutes(10));  // watched longer than the window
  {
    absl::MutexLock l(&mu_);
    traffic_a_ = {Traffic(10, 1, 10)};   // 10 requests at 10 ms, 1 error
    traffic_b_ = {Traffic(30, 0, 100)};  // 30 at 100 ms
  }
  ASSERT_TRUE(publisher_a_->PublishOnce().ok());
  ASSERT_TRUE(publisher_b_->PublishOnce().ok());
  ASSERT_TRUE(Eventually([&] {
    return cluster_->Stats("default", "hello", 0, absl::Seconds(60)).requests ==
           40;
  }));
  RequestStats st = cluster_->Stats("default", "hello", 0, absl::Seconds(60));
  EXPECT_EQ(st.responses_2xx, 39);
  EXPECT_EQ(st.responses_5xx, 1);
  EXPECT_GT(st.p50_ms, 50);  // 30 of the 40 took 100 ms
  EXPECT_LE(st.p50_ms, 100);
  EXPECT_GT(st.p99_ms, 50);
  EXPECT_DOUBLE_EQ(st.rps, 40.0 / 60);

  // Two minutes later, nothing new: a one-minute window sees nothing.
  clock_.Advance(absl::Minutes(2));
  ASSERT_TRUE(publisher_a_->PublishOnce().ok());
  ASSERT_TRUE(publisher_b_->PublishOnce().ok());
  {
    absl::MutexLock l(&mu_);
    traffic_b_ = {Traffic(35, 5, 100)};
  }
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(publisher_b_->PublishOnce().ok());
  ASSERT_TRUE(Eventually([&] {
    return cluster_->Stats("default", "hello", 0, absl::Seconds(60)).requests ==
           5;
  }));
  st = cluster_->Stats("default", "hello", 0, absl::Seconds(60));
  EXPECT_EQ(st.responses_5xx, 5);
  EXPECT_EQ(st.responses_2xx, 0);
}

TEST_F(ClusterMetricsTest, LiveNodeThatNeverReportedHoldsEverything) {
  PublishB();
  SetLive({"a", "b", "c"});  // c is live but has never reported
  EXPECT_TRUE(Samples(kT0 - 5).empty());
  EXPECT_FALSE(cluster_->Incomplete("default", "hello"));
  clock_.Advance(absl::Seconds(4));
  EXPECT_TRUE(cluster_->Incomplete("default", "hello"));
}

// The scaler through ClusterMetrics: load on node b scales the app up; b's
// reports stop (b still live): the scaler holds its count instead of
// reading the silence as no traffic; b declared dead: the figures are known
// again (no load) and the count comes down.
TEST_F(ClusterMetricsTest, ScalerDoesNotScaleDownWhileANodesFiguresAreMissing) {
  local_a_.set_concurrency(0);
  local_b_.set_concurrency(70);
  testing::FakeRuntime runtime;
  MultiScaler::Inputs in;
  in.runtime = &runtime;
  in.metrics = cluster_.get();
  in.clock = &clock_;
  MultiScaler planner(in);
  tidal::v1::App app;
  app.mutable_metadata()->set_name("hello");
  app.mutable_metadata()->set_namespace_("default");
  auto* s = app.mutable_spec()->mutable_scaling();
  s->set_min_replicas(1);
  s->set_max_replicas(30);
  s->set_metric("concurrency");
  s->set_target(10);
  auto set_instances = [&](int n) {
    auto insts = runtime.List("default", "hello");
    while (static_cast<int>(insts.size()) < n) {
      InstanceRequest req;
      req.namespace_ = "default";
      req.app = "hello";
      ASSERT_TRUE(runtime.Start(req).ok());
      insts = runtime.List("default", "hello");
    }
    while (static_cast<int>(insts.size()) > n) {
      ASSERT_TRUE(runtime.Stop(insts.back().id(), absl::ZeroDuration()).ok());
      insts.pop_back();
    }
    runtime.SetAllReady();
  };
  auto desired = [&] {
    return planner.Desired(app, runtime.List("default", "hello")).replicas;
  };
  set_instances(desired());
  for (int i = 0; i < 40; ++i) {
    clock_.Advance(absl::Seconds(1));
    PublishB();
    planner.RunDue();
    set_instances(desired());
  }
  const int loaded = desired();
  ASSERT_GE(loaded, 8);

  // b stops reporting for two minutes.
  for (int i = 0; i < 120; ++i) {
    clock_.Advance(absl::Seconds(1));
    planner.RunDue();
    ASSERT_GE(desired(), loaded) << "after " << i + 1 << " s";
    set_instances(desired());
  }
  EXPECT_TRUE(cluster_->Incomplete("default", "hello"));

  // b is declared dead: this node's figures (no load) are complete.
  SetLive({"a"});
  for (int i = 0; i < 300; ++i) {
    clock_.Advance(absl::Seconds(1));
    planner.RunDue();
    set_instances(desired());
  }
  EXPECT_LT(desired(), loaded);
}

}  // namespace
}  // namespace tidal::ha
