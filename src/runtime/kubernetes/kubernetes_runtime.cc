#include "runtime/kubernetes/kubernetes_runtime.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "runtime/kubernetes/kube_json.h"
#include "runtime/kubernetes/pod_template.h"

namespace tidal::kube {
namespace {

using tidal::v1::Instance;

constexpr char kPendingInfix[] = "-pending-";

int64_t GraceSeconds(absl::Duration grace) {
  if (grace <= absl::ZeroDuration()) return 0;
  return static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(grace)));
}

// An event worth showing when an instance changes from `before` (null: new)
// to `after`.
void AddEvent(const Instance* before, const Instance& after,
              InstanceChange* c) {
  const bool reason_changed =
      before == nullptr || before->reason() != after.reason();
  if (after.phase() == "Failed" && reason_changed && !after.reason().empty()) {
    c->event_type = "Warning";
    c->event_reason = after.reason();
    c->event_message = absl::StrCat(
        "instance ", after.id(), " cannot start: ",
        after.message().empty() ? after.reason() : after.message());
  } else if (after.phase() == "CrashLoopBackOff" &&
             (before == nullptr || before->phase() != "CrashLoopBackOff")) {
    c->event_type = "Warning";
    c->event_reason = "BackOff";
    c->event_message = absl::StrCat(
        "Back-off restarting the container of instance ", after.id(),
        after.reason().empty() || after.reason() == "CrashLoopBackOff"
            ? ""
            : absl::StrCat(" (last stopped: ", after.reason(), ")"),
        ", restarts: ", after.restarts());
  } else if (after.reason() == "OOMKilled" && reason_changed) {
    c->event_type = "Warning";
    c->event_reason = "OOMKilled";
    c->event_message =
        absl::StrCat("instance ", after.id(), " was killed: out of memory");
  } else if (before != nullptr && before->phase() == "Starting" &&
             !absl::StrContains(before->id(), kPendingInfix) &&
             after.phase() == "Running" && after.ready() && !before->ready()) {
    c->event_type = "Normal";
    c->event_reason = "Ready";
    c->event_message = absl::StrCat("instance ", after.id(), " is ready");
  }
}

// A log stream over GET .../pods/<name>/log, read by a thread of its own.
class PodLogStream final : public LogStream {
 public:
  PodLogStream(KubeClient* client, std::string kube_ns, std::string pod,
               const LogOptions& options) {
    thread_ = std::thread([this, client, kube_ns = std::move(kube_ns),
                           pod = std::move(pod), options] {
      PodLogOptions o;
      o.container = "app";
      // A previous run's log is complete: never followed.
      o.follow = options.follow && !options.previous;
      o.previous = options.previous;
      o.tail_lines = options.tail_lines;
      o.cancelled = [this] { return cancelled_.load(); };
      absl::Status st =
          client->PodLogs(kube_ns, pod, o, [this](std::string_view data) {
            absl::MutexLock lock(&mu_);
            buffer_.append(data);
            return !cancelled_.load();
          });
      absl::MutexLock lock(&mu_);
      done_ = true;
      end_ = st;
    });
  }
  ~PodLogStream() override {
    Cancel();
    thread_.join();
  }

  absl::StatusOr<std::string> Next(absl::Duration wait) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !buffer_.empty() || done_ || cancelled_.load();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
    if (cancelled_.load()) return absl::CancelledError("log stream cancelled");
    if (!buffer_.empty()) {
      std::string out;
      out.swap(buffer_);
      return out;
    }
    if (done_) {
      if (!end_.ok()) return end_;
      return absl::OutOfRangeError("end of the log");
    }
    return std::string();
  }

  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

 private:
  absl::Mutex mu_;
  std::string buffer_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> cancelled_{false};
  std::thread thread_;
};

}  // namespace

struct KubernetesRuntime::Watcher {
  std::string kube_ns;
  const Resource* resource = nullptr;
  bool listed = false;  // guarded by the runtime's mu_
  std::thread thread;
};

KubernetesRuntime::KubernetesRuntime(KubeClient* client,
                                     KubernetesRuntimeOptions options)
    : client_(client), options_(std::move(options)) {}

KubernetesRuntime::~KubernetesRuntime() { Shutdown(false); }

std::string KubernetesRuntime::KubeNamespaceOf(
    const std::string& tidal_namespace) const {
  auto it = options_.namespace_map.find(tidal_namespace);
  return it != options_.namespace_map.end() ? it->second
                                            : options_.default_namespace;
}

std::map<std::string, Instance> KubernetesRuntime::ViewLocked() const {
  std::map<std::string, Instance> view;
  std::map<std::string, int32_t> live;         // pods per revision key
  std::map<std::string, std::string> address;  // pod key → slice address
  for (const auto& [slice, eps] : slices_) {
    for (const auto& [pod, ip] : eps) address[pod] = ip;
  }
  for (const auto& [key, pod] : pods_) {
    Instance inst = pod.inst;
    const bool stopping = stopping_.count(key) > 0;
    if (stopping && inst.phase() != "Terminating") {
      inst.set_phase("Terminating");
      inst.set_ready(false);
    }
    if (auto a = address.find(key); a != address.end())
      inst.set_host(a->second);
    if (!pod.deleting && !stopping) ++live[Key(pod.kube_ns, pod.deployment)];
    view[inst.id()] = std::move(inst);
  }
  // Placeholders stand for what this node asked of a Deployment: only while
  // acting, and only on replicas read from the cluster since it began to.
  if (!acting_ || revisions_stale_) return view;
  for (const auto& [key, rev] : revisions_) {
    const int32_t missing = rev.desired - live[key];
    for (int32_t i = 0; i < missing; ++i) {
      Instance p;
      p.set_id(absl::StrCat(rev.name, kPendingInfix, i));
      p.set_namespace_(rev.ns);
      p.set_app(rev.app);
      p.set_template_hash(rev.hash);
      p.set_revision(rev.revision);
      p.set_phase("Starting");
      p.set_reason("PodPending");
      p.set_message(absl::StrCat("waiting for Deployment ", rev.kube_ns, "/",
                                 rev.name, " to create a Pod"));
      view[p.id()] = std::move(p);
    }
  }
  return view;
}

void KubernetesRuntime::DiffLocked() {
  std::map<std::string, Instance> view = ViewLocked();
  for (const auto& [id, inst] : view) {
    auto old = reported_.find(id);
    if (old != reported_.end() &&
        old->second.SerializeAsString() == inst.SerializeAsString()) {
      continue;
    }
    InstanceChange c;
    c.instance = inst;
    AddEvent(old == reported_.end() ? nullptr : &old->second, inst, &c);
    pending_.push_back(std::move(c));
  }
  for (const auto& [id, inst] : reported_) {
    if (view.count(id) > 0) continue;
    InstanceChange c;
    c.instance = inst;
    c.removed = true;
    pending_.push_back(std::move(c));
  }
  reported_ = std::move(view);
}

void KubernetesRuntime::Deliver() {
  for (;;) {
    std::vector<InstanceChange> batch;
    Listener listener;
    {
      absl::MutexLock lock(&mu_);
      if (delivering_ || pending_.empty()) return;
      delivering_ = true;
      batch.swap(pending_);
      listener = listener_;
    }
    if (listener) {
      for (const InstanceChange& c : batch) listener(c);
    }
    absl::MutexLock lock(&mu_);
    delivering_ = false;
  }
}

void KubernetesRuntime::SetListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

std::vector<Instance> KubernetesRuntime::List(const std::string& namespace_,
                                              const std::string& app) {
  absl::MutexLock lock(&mu_);
  std::vector<Instance> out;
  for (auto& [id, inst] : ViewLocked()) {
    if (!namespace_.empty() && inst.namespace_() != namespace_) continue;
    if (!app.empty() && inst.app() != app) continue;
    out.push_back(std::move(inst));
  }
  return out;
}

void KubernetesRuntime::EnsureWatchers(const std::string& kube_ns) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  for (const auto& w : watchers_) {
    if (w->kube_ns == kube_ns) return;
  }
  for (const Resource* r : {&kPods, &kEndpointSlices}) {
    auto w = std::make_unique<Watcher>();
    w->kube_ns = kube_ns;
    w->resource = r;
    Watcher* raw = w.get();
    w->thread = std::thread([this, raw] { WatchLoop(raw); });
    watchers_.push_back(std::move(w));
  }
}

void KubernetesRuntime::WatchLoop(Watcher* w) {
  auto log = GetLogger("runtime");
  const bool pods = w->resource == &kPods;
  absl::Duration backoff = options_.retry_interval;
  auto failed = [&](const absl::Status& st, const char* what) {
    log->warn("kubernetes: {} {} in namespace {} failed: {}; again in {}", what,
              w->resource->plural, w->kube_ns, st.ToString(),
              absl::FormatDuration(backoff));
    stop_.WaitForNotificationWithTimeout(backoff);
    backoff = std::min(backoff * 2, options_.max_retry_interval);
  };
  while (!stop_.HasBeenNotified()) {
    ListOptions lo;
    lo.label_selector = ManagedSelector();
    absl::StatusOr<KubeList> list = client_->List(*w->resource, w->kube_ns, lo);
    if (!list.ok()) {
      failed(list.status(), "list");
      continue;
    }
    if (pods) {
      ApplyPodList(w->kube_ns, list->items);
    } else {
      ApplySliceList(w->kube_ns, list->items);
    }
    {
      absl::MutexLock lock(&mu_);
      w->listed = true;
    }
    std::string rv = list->resource_version;
    while (!stop_.HasBeenNotified()) {
      WatchOptions wo;
      wo.label_selector = ManagedSelector();
      wo.resource_version = rv;
      wo.allow_watch_bookmarks = true;
      wo.timeout_seconds = options_.watch_timeout_seconds;
      wo.cancelled = [this] { return stop_.HasBeenNotified(); };
      absl::StatusOr<WatchResult> r = client_->Watch(
          *w->resource, w->kube_ns, wo, [&](const WatchEvent& e) {
            if (e.type == "BOOKMARK") return true;
            if (pods) {
              ApplyPodEvent(w->kube_ns, e.type, e.object);
            } else {
              ApplySliceEvent(w->kube_ns, e.type, e.object);
            }
            return true;
          });
      if (!r.ok()) {
        if (IsGone(r.status())) {
          log->info(
              "kubernetes: watch of {} in {} expired (410 Gone); "
              "listing again",
              w->resource->plural, w->kube_ns);
        } else {
          failed(r.status(), "watch");
        }
        break;  // list again
      }
      backoff = options_.retry_interval;
      if (r->cancelled) return;
      rv = r->resource_version;
      if (r->dropped) {
        log->info("kubernetes: watch of {} in {} broke off at {}; resuming",
                  w->resource->plural, w->kube_ns, rv);
      }
    }
  }
}

void KubernetesRuntime::ApplyPodList(const std::string& kube_ns,
                                     const std::vector<KubeObject>& items) {
  {
    absl::MutexLock lock(&mu_);
    for (auto it = pods_.begin(); it != pods_.end();) {
      if (it->second.kube_ns == kube_ns) {
        kube_ns_of_.erase(it->second.inst.id());
        it = pods_.erase(it);
      } else {
        ++it;
      }
    }
    for (const KubeObject& o : items) {
      absl::StatusOr<PodView> v = PodToInstance(o.json);
      if (!v.ok()) continue;
      const std::string key = Key(kube_ns, o.name);
      pods_[key] =
          Pod{v->instance, kube_ns, v->deployment, v->uid, v->deleting};
      kube_ns_of_[o.name] = kube_ns;
    }
    for (auto it = stopping_.begin(); it != stopping_.end();) {
      it = pods_.count(it->first) > 0 ? std::next(it) : stopping_.erase(it);
    }
    DiffLocked();
  }
  Deliver();
}

void KubernetesRuntime::ApplyPodEvent(const std::string& kube_ns,
                                      const std::string& type,
                                      const KubeObject& obj) {
  {
    absl::MutexLock lock(&mu_);
    const std::string key = Key(kube_ns, obj.name);
    if (type == "DELETED") {
      pods_.erase(key);
      stopping_.erase(key);
      kube_ns_of_.erase(obj.name);
    } else {
      absl::StatusOr<PodView> v = PodToInstance(obj.json);
      if (!v.ok()) return;
      pods_[key] =
          Pod{v->instance, kube_ns, v->deployment, v->uid, v->deleting};
      kube_ns_of_[obj.name] = kube_ns;
    }
    DiffLocked();
  }
  Deliver();
}

namespace {
// pod key → address of the ready endpoints of one EndpointSlice.
std::map<std::string, std::string> SliceAddresses(const std::string& kube_ns,
                                                  const std::string& text) {
  std::map<std::string, std::string> out;
  absl::StatusOr<json::value> v = ParseJson(text);
  if (!v.ok()) return out;
  const json::value* eps = Find(*v, {"endpoints"});
  if (eps == nullptr || !eps->is_array()) return out;
  for (const json::value& ep : eps->get_array()) {
    if (GetString(ep, {"targetRef", "kind"}) != "Pod") continue;
    const json::value* addrs = Find(ep, {"addresses"});
    if (addrs == nullptr || !addrs->is_array() || addrs->get_array().empty() ||
        !addrs->get_array()[0].is_string()) {
      continue;
    }
    out[absl::StrCat(kube_ns, "/", GetString(ep, {"targetRef", "name"}))] =
        std::string(addrs->get_array()[0].get_string());
  }
  return out;
}
}  // namespace

void KubernetesRuntime::ApplySliceList(const std::string& kube_ns,
                                       const std::vector<KubeObject>& items) {
  {
    absl::MutexLock lock(&mu_);
    const std::string prefix = kube_ns + "/";
    for (auto it = slices_.begin(); it != slices_.end();) {
      it = absl::StartsWith(it->first, prefix) ? slices_.erase(it)
                                               : std::next(it);
    }
    for (const KubeObject& o : items) {
      slices_[Key(kube_ns, o.name)] = SliceAddresses(kube_ns, o.json);
    }
    DiffLocked();
  }
  Deliver();
}

void KubernetesRuntime::ApplySliceEvent(const std::string& kube_ns,
                                        const std::string& type,
                                        const KubeObject& obj) {
  {
    absl::MutexLock lock(&mu_);
    if (type == "DELETED") {
      slices_.erase(Key(kube_ns, obj.name));
    } else {
      slices_[Key(kube_ns, obj.name)] = SliceAddresses(kube_ns, obj.json);
    }
    DiffLocked();
  }
  Deliver();
}

absl::Status KubernetesRuntime::ScaleRevision(const std::string& key,
                                              int32_t delta,
                                              std::optional<int32_t> absolute) {
  std::string kube_ns, name;
  {
    absl::MutexLock lock(&mu_);
    auto it = revisions_.find(key);
    if (it == revisions_.end()) return absl::NotFoundError(key);
    kube_ns = it->second.kube_ns;
    name = it->second.name;
  }
  // Read, then write with the version read: another writer (a deposed
  // leader, kubectl scale) makes the write fail (409) instead of being lost,
  // and the step is taken from what the cluster has.
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<Scale> now = client_->GetScale(kDeployments, kube_ns, name);
    if (absl::IsNotFound(now.status())) {
      // The Deployment is gone (deleted by hand, or collected by another
      // node): it wants nothing, and the garbage collector deletes what is
      // left of it (its Service).
      {
        absl::MutexLock lock(&mu_);
        auto it = revisions_.find(key);
        if (it != revisions_.end()) it->second.desired = 0;
        DiffLocked();
      }
      Deliver();
      return now.status();
    }
    if (!now.ok()) return now.status();
    const int32_t want =
        absolute ? *absolute : std::max(0, now->spec_replicas + delta);
    absl::StatusOr<Scale> s = client_->UpdateScale(kDeployments, kube_ns, name,
                                                   want, now->resource_version);
    if (absl::IsAborted(s.status())) {
      last = s.status();
      continue;
    }
    if (!s.ok()) return s.status();
    {
      absl::MutexLock lock(&mu_);
      auto it = revisions_.find(key);
      if (it != revisions_.end()) it->second.desired = want;
      DiffLocked();
    }
    Deliver();
    return absl::OkStatus();
  }
  return last;
}

absl::StatusOr<Instance> KubernetesRuntime::Start(const InstanceRequest& req) {
  absl::MutexLock ops(&ops_mu_);
  if (!req.id.empty()) {
    return absl::InvalidArgumentError(
        "the Kubernetes runtime does not run instances under given ids (its "
        "instances are Pods, named by their ReplicaSet)");
  }
  const std::string kube_ns = KubeNamespaceOf(req.namespace_);
  const std::string name =
      RevisionName(req.namespace_, req.app, req.template_hash);
  const std::string key = Key(kube_ns, name);
  absl::StatusOr<std::string> manifest = DeploymentManifest(req, name);
  if (!manifest.ok()) return manifest.status();
  EnsureWatchers(kube_ns);
  Revision rev;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) {
      return absl::FailedPreconditionError("the runtime is shutting down");
    }
    Revision& r = revisions_[key];
    if (r.name.empty()) {
      r.kube_ns = kube_ns;
      r.name = name;
      r.ns = req.namespace_;
      r.app = req.app;
      r.hash = req.template_hash;
      r.revision = req.revision;
    }
    rev = r;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    // A Deployment this start creates begins at Kubernetes' default of one
    // replica: set, not add.
    std::optional<int32_t> absolute;
    if (!rev.applied) {
      absl::StatusOr<KubeObject> svc =
          client_->Apply(kServices, kube_ns, name, ServiceManifest(req, name));
      if (!svc.ok()) return svc.status();
      absl::StatusOr<KubeObject> dep =
          client_->Apply(kDeployments, kube_ns, name, *manifest);
      if (!dep.ok()) return dep.status();
      absl::MutexLock lock(&mu_);
      Revision& r = revisions_[key];
      r.applied = true;
      r.uid = dep->uid;
      rev = r;
      if (dep->created) absolute = 1;
    }
    absl::Status st = ScaleRevision(key, +1, absolute);
    if (absl::IsNotFound(st) && attempt == 0) {
      // Deleted behind our back: apply it again.
      absl::MutexLock lock(&mu_);
      Revision& r = revisions_[key];
      r.applied = false;
      r.desired = 0;
      rev = r;
      continue;
    }
    if (!st.ok()) return st;
    break;
  }
  absl::MutexLock lock(&mu_);
  // The newest placeholder of the revision, if the Pod is not there yet.
  Instance out;
  for (const auto& [id, inst] : reported_) {
    if (absl::StartsWith(id, name + kPendingInfix)) out = inst;
  }
  if (out.id().empty()) {
    out.set_id(absl::StrCat(name, kPendingInfix, rev.desired));
    out.set_namespace_(req.namespace_);
    out.set_app(req.app);
    out.set_template_hash(req.template_hash);
    out.set_revision(req.revision);
    out.set_phase("Starting");
  }
  return out;
}

absl::Status KubernetesRuntime::Stop(const std::string& instance_id,
                                     absl::Duration grace) {
  absl::MutexLock ops(&ops_mu_);
  std::string pod_key, rev_key, kube_ns, uid, deployment;
  {
    absl::MutexLock lock(&mu_);
    if (auto k = kube_ns_of_.find(instance_id); k != kube_ns_of_.end()) {
      kube_ns = k->second;
      pod_key = Key(kube_ns, instance_id);
      const Pod& pod = pods_.at(pod_key);
      uid = pod.uid;
      deployment = pod.deployment;
      rev_key = Key(kube_ns, deployment);
      if (auto s = stopping_.find(pod_key); s != stopping_.end()) {
        if (grace >= s->second) return absl::OkStatus();
        s->second = grace;  // bring the kill forward below
        rev_key.clear();    // already counted down
      } else if (pod.deleting) {
        rev_key.clear();  // deleted by someone else: the ReplicaSet replaces it
      }
    } else {
      for (const auto& [key, rev] : revisions_) {
        if (absl::StartsWith(instance_id, rev.name + kPendingInfix) &&
            reported_.count(instance_id) > 0) {
          rev_key = key;
        }
      }
      if (rev_key.empty()) {
        return absl::NotFoundError(
            absl::StrCat("instance ", instance_id, " not found"));
      }
    }
  }
  if (!pod_key.empty()) {
    DeleteOptions d;
    d.propagation_policy.clear();
    d.precondition_uid = uid;
    d.grace_period_seconds = GraceSeconds(grace);
    absl::Status st = client_->Delete(kPods, kube_ns, instance_id, d);
    if (!st.ok() && !absl::IsNotFound(st)) return st;
    absl::MutexLock lock(&mu_);
    if (pods_.count(pod_key) > 0) {
      auto [it, fresh] = stopping_.emplace(pod_key, grace);
      if (!fresh) it->second = std::min(it->second, grace);
    }
  }
  if (rev_key.empty()) {
    {
      absl::MutexLock lock(&mu_);
      DiffLocked();
    }
    Deliver();
    return absl::OkStatus();
  }
  bool known = false;
  {
    absl::MutexLock lock(&mu_);
    known = revisions_.count(rev_key) > 0;
    if (!known) {
      // A Pod of a Deployment this tidald has not applied (another leader
      // did): know it from its Pod's labels.
      Revision& r = revisions_[rev_key];
      const Instance inst =
          pods_.count(pod_key) > 0 ? pods_.at(pod_key).inst : Instance();
      r.kube_ns = kube_ns;
      r.name = deployment;
      r.ns = inst.namespace_();
      r.app = inst.app();
      r.hash = inst.template_hash();
      r.revision = inst.revision();
      r.applied = true;
    }
  }
  absl::Status st = ScaleRevision(rev_key, -1);
  if (absl::IsNotFound(st)) return absl::OkStatus();  // no Deployment left
  return st;
}

absl::Status KubernetesRuntime::DeleteService(const std::string& kube_ns,
                                              const std::string& name) {
  DeleteOptions d;
  d.propagation_policy.clear();
  absl::Status st = client_->Delete(kServices, kube_ns, name, d);
  return absl::IsNotFound(st) ? absl::OkStatus() : st;
}

absl::Status KubernetesRuntime::DeleteRevision(const Revision& rev) {
  DeleteOptions d;
  d.propagation_policy = "Background";
  d.precondition_uid = rev.uid;
  absl::Status st = client_->Delete(kDeployments, rev.kube_ns, rev.name, d);
  if (!st.ok() && !absl::IsNotFound(st)) return st;
  RETURN_IF_ERROR(DeleteService(rev.kube_ns, rev.name));
  GetLogger("runtime")->info(
      "kubernetes: deleted Deployment and Service {}/{} (app {}/{}, no "
      "instance wanted)",
      rev.kube_ns, rev.name, rev.ns, rev.app);
  return absl::OkStatus();
}

void KubernetesRuntime::CollectGarbage() {
  if (!acting_) return;
  absl::MutexLock ops(&ops_mu_);
  bool stale = false;
  {
    absl::MutexLock lock(&mu_);
    stale = revisions_stale_;
  }
  // Becoming acting could not read the Deployments: read them now.
  if (stale && !RefreshRevisions()) return;
  std::vector<std::pair<std::string, Revision>> garbage;
  std::vector<std::pair<std::string, Revision>> unapplied;
  {
    absl::MutexLock lock(&mu_);
    std::set<std::string> with_pods;
    for (const auto& [key, pod] : pods_) {
      with_pods.insert(Key(pod.kube_ns, pod.deployment));
    }
    for (auto it = revisions_.begin(); it != revisions_.end();) {
      const Revision& r = it->second;
      if (r.desired > 0 || with_pods.count(it->first) > 0) {
        ++it;
      } else if (!r.applied) {
        unapplied.emplace_back(it->first, r);  // a start that never got through
        ++it;
      } else {
        garbage.emplace_back(it->first, r);
        ++it;
      }
    }
  }
  // A start whose Deployment was refused (a quota, an admission webhook, a
  // timeout) had applied its Service already: delete that.
  for (const auto& [key, rev] : unapplied) {
    if (absl::Status st = DeleteService(rev.kube_ns, rev.name); !st.ok()) {
      GetLogger("runtime")->warn(
          "kubernetes: deleting Service {}/{} failed: {}", rev.kube_ns,
          rev.name, st.ToString());
      continue;
    }
    absl::MutexLock lock(&mu_);
    auto it = revisions_.find(key);
    if (it != revisions_.end() && !it->second.applied &&
        it->second.desired == 0)
      revisions_.erase(it);
  }
  for (const auto& [key, rev] : garbage) {
    absl::Status st = DeleteRevision(rev);
    if (!st.ok()) {
      GetLogger("runtime")->warn("kubernetes: deleting {}/{} failed: {}",
                                 rev.kube_ns, rev.name, st.ToString());
      continue;
    }
    absl::MutexLock lock(&mu_);
    auto it = revisions_.find(key);
    if (it != revisions_.end() && it->second.desired == 0) revisions_.erase(it);
  }
}

void KubernetesRuntime::GcLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.gc_interval)) {
    CollectGarbage();
  }
}

std::set<std::string> KubernetesRuntime::KubeNamespaces() const {
  std::set<std::string> namespaces{options_.default_namespace};
  for (const auto& [tidal_ns, kube_ns] : options_.namespace_map) {
    namespaces.insert(kube_ns);
  }
  return namespaces;
}

absl::Status KubernetesRuntime::ReadRevisions() {
  std::map<std::string, Revision> listed;
  std::vector<std::pair<std::string, std::string>> orphans;  // kube ns, name
  const bool acting = acting_;
  for (const std::string& kube_ns : KubeNamespaces()) {
    ListOptions lo;
    lo.label_selector = ManagedSelector();
    absl::StatusOr<KubeList> list = client_->List(kDeployments, kube_ns, lo);
    if (!list.ok()) return list.status();
    for (const KubeObject& o : list->items) {
      absl::StatusOr<json::value> v = ParseJson(o.json);
      if (!v.ok()) continue;
      Revision r;
      r.kube_ns = kube_ns;
      r.name = o.name;
      r.ns = GetString(*v, {"metadata", "labels", kLabelNamespace});
      r.app = GetString(*v, {"metadata", "labels", kLabelApp});
      r.hash = GetString(*v, {"metadata", "labels", kLabelTemplateHash});
      r.revision = std::atoll(
          GetString(*v, {"metadata", "labels", kLabelRevision}, "0").c_str());
      r.desired = static_cast<int32_t>(GetInt(*v, {"spec", "replicas"}, 1));
      r.applied = true;
      r.uid = o.uid;
      if (r.ns.empty() || r.app.empty() || r.hash.empty()) continue;
      listed[Key(kube_ns, o.name)] = std::move(r);
    }
    if (!acting) continue;
    absl::StatusOr<KubeList> services = client_->List(kServices, kube_ns, lo);
    if (!services.ok()) return services.status();
    for (const KubeObject& o : services->items) {
      if (listed.count(Key(kube_ns, o.name)) == 0)
        orphans.emplace_back(kube_ns, o.name);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    // Starts that never got through stay for the garbage collector (their
    // Service may need deleting); every other revision is as listed.
    for (const auto& [key, r] : revisions_) {
      if (!r.applied && listed.count(key) == 0) listed.emplace(key, r);
    }
    revisions_ = std::move(listed);
  }
  for (const auto& [kube_ns, name] : orphans) {
    if (absl::Status st = DeleteService(kube_ns, name); !st.ok()) {
      GetLogger("runtime")->warn(
          "kubernetes: deleting Service {}/{} (its Deployment is gone) "
          "failed: {}",
          kube_ns, name, st.ToString());
    } else {
      GetLogger("runtime")->info(
          "kubernetes: deleted Service {}/{}: its Deployment is gone", kube_ns,
          name);
    }
  }
  return absl::OkStatus();
}

bool KubernetesRuntime::RefreshRevisions() {
  absl::Status st = ReadRevisions();
  if (!st.ok()) {
    GetLogger("runtime")->warn(
        "kubernetes: reading the Deployments failed: {}; no placeholder until "
        "they are read (again in {})",
        st.ToString(), absl::FormatDuration(options_.gc_interval));
  }
  {
    absl::MutexLock lock(&mu_);
    revisions_stale_ = !st.ok();
    DiffLocked();
  }
  Deliver();
  return st.ok();
}

void KubernetesRuntime::SetActing(bool acting) {
  const bool was = acting_.exchange(acting);
  if (acting && !was) {
    absl::MutexLock ops(&ops_mu_);
    RefreshRevisions();
  } else if (!acting && was) {
    {
      absl::MutexLock lock(&mu_);
      DiffLocked();  // a standby shows no placeholder
    }
    Deliver();
  }
}

absl::Status KubernetesRuntime::Adopt() {
  const std::set<std::string> namespaces = KubeNamespaces();
  {
    absl::MutexLock ops(&ops_mu_);
    if (absl::Status st = ReadRevisions(); !st.ok()) return st;
  }
  for (const std::string& kube_ns : namespaces) EnsureWatchers(kube_ns);
  {
    absl::MutexLock lock(&mu_);
    auto listed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& w : watchers_) {
        if (!w->listed) return false;
      }
      return true;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&listed),
                              options_.adopt_timeout)) {
      return absl::DeadlineExceededError(absl::StrCat(
          "kubernetes: the Pods and EndpointSlices of namespace(s) were not "
          "listed within ",
          absl::FormatDuration(options_.adopt_timeout)));
    }
    DiffLocked();
  }
  Deliver();
  CollectGarbage();
  absl::MutexLock lock(&mu_);
  if (!gc_started_ && !shutdown_) {
    gc_started_ = true;
    gc_thread_ = std::thread([this] { GcLoop(); });
  }
  return absl::OkStatus();
}

namespace {
const Resource kPodMetrics{"/apis/metrics.k8s.io/v1beta1", "pods",
                           "metrics.k8s.io/v1beta1", "PodMetrics"};

// CPU in cores as the metrics API writes it: with an optional n/u/m suffix
// ("123456789n", "250m", "2"). 0 when it does not parse. (Memory is a byte
// quantity: ParseBytes.)
double CpuCores(const std::string& text) {
  static const std::pair<char, double> kSuffixes[] = {
      {'n', 1e-9}, {'u', 1e-6}, {'m', 1e-3}};
  double scale = 1;
  std::string digits = text;
  for (const auto& [suffix, factor] : kSuffixes) {
    if (!text.empty() && text.back() == suffix) {
      scale = factor;
      digits.pop_back();
      break;
    }
  }
  double v = 0;
  if (digits.empty() || !absl::SimpleAtod(digits, &v) || v < 0) return 0;
  return v * scale;
}
}  // namespace

std::vector<InstanceUsage> KubernetesRuntime::Usage(
    const std::string& namespace_, const std::string& app) {
  std::set<std::string> namespaces;
  std::vector<std::pair<std::string, std::string>> wanted;  // kube ns, pod
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, pod] : pods_) {
      if (!namespace_.empty() && pod.inst.namespace_() != namespace_) continue;
      if (!app.empty() && pod.inst.app() != app) continue;
      if (pod.inst.phase() != "Running") continue;
      namespaces.insert(pod.kube_ns);
      wanted.emplace_back(pod.kube_ns, pod.inst.id());
    }
  }
  absl::MutexLock lock(&usage_mu_);
  const absl::Time now = absl::Now();
  for (const std::string& kube_ns : namespaces) {
    NamespaceUsage& u = usage_[kube_ns];
    if (now - u.read < options_.usage_refresh) continue;
    u.read = now;
    ListOptions lo;
    lo.label_selector = ManagedSelector();
    absl::StatusOr<KubeList> list = client_->List(kPodMetrics, kube_ns, lo);
    if (!list.ok()) {
      if (!u.failed_before) {
        GetLogger("runtime")->warn(
            "kubernetes: no CPU and memory figures for namespace {} (is "
            "metrics-server installed?): {}",
            kube_ns, list.status().ToString());
      }
      u.failed_before = true;
      continue;
    }
    u.failed_before = false;
    std::map<std::string, PodUsage> next;
    for (const KubeObject& o : list->items) {
      absl::StatusOr<json::value> v = ParseJson(o.json);
      if (!v.ok()) continue;
      absl::Time ts;
      std::string err;
      if (!absl::ParseTime(absl::RFC3339_full, GetString(*v, {"timestamp"}),
                           &ts, &err)) {
        continue;
      }
      double cores = 0;
      int64_t bytes = 0;
      if (const json::value* cs = Find(*v, {"containers"});
          cs != nullptr && cs->is_array()) {
        for (const json::value& c : cs->get_array()) {
          cores += CpuCores(GetString(c, {"usage", "cpu"}));
          bytes += ParseBytes(GetString(c, {"usage", "memory"})).value_or(0);
        }
      }
      PodUsage p;
      auto old = u.pods.find(o.name);
      if (old != u.pods.end() && ts <= old->second.at) {
        p = old->second;  // the same sample again
      } else {
        absl::Duration span =
            old != u.pods.end() ? ts - old->second.at : absl::ZeroDuration();
        if (old == u.pods.end()) {
          absl::Duration window;
          if (absl::ParseDuration(GetString(*v, {"window"}, "0s"), &window)) {
            span = window;
          }
        }
        p.cpu_seconds = (old != u.pods.end() ? old->second.cpu_seconds : 0) +
                        cores * absl::ToDoubleSeconds(span);
        p.memory_bytes = bytes;
        p.at = ts;
      }
      next[o.name] = p;
    }
    u.pods = std::move(next);
  }
  std::vector<InstanceUsage> out;
  for (const auto& [kube_ns, pod] : wanted) {
    auto ns_it = usage_.find(kube_ns);
    if (ns_it == usage_.end()) continue;
    auto it = ns_it->second.pods.find(pod);
    if (it == ns_it->second.pods.end()) continue;
    InstanceUsage iu;
    iu.instance_id = pod;
    iu.cpu_seconds = it->second.cpu_seconds;
    iu.memory_bytes = it->second.memory_bytes;
    iu.sampled_at = it->second.at;
    out.push_back(std::move(iu));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<LogStream>> KubernetesRuntime::OpenLogs(
    const std::string& instance_id, const LogOptions& options) {
  std::string kube_ns;
  {
    absl::MutexLock lock(&mu_);
    auto it = kube_ns_of_.find(instance_id);
    if (it == kube_ns_of_.end()) {
      return absl::NotFoundError(absl::StrCat(
          "instance ", instance_id,
          reported_.count(instance_id) > 0 ? " has no Pod yet" : " not found"));
    }
    kube_ns = it->second;
  }
  return std::unique_ptr<LogStream>(
      new PodLogStream(client_, kube_ns, instance_id, options));
}

std::vector<StoppedInstance> KubernetesRuntime::StoppedInstances(
    const std::string& namespace_, const std::string& app) {
  std::vector<StoppedInstance> out;
  for (const Instance& inst : List(namespace_, app)) {
    if (inst.restarts() > 0) {
      out.push_back({inst.id(), inst.namespace_(), inst.app()});
    }
  }
  return out;
}

void KubernetesRuntime::Shutdown(bool stop_instances) {
  if (stop_instances) {
    std::vector<std::string> keys;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [key, rev] : revisions_) keys.push_back(key);
    }
    absl::MutexLock ops(&ops_mu_);
    for (const std::string& key : keys) {
      Revision rev;
      {
        absl::MutexLock lock(&mu_);
        auto it = revisions_.find(key);
        if (it == revisions_.end() || !it->second.applied) continue;
        rev = it->second;
      }
      absl::Status st = DeleteRevision(rev);
      if (!st.ok()) {
        GetLogger("runtime")->warn("kubernetes: deleting {}/{} failed: {}",
                                   rev.kube_ns, rev.name, st.ToString());
      }
    }
  }
  std::vector<std::unique_ptr<Watcher>> watchers;
  bool first = false;
  {
    absl::MutexLock lock(&mu_);
    first = !shutdown_;
    shutdown_ = true;
    watchers.swap(watchers_);
  }
  if (first) stop_.Notify();
  for (auto& w : watchers) {
    if (w->thread.joinable()) w->thread.join();
  }
  if (gc_thread_.joinable()) gc_thread_.join();
}

}  // namespace tidal::kube
