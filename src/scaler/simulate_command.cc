#include "scaler/simulate_command.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "scaler/simulator.h"
#include "yaml-cpp/yaml.h"

namespace tidal::scaler {

namespace {

// Reads spec.scaling (camelCase YAML, as in docs/scaling.md) into the proto.
// yaml-cpp stays inside this file; its exceptions are caught here.
class ScalingReader {
 public:
  explicit ScalingReader(std::string source) : source_(std::move(source)) {}

  absl::Status Read(const YAML::Node& scaling, tidal::v1::Scaling* s) {
    if (!scaling) return absl::OkStatus();
    if (!scaling.IsMap())
      return Err(scaling, "spec.scaling", "must be a mapping");
    for (const auto& kv : scaling) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      const std::string f = "spec.scaling." + key;
      if (key == "minReplicas") {
        s->set_min_replicas(v.as<int32_t>());
      } else if (key == "maxReplicas") {
        s->set_max_replicas(v.as<int32_t>());
      } else if (key == "metric") {
        s->set_metric(v.as<std::string>());
      } else if (key == "algorithm") {
        s->set_algorithm(v.as<std::string>());
      } else if (key == "target") {
        s->set_target(v.as<double>());
      } else if (key == "targetUtilization") {
        s->set_target_utilization(v.as<double>());
      } else if (key == "panicWindowPercentage") {
        s->set_panic_window_percentage(v.as<double>());
      } else if (key == "panicThreshold") {
        s->set_panic_threshold(v.as<double>());
      } else if (key == "maxScaleUpRate") {
        s->set_max_scale_up_rate(v.as<double>());
      } else if (key == "maxScaleDownRate") {
        s->set_max_scale_down_rate(v.as<double>());
      } else if (key == "initialScale") {
        s->set_initial_scale(v.as<int32_t>());
      } else if (key == "tolerance") {
        s->set_tolerance(v.as<double>());
      } else if (key == "stableWindow" || key == "scaleDownDelay" ||
                 key == "scaleToZeroGracePeriod" || key == "tick") {
        ASSIGN_OR_RETURN(int64_t ms, Duration(v, f));
        if (key == "stableWindow") s->set_stable_window_ms(ms);
        if (key == "scaleDownDelay") s->set_scale_down_delay_ms(ms);
        if (key == "scaleToZeroGracePeriod")
          s->set_scale_to_zero_grace_period_ms(ms);
        if (key == "tick") s->set_tick_ms(ms);
      } else if (key == "behavior") {
        RETURN_IF_ERROR(Rules(v["scaleUp"], f + ".scaleUp",
                              s->mutable_behavior()->mutable_scale_up()));
        RETURN_IF_ERROR(Rules(v["scaleDown"], f + ".scaleDown",
                              s->mutable_behavior()->mutable_scale_down()));
      } else if (key == "schedules") {
        for (const auto& e : v) {
          auto* sc = s->add_schedules();
          if (e["name"]) sc->set_name(e["name"].as<std::string>());
          if (e["cron"]) sc->set_cron(e["cron"].as<std::string>());
          if (e["timeZone"]) sc->set_time_zone(e["timeZone"].as<std::string>());
          if (e["duration"]) {
            ASSIGN_OR_RETURN(int64_t ms,
                             Duration(e["duration"], f + ".duration"));
            sc->set_duration_ms(ms);
          }
          if (e["minReplicas"])
            sc->set_min_replicas(e["minReplicas"].as<int32_t>());
          if (e["maxReplicas"])
            sc->set_max_replicas(e["maxReplicas"].as<int32_t>());
        }
      } else if (key == "predictive") {
        if (v["enabled"])
          s->mutable_predictive()->set_enabled(v["enabled"].as<bool>());
        if (v["lookahead"]) {
          ASSIGN_OR_RETURN(int64_t ms,
                           Duration(v["lookahead"], f + ".lookahead"));
          s->mutable_predictive()->set_lookahead_ms(ms);
        }
      } else {
        return Err(kv.first, f, "unknown field");
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Err(const YAML::Node& n, const std::string& field,
                   const std::string& msg) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ":", n.Mark().line + 1, ":", n.Mark().column + 1,
                     ": ", field, ": ", msg));
  }
  absl::StatusOr<int64_t> Duration(const YAML::Node& v,
                                   const std::string& field) {
    auto ms = ParseDurationMs(v.as<std::string>());
    if (!ms.ok()) return Err(v, field, std::string(ms.status().message()));
    return *ms;
  }
  absl::Status Rules(const YAML::Node& n, const std::string& field,
                     tidal::v1::HPAScalingRules* r) {
    if (!n) return absl::OkStatus();
    if (n["stabilizationWindowSeconds"]) {
      r->set_stabilization_window_seconds(
          n["stabilizationWindowSeconds"].as<int32_t>());
    }
    if (n["selectPolicy"])
      r->set_select_policy(n["selectPolicy"].as<std::string>());
    for (const auto& p : n["policies"]) {
      auto* hp = r->add_policies();
      hp->set_type(p["type"].as<std::string>(""));
      hp->set_value(p["value"].as<int32_t>(0));
      hp->set_period_seconds(p["periodSeconds"].as<int32_t>(0));
    }
    return absl::OkStatus();
  }
  std::string source_;
};

absl::Status ReadSpec(const std::string& path, tidal::v1::Scaling* scaling,
                      int32_t* concurrency) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(in);
    for (const YAML::Node& doc : docs) {
      if (!doc.IsMap() || !doc["spec"]) continue;
      const YAML::Node spec = doc["spec"];
      if (spec["template"] && spec["template"]["concurrency"]) {
        *concurrency = spec["template"]["concurrency"].as<int32_t>();
      }
      return ScalingReader(path).Read(spec["scaling"], scaling);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no document with a spec"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
}

}  // namespace

absl::Status RunSimulateCommand(const SimulateOptions& opts,
                                std::ostream& out) {
  SimOptions so;
  int32_t concurrency = 0;
  if (!opts.spec_path.empty())
    RETURN_IF_ERROR(ReadSpec(opts.spec_path, &so.scaling, &concurrency));
  if (!opts.algorithm.empty()) so.scaling.set_algorithm(opts.algorithm);
  so.model.concurrency = opts.concurrency >= 0
                             ? opts.concurrency
                             : (concurrency > 0 ? concurrency : 1);
  so.model.start_delay = opts.start_delay;
  so.model.request_timeout = opts.request_timeout;
  so.record_series = !opts.plot_path.empty();
  so.max_events = opts.max_events;
  TraceOptions to;
  to.seed = opts.seed;
  to.max_apps = opts.max_apps;
  ASSIGN_OR_RETURN(Trace trace, ReadTrace(opts.trace_path, to));
  ASSIGN_OR_RETURN(SimResult r, Simulate(trace, so));
  ASSIGN_OR_RETURN(ScalerConfig cfg,
                   ResolveConfig(so.scaling, so.model.concurrency));

  out << absl::StrFormat("trace %s: %d apps, %d requests, %.0f s\n",
                         opts.trace_path, r.all.apps, r.all.requests,
                         trace.duration_s);
  out << absl::StrFormat(
      "algorithm %s, metric %s, target %.4g per instance, start delay %s, %d "
      "per instance\n",
      AlgorithmName(cfg.algorithm), MetricName(cfg.metric), cfg.TargetValue(),
      absl::FormatDuration(opts.start_delay), so.model.concurrency);
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
    std::ofstream f(opts.plot_path);
    if (!f)
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write ", opts.plot_path));
    f << RenderSvg(r.series, absl::StrCat("tidal simulate: ",
                                          AlgorithmName(cfg.algorithm)));
    if (!f)
      return absl::InternalError(
          absl::StrCat("writing ", opts.plot_path, " failed"));
    out << "plot written to " << opts.plot_path << "\n";
  }
  return absl::OkStatus();
}

}  // namespace tidal::scaler
