// ScanDocument (spec_internal.h): the YAML of one document measured by
// libyaml's event parser before yaml-cpp's YAML::Load builds anything.
//
// Why libyaml for the scan: yaml-cpp's scanner reads a flow collection's
// tokens ahead until the collection closes (a nested collection might be a
// key), so `[[x, x, ...]]` of 1.8 MB took it 370 ms and 165 MB, and 1,000,000
// nested brackets 350 ms and 274 MB, before its first event reached any
// bound. libyaml drops a pending key after 1,024 characters, so it reads in
// bounded memory and stops at the bound passed: the same two documents take
// it 2.5 ms and 1 ms in 3 MB.

#include <yaml.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/spec_internal.h"

namespace tidal::spec::internal {
namespace {

// A document this large with a syntax error libyaml finds is refused with
// libyaml's message; a smaller one is left to YAML::Load, whose messages the
// rest of the spec errors use (a small document costs yaml-cpp little
// whatever it holds, and a large one it might read ahead whole).
constexpr size_t kYamlCppErrorsUpTo = 64 * 1024;

// Counts nodes as Load would make them, an alias as the nodes of its anchor
// (expanded), and the nesting depth; sets `problem` past a bound.
class Measure {
 public:
  // Takes one event; false once a bound is passed (problem() says which).
  bool Take(const yaml_event_t& e) {
    const yaml_mark_t& mark = e.start_mark;
    switch (e.type) {
      case YAML_SCALAR_EVENT:
        return Leaf(mark, Anchor(e.data.scalar.anchor));
      case YAML_ALIAS_EVENT:
        return Alias(mark, Anchor(e.data.alias.anchor));
      case YAML_SEQUENCE_START_EVENT:
        return Open(mark, Anchor(e.data.sequence_start.anchor));
      case YAML_MAPPING_START_EVENT:
        return Open(mark, Anchor(e.data.mapping_start.anchor));
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        Close();
        return true;
      default:
        return true;
    }
  }
  const ScanProblem& problem() const { return problem_; }

 private:
  struct Frame {
    std::string anchor;
    uint64_t start;  // nodes_ before the collection
    int height = 1;  // collections nested in it, itself included
  };

  static std::string Anchor(const yaml_char_t* a) {
    return a ? std::string(reinterpret_cast<const char*>(a)) : std::string();
  }
  bool Fail(const yaml_mark_t& mark, std::string msg) {
    problem_ = {static_cast<int>(mark.line) + 1,
                static_cast<int>(mark.column) + 1, std::move(msg)};
    return false;
  }
  bool Add(const yaml_mark_t& mark, uint64_t n) {
    nodes_ += n;
    if (nodes_ > static_cast<uint64_t>(limits::kMaxYamlNodes)) {
      return Fail(mark,
                  absl::StrCat("more than ", limits::kMaxYamlNodes,
                               " YAML nodes in one document (keys, values and "
                               "list items; an alias counts as what it stands "
                               "for)"));
    }
    return true;
  }
  bool Leaf(const yaml_mark_t& mark, const std::string& anchor) {
    if (!Add(mark, 1)) return false;
    if (!anchor.empty()) {
      sizes_[anchor] = 1;
      heights_[anchor] = 0;
    }
    return true;
  }
  bool Alias(const yaml_mark_t& mark, const std::string& anchor) {
    if (++aliases_ > limits::kMaxYamlAliases) {
      return Fail(mark, absl::StrCat("more than ", limits::kMaxYamlAliases,
                                     " aliases (*name) in one document"));
    }
    if (std::any_of(stack_.begin(), stack_.end(),
                    [&](const Frame& f) { return f.anchor == anchor; })) {
      return Fail(mark, "an alias inside the node it names (a cycle)");
    }
    auto it = sizes_.find(anchor);
    if (!Add(mark, it == sizes_.end() ? 1 : it->second)) return false;
    // The aliased node nests as deep here as where it was written.
    auto h = heights_.find(anchor);
    const int height = h == heights_.end() ? 0 : h->second;
    if (static_cast<int>(stack_.size()) + height > limits::kMaxYamlDepth) {
      return Fail(mark,
                  absl::StrCat("nested deeper than ", limits::kMaxYamlDepth,
                               " levels (through an alias)"));
    }
    Child(height);
    return true;
  }
  // A child of `height` collections in the innermost open collection.
  void Child(int height) {
    if (!stack_.empty()) {
      stack_.back().height = std::max(stack_.back().height, height + 1);
    }
  }
  bool Open(const yaml_mark_t& mark, const std::string& anchor) {
    if (static_cast<int>(stack_.size()) >= limits::kMaxYamlDepth) {
      return Fail(mark, absl::StrCat("nested deeper than ",
                                     limits::kMaxYamlDepth, " levels"));
    }
    if (!Add(mark, 1)) return false;
    stack_.push_back({anchor, nodes_ - 1});
    return true;
  }
  void Close() {
    if (stack_.empty()) return;
    Frame f = stack_.back();
    stack_.pop_back();
    if (!f.anchor.empty()) {
      sizes_[f.anchor] = nodes_ - f.start;
      heights_[f.anchor] = f.height;
    }
    Child(f.height);
  }

  uint64_t nodes_ = 0;
  int aliases_ = 0;
  std::vector<Frame> stack_;
  // The nodes each anchor stands for (expanded).
  std::unordered_map<std::string, uint64_t> sizes_;
  // The collections each anchor's node nests (0: a scalar).
  std::unordered_map<std::string, int> heights_;
  ScanProblem problem_;
};

}  // namespace

std::optional<ScanProblem> ScanDocument(const std::string& text) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    return ScanProblem{0, 0, "out of memory reading the YAML"};
  }
  yaml_parser_set_input_string(
      &parser, reinterpret_cast<const unsigned char*>(text.data()),
      text.size());
  Measure measure;
  std::optional<ScanProblem> out;
  while (true) {
    yaml_event_t e;
    if (!yaml_parser_parse(&parser, &e)) {
      // A syntax error: YAML::Load reports it with its position, unless the
      // document is large (see kYamlCppErrorsUpTo).
      if (text.size() > kYamlCppErrorsUpTo) {
        const yaml_mark_t& m = parser.problem_mark;
        out = ScanProblem{
            static_cast<int>(m.line) + 1, static_cast<int>(m.column) + 1,
            absl::StrCat("not valid YAML: ",
                         parser.problem ? parser.problem : "a syntax error",
                         parser.context ? absl::StrCat(" ", parser.context)
                                        : std::string())};
      }
      break;
    }
    const bool ok = measure.Take(e);
    const bool end = e.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&e);
    if (!ok) {
      out = measure.problem();
      break;
    }
    if (end) break;
  }
  yaml_parser_delete(&parser);
  return out;
}

}  // namespace tidal::spec::internal
