// Fuzz target: label selectors (`-l`). Any input parses or is refused with a
// message; an accepted selector's canonical form parses to the same
// canonical form and matches the same label sets.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "api/label_selector.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tidal::LabelSelector;
  using tidal::fuzz::Check;
  if (size > 4096) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto s = LabelSelector::Parse(text);
  if (!s.ok()) {
    Check(!s.status().message().empty(), "a refusal without a message");
    return 0;
  }
  const std::string canonical = s->ToString();
  auto again = LabelSelector::Parse(canonical);
  Check(again.ok(), "canonical form does not parse: " + canonical);
  Check(again->ToString() == canonical,
        "canonical form is not stable: " + canonical);
  // Label sets built from the selector's own keys and values.
  std::map<std::string, std::string> none, some, other;
  for (const auto& r : s->requirements()) {
    some[r.key] = r.values.empty() ? "" : r.values.front();
    other[r.key] = "zz-not-a-value";
  }
  for (const auto* labels : {&none, &some, &other}) {
    Check(s->Matches(*labels) == again->Matches(*labels),
          "canonical form matches differently: " + canonical);
  }
  return 0;
}
