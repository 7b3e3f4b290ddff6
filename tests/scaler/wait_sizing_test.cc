// The `tidal` algorithm's sizing of busy apps for a waiting time (Erlang C
// over the measured service time, the reaction to waiting requests), its
// idle policy (the hybrid histogram of Shahrad et al., ATC'20, as the
// `hybrid` baseline applies it), and `scaling.targetWaitP99`.

#include <cmath>
#include <memory>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "scaler/autoscaler.h"
#include "scaler/erlang.h"
#include "scaler/idle_histogram.h"

namespace tidal::scaler {
namespace {

TEST(ErlangTest, KnownValues) {
  EXPECT_NEAR(ErlangC(2, 1), 1.0 / 3, 1e-12);
  EXPECT_EQ(ErlangC(10, 10), 1);  // no more servers than load: all wait
  EXPECT_EQ(ErlangC(3, 0), 0);
  // P(wait) <= 1% for 10 erlangs: 19 servers (computed independently).
  EXPECT_EQ(ErlangServers(10, 1, 0, 0.01), 19);
  EXPECT_EQ(ErlangServers(100, 1, 0, 0.01), 125);
  // Allowing a wait: P(wait > 0.1 s) with 1 s service: 18; with 0.1 s
  // service the 1 s allowance is ten service times: 11.
  EXPECT_EQ(ErlangServers(10, 1, 0.1, 0.01), 18);
  EXPECT_EQ(ErlangServers(10, 0.1, 1, 0.01), 11);
  EXPECT_EQ(ErlangServers(0, 1, 0, 0.01), 0);
  EXPECT_LE(ProbWaitOver(19, 10, 1, 0), 0.01);
  EXPECT_GT(ProbWaitOver(18, 10, 1, 0), 0.01);
}

constexpr absl::Time kT0 = absl::FromUnixSeconds(1700000000);

// One app at concurrency `c` and `c` requests a second (service 1 s),
// instances ready as decided, one instance per request.
class Feed {
 public:
  explicit Feed(const tidal::v1::Scaling& spec,
                absl::Duration start = absl::Seconds(1),
                absl::Duration min_keep_alive = absl::Minutes(10)) {
    AppScalerOptions o;
    o.tidal_min_keep_alive = min_keep_alive;
    o.container_concurrency = 1;
    o.start_duration = start;
    o.ready_at_start = 1;
    o.current_at_start = 1;
    auto s = AppScaler::Create(spec, kT0, o);
    EXPECT_TRUE(s.ok()) << s.status();
    s_ = std::move(*s);
  }
  Decision Second(double c, int32_t waiting = 0) {
    s_->Record({kT0 + absl::Seconds(sec_), c, std::floor(c)});
    ++sec_;
    s_->SetInstances(ready_, ready_);
    s_->SetWaiting(kT0 + absl::Seconds(sec_), waiting);
    Decision d =
        s_->Decide(kT0 + absl::Seconds(sec_) + absl::Milliseconds(100));
    return d;
  }
  Decision Settle(double c, int seconds) {
    Decision d;
    for (int i = 0; i < seconds; ++i) {
      d = Second(c);
      ready_ = d.desired_replicas;
    }
    return d;
  }
  AppScaler& scaler() { return *s_; }
  int32_t ready_ = 1;

 private:
  int64_t sec_ = 0;
  std::unique_ptr<AppScaler> s_;
};

tidal::v1::Scaling Spec() {
  tidal::v1::Scaling spec;
  spec.set_target(1);
  return spec;
}

// Default target (the start time plus a tick, 2 s here): a waiting request
// is served by an instance started for it within that time, so the steady
// load needs no Erlang headroom, only the spread of the load one reaction
// time ahead: 10 + 1.2 x sqrt(10) = 13.8 slots, 14 instances, where
// Knative's 70% utilization keeps 15.
TEST(WaitSizingTest, DefaultTargetIsMetByTheReaction) {
  Feed f(Spec());
  Decision d = f.Settle(10, 70);
  EXPECT_EQ(d.desired_replicas, 14) << d.reason;
}

// Arrivals burstier than Poisson widen the spread: the same 10 requests a
// second on average, as 0 and 20 in turn, have an index of dispersion of
// 100 / 10 = 10 (variance / mean of the per-second counts over the stable
// window). The arrivals ahead, 10 a second over 1 x (1 - exp(-2)) = 0.86 s,
// count ten-fold in the variance: 10 + 9 x 10 x 0.86 = 87.8, so the count
// covers 10 + 1.2 x 9.4 = 21.2 slots: 22 instances where steady arrivals
// keep 14.
TEST(WaitSizingTest, BurstyArrivalsWidenTheSpread) {
  Feed f(Spec());
  for (int i = 0; i < 70; ++i) {
    f.scaler().Record({kT0 + absl::Seconds(i), 10, i % 2 == 0 ? 0.0 : 20.0});
  }
  f.scaler().SetInstances(14, 14);
  Decision d =
      f.scaler().Decide(kT0 + absl::Seconds(70) + absl::Milliseconds(100));
  EXPECT_EQ(d.desired_replicas, 22) << d.reason;
}

// A target under the reaction time is bought with headroom: Erlang C over
// the measured service time (1 s): P(wait > 0.1 s) <= 1% needs 18 servers.
// Erlang C counts the load's spread itself: the look-ahead adds none.
TEST(WaitSizingTest, StricterTargetAddsErlangHeadroom) {
  tidal::v1::Scaling spec = Spec();
  spec.set_target_wait_p99_ms(100);
  Feed f(spec);
  Decision d = f.Settle(10, 70);
  EXPECT_EQ(d.desired_replicas, 18) << d.reason;
  spec.set_target_wait_p99_ms(0);  // P(wait) <= 1%: 19
  Feed g(spec);
  EXPECT_EQ(g.Settle(10, 70).desired_replicas, 19);
}

// Requests waiting that neither starting instances nor completions within
// the reaction time will serve get instances of their own at once.
TEST(WaitSizingTest, WaitingRequestsGetInstancesAtOnce) {
  Feed f(Spec());
  f.Settle(10, 70);
  ASSERT_EQ(f.ready_, 14);
  // 30 waiting; 14 ready instances complete 14 x min(1, 2 s / 1 s) = 14
  // requests within the reaction time: 16 more instances.
  Decision d = f.Second(10, 30);
  EXPECT_EQ(d.desired_replicas, 14 + 16) << d.reason;
}

// A rising load is sized one reaction time ahead: arrivals (the last 10
// seconds' rate) less completions, over the reaction time but at most about
// one service time of them (the mean of an M/G/inf queue after a step:
// S (1 - exp(-lead / S))).
TEST(WaitSizingTest, RisingLoadIsSizedAhead) {
  Feed f(Spec());
  f.Settle(10, 70);
  // Concurrency still 10 but 30 arrivals a second for the last 10 seconds.
  // The measured service time (Little's law over the 60 s stable window):
  // 600 / (50 x 10 + 10 x 30) = 0.75 s; completions 10 / 0.75 = 13.3 a
  // second. Over 0.75 x (1 - exp(-2 / 0.75)) = 0.70 s the load grows by
  // (30 - 13.3) x 0.70 = 11.7 to 21.7. The step makes the per-second counts
  // over the stable window (50 x 10, 10 x 30) overdispersed: variance 55.6
  // over a mean of 13.3, an index of 4.17, so the arrivals ahead (30 x 0.70)
  // count 4.17-fold: variance 21.7 + 3.17 x 21 = 88.3, spread 1.2 x 9.4 =
  // 11.3: 33.0 slots, 33 instances (the steady load keeps 14).
  // Ten seconds of it, 13 instances ready; the last decision.
  auto arrivals_step = [](Feed& feed) {
    Decision d;
    for (int i = 0; i < 10; ++i) {
      feed.scaler().Record({kT0 + absl::Seconds(70 + i), 10, 30});
      feed.scaler().SetInstances(13, 13);
      d = feed.scaler().Decide(kT0 + absl::Seconds(71 + i) +
                               absl::Milliseconds(100));
    }
    return d;
  };
  Decision d = arrivals_step(f);
  EXPECT_EQ(d.desired_replicas, 33) << d.reason;
  // A lead far longer than the service time adds about one service time of
  // arrivals, not a lead of them: with a 60 s start the same step asks for
  // (30 - 13.3) x 0.75 = 12.5 more, 22.5 + 1.2 x sqrt(22.5 + 3.17 x 22.5) =
  // 34.1: 35, not 1,000.
  Feed g(Spec(), absl::Seconds(60));
  g.Settle(10, 70);
  d = arrivals_step(g);
  EXPECT_EQ(d.desired_replicas, 35) << d.reason;
}

// The measured service time survives a restart (SaveState/RestoreState).
TEST(WaitSizingTest, ServiceTimeIsPartOfTheSavedState) {
  tidal::v1::Scaling spec = Spec();
  spec.set_target_wait_p99_ms(0);
  Feed f(spec);
  f.Settle(10, 70);
  AppScalerOptions o;
  o.container_concurrency = 1;
  auto s2 = AppScaler::Create(spec, kT0, o);
  ASSERT_TRUE(s2.ok());
  ASSERT_TRUE((*s2)->RestoreState(f.scaler().SaveState()).ok());
  EXPECT_EQ((*s2)->SaveState(), f.scaler().SaveState());
  EXPECT_FALSE((*s2)->RestoreState("tidal-scaler-v1\nservice_us=-3\n").ok());
}

TEST(WaitSizingTest, TargetWaitP99IsValidated) {
  tidal::v1::Scaling spec;
  spec.set_target_wait_p99_ms(600001);
  auto s = AppScaler::Create(spec, kT0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("scaling.targetWaitP99"),
            std::string::npos);
  spec.set_target_wait_p99_ms(-1);
  EXPECT_FALSE(AppScaler::Create(spec, kT0).ok());
  spec.set_target_wait_p99_ms(250);
  EXPECT_TRUE(AppScaler::Create(spec, kT0).ok());
}

// Two seconds at 95 after a steady 10: the look-ahead sizes the step from
// its first complete second. The burst rule (size on the latest seconds'
// peak, which KPA's panic then holds for a stable window) applies only
// under Knative's sizing: under the default one the count follows the load
// again once the step is over (widened by the dispersion the step left in
// the stable window) instead of holding the peak's count for 60 s.
TEST(WaitSizingTest, ABurstsPeakIsNotHeldForAStableWindow) {
  Feed f(Spec());
  f.Settle(10, 70);
  Decision peak = f.Second(95);
  EXPECT_GE(peak.desired_replicas, 96) << peak.reason;
  EXPECT_TRUE(absl::StrContains(peak.reason, "look-ahead")) << peak.reason;
  f.ready_ = peak.desired_replicas;
  f.Second(95);
  Decision after = f.Settle(10, 10);
  EXPECT_LT(after.desired_replicas, 96) << after.reason;
  EXPECT_GT(after.desired_replicas, 14) << after.reason;
}

// Idle times of 30 s (ten of them, all in the first 1-minute bin: a
// pattern) give the paper's rule a keep-alive of 66 s (the bin's end plus
// 10%). Tidal never unloads sooner than its minimum keep-alive (10 min, the
// fixed keep-alive of function platforms): the instance stays through 10
// minutes of idleness and goes after. With that minimum at 0, the paper's
// 66 s.
TEST(WaitSizingTest, IdleAppsKeepTheirInstanceAtLeastTheMinimumKeepAlive) {
  tidal::v1::Scaling spec = Spec();
  spec.set_min_replicas(0);
  auto learn = [](Feed& f) {
    for (int k = 0; k < 10; ++k) {
      f.Settle(1, 5);
      f.Settle(0, 30);
    }
    f.Settle(1, 5);
  };
  Feed f(spec);
  learn(f);
  EXPECT_EQ(f.Settle(0, 120).desired_replicas, 1);
  Decision d = f.Settle(0, 470);  // idle for 590 s
  EXPECT_EQ(d.desired_replicas, 1) << d.reason;
  d = f.Settle(0, 20);  // 610 s
  EXPECT_EQ(d.desired_replicas, 0) << d.reason;
  Feed paper(spec, absl::Seconds(1), absl::ZeroDuration());
  learn(paper);
  d = paper.Settle(0, 60);
  EXPECT_EQ(d.desired_replicas, 1) << d.reason;
  d = paper.Settle(0, 60);  // idle for 120 s
  EXPECT_EQ(d.desired_replicas, 0) << d.reason;
}

// The paper's rules: no idle time yet -> a fixed keep-alive of the range
// (4 h); a pattern -> 5th/99th percentiles with 10% margins; mostly beyond
// the range -> pre-warm at 85% of the last such idle time, warm for 30%.
TEST(IdleHistogramTest, PaperPolicy) {
  IdleHistogram h;
  IdleHistogram::Policy p = h.PaperPolicy();
  EXPECT_FALSE(p.representative);
  EXPECT_EQ(p.prewarm_s, 0);
  EXPECT_EQ(p.keep_alive_s, 4 * 3600);
  for (int i = 0; i < 20; ++i) h.Add(14 * 60 + 10);  // every 15 minutes
  p = h.PaperPolicy();
  EXPECT_TRUE(p.representative);
  EXPECT_EQ(p.prewarm_s, 756);           // 14 min x 0.9
  EXPECT_EQ(p.keep_alive_s, 990 - 756);  // 15 min x 1.1 - prewarm
  IdleHistogram rare;
  rare.Add(6 * 3600);
  rare.Add(5 * 3600);
  p = rare.PaperPolicy();
  EXPECT_EQ(p.prewarm_s, static_cast<int64_t>(0.85 * 5 * 3600));
  EXPECT_EQ(p.keep_alive_s, static_cast<int64_t>(0.30 * 5 * 3600));
  // Idle times spread evenly over the range: no pattern, the fixed 4 h.
  IdleHistogram flat;
  for (int m = 0; m < 240; ++m) flat.Add(m * 60);
  EXPECT_FALSE(flat.PaperPolicy().representative);
}

}  // namespace
}  // namespace tidal::scaler
