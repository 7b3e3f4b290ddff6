#include "api/label_selector.h"

#include <cctype>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace tidal {
namespace {

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
         c == '.' || c == '/';
}

// A small cursor over the selector text.
class Scanner {
 public:
  explicit Scanner(absl::string_view s) : s_(s) {}
  void SkipSpace() {
    while (pos_ < s_.size() &&
           std::isspace(static_cast<unsigned char>(s_[pos_])))
      ++pos_;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ >= s_.size();
  }
  char Peek() {
    SkipSpace();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  bool Consume(absl::string_view tok) {
    SkipSpace();
    if (s_.substr(pos_, tok.size()) == tok) {
      pos_ += tok.size();
      return true;
    }
    return false;
  }
  std::string Name() {
    SkipSpace();
    size_t start = pos_;
    while (pos_ < s_.size() && IsNameChar(s_[pos_])) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }
  // Consumes a keyword ("in", "notin") only when it is a whole word.
  bool Keyword(absl::string_view kw) {
    SkipSpace();
    if (s_.substr(pos_, kw.size()) != kw) return false;
    size_t end = pos_ + kw.size();
    if (end < s_.size() && IsNameChar(s_[end])) return false;
    pos_ = end;
    return true;
  }
  size_t pos() const { return pos_; }
  absl::Status Error(absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("invalid label selector \"",
                                                   s_, "\" at column ",
                                                   pos_ + 1, ": ", what));
  }

 private:
  absl::string_view s_;
  size_t pos_ = 0;
};

const char* OpText(LabelSelector::Op op) {
  switch (op) {
    case LabelSelector::Op::kEquals:
      return "=";
    case LabelSelector::Op::kNotEquals:
      return "!=";
    case LabelSelector::Op::kIn:
      return " in ";
    case LabelSelector::Op::kNotIn:
      return " notin ";
    default:
      return "";
  }
}

}  // namespace

absl::StatusOr<LabelSelector> LabelSelector::Parse(std::string_view text) {
  LabelSelector sel;
  Scanner sc(absl::string_view(text.data(), text.size()));
  if (sc.AtEnd()) return sel;
  while (true) {
    Requirement req;
    if (sc.Consume("!")) {
      req.key = sc.Name();
      if (req.key.empty()) return sc.Error("expected a label key after '!'");
      req.op = Op::kDoesNotExist;
    } else {
      req.key = sc.Name();
      if (req.key.empty()) return sc.Error("expected a label key");
      if (sc.Consume("==") || sc.Consume("=")) {
        req.op = Op::kEquals;
        req.values.push_back(sc.Name());
      } else if (sc.Consume("!=")) {
        req.op = Op::kNotEquals;
        req.values.push_back(sc.Name());
      } else if (bool notin = sc.Keyword("notin"); notin || sc.Keyword("in")) {
        req.op = notin ? Op::kNotIn : Op::kIn;
        if (!sc.Consume("(")) return sc.Error("expected '(' after in/notin");
        while (true) {
          std::string v = sc.Name();
          req.values.push_back(v);
          if (sc.Consume(",")) continue;
          if (sc.Consume(")")) break;
          return sc.Error("expected ',' or ')' in value list");
        }
      } else {
        req.op = Op::kExists;
      }
    }
    sel.requirements_.push_back(std::move(req));
    if (sc.AtEnd()) break;
    if (!sc.Consume(",")) return sc.Error("expected ',' between requirements");
    if (sc.AtEnd()) return sc.Error("expected a requirement after ','");
  }
  return sel;
}

bool LabelSelector::Matches(
    const std::map<std::string, std::string>& labels) const {
  for (const Requirement& r : requirements_) {
    auto it = labels.find(r.key);
    bool has = it != labels.end();
    bool ok = false;
    switch (r.op) {
      case Op::kEquals:
        ok = has && it->second == r.values[0];
        break;
      case Op::kNotEquals:
        ok = !has || it->second != r.values[0];
        break;
      case Op::kIn:
        ok = false;
        if (has) {
          for (const auto& v : r.values) ok = ok || it->second == v;
        }
        break;
      case Op::kNotIn:
        ok = true;
        if (has) {
          for (const auto& v : r.values) ok = ok && it->second != v;
        }
        break;
      case Op::kExists:
        ok = has;
        break;
      case Op::kDoesNotExist:
        ok = !has;
        break;
    }
    if (!ok) return false;
  }
  return true;
}

std::string LabelSelector::ToString() const {
  std::vector<std::string> parts;
  for (const Requirement& r : requirements_) {
    switch (r.op) {
      case Op::kExists:
        parts.push_back(r.key);
        break;
      case Op::kDoesNotExist:
        parts.push_back(absl::StrCat("!", r.key));
        break;
      case Op::kIn:
      case Op::kNotIn:
        parts.push_back(absl::StrCat(r.key, OpText(r.op), "(",
                                     absl::StrJoin(r.values, ","), ")"));
        break;
      default:
        parts.push_back(absl::StrCat(r.key, OpText(r.op), r.values[0]));
    }
  }
  return absl::StrJoin(parts, ",");
}

}  // namespace tidal
