#include "ha/cluster_runtime.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "google/protobuf/util/message_differencer.h"
#include "store/keys.h"

namespace tidal::ha {
namespace {

using tidal::v1::Assignment;
using tidal::v1::Instance;
using tidal::v1::NodeRecord;

// "<node>/<id>" after `prefix` of a key; false for anything else.
bool SplitNodeKey(const std::string& key, const std::string& prefix,
                  std::string* node, std::string* id) {
  if (!absl::StartsWith(key, prefix)) return false;
  std::string rest = key.substr(prefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size())
    return false;
  *node = rest.substr(0, slash);
  *id = rest.substr(slash + 1);
  return id->find('/') == std::string::npos;
}

}  // namespace

ClusterRuntime::ClusterRuntime(Store* reads, Store* writes, Runtime* local,
                               Options options)
    : reads_(reads),
      writes_(writes),
      local_(local),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock::Get()),
      rng_(std::random_device{}()) {}

ClusterRuntime::~ClusterRuntime() { Shutdown(false); }

// ---- the view ----

ClusterRuntime::NodeState& ClusterRuntime::NodeLocked(const std::string& node) {
  auto it = nodes_.find(node);
  if (it != nodes_.end()) return it->second;
  // Heard of for the first time (through an instance): counts as just seen.
  NodeState& st = nodes_[node];
  st.last_seen = clock_->Now();
  return st;
}

void ClusterRuntime::NodeSeenLocked(const std::string& node, absl::Time now) {
  NodeState& st = NodeLocked(node);
  st.last_seen = now;
  st.heartbeating = true;
  if (st.lost) {
    st.lost = false;
    GetLogger("cluster")->info("cluster: node {} is back", node);
    RefreshLocked(IdsOnNodeLocked(node));
  }
}

void ClusterRuntime::ApplyLocked(Kind kind, const std::string& key,
                                 const std::string* value, int64_t version,
                                 bool first_listing,
                                 std::vector<std::string>* touched) {
  auto log = GetLogger("cluster");
  if (kind == Kind::kNode) {
    if (!absl::StartsWith(key, keys::NodePrefix())) return;
    std::string name = key.substr(keys::NodePrefix().size());
    if (name.empty() || name.find('/') != std::string::npos) return;
    const bool known = nodes_.count(name) > 0;
    NodeState& st = NodeLocked(name);
    if (version < st.version) return;  // older than what we have
    if (value == nullptr) {
      if (st.has_record) log->info("cluster: node {} record deleted", name);
      st.has_record = false;
      st.record.Clear();
      st.heartbeating = false;
      st.version = version;
      return;
    }
    NodeRecord rec;
    if (!rec.ParseFromString(*value)) {
      log->warn("cluster: unreadable node record {}", key);
      return;
    }
    const bool changed = !st.has_record || st.version != version;
    st.record = std::move(rec);
    st.has_record = true;
    st.version = version;
    if (!changed) return;
    if (first_listing && !known) {
      // A new leader treats every listed node as just seen: it waits a
      // full timeout before declaring anyone lost. Only its own node counts
      // as heartbeating (this process runs it).
      st.last_seen = clock_->Now();
      if (name == options_.node) st.heartbeating = true;
      if (!known)
        log->info("cluster: node {} ({})", name, st.record.api_address());
    } else {
      if (!known)
        log->info("cluster: node {} joined ({})", name,
                  st.record.api_address());
      NodeSeenLocked(name, clock_->Now());
    }
    return;
  }

  const bool assignment = kind == Kind::kAssignment;
  std::string node, id;
  if (!SplitNodeKey(
          key, assignment ? keys::AssignmentPrefix() : keys::InstancePrefix(),
          &node, &id)) {
    return;
  }
  Entry& e = entries_[id];
  int64_t& have = assignment ? e.assign_version : e.status_version;
  if (version < have) return;  // older than what we have (our own write)
  if (value == nullptr) {
    if (assignment) {
      e.assignment.reset();
      e.assign_node.clear();
    } else {
      e.status.reset();
      e.status_node.clear();
    }
    have = 0;
  } else if (assignment) {
    Assignment a;
    if (!a.ParseFromString(*value)) {
      log->warn("cluster: unreadable assignment {}", key);
      return;
    }
    e.assignment = std::move(a);
    e.assign_node = node;
    have = version;
    NodeLocked(node);
  } else {
    Instance inst;
    if (!inst.ParseFromString(*value)) {
      log->warn("cluster: unreadable instance status {}", key);
      return;
    }
    e.status = std::move(inst);
    e.status_node = node;
    have = version;
    NodeLocked(node);
  }
  if (!e.assignment && !e.status) entries_.erase(id);
  touched->push_back(id);
}

std::optional<Instance> ClusterRuntime::ViewLocked(const Entry& e) {
  const std::string& node = e.assignment ? e.assign_node : e.status_node;
  auto it = nodes_.find(node);
  if (it != nodes_.end() && it->second.lost) return std::nullopt;
  Instance inst;
  if (e.status) {
    inst = *e.status;
    // Asked to stop, or no assignment left (its node stops it by itself).
    const bool doomed = !e.assignment || e.assignment->stop();
    if (doomed && inst.phase() != "Terminating") {
      inst.set_phase("Terminating");
      inst.set_ready(false);
    }
  } else if (e.assignment) {
    const Assignment& a = *e.assignment;
    inst.set_id(a.id());
    inst.set_namespace_(a.namespace_());
    inst.set_app(a.app());
    inst.set_template_hash(a.template_hash());
    inst.set_revision(a.revision());
    inst.set_phase(a.stop() ? "Terminating" : "Starting");
    if (a.has_created()) *inst.mutable_start_time() = a.created();
    if (a.stop()) {
      inst.set_message(absl::StrCat("stopping on node ", node));
    } else {
      inst.set_message(absl::StrCat("assigned to node ", node));
    }
  } else {
    return std::nullopt;
  }
  inst.set_node(node);
  return inst;
}

std::vector<std::string> ClusterRuntime::IdsOnNodeLocked(
    const std::string& node) {
  std::vector<std::string> ids;
  for (const auto& [id, e] : entries_) {
    if ((e.assignment && e.assign_node == node) ||
        (e.status && e.status_node == node)) {
      ids.push_back(id);
    }
  }
  return ids;
}

void ClusterRuntime::RefreshLocked(const std::vector<std::string>& ids,
                                   const std::string& lost_node) {
  for (const std::string& id : ids) {
    std::optional<Instance> view;
    auto e = entries_.find(id);
    if (e != entries_.end()) view = ViewLocked(e->second);
    auto old = shown_.find(id);
    if (view) {
      if (old != shown_.end() &&
          google::protobuf::util::MessageDifferencer::Equals(old->second,
                                                             *view)) {
        continue;
      }
      InstanceChange c;
      c.instance = *view;
      pending_.push_back(c);
      shown_[id] = std::move(*view);
    } else if (old != shown_.end()) {
      InstanceChange c;
      c.instance = old->second;
      c.removed = true;
      if (!lost_node.empty()) {
        c.event_type = "Warning";
        c.event_reason = "NodeLost";
        c.event_message =
            absl::StrCat("instance ", id, " is lost: node ", lost_node,
                         " not heard from for ",
                         absl::FormatDuration(options_.node_lost_timeout));
      }
      pending_.push_back(std::move(c));
      shown_.erase(old);
    }
  }
}

std::vector<KeyValue> ClusterRuntime::AssignmentsOf(
    const std::vector<std::string>& status_keys) {
  std::vector<std::string> wanted;
  {
    absl::MutexLock l(&mu_);
    for (const std::string& key : status_keys) {
      std::string node, id;
      if (!SplitNodeKey(key, keys::InstancePrefix(), &node, &id)) continue;
      auto it = entries_.find(id);
      if (it == entries_.end() || !it->second.assignment) {
        wanted.push_back(keys::Assignment(node, id));
      }
    }
  }
  std::vector<KeyValue> found;
  for (const std::string& key : wanted) {
    absl::StatusOr<KeyValue> kv = reads_->Get(key);
    if (kv.ok()) found.push_back(std::move(*kv));
  }
  return found;
}

void ClusterRuntime::OnList(Kind kind, const ListResult& list, bool first) {
  std::vector<KeyValue> assignments;
  if (kind == Kind::kStatus) {
    std::vector<std::string> status_keys;
    for (const KeyValue& kv : list.items) status_keys.push_back(kv.key);
    assignments = AssignmentsOf(status_keys);
  }
  {
    absl::MutexLock l(&mu_);
    std::vector<std::string> touched;
    for (const KeyValue& kv : assignments) {
      // Not yet seen by the assignments' watch (if it was, and the cache
      // lacks it, it was deleted since: the watch brings that too).
      if (kv.resource_version <= assign_seen_) continue;
      ApplyLocked(Kind::kAssignment, kv.key, &kv.value, kv.resource_version,
                  false, &touched);
    }
    std::set<std::string> listed;
    for (const KeyValue& kv : list.items) {
      listed.insert(kv.key);
      ApplyLocked(kind, kv.key, &kv.value, kv.resource_version, first,
                  &touched);
    }
    // What the listing no longer holds was deleted (unless we know a newer
    // version: our own write after the listing was read).
    std::vector<std::string> gone;
    if (kind == Kind::kNode) {
      for (const auto& [name, st] : nodes_) {
        if (st.has_record && listed.count(keys::Node(name)) == 0)
          gone.push_back(keys::Node(name));
      }
    } else {
      for (const auto& [id, e] : entries_) {
        if (kind == Kind::kAssignment && e.assignment &&
            listed.count(keys::Assignment(e.assign_node, id)) == 0) {
          gone.push_back(keys::Assignment(e.assign_node, id));
        }
        if (kind == Kind::kStatus && e.status &&
            listed.count(keys::Instance(e.status_node, id)) == 0) {
          gone.push_back(keys::Instance(e.status_node, id));
        }
      }
    }
    for (const std::string& key : gone) {
      ApplyLocked(kind, key, nullptr, list.resource_version, first, &touched);
    }
    if (kind == Kind::kAssignment) {
      assign_seen_ = std::max(assign_seen_, list.resource_version);
    }
    RefreshLocked(touched);
  }
  Deliver();
}

void ClusterRuntime::OnEvents(Kind kind,
                              const std::vector<WatchEvent>& events) {
  std::vector<KeyValue> assignments;
  if (kind == Kind::kStatus) {
    std::vector<std::string> status_keys;
    for (const WatchEvent& ev : events) {
      if (ev.type == WatchEvent::Type::kPut) status_keys.push_back(ev.kv.key);
    }
    assignments = AssignmentsOf(status_keys);
  }
  {
    absl::MutexLock l(&mu_);
    std::vector<std::string> touched;
    for (const KeyValue& kv : assignments) {
      // Not yet seen by the assignments' watch (if it was, and the cache
      // lacks it, it was deleted since: the watch brings that too).
      if (kv.resource_version <= assign_seen_) continue;
      ApplyLocked(Kind::kAssignment, kv.key, &kv.value, kv.resource_version,
                  false, &touched);
    }
    for (const WatchEvent& ev : events) {
      ApplyLocked(kind, ev.kv.key,
                  ev.type == WatchEvent::Type::kPut ? &ev.kv.value : nullptr,
                  ev.kv.resource_version, /*first_listing=*/false, &touched);
      if (kind == Kind::kAssignment) {
        assign_seen_ = std::max(assign_seen_, ev.kv.resource_version);
      }
    }
    RefreshLocked(touched);
  }
  Deliver();
}

void ClusterRuntime::Deliver() {
  for (;;) {
    std::vector<InstanceChange> batch;
    Listener listener;
    {
      absl::MutexLock l(&mu_);
      if (delivering_ || pending_.empty()) return;
      delivering_ = true;
      delivering_thread_ = std::this_thread::get_id();
      batch.swap(pending_);
      listener = listener_;
    }
    for (const InstanceChange& c : batch) {
      if (listener) listener(c);
    }
    absl::MutexLock l(&mu_);
    delivering_ = false;
  }
}

// ---- Runtime ----

std::string ClusterRuntime::NewIdLocked(const std::string& app) {
  static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  for (;;) {
    std::string id = app + "-";
    for (int i = 0; i < 5; ++i) id += kAlnum[rng_() % 36];
    if (entries_.count(id) == 0) return id;
  }
}

absl::StatusOr<Instance> ClusterRuntime::Start(const InstanceRequest& req) {
  if (req.tmpl.command().empty()) {
    return absl::InvalidArgumentError("template.command is empty");
  }
  std::string node, id, key, value;
  {
    absl::MutexLock l(&mu_);
    if (!adopted_ || stopping_) {
      return absl::UnavailableError(
          "the cluster runtime is not following the store");
    }
    const absl::Time now = clock_->Now();
    // Where it goes: a node heard from lately (kFreshHeartbeat) before one
    // gone quiet but not yet lost (it may be dead: a new leader would put
    // instances on the old one), then the fewest instances of this app (its
    // replicas spread), then the fewest instances, then the name.
    struct Load {
      bool quiet = false;
      int app = 0;
      int total = 0;
      bool operator<(const Load& o) const {
        return std::tie(quiet, app, total) < std::tie(o.quiet, o.app, o.total);
      }
    };
    std::map<std::string, Load> load;
    for (const auto& [name, st] : nodes_) {
      if (st.has_record && st.heartbeating && !st.lost &&
          now - st.last_seen <= options_.node_lost_timeout) {
        load[name].quiet = now - st.last_seen > kFreshHeartbeat;
      }
    }
    if (load.empty()) {
      std::vector<std::string> known;
      for (const auto& [name, st] : nodes_) {
        known.push_back(absl::StrCat(name, st.lost          ? " (lost)"
                                           : !st.has_record ? " (no record)"
                                           : !st.heartbeating
                                               ? " (no heartbeat seen yet)"
                                               : " (not heard from)"));
      }
      return absl::UnavailableError(absl::StrCat(
          "no live node to run instances on",
          known.empty() ? "" : absl::StrCat(": ", absl::StrJoin(known, ", "))));
    }
    for (const auto& [eid, e] : entries_) {
      if (e.assignment && !e.assignment->stop()) {
        auto it = load.find(e.assign_node);
        if (it == load.end()) continue;
        ++it->second.total;
        if (e.assignment->app() == req.app &&
            e.assignment->namespace_() == req.namespace_) {
          ++it->second.app;
        }
      }
    }
    auto best = load.begin();
    for (auto it = load.begin(); it != load.end(); ++it) {
      if (it->second < best->second) best = it;
    }
    node = best->first;
    if (req.id.empty()) {
      id = NewIdLocked(req.app);
    } else {
      if (entries_.count(req.id) > 0) {
        return absl::AlreadyExistsError(
            absl::StrCat("instance ", req.id, " already exists"));
      }
      id = req.id;
    }
    Assignment a;
    a.set_id(id);
    a.set_namespace_(req.namespace_);
    a.set_app(req.app);
    a.set_template_hash(req.template_hash);
    a.set_revision(req.revision);
    *a.mutable_template_() = req.tmpl;
    *a.mutable_created() = ToProtoTime(now);
    key = keys::Assignment(node, id);
    value = a.SerializeAsString();
  }
  absl::StatusOr<int64_t> rev = writes_->Txn({Op::Put(key, value, 0)});
  if (!rev.ok()) return rev.status();
  {
    absl::MutexLock l(&mu_);
    std::vector<std::string> touched;
    ApplyLocked(Kind::kAssignment, key, &value, *rev, false, &touched);
    RefreshLocked(touched);
  }
  // As assigned (its node may have reported it already: List says).
  Instance out;
  out.set_id(id);
  out.set_namespace_(req.namespace_);
  out.set_app(req.app);
  out.set_template_hash(req.template_hash);
  out.set_revision(req.revision);
  out.set_phase("Starting");
  out.set_node(node);
  out.set_message(absl::StrCat("assigned to node ", node));
  Assignment written;
  if (written.ParseFromString(value))
    *out.mutable_start_time() = written.created();
  GetLogger("cluster")->info("app={}/{} instance {} assigned to node {}",
                             req.namespace_, req.app, id, node);
  Deliver();
  return out;
}

absl::Status ClusterRuntime::Stop(const std::string& instance_id,
                                  absl::Duration grace) {
  const int64_t grace_ms =
      std::max<int64_t>(0, absl::ToInt64Milliseconds(grace));
  for (int attempt = 0;; ++attempt) {
    std::string key, value;
    int64_t version = 0;
    {
      absl::MutexLock l(&mu_);
      auto it = entries_.find(instance_id);
      if (it == entries_.end()) {
        return absl::NotFoundError(absl::StrCat("no instance ", instance_id));
      }
      const Entry& e = it->second;
      // Without an assignment its node stops it by itself.
      if (!e.assignment) return absl::OkStatus();
      Assignment a = *e.assignment;
      if (a.stop() && a.grace_ms() <= grace_ms) return absl::OkStatus();
      a.set_grace_ms(a.stop() ? std::min(a.grace_ms(), grace_ms) : grace_ms);
      a.set_stop(true);
      key = keys::Assignment(e.assign_node, instance_id);
      value = a.SerializeAsString();
      version = e.assign_version;
    }
    absl::StatusOr<int64_t> rev = writes_->Txn({Op::Put(key, value, version)});
    if (rev.ok()) {
      {
        absl::MutexLock l(&mu_);
        std::vector<std::string> touched;
        ApplyLocked(Kind::kAssignment, key, &value, *rev, false, &touched);
        RefreshLocked(touched);
      }
      Deliver();
      return absl::OkStatus();
    }
    if (!absl::IsFailedPrecondition(rev.status()) || attempt >= 4) {
      return rev.status();
    }
    // Changed (or gone) meanwhile: read it again and retry.
    absl::StatusOr<KeyValue> kv = reads_->Get(key);
    if (!kv.ok() && !absl::IsNotFound(kv.status())) return kv.status();
    // Unchanged: the refusal was not about this key (a fenced store of a
    // node that does not lead).
    if (kv.ok() && kv->resource_version == version) return rev.status();
    {
      absl::MutexLock l(&mu_);
      std::vector<std::string> touched;
      if (kv.ok()) {
        ApplyLocked(Kind::kAssignment, key, &kv->value, kv->resource_version,
                    false, &touched);
      } else {
        auto it = entries_.find(instance_id);
        if (it != entries_.end() && it->second.assign_version <= version) {
          ApplyLocked(Kind::kAssignment, key, nullptr, version, false,
                      &touched);
        }
      }
      RefreshLocked(touched);
    }
    Deliver();
  }
}

std::vector<Instance> ClusterRuntime::List(const std::string& namespace_,
                                           const std::string& app) {
  absl::MutexLock l(&mu_);
  std::vector<Instance> out;
  for (const auto& [id, inst] : shown_) {
    if (!namespace_.empty() && inst.namespace_() != namespace_) continue;
    if (!app.empty() && inst.app() != app) continue;
    out.push_back(inst);
  }
  return out;
}

void ClusterRuntime::SetListener(Listener listener) {
  absl::MutexLock l(&mu_);
  listener_ = std::move(listener);
  // No call of the previous listener after this returns (unless it is the
  // one calling).
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !delivering_ || delivering_thread_ == std::this_thread::get_id();
  };
  mu_.Await(absl::Condition(&idle));
}

absl::Status ClusterRuntime::Adopt() {
  {
    absl::MutexLock l(&mu_);
    if (adopted_) return absl::OkStatus();
    stopping_ = false;
  }
  auto make = [this](Kind kind, std::string prefix) {
    StoreMirror::Callbacks cb;
    cb.on_list = [this, kind](const ListResult& list, bool first) {
      OnList(kind, list, first);
    };
    cb.on_events = [this, kind](const std::vector<WatchEvent>& events) {
      OnEvents(kind, events);
    };
    return std::make_unique<StoreMirror>(reads_, std::move(prefix),
                                         std::move(cb), options_.mirror);
  };
  if (node_mirror_ == nullptr) {
    node_mirror_ = make(Kind::kNode, keys::NodePrefix());
    assign_mirror_ = make(Kind::kAssignment, keys::AssignmentPrefix());
    status_mirror_ = make(Kind::kStatus, keys::InstancePrefix());
  }
  absl::Status s = node_mirror_->Start(/*list_first=*/true);
  if (s.ok()) s = assign_mirror_->Start(true);
  if (s.ok()) s = status_mirror_->Start(true);
  if (!s.ok()) {
    node_mirror_->Stop();
    assign_mirror_->Stop();
    status_mirror_->Stop();
    return s;
  }
  size_t nodes = 0, instances = 0;
  {
    absl::MutexLock l(&mu_);
    adopted_ = true;
    nodes = nodes_.size();
    instances = shown_.size();
  }
  if (options_.check_interval > absl::ZeroDuration()) {
    check_thread_ = std::thread([this] { CheckLoop(); });
  }
  GetLogger("cluster")->info(
      "cluster: following the store: {} nodes, {} instances (node {})", nodes,
      instances, options_.node);
  Deliver();
  return absl::OkStatus();
}

std::vector<InstanceUsage> ClusterRuntime::Usage(const std::string& namespace_,
                                                 const std::string& app) {
  std::vector<InstanceUsage> out;
  if (local_ != nullptr) out = local_->Usage(namespace_, app);
  // Instances on other nodes: the figures their agents put in their last
  // heartbeat (nothing for a lost node: its instances left the view).
  absl::MutexLock l(&mu_);
  for (const auto& [name, node] : nodes_) {
    if (name == options_.node || !node.has_record || node.lost) continue;
    for (const tidal::v1::InstanceUsageRecord& r : node.record.usage()) {
      auto it = shown_.find(r.instance_id());
      if (it == shown_.end() || it->second.node() != name) continue;
      const tidal::v1::Instance& inst = it->second;
      if ((!namespace_.empty() && inst.namespace_() != namespace_) ||
          (!app.empty() && inst.app() != app)) {
        continue;
      }
      InstanceUsage u;
      u.instance_id = r.instance_id();
      u.cpu_seconds = r.cpu_seconds();
      u.memory_bytes = r.memory_bytes();
      u.sampled_at = FromProtoTime(r.sampled_at());
      out.push_back(std::move(u));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<LogStream>> ClusterRuntime::OpenLogs(
    const std::string& instance_id, const LogOptions& options) {
  std::optional<RemoteLogTarget> remote;
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(instance_id);
    if (it != entries_.end()) {
      const Entry& e = it->second;
      const std::string& node = e.assignment ? e.assign_node : e.status_node;
      if (node != options_.node) {
        auto n = nodes_.find(node);
        RemoteLogTarget t;
        t.node = node;
        t.api_address = n != nodes_.end() && n->second.has_record
                            ? n->second.record.api_address()
                            : "";
        t.instance_id = instance_id;
        if (e.status) {
          t.namespace_ = e.status->namespace_();
          t.app = e.status->app();
        } else {
          t.namespace_ = e.assignment->namespace_();
          t.app = e.assignment->app();
        }
        remote = std::move(t);
      }
    }
  }
  LogOptions remote_options = options;
  if (!remote) {
    absl::Status local_error =
        absl::NotFoundError(absl::StrCat("no logs of ", instance_id));
    if (local_ != nullptr) {
      auto stream = local_->OpenLogs(instance_id, options);
      if (stream.ok() || !absl::IsNotFound(stream.status())) return stream;
      local_error = stream.status();
    }
    // One that stopped on another node that still keeps its log.
    absl::MutexLock l(&mu_);
    for (const auto& [name, node] : nodes_) {
      if (name == options_.node || !node.has_record || node.lost) continue;
      for (const auto& s : node.record.stopped()) {
        if (s.instance_id() != instance_id) continue;
        remote = RemoteLogTarget{name, node.record.api_address(),
                                 s.namespace_(), s.app(), instance_id};
      }
    }
    if (!remote) return local_error;
    remote_options.previous = true;
  }
  if (options.local_only || !options_.remote_logs) {
    return absl::FailedPreconditionError(absl::StrCat(
        "instance ", instance_id,
        remote_options.previous ? " ran on node " : " runs on node ",
        remote->node, "; ask its API at ",
        remote->api_address.empty() ? "(unknown)" : remote->api_address));
  }
  return options_.remote_logs(*remote, remote_options);
}

std::vector<StoppedInstance> ClusterRuntime::StoppedInstances(
    const std::string& namespace_, const std::string& app) {
  std::vector<StoppedInstance> out;
  if (local_ != nullptr) out = local_->StoppedInstances(namespace_, app);
  const bool all = namespace_.empty() && app.empty();
  absl::MutexLock l(&mu_);
  for (const auto& [name, node] : nodes_) {
    if (name == options_.node || !node.has_record || node.lost) continue;
    for (const auto& s : node.record.stopped()) {
      if (!all && (s.namespace_() != namespace_ || s.app() != app)) continue;
      StoppedInstance si{s.instance_id(), s.namespace_(), s.app()};
      if (std::find(out.begin(), out.end(), si) == out.end()) {
        out.push_back(std::move(si));
      }
    }
  }
  return out;
}

void ClusterRuntime::Shutdown(bool stop_instances) {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    adopted_ = false;
  }
  if (check_thread_.joinable()) check_thread_.join();
  if (node_mirror_) node_mirror_->Stop();
  if (assign_mirror_) assign_mirror_->Stop();
  if (status_mirror_) status_mirror_->Stop();
}

// ---- liveness ----

void ClusterRuntime::SetActing(bool acting) {
  {
    absl::MutexLock l(&mu_);
    if (acting_ == acting) return;
    acting_ = acting;
  }
  GetLogger("cluster")->info("cluster: {} lost nodes' instances",
                             acting ? "cleaning up" : "no longer cleaning up");
  if (acting) CheckLiveness();
}

void ClusterRuntime::CheckLiveness() {
  auto log = GetLogger("cluster");
  bool acting = false;
  {
    absl::MutexLock l(&mu_);
    const absl::Time now = clock_->Now();
    for (auto& [name, st] : nodes_) {
      const bool lost = now - st.last_seen > options_.node_lost_timeout;
      if (lost == st.lost) continue;
      st.lost = lost;
      if (lost) {
        std::vector<std::string> ids = IdsOnNodeLocked(name);
        log->warn(
            "cluster: node {} is lost (not heard from for {}); {} instances "
            "of it leave the view",
            name, absl::FormatDuration(now - st.last_seen), ids.size());
        RefreshLocked(ids, name);
      } else {
        RefreshLocked(IdsOnNodeLocked(name));
      }
    }
    acting = acting_;
  }
  Deliver();
  if (acting) CleanUpLostNodes();
}

void ClusterRuntime::CleanUpLostNodes() {
  std::vector<std::pair<std::string, std::vector<Op>>> txns;
  {
    absl::MutexLock l(&mu_);
    auto lost = [this](const std::string& node)
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                      auto it = nodes_.find(node);
                      return it != nodes_.end() && it->second.lost;
                    };
    for (const auto& [id, e] : entries_) {
      std::vector<Op> ops;
      if (e.assignment && lost(e.assign_node)) {
        ops.push_back(
            Op::Delete(keys::Assignment(e.assign_node, id), e.assign_version));
      }
      if (e.status && lost(e.status_node)) {
        ops.push_back(
            Op::Delete(keys::Instance(e.status_node, id), e.status_version));
      }
      if (!ops.empty()) txns.emplace_back(id, std::move(ops));
    }
  }
  auto log = GetLogger("cluster");
  for (const auto& [id, ops] : txns) {
    absl::StatusOr<int64_t> rev = writes_->Txn(ops);
    if (rev.ok()) {
      log->info("cluster: deleted the assignment of lost instance {}", id);
    } else {
      // Changed meanwhile (the watch brings it), or not leading any more.
      log->debug("cluster: cleaning up lost instance {}: {}", id,
                 rev.status().ToString());
    }
  }
}

void ClusterRuntime::CheckLoop() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                               options_.check_interval)) {
        return;
      }
    }
    CheckLiveness();
  }
}

std::vector<ClusterRuntime::NodeInfo> ClusterRuntime::Nodes() {
  absl::MutexLock l(&mu_);
  const absl::Time now = clock_->Now();
  std::vector<NodeInfo> out;
  for (const auto& [name, st] : nodes_) {
    NodeInfo n;
    n.name = name;
    n.record = st.record;
    n.has_record = st.has_record;
    n.live = !st.lost && now - st.last_seen <= options_.node_lost_timeout;
    n.heartbeating = st.heartbeating;
    n.last_seen = st.last_seen;
    for (const auto& [id, e] : entries_) {
      if (e.assignment && e.assign_node == name && !e.assignment->stop())
        ++n.assignments;
    }
    out.push_back(std::move(n));
  }
  return out;
}

}  // namespace tidal::ha
