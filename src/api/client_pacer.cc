#include "api/client_pacer.h"

#include <algorithm>

namespace tidal {

void ClientPacer::Refill(Bucket* b, absl::Time now) const {
  const double since =
      absl::ToDoubleSeconds(std::max(now - b->at, absl::ZeroDuration()));
  b->level = std::min(
      static_cast<double>(options_.burst),
      b->level + static_cast<double>(options_.bytes_per_second) * since);
  b->cpu = std::min(options_.refused_cpu_burst,
                    b->cpu + options_.refused_cpu_per_second * since);
  b->at = now;
}

bool ClientPacer::Full(const Bucket& b, absl::Time now) const {
  Bucket r = b;
  Refill(&r, now);
  return (options_.bytes_per_second <= 0 ||
          r.level >= static_cast<double>(options_.burst)) &&
         (options_.refused_cpu_per_second <= 0 ||
          r.cpu >= options_.refused_cpu_burst);
}

absl::Duration ClientPacer::Wait(const Bucket& b) const {
  double seconds = 0;
  if (options_.bytes_per_second > 0 && b.level < 0) {
    seconds = -b.level / static_cast<double>(options_.bytes_per_second);
  }
  if (options_.refused_cpu_per_second > 0 && b.cpu < 0) {
    seconds = std::max(seconds, -b.cpu / options_.refused_cpu_per_second);
  }
  return std::min(options_.max_wait, absl::Seconds(seconds));
}

void ClientPacer::Sweep(absl::Time now) {
  if (++charges_ % 256 != 0) return;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (Full(it->second, now)) {
      buckets_.erase(it++);
    } else {
      ++it;
    }
  }
}

ClientPacer::Bucket& ClientPacer::Take(const std::string& client,
                                       absl::Time now) {
  Sweep(now);
  // A client not seen lately starts with full buckets.
  auto [it, fresh] =
      buckets_.try_emplace(client, Bucket{static_cast<double>(options_.burst),
                                          options_.refused_cpu_burst, now});
  if (!fresh) Refill(&it->second, now);
  return it->second;
}

absl::Duration ClientPacer::Charge(const std::string& client, int64_t bytes,
                                   absl::Time now) {
  if (options_.bytes_per_second <= 0 && options_.refused_cpu_per_second <= 0)
    return absl::ZeroDuration();
  absl::MutexLock lock(&mu_);
  Bucket& b = Take(client, now);
  if (options_.bytes_per_second > 0) b.level -= static_cast<double>(bytes);
  return Wait(b);
}

void ClientPacer::ChargeRefusedCpu(const std::string& client,
                                   absl::Duration cpu, absl::Time now) {
  if (options_.refused_cpu_per_second <= 0) return;
  absl::MutexLock lock(&mu_);
  Take(client, now).cpu -= absl::ToDoubleSeconds(cpu);
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
