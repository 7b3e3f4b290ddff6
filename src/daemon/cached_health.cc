#include "daemon/cached_health.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tidal {

CachedHealth::CachedHealth(Options options, std::function<Result()> check)
    : options_(std::move(options)), check_(std::move(check)) {}

CachedHealth::~CachedHealth() { Stop(); }

void CachedHealth::Start() {
  if (thread_.joinable()) return;
  Result first = check_();
  {
    absl::MutexLock lock(&mu_);
    last_ = std::move(first);
    have_ = true;
  }
  thread_ = std::thread([this] { Loop(); });
}

void CachedHealth::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CachedHealth::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]()
                          ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), options_.period);
      if (stop_) return;
      running_since_ = absl::Now();
    }
    Result r = check_();
    absl::MutexLock lock(&mu_);
    last_ = std::move(r);
    have_ = true;
    running_since_ = absl::InfinitePast();
  }
}

absl::Status CachedHealth::Current() const {
  absl::MutexLock lock(&mu_);
  const absl::Duration running = running_since_ == absl::InfinitePast()
                                     ? absl::ZeroDuration()
                                     : absl::Now() - running_since_;
  if (running > options_.stale) {
    return absl::UnavailableError(absl::StrCat(
        options_.what, " has not answered for ",
        absl::FormatDuration(absl::Trunc(running, absl::Seconds(1)))));
  }
  if (!have_) {
    return absl::UnavailableError(
        absl::StrCat(options_.what, " has not been checked yet"));
  }
  return last_.status;
}

std::string CachedHealth::Detail() const {
  absl::MutexLock lock(&mu_);
  return last_.detail;
}

}  // namespace tidal
