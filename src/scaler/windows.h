#pragma once

// Metric windows with Knative's semantics (pkg/autoscaler/aggregation):
// per-second buckets averaged over a window, partial windows after a gap, and
// a max-over-time window for the scale-down delay. Times are whole seconds
// (Unix). Not thread-safe: owned by one AppScaler.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

namespace tidal::scaler {

// Knative's TimedFloat64Buckets with a 1 s granularity.
class TimedBuckets {
 public:
  explicit TimedBuckets(int window_seconds)
      : window_(std::max(1, window_seconds)), buckets_(window_, 0.0) {}

  int window() const { return window_; }
  bool empty() const { return !written_; }
  // Nothing written within the window before `now`: WindowAverage(now)
  // has no data to average. (Knative's IsEmpty is `> window`, which leaves
  // the second at exactly a window where the average reads 0 as a valid
  // value; here that second has no data either.)
  bool EmptyAt(int64_t now) const {
    return !written_ || now - last_write_ >= window_;
  }
  int64_t last_write() const { return last_write_; }

  // Adds `value` to the bucket of second `sec`. Writes older than the last one
  // are ignored (samples arrive in order).
  void Record(int64_t sec, double value) {
    // A whole window without writes starts the window over, first write
    // included (bucketing.go: `bucketTime.Sub(lastWrite) >= window`).
    if (!written_ || sec - last_write_ >= window_) {
      std::fill(buckets_.begin(), buckets_.end(), 0.0);
      total_ = 0;
      first_write_ = sec;
      last_write_ = sec;
      written_ = true;
    } else if (sec < last_write_) {
      return;
    } else if (sec > last_write_) {
      for (int64_t i = last_write_ + 1; i <= sec; ++i) {
        double& b = buckets_[Index(i)];
        total_ -= b;
        b = 0;
        // A running total drifts: values that leave the window are never
        // subtracted exactly as they were added. Re-sum once a lap (amortized
        // O(1)) so the drift never outlives one window.
        if (Index(i) == 0) Resum();
      }
      last_write_ = sec;
    }
    buckets_[Index(sec)] += value;
    total_ += value;
  }

  // Knative's ResizeWindow: a new window length keeping the latest seconds
  // (as many as both lengths hold).
  void Resize(int window_seconds) {
    const int w = std::max(1, window_seconds);
    if (w == window_) return;
    std::vector<double> next(w, 0.0);
    double total = 0;
    if (written_) {
      const int keep = std::min(w, window_);
      for (int64_t i = 0; i < keep; ++i) {
        const int64_t sec = last_write_ - i;
        const double v = buckets_[Index(sec)];
        int64_t m = sec % w;
        next[static_cast<size_t>(m < 0 ? m + w : m)] = v;
        total += v;
      }
      first_write_ = std::max(first_write_, last_write_ - keep + 1);
    }
    window_ = w;
    buckets_ = std::move(next);
    total_ = total;
  }

  // Replaces the value of the last written second (used when a partial
  // second reported by a wake-up is followed by the complete second).
  void ReplaceLast(double value) {
    double& b = buckets_[Index(last_write_)];
    total_ += value - b;
    b = value;
  }

  // Knative's WindowAverage rounds to 6 decimal digits (bucketing.go,
  // roundToNDigits): a residue such as 3.5e-13 left by the running total must
  // read as 0, or ceil(v / target) keeps an instance forever. Never -0.
  static double Round6(double v) { return std::round(v * 1e6) / 1e6 + 0.0; }
  double Last() const { return written_ ? buckets_[Index(last_write_)] : 0; }

  // The value of second `sec`: 0 when nothing was written for it (after the
  // last write, or older than the window, or before the first write).
  double At(int64_t sec) const {
    if (!written_ || sec > last_write_ || sec <= last_write_ - window_ ||
        sec < first_write_) {
      return 0;
    }
    return buckets_[Index(sec)];
  }

  // Variance / mean of the per-second values over the window up to `now`
  // (the seconds since the first write, if fewer), at least 1: 1 with fewer
  // than `min_seconds` of them or a mean of 0.
  double IndexOfDispersion(int64_t now, int min_seconds) const {
    if (!written_) return 1;
    const int64_t seconds = std::min<int64_t>(window_, now - first_write_ + 1);
    if (seconds < min_seconds) return 1;
    double sum = 0, squares = 0;
    for (int64_t sec = now - seconds + 1; sec <= now; ++sec) {
      const double v = At(sec);
      sum += v;
      squares += v * v;
    }
    const double mean = sum / seconds;
    if (mean <= 0) return 1;
    return std::max(1.0, (squares / seconds - mean * mean) / mean);
  }

  // Knative's WindowAverage at second `now`.
  double WindowAverage(int64_t now) const {
    if (!written_) return 0;
    int64_t d = now - last_write_;
    if (d <= 0) {
      double nb = std::min<double>(last_write_ - first_write_ + 1, window_);
      return Round6(total_ / nb);
    }
    if (d < window_) {
      double ret = total_;
      for (int64_t i = last_write_ + 1; i <= now; ++i)
        ret -= buckets_[Index(i)];
      double nb = std::min<double>(last_write_ - first_write_ + 1, window_ - d);
      return Round6(ret / nb);
    }
    return 0;
  }

 private:
  void Resum() {
    total_ = 0;
    for (double b : buckets_) total_ += b;
  }

  size_t Index(int64_t sec) const {
    int64_t m = sec % window_;
    return static_cast<size_t>(m < 0 ? m + window_ : m);
  }

  int window_;
  std::vector<double> buckets_;
  double total_ = 0;
  int64_t first_write_ = 0;
  int64_t last_write_ = 0;
  bool written_ = false;
};

// The maximum of values recorded within the last `window` (exclusive of the
// value exactly `window` old), as Knative's max.TimeWindow.
template <typename T, typename Time>
class MaxWindow {
 public:
  void Record(Time now, T value) {
    while (!q_.empty() && q_.back().second <= value) q_.pop_back();
    q_.emplace_back(now, value);
  }
  // Max over entries with time > now - window; `fallback` when none.
  template <typename Dur>
  T Current(Time now, Dur window, T fallback) {
    while (!q_.empty() && !(q_.front().first > now - window)) q_.pop_front();
    return q_.empty() ? fallback : q_.front().second;
  }
  void Clear() { q_.clear(); }

 private:
  std::deque<std::pair<Time, T>> q_;
};

}  // namespace tidal::scaler
