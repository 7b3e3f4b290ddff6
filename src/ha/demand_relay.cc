#include "ha/demand_relay.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "store/keys.h"
#include "tidal/v1/traffic.pb.h"

namespace tidal::ha {

DemandRelay::DemandRelay(Store* store, Options options)
    : store_(store),
      options_(std::move(options)),
      own_prefix_(absl::StrCat(keys::DemandPrefix(), options_.node, "/")) {}

DemandRelay::~DemandRelay() { Stop(); }

void DemandRelay::Start() {
  absl::MutexLock lock(&mu_);
  if (writer_.joinable()) return;
  stopping_ = false;
  writer_ = std::thread([this] { WriteLoop(); });
}

void DemandRelay::Stop() {
  StopWatching();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

void DemandRelay::Report(const std::string& ns, const std::string& app,
                         int held) {
  absl::MutexLock lock(&mu_);
  Local& l = local_[absl::StrCat(ns, "/", app)];
  if (l.desired == std::max(0, held)) return;
  l.desired = std::max(0, held);
  kicked_ = true;
}

int64_t DemandRelay::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

bool DemandRelay::Wait(absl::Duration d, bool watching) {
  absl::MutexLock lock(&mu_);
  if (watching) {
    mu_.AwaitWithTimeout(absl::Condition(&watch_stopping_), d);
    return !watch_stopping_;
  }
  auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || kicked_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&wake), d);
  kicked_ = false;
  return !stopping_;
}

void DemandRelay::WriteLoop() {
  auto log = GetLogger("demand");
  // What an earlier run of this node left holds nothing now.
  while (true) {
    auto list = store_->List(own_prefix_);
    absl::Status st = list.status();
    if (list.ok()) {
      for (const KeyValue& kv : list->items) {
        auto del = store_->Delete(kv.key, kv.resource_version);
        if (!del.ok() && !absl::IsNotFound(del.status()) &&
            !absl::IsFailedPrecondition(del.status())) {
          st = del.status();
        }
      }
    }
    if (st.ok()) break;
    log->warn("clearing this node's old demand records failed (retrying): {}",
              st.ToString());
    if (!Wait(options_.retry, false)) return;
  }
  while (true) {
    // Refresh the counts of the apps with demand from the gateway.
    if (options_.held) {
      std::vector<std::string> apps;
      {
        absl::MutexLock lock(&mu_);
        for (const auto& [key, l] : local_) {
          if (l.desired > 0 || l.written > 0) apps.push_back(key);
        }
      }
      std::vector<std::pair<std::string, int>> counts;
      for (const auto& key : apps) {
        std::vector<std::string> parts =
            absl::StrSplit(key, absl::MaxSplits('/', 1));
        counts.emplace_back(key, options_.held(parts[0], parts[1]));
      }
      absl::MutexLock lock(&mu_);
      for (const auto& [key, n] : counts) {
        auto it = local_.find(key);
        if (it != local_.end()) it->second.desired = std::max(0, n);
      }
    }
    // What is due.
    const absl::Time now = options_.clock->Now();
    std::vector<std::pair<std::string, int>> due;
    {
      absl::MutexLock lock(&mu_);
      for (auto it = local_.begin(); it != local_.end();) {
        Local& l = it->second;
        if (l.desired == l.written) {
          if (l.desired == 0) {
            local_.erase(it++);
            continue;
          }
        } else if ((l.written == 0 && l.desired > 0) ||
                   now - l.last_write >= options_.min_interval) {
          due.emplace_back(it->first, l.desired);
        }
        ++it;
      }
    }
    for (const auto& [key, held] : due) {
      std::vector<std::string> parts =
          absl::StrSplit(key, absl::MaxSplits('/', 1));
      const std::string store_key = absl::StrCat(own_prefix_, key);
      absl::Status st;
      if (held > 0) {
        tidal::v1::DemandRecord r;
        r.set_node(options_.node);
        r.set_namespace_(parts[0]);
        r.set_app(parts[1]);
        r.set_held(held);
        *r.mutable_since() = ToProtoTime(now);
        st = store_->Txn({Op::Put(store_key, r.SerializeAsString())}).status();
      } else {
        st = store_->Delete(store_key).status();
        if (absl::IsNotFound(st)) st = absl::OkStatus();
      }
      absl::MutexLock lock(&mu_);
      Local& l = local_[key];
      l.last_write = now;
      if (st.ok()) {
        l.written = held;
        ++writes_;
      } else {
        log->warn("app={} publishing held requests failed: {}", key,
                  st.ToString());
      }
    }
    if (!Wait(options_.poll, false)) return;
  }
}

void DemandRelay::StartWatching() {
  absl::MutexLock lock(&mu_);
  if (watcher_.joinable()) return;
  watch_stopping_ = false;
  watcher_ = std::thread([this] { WatchLoop(); });
}

void DemandRelay::StopWatching() {
  std::thread t;
  {
    absl::MutexLock lock(&mu_);
    watch_stopping_ = true;
    if (watch_ != nullptr) watch_->Cancel();
    t = std::move(watcher_);
  }
  if (t.joinable()) t.join();
  absl::MutexLock lock(&mu_);
  remote_.clear();
}

int DemandRelay::Held(const std::string& ns, const std::string& app) {
  std::set<std::string> live;
  const bool filter = static_cast<bool>(options_.live_nodes);
  if (filter) {
    for (auto& n : options_.live_nodes()) live.insert(std::move(n));
  }
  const std::string app_key = absl::StrCat(ns, "/", app);
  absl::MutexLock lock(&mu_);
  int sum = 0;
  for (const auto& [key, r] : remote_) {
    if (r.app_key != app_key || r.node == options_.node) continue;
    if (filter && !live.count(r.node)) continue;
    sum += r.held;
  }
  return sum;
}

bool DemandRelay::ApplyRecord(const std::string& key, const std::string& value,
                              std::string* ns, std::string* app) {
  tidal::v1::DemandRecord r;
  if (!r.ParseFromString(value)) return false;
  Remote& rem = remote_[key];
  const bool fresh = rem.held <= 0 && r.held() > 0;
  rem.node = r.node();
  rem.app_key = absl::StrCat(r.namespace_(), "/", r.app());
  rem.held = r.held();
  *ns = r.namespace_();
  *app = r.app();
  return fresh && r.node() != options_.node;
}

void DemandRelay::WatchLoop() {
  auto log = GetLogger("demand");
  absl::Duration retry = options_.retry;
  while (true) {
    auto list = store_->List(keys::DemandPrefix());
    if (!list.ok()) {
      log->warn("listing demand failed (retrying): {}",
                list.status().ToString());
      if (!Wait(retry, true)) return;
      continue;
    }
    std::vector<std::pair<std::string, std::string>> fresh;
    {
      absl::MutexLock lock(&mu_);
      std::map<std::string, Remote> before = std::move(remote_);
      remote_.clear();
      for (const KeyValue& kv : list->items) {
        auto it = before.find(kv.key);
        if (it != before.end()) remote_[kv.key] = it->second;
        std::string ns, app;
        if (ApplyRecord(kv.key, kv.value, &ns, &app))
          fresh.emplace_back(ns, app);
      }
    }
    for (const auto& [ns, app] : fresh) {
      if (options_.on_demand) options_.on_demand(ns, app);
    }
    auto watch =
        store_->WatchPrefix(keys::DemandPrefix(), list->resource_version);
    if (!watch.ok()) {
      log->warn("watching demand failed (retrying): {}",
                watch.status().ToString());
      if (!Wait(retry, true)) return;
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (watch_stopping_) return;
      watch_ = watch->get();
    }
    bool relist_now = false;
    while (true) {
      auto events = (*watch)->Next(absl::Milliseconds(200));
      fresh.clear();
      {
        absl::MutexLock lock(&mu_);
        if (watch_stopping_ || !events.ok()) {
          watch_ = nullptr;
          if (watch_stopping_) return;
          relist_now = absl::IsOutOfRange(events.status());
          if (!relist_now) {
            log->warn("demand watch failed (listing again): {}",
                      events.status().ToString());
          }
          break;
        }
        for (const WatchEvent& ev : *events) {
          if (ev.type == WatchEvent::Type::kDelete) {
            remote_.erase(ev.kv.key);
            continue;
          }
          std::string ns, app;
          if (ApplyRecord(ev.kv.key, ev.kv.value, &ns, &app)) {
            fresh.emplace_back(ns, app);
          }
        }
      }
      for (const auto& [ns, app] : fresh) {
        if (options_.on_demand) options_.on_demand(ns, app);
      }
    }
    if (!relist_now && !Wait(retry, true)) return;
  }
}

}  // namespace tidal::ha
