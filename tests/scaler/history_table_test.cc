// Decision tables over input histories, through AppScaler (the entry point the
// planner and the simulator use): each row is a per-second metric history,
// the ready replicas, and the replica count (and panic mode) the algorithm
// must answer after its last tick. The expected values follow the documented
// semantics of Knative's KPA (knative.dev/docs "Configuring the
// autoscaler": stable window 60 s, panic window 10% = 6 s, panic threshold
// 200%, max-scale-up-rate 1000, max-scale-down-rate 2, scale-to-zero after
// the stable window plus scale-to-zero-grace-period 30 s, initial-scale,
// scale-down-delay; pkg/autoscaler/scaling/autoscaler.go) and of the
// Kubernetes HPA (kubernetes.io "Horizontal Pod Autoscaling": desired =
// ceil(current * metric / target), tolerance 0.1, scale-down stabilization
// 300 s, scale-up max(100%, 4 pods) per 15 s, minReplicas at least 1).
//
// Time is virtual: second i of the history is recorded as one complete
// MetricSample, and the scaler decides at every tick 100 ms after the
// second that ends it (as MultiScaler does). No sleeps.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "scaler/autoscaler.h"

namespace tidal::scaler {
namespace {

// `seconds` seconds at `concurrency` in-flight requests and `rps` arrivals a
// second (rps < 0: the same as the concurrency).
struct Segment {
  int seconds;
  double concurrency;
  double rps = -1;
};

struct Row {
  std::string name;
  std::function<void(tidal::v1::Scaling*)> config;  // overrides
  std::vector<Segment> history;
  int32_t ready;               // ready (= current) replicas
  int32_t want;                // desired replicas after the last tick
  int want_panic = -1;         // -1: not checked
  bool follow = false;         // ready follows each decision (instant starts)
  int32_t ready_at_start = 0;  // ready when the scaler is created
  std::string want_reason;     // a substring of the reason ("" = not checked)
};

struct Outcome {
  Decision last;
  int ticks = 0;
};

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);  // a whole minute

Outcome Replay(const char* algorithm, const Row& row,
               const std::function<void(tidal::v1::Scaling*)>& base) {
  tidal::v1::Scaling spec;
  spec.set_algorithm(algorithm);
  spec.set_target(10);
  if (base) base(&spec);
  if (row.config) row.config(&spec);
  AppScalerOptions o;
  // tidal's rows test its idle path under KPA's rules with Knative's sizing;
  // the waiting-time sizing has its own tests (wait_sizing_test.cc).
  o.tidal_wait_sizing = false;
  o.ready_at_start = row.ready_at_start;
  o.current_at_start = row.ready_at_start;
  auto s = AppScaler::Create(spec, kT0, o);
  EXPECT_TRUE(s.ok()) << s.status();
  Outcome out;
  if (!s.ok()) return out;
  AppScaler& sc = **s;
  const int tick = static_cast<int>(absl::ToInt64Seconds(sc.tick()));
  int total = 0;
  for (const Segment& seg : row.history) total += seg.seconds;
  EXPECT_EQ(total % tick, 0) << "a history must end on a tick";
  int32_t ready = row.ready;
  sc.SetInstances(ready, ready);
  int sec = 0;
  for (const Segment& seg : row.history) {
    for (int i = 0; i < seg.seconds; ++i, ++sec) {
      MetricSample m;
      m.time = kT0 + absl::Seconds(sec);
      m.concurrency = seg.concurrency;
      m.requests = seg.rps < 0 ? seg.concurrency : seg.rps;
      sc.Record(m);
      if ((sec + 1) % tick != 0) continue;
      sc.SetInstances(ready, ready);
      out.last =
          sc.Decide(kT0 + absl::Seconds(sec + 1) + absl::Milliseconds(100));
      ++out.ticks;
      if (row.follow) ready = out.last.desired_replicas;
    }
  }
  return out;
}

void RunTable(const char* algorithm, const std::vector<Row>& rows,
              const std::function<void(tidal::v1::Scaling*)>& base = {}) {
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    Outcome o = Replay(algorithm, row, base);
    ASSERT_GT(o.ticks, 0);
    EXPECT_EQ(o.last.desired_replicas, row.want) << o.last.reason;
    if (row.want_panic >= 0) {
      EXPECT_EQ(o.last.panic, row.want_panic == 1) << o.last.reason;
    }
    if (!row.want_reason.empty()) {
      EXPECT_NE(o.last.reason.find(row.want_reason), std::string::npos)
          << o.last.reason;
    }
  }
}

// KPA with Knative's defaults; target 10 concurrent requests per instance at
// 70% utilization: 7 per instance. Tick 2 s.
TEST(KpaHistoryTable, KnativeDefaults) {
  using S = tidal::v1::Scaling;
  // {name, overrides, history {seconds, concurrency[, rps]}, ready, want,
  //  want_panic, follow, ready_at_start, reason substring}
  const std::vector<Row> rows = {
      // Stable mode: ceil(35 / 7) = 5; panic needs ceil(35/7)/4 >= 2: no.
      {"StableScaleUp", nullptr, {{60, 35}}, 4, 5, 0},
      // Scale-down limited by max-scale-down-rate 2: floor(10 / 2) = 5,
      // although ceil(21 / 7) = 3.
      {"MaxScaleDownRate", nullptr, {{60, 21}}, 10, 5, 0},
      {"MaxScaleDownRate4",
       [](S* s) { s->set_max_scale_down_rate(4); },
       {{60, 21}},
       10,
       3,
       0},  // max(3, floor(10 / 4))
      // Max-scale-up-rate 2 with 2 ready: at most ceil(2 x 2) = 4, although
      // ceil(70 / 7) = 10 (and the panic window agrees).
      {"MaxScaleUpRate",
       [](S* s) { s->set_max_scale_up_rate(2); },
       {{60, 70}},
       2,
       4,
       1},
      // Panic entry: the last 6 s (the panic window) at 70: ceil(70/7) = 10
      // pods = 5x the 2 ready >= 200%: panic, sized on the panic window (the
      // stable average (54 x 7 + 6 x 70) / 60 = 13.3 needs only 2).
      {"PanicEntry", nullptr, {{54, 7}, {6, 70}}, 2, 10, 1},
      // Exactly 200%: 6 s at 28: ceil(28/7) = 4 pods = 2 x 2 ready.
      {"PanicAtExactlyThreshold", nullptr, {{54, 7}, {6, 28}}, 2, 4, 1},
      // Below it: 6 s at 21: 3 pods = 1.5 x 2 ready: stable mode, 2 pods.
      {"NoPanicBelowThreshold", nullptr, {{54, 7}, {6, 21}}, 2, 2, 0},
      {"PanicThreshold300",
       [](S* s) { s->set_panic_threshold(300); },
       {{54, 7}, {6, 28}},
       2,
       2,
       0},
      // No scale-down while panicking: 6 s at 140 (20 pods for 10 ready:
      // panic), then 20 s at 7: stable says 6, panic says 1, but the panic
      // count (20) holds for a stable window after the last panicking tick.
      {"NoScaleDownWhilePanicking",
       nullptr,
       {{6, 140}, {20, 7}},
       10,
       20,
       1,
       false,
       0,
       "(panic)"},
      // Panic exit: the last over-threshold tick is at 6.1 s; panic ends at
      // the first tick more than a stable window (60 s) later, 68.1 s; then
      // stable mode: ceil(7/7) = 1 pod, limited by the scale-down rate to
      // floor(10 / 2) = 5.
      {"PanicExitAfterStableWindow", nullptr, {{6, 140}, {62, 7}}, 10, 5, 0},
      {"StillPanickingJustBeforeExit", nullptr, {{6, 140}, {60, 7}}, 10, 20, 1},
      // A new scaler with more than one ready pod starts in panic (Knative's
      // newAutoscaler), so a restart does not scale down before metrics.
      {"StartsInPanicAboveOneReady", nullptr, {{20, 7}}, 10, 10, 1, false, 10},
      // Scale to zero: after the last request (second 9) the stable average
      // reaches 0 at second 69's tick (70.1 s); the revision was active for a
      // stable window already, so the 30 s grace period starts there: 1 until
      // 100.1 s, then 0.
      {"ScaleToZeroAfterStableWindowAndGrace",
       nullptr,
       {{10, 3}, {90, 0}},
       1,
       0,
       0,
       false,
       0,
       "idle"},
      {"HeldDuringGracePeriod", nullptr, {{10, 3}, {88, 0}}, 1, 1, 0},
      {"GracePeriodZero",
       [](S* s) { s->set_scale_to_zero_grace_period_ms(0); },
       {{10, 3}, {60, 0}},
       1,
       0},
      // Seconds 8 and 9 are still in the stable window at 68.1 s: 0.1 > 0.
      {"StableAverageStillAboveZero", nullptr, {{10, 3}, {58, 0}}, 1, 1},
      // initialScale: 3 replicas until reached once (no traffic, none ready).
      {"InitialScale", [](S* s) { s->set_initial_scale(3); }, {{2, 0}}, 0, 3},
      {"InitialScaleReachedThenRules",
       [](S* s) { s->set_initial_scale(3); },
       {{10, 0}},
       3,
       1},
      {"InitialScaleZero",
       [](S* s) {
         s->set_initial_scale(0);
         s->set_min_replicas(0);
       },
       {{10, 0}},
       0,
       0},
      // scaleDownDelay: the count is the max over the delay window. 60 s at
      // 35 (5 pods) then 60 s idle: without a delay, floor(5 / 2) = 2; with
      // 60 s, the 5 decided at 62.1 s is still inside the window at 120.1 s.
      {"NoScaleDownDelay", nullptr, {{60, 35}, {60, 0}}, 5, 2, 0},
      {"ScaleDownDelay60s",
       [](S* s) { s->set_scale_down_delay_ms(60000); },
       {{60, 35}, {60, 0}},
       5,
       5,
       0},
      // rps: 35 requests a second at target 10 x 70%: 5 (the concurrency,
      // 1, is ignored).
      {"RpsMetric", [](S* s) { s->set_metric("rps"); }, {{60, 1, 35}}, 4, 5, 0},
      {"RpsMetricIgnoresConcurrency",
       [](S* s) { s->set_metric("rps"); },
       {{60, 35, 7}},
       4,
       2,
       0},  // max(1, floor(4 / 2))
      // targetUtilization 50%: 5 per instance: ceil(35 / 5) = 7.
      {"TargetUtilization50",
       [](S* s) { s->set_target_utilization(50); },
       {{60, 35}},
       4,
       7,
       0},
      // Bounds: the panic count 5 clamped to maxReplicas 3; minReplicas 2.
      {"ClampToMax",
       [](S* s) { s->set_max_replicas(3); },
       {{60, 35}},
       2,
       3,
       1,
       false,
       0,
       "maxReplicas 3"},
      {"ClampToMin", [](S* s) { s->set_min_replicas(2); }, {{100, 0}}, 1, 2},
  };
  RunTable("kpa", rows);
}

// HPA with its defaults; target 10 per pod (targetUtilization 100 so the
// arithmetic is the documented one). Tick 15 s; the metric is the average
// over the sync period. No `behavior`: Kubernetes' nil-behavior rules
// (scale-up at most max(2 x current, 4) per sync, the largest recommendation
// of the last 300 s, no scale-down rate).
TEST(HpaHistoryTable, KubernetesDefaults) {
  using S = tidal::v1::Scaling;
  // {name, overrides, history {seconds, concurrency[, rps]}, ready, want,
  //  want_panic, follow, ready_at_start, reason substring}
  const std::vector<Row> rows = {
      // desired = ceil(4 x 60/4 / 10) = 6 (within the scale-up limit 8).
      {"Formula", nullptr, {{15, 60}}, 4, 6},
      // Tolerance 0.1: 43/4 = 10.75 per pod, ratio 1.075: no change; 45:
      // ratio 1.125: ceil(4.5) = 5.
      {"WithinTolerance",
       nullptr,
       {{15, 43}},
       4,
       4,
       -1,
       false,
       0,
       "within tolerance"},
      {"OutsideTolerance", nullptr, {{15, 45}}, 4, 5},
      {"ToleranceOverride",
       [](S* s) { s->set_tolerance(0.2); },
       {{15, 45}},
       4,
       4},
      // Scale-up limit max(2 x current, 4) per sync: from 2, at most
      // max(4, 4) = 4 (the formula says 40); from 10, max(20, 4) = 20.
      {"ScaleUpFourPodsFromTwo", nullptr, {{15, 200}}, 2, 4},
      {"ScaleUpDoubleFromTen", nullptr, {{15, 1000}}, 10, 20},
      // Three periods at 185 with the pods following: 2 -> 4 (limit) -> 8
      // (limit) -> 16 (limit; ceil(8 x 185/8 / 10) = 19). With the API's
      // default behavior (any `behavior` set) it is 2 -> 6 -> 12 -> 19.
      {"ScaleUpPerPeriod", nullptr, {{45, 185}}, 2, 16, -1, true},
      {"ScaleUpPerPeriodWithBehavior",
       [](S* s) { s->mutable_behavior()->mutable_scale_up(); },
       {{45, 185}},
       2,
       19,
       -1,
       true},
      // Scale-down stabilization 300 s: the highest recommendation not
      // older than 300 s wins. 10 (at 15.1 s), then 2: still 10 at 300.1 s
      // and at 315.1 s (exactly 300 s old still counts: Kubernetes drops
      // only recommendations before the cutoff), 2 at 330.1 s.
      {"ScaleDownStabilizationHolds", nullptr, {{15, 100}, {300, 20}}, 10, 10},
      {"ScaleDownAfterStabilization", nullptr, {{15, 100}, {315, 20}}, 10, 2},
      {"NoStabilizationWhenZero",
       [](S* s) {
         s->mutable_behavior()
             ->mutable_scale_down()
             ->set_stabilization_window_seconds(0);
       },
       {{15, 100}, {15, 20}},
       10,
       2},
      // Never below 1, even with minReplicas 0 and no load.
      {"FloorOfOne", [](S* s) { s->set_min_replicas(0); }, {{330, 0}}, 3, 1},
      {"FloorOfOneFromOne", nullptr, {{330, 0}}, 1, 1},
      // Clamped to maxReplicas: 20 by the formula, 8 by the limit, 5 by max.
      {"ClampToMax", [](S* s) { s->set_max_replicas(5); }, {{15, 200}}, 4, 5},
      {"RaisedToMin", [](S* s) { s->set_min_replicas(3); }, {{15, 0}}, 1, 3},
  };
  RunTable("hpa", rows, [](S* s) { s->set_target_utilization(100); });
}

// Tidal (the default): KPA's rules plus bursts, square-root sizing and the
// learned keep-warm policy for idle apps, which must not contradict panic
// mode, maxScaleDownRate or scaleDownDelay. Tick 1 s.
TEST(TidalHistoryTable, IdleRespectsPanicRatesAndDelay) {
  using S = tidal::v1::Scaling;
  // {name, overrides, history {seconds, concurrency[, rps]}, ready, want,
  //  want_panic, follow, ready_at_start, reason substring}
  const std::vector<Row> rows = {
      // Created at zero (minReplicas 0, initialScale 0) and no request yet:
      // it stays at zero (its creation is not traffic; it used to start one
      // at 6 s, "keep warm: idle 6s").
      {"AtZeroWithoutRequestsStaysAtZero",
       [](S* s) {
         s->set_min_replicas(0);
         s->set_initial_scale(0);
       },
       {{30, 0}},
       0,
       0,
       -1,
       true,
       0},
      // Created with one instance and no request yet: it keeps it warm (it
      // used to drop it at the first tick and start one again at 6 s).
      {"CreatedWithOneKeepsItBeforeTheFirstRequest",
       nullptr,
       {{4, 0}},
       1,
       1,
       -1,
       true,
       1},
      // 10 concurrent (2 pods), a 3 s burst at 95 (14 pods: ceil(95 / 7)),
      // then idle: the app is panicking
      // (entered at 11.1 s), so the 14 hold while idle (the keep-warm count
      // used to drop them to 1 after 6 s while the status said panic).
      {"IdleWhilePanickingHolds",
       nullptr,
       {{10, 10}, {3, 95}, {8, 0}},
       2,
       14,
       1,
       true},
      {"IdleWhilePanickingReason",
       nullptr,
       {{10, 10}, {3, 95}, {8, 0}},
       2,
       14,
       1,
       false,
       0,
       "(held: no scale-down while panicking): 2 → 14"},
      {"IdleStillPanicking",
       nullptr,
       {{10, 10}, {3, 95}, {58, 0}},
       2,
       14,
       1,
       true},
      // Panic ends at 72.1 s (more than 60 s after 11.1 s): the keep-warm 1,
      // limited to floor(14 / 2) = 7 at that tick, then 3, then 1.
      {"PanicExitStepsDownByRate",
       nullptr,
       {{10, 10}, {3, 95}, {59, 0}},
       2,
       7,
       0,
       true,
       0,
       "maxScaleDownRate 2"},
      {"PanicExitThenKeepWarm",
       nullptr,
       {{10, 10}, {3, 95}, {62, 0}},
       2,
       1,
       0,
       true,
       0,
       "keep warm"},
      // Rate limit without panic: 10 ready, load gone for 6 s: floor(10/2).
      {"IdleRateLimited",
       nullptr,
       {{20, 20}, {6, 0}},
       10,
       5,
       0,
       false,
       0,
       "(held: maxScaleDownRate 2): 10 → 5"},
      // scaleDownDelay 30 s: 3 pods for 20 s, idle from 20 s: the idle count
      // (the rate floor 2 of 4 ready) waits until the 3s are 30 s old.
      {"IdleScaleDownDelay",
       [](S* s) { s->set_scale_down_delay_ms(30000); },
       {{20, 20}, {20, 0}},
       4,
       3,
       0,
       false,
       0,
       "(held: scaleDownDelay 30s)"},
      {"IdleScaleDownDelayExpired",
       [](S* s) { s->set_scale_down_delay_ms(30000); },
       {{20, 20}, {36, 0}},
       4,
       2,
       0},
      {"IdleNoScaleDownDelay", nullptr, {{20, 20}, {20, 0}}, 4, 2, 0},
      {"IdleNoScaleDownDelayFollowing",
       nullptr,
       {{20, 20}, {20, 0}},
       4,
       1,
       0,
       true},
      // Keep-warm, then zero: no idle time yet, so one instance stays the
      // histogram's range (4 h) after the last request (second 9 ends at
      // 10 s), as the hybrid-histogram policy.
      {"KeepWarmFourHours", nullptr, {{10, 3}, {14400, 0}}, 1, 1, 0, true},
      {"ZeroAfterKeepWarm",
       nullptr,
       {{10, 3}, {14401, 0}},
       1,
       0,
       0,
       true,
       0,
       "idle for 14401s"},
      {"MinReplicasHoldsOverKeepWarm",
       [](S* s) { s->set_min_replicas(2); },
       {{10, 3}, {14401, 0}},
       2,
       2,
       0,
       true},
      // Stable sizing (Knative's, as these rows run): 70 concurrent on
      // target 10: ceil(70 / 7) = 10; 10 ready so no panic.
      {"StableSizing", nullptr, {{60, 70}}, 10, 10, 0, true},
  };
  RunTable("tidal", rows);
}

// A `behavior` the user sets binds tidal and kpa too (on top of their own
// decision); the directions it leaves out stay unrestricted.
TEST(BehaviorHistoryTable, UserBehaviorBindsTidalAndKpa) {
  auto pods = [](tidal::v1::HPAScalingRules* r, int value, int period) {
    auto* p = r->add_policies();
    p->set_type("Pods");
    p->set_value(value);
    p->set_period_seconds(period);
  };
  for (const char* algorithm : {"tidal", "kpa"}) {
    SCOPED_TRACE(algorithm);
    // 30 s at 14 in flight, then 10 s of a surge to 140, instant starts.
    Row surge{"surge", nullptr, {{30, 14}, {10, 140}}, 2, 0, -1, true, 2};
    const int32_t free_up = Replay(algorithm, surge, {}).last.desired_replicas;
    Row before{"before", nullptr, {{30, 14}}, 2, 0, -1, true, 2};
    const int32_t base = Replay(algorithm, before, {}).last.desired_replicas;
    ASSERT_GE(free_up, base + 6) << "the surge alone scales well up";

    // scaleUp: 2 pods per 60 s: the surge gets base + 2, and says why.
    surge.config = [&](tidal::v1::Scaling* s) {
      pods(s->mutable_behavior()->mutable_scale_up(), 2, 60);
    };
    Outcome held = Replay(algorithm, surge, {});
    EXPECT_EQ(held.last.desired_replicas, base + 2) << held.last.reason;
    // Held at the last tick, or held earlier and unchanged since.
    const bool says =
        held.last.reason.find("held by behavior.scaleUp") != std::string::npos;
    EXPECT_TRUE(says) << held.last.reason;

    // Only scaleDown set: scale-up is as free as without behavior.
    surge.config = [&](tidal::v1::Scaling* s) {
      pods(s->mutable_behavior()->mutable_scale_down(), 1, 60);
    };
    EXPECT_EQ(Replay(algorithm, surge, {}).last.desired_replicas, free_up);

    // scaleDown: 1 pod per 60 s after a drop from 140 to 14 in flight: one
    // step down in the minute after the drop, where kpa alone halves.
    // It starts from the algorithm's own steady count for 140 in flight.
    const int32_t top =
        Replay(algorithm, Row{"top", nullptr, {{70, 140}}, 20, 0, -1, true, 20},
               {})
            .last.desired_replicas;
    ASSERT_EQ(
        Replay(algorithm,
               Row{"steady", nullptr, {{70, 140}}, top, 0, -1, true, top}, {})
            .last.desired_replicas,
        top);
    Row drop{"drop", nullptr, {{70, 140}, {60, 14}}, top, 0, -1, true, top};
    const int32_t free_down = Replay(algorithm, drop, {}).last.desired_replicas;
    ASSERT_LE(free_down, top - 2);
    drop.config = [&](tidal::v1::Scaling* s) {
      pods(s->mutable_behavior()->mutable_scale_down(), 1, 60);
    };
    Outcome slow = Replay(algorithm, drop, {});
    EXPECT_EQ(slow.last.desired_replicas, top - 1) << slow.last.reason;
  }
}

}  // namespace
}  // namespace tidal::scaler
