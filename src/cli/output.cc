#include "cli/output.h"

#include <algorithm>
#include <functional>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "common/units.h"
#include "tidal/v1/api.pb.h"

namespace tidal::cli {

std::string FormatAge(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 120) return absl::StrCat(s, "s");
  int64_t m = s / 60;
  if (m < 10)
    return s % 60 == 0 ? absl::StrCat(m, "m")
                       : absl::StrCat(m, "m", s % 60, "s");
  if (m < 180) return absl::StrCat(m, "m");
  int64_t h = m / 60;
  if (h < 8)
    return m % 60 == 0 ? absl::StrCat(h, "h")
                       : absl::StrCat(h, "h", m % 60, "m");
  if (h < 48) return absl::StrCat(h, "h");
  int64_t days = h / 24;
  if (days < 8)
    return h % 24 == 0 ? absl::StrCat(days, "d")
                       : absl::StrCat(days, "d", h % 24, "h");
  if (days < 365 * 2) return absl::StrCat(days, "d");
  return absl::StrCat(days / 365, "y");
}

std::string AgeOf(const google::protobuf::Timestamp& t, absl::Time now) {
  if (t.seconds() == 0 && t.nanos() == 0) return "<unknown>";
  return FormatAge(now - FromProtoTime(t));
}

std::string Table::Render(bool with_header) const {
  std::vector<size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  };
  measure(header_);
  for (const auto& r : rows_) measure(r);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < header_.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      line += cell;
      if (i + 1 < header_.size())
        line += std::string(width[i] - cell.size() + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  if (with_header) emit(header_);
  for (const auto& r : rows_) emit(r);
  return out;
}

std::string AppName(const tidal::v1::App& app) {
  return absl::StrCat("app.tidal.dev/", app.metadata().name());
}

std::string InNamespace(const std::string& ns) {
  return ns.empty() || ns == "default" ? ""
                                       : absl::StrCat(" in namespace ", ns);
}

namespace {

const tidal::v1::Condition* FindCondition(const tidal::v1::App& app,
                                          const std::string& type) {
  for (const auto& c : app.status().conditions()) {
    if (c.type() == type) return &c;
  }
  return nullptr;
}

int32_t Desired(const tidal::v1::App& app) {
  if (app.status().observed_generation() > 0)
    return app.status().desired_replicas();
  return spec::BaseReplicas(app.spec());
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string FormatNumber(double v) {
  std::string s = absl::StrFormat("%.2f", v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string UtilizationNote(const tidal::v1::ScalingStatus& sc) {
  const double u = sc.target_utilization();
  if (u <= 0 || u == 100) return "";
  return absl::StrCat(" (utilization ", FormatNumber(u), "%)");
}

std::string MetricCell(const tidal::v1::App& app) {
  const auto& sc = app.status().scaling();
  if (sc.metric().empty()) {
    return app.spec().scaling().metric().empty()
               ? "-"
               : app.spec().scaling().metric();
  }
  return absl::StrCat(sc.metric(), " ", FormatNumber(sc.value()), "/",
                      FormatNumber(sc.target()), UtilizationNote(sc),
                      sc.panic() ? " (panic)" : "");
}

std::string Labels(const google::protobuf::Map<std::string, std::string>& m) {
  std::map<std::string, std::string> sorted(m.begin(), m.end());
  std::vector<std::string> parts;
  for (const auto& [k, v] : sorted) parts.push_back(absl::StrCat(k, "=", v));
  return parts.empty() ? "<none>" : absl::StrJoin(parts, ",");
}

std::string ProbeText(const tidal::v1::Probe& p) {
  std::string what;
  if (p.has_http_get()) {
    what = absl::StrCat(
        "http-get ", p.http_get().path().empty() ? "/" : p.http_get().path(),
        p.http_get().port() ? absl::StrCat(" port=", p.http_get().port()) : "");
  } else if (p.has_tcp_socket()) {
    what = absl::StrCat("tcp-socket",
                        p.tcp_socket().port()
                            ? absl::StrCat(" port=", p.tcp_socket().port())
                            : "");
  } else {
    return "";
  }
  absl::StrAppend(&what, " delay=", p.initial_delay_seconds(), "s");
  if (p.has_period_seconds())
    absl::StrAppend(&what, " period=", p.period_seconds(), "s");
  if (p.has_timeout_seconds())
    absl::StrAppend(&what, " timeout=", p.timeout_seconds(), "s");
  if (p.has_failure_threshold())
    absl::StrAppend(&what, " #failure=", p.failure_threshold());
  return what;
}

}  // namespace

std::string AppStatusWord(const tidal::v1::App& app) {
  if (app.metadata().has_deletion_timestamp()) return "Terminating";
  const auto* ready = FindCondition(app, "Ready");
  if (ready == nullptr) return "Pending";
  const auto* progressing = FindCondition(app, "Progressing");
  // After a rollback the stable revision serves, all ready, but the spec's
  // template does not run: that is what the user must see (Argo Rollouts
  // shows such a rollout Degraded).
  if (progressing != nullptr && progressing->status() == "False" &&
      (progressing->reason() == "RolledBack" ||
       progressing->reason() == "RolloutFailed")) {
    return progressing->reason();
  }
  if (ready->status() == "True") return "Ready";
  if (progressing != nullptr && progressing->status() == "True")
    return "Progressing";
  return ready->reason().empty() ? "NotReady" : ready->reason();
}

std::vector<std::string> AppColumns(const TableOptions& o) {
  std::vector<std::string> cols;
  if (o.show_namespace) cols.push_back("NAMESPACE");
  for (const char* c : {"NAME", "READY", "DESIRED", "STATUS", "URL", "AGE"})
    cols.push_back(c);
  if (o.wide) {
    for (const char* c : {"REVISION", "TEMPLATE HASH", "METRIC"})
      cols.push_back(c);
  }
  if (o.show_labels) cols.push_back("LABELS");
  return cols;
}

std::vector<std::string> AppRow(const tidal::v1::App& app,
                                const TableOptions& o, absl::Time now) {
  std::vector<std::string> row;
  if (o.show_namespace) row.push_back(app.metadata().namespace_());
  int32_t desired = Desired(app);
  row.push_back(app.metadata().name());
  row.push_back(absl::StrCat(app.status().ready_replicas(), "/", desired));
  row.push_back(absl::StrCat(desired));
  row.push_back(AppStatusWord(app));
  row.push_back(OrDash(app.status().url()));
  row.push_back(AgeOf(app.metadata().creation_timestamp(), now));
  if (o.wide) {
    const auto& ro = app.status().rollout();
    int64_t rev =
        ro.update_revision() ? ro.update_revision() : ro.stable_revision();
    row.push_back(rev ? absl::StrCat(rev) : "-");
    // The hash of that revision: what runs (after a rollback the spec's
    // template is the rolled-back one, not the stable revision's).
    if (!ro.update_revision() && !ro.stable_hash().empty()) {
      row.push_back(ro.stable_hash());
    } else {
      row.push_back(OrDash(app.status().template_hash().empty()
                               ? spec::TemplateHash(app.spec().template_())
                               : app.status().template_hash()));
    }
    row.push_back(MetricCell(app));
  }
  if (o.show_labels) row.push_back(Labels(app.metadata().labels()));
  return row;
}

std::string AppsTable(const std::vector<tidal::v1::App>& apps,
                      const TableOptions& o, absl::Time now) {
  Table t(AppColumns(o));
  for (const auto& a : apps) t.AddRow(AppRow(a, o, now));
  return t.Render();
}

std::vector<std::string> InstanceColumns(const TableOptions& o) {
  std::vector<std::string> cols;
  if (o.show_namespace) cols.push_back("NAMESPACE");
  for (const char* c :
       {"NAME", "APP", "READY", "STATUS", "RESTARTS", "PORT", "AGE"}) {
    cols.push_back(c);
  }
  if (o.wide) {
    for (const char* c :
         {"PID", "REVISION", "TEMPLATE HASH", "REASON", "NODE", "HOST"})
      cols.push_back(c);
  }
  return cols;
}

std::vector<std::string> InstanceRow(const tidal::v1::Instance& inst,
                                     const TableOptions& o, absl::Time now) {
  std::vector<std::string> row;
  if (o.show_namespace) row.push_back(inst.namespace_());
  row.push_back(inst.id());
  row.push_back(inst.app());
  row.push_back(inst.ready() ? "1/1" : "0/1");
  row.push_back(OrDash(inst.phase()));
  row.push_back(absl::StrCat(inst.restarts()));
  row.push_back(inst.port() ? absl::StrCat(inst.port()) : "-");
  row.push_back(AgeOf(inst.start_time(), now));
  if (o.wide) {
    row.push_back(inst.pid() ? absl::StrCat(inst.pid()) : "-");
    row.push_back(inst.revision() ? absl::StrCat(inst.revision()) : "-");
    row.push_back(OrDash(inst.template_hash()));
    row.push_back(OrDash(inst.reason()));
    row.push_back(OrDash(inst.node()));  // empty on a single node
    row.push_back(OrDash(inst.host()));
  }
  return row;
}

std::string InstancesTable(const std::vector<tidal::v1::Instance>& instances,
                           const TableOptions& o, absl::Time now) {
  Table t(InstanceColumns(o));
  for (const auto& i : instances) t.AddRow(InstanceRow(i, o, now));
  return t.Render();
}

std::vector<std::string> EventColumns(const TableOptions& o) {
  std::vector<std::string> cols;
  if (o.show_namespace) cols.push_back("NAMESPACE");
  for (const char* c : {"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"})
    cols.push_back(c);
  if (o.wide) {
    for (const char* c : {"SOURCE", "FIRST SEEN", "COUNT"}) cols.push_back(c);
  }
  return cols;
}

std::vector<std::string> EventRow(const tidal::v1::Event& e,
                                  const TableOptions& o, absl::Time now) {
  std::vector<std::string> row;
  if (o.show_namespace) row.push_back(e.involved().namespace_());
  row.push_back(AgeOf(e.has_last_time() ? e.last_time() : e.first_time(), now));
  row.push_back(OrDash(e.type()));
  row.push_back(OrDash(e.reason()));
  std::string kind = e.involved().kind().empty()
                         ? "app"
                         : absl::AsciiStrToLower(e.involved().kind());
  row.push_back(absl::StrCat(kind, "/", e.involved().name()));
  row.push_back(e.message());
  if (o.wide) {
    row.push_back(OrDash(e.source()));
    row.push_back(AgeOf(e.first_time(), now));
    row.push_back(absl::StrCat(std::max(1, e.count())));
  }
  return row;
}

std::string EventsTable(const std::vector<tidal::v1::Event>& events,
                        const TableOptions& o, absl::Time now) {
  Table t(EventColumns(o));
  for (const auto& e : events) t.AddRow(EventRow(e, o, now));
  return t.Render();
}

std::string AppsYaml(const std::vector<tidal::v1::App>& apps) {
  // No app: an empty List (what -o json prints and kubectl prints), not an
  // empty stream a script cannot tell from a failed call.
  if (apps.empty()) return "apiVersion: tidal.dev/v1\nkind: List\nitems: []\n";
  std::string out;
  for (size_t i = 0; i < apps.size(); ++i) {
    if (i > 0) out += "---\n";
    out += spec::AppToYaml(apps[i]);
  }
  return out;
}

std::string AppsJson(const std::vector<tidal::v1::App>& apps, bool as_list) {
  if (!as_list && apps.size() == 1) return spec::AppToJson(apps[0]);
  std::string out =
      "{\n  \"apiVersion\": \"tidal.dev/v1\",\n  \"kind\": \"List\",\n  "
      "\"items\": [";
  for (size_t i = 0; i < apps.size(); ++i) {
    std::string item = spec::AppToJson(apps[i]);
    while (!item.empty() && item.back() == '\n') item.pop_back();
    // Indent the item by four spaces.
    std::vector<std::string> lines = absl::StrSplit(item, '\n');
    out += i == 0 ? "\n" : ",\n";
    for (size_t j = 0; j < lines.size(); ++j) {
      out += "    " + lines[j];
      if (j + 1 < lines.size()) out += "\n";
    }
  }
  out += apps.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return out;
}

std::string MessageJson(const google::protobuf::Message& m) {
  return spec::MessageToJson(m);
}

std::string MessageYaml(const google::protobuf::Message& m) {
  return spec::MessageToYaml(m);
}

std::string ResponseJson(const google::protobuf::Message& m) {
  return spec::MessageToJson(m, false, true);
}

std::string ResponseYaml(const google::protobuf::Message& m) {
  return spec::MessageToYaml(m, true);
}

std::string Sparkline(const std::vector<double>& values, int width) {
  static const char* kBlocks[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                  "\u2585", "\u2586", "\u2587", "\u2588"};
  std::vector<double> cells(width, 0);
  if (!values.empty()) {
    for (int c = 0; c < width; ++c) {
      size_t from = values.size() * c / width;
      size_t to = std::max(from + 1, values.size() * (c + 1) / width);
      double sum = 0;
      for (size_t i = from; i < to && i < values.size(); ++i) sum += values[i];
      cells[c] = sum / static_cast<double>(to - from);
    }
  }
  const double max = *std::max_element(cells.begin(), cells.end());
  std::string out;
  for (double v : cells) {
    int level = max > 0 ? static_cast<int>(v / max * 7.0 + 0.5) : 0;
    out += kBlocks[std::clamp(level, 0, 7)];
  }
  return out;
}

std::string DescribeLoad(const tidal::v1::AppHistory& h, absl::TimeZone tz) {
  auto at = [&](int i) {
    return absl::FormatTime(
        "%H:%M:%S",
        absl::FromUnixSeconds(h.start_unix() + i * h.step_seconds()), tz);
  };
  auto series = [&](const google::protobuf::RepeatedField<double>& v,
                    const std::function<std::string(double)>& show) {
    if (v.empty()) return std::string("-");
    int peak = 0;
    double sum = 0;
    for (int i = 0; i < v.size(); ++i) {
      if (v[i] > v[peak]) peak = i;
      sum += v[i];
    }
    return absl::StrCat("now ", show(v[v.size() - 1]), ", mean ",
                        show(sum / v.size()), ", peak ", show(v[peak]),
                        v[peak] > 0 ? absl::StrCat(" at ", at(peak)) : "");
  };
  auto num = [](double v) { return absl::StrFormat("%.4g", v); };
  auto ms = [](double v) { return absl::StrFormat("%.4gms", v); };
  std::string out = "Load (last hour):\n";
  auto line = [&](const std::string& name, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("  %-14s%s\n", name + ":", value));
  };
  if (h.rps().empty()) {
    out += "  <none recorded yet>\n";
    return out;
  }
  line("Requests/s", series(h.rps(), num));
  line("Concurrency", series(h.concurrency(), num));
  line("P99 latency", series(h.p99_ms(), ms));
  auto range = [](const google::protobuf::RepeatedField<int32_t>& v) {
    if (v.empty()) return std::string("-");
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return *lo == *hi ? absl::StrCat(*lo) : absl::StrCat(*lo, "-", *hi);
  };
  line("Replicas", absl::StrCat("desired ", range(h.desired_replicas()),
                                ", ready ", range(h.ready_replicas())));
  line("Requests/s",
       absl::StrCat(Sparkline({h.rps().begin(), h.rps().end()}, 30), " (",
                    at(0), " to ", at(h.rps().size() - 1), ")"));
  if (!h.scale_events().empty()) {
    out += "  Scale events:\n";
    const int first = std::max(0, h.scale_events().size() - 10);
    for (int i = first; i < h.scale_events().size(); ++i) {
      const auto& e = h.scale_events(i);
      absl::StrAppend(&out, "    ",
                      absl::FormatTime(
                          "%H:%M:%S", absl::FromUnixSeconds(e.time_unix()), tz),
                      "  ", e.from_replicas(), " -> ", e.to_replicas(), "  ",
                      e.reason(), "\n");
    }
  }
  return out;
}

std::string DescribeApp(const tidal::v1::App& app,
                        const std::vector<tidal::v1::Instance>& instances,
                        const std::vector<tidal::v1::Event>& events,
                        absl::Time now, const tidal::v1::AppHistory* load) {
  const auto& md = app.metadata();
  const auto& sp = app.spec();
  const auto& st = app.status();
  std::string out;
  auto field = [&](const std::string& name, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("%-16s%s\n", name + ":", value));
  };
  field("Name", md.name());
  field("Namespace", md.namespace_());
  field("Labels", Labels(md.labels()));
  field("Annotations", Labels(md.annotations()));
  field("UID", md.uid());
  field("Generation", absl::StrCat(md.generation(), " (observed ",
                                   st.observed_generation(), ")"));
  field("Created",
        absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M:%S %Z",
                                      FromProtoTime(md.creation_timestamp()),
                                      absl::UTCTimeZone()),
                     " (", AgeOf(md.creation_timestamp(), now), " ago)"));
  if (md.has_deletion_timestamp()) {
    field("Deleting",
          absl::StrCat("since ", AgeOf(md.deletion_timestamp(), now),
                       " ago (instances are being stopped)"));
  }
  field("Status", AppStatusWord(app));
  if (!st.url().empty()) field("URL", st.url());

  std::string replicas;
  if (sp.has_replicas()) {
    replicas = absl::StrCat(sp.replicas(), " (fixed)");
  } else if (sp.has_scaling()) {
    const auto& sc = sp.scaling();
    // Defaults as the scaler applies them: min 0 (hpa: 1), max 0 = none.
    const int32_t min_default = sc.algorithm() == "hpa" ? 1 : 0;
    replicas = absl::StrCat(
        sc.has_min_replicas() ? std::max(sc.min_replicas(), min_default)
                              : min_default,
        "..",
        sc.max_replicas() > 0 ? absl::StrCat(sc.max_replicas()) : "unbounded",
        " (autoscaled",
        sc.metric().empty() ? "" : absl::StrCat(" on ", sc.metric()),
        sc.has_target() ? absl::StrCat(", target ", FormatNumber(sc.target()))
                        : "",
        ")");
  } else {
    replicas = "1 (default)";
  }
  field("Replicas", absl::StrCat(replicas, "; ", st.desired_replicas(),
                                 " desired | ", st.current_replicas(),
                                 " current | ", st.ready_replicas(), " ready"));
  out += "Template:\n";
  const auto& t = sp.template_();
  auto sub = [&](const std::string& name, const std::string& value) {
    if (!value.empty())
      absl::StrAppend(&out, absl::StrFormat("  %-14s%s\n", name + ":", value));
  };
  std::vector<std::string> cmd(t.command().begin(), t.command().end());
  cmd.insert(cmd.end(), t.args().begin(), t.args().end());
  sub("Image", t.image());
  sub("Command", absl::StrJoin(cmd, " "));
  sub("Working dir", t.working_dir());
  if (t.port()) sub("Port", absl::StrCat(t.port()));
  std::vector<std::string> env;
  for (const auto& e : t.env()) {
    if (e.value_from().has_secret_key_ref()) {
      // kubectl's form: the reference, never the value.
      const auto& ref = e.value_from().secret_key_ref();
      env.push_back(absl::StrCat(e.name(), "=<set to the key '", ref.key(),
                                 "' in secret '", ref.name(), "'",
                                 ref.optional() ? " (optional)" : "", ">"));
      continue;
    }
    env.push_back(absl::StrCat(e.name(), "=", e.value()));
  }
  sub("Env", absl::StrJoin(env, " "));
  sub("Readiness", ProbeText(t.readiness_probe()));
  sub("Liveness", ProbeText(t.liveness_probe()));
  if (t.has_termination_grace_period_seconds()) {
    sub("Grace period",
        absl::StrCat(t.termination_grace_period_seconds(), "s"));
  }
  if (t.concurrency()) sub("Concurrency", absl::StrCat(t.concurrency()));
  if (!t.protocol().empty()) sub("Protocol", t.protocol());
  if (t.has_timeout_seconds() || t.has_response_start_timeout_seconds() ||
      t.has_idle_timeout_seconds()) {
    auto secs = [](bool set, int32_t s) {
      return set ? absl::StrCat(s, "s") : std::string("default");
    };
    sub("Timeouts",
        absl::StrCat(
            "total ",
            t.has_timeout_seconds() ? absl::StrCat(t.timeout_seconds(), "s")
                                    : std::string("none"),
            ", response start ",
            secs(t.has_response_start_timeout_seconds(),
                 t.response_start_timeout_seconds()),
            ", idle ",
            secs(t.has_idle_timeout_seconds(), t.idle_timeout_seconds())));
  }
  if (t.resources().cpu_millis())
    sub("CPU", FormatCpuMillis(t.resources().cpu_millis()));
  if (t.resources().memory_bytes())
    sub("Memory", FormatBytes(t.resources().memory_bytes()));
  sub("Hash",
      st.template_hash().empty() ? spec::TemplateHash(t) : st.template_hash());
  if (sp.has_rollout() && !sp.rollout().strategy().empty()) {
    field("Rollout", sp.rollout().strategy());
  }
  if (!st.rollout().phase().empty()) {
    const auto& ro = st.rollout();
    // A release under way: from where to where, at which step; else only
    // the revision that runs.
    field(
        "Rollout status",
        ro.update_revision() != 0
            ? absl::StrCat(ro.phase(), " (revision ", ro.stable_revision(),
                           " -> ", ro.update_revision(), ", step ", ro.step(),
                           "/", ro.total_steps(), ", weight ", ro.weight(),
                           "%)", ro.message().empty() ? "" : ": ", ro.message())
            : absl::StrCat(ro.phase(), " (revision ", ro.stable_revision(), ")",
                           ro.message().empty() ? "" : ": ", ro.message()));
  }
  if (!st.scaling().metric().empty()) {
    const auto& sc = st.scaling();
    const bool per_instance = sc.metric() == "cpu" || sc.metric() == "memory";
    field(
        "Scaling",
        absl::StrCat(
            sc.metric(), " ", FormatNumber(sc.value()),
            per_instance ? " per instance" : " in total",
            " against a target of ", FormatNumber(sc.target()), " per instance",
            sc.target_utilization() > 0 && sc.target_utilization() != 100
                ? absl::StrCat(
                      ", scaling at ", FormatNumber(sc.target_utilization()),
                      "% of it (",
                      FormatNumber(sc.target() * sc.target_utilization() / 100),
                      ")")
                : "",
            sc.panic() ? " (panic mode)" : ""));
    field("Bounds",
          absl::StrCat(sc.min_replicas(), "..",
                       sc.max_replicas() > 0 ? absl::StrCat(sc.max_replicas())
                                             : "unbounded",
                       " (after schedules and prediction)"));
    if (sc.active_schedules_size() > 0) {
      field("Schedules",
            absl::StrCat(absl::StrJoin(sc.active_schedules(), ", "),
                         " (active)"));
    }
    if (!sc.last_reason().empty()) {
      field("Last scale",
            absl::StrCat(
                sc.has_last_scale_time()
                    ? absl::StrCat(AgeOf(sc.last_scale_time(), now), " ago: ")
                    : "",
                sc.last_reason()));
    }
  }

  out += "Conditions:\n";
  if (st.conditions().empty()) {
    out += "  <none>\n";
  } else {
    Table ct({"TYPE", "STATUS", "REASON", "AGE", "MESSAGE"});
    for (const auto& c : st.conditions()) {
      ct.AddRow({c.type(), c.status(), OrDash(c.reason()),
                 AgeOf(c.last_transition_time(), now), c.message()});
    }
    for (const auto& l : absl::StrSplit(ct.Render(), '\n', absl::SkipEmpty())) {
      absl::StrAppend(&out, "  ", l, "\n");
    }
  }
  out += "Instances:\n";
  if (instances.empty()) {
    out += "  <none>\n";
  } else {
    TableOptions o;
    o.wide = true;
    for (const auto& l : absl::StrSplit(InstancesTable(instances, o, now), '\n',
                                        absl::SkipEmpty())) {
      absl::StrAppend(&out, "  ", l, "\n");
    }
    // How each instance's process last ended (Kubernetes' Last State).
    bool header = false;
    for (const auto& i : instances) {
      if (!i.has_last_state()) continue;
      if (!header) out += "Last state:\n";
      header = true;
      const auto& t = i.last_state();
      absl::StrAppend(
          &out, "  ", i.id(), ": Terminated, ", OrDash(t.reason()),
          " (exit code ", t.exit_code(),
          t.signal() ? absl::StrCat(", signal ", t.signal()) : "", ")",
          t.has_finished_at()
              ? absl::StrCat(", ", AgeOf(t.finished_at(), now), " ago")
              : "",
          t.message().empty() ? "" : absl::StrCat(": ", t.message()), "\n");
    }
  }
  if (load != nullptr) out += DescribeLoad(*load, absl::LocalTimeZone());
  out += "Events:\n";
  if (events.empty()) {
    out += "  <none>\n";
  } else {
    Table et({"AGE", "TYPE", "REASON", "FROM", "MESSAGE"});
    for (const auto& e : events) {
      et.AddRow({AgeOf(e.has_last_time() ? e.last_time() : e.first_time(), now),
                 OrDash(e.type()), OrDash(e.reason()), OrDash(e.source()),
                 e.count() > 1
                     ? absl::StrCat(e.message(), " (x", e.count(), ")")
                     : e.message()});
    }
    for (const auto& l : absl::StrSplit(et.Render(), '\n', absl::SkipEmpty())) {
      absl::StrAppend(&out, "  ", l, "\n");
    }
  }
  return out;
}

tidal::v1::App DiffView(const tidal::v1::App& app) {
  tidal::v1::App v;
  v.set_api_version(app.api_version().empty() ? "tidal.dev/v1"
                                              : app.api_version());
  v.set_kind(app.kind().empty() ? "App" : app.kind());
  v.mutable_metadata()->set_name(app.metadata().name());
  v.mutable_metadata()->set_namespace_(app.metadata().namespace_());
  *v.mutable_metadata()->mutable_labels() = app.metadata().labels();
  *v.mutable_metadata()->mutable_annotations() = app.metadata().annotations();
  // tidald records `apply --message` here; it is history, not desired state
  // (as kubectl ignores its last-applied-configuration annotation).
  v.mutable_metadata()->mutable_annotations()->erase("tidal.dev/change-cause");
  // Who owns the replica fields (`scale` or the file) is apply's
  // bookkeeping too.
  v.mutable_metadata()->mutable_annotations()->erase(
      spec::kAppliedReplicasAnnotation);
  *v.mutable_spec() = app.spec();
  return v;
}

}  // namespace tidal::cli
