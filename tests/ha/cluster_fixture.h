#pragma once

// Helpers of the cluster tests (node_agent_test, cluster_runtime_test): the
// options of fast agents and cluster runtimes over a FakeClock, records
// written and read by hand, and a recorder of listener calls.

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "fakes/fake_clock.h"
#include "ha/cluster_runtime.h"
#include "ha/node_agent.h"
#include "runtime/runtime.h"
#include "store/keys.h"
#include "store/store.h"
#include "tidal/v1/ha.pb.h"

namespace tidal::ha::testing {

// Watches that notice changes and errors at once.
inline StoreMirror::Options FastMirror() {
  StoreMirror::Options o;
  o.poll = absl::Milliseconds(50);
  o.retry_min = absl::Milliseconds(5);
  o.retry_max = absl::Milliseconds(50);
  return o;
}

// Node "a" is 10.0.0.1, its API at 10.0.0.1:7070, "b" 10.0.0.2, ...
inline NodeAgentOptions AgentOptions(const std::string& node, Clock* clock) {
  NodeAgentOptions o;
  o.node = node;
  const int n = node.empty() ? 0 : node[0] - 'a' + 1;
  o.address = absl::StrCat("10.0.0.", n);
  o.api_address = absl::StrCat("10.0.0.", n, ":7070");
  o.gateway_port = 8080;
  o.heartbeat_period = absl::Milliseconds(10);
  o.orphan_grace = absl::Seconds(3);
  o.start_retry = absl::Milliseconds(20);
  o.retry_min = absl::Milliseconds(5);
  o.clock = clock;
  o.mirror = FastMirror();
  return o;
}

// Liveness is checked only when the test calls CheckLiveness().
inline ClusterRuntimeOptions ClusterOptions(const std::string& node,
                                            Clock* clock) {
  ClusterRuntimeOptions o;
  o.node = node;
  o.node_lost_timeout = absl::Seconds(30);
  o.check_interval = absl::ZeroDuration();
  o.clock = clock;
  o.mirror = FastMirror();
  return o;
}

inline tidal::v1::Template SleepTemplate() {
  tidal::v1::Template t;
  t.add_command("/bin/sleep");
  t.add_args("1000");
  t.set_termination_grace_period_seconds(5);
  return t;
}

inline InstanceRequest Request(const std::string& app = "hello",
                               const std::string& ns = "default") {
  InstanceRequest req;
  req.namespace_ = ns;
  req.app = app;
  req.template_hash = "h1";
  req.revision = 1;
  req.tmpl = SleepTemplate();
  return req;
}

inline tidal::v1::Assignment MakeAssignment(const std::string& id,
                                            const std::string& app = "hello") {
  tidal::v1::Assignment a;
  a.set_id(id);
  a.set_namespace_("default");
  a.set_app(app);
  a.set_template_hash("h1");
  a.set_revision(1);
  *a.mutable_template_() = SleepTemplate();
  return a;
}

inline absl::StatusOr<int64_t> PutAssignment(Store* store,
                                             const std::string& node,
                                             const tidal::v1::Assignment& a) {
  return store->Txn(
      {Op::Put(keys::Assignment(node, a.id()), a.SerializeAsString())});
}

inline std::optional<tidal::v1::Assignment> GetAssignment(
    Store* store, const std::string& node, const std::string& id) {
  auto kv = store->Get(keys::Assignment(node, id));
  if (!kv.ok()) return std::nullopt;
  tidal::v1::Assignment a;
  if (!a.ParseFromString(kv->value)) return std::nullopt;
  return a;
}

inline std::optional<tidal::v1::Instance> GetStatus(Store* store,
                                                    const std::string& node,
                                                    const std::string& id) {
  auto kv = store->Get(keys::Instance(node, id));
  if (!kv.ok()) return std::nullopt;
  tidal::v1::Instance inst;
  if (!inst.ParseFromString(kv->value)) return std::nullopt;
  return inst;
}

inline std::optional<tidal::v1::NodeRecord> GetNode(Store* store,
                                                    const std::string& node) {
  auto kv = store->Get(keys::Node(node));
  if (!kv.ok()) return std::nullopt;
  tidal::v1::NodeRecord rec;
  if (!rec.ParseFromString(kv->value)) return std::nullopt;
  return rec;
}

// Writes a node's record as its agent would (a heartbeat), `beat` counting.
inline absl::StatusOr<int64_t> Beat(Store* store, const std::string& node,
                                    int64_t beat) {
  tidal::v1::NodeRecord rec;
  rec.set_name(node);
  rec.set_api_address(absl::StrCat(node, ".example:7070"));
  rec.set_heartbeats(beat);
  return store->Txn({Op::Put(keys::Node(node), rec.SerializeAsString())});
}

inline std::optional<tidal::v1::Instance> Find(
    const std::vector<tidal::v1::Instance>& list, const std::string& id) {
  for (const auto& i : list) {
    if (i.id() == id) return i;
  }
  return std::nullopt;
}

// Collects what a listener (or on_event) is given.
class Recorder {
 public:
  std::function<void(const InstanceChange&)> listener() {
    return [this](const InstanceChange& c) {
      absl::MutexLock l(&mu_);
      changes_.push_back(c);
    };
  }
  std::vector<InstanceChange> changes() {
    absl::MutexLock l(&mu_);
    return changes_;
  }
  bool Saw(const std::function<bool(const InstanceChange&)>& match) {
    for (const auto& c : changes()) {
      if (match(c)) return true;
    }
    return false;
  }
  bool Removed(const std::string& id) {
    return Saw([&](const InstanceChange& c) {
      return c.removed && c.instance.id() == id;
    });
  }

 private:
  absl::Mutex mu_;
  std::vector<InstanceChange> changes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tidal::ha::testing
