#include "api/client_pacer.h"

#include <algorithm>

namespace tidal {

double ClientPacer::Refilled(const Bucket& b, absl::Time now) const {
  const absl::Duration since = std::max(now - b.at, absl::ZeroDuration());
  return b.level + static_cast<double>(options_.bytes_per_second) *
                       absl::ToDoubleSeconds(since);
}

absl::Duration ClientPacer::Charge(const std::string& client, int64_t bytes,
                                   absl::Time now) {
  if (options_.bytes_per_second <= 0) return absl::ZeroDuration();
  const double rate = static_cast<double>(options_.bytes_per_second);
  const double burst = static_cast<double>(options_.burst);
  absl::MutexLock lock(&mu_);
  // Buckets that have filled up again are forgotten (every 256 charges), so
  // that the map holds the clients of the last few seconds only.
  if (++charges_ % 256 == 0) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      if (Refilled(it->second, now) >= burst) {
        buckets_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  auto [it, fresh] = buckets_.try_emplace(client);
  Bucket& b = it->second;
  b.level = fresh ? burst : std::min(burst, Refilled(b, now));
  b.at = now;
  b.level -= static_cast<double>(bytes);
  if (b.level >= 0) return absl::ZeroDuration();
  return std::min(options_.max_wait, absl::Seconds(-b.level / rate));
}

ClientPacer::Waiter::Waiter(ClientPacer* pacer, absl::Duration wait)
    : pacer_(pacer) {
  if (wait <= absl::ZeroDuration()) return;
  absl::MutexLock lock(&pacer_->mu_);
  if (pacer_->waiting_ >= pacer_->options_.max_waiting) {
    ++pacer_->not_held_;
    return;
  }
  ++pacer_->waiting_;
  ++pacer_->paced_total_;
  pacer_->paced_seconds_ += absl::ToDoubleSeconds(wait);
  admitted_ = true;
}

ClientPacer::Waiter::~Waiter() {
  if (!admitted_) return;
  absl::MutexLock lock(&pacer_->mu_);
  --pacer_->waiting_;
}

int64_t ClientPacer::paced_total() const {
  absl::MutexLock lock(&mu_);
  return paced_total_;
}

double ClientPacer::paced_seconds_total() const {
  absl::MutexLock lock(&mu_);
  return paced_seconds_;
}

int64_t ClientPacer::not_held_total() const {
  absl::MutexLock lock(&mu_);
  return not_held_;
}

size_t ClientPacer::clients() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

}  // namespace tidal
