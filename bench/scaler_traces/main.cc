// bench/scaler_traces: replays the Azure Functions 100-function trace and the
// Azure LLM trace through Tidal's default policy, Knative KPA defaults, HPA
// defaults and a fixed 10-minute keep-alive, at instance start delays of
// 0.2 s, 1 s and 5 s, and prints a table plus the target checks; then the
// functions trace over two days (learn on day 1, measure day 2) with and
// without `predictive`.
//   scaler_traces [TRACE_DIR]   (default /work/shared/data/traces)

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "scaler/simulator.h"

using tidal::scaler::SimOptions;
using tidal::scaler::SimResult;
using tidal::scaler::Trace;

namespace {

// One policy's line: all apps, then the sparse ones.
void PrintRow(const char* name, int width, const SimResult& r) {
  const auto& a = r.all;
  const auto& s = r.sparse;
  std::printf("%-*s %12.1f %10.3f %9.3f %9.3f | %12.1f %10.3f %9.3f %9.3f\n",
              width, name, a.instance_seconds / 3600, 100 * a.ColdStartRate(),
              a.p50_wait_s, a.p99_wait_s, s.instance_seconds / 3600,
              100 * s.ColdStartRate(), s.p50_wait_s, s.p99_wait_s);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/work/shared/data/traces";
  tidal::scaler::TraceOptions to;
  auto fn = tidal::scaler::ReadAzureFunctionsTrace(
      dir + "/azure-functions-2019-sample100-inv.csv",
      dir + "/azure-functions-2019-sample100-run.csv", to);
  auto llm =
      tidal::scaler::ReadLlmTrace(dir + "/azure-llm-conv-2023-11-16.csv", to);
  if (!fn.ok() || !llm.ok()) {
    std::fprintf(stderr, "%s\n%s\n", fn.status().ToString().c_str(),
                 llm.status().ToString().c_str());
    return 1;
  }
  struct Policy {
    const char* name;
    const char* algorithm;
  };
  const std::vector<Policy> policies = {{"tidal", "tidal"},
                                        {"knative", "kpa"},
                                        {"hpa", "hpa"},
                                        {"keepalive-10m", "keepalive"}};
  struct TraceCase {
    const char* name;
    const Trace* trace;
    int concurrency;
  };
  const std::vector<TraceCase> traces = {{"functions", &*fn, 1},
                                         {"llm", &*llm, 4}};
  const double delays[] = {0.2, 1, 5};
  bool all_ok = true;
  const absl::Time t0 = absl::Now();
  for (const TraceCase& tc : traces) {
    for (double delay : delays) {
      std::printf(
          "\n%s trace, start delay %.1f s, %d request(s) per instance\n",
          tc.name, delay, tc.concurrency);
      std::printf("%-14s %12s %10s %9s %9s | %12s %10s %9s %9s\n", "policy",
                  "inst-hours", "cold %", "p50 s", "p99 s", "sparse i-h",
                  "cold %", "p50 s", "p99 s");
      std::vector<SimResult> results;
      for (const Policy& p : policies) {
        SimOptions so;
        so.scaling.set_algorithm(p.algorithm);
        so.model.concurrency = tc.concurrency;
        so.model.start_delay = absl::Milliseconds(delay * 1000);
        auto r = tidal::scaler::Simulate(*tc.trace, so);
        if (!r.ok()) {
          std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
          return 1;
        }
        PrintRow(p.name, 14, *r);
        results.push_back(*std::move(r));
      }
      const auto& t = results[0].all;
      const auto& k = results[1].all;
      const auto& ka = results[3].all;
      const bool vs_knative = 2 * t.cold_starts <= k.cold_starts &&
                              t.instance_seconds <= k.instance_seconds;
      const bool vs_keepalive = t.instance_seconds < ka.instance_seconds &&
                                t.cold_starts <= ka.cold_starts;
      std::printf(
          "target vs knative (<= half the cold starts, <= its instance-hours): "
          "%s "
          "(%lld vs %lld cold starts)\n",
          vs_knative ? "PASS" : "FAIL", static_cast<long long>(t.cold_starts),
          static_cast<long long>(k.cold_starts));
      std::printf(
          "target vs keep-alive (fewer instance-hours, <= its cold starts): %s "
          "(%lld vs %lld cold starts)\n",
          vs_keepalive ? "PASS" : "FAIL", static_cast<long long>(t.cold_starts),
          static_cast<long long>(ka.cold_starts));
      all_ok = all_ok && vs_knative && vs_keepalive;
    }
  }
  // Prediction (`predictive.enabled`): the functions trace is one day, so it
  // is played twice: the scaler learns on day 1 and only day 2 is measured
  // (instance-hours and cold starts from second 86,400 on). The LLM trace
  // (one hour) has no daily pattern to learn and is left out.
  const Trace two_days = tidal::scaler::RepeatTrace(*fn, 2);
  bool pays_everywhere = true;
  for (double delay : delays) {
    std::printf(
        "\nprediction: functions trace, day 2 of 2 (day 1 learned), start "
        "delay %.1f s\n",
        delay);
    std::printf("%-18s %12s %10s %9s %9s | %12s %10s %9s %9s\n", "policy",
                "inst-hours", "cold %", "p50 s", "p99 s", "sparse i-h",
                "cold %", "p50 s", "p99 s");
    std::vector<SimResult> results;
    struct Variant {
      const char* name;
      const char* algorithm;
      bool predictive;
    };
    for (const Variant& v : {Variant{"tidal", "tidal", false},
                             Variant{"tidal+predictive", "tidal", true},
                             Variant{"knative", "kpa", false}}) {
      SimOptions so;
      so.scaling.set_algorithm(v.algorithm);
      if (v.predictive) so.scaling.mutable_predictive()->set_enabled(true);
      so.model.concurrency = 1;
      so.model.start_delay = absl::Milliseconds(delay * 1000);
      so.measure_from_s = fn->duration_s;
      auto r = tidal::scaler::Simulate(two_days, so);
      if (!r.ok()) {
        std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
        return 1;
      }
      PrintRow(v.name, 18, *r);
      results.push_back(*std::move(r));
    }
    const auto& off = results[0].all;
    const auto& on = results[1].all;
    // Pays: fewer cold starts for no more instance-hours, or fewer
    // instance-hours for no more cold starts.
    const bool pays = (on.cold_starts < off.cold_starts &&
                       on.instance_seconds <= off.instance_seconds) ||
                      (on.instance_seconds < off.instance_seconds &&
                       on.cold_starts <= off.cold_starts);
    std::printf(
        "predictive vs without: %+.1f%% instance-hours, %lld vs %lld cold "
        "starts: %s\n",
        100 * (on.instance_seconds / off.instance_seconds - 1),
        static_cast<long long>(on.cold_starts),
        static_cast<long long>(off.cold_starts),
        pays ? "pays" : "does not pay");
    pays_everywhere = pays_everywhere && pays;
  }
  std::printf("\nprediction pays at every start delay: %s\n",
              pays_everywhere ? "yes" : "no");

  std::printf("\nall targets: %s (%.1f s)\n", all_ok ? "PASS" : "FAIL",
              absl::ToDoubleSeconds(absl::Now() - t0));
  return all_ok ? 0 : 2;
}
