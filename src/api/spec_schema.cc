#include <algorithm>
#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "api/spec.h"
#include "api/spec_internal.h"

namespace tidal::spec::internal {
namespace {

using tidal::v1::App;

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

}  // namespace

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

void Schema::Add(const pb::Descriptor* d, const std::string& path, bool index) {
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

const Schema& GetSchema() {
  static const Schema* schema = [] {
    auto* s = new Schema;
    s->Add(App::descriptor(), "", true);
    return s;
  }();
  return *schema;
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

}  // namespace tidal::spec::internal

namespace tidal::spec {
namespace {

using internal::FieldInfo;
using internal::Kind;
namespace pb = google::protobuf;

// What app.proto's comments say of each field ("tidal.v1.Message.field").
const std::map<std::string, std::string>& ProtoDocs() {
  static const auto* docs = new std::map<std::string, std::string>{
#include "proto_docs.inc"
  };
  return *docs;
}

std::string TypeOf(const FieldInfo& f) {
  switch (f.kind) {
    case Kind::kDuration:
      return "duration";
    case Kind::kCpu:
      return "CPU quantity";
    case Kind::kBytes:
      return "byte quantity";
    case Kind::kEnv:
      return "[]EnvVar | map[string]string";
    case Kind::kErrorRate:
      return "fraction | percent";
    case Kind::kIntOrPercent:
      return "integer | percent";
    case Kind::kStepPause:
      return "duration | manual";
    case Kind::kRolloutPause:
      return "manual | duration";
    case Kind::kTimestamp:
      return "timestamp";
    case Kind::kGeneric:
      break;
  }
  const pb::FieldDescriptor* d = f.field;
  if (d->is_map()) return "map[string]string";
  std::string t;
  switch (d->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      t = "Object";
      break;
    case pb::FieldDescriptor::CPPTYPE_STRING:
      t = "string";
      break;
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      t = "boolean";
      break;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      t = "number";
      break;
    default:
      t = "integer";
  }
  return d->is_repeated() ? "[]" + t : t;
}

std::string DocOf(const FieldInfo& f) {
  auto it = ProtoDocs().find(f.field->full_name());
  return it == ProtoDocs().end() ? "" : it->second;
}

// `text` wrapped at 72 columns, each line indented by `indent`.
std::string Wrap(const std::string& text, const std::string& indent) {
  std::string out, line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && line.size() + word.size() + 1 > 72) {
      absl::StrAppend(&out, indent, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(&out, indent, line, "\n");
  return out;
}

}  // namespace

absl::StatusOr<std::string> Explain(const std::string& path) {
  std::vector<std::string> parts = absl::StrSplit(path, '.', absl::SkipEmpty());
  if (!parts.empty() && (absl::AsciiStrToLower(parts[0]) == "app" ||
                         absl::AsciiStrToLower(parts[0]) == "apps")) {
    parts.erase(parts.begin());
  }
  const internal::Schema& schema = internal::GetSchema();
  const pb::Descriptor* d = tidal::v1::App::descriptor();
  const FieldInfo* field = nullptr;
  std::string at;
  for (std::string part : parts) {
    if (absl::EndsWith(part, "[]")) part.resize(part.size() - 2);
    auto it = d != nullptr ? schema.messages.find(d) : schema.messages.end();
    if (it == schema.messages.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, " is a ", TypeOf(*field), ": it has no fields"));
    }
    const FieldInfo* f = it->second.Find(part);
    if (f == nullptr) {
      std::vector<std::string> names;
      for (const auto& fi : it->second.fields) names.push_back(fi.name);
      std::string near = internal::Suggest(part, names);
      return absl::InvalidArgumentError(absl::StrCat(
          "field \"", part, "\" does not exist in ", at.empty() ? "App" : at,
          near.empty() ? "" : absl::StrCat(" (did you mean \"", near, "\"?)"),
          "; its fields: ", absl::StrJoin(names, ", ")));
    }
    field = f;
    at = internal::JoinPath(at, f->name);
    const bool object =
        f->field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
        !f->field->is_map() && f->kind != Kind::kTimestamp;
    d = object ? f->field->message_type() : nullptr;
  }
  std::string out = "KIND:     App\nVERSION:  tidal.dev/v1\n\n";
  if (field == nullptr) {
    absl::StrAppend(&out, "DESCRIPTION:\n",
                    Wrap("An app: instances of one template, scaled with "
                         "their load and released in steps (docs/spec.md).",
                         "     "));
  } else {
    absl::StrAppend(&out, "FIELD:    ", field->name, " <", TypeOf(*field),
                    ">\n\nDESCRIPTION:\n");
    std::string doc = DocOf(*field);
    absl::StrAppend(
        &out,
        Wrap(doc.empty() ? absl::StrCat("(docs/spec.md describes ", at, ")")
                         : doc,
             "     "));
  }
  auto it = d != nullptr ? schema.messages.find(d) : schema.messages.end();
  if (it != schema.messages.end() && !it->second.fields.empty()) {
    absl::StrAppend(&out, "\nFIELDS:\n");
    for (const FieldInfo& f : it->second.fields) {
      absl::StrAppend(&out, "   ", f.name, "\t<", TypeOf(f), ">\n");
      std::string doc = DocOf(f);
      if (!doc.empty()) absl::StrAppend(&out, Wrap(doc, "     "));
    }
  }
  return out;
}

}  // namespace tidal::spec
