#include "ha/cluster_metrics.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "store/keys.h"
#include "tidal/v1/traffic.pb.h"

namespace tidal::ha {
namespace {

// Seconds of samples kept (as the gateway keeps them), and the span of the
// totals' history (Stats windows up to 5 minutes).
constexpr int64_t kSampleSeconds = 15 * 60;
constexpr absl::Duration kStatsHistory = absl::Minutes(5);
// Totals snapshots closer than this replace each other (memory).
constexpr absl::Duration kSnapshotSpacing = absl::Seconds(5);
// Without live_nodes: a node that reported within this long counts as live.
constexpr absl::Duration kUnwatchedLive = absl::Seconds(30);

}  // namespace

ClusterMetrics::ClusterMetrics(Store* store, Options options)
    : store_(store), options_(std::move(options)) {}

ClusterMetrics::~ClusterMetrics() { Stop(); }

std::string ClusterMetrics::EntryKey(const std::string& ns,
                                     const std::string& app, int64_t revision) {
  return absl::StrCat(ns, "/", app, "/", revision);
}

void ClusterMetrics::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  started_ = options_.clock->Now();
  thread_ = std::thread([this] { Loop(); });
}

void ClusterMetrics::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (watch_ != nullptr) watch_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

bool ClusterMetrics::synced() const {
  absl::MutexLock lock(&mu_);
  return synced_;
}

bool ClusterMetrics::Wait(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return !stopping_;
}

void ClusterMetrics::Apply(const std::string& value) {
  tidal::v1::TrafficReport r;
  if (!r.ParseFromString(value) || r.node().empty()) return;
  Node& n = nodes_[r.node()];
  const absl::Time sent = absl::FromUnixSeconds(r.time().seconds()) +
                          absl::Nanoseconds(r.time().nanos());
  if (r.sequence() == n.sequence && sent == n.sent) return;  // seen
  const absl::Time now = options_.clock->Now();
  n.sequence = r.sequence();
  n.sent = sent;
  n.received = now;
  n.through = std::max(n.through, r.through_second());
  n.routes_version = r.routes_version();
  n.in_flight.clear();
  for (const auto& [id, count] : r.in_flight()) n.in_flight[id] = count;
  for (const auto& a : r.apps()) {
    const std::string key = EntryKey(a.namespace_(), a.app(), a.revision());
    auto [it, inserted] = n.entries.try_emplace(key);
    Entry& e = it->second;
    if (inserted) e.first_second = r.from_second() + 1;
    e.touched = now;
    for (const auto& s : a.seconds()) {
      MetricSample m;
      m.time = absl::FromUnixSeconds(s.second());
      m.concurrency = s.concurrency();
      m.requests = s.requests();
      e.seconds[s.second()] = m;
    }
    while (!e.seconds.empty() &&
           e.seconds.begin()->first <= n.through - kSampleSeconds) {
      e.seconds.erase(e.seconds.begin());
    }
    if (a.has_totals()) {
      Totals t;
      t.requests = a.totals().requests();
      for (int i = 0; i < 5 && i < a.totals().classes_size(); ++i) {
        t.classes[i] = a.totals().classes(i);
      }
      for (const auto& [b, count] : a.totals().latency_buckets()) {
        if (b >= 0 && b < gateway::kBuckets) t.buckets[b] = count;
      }
      t.area = a.totals().area();
      if (e.history.size() >= 2 &&
          e.history.back().first - e.history[e.history.size() - 2].first <
              kSnapshotSpacing) {
        e.history.back() = {now, t};
      } else {
        e.history.emplace_back(now, t);
      }
      while (e.history.size() > 1 &&
             e.history[1].first <= now - kStatsHistory) {
        e.history.pop_front();
      }
    }
  }
  // Entries no report has mentioned for as long as samples are kept.
  for (auto it = n.entries.begin(); it != n.entries.end();) {
    if (it->second.touched < now - absl::Seconds(kSampleSeconds)) {
      n.entries.erase(it++);
    } else {
      ++it;
    }
  }
}

void ClusterMetrics::Loop() {
  auto log = GetLogger("metrics");
  // Doubles while the store keeps failing (up to 5 s: a store that is down
  // for minutes logged five lines a second), back to options_.retry once a
  // list succeeds.
  absl::Duration retry = options_.retry;
  auto backoff = [&] {
    const absl::Duration d = retry;
    retry = std::min(retry * 2, std::max(options_.retry, absl::Seconds(5)));
    return Wait(d);
  };
  while (true) {
    auto list = store_->List(keys::MetricsPrefix());
    if (!list.ok()) {
      log->warn("listing metrics reports failed (retrying in {}): {}",
                absl::FormatDuration(retry), list.status().ToString());
      if (!backoff()) return;
      continue;
    }
    retry = options_.retry;
    {
      absl::MutexLock lock(&mu_);
      for (const KeyValue& kv : list->items) Apply(kv.value);
      synced_ = true;
    }
    auto watch =
        store_->WatchPrefix(keys::MetricsPrefix(), list->resource_version);
    if (!watch.ok()) {
      log->warn("watching metrics reports failed (retrying in {}): {}",
                absl::FormatDuration(retry), watch.status().ToString());
      if (!backoff()) return;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      watch_ = watch->get();
    }
    bool relist_now = false;
    while (true) {
      auto events = (*watch)->Next(absl::Milliseconds(200));
      absl::MutexLock lock(&mu_);
      if (stopping_ || !events.ok()) {
        watch_ = nullptr;
        if (stopping_) return;
        relist_now = absl::IsOutOfRange(events.status());
        if (!relist_now) {
          log->warn("metrics watch failed (listing again): {}",
                    events.status().ToString());
        }
        break;
      }
      for (const WatchEvent& ev : *events) {
        if (ev.type == WatchEvent::Type::kPut) {
          Apply(ev.kv.value);
        } else {
          nodes_.erase(ev.kv.key.substr(keys::MetricsPrefix().size()));
        }
      }
    }
    if (!relist_now && !Wait(options_.retry)) return;
  }
}

std::vector<std::string> ClusterMetrics::LiveOthers() {
  std::vector<std::string> out;
  if (options_.live_nodes) {
    for (auto& n : options_.live_nodes()) {
      if (n != options_.node) out.push_back(std::move(n));
    }
    return out;
  }
  // Without a liveness source: the nodes that reported lately.
  const absl::Time horizon = options_.clock->Now() - kUnwatchedLive;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, node] : nodes_) {
    if (name != options_.node && node.received >= horizon) {
      out.push_back(name);
    }
  }
  return out;
}

std::vector<MetricSample> ClusterMetrics::Samples(const std::string& ns,
                                                  const std::string& app,
                                                  int64_t revision,
                                                  absl::Time after) {
  std::vector<std::string> live = LiveOthers();
  std::vector<MetricSample> local;
  if (options_.local != nullptr) {
    local = options_.local->Samples(ns, app, revision, after);
  }
  const std::string key = EntryKey(ns, app, revision);
  absl::MutexLock lock(&mu_);
  // The last second every live node has reported.
  int64_t through = std::numeric_limits<int64_t>::max();
  std::vector<const Node*> nodes;
  for (const auto& name : live) {
    auto it = nodes_.find(name);
    if (it == nodes_.end()) return {};  // a live node has not reported yet
    through = std::min(through, it->second.through);
    nodes.push_back(&it->second);
  }
  auto add = [&](int64_t sec, MetricSample* m) {
    for (const Node* n : nodes) {
      auto e = n->entries.find(key);
      if (e == n->entries.end()) continue;
      auto s = e->second.seconds.find(sec);
      if (s == e->second.seconds.end()) continue;
      m->concurrency += s->second.concurrency;
      m->requests += s->second.requests;
    }
  };
  std::vector<MetricSample> out;
  if (!local.empty()) {
    for (MetricSample m : local) {
      const int64_t sec = absl::ToUnixSeconds(m.time);
      if (sec > through) break;
      add(sec, &m);
      out.push_back(m);
    }
    return out;
  }
  // The local gateway does not know the app: the seconds other nodes cover.
  int64_t start = std::numeric_limits<int64_t>::max();
  for (const Node* n : nodes) {
    auto e = n->entries.find(key);
    if (e != n->entries.end()) start = std::min(start, e->second.first_second);
  }
  if (start == std::numeric_limits<int64_t>::max()) return out;
  start = std::max(start, through - kSampleSeconds + 1);
  if (after != absl::InfinitePast()) {
    // The first whole second strictly after `after`.
    int64_t s = absl::ToUnixSeconds(after);
    if (absl::FromUnixSeconds(s) <= after) ++s;
    start = std::max(start, s);
  }
  for (int64_t sec = start; sec <= through; ++sec) {
    MetricSample m;
    m.time = absl::FromUnixSeconds(sec);
    add(sec, &m);
    out.push_back(m);
  }
  return out;
}

bool ClusterMetrics::Incomplete(const std::string& ns, const std::string& app) {
  return !MissingNodes().empty();
}

std::vector<std::string> ClusterMetrics::MissingNodes() {
  std::vector<std::string> live = LiveOthers();
  const absl::Time now = options_.clock->Now();
  std::vector<std::string> out;
  absl::MutexLock lock(&mu_);
  for (const auto& name : live) {
    auto it = nodes_.find(name);
    const absl::Time last = it == nodes_.end() ? started_ : it->second.received;
    if (now - last > options_.stale_after) out.push_back(name);
  }
  return out;
}

RequestStats ClusterMetrics::Stats(const std::string& ns,
                                   const std::string& app, int64_t revision,
                                   absl::Duration window) {
  std::vector<std::string> live = LiveOthers();
  live.push_back(options_.node);
  const absl::Time now = options_.clock->Now();
  const absl::Time from = now - window;
  const std::string key = EntryKey(ns, app, revision);
  Totals sum;
  bool any = false;
  double elapsed = absl::ToDoubleSeconds(window);
  {
    absl::MutexLock lock(&mu_);
    for (const auto& name : live) {
      auto it = nodes_.find(name);
      if (it == nodes_.end()) continue;
      auto e = it->second.entries.find(key);
      if (e == it->second.entries.end() || e->second.history.empty()) continue;
      any = true;
      const auto& h = e->second.history;
      const Totals& latest = h.back().second;
      Totals zero;
      const Totals* base = nullptr;
      for (auto r = h.rbegin(); r != h.rend(); ++r) {
        if (r->first <= from) {
          base = &r->second;
          break;
        }
      }
      if (base == nullptr) {
        if (started_ <= from) {
          base = &zero;  // new within the window
        } else {
          base = &h.front().second;  // watched for less than the window
          elapsed =
              std::min(elapsed, absl::ToDoubleSeconds(now - h.front().first));
        }
      }
      if (latest.requests < base->requests) base = &zero;  // restarted
      sum.requests += latest.requests - base->requests;
      for (int i = 0; i < 5; ++i) {
        sum.classes[i] += latest.classes[i] - base->classes[i];
      }
      for (int i = 0; i < gateway::kBuckets; ++i) {
        sum.buckets[i] += latest.buckets[i] >= base->buckets[i]
                              ? latest.buckets[i] - base->buckets[i]
                              : 0;
      }
      sum.area += std::max(0.0, latest.area - base->area);
    }
  }
  if (!any) {
    return options_.local != nullptr
               ? options_.local->Stats(ns, app, revision, window)
               : RequestStats{};
  }
  RequestStats st;
  st.requests = sum.requests;
  st.responses_2xx = sum.classes[1];
  st.responses_3xx = sum.classes[2];
  st.responses_4xx = sum.classes[3];
  st.responses_5xx = sum.classes[4];
  st.p50_ms = gateway::PercentileMs(sum.buckets, 0.50);
  st.p90_ms = gateway::PercentileMs(sum.buckets, 0.90);
  st.p99_ms = gateway::PercentileMs(sum.buckets, 0.99);
  if (elapsed > 0) {
    st.rps = st.requests / elapsed;
    st.concurrency = sum.area / elapsed;
  }
  return st;
}

int ClusterMetrics::InFlight(const std::string& instance_id,
                             int64_t routes_version) {
  std::vector<std::string> live = LiveOthers();
  absl::MutexLock lock(&mu_);
  int sum = 0;
  for (const auto& name : live) {
    auto it = nodes_.find(name);
    if (it == nodes_.end() || it->second.routes_version < routes_version) {
      return -1;
    }
    auto f = it->second.in_flight.find(instance_id);
    if (f != it->second.in_flight.end()) sum += f->second;
  }
  return sum;
}

}  // namespace tidal::ha
