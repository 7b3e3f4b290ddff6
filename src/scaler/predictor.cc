#include "scaler/predictor.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tidal::scaler {

namespace {
int64_t FloorDiv(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
// 1970-01-01 was a Thursday; hours of the week start on Monday 00:00 UTC.
int64_t HourOfWeek(int64_t hour) { return ((hour + 72) % 168 + 168) % 168; }
}  // namespace

DailyPredictor::DailyPredictor()
    : daily_(kDaySlots, -1.f), weekly_(kWeekHours, -1.f) {}

void DailyPredictor::CloseSlot() {
  if (cur_slot_ < 0) return;
  const float avg = static_cast<float>(cur_sum_ / kSlotSeconds);
  float& d = daily_[cur_slot_ % kDaySlots];
  d = d < 0 ? avg : static_cast<float>(kAlpha * avg + (1 - kAlpha) * d);
  cur_hour_peak_ = std::max(cur_hour_peak_, avg);
  ++slots_completed_;
  cur_sum_ = 0;
}

void DailyPredictor::Add(absl::Time second, double value) {
  const int64_t sec = absl::ToUnixSeconds(second);
  const int64_t slot = FloorDiv(sec, kSlotSeconds);
  if (cur_slot_ < 0) {
    cur_slot_ = slot;
    cur_hour_ = FloorDiv(sec, 3600);
  }
  if (slot < cur_slot_) return;
  while (slot > cur_slot_) {
    CloseSlot();
    ++cur_slot_;
    const int64_t hour = FloorDiv(cur_slot_ * kSlotSeconds, 3600);
    if (hour != cur_hour_) {
      weekly_[HourOfWeek(cur_hour_)] = cur_hour_peak_;
      cur_hour_peak_ = 0;
      cur_hour_ = hour;
    }
    // A long gap: the skipped slots were idle; one day of them is enough.
    if (slot - cur_slot_ > kDaySlots) {
      for (int i = 0; i < kDaySlots; ++i) {
        float& d = daily_[i];
        d = d < 0 ? 0.f : static_cast<float>((1 - kAlpha) * d);
      }
      std::fill(weekly_.begin(), weekly_.end(), 0.f);
      slots_completed_ += slot - cur_slot_;
      cur_slot_ = slot;
      cur_hour_ = FloorDiv(slot * kSlotSeconds, 3600);
    }
  }
  cur_sum_ += value;
}

double DailyPredictor::Predict(absl::Time t) const {
  const int64_t sec = absl::ToUnixSeconds(t);
  const int64_t slot = FloorDiv(sec, kSlotSeconds) % kDaySlots;
  const float d = daily_[slot];
  if (d < 0) return 0;
  const float w = weekly_[HourOfWeek(FloorDiv(sec, 3600))];
  if (w < 0 || days_observed() < 7) return d;
  // A week is known: scale the daily shape of this hour to the level the
  // same hour of the week had a week ago. Quiet weekends stay quiet (w = 0),
  // and a rise seen only on one day of the week (Monday mornings), which the
  // daily average has smoothed away, is predicted at its weekly level.
  const int64_t first = slot / (3600 / kSlotSeconds) * (3600 / kSlotSeconds);
  float hour_peak = 0;
  for (int64_t i = first; i < first + 3600 / kSlotSeconds; ++i)
    hour_peak = std::max(hour_peak, daily_[i]);
  if (hour_peak <= 0) return w;
  return d * (w / hour_peak);
}

double DailyPredictor::PredictMax(absl::Time from, absl::Duration span) const {
  double best = 0;
  const absl::Time end = from + span;
  for (absl::Time t = from;; t += absl::Seconds(kSlotSeconds)) {
    if (t > end) t = end;
    best = std::max(best, Predict(t));
    if (t == end) break;
  }
  return best;
}

std::string DailyPredictor::Serialize() const {
  // "p1;<slots_completed>;<daily, comma separated>;<weekly>"; -1 as "".
  std::string out = absl::StrCat("p1;", slots_completed_, ";");
  char buf[32];
  auto append = [&](const std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out.push_back(',');
      if (v[i] >= 0) {
        std::snprintf(buf, sizeof(buf), "%.4g", v[i]);
        out += buf;
      }
    }
  };
  append(daily_);
  out.push_back(';');
  append(weekly_);
  return out;
}

absl::Status DailyPredictor::Parse(std::string_view text_in) {
  absl::string_view text(text_in.data(), text_in.size());
  std::vector<absl::string_view> parts = absl::StrSplit(text, ';');
  if (parts.size() != 4 || parts[0] != "p1") {
    return absl::InvalidArgumentError("predictor: not a p1 state");
  }
  DailyPredictor p;
  if (!absl::SimpleAtoi(parts[1], &p.slots_completed_)) {
    return absl::InvalidArgumentError("predictor: bad slot count");
  }
  auto parse = [](absl::string_view s, std::vector<float>* v) {
    std::vector<absl::string_view> f = absl::StrSplit(s, ',');
    if (f.size() != v->size()) return false;
    for (size_t i = 0; i < f.size(); ++i) {
      if (f[i].empty()) {
        (*v)[i] = -1;
      } else if (!absl::SimpleAtof(f[i], &(*v)[i])) {
        return false;
      }
    }
    return true;
  };
  if (!parse(parts[2], &p.daily_) || !parse(parts[3], &p.weekly_)) {
    return absl::InvalidArgumentError("predictor: bad slot values");
  }
  *this = std::move(p);
  return absl::OkStatus();
}

}  // namespace tidal::scaler
