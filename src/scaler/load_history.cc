#include "scaler/load_history.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tidal {

namespace {

bool Same(const LoadPoint& a, const LoadPoint& b) {
  return a.rps == b.rps && a.concurrency == b.concurrency &&
         a.p99_ms == b.p99_ms && a.desired == b.desired && a.ready == b.ready;
}

int64_t Seconds(absl::Duration d) { return absl::ToInt64Seconds(d); }

}  // namespace

void LoadHistory::Append(std::deque<Change>* changes, int64_t time,
                         const LoadPoint& p, int64_t horizon) {
  if (changes->empty() || !Same(changes->back().point, p)) {
    changes->push_back({time, p});
  }
  // Keep the change that covers the horizon, drop those before it.
  while (changes->size() >= 2 && (*changes)[1].time <= horizon) {
    changes->pop_front();
  }
}

LoadPoint LoadHistory::At(const std::deque<Change>& changes, int64_t time) {
  auto it =
      std::upper_bound(changes.begin(), changes.end(), time,
                       [](int64_t t, const Change& c) { return t < c.time; });
  if (it == changes.begin()) return LoadPoint();
  return std::prev(it)->point;
}

namespace {

// The scaler's reason without the counts it ends with ("concurrency 34/10
// (panic): 1 → 4" is "concurrency 34/10 (panic)"): a marker carries its
// own.
std::string WithoutCounts(const std::string& reason) {
  const size_t at = reason.rfind(": ");
  if (at == std::string::npos) return reason;
  std::vector<absl::string_view> counts =
      absl::StrSplit(absl::string_view(reason).substr(at + 2), " → ");
  int from = 0, to = 0;
  if (counts.size() != 2 || !absl::SimpleAtoi(counts[0], &from) ||
      !absl::SimpleAtoi(counts[1], &to)) {
    return reason;
  }
  return reason.substr(0, at);
}

}  // namespace

void LoadHistory::Record(const std::string& ns, const std::string& name,
                         int64_t second, const LoadPoint& point,
                         const std::string& scale_reason) {
  absl::MutexLock lock(&mu_);
  Series& s = apps_[absl::StrCat(ns, "/", name)];
  if (s.last != 0 && second <= s.last) return;
  if (s.last == 0) {
    s.ns = ns;
    s.name = name;
    s.first = second;
    s.minute = second - second % 60;
  } else {
    const LoadPoint before = s.fine.back().point;
    if (before.desired != point.desired) {
      s.markers.push_back({second, before.desired, point.desired,
                           scale_reason.empty() ? std::string("unknown")
                                                : WithoutCounts(scale_reason)});
    }
  }
  const int64_t coarse_horizon = second - Seconds(options_.coarse);
  while (!s.markers.empty() && (s.markers.front().time <= coarse_horizon ||
                                s.markers.size() > options_.max_scale_events)) {
    s.markers.pop_front();
  }
  Append(&s.fine, second, point, second - Seconds(options_.fine));

  const int64_t minute = second - second % 60;
  if (minute != s.minute) {
    if (s.count > 0) {
      LoadPoint m = s.sum;
      m.rps /= s.count;
      m.concurrency /= s.count;
      Append(&s.coarse, s.minute, m, minute - Seconds(options_.coarse));
      if (s.first_minute == 0) s.first_minute = s.minute;
      s.last_minute = s.minute;
    }
    s.minute = minute;
    s.count = 0;
    s.sum = LoadPoint();
  }
  s.sum.rps += point.rps;
  s.sum.concurrency += point.concurrency;
  s.sum.p99_ms = std::max(s.sum.p99_ms, point.p99_ms);
  s.sum.desired = point.desired;
  s.sum.ready = point.ready;
  ++s.count;
  s.last = second;
  last_second_ = std::max(last_second_, second);
}

void LoadHistory::Retain(const absl::flat_hash_set<std::string>& keys) {
  absl::MutexLock lock(&mu_);
  for (auto it = apps_.begin(); it != apps_.end();) {
    if (!keys.contains(it->first)) {
      apps_.erase(it++);
    } else {
      ++it;
    }
  }
}

bool LoadHistory::Read(const std::string& ns, const std::string& name,
                       const v1::HistoryRequest& req,
                       v1::AppHistory* out) const {
  absl::MutexLock lock(&mu_);
  auto found = apps_.find(absl::StrCat(ns, "/", name));
  if (found == apps_.end()) return false;
  const Series& s = found->second;
  const int64_t window =
      std::min<int64_t>(req.window_seconds() > 0 ? req.window_seconds() : 3600,
                        Seconds(options_.coarse));
  int64_t step = req.step_seconds();
  if (step <= 0) step = window <= Seconds(options_.fine) ? 1 : 60;
  step = step < 60 ? 1 : 60;
  out->Clear();
  out->set_namespace_(ns);
  out->set_app(name);
  out->set_step_seconds(step);

  const int64_t now = s.last;
  const int64_t window_start = now - window + 1;
  auto add = [&](const LoadPoint& p) {
    out->add_rps(p.rps);
    if (req.rps_only()) return;
    out->add_concurrency(p.concurrency);
    out->add_p99_ms(p.p99_ms);
    out->add_desired_replicas(p.desired);
    out->add_ready_replicas(p.ready);
  };
  if (step == 1) {
    int64_t from = std::max({window_start, s.first, req.after_unix() + 1,
                             now - Seconds(options_.fine) + 1});
    out->set_start_unix(from);
    // Walk the changes once from the one that covers `from`.
    auto it =
        std::upper_bound(s.fine.begin(), s.fine.end(), from,
                         [](int64_t t, const Change& c) { return t < c.time; });
    LoadPoint cur = it == s.fine.begin() ? LoadPoint() : std::prev(it)->point;
    for (int64_t t = from; t <= now; ++t) {
      while (it != s.fine.end() && it->time <= t) cur = (it++)->point;
      add(cur);
    }
  } else {
    const int64_t last = s.last_minute;
    int64_t from = std::max({window_start, s.first_minute, req.after_unix() + 1,
                             last - Seconds(options_.coarse) + 60});
    from = (from + 59) / 60 * 60;  // the first whole minute
    out->set_start_unix(from);
    if (s.first_minute != 0) {
      for (int64_t t = from; t <= last; t += 60) add(At(s.coarse, t));
    }
  }
  for (const Marker& m : s.markers) {
    if (m.time < window_start || m.time <= req.after_unix()) continue;
    auto* e = out->add_scale_events();
    e->set_time_unix(m.time);
    e->set_from_replicas(m.from);
    e->set_to_replicas(m.to);
    e->set_reason(m.reason);
  }
  return true;
}

std::vector<std::string> LoadHistory::Keys() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> keys;
  keys.reserve(apps_.size());
  for (const auto& [key, s] : apps_) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

int64_t LoadHistory::last_second() const {
  absl::MutexLock lock(&mu_);
  return last_second_;
}

int64_t LoadHistory::LastSecond(const std::string& ns,
                                const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = apps_.find(absl::StrCat(ns, "/", name));
  return it == apps_.end() ? 0 : it->second.last;
}

size_t LoadHistory::stored_points() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [key, s] : apps_) n += s.fine.size() + s.coarse.size();
  return n;
}

HistoryRecorder::HistoryRecorder(LoadHistory* history, MetricsSource* metrics,
                                 AppsFn apps, Clock* clock)
    : history_(history),
      metrics_(metrics),
      apps_(std::move(apps)),
      clock_(clock) {}

HistoryRecorder::~HistoryRecorder() { Stop(); }

void HistoryRecorder::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void HistoryRecorder::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void HistoryRecorder::Loop() {
  for (;;) {
    // 200 ms into each second: the gateway closes a second at its boundary
    // and the scaler reads it at +100 ms.
    const absl::Time now = absl::Now();
    const absl::Time next =
        absl::FromUnixSeconds(absl::ToUnixSeconds(now) + 1) +
        absl::Milliseconds(200);
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), next - now)) {
        return;
      }
    }
    RunOnce();
  }
}

void HistoryRecorder::RunOnce() {
  const int64_t done = absl::ToUnixSeconds(clock_->Now()) - 1;
  absl::flat_hash_set<std::string> keys;
  apps_([&](const AppNow& app) {
    keys.insert(absl::StrCat(app.ns, "/", app.name));
    const int64_t last = history_->LastSecond(app.ns, app.name);
    const int64_t from = last == 0 ? done : std::max(last + 1, done - 59);
    if (from > done) return;
    std::vector<MetricSample> samples;
    double p99 = 0;
    if (metrics_ != nullptr) {
      samples = metrics_->Samples(app.ns, app.name, 0,
                                  absl::FromUnixSeconds(from - 1));
      for (const auto& s : samples) {
        if (s.requests > 0) {
          p99 = metrics_->Stats(app.ns, app.name, 0, absl::Seconds(1)).p99_ms;
          break;
        }
      }
    }
    auto sample = samples.begin();
    for (int64_t t = from; t <= done; ++t) {
      LoadPoint p;
      p.desired = app.desired;
      p.ready = app.ready;
      while (sample != samples.end() && absl::ToUnixSeconds(sample->time) < t)
        ++sample;
      if (sample != samples.end() && absl::ToUnixSeconds(sample->time) == t) {
        p.rps = sample->requests;
        p.concurrency = sample->concurrency;
        if (p.rps > 0) p.p99_ms = p99;
      }
      history_->Record(app.ns, app.name, t, p, app.reason);
    }
  });
  history_->Retain(keys);
}

}  // namespace tidal
