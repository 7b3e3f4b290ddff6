#include "gateway/request_metrics.h"

#include <algorithm>
#include <cmath>

namespace tidal::gateway {
namespace {

template <typename T>
void Add(std::atomic<T>& a, T v) {
  // Single writer per shard: a plain load/store pair, no read-modify-write.
  a.store(a.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

}  // namespace

double BucketBoundSeconds(int i) { return 100e-6 * std::exp2(i / 4.0); }

int BucketFor(int64_t latency_ns) {
  // Smallest i with latency <= bound(i).
  double s = latency_ns / 1e9;
  if (s <= 100e-6) return 0;
  int i = static_cast<int>(std::ceil(4.0 * std::log2(s / 100e-6) - 1e-9));
  if (i < 0) i = 0;
  while (i > 0 && s <= BucketBoundSeconds(i - 1)) --i;
  while (i < kFiniteBuckets && s > BucketBoundSeconds(i)) ++i;
  return std::min(i, kFiniteBuckets);
}

double PercentileMs(const std::array<uint64_t, kBuckets>& buckets, double q) {
  uint64_t total = 0;
  for (uint64_t b : buckets) total += b;
  if (total == 0) return 0;
  double rank = q * total;
  uint64_t cum = 0;
  for (int i = 0; i < kBuckets; ++i) {
    if (buckets[i] == 0) continue;
    if (cum + buckets[i] >= rank) {
      double lo = i == 0 ? 0 : BucketBoundSeconds(i - 1);
      if (i == kFiniteBuckets) return lo * 1e3;
      double hi = BucketBoundSeconds(i);
      double frac = (rank - cum) / buckets[i];
      frac = std::clamp(frac, 0.0, 1.0);
      return (lo + (hi - lo) * frac) * 1e3;
    }
    cum += buckets[i];
  }
  return BucketBoundSeconds(kFiniteBuckets - 1) * 1e3;
}

TrafficMetrics::TrafficMetrics(int shards, int64_t created_ns)
    : created_ns_(created_ns), num_shards_(std::max(shards, 1)) {}

TrafficMetrics::~TrafficMetrics() {
  delete[] shards_.load(std::memory_order_acquire);
}

// The shards are allocated on the first request: an app that never gets
// traffic costs a few bytes, not a histogram per I/O thread.
TrafficMetrics::Shard* TrafficMetrics::Shards() {
  Shard* s = shards_.load(std::memory_order_acquire);
  if (s != nullptr) return s;
  Shard* fresh = new Shard[num_shards_];
  for (int i = 0; i < num_shards_; ++i) fresh[i].last_ns.store(created_ns_);
  if (shards_.compare_exchange_strong(s, fresh, std::memory_order_acq_rel))
    return fresh;
  delete[] fresh;  // another thread won
  return s;
}

void TrafficMetrics::Step(Shard& s, int64_t now_ns, int delta) {
  uint32_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  int64_t last = s.last_ns.load(std::memory_order_relaxed);
  int64_t in_flight = s.in_flight.load(std::memory_order_relaxed);
  if (now_ns > last) {
    s.area.store(s.area.load(std::memory_order_relaxed) +
                     in_flight * ((now_ns - last) / 1e9),
                 std::memory_order_relaxed);
    s.last_ns.store(now_ns, std::memory_order_relaxed);
  }
  s.in_flight.store(in_flight + delta, std::memory_order_relaxed);
  s.seq.store(seq + 2, std::memory_order_release);
}

void TrafficMetrics::Start(int shard, int64_t now_ns) {
  Shard& s = Shards()[shard % num_shards_];
  Step(s, now_ns, +1);
  Add<uint64_t>(s.started, 1);
}

void TrafficMetrics::Finish(int shard, int64_t start_ns, int64_t now_ns,
                            int status, int64_t response_ns) {
  Shard& s = Shards()[shard % num_shards_];
  Step(s, now_ns, -1);
  Add<uint64_t>(s.finished, 1);
  if (status >= 100 && status < 600) {
    Add<uint64_t>(s.classes[status / 100 - 1], 1);
    int64_t latency = response_ns - start_ns;
    Add<uint64_t>(s.buckets[BucketFor(latency)], 1);
    Add<double>(s.latency_sum_s, latency / 1e9);
  }
}

Totals TrafficMetrics::Read(int64_t now_ns) const {
  Totals t;
  t.time_ns = now_ns;
  const Shard* shards = shards_.load(std::memory_order_acquire);
  for (int i = 0; shards != nullptr && i < num_shards_; ++i) {
    const Shard& s = shards[i];
    double area;
    int64_t in_flight, last;
    while (true) {
      uint32_t s1 = s.seq.load(std::memory_order_acquire);
      if (s1 & 1) continue;
      area = s.area.load(std::memory_order_relaxed);
      in_flight = s.in_flight.load(std::memory_order_relaxed);
      last = s.last_ns.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (s.seq.load(std::memory_order_relaxed) == s1) break;
    }
    if (now_ns > last) area += in_flight * ((now_ns - last) / 1e9);
    t.area += area;
    t.in_flight += in_flight;
    t.started += s.started.load(std::memory_order_relaxed);
    t.finished += s.finished.load(std::memory_order_relaxed);
    for (int c = 0; c < 5; ++c)
      t.classes[c] += s.classes[c].load(std::memory_order_relaxed);
    for (int b = 0; b < kBuckets; ++b)
      t.buckets[b] += s.buckets[b].load(std::memory_order_relaxed);
    t.latency_sum_s += s.latency_sum_s.load(std::memory_order_relaxed);
  }
  return t;
}

void TrafficMetrics::Tick(absl::Time second, int64_t now_ns) {
  // Cheap check first: an app with nothing started, finished or in flight
  // since the last snapshot skips the full read of every bucket.
  uint64_t started = 0, finished = 0;
  int64_t in_flight = 0;
  const Shard* shards = shards_.load(std::memory_order_acquire);
  for (int i = 0; shards != nullptr && i < num_shards_; ++i) {
    started += shards[i].started.load(std::memory_order_relaxed);
    finished += shards[i].finished.load(std::memory_order_relaxed);
    in_flight += shards[i].in_flight.load(std::memory_order_relaxed);
  }
  {
    absl::MutexLock lock(&mu_);
    // Idle: nothing since the last snapshot (or, before any snapshot,
    // nothing at all: the creation-time zeros are the base).
    const bool never = history_.empty() && started == 0 && finished == 0;
    if (in_flight == 0 &&
        (never || (!history_.empty() && history_.back().in_flight == 0 &&
                   history_.back().started == started &&
                   history_.back().finished == finished))) {
      if (first_tick_ == absl::InfiniteFuture()) first_tick_ = second;
      last_tick_ = second;
      const int64_t horizon = now_ns - absl::ToInt64Nanoseconds(kStatsWindow);
      while (history_.size() > 1 && history_[1].time_ns <= horizon)
        history_.pop_front();
      while (!samples_.empty() &&
             samples_.front().time <= second - kSampleWindow) {
        samples_.pop_front();
      }
      return;
    }
  }
  Totals now = Read(now_ns);
  absl::MutexLock lock(&mu_);
  Totals prev;
  prev.time_ns = created_ns_;
  if (!history_.empty()) prev = history_.back();
  if (first_tick_ == absl::InfiniteFuture()) first_tick_ = second;
  last_tick_ = second;
  // Memory follows activity, not the number of apps: an idle second (nothing
  // started, finished or in flight) stores neither a sample (Samples() fills
  // in zeros) nor a snapshot (the last one still holds every counter).
  const bool idle = !history_.empty() && now.started == prev.started &&
                    now.finished == prev.finished && now.in_flight == 0 &&
                    prev.in_flight == 0;
  const int64_t horizon_ns = now_ns - absl::ToInt64Nanoseconds(kStatsWindow);
  while (history_.size() > 1 && history_[1].time_ns <= horizon_ns)
    history_.pop_front();
  while (!samples_.empty() && samples_.front().time <= second - kSampleWindow) {
    samples_.pop_front();
  }
  if (idle) return;
  MetricSample sample;
  sample.time = second;
  double elapsed = (now.time_ns - prev.time_ns) / 1e9;
  sample.concurrency = elapsed > 0 ? (now.area - prev.area) / elapsed : 0;
  sample.requests = static_cast<double>(now.started - prev.started);
  if (sample.concurrency > 0 || sample.requests > 0) samples_.push_back(sample);
  history_.push_back(now);
  if (history_.size() > kStatsHistory) history_.pop_front();
}

std::vector<MetricSample> TrafficMetrics::Samples(absl::Time after) const {
  absl::MutexLock lock(&mu_);
  std::vector<MetricSample> out;
  if (last_tick_ == absl::InfinitePast()) return out;
  // Every ticked second after `after`, within the kept window; seconds
  // without a stored sample had no traffic.
  absl::Time start =
      std::max(first_tick_, last_tick_ - kSampleWindow + absl::Seconds(1));
  if (after >= start)
    start = after + absl::Seconds(1) - (after - start) % absl::Seconds(1);
  auto it = samples_.begin();
  for (absl::Time t = start; t <= last_tick_; t += absl::Seconds(1)) {
    while (it != samples_.end() && it->time < t) ++it;
    if (it != samples_.end() && it->time == t) {
      out.push_back(*it);
    } else {
      MetricSample zero;
      zero.time = t;
      out.push_back(zero);
    }
  }
  return out;
}

RequestStats TrafficMetrics::Stats(absl::Duration window,
                                   int64_t now_ns) const {
  Totals now = Read(now_ns);
  Totals base;
  base.time_ns = created_ns_;
  {
    absl::MutexLock lock(&mu_);
    // The newest snapshot at or before the window start; creation time if the
    // app is younger than the window.
    int64_t from = now_ns - absl::ToInt64Nanoseconds(window);
    bool found = false;
    for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
      if (it->time_ns <= from) {
        base = *it;
        found = true;
        break;
      }
    }
    if (!found && !history_.empty() &&
        history_.front().time_ns <= horizon_ns(now_ns)) {
      base = history_.front();
    } else if (!found) {
      // No snapshot before the window start, and none dropped: nothing
      // changed from creation to then, so the window starts with creation's
      // counters (zero) at its own start, not at the app's creation.
      base.time_ns = std::max(created_ns_, from);
    }
    // Snapshots are kept only when something changed, so the counters at the
    // window start equal the newest snapshot before it.
    if (found && base.time_ns < from && base.in_flight == 0)
      base.time_ns = from;
  }
  RequestStats st;
  st.requests = static_cast<int64_t>(now.started - base.started);
  st.responses_2xx = static_cast<int64_t>(now.classes[1] - base.classes[1]);
  st.responses_3xx = static_cast<int64_t>(now.classes[2] - base.classes[2]);
  st.responses_4xx = static_cast<int64_t>(now.classes[3] - base.classes[3]);
  st.responses_5xx = static_cast<int64_t>(now.classes[4] - base.classes[4]);
  std::array<uint64_t, kBuckets> b{};
  for (int i = 0; i < kBuckets; ++i) b[i] = now.buckets[i] - base.buckets[i];
  st.p50_ms = PercentileMs(b, 0.50);
  st.p90_ms = PercentileMs(b, 0.90);
  st.p99_ms = PercentileMs(b, 0.99);
  // At least a second (windows are whole seconds): one request to an app
  // made 0.1 s ago reads as 1 request/s, not 10.
  double elapsed = (now.time_ns - base.time_ns) / 1e9;
  if (elapsed > 0) {
    elapsed = std::max(elapsed, std::min(1.0, absl::ToDoubleSeconds(window)));
    st.rps = st.requests / elapsed;
    st.concurrency = (now.area - base.area) / elapsed;
  }
  return st;
}

}  // namespace tidal::gateway
