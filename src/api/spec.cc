#include "api/spec.h"

// GCC 12 warns about yaml-cpp's own iterator proxies (a false positive).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <yaml-cpp/yaml.h>

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
#include "common/cron.h"
#include "common/units.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/timestamp.pb.h"

namespace tidal::spec {
namespace {

namespace pb = google::protobuf;
using tidal::v1::App;

constexpr char kApiVersion[] = "tidal.dev/v1";
constexpr char kKind[] = "App";

absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

std::string Quote(absl::string_view s) {
  std::string shown(s.substr(0, 60));
  if (s.size() > 60) shown += "...";
  return absl::StrCat("\"", absl::CHexEscape(shown), "\"");
}

std::string JoinPath(const std::string& parent, absl::string_view child) {
  if (parent.empty()) return std::string(child);
  return absl::StrCat(parent, ".", child);
}

std::string IndexPath(const std::string& parent, int i) {
  return absl::StrCat(parent, "[", i, "]");
}

// ---------------------------------------------------------------------------
// The YAML shape of each message: field names and how values are written.

enum class Kind {
  kGeneric,       // by the proto type
  kDuration,      // int64 *_ms written as "30s"
  kCpu,           // Resources.cpu_millis as "500m"
  kBytes,         // Resources.memory_bytes as "256Mi"
  kEnv,           // Template.env: a map, or a list of {name, value}
  kErrorRate,     // Analysis.max_error_rate: 0.05 or "5%"
  kIntOrPercent,  // RolloutSpec.max_surge / max_unavailable: 1 or "25%"
  kStepPause,     // CanaryStep.pause_ms (+ pause_manual): duration | manual
  kRolloutPause,  // RolloutSpec.pause_manual: manual | a duration
  kTimestamp,     // google.protobuf.Timestamp as RFC 3339
};

struct FieldInfo {
  std::string name;  // YAML name
  const pb::FieldDescriptor* field;
  Kind kind;
};

struct MessageInfo {
  std::vector<FieldInfo> fields;  // declaration order
  const FieldInfo* Find(absl::string_view name) const {
    for (const FieldInfo& f : fields) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }
};

bool EndsWith(absl::string_view s, absl::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

// Returns false for fields that have no YAML name of their own.
bool Describe(const pb::FieldDescriptor* f, FieldInfo* out) {
  const std::string& full = f->full_name();
  out->field = f;
  out->kind = Kind::kGeneric;
  out->name = f->json_name();
  if (full == "tidal.v1.Resources.cpu_millis") {
    out->name = "cpu";
    out->kind = Kind::kCpu;
  } else if (full == "tidal.v1.Resources.memory_bytes") {
    out->name = "memory";
    out->kind = Kind::kBytes;
  } else if (full == "tidal.v1.Template.env") {
    out->kind = Kind::kEnv;
  } else if (full == "tidal.v1.Analysis.max_error_rate") {
    out->kind = Kind::kErrorRate;
  } else if (full == "tidal.v1.RolloutSpec.max_surge" ||
             full == "tidal.v1.RolloutSpec.max_unavailable") {
    out->kind = Kind::kIntOrPercent;
  } else if (full == "tidal.v1.CanaryStep.pause_ms") {
    out->name = "pause";
    out->kind = Kind::kStepPause;
  } else if (full == "tidal.v1.CanaryStep.pause_manual") {
    return false;
  } else if (full == "tidal.v1.RolloutSpec.pause_manual") {
    out->name = "pause";
    out->kind = Kind::kRolloutPause;
  } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
             f->message_type()->full_name() == "google.protobuf.Timestamp") {
    out->kind = Kind::kTimestamp;
  } else if (EndsWith(f->name(), "_ms") &&
             f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64) {
    out->name = out->name.substr(0, out->name.size() - 2);  // drop "Ms"
    out->kind = Kind::kDuration;
  }
  return true;
}

struct Schema {
  std::map<const pb::Descriptor*, MessageInfo> messages;
  // YAML name -> the paths (under metadata and spec) where it is a field.
  std::map<std::string, std::vector<std::string>> where;

  const MessageInfo& Get(const pb::Descriptor* d) const {
    return messages.at(d);
  }

  void Add(const pb::Descriptor* d, const std::string& path, bool index) {
    if (messages.count(d) == 0) {
      MessageInfo info;
      for (int i = 0; i < d->field_count(); ++i) {
        FieldInfo fi;
        if (Describe(d->field(i), &fi)) info.fields.push_back(fi);
      }
      messages[d] = info;
    }
    for (const FieldInfo& f : messages[d].fields) {
      std::string child = JoinPath(path, f.name);
      bool idx = index && child != "status";
      if (idx) where[f.name].push_back(path.empty() ? "the top level" : path);
      if (f.kind == Kind::kGeneric &&
          f.field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
          !f.field->is_map()) {
        Add(f.field->message_type(),
            f.field->is_repeated() ? child + "[]" : child, idx);
      } else if (f.kind == Kind::kEnv) {
        Add(f.field->message_type(), child + "[]", false);
      }
    }
  }
};

const Schema& GetSchema() {
  static const Schema* schema = [] {
    auto* s = new Schema;
    s->Add(App::descriptor(), "", true);
    return s;
  }();
  return *schema;
}

// ---------------------------------------------------------------------------
// Nearest-name suggestions.

std::string Normalize(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '_' || c == '-') continue;
    out.push_back(absl::ascii_tolower(c));
  }
  return out;
}

int EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string Suggest(absl::string_view word,
                    const std::vector<std::string>& candidates) {
  std::string norm = Normalize(word);
  std::string best;
  int best_d = 1 << 30;
  for (const std::string& c : candidates) {
    int d = EditDistance(norm, Normalize(c));
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  int limit = std::max<int>(2, static_cast<int>(norm.size()) / 3);
  return best_d <= limit ? best : "";
}

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
  if (t.command().empty()) {
    report(cmd,
           "required: the program to run and its fixed arguments, e.g. "
           "[\"tidal-sample-app\"]");
  } else if (t.command(0).empty()) {
    report(IndexPath(cmd, 0), "must not be empty (the program to run)");
  }
  std::map<std::string, int> seen;
  for (int i = 0; i < t.env_size(); ++i) {
    const std::string& name = t.env(i).name();
    std::string p = JoinPath(IndexPath(JoinPath(path, "env"), i), "name");
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
  CheckMin<int64_t>(JoinPath(path, "resources.cpu"), t.resources().cpu_millis(),
                    0, report);
  CheckMin<int64_t>(JoinPath(path, "resources.memory"),
                    t.resources().memory_bytes(), 0, report);
  CheckLabels(JoinPath(path, "labels"), t.labels(), true, report);
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
            {"tidal", "kpa", "hpa", "keepalive"}, report);
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

// ---------------------------------------------------------------------------
// YAML -> proto.

struct Loc {
  int line = 0;  // 1-based
  int column = 0;
};

std::string Got(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return Quote(n.Scalar());
    default:
      return "nothing";
  }
}

bool IsPlain(const YAML::Node& n) { return n.Tag() == "?"; }

// Parses one document into an App, recording where each field path was
// written. Errors found while reading the YAML (types, unknown fields, bad
// durations) are collected; semantic checks run afterwards on the proto.
class DocParser {
 public:
  DocParser(const std::string& source, int line_offset,
            std::vector<SpecError>* errors)
      : source_(source), line_offset_(line_offset), errors_(errors) {}

  Loc ToLoc(const YAML::Mark& m) const {
    if (m.is_null()) return {};
    return {m.line + 1 + line_offset_, m.column + 1};
  }

  void Error(const Loc& loc, const std::string& path, std::string msg) {
    errors_->push_back({source_, loc.line, loc.column, path, std::move(msg)});
    error_paths_.push_back(path);
  }

  void Record(const std::string& path, const YAML::Node& value,
              const Loc& key_loc) {
    // Scalars point at the value; maps and lists at their key, which reads
    // better for "required" and "exactly one of" errors about them.
    Loc l = key_loc;
    if (value.IsScalar() && !value.Mark().is_null()) {
      l = ToLoc(value.Mark());
    }
    marks_[path] = l;
  }

  // The location of `path`, or of its nearest recorded ancestor.
  Loc Find(std::string path) const {
    while (true) {
      auto it = marks_.find(path);
      if (it != marks_.end()) return it->second;
      if (path.empty()) return {};
      size_t cut = path.find_last_of(".[");
      path = cut == std::string::npos ? "" : path.substr(0, cut);
    }
  }

  // Whether a semantic error at `path` would repeat a YAML error already
  // reported at, above or below it.
  bool Covered(const std::string& path) const {
    auto under = [](const std::string& a, const std::string& b) {
      return a.size() > b.size() && a.compare(0, b.size(), b) == 0 &&
             (a[b.size()] == '.' || a[b.size()] == '[');
    };
    for (const std::string& p : error_paths_) {
      if (p.empty()) continue;
      if (p == path || under(path, p) || under(p, path)) return true;
    }
    return false;
  }

  std::map<std::string, int> Lines() const {
    std::map<std::string, int> out;
    for (const auto& [path, loc] : marks_) {
      if (loc.line > 0) out[path] = loc.line;
    }
    return out;
  }

  void ParseRoot(const YAML::Node& root, App* app) {
    marks_[""] = ToLoc(root.Mark());
    ParseMessage(root, app, "");
  }

 private:
  void ParseMessage(const YAML::Node& node, pb::Message* msg,
                    const std::string& path) {
    const MessageInfo& info = GetSchema().Get(msg->GetDescriptor());
    std::map<std::string, Loc> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies, not references: yaml-cpp's iterator returns its key/value
      // pair by value, so a reference to it->first dangles (found by
      // tests/fuzz/spec_fuzz under ASan). Nodes are cheap handles.
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      Loc key_loc = ToLoc(key.Mark());
      if (!key.IsScalar()) {
        Error(key_loc, path,
              absl::StrCat("field names must be strings, got ", Got(key)));
        continue;
      }
      const std::string& name = key.Scalar();
      std::string child = JoinPath(path, name);
      if (auto s = seen.find(name); s != seen.end()) {
        Error(key_loc, child,
              absl::StrCat("duplicate field (first at line ", s->second.line,
                           ")"));
        continue;
      }
      seen[name] = key_loc;
      const FieldInfo* f = info.Find(name);
      if (f == nullptr) {
        Error(key_loc, child, UnknownField(name, info, path));
        continue;
      }
      Record(child, value, key_loc);
      if (value.IsNull()) continue;  // written but empty: the same as absent
      ParseField(*f, node, value, msg, child);
    }
  }

  std::string UnknownField(const std::string& name, const MessageInfo& info,
                           const std::string& path) {
    std::vector<std::string> names;
    for (const FieldInfo& f : info.fields) names.push_back(f.name);
    std::string s = Suggest(name, names);
    if (!s.empty()) {
      return absl::StrCat("unknown field (did you mean \"", s, "\"?)");
    }
    const auto& where = GetSchema().where;
    if (auto it = where.find(name); it != where.end() && !path.empty()) {
      return absl::StrCat("unknown field here (", name, " belongs under ",
                          absl::StrJoin(it->second, " or "), ")");
    }
    return absl::StrCat(
        "unknown field (known fields: ", absl::StrJoin(names, ", "), ")");
  }

  bool ExpectMap(const YAML::Node& value, const std::string& path) {
    if (value.IsMap()) return true;
    Error(ToLoc(value.Mark()), path,
          absl::StrCat("must be a map, got ", Got(value)));
    return false;
  }

  bool ExpectScalar(const YAML::Node& value, const std::string& path,
                    absl::string_view what) {
    if (value.IsScalar()) return true;
    Error(ToLoc(value.Mark()), path,
          absl::StrCat("must be ", what, ", got ", Got(value)));
    return false;
  }

  // A plain (unquoted) integer scalar.
  bool ReadInt(const YAML::Node& value, const std::string& path, int64_t lo,
               int64_t hi, int64_t* out) {
    if (!ExpectScalar(value, path, "an integer")) return false;
    const std::string& s = value.Scalar();
    bool digits = !s.empty();
    for (size_t i = 0; i < s.size(); ++i) {
      if (!(absl::ascii_isdigit(s[i]) ||
            (i == 0 && s[i] == '-' && s.size() > 1))) {
        digits = false;
      }
    }
    int64_t v = 0;
    if (!digits) {
      Error(ToLoc(value.Mark()), path,
            absl::StrCat("must be an integer, got ", Got(value)));
      return false;
    }
    if (!IsPlain(value)) {
      Error(ToLoc(value.Mark()), path,
            absl::StrCat("must be an integer, got the string ", Got(value),
                         " (remove the quotes)"));
      return false;
    }
    if (!absl::SimpleAtoi(s, &v) || v < lo || v > hi) {
      Error(ToLoc(value.Mark()), path,
            absl::StrCat("must be between ", lo, " and ", hi, ", got ", s));
      return false;
    }
    *out = v;
    return true;
  }

  bool ParseNumber(absl::string_view s, double* out) {
    if (s.empty()) return false;
    for (char c : s) {
      if (!(absl::ascii_isdigit(c) || c == '.' || c == '-' || c == '+' ||
            c == 'e' || c == 'E')) {
        return false;
      }
    }
    return absl::SimpleAtod(s, out) && std::isfinite(*out);
  }

  bool ReadDouble(const YAML::Node& value, const std::string& path,
                  double* out) {
    if (!ExpectScalar(value, path, "a number")) return false;
    if (!ParseNumber(value.Scalar(), out)) {
      Error(ToLoc(value.Mark()), path,
            absl::StrCat("must be a number, got ", Got(value)));
      return false;
    }
    if (!IsPlain(value)) {
      Error(ToLoc(value.Mark()), path,
            absl::StrCat("must be a number, got the string ", Got(value),
                         " (remove the quotes)"));
      return false;
    }
    return true;
  }

  bool ReadBool(const YAML::Node& value, const std::string& path, bool* out) {
    if (!ExpectScalar(value, path, "true or false")) return false;
    std::string s = absl::AsciiStrToLower(value.Scalar());
    if (IsPlain(value) && (s == "true" || s == "false")) {
      *out = s == "true";
      return true;
    }
    Error(ToLoc(value.Mark()), path,
          absl::StrCat("must be true or false, got ", Got(value)));
    return false;
  }

  bool ReadString(const YAML::Node& value, const std::string& path,
                  std::string* out) {
    if (!ExpectScalar(value, path, "a string")) return false;
    *out = value.Scalar();
    return true;
  }

  bool ReadDuration(const YAML::Node& value, const std::string& path,
                    int64_t* out) {
    if (!ExpectScalar(value, path, "a duration like \"30s\"")) return false;
    auto ms = ParseDurationMs(value.Scalar());
    if (!ms.ok()) {
      Error(ToLoc(value.Mark()), path, std::string(ms.status().message()));
      return false;
    }
    *out = *ms;
    return true;
  }

  void ParseField(const FieldInfo& f, const YAML::Node& parent,
                  const YAML::Node& value, pb::Message* msg,
                  const std::string& path) {
    const pb::Reflection* r = msg->GetReflection();
    const pb::FieldDescriptor* fd = f.field;
    switch (f.kind) {
      case Kind::kEnv:
        ParseEnv(value, msg, fd, path);
        return;
      case Kind::kDuration: {
        int64_t ms;
        if (ReadDuration(value, path, &ms)) r->SetInt64(msg, fd, ms);
        return;
      }
      case Kind::kCpu:
      case Kind::kBytes: {
        if (!ExpectScalar(value, path, "a quantity")) return;
        auto v = f.kind == Kind::kCpu ? ParseCpuMillis(value.Scalar())
                                      : ParseBytes(value.Scalar());
        if (!v.ok()) {
          Error(ToLoc(value.Mark()), path, std::string(v.status().message()));
          return;
        }
        r->SetInt64(msg, fd, *v);
        return;
      }
      case Kind::kErrorRate: {
        if (!ExpectScalar(value, path, "a fraction like 0.05 or \"5%\"")) {
          return;
        }
        absl::string_view s = value.Scalar();
        double v;
        bool percent = absl::EndsWith(s, "%");
        if (percent) s.remove_suffix(1);
        if (!ParseNumber(s, &v)) {
          Error(ToLoc(value.Mark()), path,
                absl::StrCat("must be a fraction like 0.05 or a percentage "
                             "like \"5%\", got ",
                             Got(value)));
          return;
        }
        r->SetDouble(msg, fd, percent ? v / 100 : v);
        return;
      }
      case Kind::kIntOrPercent: {
        std::string s;
        if (ReadString(value, path, &s)) r->SetString(msg, fd, s);
        return;
      }
      case Kind::kStepPause:
      case Kind::kRolloutPause: {
        if (!ExpectScalar(value, path, "a duration like \"5m\" or manual")) {
          return;
        }
        const pb::Descriptor* d = msg->GetDescriptor();
        if (value.Scalar() == "manual") {
          r->SetBool(msg, d->FindFieldByName("pause_manual"), true);
          return;
        }
        auto ms = ParseDurationMs(value.Scalar());
        if (!ms.ok()) {
          Error(ToLoc(value.Mark()), path,
                absl::StrCat("must be manual or ", ms.status().message()));
          return;
        }
        if (f.kind == Kind::kStepPause) {
          r->SetInt64(msg, fd, *ms);
          return;
        }
        bool has_interval = false;
        for (auto it = parent.begin(); it != parent.end(); ++it) {
          if (it->first.IsScalar() && it->first.Scalar() == "batchInterval") {
            has_interval = true;
          }
        }
        if (has_interval) {
          Error(ToLoc(value.Mark()), path,
                "a pause duration is the batchInterval: set one of them");
          return;
        }
        r->SetInt64(msg, d->FindFieldByName("batch_interval_ms"), *ms);
        return;
      }
      case Kind::kTimestamp: {
        std::string s;
        if (!ReadString(value, path, &s)) return;
        absl::Time t;
        std::string err;
        if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) {
          Error(ToLoc(value.Mark()), path,
                absl::StrCat("must be an RFC 3339 time like "
                             "\"2024-05-01T12:00:00Z\", got ",
                             Got(value)));
          return;
        }
        auto* ts = static_cast<pb::Timestamp*>(r->MutableMessage(msg, fd));
        ts->set_seconds(absl::ToUnixSeconds(t));
        ts->set_nanos(static_cast<int32_t>(
            (t - absl::FromUnixSeconds(ts->seconds())) / absl::Nanoseconds(1)));
        return;
      }
      case Kind::kGeneric:
        break;
    }
    if (fd->is_map()) {
      ParseStringMap(value, msg, fd, path);
    } else if (fd->is_repeated()) {
      if (!value.IsSequence()) {
        Error(ToLoc(value.Mark()), path,
              absl::StrCat("must be a list, got ", Got(value)));
        return;
      }
      int i = 0;
      for (const YAML::Node& elem : value) {
        std::string ep = IndexPath(path, i++);
        marks_[ep] = ToLoc(elem.Mark());
        if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          if (!ExpectMap(elem, ep)) continue;
          ParseMessage(elem, r->AddMessage(msg, fd), ep);
        } else if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
          std::string s;
          if (ReadString(elem, ep, &s)) r->AddString(msg, fd, s);
        } else {
          Error(ToLoc(elem.Mark()), ep, "unsupported list element");
        }
      }
    } else {
      ParseSingular(value, msg, fd, path);
    }
  }

  void ParseSingular(const YAML::Node& value, pb::Message* msg,
                     const pb::FieldDescriptor* fd, const std::string& path) {
    const pb::Reflection* r = msg->GetReflection();
    switch (fd->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32: {
        int64_t v;
        if (ReadInt(value, path, INT32_MIN, INT32_MAX, &v)) {
          r->SetInt32(msg, fd, static_cast<int32_t>(v));
        }
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_INT64: {
        int64_t v;
        if (ReadInt(value, path, INT64_MIN, INT64_MAX, &v)) {
          r->SetInt64(msg, fd, v);
        }
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
        double v;
        if (ReadDouble(value, path, &v)) r->SetDouble(msg, fd, v);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        bool v;
        if (ReadBool(value, path, &v)) r->SetBool(msg, fd, v);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_STRING: {
        std::string v;
        if (ReadString(value, path, &v)) r->SetString(msg, fd, v);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        if (ExpectMap(value, path)) {
          ParseMessage(value, r->MutableMessage(msg, fd), path);
        }
        return;
      default:
        Error(ToLoc(value.Mark()), path, "unsupported field type");
    }
  }

  void ParseStringMap(const YAML::Node& value, pb::Message* msg,
                      const pb::FieldDescriptor* fd, const std::string& path) {
    if (!ExpectMap(value, path)) return;
    const pb::Reflection* r = msg->GetReflection();
    std::set<std::string> seen;
    for (auto it = value.begin(); it != value.end(); ++it) {
      Loc key_loc = ToLoc(it->first.Mark());
      if (!it->first.IsScalar()) {
        Error(key_loc, path,
              absl::StrCat("keys must be strings, got ", Got(it->first)));
        continue;
      }
      const std::string& k = it->first.Scalar();
      std::string kp = JoinPath(path, k);
      marks_[kp] = key_loc;
      if (!seen.insert(k).second) {
        Error(key_loc, kp, "duplicate key");
        continue;
      }
      std::string v;
      if (!it->second.IsNull() && !ReadString(it->second, kp, &v)) continue;
      pb::Message* entry = r->AddMessage(msg, fd);
      const pb::Reflection* er = entry->GetReflection();
      er->SetString(entry, entry->GetDescriptor()->FindFieldByNumber(1), k);
      er->SetString(entry, entry->GetDescriptor()->FindFieldByNumber(2), v);
    }
  }

  void ParseEnv(const YAML::Node& value, pb::Message* msg,
                const pb::FieldDescriptor* fd, const std::string& path) {
    auto* tmpl = static_cast<tidal::v1::Template*>(msg);
    if (value.IsMap()) {
      int i = 0;
      for (auto it = value.begin(); it != value.end(); ++it, ++i) {
        std::string ep = IndexPath(path, i);
        Loc key_loc = ToLoc(it->first.Mark());
        marks_[ep] = key_loc;
        marks_[JoinPath(ep, "name")] = key_loc;
        Record(JoinPath(ep, "value"), it->second, key_loc);
        auto* var = tmpl->add_env();
        if (!it->first.IsScalar()) {
          Error(key_loc, ep,
                absl::StrCat("names must be strings, got ", Got(it->first)));
          continue;
        }
        var->set_name(it->first.Scalar());
        std::string v;
        if (!it->second.IsNull() &&
            ReadString(it->second, JoinPath(ep, "value"), &v)) {
          var->set_value(v);
        }
      }
      return;
    }
    if (!value.IsSequence()) {
      Error(ToLoc(value.Mark()), path,
            absl::StrCat("must be a map of name to value (or a list of "
                         "{name, value}), got ",
                         Got(value)));
      return;
    }
    int i = 0;
    for (const YAML::Node& elem : value) {
      std::string ep = IndexPath(path, i++);
      marks_[ep] = ToLoc(elem.Mark());
      if (!ExpectMap(elem, ep)) continue;
      ParseMessage(elem, tmpl->add_env(), ep);
    }
  }

  const std::string& source_;
  int line_offset_;
  std::vector<SpecError>* errors_;
  std::map<std::string, Loc> marks_;
  std::vector<std::string> error_paths_;
};

// One YAML document of the input, with the line where its text starts.
struct Chunk {
  std::string text;
  int first_line = 0;  // 0-based line of the input where `text` starts
};

// Splits a YAML stream at document markers ("---" and "..." at the start of
// a line) so that each document is parsed alone: a syntax error in one does
// not hide the errors of the others.
std::vector<Chunk> SplitDocuments(absl::string_view yaml) {
  std::vector<Chunk> chunks;
  Chunk cur;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= yaml.size()) {
    size_t end = yaml.find('\n', pos);
    bool last = end == absl::string_view::npos;
    absl::string_view line =
        yaml.substr(pos, last ? absl::string_view::npos : end - pos);
    auto marker = [&](absl::string_view m) {
      return absl::StartsWith(line, m) && (line.size() == 3 || line[3] == ' ' ||
                                           line[3] == '\t' || line[3] == '\r');
    };
    if (marker("---")) {
      chunks.push_back(std::move(cur));
      cur = Chunk{};
      cur.first_line = line_no;
      // Keep what follows the marker on its line, at the same columns.
      absl::StrAppend(&cur.text, "   ", line.substr(3), "\n");
    } else if (marker("...")) {
      chunks.push_back(std::move(cur));
      cur = Chunk{};
      cur.first_line = line_no + 1;
    } else {
      absl::StrAppend(&cur.text, line, last ? "" : "\n");
    }
    if (last) break;
    pos = end + 1;
    ++line_no;
  }
  chunks.push_back(std::move(cur));
  return chunks;
}

// ---------------------------------------------------------------------------
// proto -> YAML / JSON, through a small ordered tree.

struct Value {
  enum Type { kBool, kInt, kDouble, kString, kList, kMap } type = kMap;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;
  std::vector<Value> list;
  std::vector<std::pair<std::string, Value>> map;

  static Value Str(std::string v) {
    Value x;
    x.type = kString;
    x.s = std::move(v);
    return x;
  }
  static Value Int(int64_t v) {
    Value x;
    x.type = kInt;
    x.i = v;
    return x;
  }
  static Value Double(double v) {
    Value x;
    x.type = kDouble;
    x.d = v;
    return x;
  }
  static Value Bool(bool v) {
    Value x;
    x.type = kBool;
    x.b = v;
    return x;
  }
  static Value List() {
    Value x;
    x.type = kList;
    return x;
  }
  bool IsScalar() const { return type != kList && type != kMap; }
};

std::string FormatDouble(double d) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d);
  return std::string(buf, res.ptr);
}

std::string FormatTimestamp(const pb::Timestamp& ts) {
  absl::Time t =
      absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

Value ToValue(const pb::Message& msg);

Value SingularValue(const pb::Message& msg, const pb::FieldDescriptor* fd) {
  const pb::Reflection* r = msg.GetReflection();
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return Value::Int(r->GetInt32(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return Value::Int(r->GetInt64(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return Value::Int(r->GetUInt32(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return Value::Int(static_cast<int64_t>(r->GetUInt64(msg, fd)));
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return Value::Double(r->GetDouble(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return Value::Double(r->GetFloat(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return Value::Bool(r->GetBool(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return Value::Str(r->GetString(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return Value::Str(r->GetEnum(msg, fd)->name());
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return ToValue(r->GetMessage(msg, fd));
  }
  return Value::Str("");
}

Value ToValue(const pb::Message& msg) {
  Value out;
  const MessageInfo& info = GetSchema().Get(msg.GetDescriptor());
  const pb::Reflection* r = msg.GetReflection();
  for (const FieldInfo& f : info.fields) {
    const pb::FieldDescriptor* fd = f.field;
    switch (f.kind) {
      case Kind::kStepPause: {
        bool manual = r->GetBool(
            msg, msg.GetDescriptor()->FindFieldByName("pause_manual"));
        if (manual) {
          out.map.emplace_back(f.name, Value::Str("manual"));
        } else if (r->GetInt64(msg, fd) != 0) {
          out.map.emplace_back(
              f.name, Value::Str(FormatDurationMs(r->GetInt64(msg, fd))));
        }
        continue;
      }
      case Kind::kRolloutPause:
        if (r->GetBool(msg, fd)) {
          out.map.emplace_back(f.name, Value::Str("manual"));
        }
        continue;
      default:
        break;
    }
    if (fd->is_repeated()) {
      if (r->FieldSize(msg, fd) == 0) continue;
    } else if (!r->HasField(msg, fd)) {
      continue;
    }
    switch (f.kind) {
      case Kind::kDuration:
        out.map.emplace_back(
            f.name, Value::Str(FormatDurationMs(r->GetInt64(msg, fd))));
        continue;
      case Kind::kCpu:
        out.map.emplace_back(f.name,
                             Value::Str(FormatCpuMillis(r->GetInt64(msg, fd))));
        continue;
      case Kind::kBytes:
        out.map.emplace_back(f.name,
                             Value::Str(FormatBytes(r->GetInt64(msg, fd))));
        continue;
      case Kind::kTimestamp:
        out.map.emplace_back(
            f.name,
            Value::Str(FormatTimestamp(
                static_cast<const pb::Timestamp&>(r->GetMessage(msg, fd)))));
        continue;
      case Kind::kIntOrPercent: {
        const std::string& s = r->GetString(msg, fd);
        int64_t n;
        bool digits = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
          return absl::ascii_isdigit(c);
        });
        if (digits && s.size() < 10 && absl::SimpleAtoi(s, &n)) {
          out.map.emplace_back(f.name, Value::Int(n));
        } else {
          out.map.emplace_back(f.name, Value::Str(s));
        }
        continue;
      }
      default:
        break;
    }
    if (fd->is_map()) {
      // Sorted by key, so that the output is deterministic.
      std::vector<std::pair<std::string, std::string>> entries;
      for (int i = 0; i < r->FieldSize(msg, fd); ++i) {
        const pb::Message& e = r->GetRepeatedMessage(msg, fd, i);
        const pb::Reflection* er = e.GetReflection();
        entries.emplace_back(
            er->GetString(e, e.GetDescriptor()->FindFieldByNumber(1)),
            er->GetString(e, e.GetDescriptor()->FindFieldByNumber(2)));
      }
      std::sort(entries.begin(), entries.end());
      Value m;
      for (auto& [k, v] : entries) m.map.emplace_back(k, Value::Str(v));
      out.map.emplace_back(f.name, std::move(m));
      continue;
    }
    if (f.kind == Kind::kEnv) {
      // The map form when names are unique and non-empty, else the list.
      const auto& tmpl = static_cast<const tidal::v1::Template&>(msg);
      std::set<std::string> names;
      bool as_map = true;
      for (const auto& e : tmpl.env()) {
        if (e.name().empty() || !names.insert(e.name()).second) as_map = false;
      }
      Value v;
      if (as_map) {
        for (const auto& e : tmpl.env()) {
          v.map.emplace_back(e.name(), Value::Str(e.value()));
        }
      } else {
        v = Value::List();
        for (const auto& e : tmpl.env()) v.list.push_back(ToValue(e));
      }
      out.map.emplace_back(f.name, std::move(v));
      continue;
    }
    if (fd->is_repeated()) {
      Value list = Value::List();
      for (int i = 0; i < r->FieldSize(msg, fd); ++i) {
        if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          list.list.push_back(ToValue(r->GetRepeatedMessage(msg, fd, i)));
        } else if (fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
          list.list.push_back(Value::Str(r->GetRepeatedString(msg, fd, i)));
        }
      }
      out.map.emplace_back(f.name, std::move(list));
      continue;
    }
    out.map.emplace_back(f.name, SingularValue(msg, fd));
  }
  return out;
}

// Whether a YAML reader would take `s`, written plain, as something other
// than this string.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  std::string lower = absl::AsciiStrToLower(s);
  static const std::set<std::string> kWords = {
      "true", "false", "yes", "no",   "on",    "off",   "y",
      "n",    "null",  "~",   ".inf", "-.inf", "+.inf", ".nan"};
  if (kWords.count(lower)) return true;
  double d;
  if (absl::SimpleAtod(s, &d)) return true;
  int64_t i;
  if (absl::SimpleAtoi(s, &i)) return true;
  if (absl::ascii_isspace(s.front()) || absl::ascii_isspace(s.back())) {
    return true;
  }
  if (s.find_first_of("\n\r\t\"'\\#:{}[],&*!|>%@`") != std::string::npos) {
    return true;
  }
  if (s[0] == '-' || s[0] == '?') return true;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

void JsonString(std::string* out, const std::string& s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void EmitJson(std::string* out, const Value& v, int indent) {
  std::string pad(indent + 2, ' ');
  switch (v.type) {
    case Value::kBool:
      out->append(v.b ? "true" : "false");
      return;
    case Value::kInt:
      absl::StrAppend(out, v.i);
      return;
    case Value::kDouble:
      out->append(FormatDouble(v.d));
      return;
    case Value::kString:
      JsonString(out, v.s);
      return;
    case Value::kList:
      if (v.list.empty()) {
        out->append("[]");
        return;
      }
      out->append("[\n");
      for (size_t i = 0; i < v.list.size(); ++i) {
        out->append(pad);
        EmitJson(out, v.list[i], indent + 2);
        out->append(i + 1 < v.list.size() ? ",\n" : "\n");
      }
      out->append(std::string(indent, ' ')).append("]");
      return;
    case Value::kMap:
      if (v.map.empty()) {
        out->append("{}");
        return;
      }
      out->append("{\n");
      for (size_t i = 0; i < v.map.size(); ++i) {
        out->append(pad);
        JsonString(out, v.map[i].first);
        out->append(": ");
        EmitJson(out, v.map[i].second, indent + 2);
        out->append(i + 1 < v.map.size() ? ",\n" : "\n");
      }
      out->append(std::string(indent, ' ')).append("}");
      return;
  }
}

std::string YamlScalar(const Value& v) {
  switch (v.type) {
    case Value::kBool:
      return v.b ? "true" : "false";
    case Value::kInt:
      return absl::StrCat(v.i);
    case Value::kDouble:
      return FormatDouble(v.d);
    case Value::kString:
      if (NeedsQuotes(v.s)) {
        // JSON's escapes are valid in a YAML double-quoted scalar.
        std::string out;
        JsonString(&out, v.s);
        return out;
      }
      return v.s;
    default:
      return "";
  }
}

// Block style with two-space indents, list items indented under their key
// ("  - name: x"), lists of scalars in flow style ("[a, b]").
void EmitYamlMap(std::string* out, const Value& m, int indent) {
  const std::string pad(indent, ' ');
  for (const auto& [k, v] : m.map) {
    Value key = Value::Str(k);
    absl::StrAppend(out, pad, YamlScalar(key), ":");
    if (v.IsScalar()) {
      absl::StrAppend(out, " ", YamlScalar(v), "\n");
    } else if (v.type == Value::kMap) {
      if (v.map.empty()) {
        out->append(" {}\n");
      } else {
        out->append("\n");
        EmitYamlMap(out, v, indent + 2);
      }
    } else if (v.list.empty() ||
               std::all_of(v.list.begin(), v.list.end(),
                           [](const Value& x) { return x.IsScalar(); })) {
      std::vector<std::string> items;
      for (const Value& x : v.list) items.push_back(YamlScalar(x));
      absl::StrAppend(out, " [", absl::StrJoin(items, ", "), "]\n");
    } else {
      out->append("\n");
      const std::string dash = std::string(indent + 2, ' ') + "- ";
      for (const Value& x : v.list) {
        if (x.IsScalar()) {
          absl::StrAppend(out, dash, YamlScalar(x), "\n");
        } else if (x.type == Value::kMap && !x.map.empty()) {
          std::string item;
          EmitYamlMap(&item, x, indent + 4);
          item.replace(0, dash.size(), dash);
          out->append(item);
        } else {
          absl::StrAppend(out, dash, x.type == Value::kMap ? "{}" : "[]", "\n");
        }
      }
    }
  }
}

}  // namespace

std::string SpecError::ToString() const {
  std::string out = source;
  if (line > 0) {
    out = absl::StrCat(source.empty() ? "line " : source + ":", line);
    if (column > 0) absl::StrAppend(&out, ":", column);
  }
  if (!out.empty()) out += ": ";
  if (!field.empty()) absl::StrAppend(&out, field, ": ");
  out += message;
  return out;
}

int ParsedApp::LineOf(std::string path) const {
  while (!path.empty()) {
    if (auto it = lines.find(path); it != lines.end()) return it->second;
    size_t cut = path.find_last_of(".[");
    path = cut == std::string::npos ? "" : path.substr(0, cut);
  }
  return line;
}

absl::Status ParseResult::ToStatus() const {
  if (errors.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  for (const SpecError& e : errors) lines.push_back(e.ToString());
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

ParseResult ParseApps(std::string_view yaml, std::string_view source,
                      std::string_view default_namespace,
                      const ValidationOptions& opts) {
  ParseResult result;
  const std::string src(source);
  const std::string ns =
      default_namespace.empty() ? "default" : std::string(default_namespace);
  std::map<std::pair<std::string, std::string>, int> names;  // -> line
  int documents = 0;
  for (const Chunk& chunk : SplitDocuments(AV(yaml))) {
    std::vector<SpecError> errors;
    DocParser parser(src, chunk.first_line, &errors);
    YAML::Node root;
    try {
      root = YAML::Load(chunk.text);
    } catch (const YAML::ParserException& e) {
      ++documents;
      Loc l = parser.ToLoc(e.mark);
      result.errors.push_back(
          {src, l.line, l.column, "", absl::StrCat("invalid YAML: ", e.msg)});
      continue;
    } catch (const YAML::Exception& e) {
      ++documents;
      result.errors.push_back({src, chunk.first_line + 1, 0, "",
                               absl::StrCat("invalid YAML: ", e.msg)});
      continue;
    }
    if (!root.IsDefined() || root.IsNull()) continue;  // an empty document
    ++documents;
    Loc start = parser.ToLoc(root.Mark());
    if (!root.IsMap()) {
      result.errors.push_back(
          {src, start.line, start.column, "",
           absl::StrCat("a document must be a map with apiVersion, kind, "
                        "metadata and spec, got ",
                        root.IsSequence() ? "a list" : Got(root))});
      continue;
    }
    ParsedApp parsed;
    parsed.source = src;
    parsed.line = start.line;
    try {
      parser.ParseRoot(root, &parsed.app);
    } catch (const YAML::Exception& e) {
      errors.push_back({src, start.line, start.column, "",
                        absl::StrCat("invalid YAML: ", e.msg)});
    }
    auto* meta = parsed.app.mutable_metadata();
    if (meta->namespace_().empty()) meta->set_namespace_(ns);
    CheckApp(parsed.app, opts, [&](const std::string& path, std::string msg) {
      if (parser.Covered(path)) return;
      Loc l = parser.Find(path);
      errors.push_back({src, l.line, l.column, path, std::move(msg)});
    });
    if (!meta->name().empty()) {
      auto key = std::make_pair(meta->namespace_(), meta->name());
      auto [it, inserted] = names.emplace(key, start.line);
      if (!inserted) {
        Loc l = parser.Find("metadata.name");
        errors.push_back(
            {src, l.line, l.column, "metadata.name",
             absl::StrCat("duplicate app \"", key.first, "/", key.second,
                          "\" (also defined at line ", it->second, ")")});
      }
    }
    std::stable_sort(errors.begin(), errors.end(),
                     [](const SpecError& a, const SpecError& b) {
                       return std::tie(a.line, a.column) <
                              std::tie(b.line, b.column);
                     });
    for (auto& e : errors) result.errors.push_back(std::move(e));
    parsed.lines = parser.Lines();
    result.apps.push_back(std::move(parsed));
  }
  if (documents == 0 && result.errors.empty()) {
    result.errors.push_back(
        {src, 0, 0, "", "no documents: the input is empty"});
  }
  if (!result.errors.empty()) result.apps.clear();
  return result;
}

std::vector<SpecError> ValidateApp(const tidal::v1::App& app,
                                   const ValidationOptions& opts) {
  std::vector<SpecError> errors;
  CheckApp(app, opts, [&](const std::string& path, std::string msg) {
    errors.push_back({"", 0, 0, path, std::move(msg)});
  });
  return errors;
}

std::string AppToYaml(const tidal::v1::App& app) {
  std::string out;
  Value v = ToValue(app);
  if (v.map.empty()) return "{}\n";
  EmitYamlMap(&out, v, 0);
  return out;
}

std::string AppToJson(const tidal::v1::App& app) {
  std::string out;
  EmitJson(&out, ToValue(app), 0);
  out.push_back('\n');
  return out;
}

std::string TemplateHash(const tidal::v1::Template& tmpl) {
  std::string bytes;
  {
    pb::io::StringOutputStream stream(&bytes);
    pb::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    tmpl.SerializeToCodedStream(&coded);
  }
  // FNV-1a 64, folded to 40 bits: 10 hex characters.
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  h = (h ^ (h >> 40)) & ((uint64_t{1} << 40) - 1);
  char buf[16];
  snprintf(buf, sizeof(buf), "%010llx", static_cast<unsigned long long>(h));
  return buf;
}

int32_t BaseReplicas(const tidal::v1::AppSpec& spec) {
  if (spec.has_replicas()) return spec.replicas();
  if (spec.has_scaling() && spec.scaling().has_min_replicas()) {
    return spec.scaling().min_replicas();
  }
  return 1;
}

}  // namespace tidal::spec
