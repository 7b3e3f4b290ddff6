#include "ha/node_agent.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "store/keys.h"

namespace tidal::ha {

using tidal::v1::Assignment;
using tidal::v1::Instance;

NodeAgent::NodeAgent(Store* store, Runtime* local, Options options)
    : store_(store),
      local_(local),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock::Get()),
      gateway_port_(options_.gateway_port) {}

NodeAgent::~NodeAgent() { Stop(); }

int64_t NodeAgent::heartbeats() {
  absl::MutexLock l(&mu_);
  return heartbeats_;
}

bool NodeAgent::synced() {
  absl::MutexLock l(&mu_);
  return synced_;
}

absl::Status NodeAgent::Start() {
  {
    absl::MutexLock l(&mu_);
    if (running_) return absl::OkStatus();
    stopping_ = false;
    synced_ = false;
    assignments_.clear();
    ended_.clear();
    failed_starts_.clear();
    unpublished_.clear();
    publish_order_.clear();
    events_.clear();
  }
  auto log = GetLogger("cluster");
  started_ = clock_->Now();
  local_->SetListener([this](const InstanceChange& c) { OnLocalChange(c); });
  absl::Status adopted = local_->Adopt();
  if (!adopted.ok()) {
    local_->SetListener(nullptr);
    return adopted;
  }
  // What runs here now, whatever the store says (a status may be stale).
  std::vector<Instance> local = local_->List();
  for (const Instance& inst : local) {
    InstanceChange c;
    c.instance = inst;
    OnLocalChange(c);
  }
  absl::Status beat = Heartbeat();
  if (!beat.ok()) {
    log->warn("node {}: first heartbeat failed (retrying): {}", options_.node,
              beat.ToString());
  }
  StoreMirror::Callbacks cb;
  cb.on_list = [this](const ListResult& list, bool first) {
    OnAssignList(list, first);
  };
  cb.on_events = [this](const std::vector<WatchEvent>& events) {
    OnAssignEvents(events);
  };
  mirror_ = std::make_unique<StoreMirror>(store_,
                                          keys::AssignmentPrefix(options_.node),
                                          std::move(cb), options_.mirror);
  absl::Status s = mirror_->Start(/*list_first=*/false);
  if (!s.ok()) {  // not expected: the listing happens on its thread
    local_->SetListener(nullptr);
    return s;
  }
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  publish_thread_ = std::thread([this] { PublishLoop(); });
  {
    absl::MutexLock l(&mu_);
    running_ = true;
  }
  log->info("node {}: agent started ({} local instances, api {}, address {})",
            options_.node, local.size(), options_.api_address,
            options_.address);
  return absl::OkStatus();
}

void NodeAgent::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (!running_) return;
    running_ = false;
    stopping_ = true;
  }
  if (mirror_) mirror_->Stop();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  if (publish_thread_.joinable()) publish_thread_.join();
  local_->SetListener(nullptr);
  GetLogger("cluster")->info("node {}: agent stopped", options_.node);
}

bool NodeAgent::WaitOrStop(absl::Duration d) {
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
}

// ---- heartbeat ----

absl::Status NodeAgent::Heartbeat() {
  int64_t n = 0;
  {
    absl::MutexLock l(&mu_);
    n = heartbeats_ + 1;
  }
  tidal::v1::NodeRecord rec;
  rec.set_name(options_.node);
  rec.set_uid(options_.uid);
  rec.set_address(options_.address);
  rec.set_api_address(options_.api_address);
  rec.set_gateway_port(gateway_port_.load());
  *rec.mutable_started() = ToProtoTime(started_);
  *rec.mutable_heartbeat() = ToProtoTime(clock_->Now());
  rec.set_heartbeats(n);
  for (const InstanceUsage& u : local_->Usage()) {
    tidal::v1::InstanceUsageRecord* r = rec.add_usage();
    r->set_instance_id(u.instance_id);
    r->set_cpu_seconds(u.cpu_seconds);
    r->set_memory_bytes(u.memory_bytes);
    *r->mutable_sampled_at() = ToProtoTime(u.sampled_at);
  }
  // The newest of the stopped instances whose logs are kept (oldest first).
  std::vector<StoppedInstance> stopped = local_->StoppedInstances();
  const size_t skip = stopped.size() > kStoppedPublished
                          ? stopped.size() - kStoppedPublished
                          : 0;
  for (size_t i = skip; i < stopped.size(); ++i) {
    tidal::v1::StoppedInstanceRecord* r = rec.add_stopped();
    r->set_instance_id(std::move(stopped[i].id));
    r->set_namespace_(std::move(stopped[i].namespace_));
    r->set_app(std::move(stopped[i].app));
  }
  absl::StatusOr<int64_t> rev = store_->Txn(
      {Op::Put(keys::Node(options_.node), rec.SerializeAsString())});
  if (!rev.ok()) return rev.status();
  absl::MutexLock l(&mu_);
  heartbeats_ = std::max(heartbeats_, n);
  return absl::OkStatus();
}

void NodeAgent::HeartbeatLoop() {
  auto log = GetLogger("cluster");
  bool failing = false;
  while (!WaitOrStop(options_.heartbeat_period)) {
    absl::Status s = Heartbeat();
    if (!s.ok() && !failing) {
      log->warn("node {}: heartbeat failed (retrying every {}): {}",
                options_.node, absl::FormatDuration(options_.heartbeat_period),
                s.ToString());
    } else if (s.ok() && failing) {
      log->info("node {}: heartbeats written again", options_.node);
    }
    failing = !s.ok();
    RetryStarts();
  }
}

// ---- assignments ----

std::map<std::string, Instance> NodeAgent::LocalInstances() {
  std::map<std::string, Instance> out;
  for (Instance& inst : local_->List()) {
    std::string id = inst.id();
    out.emplace(std::move(id), std::move(inst));
  }
  return out;
}

void NodeAgent::OnAssignList(const ListResult& list, bool first) {
  auto log = GetLogger("cluster");
  const std::string prefix = keys::AssignmentPrefix(options_.node);
  std::map<std::string, Held> fresh;
  for (const KeyValue& kv : list.items) {
    std::string id = kv.key.substr(prefix.size());
    Held h;
    if (id.empty() || id.find('/') != std::string::npos ||
        !h.assignment.ParseFromString(kv.value)) {
      log->warn("node {}: ignoring unreadable assignment {}", options_.node,
                kv.key);
      continue;
    }
    h.version = kv.resource_version;
    fresh.emplace(std::move(id), std::move(h));
  }
  {
    absl::MutexLock l(&mu_);
    assignments_ = fresh;
    synced_ = true;
    for (auto it = ended_.begin(); it != ended_.end();) {
      it = fresh.count(*it) > 0 ? std::next(it) : ended_.erase(it);
    }
    for (auto it = failed_starts_.begin(); it != failed_starts_.end();) {
      it =
          fresh.count(it->first) > 0 ? std::next(it) : failed_starts_.erase(it);
    }
  }
  std::map<std::string, Instance> local = LocalInstances();
  for (const auto& [id, h] : fresh) Follow(id, h.assignment, &local);
  // Running here without an assignment: the leader replaced it elsewhere
  // while this node was away (or gave it up). Stop it: no doubles.
  std::set<std::string> keep;
  for (const auto& [id, h] : fresh) keep.insert(id);
  for (const auto& [id, inst] : local) {
    keep.insert(id);
    if (fresh.count(id) > 0 || inst.phase() == "Terminating") continue;
    log->warn("node {}: app={}/{} instance {} has no assignment; stopping it",
              options_.node, inst.namespace_(), inst.app(), id);
    absl::Status s = local_->Stop(id, options_.orphan_grace);
    if (!s.ok() && !absl::IsNotFound(s)) {
      log->warn("node {}: stopping {}: {}", options_.node, id, s.ToString());
    }
  }
  CollectStaleStatus(keep);
  if (first) {
    log->info("node {}: {} assignments, {} local instances", options_.node,
              fresh.size(), local.size());
  }
}

void NodeAgent::OnAssignEvents(const std::vector<WatchEvent>& events) {
  auto log = GetLogger("cluster");
  const std::string prefix = keys::AssignmentPrefix(options_.node);
  std::map<std::string, Instance> local = LocalInstances();
  for (const WatchEvent& ev : events) {
    if (!absl::StartsWith(ev.kv.key, prefix)) continue;
    std::string id = ev.kv.key.substr(prefix.size());
    if (id.empty() || id.find('/') != std::string::npos) continue;
    if (ev.type == WatchEvent::Type::kPut) {
      Held h;
      if (!h.assignment.ParseFromString(ev.kv.value)) {
        log->warn("node {}: ignoring unreadable assignment {}", options_.node,
                  ev.kv.key);
        continue;
      }
      h.version = ev.kv.resource_version;
      {
        absl::MutexLock l(&mu_);
        assignments_[id] = h;
      }
      Follow(id, h.assignment, &local);
      continue;
    }
    // Deleted: by this agent once its instance was gone, or by the leader,
    // which gave the instance up (this node was lost).
    std::optional<Held> held;
    {
      absl::MutexLock l(&mu_);
      auto it = assignments_.find(id);
      if (it != assignments_.end()) {
        held = std::move(it->second);
        assignments_.erase(it);
      }
      ended_.erase(id);
      failed_starts_.erase(id);
    }
    auto running = local.find(id);
    if (running == local.end()) {
      // Nothing runs: what may be left is a status record.
      absl::Status s = RemoveRecords(id);
      if (!s.ok()) {
        log->warn("node {}: removing the records of {}: {}", options_.node, id,
                  s.ToString());
      }
      continue;
    }
    if (running->second.phase() == "Terminating") continue;
    absl::Duration grace = options_.orphan_grace;
    if (held && held->assignment.stop()) {
      grace = absl::Milliseconds(held->assignment.grace_ms());
    } else if (held &&
               held->assignment.template_().termination_grace_period_seconds() >
                   0) {
      grace = absl::Seconds(
          held->assignment.template_().termination_grace_period_seconds());
    }
    log->warn("node {}: the assignment of instance {} was deleted; stopping it",
              options_.node, id);
    absl::Status s = local_->Stop(id, grace);
    if (!s.ok() && !absl::IsNotFound(s)) {
      log->warn("node {}: stopping {}: {}", options_.node, id, s.ToString());
    }
    running->second.set_phase("Terminating");
  }
}

void NodeAgent::Follow(const std::string& id, const Assignment& a,
                       std::map<std::string, Instance>* local) {
  auto log = GetLogger("cluster");
  auto running = local->find(id);
  if (a.stop()) {
    {
      absl::MutexLock l(&mu_);
      failed_starts_.erase(id);
    }
    if (running != local->end()) {
      // Again on every change: a shorter grace brings the SIGKILL forward.
      absl::Status s = local_->Stop(id, absl::Milliseconds(a.grace_ms()));
      if (!s.ok() && !absl::IsNotFound(s)) {
        log->warn("node {}: stopping {}: {}", options_.node, id, s.ToString());
      }
      return;
    }
    // Nothing runs under it (any more): clean up.
    absl::Status s = RemoveRecords(id);
    if (!s.ok()) {
      log->warn("node {}: removing the records of {}: {}", options_.node, id,
                s.ToString());
    }
    return;
  }
  if (running != local->end()) return;
  bool ended = false;
  {
    absl::MutexLock l(&mu_);
    if (failed_starts_.count(id) > 0) return;  // retried later
    ended = ended_.count(id) > 0;
  }
  if (ended) {
    // It ran here and ended: never again under this id (the leader starts
    // another); its records go.
    absl::Status s = RemoveRecords(id);
    if (!s.ok()) {
      log->warn("node {}: removing the records of {}: {}", options_.node, id,
                s.ToString());
    }
    return;
  }
  std::optional<Instance> started = StartLocal(id, a);
  if (started) (*local)[id] = std::move(*started);
}

std::optional<Instance> NodeAgent::StartLocal(const std::string& id,
                                              const Assignment& a) {
  InstanceRequest req;
  req.namespace_ = a.namespace_();
  req.app = a.app();
  req.template_hash = a.template_hash();
  req.revision = a.revision();
  req.tmpl = a.template_();
  req.id = id;
  absl::StatusOr<Instance> inst = local_->Start(req);
  // AlreadyExists is a success only when the instance does run here (started
  // meanwhile by another of the agent's threads); otherwise something left
  // under that id keeps it from starting: a failed start, tried again.
  if (inst.ok() || (absl::IsAlreadyExists(inst.status()) && RunsHere(id))) {
    absl::MutexLock l(&mu_);
    failed_starts_.erase(id);
    if (inst.ok()) return *inst;
    return std::nullopt;
  }
  GetLogger("cluster")->warn("node {}: app={}/{} starting instance {}: {}",
                             options_.node, a.namespace_(), a.app(), id,
                             inst.status().ToString());
  // Say so in its status (the leader sees it failed) and as an event.
  InstanceChange c;
  Instance& info = c.instance;
  info.set_id(id);
  info.set_namespace_(a.namespace_());
  info.set_app(a.app());
  info.set_template_hash(a.template_hash());
  info.set_revision(a.revision());
  info.set_phase("Failed");
  info.set_ready(false);
  // A secret reference that does not resolve here (docs/secrets.md):
  // Kubernetes' reason.
  const bool config =
      absl::StartsWith(inst.status().message(), "CreateContainerConfigError: ");
  info.set_reason(config ? "CreateContainerConfigError" : "StartFailed");
  info.set_message(std::string(inst.status().message()));
  c.event_type = "Warning";
  c.event_reason = config ? "CreateContainerConfigError" : "FailedCreate";
  c.event_message =
      absl::StrCat("node ", options_.node, " could not start instance ", id,
                   ": ", inst.status().message());
  absl::MutexLock l(&mu_);
  failed_starts_[id] = absl::IsInvalidArgument(inst.status())
                           ? absl::InfiniteFuture()
                           : absl::Now() + options_.start_retry;
  if (unpublished_.count(id) == 0) publish_order_.push_back(id);
  unpublished_[id] = c;
  events_.push_back(std::move(c));
  return std::nullopt;
}

bool NodeAgent::RunsHere(const std::string& id) {
  for (const Instance& inst : local_->List()) {
    if (inst.id() == id) return true;
  }
  return false;
}

void NodeAgent::RetryStarts() {
  std::vector<std::pair<std::string, Assignment>> due;
  {
    absl::MutexLock l(&mu_);
    const absl::Time now = absl::Now();
    for (auto it = failed_starts_.begin(); it != failed_starts_.end();) {
      auto held = assignments_.find(it->first);
      if (it->second > now || held == assignments_.end()) {
        ++it;
        continue;
      }
      if (!held->second.assignment.stop())
        due.emplace_back(it->first, held->second.assignment);
      it = failed_starts_.erase(it);
    }
  }
  if (due.empty()) return;
  std::map<std::string, Instance> local = LocalInstances();
  for (const auto& [id, a] : due) Follow(id, a, &local);
}

absl::Status NodeAgent::RemoveRecords(const std::string& id) {
  const std::string status_key = keys::Instance(options_.node, id);
  const std::string assign_key = keys::Assignment(options_.node, id);
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::vector<Op> ops;
    for (const std::string& key : {status_key, assign_key}) {
      absl::StatusOr<KeyValue> kv = store_->Get(key);
      if (kv.ok()) {
        ops.push_back(Op::Delete(key, kv->resource_version));
      } else if (!absl::IsNotFound(kv.status())) {
        return kv.status();
      }
    }
    if (ops.empty()) return absl::OkStatus();
    absl::StatusOr<int64_t> rev = store_->Txn(ops);
    if (rev.ok()) return absl::OkStatus();
    // Changed or deleted meanwhile: read again.
    if (!absl::IsFailedPrecondition(rev.status()) &&
        !absl::IsNotFound(rev.status())) {
      return rev.status();
    }
  }
  return absl::AbortedError(
      absl::StrCat("the records of ", id, " kept changing"));
}

void NodeAgent::CollectStaleStatus(const std::set<std::string>& keep) {
  const std::string prefix = keys::InstancePrefix(options_.node);
  absl::StatusOr<ListResult> list = store_->List(prefix);
  if (!list.ok()) return;  // again at the next listing
  for (const KeyValue& kv : list->items) {
    std::string id = kv.key.substr(prefix.size());
    if (keep.count(id) > 0) continue;
    absl::StatusOr<int64_t> rev = store_->Delete(kv.key, kv.resource_version);
    if (rev.ok()) {
      GetLogger("cluster")->info(
          "node {}: deleted the stale status of instance {} (neither assigned "
          "nor running here)",
          options_.node, id);
    }
  }
}

// ---- status ----

void NodeAgent::OnLocalChange(const InstanceChange& change) {
  const std::string& id = change.instance.id();
  absl::MutexLock l(&mu_);
  if (unpublished_.count(id) == 0) publish_order_.push_back(id);
  unpublished_[id] = change;
  if (!change.event_reason.empty()) events_.push_back(change);
  if (change.removed) {
    if (assignments_.count(id) > 0) ended_.insert(id);
    failed_starts_.erase(id);
  }
}

void NodeAgent::PublishLoop() {
  auto log = GetLogger("cluster");
  absl::Duration backoff = options_.retry_min;
  bool failing = false;
  for (;;) {
    std::deque<InstanceChange> events;
    std::vector<InstanceChange> batch;
    {
      absl::MutexLock l(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !events_.empty() || !publish_order_.empty();
      };
      mu_.Await(absl::Condition(&work));
      if (stopping_) return;
      events.swap(events_);
      for (const std::string& id : publish_order_) {
        batch.push_back(std::move(unpublished_[id]));
      }
      publish_order_.clear();
      unpublished_.clear();
    }
    if (options_.on_event) {
      for (const InstanceChange& c : events) options_.on_event(c);
    }
    std::vector<InstanceChange> failed;
    absl::Status last;
    for (InstanceChange& c : batch) {
      absl::Status s;
      if (c.removed) {
        s = RemoveRecords(c.instance.id());
      } else {
        Instance& inst = c.instance;
        inst.set_node(options_.node);
        if (inst.host().empty()) inst.set_host(options_.address);
        s = store_
                ->Txn({Op::Put(keys::Instance(options_.node, inst.id()),
                               inst.SerializeAsString())})
                .status();
      }
      if (!s.ok()) {
        last = s;
        failed.push_back(std::move(c));
      }
    }
    if (failed.empty()) {
      if (failing)
        log->info("node {}: status records written again", options_.node);
      failing = false;
      backoff = options_.retry_min;
      continue;
    }
    if (!failing) {
      log->warn("node {}: writing {} status records failed (retrying): {}",
                options_.node, failed.size(), last.ToString());
    }
    failing = true;
    {
      absl::MutexLock l(&mu_);
      // Back in front, unless a newer change of the same instance came.
      for (auto it = failed.rbegin(); it != failed.rend(); ++it) {
        const std::string id = it->instance.id();
        if (unpublished_.count(id) > 0) continue;
        publish_order_.push_front(id);
        unpublished_[id] = std::move(*it);
      }
    }
    if (WaitOrStop(backoff)) return;
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

}  // namespace tidal::ha
