#include "cli/simulate_command.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "api/spec.h"
#include "common/status_macros.h"
#include "scaler/app_inputs.h"
#include "scaler/simulator.h"

namespace tidal::cli {

using scaler::AlgorithmName;
using scaler::AppScalerInputs;
using scaler::AppScalerInputsFor;
using scaler::MetricName;
using scaler::ReadTrace;
using scaler::RenderCompareSvg;
using scaler::RenderSvg;
using scaler::ResolveConfig;
using scaler::ScaleEvent;
using scaler::ScalerConfig;
using scaler::SeriesPoint;
using scaler::SimOptions;
using scaler::SimResult;
using scaler::SimStats;
using scaler::Simulate;
using scaler::Trace;
using scaler::TraceOptions;

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  if (in.bad()) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return text;
}

// "target 10 per instance (scaling at 70% of it: 7)": the spec's target as
// written, and the utilization the scaler aims at apart (as `get apps -o
// wide` shows them).
std::string DescribeTarget(const ScalerConfig& cfg) {
  std::string target = absl::StrFormat("target %.4g per instance", cfg.target);
  if (cfg.TargetValue() != cfg.target) {
    absl::StrAppendFormat(&target, " (scaling at %.4g%% of it: %.4g)",
                          cfg.target_utilization, cfg.TargetValue());
  }
  return target;
}

// "metric concurrency, target ..., start delay 1s, 8 per instance".
std::string DescribeModel(const ScalerConfig& cfg, const SimOptions& so) {
  return absl::StrFormat("metric %s, %s, start delay %s, %d per instance",
                         MetricName(cfg.metric), DescribeTarget(cfg),
                         absl::FormatDuration(so.model.start_delay),
                         so.model.concurrency);
}

absl::Status WritePlot(const std::string& path, const std::string& svg,
                       std::ostream& out) {
  std::ofstream f(path);
  if (!f)
    return absl::InvalidArgumentError(absl::StrCat("cannot write ", path));
  f << svg;
  if (!f) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  out << "plot written to " << path << "\n";
  return absl::OkStatus();
}

std::string PlotTitle(const tidal::v1::App& app, const std::string& what,
                      const std::string& trace_path) {
  return absl::StrCat("tidal simulate: ", app.metadata().name(), " (", what,
                      ") on ",
                      std::filesystem::path(trace_path).filename().string());
}

// --compare: the spec under each policy, one line of figures each.
absl::Status RunCompare(const tidal::v1::App& app, const SimulateOptions& opts,
                        const Trace& trace, std::ostream& out) {
  SimOptions base = SimOptionsFor(app, opts);
  ASSIGN_OR_RETURN(ScalerConfig spec_cfg,
                   ResolveConfig(base.scaling, base.model.concurrency));
  out << absl::StrFormat("app %s: %s; the spec's algorithm is %s (*)\n",
                         app.metadata().name(), DescribeModel(spec_cfg, base),
                         AlgorithmName(spec_cfg.algorithm));
  struct Policy {
    const char* algorithm;
    const char* what;
  };
  const Policy policies[] = {
      {"tidal", "default"},           {"kpa", "Knative KPA"},
      {"hpa", "Kubernetes HPA"},      {"keepalive", "fixed keep-alive"},
      {"hybrid", "hybrid histogram"},
  };
  out << absl::StrFormat("  %-34s %14s %12s %8s %9s %9s %9s %10s %8s %5s\n",
                         "POLICY", "INSTANCE-HOURS", "COLD-STARTS", "COLD%",
                         "WAITED", "P50-WAIT", "P99-WAIT", "P99.9-WAIT",
                         "DROPPED", "PEAK");
  std::vector<std::string> names;
  std::vector<std::vector<SeriesPoint>> runs;
  std::vector<SeriesPoint> load;
  for (const Policy& p : policies) {
    SimOptions so = base;
    so.scaling.set_algorithm(p.algorithm);
    // The keep-alive baseline is the fixed 10 minutes of FaaS platforms
    // (bench/scaler_traces' keepalive-10m), unless the spec is that policy:
    // the spec's scaleToZeroGracePeriod is Knative's grace period.
    if (std::string(p.algorithm) == "keepalive" &&
        spec_cfg.algorithm != scaler::Algorithm::kKeepAlive) {
      so.scaling.set_scale_to_zero_grace_period_ms(10 * 60 * 1000);
    }
    ASSIGN_OR_RETURN(ScalerConfig cfg,
                     ResolveConfig(so.scaling, so.model.concurrency));
    ASSIGN_OR_RETURN(SimResult r, Simulate(trace, so));
    std::string name = absl::StrCat(p.algorithm, " (", p.what);
    if (cfg.algorithm == scaler::Algorithm::kKeepAlive) {
      absl::StrAppend(&name, " ", absl::FormatDuration(cfg.keep_alive));
    }
    absl::StrAppend(&name, ")");
    const bool own = cfg.algorithm == spec_cfg.algorithm;
    const SimStats& s = r.all;
    out << absl::StrFormat(
        "%s %-34s %14.2f %12d %7.3f%% %9d %8.3fs %8.3fs %9.3fs %8d %5d\n",
        own ? "*" : " ", name, s.instance_seconds / 3600, s.cold_starts,
        100 * s.ColdStartRate(), s.waited, s.p50_wait_s, s.p99_wait_s,
        s.p999_wait_s, s.dropped, r.peak_replicas);
    names.push_back(std::move(name));
    if (load.empty()) load = r.series;
    runs.push_back(std::move(r.series));
  }
  if (opts.plot_path.empty()) return absl::OkStatus();
  return WritePlot(
      opts.plot_path,
      RenderCompareSvg(load, names, runs,
                       PlotTitle(app, "policies compared", opts.trace_path)),
      out);
}

}  // namespace

absl::StatusOr<tidal::v1::App> ReadSimulatedApp(const std::string& path,
                                                const std::string& app_name,
                                                std::ostream& err) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  spec::ParseResult r = spec::ParseApps(text, path);
  if (!r.ok()) {
    for (const spec::SpecError& e : r.errors) err << e.ToString() << "\n";
    const size_t n = r.errors.size();
    return absl::InvalidArgumentError(
        absl::StrCat(n, n == 1 ? " problem" : " problems",
                     " in the spec; nothing was simulated"));
  }
  if (r.apps.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no App document"));
  }
  if (app_name.empty()) {
    if (r.apps.size() == 1) return std::move(r.apps[0].app);
    std::vector<std::string> names;
    for (const spec::ParsedApp& p : r.apps)
      names.push_back(p.app.metadata().name());
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", r.apps.size(), " apps; choose one with --app (",
        absl::StrJoin(names, ", "), ")"));
  }
  const spec::ParsedApp* found = nullptr;
  for (const spec::ParsedApp& p : r.apps) {
    if (p.app.metadata().name() != app_name) continue;
    if (found != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": several apps are named \"", app_name,
                       "\" (lines ", found->line, " and ", p.line, ")"));
    }
    found = &p;
  }
  if (found == nullptr) {
    std::vector<std::string> names;
    for (const spec::ParsedApp& p : r.apps)
      names.push_back(p.app.metadata().name());
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no app named \"", app_name, "\" (the file has ",
                     absl::StrJoin(names, ", "), ")"));
  }
  return found->app;
}

SimOptions SimOptionsFor(const tidal::v1::App& app,
                         const SimulateOptions& opts) {
  SimOptions so;
  AppScalerInputs in = AppScalerInputsFor(app.spec());
  so.scaling = std::move(in.scaling);
  so.scaler = in.options;
  if (!opts.algorithm.empty()) so.scaling.set_algorithm(opts.algorithm);
  const int32_t template_concurrency = app.spec().template_().concurrency();
  so.model.concurrency =
      opts.concurrency >= 0
          ? opts.concurrency
          : (template_concurrency > 0 ? template_concurrency : 1);
  // The simulator passes the model's concurrency to the scaler as the
  // container concurrency (what the planner takes from the template).
  so.scaler.container_concurrency = so.model.concurrency;
  so.model.start_delay = opts.start_delay;
  so.model.request_timeout = opts.request_timeout;
  so.record_series = !opts.plot_path.empty();
  so.max_events = opts.max_events;
  return so;
}

absl::Status RunSimulateCommand(const SimulateOptions& opts,
                                std::ostream& out) {
  std::ostringstream err;
  absl::Status s = RunSimulateCommand(opts, out, err);
  if (s.ok() || err.str().empty()) return s;
  return absl::Status(s.code(), absl::StrCat(err.str(), s.message()));
}

absl::Status RunSimulateCommand(const SimulateOptions& opts, std::ostream& out,
                                std::ostream& err) {
  if (opts.compare && !opts.algorithm.empty()) {
    return absl::InvalidArgumentError(
        "--compare runs every algorithm; it cannot be combined with "
        "--algorithm");
  }
  ASSIGN_OR_RETURN(tidal::v1::App app,
                   ReadSimulatedApp(opts.spec_path, opts.app, err));
  TraceOptions to;
  to.seed = opts.seed;
  to.max_apps = opts.max_apps;
  ASSIGN_OR_RETURN(Trace trace, ReadTrace(opts.trace_path, to));
  int64_t requests = 0;
  for (const auto& a : trace.apps) requests += a.requests.size();
  out << absl::StrFormat("trace %s: %d apps, %d requests, %.0f s\n",
                         opts.trace_path, trace.apps.size(), requests,
                         trace.duration_s);
  if (opts.compare) return RunCompare(app, opts, trace, out);
  const SimOptions so = SimOptionsFor(app, opts);
  ASSIGN_OR_RETURN(SimResult r, Simulate(trace, so));
  ASSIGN_OR_RETURN(ScalerConfig cfg,
                   ResolveConfig(so.scaling, so.model.concurrency));
  out << absl::StrFormat("app %s: algorithm %s, %s\n", app.metadata().name(),
                         AlgorithmName(cfg.algorithm), DescribeModel(cfg, so));
  auto line = [&](const char* label, const SimStats& s) {
    out << absl::StrFormat(
        "%-8s apps %4d  requests %9d  instance-seconds %12.0f  cold starts %7d "
        "(%.3f%%)  "
        "waited %7d  p50 wait %.3f s  p99 wait %.3f s  dropped %d\n",
        label, s.apps, s.requests, s.instance_seconds, s.cold_starts,
        100 * s.ColdStartRate(), s.waited, s.p50_wait_s, s.p99_wait_s,
        s.dropped);
  };
  line("all", r.all);
  if (r.sparse.apps > 0) line("sparse", r.sparse);
  out << absl::StrFormat("peak replicas %d, scale events %d\n", r.peak_replicas,
                         r.scale_events);
  for (size_t i = 0; i < r.events.size() && i < opts.max_events; ++i) {
    const ScaleEvent& e = r.events[i];
    out << absl::StrFormat("  %9.1fs %-10s %s\n", e.time_s, e.app, e.reason);
  }
  if (r.scale_events >
      static_cast<int64_t>(std::min(r.events.size(), opts.max_events))) {
    out << "  ...\n";
  }
  if (!opts.plot_path.empty()) {
    RETURN_IF_ERROR(WritePlot(
        opts.plot_path,
        RenderSvg(r.series, PlotTitle(app, AlgorithmName(cfg.algorithm),
                                      opts.trace_path)),
        out));
  }
  return absl::OkStatus();
}

}  // namespace tidal::cli
