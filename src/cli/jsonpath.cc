#include "cli/jsonpath.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "api/spec.h"
#include "cli/output.h"

namespace tidal::cli {
namespace {

// One step of a path: a key, an index, or every element (-1 = [*], .*).
struct Step {
  std::string key;
  int index = -1;
  bool all = false;
  bool is_index = false;
};

absl::StatusOr<std::vector<Step>> ParsePath(absl::string_view p) {
  p = absl::StripAsciiWhitespace(p);
  if (absl::ConsumePrefix(&p, "{")) {
    if (!absl::ConsumeSuffix(&p, "}"))
      return absl::InvalidArgumentError("unclosed { in the JSONPath");
    p = absl::StripAsciiWhitespace(p);
  }
  if (!p.empty() && (p[0] == '$' || p[0] == '@')) p.remove_prefix(1);
  std::vector<Step> steps;
  size_t i = 0;
  while (i < p.size()) {
    if (p[i] == '.') {
      ++i;
      if (i < p.size() && p[i] == '*') {
        steps.push_back({"", -1, true, false});
        ++i;
        continue;
      }
      size_t j = i;
      while (j < p.size() && p[j] != '.' && p[j] != '[') ++j;
      if (j > i) steps.push_back({std::string(p.substr(i, j - i))});
      i = j;
    } else if (p[i] == '[') {
      size_t close = p.find(']', i);
      if (close == absl::string_view::npos)
        return absl::InvalidArgumentError(
            absl::StrCat("unclosed [ in the JSONPath \"", p, "\""));
      absl::string_view in =
          absl::StripAsciiWhitespace(p.substr(i + 1, close - i - 1));
      if (in == "*") {
        steps.push_back({"", -1, true, false});
      } else if (in.size() >= 2 && (in[0] == '\'' || in[0] == '"') &&
                 in.back() == in[0]) {
        steps.push_back({std::string(in.substr(1, in.size() - 2))});
      } else {
        int n = 0;
        if (!absl::SimpleAtoi(in, &n))
          return absl::InvalidArgumentError(
              absl::StrCat("JSONPath \"", p, "\": [", in,
                           "] is not an index, [*] or a quoted key"));
        Step s;
        s.index = n;
        s.is_index = true;
        steps.push_back(s);
      }
      i = close + 1;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("JSONPath \"", p, "\": expected . or [ at \"",
                       p.substr(i), "\" (e.g. .metadata.name)"));
    }
  }
  return steps;
}

void Select(const YAML::Node& node, const std::vector<Step>& steps, size_t k,
            std::vector<YAML::Node>* out) {
  if (!node.IsDefined() || node.IsNull()) {
    if (k == steps.size() && node.IsDefined()) out->push_back(node);
    return;
  }
  if (k == steps.size()) {
    out->push_back(node);
    return;
  }
  const Step& s = steps[k];
  if (s.all) {
    if (node.IsSequence()) {
      for (const auto& e : node) Select(e, steps, k + 1, out);
    } else if (node.IsMap()) {
      for (const auto& kv : node) Select(kv.second, steps, k + 1, out);
    }
  } else if (s.is_index) {
    if (!node.IsSequence()) return;
    int n = s.index < 0 ? static_cast<int>(node.size()) + s.index : s.index;
    if (n >= 0 && n < static_cast<int>(node.size()))
      Select(node[n], steps, k + 1, out);
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      if (kv.first.Scalar() == s.key) {
        Select(kv.second, steps, k + 1, out);
        return;
      }
    }
  }
}

// Compact JSON of a node loaded from JSON (quoted scalars stay strings).
std::string ToJson(const YAML::Node& n) {
  if (n.IsMap()) {
    std::vector<std::string> parts;
    for (const auto& kv : n)
      parts.push_back(absl::StrCat(spec::JsonQuoted(kv.first.Scalar()), ":",
                                   ToJson(kv.second)));
    return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
  }
  if (n.IsSequence()) {
    std::vector<std::string> parts;
    for (const auto& e : n) parts.push_back(ToJson(e));
    return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
  }
  if (n.IsNull()) return "null";
  return n.Tag() == "!" ? spec::JsonQuoted(n.Scalar()) : n.Scalar();
}

std::string Text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsNull()) return "";
  return ToJson(n);
}

absl::StatusOr<YAML::Node> Load(const std::string& json) {
  try {
    return YAML::Load(json);
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrCat("reading JSON: ", e.what()));
  }
}

// A template as pieces: text, a path, or range/end.
struct Piece {
  enum Kind { kText, kPath, kRange, kEnd } kind = kText;
  std::string text;
  std::vector<Step> path;
};

absl::StatusOr<std::vector<Piece>> ParseTemplate(const std::string& t) {
  std::vector<Piece> out;
  size_t i = 0;
  while (i < t.size()) {
    size_t open = t.find('{', i);
    if (open == std::string::npos) {
      out.push_back({Piece::kText, t.substr(i), {}});
      break;
    }
    if (open > i) out.push_back({Piece::kText, t.substr(i, open - i), {}});
    // The closing brace, outside a quoted literal.
    size_t j = open + 1;
    char quote = 0;
    for (; j < t.size(); ++j) {
      if (quote) {
        if (t[j] == '\\') {
          ++j;
        } else if (t[j] == quote) {
          quote = 0;
        }
      } else if (t[j] == '"' || t[j] == '\'') {
        quote = t[j];
      } else if (t[j] == '}') {
        break;
      }
    }
    if (j >= t.size())
      return absl::InvalidArgumentError(absl::StrCat(
          "JSONPath template: unclosed { at \"", t.substr(open), "\""));
    absl::string_view in = absl::StripAsciiWhitespace(
        absl::string_view(t).substr(open + 1, j - open - 1));
    if (in.size() >= 2 && (in[0] == '"' || in[0] == '\'') &&
        in.back() == in[0]) {
      std::string lit;
      for (size_t k = 1; k + 1 < in.size(); ++k) {
        if (in[k] == '\\' && k + 2 < in.size()) {
          char c = in[++k];
          lit += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        } else {
          lit += in[k];
        }
      }
      out.push_back({Piece::kText, lit, {}});
    } else if (in == "end") {
      out.push_back({Piece::kEnd, "", {}});
    } else if (absl::ConsumePrefix(&in, "range ")) {
      auto p = ParsePath(in);
      if (!p.ok()) return p.status();
      out.push_back({Piece::kRange, "", *p});
    } else {
      auto p = ParsePath(in);
      if (!p.ok()) return p.status();
      out.push_back({Piece::kPath, "", *p});
    }
    i = j + 1;
  }
  return out;
}

// Evaluates pieces [from, to) against `root`; returns the index after an
// {end} when `in_range`.
absl::StatusOr<size_t> Eval(const std::vector<Piece>& pieces, size_t from,
                            const YAML::Node& root, bool in_range,
                            std::string* out) {
  size_t i = from;
  while (i < pieces.size()) {
    const Piece& p = pieces[i];
    switch (p.kind) {
      case Piece::kText:
        *out += p.text;
        ++i;
        break;
      case Piece::kPath: {
        std::vector<YAML::Node> got;
        Select(root, p.path, 0, &got);
        std::vector<std::string> texts;
        for (const auto& n : got) texts.push_back(Text(n));
        *out += absl::StrJoin(texts, " ");
        ++i;
        break;
      }
      case Piece::kRange: {
        std::vector<YAML::Node> got;
        Select(root, p.path, 0, &got);
        std::vector<YAML::Node> items;
        for (const auto& n : got) {
          if (n.IsSequence() && (p.path.empty() || !p.path.back().all)) {
            for (const auto& e : n) items.push_back(e);
          } else {
            items.push_back(n);
          }
        }
        // The body is evaluated once per item; with none, only skipped.
        std::string scratch;
        auto end = Eval(pieces, i + 1, YAML::Node(), true, &scratch);
        if (!end.ok()) return end.status();
        for (const auto& item : items) {
          auto e = Eval(pieces, i + 1, item, true, out);
          if (!e.ok()) return e.status();
        }
        i = *end;
        break;
      }
      case Piece::kEnd:
        if (!in_range)
          return absl::InvalidArgumentError(
              "JSONPath template: {end} without {range ...}");
        return i + 1;
    }
  }
  if (in_range)
    return absl::InvalidArgumentError(
        "JSONPath template: {range ...} without {end}");
  return i;
}

}  // namespace

absl::StatusOr<std::string> JsonPathTemplate(const std::string& json,
                                             const std::string& tmpl) {
  auto pieces = ParseTemplate(tmpl);
  if (!pieces.ok()) return pieces.status();
  auto root = Load(json);
  if (!root.ok()) return root.status();
  std::string out;
  auto end = Eval(*pieces, 0, *root, false, &out);
  if (!end.ok()) return end.status();
  return out;
}

absl::StatusOr<std::vector<std::string>> JsonPathValues(
    const std::string& json, const std::string& path) {
  auto steps = ParsePath(path);
  if (!steps.ok()) return steps.status();
  auto root = Load(json);
  if (!root.ok()) return root.status();
  std::vector<YAML::Node> got;
  Select(*root, *steps, 0, &got);
  std::vector<std::string> out;
  for (const auto& n : got) out.push_back(Text(n));
  return out;
}

absl::StatusOr<std::string> CustomColumns(const std::vector<std::string>& items,
                                          const std::string& spec) {
  std::vector<std::string> headers;
  std::vector<std::string> paths;
  for (absl::string_view col : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    size_t colon = col.find(':');
    if (colon == absl::string_view::npos || colon == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("custom-columns: \"", col,
                       "\" is not HEADER:JSONPATH (e.g. NAME:.metadata.name)"));
    }
    headers.emplace_back(col.substr(0, colon));
    paths.emplace_back(col.substr(colon + 1));
    if (auto p = ParsePath(paths.back()); !p.ok()) return p.status();
  }
  if (headers.empty())
    return absl::InvalidArgumentError(
        "custom-columns: give HEADER:JSONPATH[,HEADER:JSONPATH...]");
  Table t(headers);
  for (const auto& item : items) {
    std::vector<std::string> row;
    for (const auto& p : paths) {
      auto v = JsonPathValues(item, p);
      if (!v.ok()) return v.status();
      row.push_back(v->empty() ? "<none>" : absl::StrJoin(*v, ","));
    }
    t.AddRow(std::move(row));
  }
  return t.Render();
}

absl::StatusOr<std::vector<size_t>> SortOrder(
    const std::vector<std::string>& items, const std::string& path) {
  std::vector<std::vector<std::string>> keys;
  for (const auto& item : items) {
    auto v = JsonPathValues(item, path);
    if (!v.ok()) return v.status();
    keys.push_back(std::move(*v));
  }
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto less = [&](size_t a, size_t b) {
    const auto& x = keys[a];
    const auto& y = keys[b];
    if (x.empty() || y.empty()) return x.empty() && !y.empty();
    double dx = 0, dy = 0;
    if (absl::SimpleAtod(x[0], &dx) && absl::SimpleAtod(y[0], &dy))
      return dx < dy;
    return x[0] < y[0];
  };
  std::stable_sort(order.begin(), order.end(), less);
  return order;
}

}  // namespace tidal::cli
