#include "scaler/multi_scaler.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "api/spec.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "scaler/app_inputs.h"
#include "scaler/autoscaler.h"
#include "store/keys.h"

namespace tidal {
namespace {

using tidal::v1::App;
using tidal::v1::Instance;

// Apps with a fixed replica count (or no scaling section) are not scaled.
bool Scaled(const App& app) {
  return !app.spec().has_replicas() && app.spec().has_scaling();
}

// What a scaler is built from: a change recreates it.
std::string Fingerprint(const App& app) {
  return absl::StrCat(app.spec().scaling().SerializeAsString(), "|",
                      app.spec().template_().concurrency());
}

double Round(double v) { return std::round(v * 100) / 100; }

// What cpu and memory utilization are measured against when the template
// sets no resources: one core, and 512 MiB (docs/scaling.md).
constexpr int64_t kDefaultCpuMillis = 1000;
constexpr int64_t kDefaultMemoryBytes = int64_t{512} << 20;

}  // namespace

// Metrics cpu and memory: turns the runtime's usage figures into the
// per-instance utilization the scaler records, once per complete second.
// Owned by one planner entry, used under its lock.
class UtilizationSampler {
 public:
  static bool Wanted(const App& app) {
    const std::string& m = app.spec().scaling().metric();
    return m == "cpu" || m == "memory";
  }

  UtilizationSampler(const App& app, absl::Time now)
      : next_sec_(absl::ToUnixSeconds(now)) {
    SetResources(app);
  }

  // The template's resources (they may change without recreating the
  // scaler).
  void SetResources(const App& app) {
    const tidal::v1::Resources& r = app.spec().template_().resources();
    cpu_millis_ = r.cpu_millis() > 0 ? r.cpu_millis() : kDefaultCpuMillis;
    memory_bytes_ =
        r.memory_bytes() > 0 ? r.memory_bytes() : kDefaultMemoryBytes;
  }

  // Reads the usage of the app's instances and records, for every complete
  // second since the last recording (at most one stable window of them),
  // the average utilization over the `ready` instances that have a figure
  // (the others are counted as missing): CPU from the CPU seconds used since
  // this instance's previous sample over the time between the samples,
  // memory from the resident bytes now.
  void Sample(Runtime* runtime, const std::string& ns, const std::string& name,
              const absl::flat_hash_set<std::string>& ready, absl::Time now,
              scaler::AppScaler* s) {
    const int64_t now_sec = absl::ToUnixSeconds(now);
    if (now_sec <= next_sec_) return;  // nothing complete since last time
    double cpu_sum = 0, mem_sum = 0;
    int cpu_n = 0, mem_n = 0;
    absl::flat_hash_map<std::string, Prev> next;
    if (!ready.empty()) {
      for (const InstanceUsage& u : runtime->Usage(ns, name)) {
        if (!ready.contains(u.instance_id)) continue;
        next[u.instance_id] = Prev{u.cpu_seconds, u.sampled_at};
        mem_sum += 100.0 * static_cast<double>(u.memory_bytes) /
                   static_cast<double>(memory_bytes_);
        ++mem_n;
        auto it = prev_.find(u.instance_id);
        // A restarted process starts its CPU seconds again: a new baseline.
        if (it == prev_.end() || u.sampled_at <= it->second.at ||
            u.cpu_seconds < it->second.cpu_seconds) {
          continue;
        }
        const double wall = absl::ToDoubleSeconds(u.sampled_at - it->second.at);
        cpu_sum += 100.0 * (u.cpu_seconds - it->second.cpu_seconds) / wall /
                   (static_cast<double>(cpu_millis_) / 1000.0);
        ++cpu_n;
      }
    }
    prev_ = std::move(next);
    const bool cpu = s->config().metric == scaler::Metric::kCpu;
    const int n = cpu ? cpu_n : mem_n;
    // Ready instances with no figure of their own (no usage reported, or
    // for CPU a first sample, which gives no rate yet): missing to hpa.
    s->SetMissing(static_cast<int32_t>(ready.size()) - n);
    // Ready instances but no rate yet (their first sample): wait for the
    // next tick, which fills these seconds too.
    if (n == 0 && !prev_.empty()) return;
    if (n > 0) {
      const double cpu_pct = cpu_n > 0 ? cpu_sum / cpu_n : 0;
      const double mem_pct = mem_n > 0 ? mem_sum / mem_n : 0;
      const int64_t window =
          absl::ToInt64Seconds(s->config().stable_window) + 1;
      for (int64_t sec = std::max(next_sec_, now_sec - window); sec < now_sec;
           ++sec) {
        s->RecordUtilization(absl::FromUnixSeconds(sec), cpu_pct, mem_pct);
      }
    }
    next_sec_ = now_sec;
  }

 private:
  struct Prev {
    double cpu_seconds;
    absl::Time at;
  };
  int64_t cpu_millis_ = kDefaultCpuMillis;
  int64_t memory_bytes_ = kDefaultMemoryBytes;
  absl::flat_hash_map<std::string, Prev> prev_;  // by instance id
  int64_t next_sec_;  // first second not recorded yet
};

namespace {}  // namespace

MultiScaler::MultiScaler(Inputs inputs, Options options)
    : store_(inputs.store),
      runtime_(inputs.runtime),
      metrics_(inputs.metrics),
      queued_(std::move(inputs.queued)),
      clock_(inputs.clock),
      on_change_(std::move(inputs.on_change)),
      demand_(inputs.demand),
      options_(options) {}

MultiScaler::~MultiScaler() { Stop(); }

void MultiScaler::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (thread_.joinable()) return;
    stopping_ = false;
    stopped_ = false;
    thread_ = std::thread([this] { Loop(); });
  }
  if (demand_ != nullptr) {
    demand_->Listen([this](const std::string& ns, const std::string& app) {
      Wake(ns, app);
    });
  }
}

void MultiScaler::Stop() {
  if (stopped_.exchange(true)) return;
  // No wake-up runs once Unlisten returns.
  if (demand_ != nullptr) demand_->Unlisten();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  SaveAll();
}

size_t MultiScaler::size() const {
  absl::MutexLock lock(&mu_);
  return apps_.size();
}

void MultiScaler::Loop() {
  while (true) {
    RunDue();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const int64_t now_ns = absl::ToUnixNanos(clock_->Now());
    int64_t wait_ns = absl::ToInt64Nanoseconds(options_.max_idle_wait);
    for (const auto& [key, e] : apps_) {
      wait_ns = std::min(wait_ns, e->next_tick_ns.load() - now_ns);
    }
    wait_ns = std::max<int64_t>(wait_ns, 1000000);  // at least 1 ms
    mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                         absl::Nanoseconds(wait_ns));
    if (stopping_) return;
  }
}

bool MultiScaler::Step(Entry* e, absl::Time now) {
  scaler::AppScaler* s = e->scaler.get();
  // Complete seconds of traffic, in order.
  if (metrics_ != nullptr) {
    for (const MetricSample& m :
         metrics_->Samples(e->ns, e->name, 0, e->last_sample)) {
      s->Record(m);
      e->last_sample = std::max(e->last_sample, m.time);
    }
  }
  // Instances: ready, and ready + starting. Newly ready ones tell how long an
  // instance takes to start.
  int32_t ready = 0, current = 0;
  absl::flat_hash_set<std::string> ready_now;
  std::vector<absl::Duration> starts;
  for (const Instance& inst : runtime_->List(e->ns, e->name)) {
    if (inst.phase() == "Terminating") continue;
    ++current;
    if (!inst.ready()) continue;
    ++ready;
    ready_now.insert(inst.id());
    if (!e->ready_seen.contains(inst.id()) && inst.has_ready_time() &&
        inst.has_start_time()) {
      starts.push_back(FromProtoTime(inst.ready_time()) -
                       FromProtoTime(inst.start_time()));
    }
  }
  s->SetInstances(ready, current);
  if (e->usage) e->usage->Sample(runtime_, e->ns, e->name, ready_now, now, s);
  e->ready_seen = std::move(ready_now);
  s->SetWaiting(now, queued_ ? queued_(e->ns, e->name) : 0);
  s->SetMetricsUnknown(metrics_ != nullptr &&
                       metrics_->Incomplete(e->ns, e->name));
  for (absl::Duration d : starts) s->ObserveStartDuration(d);

  Plan before = e->plan;
  bool had = e->has_plan;
  Publish(e, now);
  // Only what the reconciler acts on or users watch for; the value alone
  // moving does not cost a reconcile.
  return !had || before.replicas != e->plan.replicas ||
         before.status.panic() != e->plan.status.panic() ||
         before.status.min_replicas() != e->plan.status.min_replicas() ||
         before.status.max_replicas() != e->plan.status.max_replicas() ||
         before.status.active_schedules_size() !=
             e->plan.status.active_schedules_size();
}

void MultiScaler::Publish(Entry* e, absl::Time now) {
  scaler::Decision d = e->scaler->Decide(now);
  Plan& p = e->plan;
  const bool changed = !e->has_plan || p.replicas != d.desired_replicas;
  p.replicas = d.desired_replicas;
  // The event names its own counts (the instances before and after).
  p.reason = d.cause;
  p.has_status = true;
  tidal::v1::ScalingStatus& st = p.status;
  st.set_metric(scaler::MetricName(d.metric));
  st.set_value(Round(d.value));
  // The spec's target and the utilization the scaler aims at, apart (the
  // decision's target is their product for concurrency and rps).
  const scaler::ScalerConfig& cfg = e->scaler->config();
  const bool utilized = cfg.metric == scaler::Metric::kConcurrency ||
                        cfg.metric == scaler::Metric::kRps;
  st.set_target(Round(utilized ? cfg.target : d.target));
  st.set_target_utilization(utilized ? cfg.target_utilization : 100);
  st.set_panic(d.panic);
  st.set_last_reason(d.reason);
  st.clear_active_schedules();
  for (const auto& a : d.active_schedules) st.add_active_schedules(a);
  st.set_min_replicas(d.min_replicas);
  st.set_max_replicas(d.max_replicas);
  if (changed && e->has_plan) *st.mutable_last_scale_time() = ToProtoTime(now);
  e->has_plan = true;
}

void MultiScaler::Save(Entry* e) {
  e->last_save = clock_->Now();
  // Without a store (tests, the simulator's wiring) there is nowhere to save.
  if (store_ == nullptr || e->scaler == nullptr) return;
  std::string state = e->scaler->SaveState();
  if (state == e->saved_state) return;
  auto st = store_->Txn({Op::Put(keys::ScalerStateKey(e->ns, e->name), state)});
  if (!st.ok()) {
    GetLogger("scaler")->warn("app={} saving scaler state failed: {}", e->key,
                              st.status().ToString());
    return;
  }
  e->saved_state = std::move(state);
}

std::shared_ptr<MultiScaler::Entry> MultiScaler::Create(
    const App& app, const std::string& fingerprint,
    const std::vector<Instance>& insts, Entry* previous) {
  auto log = GetLogger("scaler");
  const absl::Time now = clock_->Now();
  auto e = std::make_shared<Entry>();
  e->ns = app.metadata().namespace_();
  e->name = app.metadata().name();
  e->key = absl::StrCat(e->ns, "/", e->name);
  e->fingerprint = fingerprint;
  // Nobody else sees `e` yet; the lock is for the guarded fields' contract.
  absl::MutexLock lock(&e->mu);

  // The spec's scaling with the planner's rules (minReplicas 0 starts at
  // zero; an explicit grace period is the tidal fallback keep-alive), shared
  // with `tidalctl simulate`.
  scaler::AppScalerInputs in = scaler::AppScalerInputsFor(app.spec());
  scaler::AppScalerOptions& opts = in.options;
  for (const Instance& inst : insts) {
    if (inst.phase() == "Terminating") continue;
    ++opts.current_at_start;
    if (inst.ready()) {
      ++opts.ready_at_start;
      e->ready_seen.insert(inst.id());
    }
  }
  auto s = scaler::AppScaler::Create(in.scaling, now, opts);
  if (!s.ok()) {
    log->warn(
        "app={} scaling spec rejected, keeping the base replica count: {}",
        e->key, s.status().ToString());
    return nullptr;
  }
  std::string state;
  // algorithm kpa: a spec change keeps the scaler (Knative's Update): its
  // windows, panic mode and scale-down delay carry over. algorithm hpa: its
  // recommendations and scale events carry over, as the HPA controller's
  // do across an update of the HPA.
  std::unique_ptr<scaler::AppScaler> updated;
  absl::Time updated_last_sample;
  bool kept = false;
  if (previous != nullptr) {
    absl::MutexLock previous_lock(&previous->mu);
    const scaler::Algorithm algorithm = (*s)->config().algorithm;
    if (previous->scaler &&
        (algorithm == scaler::Algorithm::kKpa ||
         algorithm == scaler::Algorithm::kHpa) &&
        previous->scaler->config().algorithm == algorithm &&
        previous->scaler->Update(in.scaling, opts).ok()) {
      updated = std::move(previous->scaler);
      updated_last_sample = previous->last_sample;
      kept = true;
      e->ready_seen = previous->ready_seen;
    } else if (previous->scaler) {
      state = previous->scaler->SaveState();
    }
    previous->retired = true;
  } else if (store_ != nullptr) {
    auto kv = store_->Get(keys::ScalerStateKey(e->ns, e->name));
    if (kv.ok()) {
      state = kv->value;
      e->saved_state = state;
    }
  }
  if (!state.empty()) {
    if (auto st = (*s)->RestoreState(state); !st.ok()) {
      log->warn("app={} ignoring saved scaler state: {}", e->key,
                st.ToString());
    }
  }
  if (kept) *s = std::move(updated);
  e->tick = (*s)->tick();
  e->scaler = std::move(*s);
  e->last_sample =
      kept ? updated_last_sample : now - e->scaler->config().stable_window;
  e->last_save = now;
  e->next_tick_ns = NextTickNs(*e, absl::ToUnixNanos(now));
  if (UtilizationSampler::Wanted(app)) {
    e->usage = std::make_unique<UtilizationSampler>(app, now);
  }
  Step(e.get(), now);
  log->info("app={} scaler {} ({} on {}): {} replicas ({})", e->key,
            previous == nullptr ? "created"
            : kept              ? "updated"
                                : "recreated",
            scaler::AlgorithmName(e->scaler->config().algorithm),
            scaler::MetricName(e->scaler->config().metric), e->plan.replicas,
            e->plan.reason);
  return e;
}

ReplicaPlanner::Plan MultiScaler::Desired(
    const App& app, const std::vector<Instance>& instances) {
  const std::string key =
      absl::StrCat(app.metadata().namespace_(), "/", app.metadata().name());
  if (!Scaled(app)) {
    std::shared_ptr<Entry> gone;
    {
      absl::MutexLock lock(&mu_);
      auto it = apps_.find(key);
      if (it != apps_.end()) {
        gone = std::move(it->second);
        apps_.erase(it);
      }
    }
    if (gone) {
      absl::MutexLock lock(&gone->mu);
      gone->retired = true;
      Save(gone.get());
    }
    Plan plan;
    plan.replicas = spec::BaseReplicas(app.spec());
    return plan;
  }
  const std::string fp = Fingerprint(app);
  std::shared_ptr<Entry> e;
  {
    absl::MutexLock lock(&mu_);
    auto it = apps_.find(key);
    if (it != apps_.end()) e = it->second;
  }
  if (e == nullptr || e->fingerprint != fp) {
    std::shared_ptr<Entry> fresh = Create(app, fp, instances, e.get());
    if (fresh == nullptr) {
      Plan plan;
      plan.replicas = spec::BaseReplicas(app.spec());
      return plan;
    }
    absl::MutexLock lock(&mu_);
    apps_[key] = fresh;
    e = std::move(fresh);
  }
  absl::MutexLock lock(&e->mu);
  if (e->usage) e->usage->SetResources(app);
  return e->plan;
}

void MultiScaler::Forget(const std::string& ns, const std::string& name) {
  std::shared_ptr<Entry> gone;
  {
    absl::MutexLock lock(&mu_);
    auto it = apps_.find(absl::StrCat(ns, "/", name));
    if (it == apps_.end() && store_ == nullptr) return;
    if (it != apps_.end()) {
      gone = std::move(it->second);
      apps_.erase(it);
    }
  }
  if (gone) {
    absl::MutexLock lock(&gone->mu);
    gone->retired = true;
  }
  if (store_ != nullptr) {
    auto st = store_->Delete(keys::ScalerStateKey(ns, name));
    if (!st.ok() && !absl::IsNotFound(st.status())) {
      GetLogger("scaler")->warn("app={}/{} deleting scaler state failed: {}",
                                ns, name, st.status().ToString());
    }
  }
}

void MultiScaler::Wake(const std::string& ns, const std::string& name) {
  std::shared_ptr<Entry> e;
  {
    absl::MutexLock lock(&mu_);
    auto it = apps_.find(absl::StrCat(ns, "/", name));
    if (it == apps_.end()) return;
    e = it->second;
  }
  bool changed;
  {
    absl::MutexLock lock(&e->mu);
    if (e->retired) return;
    changed = Step(e.get(), clock_->Now());
  }
  if (changed && on_change_) on_change_(e->key);
}

int64_t MultiScaler::NextTickNs(const Entry& e, int64_t now_ns) const {
  const int64_t tick = std::max<int64_t>(1, absl::ToInt64Nanoseconds(e.tick));
  const int64_t offset = std::clamp<int64_t>(
      absl::ToInt64Nanoseconds(options_.tick_offset), 0, tick / 2);
  // The first k * tick + offset strictly after now_ns.
  int64_t base = now_ns - offset;
  int64_t k = base / tick;
  if (base % tick < 0) --k;  // floor for times before the epoch
  return (k + 1) * tick + offset;
}

void MultiScaler::RunDue() {
  const absl::Time now = clock_->Now();
  const int64_t now_ns = absl::ToUnixNanos(now);
  std::vector<std::shared_ptr<Entry>> due;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, e] : apps_) {
      if (e->next_tick_ns.load() > now_ns) continue;
      e->next_tick_ns = NextTickNs(*e, now_ns);
      due.push_back(e);
    }
  }
  for (const auto& e : due) {
    bool changed;
    {
      absl::MutexLock lock(&e->mu);
      if (e->retired) continue;
      changed = Step(e.get(), now);
      if (now - e->last_save >= options_.save_interval) Save(e.get());
    }
    // At once (a scale-up starts instances now, not after the other apps'
    // ticks), outside the entry's lock.
    if (changed && on_change_) on_change_(e->key);
  }
}

void MultiScaler::SaveAll() {
  if (store_ == nullptr) return;
  std::vector<std::shared_ptr<Entry>> all;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, e] : apps_) all.push_back(e);
  }
  for (const auto& e : all) {
    absl::MutexLock lock(&e->mu);
    if (!e->retired) Save(e.get());
  }
}

}  // namespace tidal
