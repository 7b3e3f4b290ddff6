#pragma once

// DailyPredictor: learns an app's daily and weekly load pattern from its own
// one-second samples, in a small bounded state (288 five-minute slots of the
// day, 168 hours of the week, in UTC) that serializes to a short string for
// the store. Predict() answers the expected load (concurrency, or rps) at a
// future time. Not thread-safe: owned by one AppScaler.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tidal::scaler {

class DailyPredictor {
 public:
  static constexpr int kSlotSeconds = 300;
  static constexpr int kDaySlots = 86400 / kSlotSeconds;  // 288
  static constexpr int kWeekHours = 168;
  static constexpr double kAlpha = 0.5;  // weight of the newest day

  DailyPredictor();

  // One second of load (must be in time order; gaps count as zero load).
  void Add(absl::Time second, double value);

  // The expected load at `t`: the daily slot's average (an exponentially
  // weighted mean over days); once a week has been observed, that daily
  // shape scaled so the hour's peak slot matches the same hour of the week a
  // week ago (quiet weekends stay quiet; a Monday-only peak is predicted on
  // Mondays). 0 when the slot has never been seen.
  double Predict(absl::Time t) const;
  // The maximum prediction over [from, from + span].
  double PredictMax(absl::Time from, absl::Duration span) const;

  int64_t days_observed() const { return slots_completed_ / kDaySlots; }

  std::string Serialize() const;
  absl::Status Parse(std::string_view text);

 private:
  void CloseSlot();

  std::vector<float> daily_;  // -1: never seen
  std::vector<float>
      weekly_;             // peak slot average per hour of week, -1: never seen
  int64_t cur_slot_ = -1;  // absolute slot number (unix / 300)
  double cur_sum_ = 0;
  float cur_hour_peak_ = 0;
  int64_t cur_hour_ = -1;
  int64_t slots_completed_ = 0;
};

}  // namespace tidal::scaler
