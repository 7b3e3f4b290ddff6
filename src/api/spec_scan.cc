// ScanDocument (spec_internal.h): the YAML of one document measured by
// yaml-cpp's event parser before YAML::Load builds anything.

// GCC 12 warns about yaml-cpp's own iterator proxies (a false positive).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/spec_internal.h"

namespace tidal::spec::internal {
namespace {

// Thrown by the handler to stop the parser at the first bound passed.
struct OverLimit {
  ScanProblem problem;
};

// Counts nodes as Load would make them, an alias as the nodes of its anchor
// (expanded), and the nesting depth; throws OverLimit past a bound.
class Measure : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Leaf(mark, anchor);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&,
                YAML::anchor_t anchor, const std::string&) override {
    Leaf(mark, anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (++aliases_ > limits::kMaxYamlAliases) {
      Fail(mark, absl::StrCat("more than ", limits::kMaxYamlAliases,
                              " aliases (*name) in one document"));
    }
    if (std::any_of(stack_.begin(), stack_.end(),
                    [&](const Frame& f) { return f.anchor == anchor; })) {
      Fail(mark, "an alias inside the node it names (a cycle)");
    }
    auto it = sizes_.find(anchor);
    Add(mark, it == sizes_.end() ? 1 : it->second);
    // The aliased node nests as deep here as where it was written.
    auto h = heights_.find(anchor);
    const int height = h == heights_.end() ? 0 : h->second;
    if (static_cast<int>(stack_.size()) + height > limits::kMaxYamlDepth) {
      Fail(mark, absl::StrCat("nested deeper than ", limits::kMaxYamlDepth,
                              " levels (through an alias)"));
    }
    Child(height);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&,
                       YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&,
                  YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Frame {
    YAML::anchor_t anchor;
    uint64_t start;  // nodes_ before the collection
    int height = 1;  // collections nested in it, itself included
  };

  [[noreturn]] static void Fail(const YAML::Mark& mark, std::string msg) {
    throw OverLimit{{mark.is_null() ? 0 : mark.line + 1,
                     mark.is_null() ? 0 : mark.column + 1, std::move(msg)}};
  }
  void Add(const YAML::Mark& mark, uint64_t n) {
    nodes_ += n;
    if (nodes_ > static_cast<uint64_t>(limits::kMaxYamlNodes)) {
      Fail(mark,
           absl::StrCat("more than ", limits::kMaxYamlNodes,
                        " YAML nodes in one document (keys, values and list "
                        "items; an alias counts as what it stands for)"));
    }
  }
  void Leaf(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Add(mark, 1);
    if (anchor != YAML::NullAnchor) {
      sizes_[anchor] = 1;
      heights_[anchor] = 0;
    }
  }
  // A child of `height` collections in the innermost open collection.
  void Child(int height) {
    if (!stack_.empty()) {
      stack_.back().height = std::max(stack_.back().height, height + 1);
    }
  }
  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (static_cast<int>(stack_.size()) >= limits::kMaxYamlDepth) {
      Fail(mark, absl::StrCat("nested deeper than ", limits::kMaxYamlDepth,
                              " levels"));
    }
    Add(mark, 1);
    stack_.push_back({anchor, nodes_ - 1});
  }
  void Close() {
    if (stack_.empty()) return;
    Frame f = stack_.back();
    stack_.pop_back();
    if (f.anchor != YAML::NullAnchor) {
      sizes_[f.anchor] = nodes_ - f.start;
      heights_[f.anchor] = f.height;
    }
    Child(f.height);
  }

  uint64_t nodes_ = 0;
  int aliases_ = 0;
  std::vector<Frame> stack_;
  // The nodes each anchor stands for (expanded).
  std::unordered_map<YAML::anchor_t, uint64_t> sizes_;
  // The collections each anchor's node nests (0: a scalar).
  std::unordered_map<YAML::anchor_t, int> heights_;
};

// Flow collections ([ and {) open this deep are refused before yaml-cpp
// reads the document: its scanner reads a flow collection's tokens ahead
// until the collection closes, so 100,000 nested brackets (200 kB) took 27 ms
// and 300 MB to reach the first event the depth bound could stop. The count
// is coarse (brackets outside quotes and comments, also those in plain and
// block scalars), so its bound is far above kMaxYamlDepth, which the event
// scan then applies exactly.
constexpr int kMaxOpenBrackets = 1000;

std::optional<ScanProblem> FlowDepthProblem(const std::string& text) {
  int depth = 0, line = 1, column = 0;
  char quote = 0;  // inside a '...' or "..." scalar
  bool comment = false;
  char prev = '\n';
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    ++column;
    if (ch == '\n') {
      ++line;
      column = 0;
      comment = false;
    } else if (comment) {
    } else if (quote == '"') {
      if (ch == '\\') {
        ++i;  // an escaped character (never a newline that matters here)
        ++column;
      } else if (ch == '"') {
        quote = 0;
      }
    } else if (quote == '\'') {
      if (ch == '\'') quote = 0;  // '' (an escaped quote) reopens at once
    } else if (ch == '#' && (prev == ' ' || prev == '\t' || prev == '\n')) {
      comment = true;
    } else if (ch == '"' || ch == '\'') {
      quote = ch;
    } else if (ch == '[' || ch == '{') {
      if (++depth > kMaxOpenBrackets) {
        return ScanProblem{line, column,
                           absl::StrCat("more than ", kMaxOpenBrackets,
                                        " flow collections ([ or {) open at "
                                        "once (nested deeper than ",
                                        limits::kMaxYamlDepth, " levels)")};
      }
    } else if ((ch == ']' || ch == '}') && depth > 0) {
      --depth;
    }
    prev = ch;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ScanProblem> ScanDocument(const std::string& text) {
  if (auto p = FlowDepthProblem(text)) return p;
  std::istringstream in(text);
  Measure measure;
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(measure)) {
    }
  } catch (const OverLimit& e) {
    return e.problem;
  } catch (const YAML::Exception&) {
    // A syntax error: YAML::Load reports it with its position.
  }
  return std::nullopt;
}

}  // namespace tidal::spec::internal
