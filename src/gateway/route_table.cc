#include "gateway/route_table.h"

#include <algorithm>
#include <chrono>

#include "absl/time/clock.h"

namespace tidal::gateway {

uint64_t NextRandom(uint64_t* state) {
  // xorshift64*: fast, good enough for balancing choices.
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

namespace {

// Takes a slot on `e`: a request under the concurrency limit and an
// unconfirmed attempt inside the connect window. A session may still hold a
// route snapshot from before `e` was drained or removed: the flag is checked
// after the increment (both sequentially consistent), so either the drainer
// sees this request in flight or this request sees the flag and backs off;
// never neither.
bool Reserve(EndpointState& e, int limit) {
  int pending = e.unconfirmed.load(std::memory_order_relaxed);
  while (true) {
    if (pending >= e.window.load(std::memory_order_relaxed)) return false;
    if (e.unconfirmed.compare_exchange_weak(pending, pending + 1)) break;
  }
  if (limit <= 0) {
    e.outstanding.fetch_add(1);
  } else {
    int cur = e.outstanding.load(std::memory_order_relaxed);
    while (true) {
      if (cur >= limit) {
        e.unconfirmed.fetch_sub(1);
        return false;
      }
      if (e.outstanding.compare_exchange_weak(cur, cur + 1)) break;
    }
  }
  if (e.draining.load() || e.removed.load()) {
    e.outstanding.fetch_sub(1);
    e.unconfirmed.fetch_sub(1);
    return false;
  }
  return true;
}

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool HasRoom(const EndpointState& e, int limit) {
  if (e.unconfirmed.load(std::memory_order_relaxed) >=
      e.window.load(std::memory_order_relaxed))
    return false;
  return limit <= 0 || e.outstanding.load(std::memory_order_relaxed) < limit;
}

bool Excluded(const EndpointState* e,
              const std::vector<const EndpointState*>& exclude) {
  return std::find(exclude.begin(), exclude.end(), e) != exclude.end();
}

// Refused a connection recently (within its back-off).
bool Down(const EndpointState& e, int64_t now_ns) {
  return e.down_until_ns.load(std::memory_order_relaxed) > now_ns;
}

// Load used to compare endpoints: endpoints that recently refused a
// connection rank after every healthy one.
int64_t Load(const EndpointState& e, int64_t now_ns) {
  int64_t load = e.outstanding.load(std::memory_order_relaxed);
  if (Down(e, now_ns)) load += int64_t{1} << 32;
  return load;
}

}  // namespace

std::shared_ptr<EndpointState> AppState::TryAcquire(
    const AppRoute& route, const std::vector<const EndpointState*>& exclude,
    uint64_t* rng, int64_t now_ns) {
  if (route.total_ready == 0) return nullptr;
  // Revision by weight among revisions that have ready endpoints.
  const AppRoute::Revision* rev = nullptr;
  if (route.revisions.size() == 1) {
    rev = &route.revisions[0];
  } else {
    // A retry skips revisions whose every ready endpoint already failed it,
    // so a canary that refuses connections does not hold the request back.
    auto eligible = [&](const AppRoute::Revision& r) {
      if (r.ready.empty()) return false;
      if (exclude.empty()) return true;
      for (const auto& e : r.ready)
        if (!Excluded(e.get(), exclude)) return true;
      return false;
    };
    int64_t total = 0;
    for (const auto& r : route.revisions) {
      if (eligible(r)) total += std::max(r.weight, 0);
    }
    if (total > 0) {
      int64_t x =
          static_cast<int64_t>(NextRandom(rng) % static_cast<uint64_t>(total));
      for (const auto& r : route.revisions) {
        if (!eligible(r) || r.weight <= 0) continue;
        if (x < r.weight) {
          rev = &r;
          break;
        }
        x -= r.weight;
      }
    } else {
      for (const auto& r : route.revisions) {
        if (eligible(r)) {
          rev = &r;
          break;
        }
      }
    }
  }
  if (rev == nullptr || rev->ready.empty()) return nullptr;
  const auto& eps = rev->ready;
  const size_t n = eps.size();
  if (n == 1) {
    if (Excluded(eps[0].get(), exclude)) return nullptr;
    return Reserve(*eps[0], route.concurrency) ? eps[0] : nullptr;
  }
  if (route.concurrency > 0) {
    // With a concurrency limit, instances are filled in the route's order
    // (tidald lists the instance a scale-down would stop last first,
    // StopsBefore in gateway/route_sink.h): the ones listed last go idle
    // first when the load falls, and the scale-down stops them at no cost
    // instead of draining busy ones. Every gateway of a cluster gets the
    // same order. Endpoints that recently refused a connection come last.
    for (bool down_too : {false, true}) {
      for (const auto& e : eps) {
        if (Excluded(e.get(), exclude) || Down(*e, now_ns) != down_too)
          continue;
        if (Reserve(*e, route.concurrency)) return e;
      }
    }
    return nullptr;
  }
  // Two random choices, least outstanding first.
  size_t i = NextRandom(rng) % n;
  size_t j = NextRandom(rng) % (n - 1);
  if (j >= i) ++j;
  if (Excluded(eps[i].get(), exclude)) std::swap(i, j);
  if (!Excluded(eps[j].get(), exclude) &&
      Load(*eps[j], now_ns) < Load(*eps[i], now_ns)) {
    std::swap(i, j);
  }
  for (size_t c : {i, j}) {
    if (!Excluded(eps[c].get(), exclude) && Reserve(*eps[c], route.concurrency))
      return eps[c];
  }
  // Both full or excluded: any endpoint with room, least loaded first.
  const EndpointState* best = nullptr;
  size_t best_idx = 0;
  for (size_t k = 0; k < n; ++k) {
    const EndpointState* e = eps[k].get();
    if (Excluded(e, exclude)) continue;
    if (!HasRoom(*e, route.concurrency)) continue;
    if (best == nullptr || Load(*e, now_ns) < Load(*best, now_ns)) {
      best = e;
      best_idx = k;
    }
  }
  if (best != nullptr && Reserve(*eps[best_idx], route.concurrency))
    return eps[best_idx];
  return nullptr;
}

namespace {

// An app state's route until the first Update.
std::shared_ptr<const AppRoute> NoRouteYet() {
  auto route = std::make_shared<AppRoute>();
  route->provisional = true;
  return route;
}

}  // namespace

AppState::AppState(std::string ns, std::string app, const AppConfig* config,
                   int64_t created_ns)
    : ns(std::move(ns)),
      app(std::move(app)),
      metrics(config->shards, created_ns),
      config_(config),
      created_ns_(created_ns),
      route_(NoRouteYet()) {}

std::shared_ptr<const AppRoute> AppState::route() const {
  absl::MutexLock lock(&mu_);
  return route_;
}

int AppState::held() const {
  absl::MutexLock lock(&mu_);
  return route_->total_ready == 0 ? static_cast<int>(queue_.size()) : 0;
}

AppState::Outcome AppState::AcquireOrWait(
    const AppRoute& snapshot, const std::shared_ptr<Waiter>& waiter,
    const std::vector<const EndpointState*>& exclude, uint64_t* rng,
    int64_t now_ns, std::shared_ptr<EndpointState>* lease, bool retry) {
  if (!retry && queued_count_.load() == 0) {
    *lease = TryAcquire(snapshot, exclude, rng, now_ns);
    if (*lease) return Outcome::kLeased;
  }
  Dispatches d;
  bool demand = false;
  Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    if (gone_) return Outcome::kGone;
    if (!retry && static_cast<int>(queue_.size()) >= config_->queue_size)
      return Outcome::kOverflow;
    waiter->queued_ = true;
    if (retry) {
      queue_.push_front(waiter);
    } else {
      queue_.push_back(waiter);
    }
    queued_count_.fetch_add(1);
    waiter->held_since_ns_ = 0;
    if (route_->total_ready == 0) {
      waiter->held_since_ns_ = SteadyNowNs();
      cold_start_pending_ = true;
      if (!demand_signalled_) {
        demand_signalled_ = true;
        demand = true;
      }
    }
    DispatchLocked(&d);
    outcome = Outcome::kQueued;
  }
  Run(d);
  if (demand && config_->on_demand) config_->on_demand(ns, app);
  return outcome;
}

bool AppState::Cancel(Waiter* waiter) {
  absl::MutexLock lock(&mu_);
  if (!waiter->queued_) return false;
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->get() == waiter) {
      queue_.erase(it);
      break;
    }
  }
  waiter->queued_ = false;
  queued_count_.fetch_sub(1);
  if (queue_.empty()) {
    demand_signalled_ = false;
    cold_start_pending_ = false;
  }
  return true;
}

void AppState::Settle(EndpointState& e, Attempt how) {
  e.unconfirmed.fetch_sub(1);
  int w = e.window.load(std::memory_order_relaxed);
  int next = w;
  do {
    switch (how) {
      case Attempt::kConfirmed:
        next = std::min(w + 1, kMaxConnectWindow);
        break;
      case Attempt::kStalled:
        next = std::max(w / 2, 1);
        break;
      case Attempt::kAbandoned:
        next = w;
        break;
    }
  } while (next != w && !e.window.compare_exchange_weak(w, next));
  if (queued_count_.load() > 0) {
    Dispatches d;
    {
      absl::MutexLock lock(&mu_);
      DispatchLocked(&d);
    }
    Run(d);
  }
}

void AppState::Release(const std::shared_ptr<EndpointState>& lease) {
  int left = lease->outstanding.fetch_sub(1) - 1;
  if (left == 0 && (lease->draining.load() || lease->removed.load()) &&
      config_->drain_mu) {
    absl::MutexLock lock(config_->drain_mu);
    config_->drain_cv->SignalAll();
  }
  if (queued_count_.load() > 0) {
    Dispatches d;
    {
      absl::MutexLock lock(&mu_);
      DispatchLocked(&d);
    }
    Run(d);
  }
}

void AppState::DispatchLocked(Dispatches* out) {
  static const std::vector<const EndpointState*> kNone;
  while (!queue_.empty()) {
    if (gone_) {
      out->emplace_back(queue_.front(), nullptr);
    } else {
      auto lease = TryAcquire(*route_, kNone, &dispatch_rng_, 0);
      if (!lease) break;
      Waiter& w = *queue_.front();
      if (w.held_since_ns_ != 0) {
        // Held by the activator, now served: one cold start's wait.
        const int64_t waited =
            std::max<int64_t>(SteadyNowNs() - w.held_since_ns_, 0);
        ++cold_starts_.wait_buckets[BucketFor(waited)];
        cold_starts_.wait_sum_s += waited / 1e9;
        if (cold_start_pending_) {
          ++cold_starts_.total;
          cold_start_pending_ = false;
        }
      }
      out->emplace_back(queue_.front(), std::move(lease));
    }
    queue_.front()->queued_ = false;
    queue_.front()->held_since_ns_ = 0;
    queue_.pop_front();
    queued_count_.fetch_sub(1);
  }
  if (queue_.empty()) {
    demand_signalled_ = false;
    cold_start_pending_ = false;
  }
}

void AppState::Run(Dispatches& d) {
  for (auto& [waiter, lease] : d) waiter->Dispatch(std::move(lease));
}

std::shared_ptr<const AppRoute> AppState::Update(
    const Route& route, std::atomic<uint64_t>* next_uid,
    std::vector<std::shared_ptr<EndpointState>>* added) {
  auto next = std::make_shared<AppRoute>();
  next->concurrency = std::max(route.concurrency, 0);
  next->timeout_ms = absl::ToInt64Milliseconds(route.timeout);
  next->response_start_timeout_ms =
      absl::ToInt64Milliseconds(route.response_start_timeout);
  next->idle_timeout_ms = absl::ToInt64Milliseconds(route.idle_timeout);
  next->h2 = route.h2;
  Dispatches d;
  {
    absl::MutexLock lock(&mu_);
    absl::flat_hash_map<std::string, std::shared_ptr<EndpointState>> endpoints;
    const int64_t now_ns = absl::GetCurrentTimeNanos();
    exposed_revisions_.clear();
    for (const RevisionRoute& rr : route.revisions) {
      // The empty route of an app with no ready instance (revision 0, no
      // endpoint) serves nothing and gets no metrics of its own.
      std::shared_ptr<TrafficMetrics> metrics;
      if (rr.revision != 0 || !rr.endpoints.empty()) {
        auto& m = revision_metrics_[rr.revision];
        if (!m)
          m = std::make_shared<TrafficMetrics>(config_->shards, created_ns_);
        metrics = m;
        revision_routed_ns_[rr.revision] = now_ns;
        exposed_revisions_.insert(rr.revision);
      }
      AppRoute::Revision rev;
      rev.revision = rr.revision;
      rev.weight = rr.weight_percent;
      for (const Endpoint& e : rr.endpoints) {
        std::shared_ptr<EndpointState> state;
        auto it = endpoints_.find(e.instance_id);
        if (it != endpoints_.end() && it->second->host == e.host &&
            it->second->port == e.port && it->second->revision == rr.revision) {
          state = it->second;
        } else {
          state = std::make_shared<EndpointState>(next_uid->fetch_add(1), e,
                                                  rr.revision, metrics);
          added->push_back(state);
        }
        state->draining.store(e.draining);
        endpoints[e.instance_id] = state;
        if (!e.draining) rev.ready.push_back(state);
      }
      next->total_ready += static_cast<int>(rev.ready.size());
      next->revisions.push_back(std::move(rev));
    }
    for (auto& [id, state] : endpoints_) {
      auto it = endpoints.find(id);
      if (it == endpoints.end() || it->second != state)
        state->removed.store(true);
    }
    // Live revisions out of the route (the app at zero, instances not
    // ready yet) keep their figures and their series.
    for (int64_t rev : route.live_revisions) {
      if (revision_metrics_.count(rev) == 0) continue;
      revision_routed_ns_[rev] = now_ns;
      exposed_revisions_.insert(rev);
    }
    // Forget revisions long out of the route (a request still in flight
    // keeps its TrafficMetrics alive through its own reference).
    constexpr int64_t kForgetAfterNs = 15LL * 60 * 1000 * 1000 * 1000;
    for (auto it = revision_routed_ns_.begin();
         it != revision_routed_ns_.end();) {
      if (now_ns - it->second > kForgetAfterNs) {
        revision_metrics_.erase(it->first);
        it = revision_routed_ns_.erase(it);
      } else {
        ++it;
      }
    }
    endpoints_ = std::move(endpoints);
    route_ = next;
    DispatchLocked(&d);
  }
  if (config_->drain_mu) {
    absl::MutexLock lock(config_->drain_mu);
    config_->drain_cv->SignalAll();
  }
  Run(d);
  return next;
}

void AppState::Remove() {
  Dispatches d;
  {
    absl::MutexLock lock(&mu_);
    gone_ = true;
    for (auto& [id, state] : endpoints_) state->removed.store(true);
    endpoints_.clear();
    route_ = std::make_shared<AppRoute>();
    DispatchLocked(&d);
  }
  if (config_->drain_mu) {
    absl::MutexLock lock(config_->drain_mu);
    config_->drain_cv->SignalAll();
  }
  Run(d);
}

std::vector<std::pair<int64_t, std::shared_ptr<TrafficMetrics>>>
AppState::RevisionMetrics() const {
  absl::MutexLock lock(&mu_);
  return {revision_metrics_.begin(), revision_metrics_.end()};
}

std::vector<std::pair<int64_t, std::shared_ptr<TrafficMetrics>>>
AppState::ExposedRevisionMetrics() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<int64_t, std::shared_ptr<TrafficMetrics>>> out;
  for (const auto& [rev, m] : revision_metrics_) {
    if (exposed_revisions_.count(rev) > 0) out.emplace_back(rev, m);
  }
  return out;
}

ColdStarts AppState::cold_starts() const {
  absl::MutexLock lock(&mu_);
  return cold_starts_;
}

std::shared_ptr<TrafficMetrics> AppState::RevisionMetrics(
    int64_t revision) const {
  absl::MutexLock lock(&mu_);
  auto it = revision_metrics_.find(revision);
  return it == revision_metrics_.end() ? nullptr : it->second;
}

void AppState::Tick(absl::Time second, int64_t now_ns) {
  metrics.Tick(second, now_ns);
  for (auto& [rev, m] : RevisionMetrics()) m->Tick(second, now_ns);
}

}  // namespace tidal::gateway
