#pragma once

// Output formatting for tidalctl, kept apart from the commands so it is
// testable: kubectl-like tables, ages, describe, YAML/JSON/name forms.
// Pure functions of their inputs (and `now`); thread-safe.

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tidal/v1/app.pb.h"

namespace tidal::v1 {
class AppHistory;  // tidal/v1/api.pb.h
}  // namespace tidal::v1

namespace tidal::cli {

// kubectl's human durations: "45s", "5m30s", "45m", "5h30m", "30h", "3d5h",
// "20d".
std::string FormatAge(absl::Duration d);
// Age of a timestamp relative to `now`, "<unknown>" when unset.
std::string AgeOf(const google::protobuf::Timestamp& t, absl::Time now);

// A table with left-aligned columns separated by three spaces (kubectl).
class Table {
 public:
  explicit Table(std::vector<std::string> header)
      : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // With `with_header` false, only the rows (used by -w after the first print).
  std::string Render(bool with_header = true) const;
  size_t size() const { return rows_.size(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

struct TableOptions {
  bool wide = false;
  bool show_namespace = false;  // -A
  bool show_labels = false;     // --show-labels: a LABELS column (apps)
};

// "app.tidal.dev/hello" (kubectl's resource/name form).
std::string AppName(const tidal::v1::App& app);
// " in namespace NS" for the result lines of apply, delete, scale and
// rollout actions when NS is not "default"; "" for the default namespace.
std::string InNamespace(const std::string& ns);
// Ready, NotReady, Progressing, Terminating or Pending, from status.
std::string AppStatusWord(const tidal::v1::App& app);

std::vector<std::string> AppColumns(const TableOptions& o);
std::vector<std::string> AppRow(const tidal::v1::App& app,
                                const TableOptions& o, absl::Time now);
std::string AppsTable(const std::vector<tidal::v1::App>& apps,
                      const TableOptions& o, absl::Time now);

std::vector<std::string> InstanceColumns(const TableOptions& o);
std::vector<std::string> InstanceRow(const tidal::v1::Instance& inst,
                                     const TableOptions& o, absl::Time now);
std::string InstancesTable(const std::vector<tidal::v1::Instance>& instances,
                           const TableOptions& o, absl::Time now);

std::vector<std::string> EventColumns(const TableOptions& o);
std::vector<std::string> EventRow(const tidal::v1::Event& e,
                                  const TableOptions& o, absl::Time now);
std::string EventsTable(const std::vector<tidal::v1::Event>& events,
                        const TableOptions& o, absl::Time now);

// Apps as YAML documents separated by "---", or as JSON (one object, or a
// {"kind": "List", "items": [...]} for several).
std::string AppsYaml(const std::vector<tidal::v1::App>& apps);
std::string AppsJson(const std::vector<tidal::v1::App>& apps, bool as_list);
// Any message as JSON (instances, events).
std::string MessageJson(const google::protobuf::Message& m);
// -o yaml: the same object as MessageJson, in block YAML.
std::string MessageYaml(const google::protobuf::Message& m);
// -o json|yaml of a whole response (list-tokens, whoami, get nodes): its
// own fields even when empty or false (`"tokens": []`), never `{}`.
std::string ResponseJson(const google::protobuf::Message& m);
std::string ResponseYaml(const google::protobuf::Message& m);

// `tidalctl describe app`: spec summary, status, conditions, instances and
// recent events.
// With `load` (tidald's history of the app: History), a "Load (last hour)"
// section comes before the events.
std::string DescribeApp(const tidal::v1::App& app,
                        const std::vector<tidal::v1::Instance>& instances,
                        const std::vector<tidal::v1::Event>& events,
                        absl::Time now,
                        const tidal::v1::AppHistory* load = nullptr);

// `values` as a line of `width` block characters (U+2581..U+2588), each the
// mean of its share of the values, scaled to the largest; all zero: the
// lowest block.
std::string Sparkline(const std::vector<double>& values, int width);

// The "Load (last hour)" section of describe: requests/s, concurrency and
// p99 now and at their peak, the replicas' range, a sparkline, the scale
// events with their reasons (times in `tz`).
std::string DescribeLoad(const tidal::v1::AppHistory& h, absl::TimeZone tz);

// The part of an app that `diff` compares: apiVersion, kind, metadata name,
// namespace, labels and annotations, and the spec.
tidal::v1::App DiffView(const tidal::v1::App& app);

}  // namespace tidal::cli
