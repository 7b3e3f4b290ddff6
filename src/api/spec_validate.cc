// Semantic checks of an App (spec.h: ValidateApp, and ParseApps after
// decoding), shared by both.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "api/limits.h"
#include "api/spec.h"
#include "api/spec_internal.h"
#include "common/cron.h"
#include "common/units.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/timestamp.pb.h"

namespace tidal::spec {
namespace internal {
namespace {

using tidal::v1::App;

// ---------------------------------------------------------------------------
// Field checks shared by ParseApps and ValidateApp.

bool IsDnsLabel(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-')) {
      return false;
    }
  }
  return s.front() != '-' && s.back() != '-';
}

bool IsDnsSubdomain(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    absl::string_view part =
        s.substr(start, dot == absl::string_view::npos ? absl::string_view::npos
                                                       : dot - start);
    if (!IsDnsLabel(part)) return false;
    if (dot == absl::string_view::npos) return true;
    start = dot + 1;
  }
}

// A label name or value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both
// ends.
bool IsLabelName(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return absl::ascii_isalnum(s.front()) && absl::ascii_isalnum(s.back());
}

bool IsLabelKey(absl::string_view s) {
  size_t slash = s.find('/');
  if (slash == absl::string_view::npos) return IsLabelName(s);
  return IsDnsSubdomain(s.substr(0, slash)) && IsLabelName(s.substr(slash + 1));
}

constexpr char kDnsLabelRule[] =
    "must be a DNS-1123 label (at most 63 lowercase letters, digits and '-', "
    "starting and ending with a letter or digit)";
constexpr char kLabelKeyRule[] =
    "is not a valid key: a name of at most 63 letters, digits, '-', '_' and "
    "'.' (starting and ending with a letter or digit), optionally prefixed by "
    "a DNS subdomain and '/'";

void CheckName(const std::string& path, const std::string& value,
               const Reporter& report) {
  if (value.empty()) {
    report(path, "required");
  } else if (!IsDnsLabel(value)) {
    report(path, absl::StrCat(kDnsLabelRule, ", got ", Quote(value)));
  }
}

void CheckLabels(const std::string& path,
                 const pb::Map<std::string, std::string>& labels,
                 bool check_values, const Reporter& report) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : labels) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  size_t total = 0;
  for (const std::string& k : keys) {
    const std::string& v = labels.at(k);
    total += k.size() + v.size();
    std::string p = JoinPath(path, k);
    if (!IsLabelKey(k)) {
      report(p, absl::StrCat(Quote(k), " ", kLabelKeyRule));
    }
    if (check_values && !v.empty() && !IsLabelName(v)) {
      report(p, absl::StrCat(
                    "invalid value ", Quote(v),
                    ": at most 63 letters, digits, '-', '_' and '.', starting "
                    "and ending with a letter or digit (or empty)"));
    }
  }
  if (!check_values && total > 256 * 1024) {
    report(path, absl::StrCat("must be at most 256KiB in total, got ", total,
                              " bytes"));
  }
}

template <typename T>
void CheckMin(const std::string& path, T value, T min, const Reporter& report) {
  if (value < min) {
    if (min == 0) {
      report(path, absl::StrCat("must not be negative, got ", value));
    } else {
      report(path, absl::StrCat("must be at least ", min, ", got ", value));
    }
  }
}

void CheckRange(const std::string& path, double value, double lo, double hi,
                const Reporter& report) {
  if (!(value >= lo && value <= hi)) {
    report(path,
           absl::StrCat("must be between ", lo, " and ", hi, ", got ", value));
  }
}

void CheckDurationRange(const std::string& path, int64_t ms, int64_t lo,
                        int64_t hi, const Reporter& report) {
  if (ms < lo || ms > hi) {
    report(path,
           absl::StrCat("must be between ", FormatDurationMs(lo), " and ",
                        FormatDurationMs(hi), ", got ", FormatDurationMs(ms)));
  }
}

void CheckEnum(const std::string& path, const std::string& value,
               const std::vector<std::string>& allowed,
               const Reporter& report) {
  if (value.empty()) return;
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) {
    return;
  }
  report(path, absl::StrCat("must be one of ", absl::StrJoin(allowed, ", "),
                            "; got ", Quote(value)));
}

void CheckPort(const std::string& path, int32_t port, const Reporter& report) {
  if (port < 0 || port > 65535) {
    report(path, absl::StrCat("must be between 1 and 65535 (0 or unset: the "
                              "instance's own port), got ",
                              port));
  }
}

void CheckProbe(const std::string& path, const tidal::v1::Probe& p,
                bool liveness, const Reporter& report) {
  bool http = p.has_http_get();
  bool tcp = p.has_tcp_socket();
  if (http && tcp) {
    report(path, "must set exactly one of httpGet or tcpSocket, not both");
  } else if (!http && !tcp) {
    report(path, "must set exactly one of httpGet or tcpSocket");
  }
  if (http) {
    const std::string& hp = p.http_get().path();
    if (!hp.empty() && hp[0] != '/') {
      report(JoinPath(path, "httpGet.path"),
             absl::StrCat("must start with '/', got ", Quote(hp)));
    }
    CheckPort(JoinPath(path, "httpGet.port"), p.http_get().port(), report);
  }
  if (tcp) {
    CheckPort(JoinPath(path, "tcpSocket.port"), p.tcp_socket().port(), report);
  }
  CheckMin<int32_t>(JoinPath(path, "initialDelaySeconds"),
                    p.initial_delay_seconds(), 0, report);
  if (p.has_period_seconds()) {
    CheckMin<int32_t>(JoinPath(path, "periodSeconds"), p.period_seconds(), 1,
                      report);
  }
  if (p.has_timeout_seconds()) {
    CheckMin<int32_t>(JoinPath(path, "timeoutSeconds"), p.timeout_seconds(), 1,
                      report);
  }
  if (p.has_failure_threshold()) {
    CheckMin<int32_t>(JoinPath(path, "failureThreshold"), p.failure_threshold(),
                      1, report);
  }
  if (p.has_success_threshold()) {
    CheckMin<int32_t>(JoinPath(path, "successThreshold"), p.success_threshold(),
                      1, report);
    if (liveness && p.success_threshold() > 1) {
      report(JoinPath(path, "successThreshold"),
             absl::StrCat("must be 1 for a liveness probe, got ",
                          p.success_threshold()));
    }
  }
}

bool IsEnvName(absl::string_view s) {
  if (s.empty()) return false;
  if (absl::ascii_isdigit(s[0])) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

void CheckTemplate(const std::string& path, const tidal::v1::Template& t,
                   const Reporter& report) {
  std::string cmd = JoinPath(path, "command");
  // With an image (the Kubernetes runtime), an empty command runs the
  // image's entrypoint, as in a Pod.
  if (t.command().empty() && t.image().empty()) {
    report(cmd,
           "required: the program to run and its fixed arguments, e.g. "
           "[\"tidal-sample-app\"]");
  } else if (!t.command().empty() && t.command(0).empty()) {
    report(IndexPath(cmd, 0), "must not be empty (the program to run)");
  }
  std::map<std::string, int> seen;
  for (int i = 0; i < t.env_size(); ++i) {
    const tidal::v1::EnvVar& var = t.env(i);
    const std::string& name = var.name();
    const std::string ep = IndexPath(JoinPath(path, "env"), i);
    std::string p = JoinPath(ep, "name");
    if (var.has_value_from()) {
      const std::string vf = JoinPath(ep, "valueFrom");
      if (!var.value().empty()) {
        report(vf,
               "set either value or valueFrom, not both (the value comes "
               "from the secret)");
      }
      if (!var.value_from().has_secret_key_ref()) {
        report(vf,
               "required: secretKeyRef (the Secret and key to take the "
               "value from)");
      } else {
        const auto& ref = var.value_from().secret_key_ref();
        const std::string rp = JoinPath(vf, "secretKeyRef");
        CheckName(JoinPath(rp, "name"), ref.name(), report);
        if (ref.key().empty()) {
          report(JoinPath(rp, "key"), "required");
        } else if (!IsSecretKey(ref.key())) {
          report(JoinPath(rp, "key"),
                 absl::StrCat("must be letters, digits, '-', '_' and '.', "
                              "at most 253, got ",
                              Quote(ref.key())));
        }
      }
    }
    if (name.empty()) {
      report(p, "required");
    } else if (!IsEnvName(name)) {
      report(p, absl::StrCat("must be letters, digits, '_', '-' and '.', not "
                             "starting with a digit, got ",
                             Quote(name)));
    } else if (name == "PORT") {
      report(p,
             "PORT is reserved: tidal sets it to the port the instance "
             "must listen on");
    } else if (auto it = seen.find(name); it != seen.end()) {
      report(p, absl::StrCat("duplicate name ", Quote(name), " (also env[",
                             it->second, "])"));
    } else {
      seen[name] = i;
    }
  }
  if (t.port() != 0) CheckPort(JoinPath(path, "port"), t.port(), report);
  if (t.has_readiness_probe()) {
    CheckProbe(JoinPath(path, "readinessProbe"), t.readiness_probe(), false,
               report);
  }
  if (t.has_liveness_probe()) {
    CheckProbe(JoinPath(path, "livenessProbe"), t.liveness_probe(), true,
               report);
  }
  if (t.has_termination_grace_period_seconds()) {
    CheckMin<int64_t>(JoinPath(path, "terminationGracePeriodSeconds"),
                      t.termination_grace_period_seconds(), 0, report);
  }
  CheckMin<int32_t>(JoinPath(path, "concurrency"), t.concurrency(), 0, report);
  CheckEnum(JoinPath(path, "protocol"), t.protocol(), {"http1", "h2c", "grpc"},
            report);
  if (t.has_timeout_seconds()) {
    CheckMin<int32_t>(JoinPath(path, "timeoutSeconds"), t.timeout_seconds(), 1,
                      report);
  }
  if (t.has_response_start_timeout_seconds()) {
    CheckMin<int32_t>(JoinPath(path, "responseStartTimeoutSeconds"),
                      t.response_start_timeout_seconds(), 1, report);
  }
  if (t.has_idle_timeout_seconds()) {
    CheckMin<int32_t>(JoinPath(path, "idleTimeoutSeconds"),
                      t.idle_timeout_seconds(), 1, report);
  }
  CheckMin<int64_t>(JoinPath(path, "resources.cpu"), t.resources().cpu_millis(),
                    0, report);
  CheckMin<int64_t>(JoinPath(path, "resources.memory"),
                    t.resources().memory_bytes(), 0, report);
  CheckLabels(JoinPath(path, "labels"), t.labels(), true, report);
  CheckLabels(JoinPath(path, "annotations"), t.annotations(), false, report);
}

// What the runtime tidald runs with needs of a template.
void CheckTemplateForRuntime(const std::string& path,
                             const tidal::v1::Template& t,
                             const std::string& runtime,
                             const Reporter& report) {
  if (runtime == "kubernetes") {
    if (t.image().empty()) {
      report(JoinPath(path, "image"),
             "required: instances run as Kubernetes Pods (tidald "
             "--runtime=kubernetes), e.g. \"registry.example.com/web:1.4\"");
    }
  } else if (runtime == "process" && !t.image().empty() &&
             t.command().empty()) {
    report(JoinPath(path, "command"),
           "required: tidald runs instances as local processes "
           "(--runtime=process), which do not use spec.template.image");
  }
}

void CheckRules(const std::string& path, const tidal::v1::HPAScalingRules& r,
                const Reporter& report) {
  if (r.has_stabilization_window_seconds()) {
    int32_t w = r.stabilization_window_seconds();
    if (w < 0 || w > 3600) {
      report(JoinPath(path, "stabilizationWindowSeconds"),
             absl::StrCat("must be between 0 and 3600, got ", w));
    }
  }
  CheckEnum(JoinPath(path, "selectPolicy"), r.select_policy(),
            {"Max", "Min", "Disabled"}, report);
  if (r.has_tolerance()) {
    CheckRange(JoinPath(path, "tolerance"), r.tolerance(), 0, 10, report);
  }
  for (int i = 0; i < r.policies_size(); ++i) {
    const auto& p = r.policies(i);
    std::string pp = IndexPath(JoinPath(path, "policies"), i);
    if (p.type().empty()) {
      report(JoinPath(pp, "type"), "required: Pods or Percent");
    } else {
      CheckEnum(JoinPath(pp, "type"), p.type(), {"Pods", "Percent"}, report);
    }
    CheckMin<int32_t>(JoinPath(pp, "value"), p.value(), 1, report);
    if (p.period_seconds() < 1 || p.period_seconds() > 1800) {
      report(
          JoinPath(pp, "periodSeconds"),
          absl::StrCat("must be between 1 and 1800, got ", p.period_seconds()));
    }
  }
}

void CheckScaling(const std::string& path, const tidal::v1::Scaling& s,
                  const Reporter& report) {
  if (s.has_min_replicas()) {
    CheckMin<int32_t>(JoinPath(path, "minReplicas"), s.min_replicas(), 0,
                      report);
  }
  // maxReplicas 0 means unbounded (as in the scaler and `tidalctl scale
  // --max 0`).
  if (s.has_max_replicas()) {
    CheckMin<int32_t>(JoinPath(path, "maxReplicas"), s.max_replicas(), 0,
                      report);
  }
  if (s.has_min_replicas() && s.has_max_replicas() && s.max_replicas() > 0 &&
      s.min_replicas() > s.max_replicas()) {
    report(JoinPath(path, "minReplicas"),
           absl::StrCat("must be <= maxReplicas (", s.min_replicas(), " > ",
                        s.max_replicas(), ")"));
  }
  CheckEnum(JoinPath(path, "metric"), s.metric(),
            {"concurrency", "rps", "cpu", "memory"}, report);
  CheckEnum(JoinPath(path, "algorithm"), s.algorithm(),
            {"tidal", "kpa", "hpa", "keepalive", "hybrid"}, report);
  if (s.has_target() && !(s.target() > 0)) {
    report(JoinPath(path, "target"),
           absl::StrCat("must be greater than 0, got ", s.target()));
  }
  if (s.has_target_utilization()) {
    CheckRange(JoinPath(path, "targetUtilization"), s.target_utilization(), 1,
               100, report);
  }
  if (s.has_stable_window_ms()) {
    CheckDurationRange(JoinPath(path, "stableWindow"), s.stable_window_ms(),
                       6000, 3600000, report);
  }
  if (s.has_panic_window_percentage()) {
    CheckRange(JoinPath(path, "panicWindowPercentage"),
               s.panic_window_percentage(), 1, 100, report);
  }
  if (s.has_panic_threshold()) {
    CheckRange(JoinPath(path, "panicThreshold"), s.panic_threshold(), 110, 1000,
               report);
  }
  if (s.has_max_scale_up_rate() && !(s.max_scale_up_rate() > 1)) {
    report(JoinPath(path, "maxScaleUpRate"),
           absl::StrCat("must be greater than 1, got ", s.max_scale_up_rate()));
  }
  if (s.has_max_scale_down_rate() && !(s.max_scale_down_rate() > 1)) {
    report(
        JoinPath(path, "maxScaleDownRate"),
        absl::StrCat("must be greater than 1, got ", s.max_scale_down_rate()));
  }
  if (s.has_scale_down_delay_ms()) {
    CheckDurationRange(JoinPath(path, "scaleDownDelay"),
                       s.scale_down_delay_ms(), 0, 3600000, report);
  }
  if (s.has_scale_to_zero_grace_period_ms()) {
    CheckMin<int64_t>(JoinPath(path, "scaleToZeroGracePeriod"),
                      s.scale_to_zero_grace_period_ms(), 0, report);
  }
  if (s.has_initial_scale()) {
    CheckMin<int32_t>(JoinPath(path, "initialScale"), s.initial_scale(), 0,
                      report);
    if (s.has_max_replicas() && s.max_replicas() > 0 &&
        s.initial_scale() > s.max_replicas()) {
      report(JoinPath(path, "initialScale"),
             absl::StrCat("must be <= maxReplicas (", s.initial_scale(), " > ",
                          s.max_replicas(), ")"));
    }
  }
  if (s.has_tolerance() && !(s.tolerance() >= 0 && s.tolerance() < 1)) {
    report(JoinPath(path, "tolerance"),
           absl::StrCat("must be at least 0 and below 1, got ", s.tolerance()));
  }
  if (s.has_tick_ms()) {
    CheckDurationRange(JoinPath(path, "tick"), s.tick_ms(), 100, 60000, report);
  }
  if (s.has_target_wait_p99_ms()) {
    CheckDurationRange(JoinPath(path, "targetWaitP99"), s.target_wait_p99_ms(),
                       0, 600000, report);
  }
  if (s.has_behavior()) {
    std::string b = JoinPath(path, "behavior");
    if (s.behavior().has_scale_up()) {
      CheckRules(JoinPath(b, "scaleUp"), s.behavior().scale_up(), report);
    }
    if (s.behavior().has_scale_down()) {
      CheckRules(JoinPath(b, "scaleDown"), s.behavior().scale_down(), report);
    }
  }
  std::map<std::string, int> names;
  for (int i = 0; i < s.schedules_size(); ++i) {
    const auto& sc = s.schedules(i);
    std::string sp = IndexPath(JoinPath(path, "schedules"), i);
    if (!sc.name().empty()) {
      if (auto it = names.find(sc.name()); it != names.end()) {
        report(JoinPath(sp, "name"),
               absl::StrCat("duplicate schedule name ", Quote(sc.name()),
                            " (also schedules[", it->second, "])"));
      } else {
        names[sc.name()] = i;
      }
    }
    if (sc.cron().empty()) {
      report(JoinPath(sp, "cron"),
             "required: a 5-field cron expression like \"0 19 * * *\"");
    } else if (auto c = ParseCron(sc.cron()); !c.ok()) {
      report(JoinPath(sp, "cron"),
             absl::StrCat("invalid cron expression ", Quote(sc.cron()), ": ",
                          c.status().message()));
    }
    if (auto tz = LoadZone(sc.time_zone()); !tz.ok()) {
      report(JoinPath(sp, "timeZone"), std::string(tz.status().message()));
    }
    if (sc.duration_ms() <= 0) {
      report(JoinPath(sp, "duration"),
             "required: how long the schedule holds, e.g. \"4h\"");
    }
    if (!sc.has_min_replicas() && !sc.has_max_replicas()) {
      report(sp, "must set minReplicas, maxReplicas or both");
    }
    if (sc.has_min_replicas()) {
      CheckMin<int32_t>(JoinPath(sp, "minReplicas"), sc.min_replicas(), 0,
                        report);
    }
    if (sc.has_max_replicas()) {
      CheckMin<int32_t>(JoinPath(sp, "maxReplicas"), sc.max_replicas(), 0,
                        report);
    }
    // A schedule's maxReplicas 0 is "no cap", as the spec's.
    if (sc.has_min_replicas() && sc.has_max_replicas() &&
        sc.max_replicas() > 0 && sc.min_replicas() > sc.max_replicas()) {
      report(JoinPath(sp, "minReplicas"),
             absl::StrCat("must be <= maxReplicas (", sc.min_replicas(), " > ",
                          sc.max_replicas(), ")"));
    }
  }
  if (s.predictive().has_lookahead_ms()) {
    CheckMin<int64_t>(JoinPath(path, "predictive.lookahead"),
                      s.predictive().lookahead_ms(), 0, report);
  }
}

// "25%" (0-100%) or a non-negative integer.
bool IsIntOrPercent(absl::string_view s) {
  if (s.empty()) return false;
  bool percent = s.back() == '%';
  if (percent) s.remove_suffix(1);
  if (s.empty() || s.size() > 9) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  int v = 0;
  if (!absl::SimpleAtoi(s, &v)) return false;
  return !percent || v <= 100;
}

bool IsZeroIntOrPercent(absl::string_view s) { return s == "0" || s == "0%"; }

void CheckRollout(const std::string& path, const tidal::v1::RolloutSpec& r,
                  const Reporter& report) {
  CheckEnum(JoinPath(path, "strategy"), r.strategy(), {"batch", "canary"},
            report);
  CheckEnum(JoinPath(path, "supersede"), r.supersede(), {"restart", "continue"},
            report);
  CheckMin<int32_t>(JoinPath(path, "batches"), r.batches(), 0, report);
  CheckMin<int32_t>(JoinPath(path, "batchSize"), r.batch_size(), 0, report);
  if (r.batches() > 0 && r.batch_size() > 0) {
    report(JoinPath(path, "batchSize"),
           "set either batches or batchSize, not both");
  }
  CheckMin<int64_t>(JoinPath(path, "batchInterval"), r.batch_interval_ms(), 0,
                    report);
  if (r.pause_manual() && r.batch_interval_ms() > 0) {
    report(JoinPath(path, "pause"),
           "set either pause: manual or batchInterval, not both");
  }
  bool canary = r.strategy() == "canary";
  if (!canary && r.steps_size() > 0) {
    report(JoinPath(path, "steps"), "steps need strategy: canary");
  }
  if (canary && r.steps_size() == 0) {
    report(JoinPath(path, "steps"),
           "strategy canary needs at least one step, e.g. [{weight: 10, "
           "pause: 5m}]");
  }
  int last_weight = 0, last_weight_index = -1;
  int last_replicas = 0, last_replicas_index = -1;
  for (int i = 0; i < r.steps_size(); ++i) {
    const auto& st = r.steps(i);
    std::string sp = IndexPath(JoinPath(path, "steps"), i);
    if (st.has_weight() == st.has_replicas()) {
      report(sp, "must set exactly one of weight or replicas");
    }
    if (st.has_weight()) {
      std::string wp = JoinPath(sp, "weight");
      if (st.weight() < 1 || st.weight() > 100) {
        report(wp,
               absl::StrCat("must be between 1 and 100, got ", st.weight()));
      } else if (last_weight_index >= 0 && st.weight() <= last_weight) {
        report(wp, absl::StrCat("must be greater than steps[",
                                last_weight_index, "].weight (", st.weight(),
                                " <= ", last_weight, ")"));
      } else {
        last_weight = st.weight();
        last_weight_index = i;
      }
    }
    if (st.has_replicas()) {
      std::string rp = JoinPath(sp, "replicas");
      if (st.replicas() < 1) {
        report(rp, absl::StrCat("must be at least 1, got ", st.replicas()));
      } else if (last_replicas_index >= 0 && st.replicas() <= last_replicas) {
        report(rp, absl::StrCat("must be greater than steps[",
                                last_replicas_index, "].replicas (",
                                st.replicas(), " <= ", last_replicas, ")"));
      } else {
        last_replicas = st.replicas();
        last_replicas_index = i;
      }
    }
    CheckMin<int64_t>(JoinPath(sp, "pause"), st.pause_ms(), 0, report);
    if (st.pause_manual() && st.pause_ms() > 0) {
      report(JoinPath(sp, "pause"), "either a duration or manual, not both");
    }
  }
  for (auto [name, value] :
       {std::pair<const char*, const std::string*>{"maxSurge", &r.max_surge()},
        {"maxUnavailable", &r.max_unavailable()}}) {
    if (!value->empty() && !IsIntOrPercent(*value)) {
      report(JoinPath(path, name),
             absl::StrCat("must be a non-negative integer or a percentage "
                          "like \"25%\", got ",
                          Quote(*value)));
    }
  }
  if (IsZeroIntOrPercent(r.max_surge()) &&
      IsZeroIntOrPercent(r.max_unavailable())) {
    report(JoinPath(path, "maxUnavailable"),
           "must not be 0 when maxSurge is 0 (the rollout could not make "
           "progress)");
  }
  CheckMin<int32_t>(JoinPath(path, "minReadySeconds"), r.min_ready_seconds(), 0,
                    report);
  if (r.has_progress_deadline_ms() && r.progress_deadline_ms() <= 0) {
    report(JoinPath(path, "progressDeadline"),
           absl::StrCat("must be greater than 0, got ",
                        FormatDurationMs(r.progress_deadline_ms())));
  }
  if (r.has_analysis()) {
    const auto& a = r.analysis();
    std::string ap = JoinPath(path, "analysis");
    CheckMin<int64_t>(JoinPath(ap, "interval"), a.interval_ms(), 0, report);
    CheckMin<int64_t>(JoinPath(ap, "minRequests"), a.min_requests(), 0, report);
    if (a.has_max_error_rate()) {
      double e = a.max_error_rate();
      if (!(e >= 0 && e <= 1)) {
        report(JoinPath(ap, "maxErrorRate"),
               absl::StrCat("must be a fraction between 0 and 1 (or a "
                            "percentage like \"5%\"), got ",
                            e));
      }
    }
    CheckMin<int64_t>(JoinPath(ap, "maxP99Latency"), a.max_p99_latency_ms(), 0,
                      report);
    CheckMin<int32_t>(JoinPath(ap, "failureLimit"), a.failure_limit(), 0,
                      report);
    CheckMin<int32_t>(JoinPath(ap, "consecutiveSuccesses"),
                      a.consecutive_successes(), 0, report);
    CheckEnum(JoinPath(ap, "inconclusive"), a.inconclusive(), {"fail", "pass"},
              report);
  }
  CheckMin<int32_t>(JoinPath(path, "historyLimit"), r.history_limit(), 0,
                    report);
}

bool IsHttpUrl(absl::string_view url) {
  absl::string_view rest;
  if (absl::StartsWith(url, "http://")) {
    rest = url.substr(7);
  } else if (absl::StartsWith(url, "https://")) {
    rest = url.substr(8);
  } else {
    return false;
  }
  if (rest.empty() || rest[0] == '/' || rest[0] == ':' || rest[0] == '?') {
    return false;
  }
  for (char c : url) {
    if (absl::ascii_isspace(c) || absl::ascii_iscntrl(c)) return false;
  }
  return true;
}

void CheckWebhooks(const std::string& path,
                   const pb::RepeatedPtrField<tidal::v1::Webhook>& hooks,
                   const Reporter& report) {
  std::map<std::string, int> names;
  for (int i = 0; i < hooks.size(); ++i) {
    const auto& h = hooks.Get(i);
    std::string hp = IndexPath(path, i);
    if (h.name().empty()) {
      report(JoinPath(hp, "name"), "required");
    } else if (auto it = names.find(h.name()); it != names.end()) {
      report(JoinPath(hp, "name"),
             absl::StrCat("duplicate webhook name ", Quote(h.name()),
                          " (also webhooks[", it->second, "])"));
    } else {
      names[h.name()] = i;
    }
    if (h.type().empty()) {
      report(JoinPath(hp, "type"),
             "required: one of pre-rollout, confirm-promotion, post-rollout, "
             "rollback");
    } else {
      CheckEnum(
          JoinPath(hp, "type"), h.type(),
          {"pre-rollout", "confirm-promotion", "post-rollout", "rollback"},
          report);
    }
    if (h.url().empty()) {
      report(JoinPath(hp, "url"), "required");
    } else if (!IsHttpUrl(h.url())) {
      report(JoinPath(hp, "url"),
             absl::StrCat("must be an http:// or https:// URL with a host, "
                          "got ",
                          Quote(h.url())));
    }
    CheckMin<int64_t>(JoinPath(hp, "timeout"), h.timeout_ms(), 0, report);
    if (h.retries() < 0 || h.retries() > 10) {
      report(JoinPath(hp, "retries"),
             absl::StrCat("must be between 0 and 10, got ", h.retries()));
    }
  }
}

}  // namespace

bool IsSecretKey(absl::string_view s) {
  if (s.empty() || s.size() > 253 || s == "." || s == "..") return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

void CheckSecret(const tidal::v1::Secret& secret, const Reporter& report) {
  if (secret.api_version().empty()) {
    report("apiVersion", absl::StrCat("required: ", kApiVersion));
  } else if (secret.api_version() != kApiVersion) {
    report("apiVersion", absl::StrCat("must be ", Quote(kApiVersion), ", got ",
                                      Quote(secret.api_version())));
  }
  if (secret.kind() != kSecretKind) {
    report("kind", absl::StrCat("must be ", Quote(kSecretKind), ", got ",
                                Quote(secret.kind())));
  }
  CheckName("metadata.name", secret.metadata().name(), report);
  CheckName("metadata.namespace", secret.metadata().namespace_(), report);
  CheckLabels("metadata.labels", secret.metadata().labels(), true, report);
  CheckLabels("metadata.annotations", secret.metadata().annotations(), false,
              report);
  if (secret.type().size() > 253) {
    report("type", "must be at most 253 characters");
  }
  // Keys only: a value is never quoted in a message.
  size_t total = 0;
  auto check_keys = [&](const char* field, const auto& map) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : map) {
      keys.push_back(k);
      total += k.size() + v.size();
    }
    std::sort(keys.begin(), keys.end());
    for (const std::string& k : keys) {
      if (!IsSecretKey(k)) {
        report(JoinPath(field, k),
               absl::StrCat(Quote(k),
                            " is not a valid key: letters, digits, '-', '_' "
                            "and '.', at most 253"));
      }
    }
  };
  check_keys("data", secret.data());
  check_keys("stringData", secret.string_data());
  if (total > limits::kMaxSecretBytes) {
    report("data", absl::StrCat("must be at most 1MiB in total (keys and "
                                "values), got ",
                                total, " bytes"));
  }
}

void CheckApp(const App& app, const ValidationOptions& opts,
              const Reporter& report) {
  if (app.api_version().empty()) {
    report("apiVersion", absl::StrCat("required: ", kApiVersion));
  } else if (app.api_version() != kApiVersion) {
    report("apiVersion", absl::StrCat("must be ", Quote(kApiVersion), ", got ",
                                      Quote(app.api_version())));
  }
  if (app.kind().empty()) {
    report("kind", absl::StrCat("required: ", kKind));
  } else if (app.kind() != kKind) {
    report("kind",
           absl::StrCat("must be ", Quote(kKind), ", got ", Quote(app.kind())));
  }
  CheckName("metadata.name", app.metadata().name(), report);
  CheckName("metadata.namespace", app.metadata().namespace_(), report);
  CheckLabels("metadata.labels", app.metadata().labels(), true, report);
  CheckLabels("metadata.annotations", app.metadata().annotations(), false,
              report);
  const auto& spec = app.spec();
  if (spec.has_replicas()) {
    CheckMin<int32_t>("spec.replicas", spec.replicas(), 0, report);
  }
  CheckTemplate("spec.template", spec.template_(), report);
  CheckTemplateForRuntime("spec.template", spec.template_(), opts.runtime,
                          report);
  if (spec.has_scaling()) {
    const auto& s = spec.scaling();
    CheckScaling("spec.scaling", s, report);
    if (spec.has_replicas() && spec.replicas() >= 0) {
      bool below = s.has_min_replicas() && spec.replicas() < s.min_replicas();
      bool above = s.has_max_replicas() && s.max_replicas() > 0 &&
                   spec.replicas() > s.max_replicas();
      if (below || above) {
        report("spec.replicas",
               absl::StrCat(
                   "conflicts with spec.scaling: ", spec.replicas(),
                   below ? absl::StrCat(" < minReplicas ", s.min_replicas())
                         : absl::StrCat(" > maxReplicas ", s.max_replicas()),
                   " (set replicas within minReplicas..maxReplicas, or only "
                   "one of them)"));
      }
    }
  }
  if (spec.has_rollout()) CheckRollout("spec.rollout", spec.rollout(), report);
  CheckWebhooks("spec.webhooks", spec.webhooks(), report);
  CheckLimits(app, opts, report);
}

}  // namespace internal

std::vector<SpecError> ValidateSecret(const tidal::v1::Secret& secret) {
  std::vector<SpecError> errors;
  internal::CheckSecret(secret, [&](const std::string& path, std::string msg) {
    errors.push_back({"", 0, 0, path, std::move(msg)});
  });
  return errors;
}

void NormalizeSecret(tidal::v1::Secret* secret) {
  for (const auto& [k, v] : secret->string_data()) {
    (*secret->mutable_data())[k] = v;
  }
  secret->clear_string_data();
  std::vector<std::pair<std::string, int64_t>> keys;
  for (const auto& [k, v] : secret->data()) {
    keys.emplace_back(k, static_cast<int64_t>(v.size()));
  }
  std::sort(keys.begin(), keys.end());
  secret->clear_keys();
  for (const auto& [k, n] : keys) {
    auto* key = secret->add_keys();
    key->set_name(k);
    key->set_size(n);
  }
}

tidal::v1::Secret RedactSecret(tidal::v1::Secret secret) {
  if (secret.keys().empty()) NormalizeSecret(&secret);
  secret.clear_data();
  secret.clear_string_data();
  return secret;
}

std::vector<SpecError> ValidateApp(const tidal::v1::App& app,
                                   const ValidationOptions& opts) {
  std::vector<SpecError> errors;
  internal::CheckApp(app, opts, [&](const std::string& path, std::string msg) {
    errors.push_back({"", 0, 0, path, std::move(msg)});
  });
  return errors;
}

std::string NamespaceProblem(absl::string_view ns) {
  if (internal::IsDnsLabel(ns)) return "";
  return absl::StrCat(internal::kDnsLabelRule, ", got ", internal::Quote(ns));
}

}  // namespace tidal::spec
