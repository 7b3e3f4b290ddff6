#include "ha/route_watcher.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "ha/route_record.h"
#include "store/keys.h"

namespace tidal::ha {
namespace {

class GatewayTarget : public gateway::RouteTarget {
 public:
  explicit GatewayTarget(gateway::Gateway* gw) : gw_(gw) {}
  void SetRoute(const gateway::Route& route) override { gw_->SetRoute(route); }
  void RemoveRoute(const std::string& ns, const std::string& app) override {
    gw_->RemoveRoute(ns, app);
  }
  int InFlight(const std::string& instance_id) const override {
    return gw_->InFlight(instance_id);
  }

 private:
  gateway::Gateway* const gw_;
};

}  // namespace

RouteWatcher::RouteWatcher(Store* store, gateway::Gateway* gw, Options options)
    : store_(store),
      own_target_(std::make_unique<GatewayTarget>(gw)),
      target_(own_target_.get()),
      options_(options) {}

RouteWatcher::RouteWatcher(Store* store, gateway::RouteTarget* target,
                           Options options)
    : store_(store), target_(target), options_(options) {}

RouteWatcher::~RouteWatcher() { Stop(); }

void RouteWatcher::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void RouteWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (watch_ != nullptr) watch_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

bool RouteWatcher::synced() const {
  absl::MutexLock lock(&mu_);
  return synced_;
}

int64_t RouteWatcher::applied_version() const {
  absl::MutexLock lock(&mu_);
  return version_;
}

RouteWatcher::Routing RouteWatcher::Report() {
  absl::MutexLock lock(&mu_);
  Routing r;
  r.version = version_;
  for (const auto& [key, applied] : routes_) {
    for (const auto& id : applied.ids) {
      const int n = target_->InFlight(id);
      if (n > 0) r.in_flight[id] = n;
    }
  }
  for (auto it = leaving_.begin(); it != leaving_.end();) {
    const int n = target_->InFlight(*it);
    if (n > 0) {
      r.in_flight[*it] += n;
      ++it;
    } else {
      it = leaving_.erase(it);
    }
  }
  return r;
}

int RouteWatcher::InFlight(const std::string& instance_id,
                           int64_t routes_version) {
  absl::MutexLock lock(&mu_);
  if (!synced_ || version_ < routes_version) return -1;
  return target_->InFlight(instance_id);
}

void RouteWatcher::ApplyPut(const KeyValue& kv) {
  tidal::v1::RouteRecord record;
  if (!record.ParseFromString(kv.value)) {
    GetLogger("routes")->warn("ignoring unreadable route record {}", kv.key);
    return;
  }
  gateway::Route route = FromRecord(record);
  Applied next;
  next.ns = route.ns;
  next.app = route.app;
  for (const auto& rev : route.revisions) {
    for (const auto& e : rev.endpoints) next.ids.insert(e.instance_id);
  }
  auto it = routes_.find(kv.key);
  if (it != routes_.end()) {
    for (const auto& id : it->second.ids) {
      if (!next.ids.count(id)) leaving_.insert(id);
    }
  }
  for (const auto& id : next.ids) leaving_.erase(id);
  target_->SetRoute(route);
  routes_[kv.key] = std::move(next);
}

void RouteWatcher::ApplyDelete(const std::string& key) {
  auto it = routes_.find(key);
  if (it == routes_.end()) return;
  for (const auto& id : it->second.ids) leaving_.insert(id);
  target_->RemoveRoute(it->second.ns, it->second.app);
  routes_.erase(it);
}

bool RouteWatcher::Backoff(absl::Duration* d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), *d);
  *d = std::min(*d * 2, options_.retry_max);
  return !stopping_;
}

void RouteWatcher::Loop() {
  auto log = GetLogger("routes");
  absl::Duration retry = options_.retry_min;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    auto list = store_->List(keys::RoutePrefix());
    if (!list.ok()) {
      log->warn("listing routes failed (retrying): {}",
                list.status().ToString());
      if (!Backoff(&retry)) return;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      std::set<std::string> listed;
      for (const KeyValue& kv : list->items) {
        listed.insert(kv.key);
        ApplyPut(kv);
      }
      std::vector<std::string> gone;
      for (const auto& [key, applied] : routes_) {
        if (!listed.count(key)) gone.push_back(key);
      }
      for (const auto& key : gone) ApplyDelete(key);
      version_ = std::max(version_, list->resource_version);
      synced_ = true;
    }
    auto watch =
        store_->WatchPrefix(keys::RoutePrefix(), list->resource_version);
    if (!watch.ok()) {
      log->warn("watching routes failed (retrying): {}",
                watch.status().ToString());
      if (!Backoff(&retry)) return;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      watch_ = watch->get();
    }
    retry = options_.retry_min;
    bool relist_now = false;
    while (true) {
      auto events = (*watch)->Next(options_.poll);
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        watch_ = nullptr;
        return;
      }
      if (!events.ok()) {
        watch_ = nullptr;
        if (absl::IsOutOfRange(events.status())) {
          log->info("route watch fell behind; listing again");
          relist_now = true;
        } else {
          log->warn("route watch failed (listing again): {}",
                    events.status().ToString());
        }
        break;
      }
      for (const WatchEvent& ev : *events) {
        if (ev.type == WatchEvent::Type::kPut) {
          ApplyPut(ev.kv);
        } else {
          ApplyDelete(ev.kv.key);
        }
        version_ = std::max(version_, ev.kv.resource_version);
      }
    }
    if (!relist_now && !Backoff(&retry)) return;
  }
}

}  // namespace tidal::ha
