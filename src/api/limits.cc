#include "api/limits.h"

#include <algorithm>
#include <initializer_list>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "api/addresses.h"
#include "common/units.h"

namespace tidal::spec {
namespace {

namespace pb = google::protobuf;

std::string Join(const std::string& parent, absl::string_view child) {
  return parent.empty() ? std::string(child) : absl::StrCat(parent, ".", child);
}

std::string At(const std::string& parent, int i) {
  return absl::StrCat(parent, "[", i, "]");
}

// Checks of one kind of bound, reporting through `report`.
class Checker {
 public:
  Checker(const ValidationOptions& opts, const Reporter& report)
      : opts_(opts), report_(report) {}

  template <typename T>
  void Max(const std::string& path, T value, T max) {
    if (value > max) {
      report_(path, absl::StrCat("must be at most ", max, ", got ", value));
    }
  }

  // Bounds of number fields are whole: shown as such ("1000000", not
  // "1e+06").
  void Max(const std::string& path, double value, double max) {
    if (value > max) {
      report_(path, absl::StrCat("must be at most ", static_cast<int64_t>(max),
                                 ", got ", value));
    }
  }

  void MaxMs(const std::string& path, int64_t ms, int64_t max) {
    if (ms > max) {
      report_(path, absl::StrCat("must be at most ", FormatDurationMs(max),
                                 ", got ", FormatDurationMs(ms)));
    }
  }

  void Count(const std::string& path, int n, int max) {
    if (n > max) {
      report_(path,
              absl::StrCat("must have at most ", max, " entries, got ", n));
    }
  }

  void Size(const std::string& path, const std::string& s, size_t max) {
    if (s.size() > max) {
      report_(path,
              absl::StrCat("must be at most ", max, " bytes, got ", s.size()));
    }
  }

  // A NUL byte would cut the string where a C string is made of it (exec,
  // the environment, paths, HTTP headers).
  void NoNul(const std::string& path, const std::string& s) {
    size_t at = s.find('\0');
    if (at != std::string::npos) {
      report_(path, absl::StrCat("must not contain a NUL byte (found at byte ",
                                 at, "; the string would be cut there)"));
    }
  }

  void Text(const std::string& path, const std::string& s, size_t max) {
    NoNul(path, s);
    Size(path, s, max);
  }

  // An instance count against the server's per-app maximum.
  void Instances(const std::string& path, int64_t n) {
    if (opts_.max_instances_per_app > 0 && n > opts_.max_instances_per_app &&
        (opts_.ports <= 0 || opts_.max_instances_per_app <= opts_.ports)) {
      report_(path,
              absl::StrCat(n, " exceeds the per-app maximum of ",
                           opts_.max_instances_per_app,
                           " instances (tidald --max-instances-per-app)"));
    } else if (opts_.ports > 0 && n > opts_.ports) {
      report_(path,
              absl::StrCat(n, " exceeds the ", opts_.ports,
                           " ports of tidald --port-range ", opts_.port_range,
                           " (each instance needs its own port)"));
    }
  }

  void Refuse(const std::string& path, std::string msg) {
    report_(path, std::move(msg));
  }

  void Labels(const std::string& path,
              const pb::Map<std::string, std::string>& m, int max) {
    Count(path, static_cast<int>(m.size()), max);
  }

  const ValidationOptions& opts() const { return opts_; }

 private:
  const ValidationOptions& opts_;
  const Reporter& report_;
};

void CheckProbe(Checker& c, const std::string& path,
                const tidal::v1::Probe& p) {
  using namespace limits;
  if (p.has_http_get()) {
    c.Text(Join(path, "httpGet.path"), p.http_get().path(), kMaxUrl);
  }
  c.Max(Join(path, "initialDelaySeconds"), p.initial_delay_seconds(),
        kMaxProbeSeconds);
  c.Max(Join(path, "periodSeconds"), p.period_seconds(), kMaxProbeSeconds);
  c.Max(Join(path, "timeoutSeconds"), p.timeout_seconds(),
        kMaxProbeTimeoutSeconds);
  c.Max(Join(path, "failureThreshold"), p.failure_threshold(),
        kMaxProbeThreshold);
  c.Max(Join(path, "successThreshold"), p.success_threshold(),
        kMaxProbeThreshold);
}

void CheckTemplate(Checker& c, const std::string& path,
                   const tidal::v1::Template& t) {
  using namespace limits;
  // command and args make one argv.
  c.Count(Join(path, t.args_size() > 0 ? "args" : "command"),
          t.command_size() + t.args_size(), kMaxArgv);
  size_t exec_bytes = 0;
  for (const char* field : {"command", "args"}) {
    const auto& list =
        absl::string_view(field) == "command" ? t.command() : t.args();
    for (int i = 0; i < list.size(); ++i) {
      c.Text(At(Join(path, field), i), list.Get(i), kMaxExecString);
      exec_bytes += list.Get(i).size() + 1;
    }
  }
  c.Count(Join(path, "env"), t.env_size(), kMaxEnv);
  for (int i = 0; i < t.env_size(); ++i) {
    const auto& e = t.env(i);
    std::string p = At(Join(path, "env"), i);
    c.NoNul(Join(p, "value"), e.value());
    // The environment entry is NAME=value.
    if (e.name().size() + 1 + e.value().size() > kMaxExecString) {
      c.Size(Join(p, "value"), e.value(),
             kMaxExecString - std::min(kMaxExecString, e.name().size() + 1));
    }
    exec_bytes += e.name().size() + e.value().size() + 2;
  }
  if (exec_bytes > kMaxExecTotal) {
    c.Refuse(path, absl::StrCat("command, args and env come to ", exec_bytes,
                                " bytes; at most ", kMaxExecTotal,
                                " may be passed to exec"));
  }
  c.Text(Join(path, "workingDir"), t.working_dir(), kMaxPath);
  c.Text(Join(path, "image"), t.image(), kMaxPath);
  if (t.has_readiness_probe()) {
    CheckProbe(c, Join(path, "readinessProbe"), t.readiness_probe());
  }
  if (t.has_liveness_probe()) {
    CheckProbe(c, Join(path, "livenessProbe"), t.liveness_probe());
  }
  c.Max<int64_t>(Join(path, "terminationGracePeriodSeconds"),
                 t.termination_grace_period_seconds(),
                 kMaxTerminationGracePeriodSeconds);
  c.Max(Join(path, "concurrency"), t.concurrency(), kMaxConcurrency);
  c.Max(Join(path, "timeoutSeconds"), t.timeout_seconds(),
        kMaxRequestTimeoutSeconds);
  c.Max(Join(path, "responseStartTimeoutSeconds"),
        t.response_start_timeout_seconds(), kMaxRequestTimeoutSeconds);
  c.Max(Join(path, "idleTimeoutSeconds"), t.idle_timeout_seconds(),
        kMaxRequestTimeoutSeconds);
  c.Max<int64_t>(Join(path, "resources.cpu"), t.resources().cpu_millis(),
                 kMaxCpuMillis);
  c.Max<int64_t>(Join(path, "resources.memory"), t.resources().memory_bytes(),
                 kMaxMemoryBytes);
  c.Labels(Join(path, "labels"), t.labels(), kMaxLabels);
}

void CheckRules(Checker& c, const std::string& path,
                const tidal::v1::HPAScalingRules& r) {
  using namespace limits;
  c.Count(Join(path, "policies"), r.policies_size(), kMaxPolicies);
  for (int i = 0; i < r.policies_size(); ++i) {
    c.Max(Join(At(Join(path, "policies"), i), "value"), r.policies(i).value(),
          kMaxPolicyValue);
  }
}

void CheckScaling(Checker& c, const std::string& path,
                  const tidal::v1::Scaling& s) {
  using namespace limits;
  if (s.has_min_replicas()) {
    c.Instances(Join(path, "minReplicas"), s.min_replicas());
  }
  if (s.has_max_replicas()) {
    c.Instances(Join(path, "maxReplicas"), s.max_replicas());
  }
  if (s.has_initial_scale()) {
    c.Instances(Join(path, "initialScale"), s.initial_scale());
  }
  c.Max(Join(path, "target"), s.target(), kMaxTarget);
  c.Max(Join(path, "maxScaleUpRate"), s.max_scale_up_rate(), kMaxScaleRate);
  c.Max(Join(path, "maxScaleDownRate"), s.max_scale_down_rate(), kMaxScaleRate);
  c.MaxMs(Join(path, "scaleToZeroGracePeriod"),
          s.scale_to_zero_grace_period_ms(), kMaxScaleToZeroGracePeriodMs);
  if (s.behavior().has_scale_up()) {
    CheckRules(c, Join(path, "behavior.scaleUp"), s.behavior().scale_up());
  }
  if (s.behavior().has_scale_down()) {
    CheckRules(c, Join(path, "behavior.scaleDown"), s.behavior().scale_down());
  }
  c.Count(Join(path, "schedules"), s.schedules_size(), kMaxSchedules);
  for (int i = 0; i < s.schedules_size(); ++i) {
    const auto& sc = s.schedules(i);
    std::string p = At(Join(path, "schedules"), i);
    c.Text(Join(p, "name"), sc.name(), kMaxName);
    c.Size(Join(p, "cron"), sc.cron(), kMaxCron);
    c.MaxMs(Join(p, "duration"), sc.duration_ms(), kMaxScheduleDurationMs);
    if (sc.has_min_replicas()) {
      c.Instances(Join(p, "minReplicas"), sc.min_replicas());
    }
    if (sc.has_max_replicas()) {
      c.Instances(Join(p, "maxReplicas"), sc.max_replicas());
    }
  }
  c.MaxMs(Join(path, "predictive.lookahead"), s.predictive().lookahead_ms(),
          kMaxLookaheadMs);
}

// The integer of "5" (not of "25%"), or -1.
int64_t IntPart(const std::string& s) {
  if (s.empty() || s.size() > 18 || s.back() == '%') return -1;
  int64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return -1;
    v = v * 10 + (ch - '0');
  }
  return v;
}

void CheckRollout(Checker& c, const std::string& path,
                  const tidal::v1::RolloutSpec& r) {
  using namespace limits;
  c.Max(Join(path, "batches"), r.batches(), kMaxBatches);
  c.Max(Join(path, "batchSize"), r.batch_size(), kMaxBatchSize);
  c.MaxMs(Join(path, "batchInterval"), r.batch_interval_ms(),
          kMaxBatchIntervalMs);
  c.Count(Join(path, "steps"), r.steps_size(), kMaxSteps);
  for (int i = 0; i < r.steps_size(); ++i) {
    std::string p = At(Join(path, "steps"), i);
    if (r.steps(i).has_replicas()) {
      c.Instances(Join(p, "replicas"), r.steps(i).replicas());
    }
    c.MaxMs(Join(p, "pause"), r.steps(i).pause_ms(), kMaxBatchIntervalMs);
  }
  for (auto [name, value] :
       {std::pair<const char*, const std::string*>{"maxSurge", &r.max_surge()},
        {"maxUnavailable", &r.max_unavailable()}}) {
    int64_t v = IntPart(*value);
    if (v >= 0) c.Max(Join(path, name), v, kMaxIntOrPercent);
  }
  c.Max(Join(path, "minReadySeconds"), r.min_ready_seconds(),
        kMaxMinReadySeconds);
  c.MaxMs(Join(path, "progressDeadline"), r.progress_deadline_ms(),
          kMaxProgressDeadlineMs);
  const auto& a = r.analysis();
  const std::string ap = Join(path, "analysis");
  c.MaxMs(Join(ap, "interval"), a.interval_ms(), kMaxAnalysisIntervalMs);
  c.Max(Join(ap, "minRequests"), a.min_requests(), kMaxMinRequests);
  c.MaxMs(Join(ap, "maxP99Latency"), a.max_p99_latency_ms(), kMaxP99LatencyMs);
  c.Max(Join(ap, "failureLimit"), a.failure_limit(), kMaxAnalysisCount);
  c.Max(Join(ap, "consecutiveSuccesses"), a.consecutive_successes(),
        kMaxAnalysisCount);
  c.Max(Join(path, "historyLimit"), r.history_limit(), kMaxHistoryLimit);
}

void CheckWebhooks(Checker& c, const std::string& path,
                   const pb::RepeatedPtrField<tidal::v1::Webhook>& hooks) {
  using namespace limits;
  c.Count(path, hooks.size(), kMaxWebhooks);
  for (int i = 0; i < hooks.size(); ++i) {
    const auto& h = hooks.Get(i);
    std::string p = At(path, i);
    c.Text(Join(p, "name"), h.name(), kMaxName);
    c.Size(Join(p, "url"), h.url(), kMaxUrl);
    c.Text(Join(p, "secret"), h.secret(), kMaxSecret);
    c.MaxMs(Join(p, "timeout"), h.timeout_ms(), kMaxWebhookTimeoutMs);
    if (!c.opts().allow_private_webhooks) {
      std::string host = UrlHost(h.url());
      AddressClass cls = ClassifyLiteral(host);
      if (cls != AddressClass::kPublic && cls != AddressClass::kNotAnAddress) {
        c.Refuse(Join(p, "url"),
                 absl::StrCat(host, " is ", AddressClassName(cls),
                              " address; this tidald refuses private webhook "
                              "targets (tidald --allow-private-webhooks)"));
      }
    }
  }
}

}  // namespace

ValidationOptions DefaultServerOptions() {
  ValidationOptions o;
  o.max_instances_per_app = limits::kDefaultMaxInstancesPerApp;
  o.allow_private_webhooks = false;
  o.runtime = "process";
  return o;
}

void CheckLimits(const tidal::v1::App& app, const ValidationOptions& opts,
                 const Reporter& report) {
  using namespace limits;
  Checker c(opts, report);
  c.Labels("metadata.labels", app.metadata().labels(), kMaxLabels);
  c.Labels("metadata.annotations", app.metadata().annotations(),
           kMaxAnnotations);
  for (const auto& [k, v] : app.metadata().annotations()) {
    c.NoNul(Join("metadata.annotations", k), v);
  }
  const auto& spec = app.spec();
  if (spec.has_replicas()) c.Instances("spec.replicas", spec.replicas());
  CheckTemplate(c, "spec.template", spec.template_());
  if (spec.has_scaling()) CheckScaling(c, "spec.scaling", spec.scaling());
  if (spec.has_rollout()) CheckRollout(c, "spec.rollout", spec.rollout());
  CheckWebhooks(c, "spec.webhooks", spec.webhooks());
}

int64_t MaxInstances(const tidal::v1::AppSpec& spec, int64_t unbounded) {
  if (spec.has_replicas()) return spec.replicas();
  const auto& s = spec.scaling();
  int64_t most = s.max_replicas() > 0 ? s.max_replicas() : unbounded;
  most = std::max<int64_t>(most, s.min_replicas());
  most = std::max<int64_t>(most, s.initial_scale());
  for (const auto& sc : s.schedules()) {
    if (sc.has_max_replicas()) {
      most = std::max<int64_t>(
          most, sc.max_replicas() > 0 ? sc.max_replicas() : unbounded);
    }
    most = std::max<int64_t>(most, sc.min_replicas());
  }
  return most;
}

std::string MaxInstancesField(const tidal::v1::AppSpec& spec) {
  return spec.has_replicas() ? "spec.replicas" : "spec.scaling.maxReplicas";
}

}  // namespace tidal::spec
