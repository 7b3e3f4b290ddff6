#include "fakes/fake_metrics.h"

#include <algorithm>

namespace tidal::testing {

std::vector<MetricSample> FakeMetrics::Samples(const std::string&,
                                               const std::string&, int64_t,
                                               absl::Time after) {
  std::vector<MetricSample> out;
  if (clock_ == nullptr) return out;
  absl::MutexLock l(&mu_);
  const int64_t now_s = absl::ToUnixSeconds(clock_->Now());
  const int64_t from = after == absl::InfinitePast()
                           ? now_s - 60
                           : absl::ToUnixSeconds(after) + 1;
  for (int64_t s = std::max(from, now_s - 120); s < now_s; ++s) {
    MetricSample m;
    m.time = absl::FromUnixSeconds(s);
    m.concurrency = concurrency_;
    m.requests = concurrency_ * 10;
    out.push_back(m);
  }
  return out;
}

RequestStats FakeMetrics::Stats(const std::string&, const std::string& app,
                                int64_t revision, absl::Duration window) {
  absl::MutexLock l(&mu_);
  ++stats_calls_;
  last_window_ = window;
  if (auto it = by_app_.find({app, revision}); it != by_app_.end())
    return it->second;
  if (auto it = by_revision_.find(revision); it != by_revision_.end())
    return it->second;
  return {};
}

void FakeMetrics::SetStats(int64_t revision, const RequestStats& stats) {
  absl::MutexLock l(&mu_);
  by_revision_[revision] = stats;
}

void FakeMetrics::SetAppStats(const std::string& app, int64_t revision,
                              const RequestStats& stats) {
  absl::MutexLock l(&mu_);
  by_app_[{app, revision}] = stats;
}

void FakeMetrics::Set(int64_t revision, int64_t requests, int64_t errors,
                      double p99_ms) {
  RequestStats s;
  s.requests = requests;
  s.responses_5xx = errors;
  s.responses_2xx = requests - errors;
  s.p99_ms = p99_ms;
  SetStats(revision, s);
}

void FakeMetrics::set_concurrency(double c) {
  absl::MutexLock l(&mu_);
  concurrency_ = c;
}

int FakeMetrics::stats_calls() {
  absl::MutexLock l(&mu_);
  return stats_calls_;
}

absl::Duration FakeMetrics::last_window() {
  absl::MutexLock l(&mu_);
  return last_window_;
}

}  // namespace tidal::testing
