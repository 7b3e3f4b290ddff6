// App -> YAML and JSON: AppToYaml, AppToJson (spec.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <tuple>
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
#include "common/json_string.h"
#include "common/units.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/timestamp.pb.h"

namespace tidal::spec {
namespace {

using namespace internal;  // NOLINT: this file is the encoder's half of it
using tidal::v1::App;

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

std::string FormatTimestamp(const pb::Timestamp& ts) {
  absl::Time t =
      absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

Value ToValue(const pb::Message& msg);

// Field `fd` of `msg` (element `i` when repeated, -1 when not); a message
// of the App's by ToValue.
Value AnyFieldValue(const pb::Message& msg, const pb::FieldDescriptor* fd,
                    int i);

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
      // Sorted by key, so that the output is deterministic. Keys are
      // strings; values strings (labels, annotations) or integers
      // (status.rollout.rollbacks: counts by reason).
      std::vector<std::pair<std::string, Value>> entries;
      for (int i = 0; i < r->FieldSize(msg, fd); ++i) {
        const pb::Message& e = r->GetRepeatedMessage(msg, fd, i);
        const pb::Reflection* er = e.GetReflection();
        const pb::FieldDescriptor* value_fd =
            e.GetDescriptor()->FindFieldByNumber(2);
        Value v = value_fd->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64
                      ? Value::Int(er->GetInt64(e, value_fd))
                      : Value::Str(er->GetString(e, value_fd));
        entries.emplace_back(
            er->GetString(e, e.GetDescriptor()->FindFieldByNumber(1)),
            std::move(v));
      }
      std::sort(entries.begin(), entries.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      Value m;
      for (auto& [k, v] : entries) m.map.emplace_back(k, std::move(v));
      out.map.emplace_back(f.name, std::move(m));
      continue;
    }
    if (f.kind == Kind::kEnv) {
      // The map form when names are unique and non-empty, else the list.
      const auto& tmpl = static_cast<const tidal::v1::Template&>(msg);
      std::set<std::string> names;
      bool as_map = true;
      for (const auto& e : tmpl.env()) {
        if (e.name().empty() || !names.insert(e.name()).second ||
            e.has_value_from()) {
          as_map = false;  // valueFrom needs the list form
        }
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
    out.map.emplace_back(f.name, AnyFieldValue(msg, fd, -1));
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
  // '?' too: yaml-cpp's reader refuses a plain "v?" inside a flow list
  // (found by spec_fuzz's long run).
  if (s.find_first_of("\n\r\t\"'\\#:{}[],&*!|>%@`?") != std::string::npos) {
    return true;
  }
  if (s[0] == '-' || s[0] == '?') return true;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// Pretty-printed with two-space indents; `compact` on one line.
void EmitJson(std::string* out, const Value& v, int indent,
              bool compact = false) {
  const std::string pad = compact ? "" : std::string(indent + 2, ' ');
  const char* open_list = compact ? "[" : "[\n";
  const char* open_map = compact ? "{" : "{\n";
  const char* sep = compact ? "," : ",\n";
  const char* last = compact ? "" : "\n";
  const std::string close_pad = compact ? "" : std::string(indent, ' ');
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
      common::AppendJsonString(out, v.s);
      return;
    case Value::kList:
      if (v.list.empty()) {
        out->append("[]");
        return;
      }
      out->append(open_list);
      for (size_t i = 0; i < v.list.size(); ++i) {
        out->append(pad);
        EmitJson(out, v.list[i], indent + 2, compact);
        out->append(i + 1 < v.list.size() ? sep : last);
      }
      out->append(close_pad).append("]");
      return;
    case Value::kMap:
      if (v.map.empty()) {
        out->append("{}");
        return;
      }
      out->append(open_map);
      for (size_t i = 0; i < v.map.size(); ++i) {
        out->append(pad);
        common::AppendJsonString(out, v.map[i].first);
        out->append(compact ? ":" : ": ");
        EmitJson(out, v.map[i].second, indent + 2, compact);
        out->append(i + 1 < v.map.size() ? sep : last);
      }
      out->append(close_pad).append("}");
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
        common::AppendJsonString(&out, v.s);
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

std::string AppToYaml(const tidal::v1::App& app) {
  std::string out;
  Value v = ToValue(app);
  if (v.map.empty()) return "{}\n";
  EmitYamlMap(&out, v, 0);
  return out;
}

namespace {

// A secret's document with kRedacted for every value.
Value SecretValue(const tidal::v1::Secret& secret) {
  tidal::v1::Secret shown = RedactSecret(secret);
  Value v;
  v.map.emplace_back("apiVersion", Value::Str(shown.api_version().empty()
                                                  ? kApiVersion
                                                  : shown.api_version()));
  v.map.emplace_back("kind", Value::Str(kSecretKind));
  v.map.emplace_back("metadata", ToValue(shown.metadata()));
  v.map.emplace_back(
      "type", Value::Str(shown.type().empty() ? "Opaque" : shown.type()));
  Value data;
  for (const auto& k : shown.keys()) {
    data.map.emplace_back(k.name(), Value::Str(kRedacted));
  }
  v.map.emplace_back("data", std::move(data));
  return v;
}

}  // namespace

std::string SecretToYaml(const tidal::v1::Secret& secret) {
  std::string out;
  EmitYamlMap(&out, SecretValue(secret), 0);
  return out;
}

std::string SecretToJson(const tidal::v1::Secret& secret) {
  std::string out;
  EmitJson(&out, SecretValue(secret), 0);
  out.push_back('\n');
  return out;
}

std::string AppToJson(const tidal::v1::App& app) {
  std::string out;
  EmitJson(&out, ToValue(app), 0);
  out.push_back('\n');
  return out;
}

namespace {

Value AnyMessageValue(const pb::Message& msg, bool every_field = false);

Value AnyFieldValue(const pb::Message& msg, const pb::FieldDescriptor* fd,
                    int i) {
  const pb::Reflection* r = msg.GetReflection();
  const bool rep = i >= 0;
  switch (fd->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return Value::Int(rep ? r->GetRepeatedInt32(msg, fd, i)
                            : r->GetInt32(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return Value::Int(rep ? r->GetRepeatedInt64(msg, fd, i)
                            : r->GetInt64(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return Value::Int(rep ? r->GetRepeatedUInt32(msg, fd, i)
                            : r->GetUInt32(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return Value::Int(static_cast<int64_t>(
          rep ? r->GetRepeatedUInt64(msg, fd, i) : r->GetUInt64(msg, fd)));
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return Value::Double(rep ? r->GetRepeatedDouble(msg, fd, i)
                               : r->GetDouble(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return Value::Double(rep ? r->GetRepeatedFloat(msg, fd, i)
                               : r->GetFloat(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return Value::Bool(rep ? r->GetRepeatedBool(msg, fd, i)
                             : r->GetBool(msg, fd));
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string v =
          rep ? r->GetRepeatedString(msg, fd, i) : r->GetString(msg, fd);
      // Bytes as base64, as proto3 JSON and Kubernetes write them.
      if (fd->type() == pb::FieldDescriptor::TYPE_BYTES) {
        return Value::Str(absl::Base64Escape(v));
      }
      return Value::Str(std::move(v));
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return Value::Str(rep ? r->GetRepeatedEnum(msg, fd, i)->name()
                            : r->GetEnum(msg, fd)->name());
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return AnyMessageValue(rep ? r->GetRepeatedMessage(msg, fd, i)
                                 : r->GetMessage(msg, fd));
  }
  return Value::Str("");
}

// Any message: the App's own messages (a revision's template, a status) as
// in the spec; the others by proto3 JSON's names and omissions, integers of
// 64 bits as numbers (as Kubernetes writes them), timestamps as RFC 3339.
// `every_field`: also the fields proto3 JSON leaves out for holding their
// default (an empty list as [], false, 0), but not unset messages; for this
// message only, not those it holds.
Value AnyMessageValue(const pb::Message& msg, bool every_field) {
  const pb::Descriptor* d = msg.GetDescriptor();
  if (d == pb::Timestamp::descriptor()) {
    return Value::Str(FormatTimestamp(static_cast<const pb::Timestamp&>(msg)));
  }
  if (GetSchema().messages.count(d) > 0) return ToValue(msg);
  const pb::Reflection* r = msg.GetReflection();
  Value out;
  for (int k = 0; k < d->field_count(); ++k) {
    const pb::FieldDescriptor* fd = d->field(k);
    if (fd->is_map()) {
      // Keys written as strings (as proto3 JSON does), in their order:
      // numeric for integer keys.
      struct Entry {
        int64_t number = 0;
        std::string key;
        Value value;
      };
      std::vector<Entry> entries;
      for (int i = 0; i < r->FieldSize(msg, fd); ++i) {
        const pb::Message& e = r->GetRepeatedMessage(msg, fd, i);
        const pb::Descriptor* ed = e.GetDescriptor();
        Value key = AnyFieldValue(e, ed->FindFieldByNumber(1), -1);
        Entry entry;
        if (key.type == Value::kString) {
          entry.key = key.s;
        } else if (key.type == Value::kBool) {
          entry.number = key.b;
          entry.key = key.b ? "true" : "false";
        } else {
          entry.number = key.i;
          entry.key = absl::StrCat(key.i);
        }
        entry.value = AnyFieldValue(e, ed->FindFieldByNumber(2), -1);
        entries.push_back(std::move(entry));
      }
      if (entries.empty() && !every_field) continue;
      std::sort(entries.begin(), entries.end(),
                [](const Entry& a, const Entry& b) {
                  return std::tie(a.number, a.key) < std::tie(b.number, b.key);
                });
      Value m;
      for (Entry& e : entries) m.map.emplace_back(e.key, std::move(e.value));
      out.map.emplace_back(fd->json_name(), std::move(m));
    } else if (fd->is_repeated()) {
      if (r->FieldSize(msg, fd) == 0 && !every_field) continue;
      Value list = Value::List();
      for (int i = 0; i < r->FieldSize(msg, fd); ++i) {
        list.list.push_back(AnyFieldValue(msg, fd, i));
      }
      out.map.emplace_back(fd->json_name(), std::move(list));
    } else if (r->HasField(msg, fd) ||
               (every_field &&
                fd->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE &&
                !fd->has_presence())) {
      out.map.emplace_back(fd->json_name(), AnyFieldValue(msg, fd, -1));
    }
  }
  return out;
}

}  // namespace

std::string MessageToJson(const pb::Message& m, bool compact,
                          bool every_field) {
  std::string out;
  EmitJson(&out, AnyMessageValue(m, every_field), 0, compact);
  out.push_back('\n');
  return out;
}

std::string MessageToYaml(const pb::Message& m, bool every_field) {
  Value v = AnyMessageValue(m, every_field);
  if (v.map.empty()) return "{}\n";
  std::string out;
  EmitYamlMap(&out, v, 0);
  return out;
}

std::string JsonQuoted(const std::string& s) {
  std::string out;
  common::AppendJsonString(&out, s);
  return out;
}

}  // namespace tidal::spec
