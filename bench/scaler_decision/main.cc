// bench/scaler_decision: the cost of one scaling decision per app per tick
// (Record of the tick's two one-second samples plus Decide), per algorithm.
// Target: < 1 us, so 10,000 apps tick in under 10 ms.

#include <benchmark/benchmark.h>

#include "scaler/autoscaler.h"

namespace {

void BM_Decision(benchmark::State& state, const char* algorithm) {
  tidal::v1::Scaling spec;
  spec.set_algorithm(algorithm);
  tidal::scaler::AppScalerOptions o;
  o.container_concurrency = 10;
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  auto s = tidal::scaler::AppScaler::Create(spec, t0, o);
  int64_t sec = 0;
  int32_t ready = 3;
  for (auto _ : state) {
    for (int i = 0; i < 2; ++i, ++sec) {
      const double c = 20 + (sec % 97);  // varying load
      (*s)->Record({t0 + absl::Seconds(sec), c, c});
    }
    (*s)->SetInstances(ready, ready);
    tidal::scaler::Decision d = (*s)->Decide(t0 + absl::Seconds(sec));
    ready = d.desired_replicas;
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK_CAPTURE(BM_Decision, tidal, "tidal");
BENCHMARK_CAPTURE(BM_Decision, kpa, "kpa");
BENCHMARK_CAPTURE(BM_Decision, hpa, "hpa");
BENCHMARK_CAPTURE(BM_Decision, keepalive, "keepalive");

}  // namespace

BENCHMARK_MAIN();
