#pragma once

// IdleHistogram: the "hybrid histogram" keep-alive policy of Shahrad et al.,
// "Serverless in the Wild" (ATC'20). It records an app's idle times (from the
// end of its last request to the next arrival) in 1-minute bins over 4 hours,
// and derives a pre-warm delay (5th percentile, minus a 10% margin) and a
// keep-alive window (99th percentile plus 10%, minus the pre-warm delay). Not
// thread-safe: owned by one AppScaler. Serializable.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace tidal::scaler {

class IdleHistogram {
 public:
  static constexpr int kBins = 240;  // 1-minute bins: 4 hours
  static constexpr int kBinSeconds = 60;
  static constexpr uint32_t kMaxTotal = 1 << 16;  // halve all counts beyond

  struct Policy {
    bool representative = false;  // enough in-range samples to trust
    int64_t prewarm_s = 0;        // from the end of activity until warming
    int64_t keep_alive_s = 0;     // how long to stay warm after prewarm_s
  };

  IdleHistogram() : bins_(kBins, 0) {}

  void Add(int64_t idle_seconds);
  const Policy& policy() const { return policy_; }

  // The hybrid-histogram policy as the paper states it (the `hybrid`
  // baseline): with more than half of the idle times beyond the 4 h range, a
  // time-series forecast (here: the last out-of-range idle time, which is
  // what a forecast learns from a periodic app) pre-warms at 85% of it and
  // keeps warm for 30% of it; else, when the bin counts' coefficient of
  // variation is at least 2 (a histogram with a pattern), the 5th/99th
  // percentiles with 10% margins; else (no idle time yet, or no pattern) a
  // fixed keep-alive of the histogram's range (4 h).
  Policy PaperPolicy() const;
  uint32_t total() const { return total_; }
  uint32_t out_of_bounds() const { return oob_; }

  std::string Serialize() const;
  absl::Status Parse(std::string_view text);

  // Samples needed before the histogram is trusted.
  static constexpr uint32_t kMinSamples = 4;

 private:
  void Recompute();
  // The bins of the 5th and 99th percentiles of the in-range idle times.
  void HeadAndTail(int* head, int* tail) const;
  std::vector<uint32_t> bins_;
  uint32_t total_ = 0;  // in range
  uint32_t oob_ = 0;
  int64_t last_oob_s_ = 0;  // the latest idle time beyond the range
  Policy policy_;
};

}  // namespace tidal::scaler
