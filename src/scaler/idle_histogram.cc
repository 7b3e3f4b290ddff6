#include "scaler/idle_histogram.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tidal::scaler {

void IdleHistogram::Add(int64_t idle_seconds) {
  if (idle_seconds < 0) return;
  int64_t bin = idle_seconds / kBinSeconds;
  if (bin >= kBins) {
    ++oob_;
    last_oob_s_ = idle_seconds;
  } else {
    ++bins_[bin];
    ++total_;
  }
  if (total_ + oob_ > kMaxTotal) {
    total_ = 0;
    for (uint32_t& b : bins_) {
      b /= 2;
      total_ += b;
    }
    oob_ /= 2;
  }
  Recompute();
}

void IdleHistogram::HeadAndTail(int* head_out, int* tail_out) const {
  const double head_rank = 0.05 * total_, tail_rank = 0.99 * total_;
  int head = -1, tail = kBins - 1;
  uint64_t cum = 0;
  for (int i = 0; i < kBins; ++i) {
    cum += bins_[i];
    if (head < 0 && cum > head_rank) head = i;
    if (cum >= tail_rank && bins_[i] > 0) {
      tail = i;
      break;
    }
  }
  *head_out = head < 0 ? 0 : head;
  *tail_out = tail;
}

void IdleHistogram::Recompute() {
  policy_ = Policy{};
  if (total_ < kMinSamples || oob_ * 2 > total_) return;
  // 5th and 99th percentiles over the in-range samples.
  int head = 0, tail = 0;
  HeadAndTail(&head, &tail);
  policy_.representative = true;
  // Head: the start of its bin, minus 10%; tail: the end of its bin, plus 10%.
  policy_.prewarm_s =
      static_cast<int64_t>(std::floor(head * kBinSeconds * 0.9));
  int64_t tail_s =
      static_cast<int64_t>(std::ceil((tail + 1) * kBinSeconds * 1.1));
  policy_.keep_alive_s =
      std::max<int64_t>(kBinSeconds, tail_s - policy_.prewarm_s);
}

IdleHistogram::Policy IdleHistogram::PaperPolicy() const {
  Policy p;
  p.representative = true;
  if (oob_ * 2 > total_ + oob_ && last_oob_s_ > 0) {
    p.prewarm_s = static_cast<int64_t>(0.85 * last_oob_s_);
    p.keep_alive_s = static_cast<int64_t>(std::ceil(0.30 * last_oob_s_));
    return p;
  }
  double cv = 0;
  if (total_ > 0) {
    const double mean = double(total_) / kBins;
    double var = 0;
    for (uint32_t b : bins_) var += (b - mean) * (b - mean);
    cv = std::sqrt(var / kBins) / mean;
  }
  if (cv < 2) {
    p.representative = false;
    p.prewarm_s = 0;
    p.keep_alive_s = int64_t{kBins} * kBinSeconds;
    return p;
  }
  int head = 0, tail = 0;
  HeadAndTail(&head, &tail);
  p.prewarm_s = static_cast<int64_t>(std::floor(head * kBinSeconds * 0.9));
  const int64_t tail_s =
      static_cast<int64_t>(std::ceil((tail + 1) * kBinSeconds * 1.1 - 1e-9));
  p.keep_alive_s = std::max<int64_t>(kBinSeconds, tail_s - p.prewarm_s);
  return p;
}

std::string IdleHistogram::Serialize() const {
  // Sparse: "oob;bin:count,bin:count".
  std::vector<std::string> parts;
  for (int i = 0; i < kBins; ++i) {
    if (bins_[i] != 0) parts.push_back(absl::StrCat(i, ":", bins_[i]));
  }
  return absl::StrCat(oob_, ";", absl::StrJoin(parts, ","));
}

absl::Status IdleHistogram::Parse(std::string_view text_in) {
  absl::string_view text(text_in.data(), text_in.size());
  std::vector<absl::string_view> top =
      absl::StrSplit(text, absl::MaxSplits(';', 1));
  if (top.size() != 2)
    return absl::InvalidArgumentError("idle histogram: missing ';'");
  IdleHistogram h;
  if (!absl::SimpleAtoi(top[0], &h.oob_)) {
    return absl::InvalidArgumentError(
        "idle histogram: bad out-of-bounds count");
  }
  for (absl::string_view kv : absl::StrSplit(top[1], ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(kv, ':');
    int bin = 0;
    uint32_t count = 0;
    if (!absl::SimpleAtoi(p.first, &bin) ||
        !absl::SimpleAtoi(p.second, &count) || bin < 0 || bin >= kBins) {
      return absl::InvalidArgumentError(
          absl::StrCat("idle histogram: bad bin \"", kv, "\""));
    }
    h.bins_[bin] = count;
    h.total_ += count;
  }
  h.Recompute();
  *this = std::move(h);
  return absl::OkStatus();
}

}  // namespace tidal::scaler
