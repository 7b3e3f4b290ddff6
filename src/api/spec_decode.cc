// YAML -> App: ParseApps (spec.h), with the line of every field.

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
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "api/limits.h"
#include "api/spec_internal.h"
#include "common/cron.h"
#include "common/units.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/timestamp.pb.h"

namespace tidal::spec {
namespace {

using namespace internal;  // NOLINT: this file is the decoder's half of it
using tidal::v1::App;

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
    // A field of another level first: `spec.minReplicas` is
    // spec.scaling.minReplicas, not a misspelt `replicas`.
    const auto& where = GetSchema().where;
    if (auto it = where.find(name); it != where.end() && !path.empty()) {
      return absl::StrCat("unknown field here (", name, " belongs under ",
                          absl::StrJoin(it->second, " or "), ")");
    }
    std::string s = Suggest(name, names);
    if (!s.empty()) {
      return absl::StrCat("unknown field (did you mean \"", s, "\"?)");
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
      // Values are strings (labels, annotations) or counts
      // (status.rollout.rollbacks).
      const pb::FieldDescriptor* value_fd =
          fd->message_type()->FindFieldByNumber(2);
      const bool count =
          value_fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64;
      std::string v;
      int64_t n = 0;
      if (count) {
        if (!ReadInt(it->second, kp, 0, INT64_MAX, &n)) continue;
      } else if (!it->second.IsNull() && !ReadString(it->second, kp, &v)) {
        continue;
      }
      pb::Message* entry = r->AddMessage(msg, fd);
      const pb::Reflection* er = entry->GetReflection();
      er->SetString(entry, entry->GetDescriptor()->FindFieldByNumber(1), k);
      if (count) {
        er->SetInt64(entry, value_fd, n);
      } else {
        er->SetString(entry, value_fd, v);
      }
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
        if (it->second.IsMap() && it->second["valueFrom"].IsDefined()) {
          Error(ToLoc(it->second.Mark()), JoinPath(ep, "valueFrom"),
                "valueFrom needs the list form of env: - name: " +
                    it->first.Scalar() + " followed by valueFrom: ...");
          continue;
        }
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

// Parses a Secret document (kind: Secret) into out->secret, stringData merged
// into data. No message quotes a value of data or stringData.
void ParseSecretDocument(const YAML::Node& root, const std::string& src,
                         const std::string& default_ns, const DocParser& parser,
                         std::vector<SpecError>* errors, ParsedSecret* out) {
  std::map<std::string, Loc> marks;
  auto loc = [&](const YAML::Node& n) { return parser.ToLoc(n.Mark()); };
  auto error = [&](const Loc& l, const std::string& path, std::string msg) {
    errors->push_back({src, l.line, l.column, path, std::move(msg)});
  };
  auto scalar = [&](const YAML::Node& v, const std::string& path,
                    std::string* s) {
    if (!v.IsScalar()) {
      error(
          loc(v), path,
          absl::StrCat("must be a string, got ", v.IsMap()        ? "a map"
                                                 : v.IsSequence() ? "a list"
                                                                  : "nothing"));
      return false;
    }
    *s = v.Scalar();
    return true;
  };
  // A map of strings; `value` is called with each key, its value node and
  // its path. Duplicate and non-string keys are errors.
  auto each =
      [&](const YAML::Node& v, const std::string& path,
          const std::function<void(const std::string&, const YAML::Node&,
                                   const std::string&)>& value) {
        if (!v.IsMap()) {
          error(loc(v), path, absl::StrCat("must be a map, got ", Got(v)));
          return;
        }
        std::set<std::string> seen;
        for (auto it = v.begin(); it != v.end(); ++it) {
          const YAML::Node key = it->first;
          const YAML::Node val = it->second;
          if (!key.IsScalar()) {
            error(loc(key), path, "keys must be strings");
            continue;
          }
          const std::string kp = JoinPath(path, key.Scalar());
          marks[kp] = loc(key);
          if (!seen.insert(key.Scalar()).second) {
            error(loc(key), kp, "duplicate key");
            continue;
          }
          value(key.Scalar(), val, kp);
        }
      };
  static const std::vector<std::string> kTop = {
      "apiVersion", "kind", "metadata", "type", "data", "stringData"};
  static const std::vector<std::string> kMeta = {"name", "namespace", "labels",
                                                 "annotations"};
  v1::Secret* secret = &out->secret;
  each(
      root, "",
      [&](const std::string& name, const YAML::Node& v,
          const std::string& path) {
        if (std::find(kTop.begin(), kTop.end(), name) == kTop.end()) {
          std::string s = Suggest(name, kTop);
          error(marks[path], path,
                s.empty() ? absl::StrCat("unknown field of a Secret (known "
                                         "fields: ",
                                         absl::StrJoin(kTop, ", "), ")")
                          : absl::StrCat("unknown field (did you mean \"", s,
                                         "\"?)"));
          return;
        }
        if (v.IsNull()) return;
        std::string str;
        if (name == "apiVersion") {
          if (scalar(v, path, &str)) secret->set_api_version(str);
        } else if (name == "kind") {
          if (scalar(v, path, &str)) secret->set_kind(str);
        } else if (name == "type") {
          if (scalar(v, path, &str)) secret->set_type(str);
        } else if (name == "metadata") {
          auto* md = secret->mutable_metadata();
          each(v, path,
               [&](const std::string& mname, const YAML::Node& mv,
                   const std::string& mpath) {
                 if (std::find(kMeta.begin(), kMeta.end(), mname) ==
                     kMeta.end()) {
                   error(marks[mpath], mpath,
                         absl::StrCat(
                             "unknown field of a Secret's metadata (known "
                             "fields: ",
                             absl::StrJoin(kMeta, ", "), ")"));
                   return;
                 }
                 if (mv.IsNull()) return;
                 std::string ms;
                 if (mname == "name") {
                   if (scalar(mv, mpath, &ms)) md->set_name(ms);
                 } else if (mname == "namespace") {
                   if (scalar(mv, mpath, &ms)) md->set_namespace_(ms);
                 } else {
                   auto* m = mname == "labels" ? md->mutable_labels()
                                               : md->mutable_annotations();
                   each(mv, mpath,
                        [&](const std::string& k, const YAML::Node& lv,
                            const std::string& lpath) {
                          std::string l;
                          if (lv.IsNull() || scalar(lv, lpath, &l)) (*m)[k] = l;
                        });
                 }
               });
        } else if (name == "data") {
          each(
              v, path,
              [&](const std::string& k, const YAML::Node& dv,
                  const std::string& dpath) {
                std::string b64, raw;
                if (dv.IsNull()) {
                  (*secret->mutable_data())[k] = "";
                  return;
                }
                if (!scalar(dv, dpath, &b64)) return;
                // Whitespace (a folded block scalar) is not part of the value.
                b64.erase(std::remove_if(
                              b64.begin(), b64.end(),
                              [](char c) { return absl::ascii_isspace(c); }),
                          b64.end());
                if (!absl::Base64Unescape(b64, &raw) ||
                    absl::Base64Escape(raw) != b64) {
                  error(
                      loc(dv), dpath,
                      "not valid base64 (padded, standard alphabet); write the "
                      "plain value under stringData instead (the value is not "
                      "shown)");
                  return;
                }
                (*secret->mutable_data())[k] = std::move(raw);
              });
        } else if (name == "stringData") {
          each(v, path,
               [&](const std::string& k, const YAML::Node& sv,
                   const std::string& spath) {
                 std::string plain;
                 if (sv.IsNull() || scalar(sv, spath, &plain)) {
                   (*secret->mutable_string_data())[k] = std::move(plain);
                 }
               });
        }
      });
  if (secret->metadata().namespace_().empty()) {
    secret->mutable_metadata()->set_namespace_(default_ns);
  }
  CheckSecret(*secret, [&](const std::string& path, std::string msg) {
    std::string p = path;
    Loc l;
    while (true) {
      auto it = marks.find(p);
      if (it != marks.end()) {
        l = it->second;
        break;
      }
      if (p.empty()) {
        l = parser.ToLoc(root.Mark());
        break;
      }
      size_t cut = p.find_last_of(".[");
      p = cut == std::string::npos ? "" : p.substr(0, cut);
    }
    // A field reported already (a type error) is not reported twice.
    for (const SpecError& e : *errors) {
      if (e.field == path) return;
    }
    error(l, path, std::move(msg));
  });
  NormalizeSecret(secret);
}

// One YAML document of the input, with the line where its text starts.
struct Chunk {
  std::string text;    // empty when `bytes` is over the split's cap
  int first_line = 0;  // 0-based line of the input where `text` starts
  size_t bytes = 0;    // the document's size
};

// Splits a YAML stream at document markers ("---" and "..." at the start of
// a line) so that each document is parsed alone: a syntax error in one does
// not hide the errors of the others.
// Documents with nothing but blanks are left out. More than `max_chunks`
// others: stops there and sets `*too_many_at` to the (1-based) line where
// the first one too many starts; 0 otherwise. The text of a document over
// `max_bytes` is not kept (only its size: it is refused unread).
std::vector<Chunk> SplitDocuments(absl::string_view yaml, size_t max_chunks,
                                  size_t max_bytes, int* too_many_at) {
  std::vector<Chunk> chunks;
  // The document being read: what follows its "---" on that line (at the
  // same columns), then yaml[from, to) verbatim. Copied once, when kept.
  Chunk cur;
  std::string head;
  size_t from = 0, to = 0;
  int line_no = 0;
  size_t pos = 0;
  *too_many_at = 0;
  // Keeps the document unless it is blank; false when it is one too many.
  auto push = [&] {
    const absl::string_view body = yaml.substr(from, to - from);
    cur.bytes = head.size() + body.size();
    if (absl::StripAsciiWhitespace(head).empty() &&
        absl::StripAsciiWhitespace(body).empty()) {
      return true;
    }
    if (chunks.size() >= max_chunks) {
      *too_many_at = cur.first_line + 1;
      return false;
    }
    if (cur.bytes <= max_bytes) {
      cur.text.reserve(cur.bytes);
      absl::StrAppend(&cur.text, head, body);
    }
    chunks.push_back(std::move(cur));
    return true;
  };
  while (pos <= yaml.size()) {
    size_t end = yaml.find('\n', pos);
    bool last = end == absl::string_view::npos;
    absl::string_view line =
        yaml.substr(pos, last ? absl::string_view::npos : end - pos);
    auto marker = [&](absl::string_view m) {
      return absl::StartsWith(line, m) && (line.size() == 3 || line[3] == ' ' ||
                                           line[3] == '\t' || line[3] == '\r');
    };
    const size_t next = last ? yaml.size() : end + 1;
    if (marker("---")) {
      if (!push()) return chunks;
      cur = Chunk{};
      cur.first_line = line_no;
      head = absl::StrCat("   ", line.substr(3), "\n");
      from = to = next;
    } else if (marker("...")) {
      if (!push()) return chunks;
      cur = Chunk{};
      cur.first_line = line_no + 1;
      head.clear();
      from = to = next;
    } else {
      to = next;
    }
    if (last) break;
    pos = end + 1;
    ++line_no;
  }
  push();
  return chunks;
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

std::string MoreErrors(int64_t more, int listed) {
  return absl::StrCat("... and ", more, " more error", more == 1 ? "" : "s",
                      " (only the first ", listed, " are listed)");
}

absl::Status ParseResult::ToStatus() const {
  if (errors.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  for (const SpecError& e : errors) lines.push_back(e.ToString());
  if (more_errors > 0) {
    lines.push_back(MoreErrors(more_errors, static_cast<int>(errors.size())));
  }
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

namespace {

// The offset of the first byte of `text` that is not part of well-formed
// UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), or
// npos. YAML streams are Unicode; specs are stored and served as text (JSON
// needs valid UTF-8), so a spec whose bytes are not is refused up front.
size_t FirstInvalidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlong forms
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // no overlong forms
      if (c == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
    } else {
      return i;
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

// Reports every string of `m` (at any depth) that is not valid UTF-8: YAML
// escapes such as "\\_" or "\\N" decode to single bytes that are not
// (yaml-cpp writes U+00A0 and U+0085 as raw bytes), and such a spec could
// not be written back (found by spec_fuzz's long run).
void CheckStringsAreUtf8(
    const google::protobuf::Message& m, const std::string& prefix,
    const std::function<void(const std::string&, std::string)>& report) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  auto bad = [&](const std::string& path, const std::string& v) {
    if (FirstInvalidUtf8(v) == std::string_view::npos) return;
    report(path,
           "not valid UTF-8 once its escapes are decoded (\\_ and \\N are "
           "not supported; write the characters themselves)");
  };
  for (const FieldDescriptor* f : fields) {
    const std::string name = prefix.empty()
                                 ? f->json_name()
                                 : absl::StrCat(prefix, ".", f->json_name());
    if (f->is_map()) {
      const int n = r->FieldSize(m, f);
      for (int i = 0; i < n; ++i) {
        const auto& entry = r->GetRepeatedMessage(m, f, i);
        const auto* er = entry.GetReflection();
        const FieldDescriptor* kf = entry.GetDescriptor()->map_key();
        const FieldDescriptor* vf = entry.GetDescriptor()->map_value();
        std::string key = kf->type() == FieldDescriptor::TYPE_STRING
                              ? er->GetString(entry, kf)
                              : "";
        bad(name, key);
        const std::string path = absl::StrCat(name, ".", key);
        if (vf->type() == FieldDescriptor::TYPE_STRING) {
          bad(path, er->GetString(entry, vf));
        } else if (vf->type() == FieldDescriptor::TYPE_MESSAGE) {
          CheckStringsAreUtf8(er->GetMessage(entry, vf), path, report);
        }
      }
    } else if (f->is_repeated()) {
      const int n = r->FieldSize(m, f);
      for (int i = 0; i < n; ++i) {
        const std::string path = absl::StrCat(name, "[", i, "]");
        if (f->type() == FieldDescriptor::TYPE_STRING) {
          bad(path, r->GetRepeatedString(m, f, i));
        } else if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
          CheckStringsAreUtf8(r->GetRepeatedMessage(m, f, i), path, report);
        }
      }
    } else if (f->type() == FieldDescriptor::TYPE_STRING) {
      bad(name, r->GetString(m, f));
    } else if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
      CheckStringsAreUtf8(r->GetMessage(m, f), name, report);
    }
  }
}

}  // namespace

ParseResult ParseApps(std::string_view yaml, std::string_view source,
                      std::string_view default_namespace,
                      const ValidationOptions& opts) {
  ParseResult result;
  const std::string src(source);
  const InputLimits& in = opts.input;
  const size_t max_errors = static_cast<size_t>(std::max(1, in.max_errors));
  // Keeps the first max_errors errors and counts the others.
  auto keep = [&](std::vector<SpecError>* errors) {
    for (auto& e : *errors) {
      if (result.errors.size() < max_errors) {
        result.errors.push_back(std::move(e));
      } else {
        ++result.more_errors;
      }
    }
    errors->clear();
  };
  // An error at byte `at` of the text.
  auto at_byte = [&](size_t at, std::string msg) {
    const std::string_view before = yaml.substr(0, at);
    const int line =
        1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
    const size_t nl = before.rfind('\n');
    const int column =
        static_cast<int>(at - (nl == std::string_view::npos ? 0 : nl + 1) + 1);
    result.errors.push_back({src, line, column, "", std::move(msg)});
    return result;
  };
  if (size_t bad = FirstInvalidUtf8(yaml); bad != std::string_view::npos) {
    return at_byte(
        bad,
        absl::StrFormat("the text is not valid UTF-8 (byte 0x%02x); save the "
                        "file as UTF-8",
                        static_cast<unsigned char>(yaml[bad])));
  }
  if (size_t nul = yaml.find('\0'); nul != std::string_view::npos) {
    // YAML text may not hold one (write "\0" in a double-quoted string).
    return at_byte(nul, "the text holds a NUL byte, which YAML does not allow");
  }
  const std::string ns =
      default_namespace.empty() ? "default" : std::string(default_namespace);
  std::map<std::pair<std::string, std::string>, int> names;  // -> line
  std::map<std::pair<std::string, std::string>, int> secret_names;
  int documents = 0;
  int too_many_at = 0;
  std::vector<Chunk> chunks = SplitDocuments(
      AV(yaml), static_cast<size_t>(std::max(1, in.max_documents)),
      in.max_document_bytes, &too_many_at);
  if (too_many_at > 0) {
    result.errors.push_back(
        {src, too_many_at, 0, "",
         absl::StrCat("more than ", in.max_documents,
                      " documents in one apply (tidald --api-max-documents); "
                      "apply them in parts")});
    return result;
  }
  // One App or Secret document, or one item of a List: a parser of its own,
  // so that its field paths find its own lines (marks are the chunk's).
  auto one_document = [&](YAML::Node root, int first_line) {
    std::vector<SpecError> errors;
    DocParser parser(src, first_line, &errors);
    Loc start = parser.ToLoc(root.Mark());
    if (!root.IsMap()) {
      result.errors.push_back(
          {src, start.line, start.column, "",
           absl::StrCat("a document must be a map with apiVersion, kind, "
                        "metadata and spec, got ",
                        root.IsSequence() ? "a list" : Got(root))});
      return;
    }
    if (const YAML::Node& croot = root; croot["kind"].IsDefined() &&
                                        croot["kind"].IsScalar() &&
                                        croot["kind"].Scalar() == kSecretKind) {
      ParsedSecret secret;
      secret.source = src;
      secret.line = start.line;
      try {
        ParseSecretDocument(root, src, ns, parser, &errors, &secret);
      } catch (const YAML::Exception& e) {
        errors.push_back({src, start.line, start.column, "",
                          absl::StrCat("invalid YAML: ", e.msg)});
      }
      const auto& md = secret.secret.metadata();
      if (!md.name().empty()) {
        auto [it, inserted] = secret_names.emplace(
            std::make_pair(md.namespace_(), md.name()), start.line);
        if (!inserted) {
          errors.push_back(
              {src, start.line, start.column, "metadata.name",
               absl::StrCat("duplicate secret \"", md.namespace_(), "/",
                            md.name(), "\" (also defined at line ", it->second,
                            ")")});
        }
      }
      std::stable_sort(errors.begin(), errors.end(),
                       [](const SpecError& a, const SpecError& b) {
                         return std::tie(a.line, a.column) <
                                std::tie(b.line, b.column);
                       });
      keep(&errors);
      result.secrets.push_back(std::move(secret));
      return;
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
    CheckStringsAreUtf8(
        parsed.app, "", [&](const std::string& path, std::string msg) {
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
    keep(&errors);
    parsed.lines = parser.Lines();
    result.apps.push_back(std::move(parsed));
  };
  for (const Chunk& chunk : chunks) {
    if (result.errors.size() >= max_errors) {
      ++result.more_errors;  // the rest is not even loaded
      continue;
    }
    std::vector<SpecError> errors;
    DocParser parser(src, chunk.first_line, &errors);
    if (chunk.bytes > in.max_document_bytes) {
      ++documents;
      result.errors.push_back(
          {src, chunk.first_line + 1, 0, "",
           absl::StrCat("the document is ", chunk.bytes,
                        " bytes, more than the ", in.max_document_bytes,
                        " a spec may have (tidald --api-max-spec-size)")});
      continue;
    }
    if (auto problem = internal::ScanDocument(chunk.text)) {
      ++documents;
      Loc l{problem->line > 0 ? problem->line + chunk.first_line : 0,
            problem->column};
      result.errors.push_back(
          {src, l.line, l.column, "",
           absl::StrCat("refused before loading: ", problem->message)});
      continue;
    }
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
    // kubectl's List (what `tidalctl get apps -o json|yaml` prints): each
    // item is a document.
    if (const YAML::Node& croot = root;
        croot.IsMap() && croot["kind"].IsDefined() &&
        croot["kind"].IsScalar() && croot["kind"].Scalar() == "List") {
      const YAML::Node items = croot["items"];
      if (!items.IsDefined() || !items.IsSequence()) {
        Loc l = parser.ToLoc(root.Mark());
        result.errors.push_back(
            {src, l.line, l.column, "items",
             "a List needs items: a list of App and Secret documents"});
        continue;
      }
      for (const YAML::Node& item : items) {
        if (result.errors.size() >= max_errors) break;
        one_document(item, chunk.first_line);
      }
      continue;
    }
    one_document(root, chunk.first_line);
  }
  if (documents == 0 && result.errors.empty()) {
    result.errors.push_back(
        {src, 0, 0, "", "no documents: the input is empty"});
    result.no_documents = true;
  }
  if (!result.errors.empty()) {
    result.apps.clear();
    result.secrets.clear();
  }
  return result;
}

}  // namespace tidal::spec
