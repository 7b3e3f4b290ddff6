#pragma once

// The scaling simulator: replays a trace of requests through the same
// AppScaler code the controller uses, with a virtual clock and a model of
// instances (start delay, per-instance concurrency, service time per request),
// and reports cost and latency figures. Pure and deterministic; each call is
// independent (thread-compatible).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scaler/autoscaler.h"
#include "tidal/v1/app.pb.h"

namespace tidal::scaler {

// One request: arrival (seconds from the trace start) and service time.
struct TraceRequest {
  double arrival_s = 0;
  double service_s = 0;
};

// One app's requests, sorted by arrival.
struct AppTrace {
  std::string name;
  std::vector<TraceRequest> requests;
};

struct Trace {
  absl::Time start =
      absl::UnixEpoch();  // wall time of second 0 (schedules, prediction)
  double duration_s = 0;  // simulated span
  std::vector<AppTrace> apps;
};

struct InstanceModel {
  absl::Duration start_delay = absl::Seconds(1);  // start to ready
  int32_t concurrency = 1;  // requests per instance, 0 = unlimited
  absl::Duration request_timeout =
      absl::Minutes(5);  // waiting longer drops the request
};

struct SimOptions {
  tidal::v1::Scaling scaling;
  InstanceModel model;
  AppScalerOptions
      scaler;  // container_concurrency is taken from model.concurrency
  bool record_series =
      false;  // aggregated load/desired/ready per second (for plots)
  size_t max_events = 1000;  // scale events kept (all are counted)
  // Statistics (requests, cold starts, waits, drops, instance-seconds) count
  // from this second of the trace on; what comes before is warm-up (e.g. a
  // day for the scaler to learn from).
  double measure_from_s = 0;
  // Instances each app has ready at second 0; -1: the spec's
  // max(initialScale, minReplicas), as tidald creates it. The benchmark uses 0
  // (every app starts with no instance, so first requests are cold starts).
  int32_t initial_instances = -1;
};

struct SimStats {
  int64_t apps = 0;
  int64_t requests = 0;
  int64_t cold_starts = 0;  // arrived when the app had no ready instance
  int64_t waited = 0;       // waited (for a starting instance or a free slot)
  int64_t dropped = 0;      // waited longer than the request timeout
  double instance_seconds = 0;
  double p50_wait_s = 0;
  double p99_wait_s = 0;
  double p999_wait_s = 0;
  // The 75th percentile over apps (with requests) of each app's cold-start
  // rate (the "Serverless in the Wild" figure of merit), a fraction.
  double app_cold_rate_p75 = 0;
  double ColdStartRate() const {
    return requests ? double(cold_starts) / requests : 0;
  }
};

struct ScaleEvent {
  double time_s = 0;
  std::string app;
  int32_t from = 0;
  int32_t to = 0;
  std::string reason;
};

struct SeriesPoint {
  double load = 0;  // concurrency (in flight + waiting), summed over apps
  int32_t desired = 0;
  int32_t ready = 0;
};

// One app's figures (SimResult::apps).
struct AppSimStats {
  std::string name;
  bool sparse = false;
  int64_t requests = 0;
  int64_t cold_starts = 0;
  int64_t waited = 0;
  double instance_seconds = 0;
  double mean_service_s = 0;
  double p99_wait_s = 0;
};

struct SimResult {
  SimStats all;
  SimStats sparse;            // apps with fewer than 1,440 requests a day
  int32_t peak_replicas = 0;  // of the busiest moment, summed over apps
  int64_t scale_events = 0;
  std::vector<ScaleEvent> events;   // the first max_events
  std::vector<SeriesPoint> series;  // one per second when record_series
  std::vector<AppSimStats> apps;    // in trace order
};

// `trace` played `times` times back to back (each copy shifted by the
// trace's duration): a one-day trace as several days.
Trace RepeatTrace(const Trace& trace, int times);

// InvalidArgument when the scaling spec is invalid.
absl::StatusOr<SimResult> Simulate(const Trace& trace,
                                   const SimOptions& options);

// Load, desired and ready replicas over time as a self-contained SVG; `title`
// is plain text (XML-escaped here).
std::string RenderSvg(const std::vector<SeriesPoint>& series,
                      const std::string& title);
// Policies side by side: the load of `load` and each run's ready replicas,
// one line per policy, named by `names` (same order as `runs`).
std::string RenderCompareSvg(const std::vector<SeriesPoint>& load,
                             const std::vector<std::string>& names,
                             const std::vector<std::vector<SeriesPoint>>& runs,
                             const std::string& title);

// Trace readers for the formats in shared/data/traces (see traces.cc):
// Azure Functions per-minute counts (+ the run file's average durations), the
// Azure LLM per-request trace, and a plain "arrival_s,service_ms[,app]" CSV.
struct TraceOptions {
  uint64_t seed = 1;            // Poisson spreading of per-minute counts
  double ms_per_token = 20;     // LLM: service time per generated token
  double max_service_s = 10;    // LLM: cap of the per-token part
  double llm_overhead_ms = 50;  // LLM: added to every request (after the cap)
  double default_service_ms = 1000;  // functions without a run-file row
  int max_apps = 0;                  // 0: all
};
absl::StatusOr<Trace> ReadAzureFunctionsTrace(const std::string& inv_path,
                                              const std::string& run_path,
                                              const TraceOptions& opts);
// Any CSV whose header names TIMESTAMP and GeneratedTokens (the Azure LLM
// traces of 2023 and 2024: "2023-11-16 18:15:46.6805900" or
// "2024-05-10 00:00:00.009930+00:00"); one app, "llm"; service time =
// min(tokens x ms_per_token, max_service_s) + llm_overhead_ms.
absl::StatusOr<Trace> ReadLlmTrace(const std::string& path,
                                   const TraceOptions& opts);
bool IsLlmTraceHeader(const std::string& header);
// Detects the format from the header; for an "-inv.csv" file the run file is
// the sibling "-run.csv".
absl::StatusOr<Trace> ReadTrace(const std::string& path,
                                const TraceOptions& opts);

}  // namespace tidal::scaler
