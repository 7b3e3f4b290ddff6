#include "ha/store_routes.h"

#include <set>

#include "absl/container/flat_hash_map.h"
#include "common/logging.h"
#include "ha/route_record.h"
#include "store/keys.h"

namespace tidal::ha {
namespace {

std::set<std::string> IdsOf(const tidal::v1::RouteRecord& r) {
  std::set<std::string> ids;
  for (const auto& rev : r.revisions()) {
    for (const auto& ep : rev.endpoints()) ids.insert(ep.instance_id());
  }
  return ids;
}

std::set<std::string> IdsOf(const std::optional<std::string>& bytes) {
  tidal::v1::RouteRecord r;
  if (!bytes || !r.ParseFromString(*bytes)) return {};
  return IdsOf(r);
}

}  // namespace

// The store as the GatewayRoutes' route table: keeps the wanted record per
// app and writes it on its own thread; answers InFlight for the drainer from
// what is published and what the gateways report.
class StoreRouteSink::Publisher : public gateway::RouteTarget {
 public:
  Publisher(Store* store, Clock* clock, std::vector<InFlightView*> views,
            absl::Duration retry)
      : store_(store), clock_(clock), views_(std::move(views)), retry_(retry) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Publisher() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

  void SetRoute(const gateway::Route& route) override {
    Want(keys::Route(route.ns, route.app), ToRecord(route).SerializeAsString());
  }
  void RemoveRoute(const std::string& ns, const std::string& app) override {
    Want(keys::Route(ns, app), std::nullopt);
  }

  int InFlight(const std::string& instance_id) const override {
    int64_t removed_at = 0;
    {
      absl::MutexLock lock(&mu_);
      // Still in a published route (its removal not written yet).
      if (published_index_.contains(instance_id)) return 1;
      auto it = removed_at_.find(instance_id);
      if (it != removed_at_.end()) removed_at = it->second.first;
    }
    if (views_.empty()) return 1;  // nobody to ask: wait for the grace
    int sum = 0;
    for (InFlightView* v : views_) {
      const int n = v->InFlight(instance_id, removed_at);
      if (n < 0) return 1;
      sum += n;
    }
    return sum;
  }

  int64_t writes() const {
    absl::MutexLock lock(&mu_);
    return writes_;
  }

  void Resync() {
    absl::MutexLock lock(&mu_);
    for (auto& [key, e] : entries_) {
      e.known = false;
      e.published.reset();
    }
    published_index_.clear();
    dirty_ = true;
  }

 private:
  struct Entry {
    std::optional<std::string> desired;
    bool known = false;  // `published` read from the store or written
    std::optional<std::string> published;
  };

  void Want(const std::string& key, std::optional<std::string> bytes) {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = entries_.try_emplace(key);
    Entry& e = it->second;
    if (!inserted && e.desired == bytes) return;  // nothing new
    e.desired = std::move(bytes);
    dirty_ = true;
  }

  void SetPublished(const std::string& key, Entry& e,
                    std::optional<std::string> bytes, int64_t revision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::set<std::string> before =
        e.known ? IdsOf(e.published) : std::set<std::string>();
    std::set<std::string> after = IdsOf(bytes);
    const absl::Time now = clock_->Now();
    for (const auto& id : before) {
      if (after.count(id)) continue;
      published_index_.erase(id);
      removed_at_[id] = {revision, now};
    }
    for (const auto& id : after) {
      published_index_[id] = key;
      removed_at_.erase(id);
    }
    e.published = std::move(bytes);
    e.known = true;
  }

  void Loop() {
    auto log = GetLogger("routes");
    absl::Time last_error_log = absl::InfinitePast();
    while (true) {
      std::vector<std::pair<std::string, Entry>> work;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        dirty_ = false;
        for (auto it = entries_.begin(); it != entries_.end();) {
          Entry& e = it->second;
          if (e.known && e.desired == e.published) {
            if (!e.desired) {
              entries_.erase(it++);
              continue;
            }
          } else {
            work.emplace_back(it->first, e);
          }
          ++it;
        }
        // Removals older than an hour: every drain is long over.
        const absl::Time horizon = clock_->Now() - absl::Hours(1);
        for (auto it = removed_at_.begin(); it != removed_at_.end();) {
          if (it->second.second < horizon) {
            removed_at_.erase(it++);
          } else {
            ++it;
          }
        }
      }
      bool failed = false;
      for (auto& [key, e] : work) {
        absl::Status st = Publish(key, e);
        if (!st.ok()) {
          failed = true;
          if (absl::Now() - last_error_log > absl::Seconds(30)) {
            log->warn("publishing route {} failed (retrying): {}", key,
                      st.ToString());
            last_error_log = absl::Now();
          }
        }
      }
      absl::MutexLock lock(&mu_);
      if (failed) {
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), retry_);
      } else {
        auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || dirty_;
        };
        mu_.Await(absl::Condition(&wake));
      }
    }
  }

  // Writes the wanted record of `key` if the store holds something else.
  absl::Status Publish(const std::string& key, const Entry& snapshot) {
    if (!snapshot.known) {
      auto kv = store_->Get(key);
      absl::MutexLock lock(&mu_);
      Entry& e = entries_[key];
      if (kv.ok()) {
        SetPublished(key, e, kv->value, kv->resource_version);
      } else if (absl::IsNotFound(kv.status())) {
        SetPublished(key, e, std::nullopt, 0);
      } else {
        return kv.status();
      }
      if (e.published == snapshot.desired) return absl::OkStatus();
    }
    absl::StatusOr<int64_t> rev =
        snapshot.desired ? store_->Txn({Op::Put(key, *snapshot.desired)})
                         : store_->Txn({Op::Delete(key)});
    if (!rev.ok() && !snapshot.desired && absl::IsNotFound(rev.status())) {
      rev = store_->CurrentVersion();
    }
    if (!rev.ok()) return rev.status();
    absl::MutexLock lock(&mu_);
    SetPublished(key, entries_[key], snapshot.desired, *rev);
    ++writes_;
    return absl::OkStatus();
  }

  // Constant after construction.
  Store* const store_;
  Clock* const clock_;
  const std::vector<InFlightView*> views_;
  const absl::Duration retry_;

  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Instance id -> the key of the published route that holds it.
  absl::flat_hash_map<std::string, std::string> published_index_
      ABSL_GUARDED_BY(mu_);
  // Instance id -> (revision of the write that took it out, when).
  absl::flat_hash_map<std::string, std::pair<int64_t, absl::Time>> removed_at_
      ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

StoreRouteSink::StoreRouteSink(Store* store, Options options)
    : publisher_(std::make_unique<Publisher>(
          store, options.clock, std::move(options.views), options.retry)),
      routes_(std::make_unique<gateway::GatewayRoutes>(publisher_.get(),
                                                       options.clock)) {}

StoreRouteSink::~StoreRouteSink() {
  routes_.reset();  // stops what still drains, before the publisher goes
  publisher_.reset();
}

void StoreRouteSink::UpdateRoute(
    const tidal::v1::App& app,
    const std::vector<tidal::v1::Instance>& serving) {
  routes_->UpdateRoute(app, serving);
}

void StoreRouteSink::RemoveRoute(const std::string& ns,
                                 const std::string& name) {
  routes_->RemoveRoute(ns, name);
}

void StoreRouteSink::Drain(const tidal::v1::Instance& instance,
                           absl::Duration grace, std::function<void()> stop) {
  routes_->Drain(instance, grace, std::move(stop));
}

bool StoreRouteSink::IsDraining(const std::string& instance_id) {
  return routes_->IsDraining(instance_id);
}

void StoreRouteSink::SetWeights(const std::string& ns, const std::string& name,
                                std::vector<std::pair<int64_t, int>> weights) {
  routes_->SetWeights(ns, name, std::move(weights));
}

void StoreRouteSink::Resync() { publisher_->Resync(); }

int64_t StoreRouteSink::writes() const { return publisher_->writes(); }

}  // namespace tidal::ha
