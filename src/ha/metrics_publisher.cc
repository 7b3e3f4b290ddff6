#include "ha/metrics_publisher.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "ha/route_watcher.h"
#include "store/keys.h"
#include "tidal/v1/traffic.pb.h"

namespace tidal::ha {

MetricsPublisher::MetricsPublisher(Store* store, Options options)
    : store_(store), options_(std::move(options)) {}

MetricsPublisher::~MetricsPublisher() { Stop(); }

void MetricsPublisher::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void MetricsPublisher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void MetricsPublisher::Loop() {
  auto log = GetLogger("metrics");
  absl::Time last_error_log = absl::InfinitePast();
  const int64_t period =
      std::max<int64_t>(1, absl::ToInt64Nanoseconds(options_.interval));
  const int64_t offset = absl::ToInt64Nanoseconds(options_.offset) % period;
  while (true) {
    // The next whole interval plus the offset (real time).
    const int64_t now = absl::ToUnixNanos(absl::Now());
    int64_t next = (now - offset) / period * period + offset;
    if (next <= now) next += period;
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithDeadline(absl::Condition(&stopping_),
                                absl::FromUnixNanos(next))) {
        return;
      }
    }
    absl::Status st = PublishOnce();
    if (!st.ok() && absl::Now() - last_error_log > absl::Seconds(30)) {
      log->warn("publishing this node's metrics failed (retrying): {}",
                st.ToString());
      last_error_log = absl::Now();
    }
  }
}

absl::Status MetricsPublisher::PublishOnce() {
  absl::MutexLock lock(&publish_mu_);
  const absl::Time now = options_.clock->Now();
  int64_t through = absl::ToUnixSeconds(now) - 1;  // the last complete second
  const int64_t from =
      std::max((last_through_ > 0 ? last_through_ : through - 1) -
                   options_.resend_seconds,
               through - 15 * 60);

  tidal::v1::TrafficReport r;
  r.set_node(options_.node);
  r.set_sequence(sequence_ + 1);
  *r.mutable_time() = ToProtoTime(now);
  // Routes applied before in-flight counts are read (one step).
  if (options_.routes != nullptr) {
    RouteWatcher::Routing routing = options_.routes->Report();
    r.set_routes_version(routing.version);
    for (const auto& [id, n] : routing.in_flight) {
      (*r.mutable_in_flight())[id] = n;
    }
  }
  std::vector<gateway::CumulativeTraffic> traffic;
  if (options_.traffic) traffic = options_.traffic();
  std::vector<std::vector<MetricSample>> samples(traffic.size());
  for (size_t i = 0; i < traffic.size(); ++i) {
    const auto& c = traffic[i];
    samples[i] = options_.local->Samples(c.ns, c.app, c.revision,
                                         absl::FromUnixSeconds(from));
    // A second the gateway has not closed yet is not reported.
    if (!samples[i].empty()) {
      through = std::min(through, absl::ToUnixSeconds(samples[i].back().time));
    }
  }
  through = std::max(through, from);
  r.set_from_second(from);
  r.set_through_second(through);
  const bool full = (sequence_ + 1) % std::max(1, options_.full_every) == 1 ||
                    options_.full_every <= 1;
  std::map<std::string, std::string> sent;
  for (size_t i = 0; i < traffic.size(); ++i) {
    const auto& c = traffic[i];
    if (c.requests == 0 && c.in_flight == 0) continue;  // never used
    tidal::v1::AppTraffic a;
    a.set_namespace_(c.ns);
    a.set_app(c.app);
    a.set_revision(c.revision);
    for (const MetricSample& m : samples[i]) {
      const int64_t sec = absl::ToUnixSeconds(m.time);
      if (sec > through) break;
      if (m.concurrency == 0 && m.requests == 0) continue;
      auto* s = a.add_seconds();
      s->set_second(sec);
      s->set_concurrency(m.concurrency);
      s->set_requests(m.requests);
    }
    tidal::v1::TrafficTotals t;
    t.set_requests(static_cast<int64_t>(c.requests));
    for (uint64_t k : c.classes) t.add_classes(static_cast<int64_t>(k));
    for (size_t b = 0; b < c.latency_buckets.size(); ++b) {
      if (c.latency_buckets[b] > 0) {
        (*t.mutable_latency_buckets())[static_cast<int32_t>(b)] =
            static_cast<int64_t>(c.latency_buckets[b]);
      }
    }
    t.set_area(c.area);
    const std::string key = absl::StrCat(c.ns, "/", c.app, "/", c.revision);
    // Deterministic bytes: map entries in key order.
    std::string bytes;
    {
      tidal::v1::TrafficTotals copy = t;
      copy.clear_latency_buckets();
      bytes = copy.SerializeAsString();
      std::map<int32_t, int64_t> ordered(t.latency_buckets().begin(),
                                         t.latency_buckets().end());
      for (const auto& [b, n] : ordered)
        absl::StrAppend(&bytes, "|", b, ":", n);
    }
    auto prev = sent_.find(key);
    const bool changed = prev == sent_.end() || prev->second != bytes;
    if (full || changed) *a.mutable_totals() = std::move(t);
    sent[key] = std::move(bytes);
    if (a.seconds_size() > 0 || a.has_totals()) *r.add_apps() = std::move(a);
  }
  auto st = store_->Txn(
      {Op::Put(keys::Metrics(options_.node), r.SerializeAsString())});
  if (!st.ok()) return st.status();
  ++sequence_;
  last_through_ = through;
  sent_ = std::move(sent);
  return absl::OkStatus();
}

}  // namespace tidal::ha
