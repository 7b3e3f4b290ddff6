#include "controller/work_queue.h"

#include <algorithm>
#include <cmath>

#include "absl/time/clock.h"

namespace tidal {

// While Get waits for a delayed key under a clock that is not the wall
// clock, it looks at that clock again this often.
constexpr absl::Duration kFakeClockPoll = absl::Milliseconds(5);

WorkQueue::WorkQueue(Options options, Clock* clock)
    : options_(options),
      clock_(clock),
      tokens_(options.retry_burst),
      last_refill_(clock->Now()),
      bucket_next_(absl::InfinitePast()) {}

void WorkQueue::AddLocked(const std::string& key) {
  if (shutdown_ || dirty_.contains(key)) return;
  dirty_.insert(key);
  if (processing_.contains(key)) return;  // Done() re-queues it
  queue_.push_back(key);
}

void WorkQueue::Add(const std::string& key) {
  absl::MutexLock lock(&mu_);
  AddLocked(key);
}

void WorkQueue::AddAfter(const std::string& key, absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  if (delay <= absl::ZeroDuration()) {
    AddLocked(key);
    return;
  }
  delayed_.push(Delayed{clock_->Now() + delay, key});
  ++delayed_gen_;
}

absl::Duration WorkQueue::AddRateLimited(const std::string& key) {
  absl::Duration delay;
  {
    absl::MutexLock lock(&mu_);
    int n = failures_[key]++;
    double factor = std::pow(2.0, std::min(n, 40));
    delay = std::min(options_.base_delay * factor, options_.max_delay);
    // Overall token bucket: each retry takes a slot 1/qps after the previous
    // one once the burst is spent.
    absl::Time now = clock_->Now();
    double refill =
        absl::ToDoubleSeconds(now - last_refill_) * options_.retry_qps;
    tokens_ = std::min<double>(options_.retry_burst, tokens_ + refill);
    last_refill_ = now;
    if (tokens_ >= 1) {
      tokens_ -= 1;
    } else {
      bucket_next_ =
          std::max(bucket_next_, now) + absl::Seconds(1.0 / options_.retry_qps);
      delay = std::max(delay, bucket_next_ - now);
    }
  }
  AddAfter(key, delay);
  return delay;
}

void WorkQueue::Forget(const std::string& key) {
  absl::MutexLock lock(&mu_);
  failures_.erase(key);
}

int WorkQueue::Failures(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

void WorkQueue::PromoteDueLocked(absl::Time now) {
  while (!delayed_.empty() && delayed_.top().when <= now) {
    std::string key = delayed_.top().key;
    delayed_.pop();
    AddLocked(key);
  }
}

std::optional<std::string> WorkQueue::Get() {
  absl::MutexLock lock(&mu_);
  while (true) {
    const absl::Time now = clock_->Now();
    PromoteDueLocked(now);
    if (!queue_.empty()) break;
    if (shutdown_) return std::nullopt;
    // Wake for: a queued key, shutdown, a newly delayed key (it may be due
    // sooner than the one we wait for), or the earliest delayed key's time.
    struct Waiter {
      WorkQueue* q;
      uint64_t gen;
      static bool Ready(Waiter* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return !w->q->queue_.empty() || w->q->shutdown_ ||
               w->q->delayed_gen_ != w->gen;
      }
    } waiter{this, delayed_gen_};
    if (delayed_.empty()) {
      mu_.Await(absl::Condition(&Waiter::Ready, &waiter));
      continue;
    }
    absl::Duration wait = delayed_.top().when - now;
    if (clock_ != RealClock::Get()) wait = std::min(wait, kFakeClockPoll);
    mu_.AwaitWithTimeout(absl::Condition(&Waiter::Ready, &waiter), wait);
  }
  std::string key = std::move(queue_.front());
  queue_.pop_front();
  processing_.insert(key);
  dirty_.erase(key);
  return key;
}

void WorkQueue::Done(const std::string& key) {
  absl::MutexLock lock(&mu_);
  processing_.erase(key);
  if (!dirty_.contains(key)) return;
  // Added again while it was processed: queue it, unless the queue is shut
  // down; then forget it, or an Add after Resume would think it queued.
  if (shutdown_) {
    dirty_.erase(key);
  } else {
    queue_.push_back(key);
  }
}

void WorkQueue::ShutDown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
}

void WorkQueue::Resume() {
  absl::MutexLock lock(&mu_);
  shutdown_ = false;
}

size_t WorkQueue::Len() {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

}  // namespace tidal
