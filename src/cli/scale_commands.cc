// scale, top and simulate: the scaler's commands.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "api/grpc_status.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "cli/simulate_command.h"
#include "common/units.h"

namespace tidal::cli {
namespace {

struct ScaleFlags {
  std::string app;
  std::optional<int32_t> replicas, min, max;
};

int DoScale(Context& ctx, const ScaleFlags& f) {
  if (!f.replicas && !f.min && !f.max) {
    return ctx.Error("scale needs --replicas, --min or --max", kExitUsage);
  }
  if (f.replicas && (f.min || f.max)) {
    // A fixed count and autoscaling bounds contradict each other.
    return ctx.Error(
        "give either --replicas (a fixed count) or --min/--max (autoscaling "
        "bounds), not both",
        kExitUsage);
  }
  tidal::v1::ScaleRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_name(f.app);
  if (f.replicas) req.set_replicas(*f.replicas);
  if (f.min) req.set_min_replicas(*f.min);
  if (f.max) req.set_max_replicas(*f.max);
  tidal::v1::App app;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().Scale(call.get(), req, &app));
  if (!s.ok()) return ctx.FailWrite(s);
  ctx.out() << AppName(app) << " scaled"
            << InNamespace(app.metadata().namespace_()) << "\n";
  return kExitOk;
}

struct TopFlags {
  std::vector<std::string> args;  // apps [APP]
  bool all_namespaces = false;
  std::string window = "60s";
};

std::string Ms(double ms) {
  if (ms <= 0) return "-";
  if (ms < 10) return absl::StrFormat("%.2fms", ms);
  if (ms < 1000) return absl::StrFormat("%.0fms", ms);
  return absl::StrFormat("%.2fs", ms / 1000);
}

std::string Num(double v) {
  std::string s = absl::StrFormat("%.1f", v);
  if (s.size() > 2 && s.substr(s.size() - 2) == ".0") s.resize(s.size() - 2);
  return s;
}

int DoTop(Context& ctx, const TopFlags& f) {
  if (f.args.empty() || (f.args[0] != "apps" && f.args[0] != "app")) {
    return ctx.Error("usage: tidalctl top apps [APP] [-A] [--window 60s]",
                     kExitUsage);
  }
  if (f.args.size() > 2)
    return ctx.Error("top apps takes at most one app name", kExitUsage);
  auto window_ms = ParseDurationMs(f.window);
  if (!window_ms.ok() || *window_ms < 1000) {
    return ctx.Error(
        absl::StrCat("--window: \"", f.window, "\" is not a duration >= 1s"),
        kExitUsage);
  }
  tidal::v1::TopRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_all_namespaces(f.all_namespaces);
  if (f.args.size() == 2) req.set_app(f.args[1]);
  req.set_window_seconds(*window_ms / 1000);
  tidal::v1::TopResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().Top(call.get(), req, &resp));
  if (!s.ok()) return ctx.Fail(s);
  if (resp.apps().empty()) {
    ctx.err() << (f.all_namespaces ? std::string("No apps found.\n")
                                   : absl::StrCat("No apps found in namespace ",
                                                  ctx.Namespace(), ".\n"));
    return kExitOk;
  }
  // Each app's requests/s over the last 10 minutes, from tidald's history
  // (docs/dashboard.md); "-" where it keeps none.
  std::map<std::string, std::vector<double>> trend;
  {
    tidal::v1::HistoryRequest hreq;
    hreq.set_namespace_(req.namespace_());
    hreq.set_all_namespaces(req.all_namespaces());
    hreq.set_app(req.app());
    hreq.set_window_seconds(600);
    hreq.set_step_seconds(1);
    hreq.set_rps_only(true);
    tidal::v1::HistoryResponse hist;
    auto hcall = ctx.Call();
    if (ctx.Stub().History(hcall.get(), hreq, &hist).ok()) {
      for (const auto& h : hist.apps()) {
        // Seconds before the app's first are zeros.
        std::vector<double> v(std::max(0, 600 - h.rps_size()), 0.0);
        v.insert(v.end(), h.rps().begin(), h.rps().end());
        trend[absl::StrCat(h.namespace_(), "/", h.app())] = std::move(v);
      }
    }
  }
  std::vector<std::string> cols;
  if (f.all_namespaces) cols.push_back("NAMESPACE");
  for (const char* c : {"NAME", "READY", "RPS", "CONCURRENCY", "P50", "P90",
                        "P99", "2XX", "3XX", "4XX", "5XX", "RPS(10M)"}) {
    cols.push_back(c);
  }
  Table t(cols);
  for (const auto& m : resp.apps()) {
    std::vector<std::string> row;
    if (f.all_namespaces) row.push_back(m.namespace_());
    row.push_back(m.app());
    row.push_back(absl::StrCat(m.ready_replicas(), "/", m.desired_replicas()));
    row.push_back(Num(m.rps()));
    row.push_back(Num(m.concurrency()));
    row.push_back(Ms(m.p50_ms()));
    row.push_back(Ms(m.p90_ms()));
    row.push_back(Ms(m.p99_ms()));
    row.push_back(absl::StrCat(m.responses_2xx()));
    row.push_back(absl::StrCat(m.responses_3xx()));
    row.push_back(absl::StrCat(m.responses_4xx()));
    row.push_back(absl::StrCat(m.responses_5xx()));
    auto tr = trend.find(absl::StrCat(m.namespace_(), "/", m.app()));
    row.push_back(tr == trend.end() ? "-" : Sparkline(tr->second, 10));
    t.AddRow(std::move(row));
  }
  ctx.out() << t.Render();
  return kExitOk;
}

struct SimulateFlags {
  SimulateOptions opts;
  std::string start_delay = "1s";
  std::string request_timeout = "5m";
};

int DoSimulate(Context& ctx, SimulateFlags& f) {
  auto delay = ParseDurationMs(f.start_delay);
  if (!delay.ok() || *delay < 0) {
    return ctx.Error(absl::StrCat("--start-delay: \"", f.start_delay,
                                  "\" is not a duration"),
                     kExitUsage);
  }
  auto timeout = ParseDurationMs(f.request_timeout);
  if (!timeout.ok() || *timeout <= 0) {
    return ctx.Error(absl::StrCat("--request-timeout: \"", f.request_timeout,
                                  "\" is not a duration"),
                     kExitUsage);
  }
  f.opts.start_delay = absl::Milliseconds(*delay);
  f.opts.request_timeout = absl::Milliseconds(*timeout);
  // Spec errors are printed as `apply` prints them, one per line.
  absl::Status s = RunSimulateCommand(f.opts, ctx.out(), ctx.err());
  if (s.ok()) return kExitOk;
  // A bad spec, trace or path is the user's input: a usage error.
  const bool input = absl::IsInvalidArgument(s) || absl::IsNotFound(s);
  return ctx.Error(std::string(s.message()), input ? kExitUsage : kExitFailure);
}

}  // namespace

void AddScaleCommands(CLI::App& root, Context& ctx) {
  auto sf = std::make_shared<ScaleFlags>();
  CLI::App* scale = root.add_subcommand(
      "scale",
      "Set an app's replica count (--replicas) or its autoscaling bounds "
      "(--min/--max)");
  scale->add_option("app", sf->app, "app name")->required();
  scale
      ->add_option("--replicas", sf->replicas,
                   "a fixed number of instances (turns autoscaling off)")
      ->check(NonNegativeCount());
  scale
      ->add_option("--min", sf->min,
                   "scaling.minReplicas (turns autoscaling on)")
      ->check(NonNegativeCount());
  scale
      ->add_option("--max", sf->max,
                   "scaling.maxReplicas (0: unbounded; turns autoscaling on)")
      ->check(NonNegativeCount());
  scale->callback([&ctx, sf] { Run(ctx, [&] { return DoScale(ctx, *sf); }); });

  auto tf = std::make_shared<TopFlags>();
  CLI::App* top = root.add_subcommand(
      "top", "Show request metrics of apps (rps, concurrency, latency)");
  top->add_option("args", tf->args, "apps [APP]")->required();
  top->add_flag("-A,--all-namespaces", tf->all_namespaces, "every namespace");
  top->add_option("--window", tf->window, "averaging window (e.g. 60s, 5m)")
      ->capture_default_str();
  top->callback([&ctx, tf] { Run(ctx, [&] { return DoTop(ctx, *tf); }); });

  auto mf = std::make_shared<SimulateFlags>();
  CLI::App* sim = root.add_subcommand(
      "simulate",
      "Replay a traffic trace through an app's scaling spec (no server "
      "needed)");
  sim->add_option("-f,--filename", mf->opts.spec_path,
                  "app spec (YAML), validated as apply does; its "
                  "spec.scaling is simulated")
      ->required();
  sim->add_option("--app", mf->opts.app,
                  "the app of the file to simulate (needed when it has "
                  "several)");
  sim->add_option("--trace", mf->opts.trace_path,
                  "trace file: Azure Functions *-inv.csv, Azure LLM csv, or "
                  "arrival_s,service_ms[,app]")
      ->required();
  sim->add_option("--plot", mf->opts.plot_path,
                  "write load, desired and ready replicas as SVG");
  sim->add_option("--start-delay", mf->start_delay,
                  "instance start time of the model")
      ->capture_default_str();
  sim->add_option("--concurrency", mf->opts.concurrency,
                  "requests per instance (default: template.concurrency, "
                  "else 1)");
  sim->add_option("--request-timeout", mf->request_timeout,
                  "a request waiting longer is dropped")
      ->capture_default_str();
  sim->add_option("--algorithm", mf->opts.algorithm,
                  "override spec.scaling.algorithm")
      ->check(CLI::IsMember({"tidal", "kpa", "hpa", "keepalive", "hybrid"}));
  sim->add_flag("--compare", mf->opts.compare,
                "every policy (tidal, kpa, hpa, keepalive, hybrid) on this "
                "spec and trace, side by side; --plot draws their ready "
                "replicas");
  sim->add_option("--seed", mf->opts.seed, "seed of the arrival process")
      ->capture_default_str();
  sim->add_option("--max-apps", mf->opts.max_apps,
                  "only the first N apps of the trace (0: all)")
      ->capture_default_str();
  sim->add_option("--events", mf->opts.max_events, "scale events printed")
      ->capture_default_str();
  sim->callback([&ctx, mf] { Run(ctx, [&] { return DoSimulate(ctx, *mf); }); });
}

}  // namespace tidal::cli
