#include "gateway/route_sink.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/proto_time.h"

namespace tidal {

bool StopsBefore(const tidal::v1::Instance& a, const tidal::v1::Instance& b) {
  if (a.ready() != b.ready()) return !a.ready();
  if (a.restarts() != b.restarts()) return a.restarts() > b.restarts();
  const absl::Time sa = FromProtoTime(a.start_time());
  const absl::Time sb = FromProtoTime(b.start_time());
  if (sa != sb) return sa > sb;
  return a.id() > b.id();
}

namespace gateway {
namespace {

// The gateway as a RouteTarget (Gateway itself stays free of this seam).
class GatewayTarget : public RouteTarget {
 public:
  explicit GatewayTarget(Gateway* gw) : gw_(gw) {}
  void SetRoute(const Route& route) override { gw_->SetRoute(route); }
  void RemoveRoute(const std::string& ns, const std::string& app) override {
    gw_->RemoveRoute(ns, app);
  }
  int InFlight(const std::string& instance_id) const override {
    return gw_->InFlight(instance_id);
  }
  int Tunnels(const std::string& instance_id) const override {
    return gw_->Tunnels(instance_id);
  }
  void CloseTunnels(const std::string& instance_id) override {
    gw_->CloseTunnels(instance_id);
  }

 private:
  Gateway* const gw_;
};

}  // namespace

GatewayRoutes::GatewayRoutes(Gateway* gw, Clock* clock)
    : own_target_(std::make_unique<GatewayTarget>(gw)),
      target_(own_target_.get()),
      clock_(clock) {
  drainer_ = std::thread([this] { DrainLoop(); });
}

GatewayRoutes::GatewayRoutes(RouteTarget* target, Clock* clock)
    : target_(target), clock_(clock) {
  drainer_ = std::thread([this] { DrainLoop(); });
}

GatewayRoutes::~GatewayRoutes() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  drainer_.join();
}

void GatewayRoutes::PublishLocked(const std::string& key) {
  const AppEntry& entry = apps_[key];
  std::vector<std::string> parts = absl::StrSplit(key, absl::MaxSplits('/', 1));
  Route route;
  route.ns = parts[0];
  route.app = parts[1];
  route.concurrency = entry.concurrency;
  route.timeout = entry.timeout;
  route.response_start_timeout = entry.response_start_timeout;
  route.idle_timeout = entry.idle_timeout;
  route.h2 = entry.h2;
  // Live revisions (Route::live_revisions): the app's own and those with
  // instances, ready or not.
  std::set<int64_t> live;
  for (int64_t r : {entry.stable_revision, entry.update_revision}) {
    if (r != 0) live.insert(r);
  }
  for (const auto& inst : entry.serving) live.insert(inst.revision());
  route.live_revisions.assign(live.begin(), live.end());
  std::map<int64_t, RevisionRoute> by_revision;
  // In the order the gateway fills them: the one a scale-down stops last
  // first.
  std::vector<const tidal::v1::Instance*> order;
  for (const auto& inst : entry.serving) order.push_back(&inst);
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return StopsBefore(*b, *a); });
  for (const auto* i : order) {
    const tidal::v1::Instance& inst = *i;
    if (!inst.ready() || draining_.contains(inst.id())) continue;
    auto& rev = by_revision[inst.revision()];
    rev.revision = inst.revision();
    Endpoint ep;
    ep.instance_id = inst.id();
    ep.host = inst.host().empty() ? "127.0.0.1" : inst.host();
    ep.port = inst.port();
    rev.endpoints.push_back(ep);
  }
  int listed = 0, unlisted = 0;
  for (auto& [revision, rev] : by_revision) {
    bool found = false;
    for (const auto& [r, w] : entry.weights) {
      if (r == revision) {
        rev.weight_percent = w;
        listed += w;
        found = true;
      }
    }
    if (!found) ++unlisted;
  }
  for (auto& [revision, rev] : by_revision) {
    bool found = false;
    for (const auto& [r, w] : entry.weights) found |= r == revision;
    if (entry.weights.empty()) {
      rev.weight_percent = static_cast<int>(rev.endpoints.size());
    } else if (!found) {
      rev.weight_percent = std::max(0, 100 - listed) / std::max(1, unlisted);
    }
    route.revisions.push_back(std::move(rev));
  }
  if (route.revisions.empty()) {
    // No ready instance: the app keeps a route without endpoints, so the
    // gateway holds its requests (activator) instead of answering 404.
    route.revisions.push_back(RevisionRoute{});
  }
  target_->SetRoute(route);
}

void GatewayRoutes::UpdateRoute(
    const tidal::v1::App& app,
    const std::vector<tidal::v1::Instance>& serving) {
  std::string key =
      absl::StrCat(app.metadata().namespace_(), "/", app.metadata().name());
  absl::MutexLock lock(&mu_);
  AppEntry& entry = apps_[key];
  const tidal::v1::Template& t = app.spec().template_();
  entry.concurrency = t.concurrency();
  entry.timeout = absl::Seconds(t.timeout_seconds());
  entry.response_start_timeout =
      absl::Seconds(t.response_start_timeout_seconds());
  entry.idle_timeout = absl::Seconds(t.idle_timeout_seconds());
  entry.h2 = t.protocol() == "h2c" || t.protocol() == "grpc";
  entry.serving = serving;
  entry.stable_revision = app.status().rollout().stable_revision();
  entry.update_revision = app.status().rollout().update_revision();
  PublishLocked(key);
}

void GatewayRoutes::RemoveRoute(const std::string& ns,
                                const std::string& name) {
  absl::MutexLock lock(&mu_);
  apps_.erase(absl::StrCat(ns, "/", name));
  target_->RemoveRoute(ns, name);
}

void GatewayRoutes::SetWeights(const std::string& ns, const std::string& name,
                               std::vector<std::pair<int64_t, int>> weights) {
  std::string key = absl::StrCat(ns, "/", name);
  absl::MutexLock lock(&mu_);
  auto it = apps_.find(key);
  if (it == apps_.end()) return;
  if (it->second.weights == weights) return;
  it->second.weights = std::move(weights);
  PublishLocked(key);
}

void GatewayRoutes::Drain(const tidal::v1::Instance& instance,
                          absl::Duration grace, std::function<void()> stop) {
  std::string key = absl::StrCat(instance.namespace_(), "/", instance.app());
  absl::MutexLock lock(&mu_);
  draining_.insert(instance.id());
  if (apps_.contains(key)) PublishLocked(key);
  pending_.push_back(
      Pending{instance.id(), clock_->Now() + grace, std::move(stop)});
}

int GatewayRoutes::Tunnels(const std::string& instance_id) {
  return target_->Tunnels(instance_id);
}

bool GatewayRoutes::IsDraining(const std::string& instance_id) {
  absl::MutexLock lock(&mu_);
  return draining_.contains(instance_id);
}

void GatewayRoutes::DrainLoop() {
  while (true) {
    std::vector<Pending> due;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ && pending_.empty()) return;
      absl::Time now = clock_->Now();
      for (auto it = pending_.begin(); it != pending_.end();) {
        const bool idle = target_->InFlight(it->instance_id) == 0;
        if (stopping_ || now >= it->deadline || idle) {
          // The grace is over: what still holds the instance is a tunnel
          // (WebSocket) or a slow request; tunnels are closed before the
          // instance is stopped.
          if (!idle) target_->CloseTunnels(it->instance_id);
          due.push_back(std::move(*it));
          it = pending_.erase(it);
        } else {
          ++it;
        }
      }
    }
    // Stop first, then forget the drain: the runtime shows the instance
    // Terminating before the reconciler can count it as live again.
    for (auto& p : due) p.stop();
    absl::MutexLock lock(&mu_);
    for (auto& p : due) draining_.erase(p.instance_id);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                         absl::Milliseconds(pending_.empty() ? 50 : 2));
  }
}

}  // namespace gateway
}  // namespace tidal
