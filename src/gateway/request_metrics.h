#pragma once

// Request metrics of one app or one revision: in-flight concurrency
// integrated over time, arrivals, responses by status class and a latency
// histogram. Recording is lock-free: each I/O thread writes its own shard
// (single writer, relaxed atomics, a seqlock around the concurrency integral).
// A once-a-second Tick() turns the running totals into one-second samples.

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "scaler/metrics_source.h"

namespace tidal::gateway {

// Fixed log-scale latency buckets: bound(i) = 100us * 2^(i/4), i <
// kFiniteBuckets, plus an overflow bucket.
inline constexpr int kFiniteBuckets = 81;  // up to ~105 s
inline constexpr int kBuckets = kFiniteBuckets + 1;
double BucketBoundSeconds(int i);
int BucketFor(int64_t latency_ns);

// Cumulative totals (summed over shards) at one instant.
struct Totals {
  int64_t time_ns = 0;
  double area = 0;  // integral of in-flight requests over time, request-seconds
  int64_t in_flight = 0;
  uint64_t started = 0;
  uint64_t finished = 0;
  std::array<uint64_t, 5> classes{};  // 1xx..5xx
  std::array<uint64_t, kBuckets> buckets{};
  double latency_sum_s = 0;
};

// Percentile (0..1) of the latencies in `buckets`, in milliseconds,
// interpolated inside the bucket. 0 if empty.
double PercentileMs(const std::array<uint64_t, kBuckets>& buckets, double q);

// Metrics of one app or revision. Start/Finish: from the thread that owns
// `shard` only (one writer per shard). Everything else: any thread.
class TrafficMetrics {
 public:
  TrafficMetrics(int shards, int64_t created_ns);
  ~TrafficMetrics();
  TrafficMetrics(const TrafficMetrics&) = delete;
  TrafficMetrics& operator=(const TrafficMetrics&) = delete;

  // A request arrived (in flight from now on).
  void Start(int shard, int64_t now_ns);
  // A request finished with `status` (0: no response, counts as nothing).
  void Finish(int shard, int64_t start_ns, int64_t now_ns, int status) {
    Finish(shard, start_ns, now_ns, status, now_ns);
  }
  // The same, with the latency measured to `response_ns` (an upgraded
  // connection: in flight until now_ns, answered at response_ns).
  void Finish(int shard, int64_t start_ns, int64_t now_ns, int status,
              int64_t response_ns);

  Totals Read(int64_t now_ns) const;

  // Closes the second that starts at `second` (sample label), reading totals
  // at `now_ns`. Called once a second by one thread.
  void Tick(absl::Time second, int64_t now_ns);

  std::vector<MetricSample> Samples(absl::Time after) const;
  RequestStats Stats(absl::Duration window, int64_t now_ns) const;

  // Snapshots plus samples held (memory follows traffic, not time).
  size_t stored_for_test() const {
    absl::MutexLock lock(&mu_);
    return history_.size() + samples_.size();
  }

 private:
  struct alignas(64) Shard {
    std::atomic<uint32_t> seq{0};
    std::atomic<int64_t> in_flight{0};
    std::atomic<double> area{0};
    std::atomic<int64_t> last_ns{0};
    std::atomic<uint64_t> started{0};
    std::atomic<uint64_t> finished{0};
    std::array<std::atomic<uint64_t>, 5> classes{};
    std::array<std::atomic<uint64_t>, kBuckets> buckets{};
    std::atomic<double> latency_sum_s{0};
  };
  void Step(Shard& s, int64_t now_ns, int delta);

  // Samples for 15 minutes; snapshots for Stats windows up to 5 minutes, one
  // per second with traffic at most.
  static constexpr absl::Duration kSampleWindow = absl::Minutes(15);
  static constexpr absl::Duration kStatsWindow = absl::Minutes(5);
  static constexpr size_t kStatsHistory = 302;
  static int64_t horizon_ns(int64_t now_ns) {
    return now_ns - absl::ToInt64Nanoseconds(kStatsWindow);
  }

  const int64_t created_ns_;
  Shard* Shards();  // allocates on first use
  std::atomic<Shard*> shards_{nullptr};
  const int num_shards_;

  mutable absl::Mutex mu_;
  std::deque<MetricSample> samples_
      ABSL_GUARDED_BY(mu_);  // non-zero seconds only
  absl::Time first_tick_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Time last_tick_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::deque<Totals> history_ ABSL_GUARDED_BY(mu_);  // one per Tick
};

}  // namespace tidal::gateway
