#pragma once

// The gateway's two clocks: wall time for metrics and the scaler, monotonic
// time for timeouts and deadlines.

#include <chrono>
#include <cstdint>

#include "absl/time/clock.h"

namespace tidal::gateway {

inline int64_t NowNs() { return absl::GetCurrentTimeNanos(); }

inline int64_t MonoMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace tidal::gateway
