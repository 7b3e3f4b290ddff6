#include "deployer/steps.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"

namespace tidal::deployer {
namespace {

// New instances after `k` of `n` batches spread over `count`.
int32_t Cumulative(int32_t k, int32_t n, int32_t count) {
  return k * (count / n) + std::min(k, count % n);
}

}  // namespace

int32_t IntOrPercent(const std::string& text, int32_t total, bool round_up) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  if (absl::ConsumeSuffix(&s, "%")) {
    double p = 0;
    if (!absl::SimpleAtod(s, &p) || p < 0) return -1;
    double v = total * p / 100.0;
    return static_cast<int32_t>(round_up ? std::ceil(v - 1e-9)
                                         : std::floor(v + 1e-9));
  }
  int32_t v = 0;
  if (!absl::SimpleAtoi(s, &v) || v < 0) return -1;
  return v;
}

Capacity ResolveCapacity(const tidal::v1::RolloutSpec& spec, int32_t total) {
  Capacity c;
  c.max_surge = IntOrPercent(
      spec.max_surge().empty() ? "25%" : spec.max_surge(), total, true);
  c.max_unavailable = IntOrPercent(
      spec.max_unavailable().empty() ? "25%" : spec.max_unavailable(), total,
      false);
  if (c.max_surge < 0) c.max_surge = 0;
  if (c.max_unavailable < 0) c.max_unavailable = 0;
  if (c.max_surge == 0 && c.max_unavailable == 0) c.max_unavailable = 1;
  return c;
}

std::vector<RolloutStep> BuildSteps(const tidal::v1::RolloutSpec& spec,
                                    int32_t total) {
  total = std::max(0, total);
  std::vector<RolloutStep> steps;
  int32_t done = 0;
  if (spec.strategy() == "canary") {
    for (const auto& cs : spec.steps()) {
      RolloutStep s;
      s.kind = "canary";
      if (cs.has_weight()) {
        s.weight = std::clamp(cs.weight(), 0, 100);
        s.new_target =
            static_cast<int32_t>(std::ceil(total * s.weight / 100.0 - 1e-9));
        if (total > 0) s.new_target = std::max(1, s.new_target);
      } else {
        s.new_target = std::min(cs.replicas(), total);
      }
      s.new_target = std::max(s.new_target, done);
      s.pause = absl::Milliseconds(cs.pause_ms());
      s.manual = cs.pause_manual();
      done = s.new_target;
      steps.push_back(s);
    }
  }
  const int32_t rest = total - done;
  int32_t n = 1;
  if (spec.batches() > 0) {
    n = spec.batches();
  } else if (spec.batch_size() > 0) {
    n = (rest + spec.batch_size() - 1) / spec.batch_size();
  }
  n = std::max(1, std::min(n, std::max(rest, 1)));
  // A canary whose last step already covers everything still ends with a
  // full step (weight back to "by instances").
  for (int32_t k = 1; k <= n; ++k) {
    RolloutStep s;
    s.kind = "batch";
    s.new_target = done + Cumulative(k, n, rest);
    s.pause = absl::Milliseconds(spec.batch_interval_ms());
    s.manual = spec.pause_manual();
    steps.push_back(s);
  }
  steps.back().pause = absl::ZeroDuration();
  steps.back().manual = false;
  return steps;
}

}  // namespace tidal::deployer
