#pragma once

// ClusterRuntime: the Runtime of highly available mode (docs/ha.md), a view
// of every node's instances through the store, for the leader's controller
// and every node's API.
//
//  - Start() picks a live node and writes an Assignment for it: a node heard
//    from within kFreshHeartbeat first (a node gone quiet may be dead), then
//    the fewest of the app's instances (replicas spread over the nodes),
//    then the fewest instances (assignments not being stopped), then the
//    node name
//    (`/assign/<node>/<id>`, created, through `writes`: the leader's fenced
//    store). That node's NodeAgent starts the instance under the
//    assignment's id and publishes its status (`/instances/<node>/<id>`).
//  - Stop() marks the assignment stop (grace_ms; a shorter grace again brings
//    the SIGKILL forward); the agent stops the instance, then deletes its
//    status and assignment.
//  - List() is the status records, plus assignments not reported yet (phase
//    Starting, so nothing is started twice), with instances whose assignment
//    says stop (or which have none left) shown as Terminating.
//  - Liveness: a node is live while its NodeRecord (`/nodes/<node>`, rewritten
//    by its agent every heartbeat) changed within node_lost_timeout by this
//    process's clock; nodes first seen in a listing count as just seen, so a
//    new leader waits a full timeout before declaring anyone lost. New
//    instances go only to nodes seen heartbeating by this process (this node:
//    once its record exists). The instances of a lost node leave List() (the
//    listener gets removed, event NodeLost) so the controller replaces them;
//    while acting (SetActing(true): this node leads) their assignments and
//    status records are deleted (through `writes`), so the node's agent
//    stops them should the node come back.
//
// Thread-safe. The listener is called for every change of an instance's view
// seen in the store (and for this object's own writes), in order, without
// internal locks held, on the thread that saw the change.

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "ha/remote_logs.h"
#include "ha/store_mirror.h"
#include "runtime/runtime.h"
#include "store/store.h"
#include "tidal/v1/ha.pb.h"

namespace tidal::ha {

struct ClusterRuntimeOptions {
  // This node (NodeAgentOptions::node of the same tidald): OpenLogs and
  // Usage of its instances go to the local runtime.
  std::string node;
  // A node not heard from (its NodeRecord unchanged) this long is lost.
  absl::Duration node_lost_timeout = absl::Seconds(30);
  // How often (real time) liveness is checked in the background; zero: only
  // when CheckLiveness() is called.
  absl::Duration check_interval = absl::Seconds(1);
  // Liveness and Assignment.created. Defaults to RealClock.
  Clock* clock = nullptr;
  // The watches' back-off and poll (tests shorten them).
  StoreMirror::Options mirror;
  // Opens the logs of an instance on another node (GrpcRemoteLogOpener: its
  // node's API). Unset, or with LogOptions::local_only: OpenLogs of such an
  // instance is FailedPrecondition naming the node and its API address.
  RemoteLogOpener remote_logs;
};

class ClusterRuntime : public Runtime {
 public:
  using Options = ClusterRuntimeOptions;
  // Nodes heartbeat every second: one silent for longer than three beats
  // gets new instances only when no other node can take them.
  static constexpr absl::Duration kFreshHeartbeat = absl::Seconds(3);

  // `reads`: the plain store (listed and watched); `writes`: where
  // assignments are written and deleted (the leader's FencedStore; a
  // standby's refuses, so a standby's Start/Stop fail). `local`: this node's
  // runtime (driven by its NodeAgent), for OpenLogs and Usage of the
  // instances running here. None is owned.
  ClusterRuntime(Store* reads, Store* writes, Runtime* local, Options options);
  ~ClusterRuntime() override;  // Shutdown(false)

  ClusterRuntime(const ClusterRuntime&) = delete;
  ClusterRuntime& operator=(const ClusterRuntime&) = delete;

  // Writes an assignment for a live node (req.id, or a new
  // "<app>-<5 chars>"); returns the instance in phase Starting with its node.
  // Unavailable when no node is live (or before Adopt); AlreadyExists for a
  // req.id in use; the store's error when the write fails (a standby:
  // refused by its fenced store).
  absl::StatusOr<tidal::v1::Instance> Start(
      const InstanceRequest& req) override;
  // Marks the instance's assignment stop with `grace` (or a shorter grace
  // than it has). NotFound for an unknown instance; OK for one without an
  // assignment (its node stops such an instance by itself).
  absl::Status Stop(const std::string& instance_id,
                    absl::Duration grace) override;
  std::vector<tidal::v1::Instance> List(const std::string& namespace_ = "",
                                        const std::string& app = "") override;
  void SetListener(Listener listener) override;
  // Lists `/nodes/`, `/assign/` and `/instances/` (the view is complete when
  // it returns OK) and watches them; starts the liveness checks. Every node
  // calls it at start-up (its API lists from it). It does not adopt local
  // processes: the node's NodeAgent does (it owns the local runtime).
  absl::Status Adopt() override;
  // The local runtime's figures for this node's instances, and for other
  // live nodes' the figures their agents put in their last heartbeat
  // (NodeRecord.usage, at most a heartbeat period old).
  std::vector<InstanceUsage> Usage(const std::string& namespace_ = "",
                                   const std::string& app = "") override;
  // The local runtime's stream for an instance of this node (or one no node
  // has any more: its log may still be here). An instance on another node,
  // or one that stopped there and whose log that node keeps (its
  // NodeRecord.stopped), is read from that node's API (remote_logs, with
  // LogOptions::previous for a stopped one); FailedPrecondition without
  // remote_logs or with local_only: "instance X runs on node N; ask its API
  // at ADDRESS".
  absl::StatusOr<std::unique_ptr<LogStream>> OpenLogs(
      const std::string& instance_id, const LogOptions& options) override;
  // The local runtime's stopped instances, then those the other live nodes
  // list in their NodeRecords (HA `tidalctl logs --previous`).
  std::vector<StoppedInstance> StoppedInstances(
      const std::string& namespace_ = "", const std::string& app = "") override;
  // Stops the watches and the liveness checks. Instances are not touched
  // (stop_instances is for the local runtime, which the Server shuts down).
  void Shutdown(bool stop_instances) override;

  // Whether this node leads: while acting, the assignments and status
  // records of lost nodes are deleted (now, and at every check).
  void SetActing(bool acting);
  // A liveness check now (also run every check_interval).
  void CheckLiveness();

  // What this process knows of a node (`tidalctl get nodes`, tests).
  struct NodeInfo {
    std::string name;
    tidal::v1::NodeRecord record;  // empty when its record is gone
    bool has_record = false;
    bool live = false;          // heard from within node_lost_timeout
    bool heartbeating = false;  // a heartbeat was seen by this process
    absl::Time last_seen;       // by this process's clock
    int assignments = 0;        // not being stopped
  };
  std::vector<NodeInfo> Nodes();

 private:
  struct NodeState {
    tidal::v1::NodeRecord record;
    bool has_record = false;
    int64_t version = 0;
    absl::Time last_seen;
    bool heartbeating = false;
    bool lost = false;
  };
  // What the store says of one instance id.
  struct Entry {
    std::optional<tidal::v1::Assignment> assignment;
    std::string assign_node;
    int64_t assign_version = 0;
    std::optional<tidal::v1::Instance> status;
    std::string status_node;
    int64_t status_version = 0;
  };
  enum class Kind { kNode, kAssignment, kStatus };

  // Store callbacks (mirror threads, or Adopt's caller for first listings).
  void OnList(Kind kind, const ListResult& list, bool first);
  void OnEvents(Kind kind, const std::vector<WatchEvent>& events);
  // The assignments (read from the store now) of status records whose
  // assignment is not known here: the assignments' watch may lag behind the
  // statuses' (a status is written after its assignment), and a status
  // without assignment would show as Terminating meanwhile.
  std::vector<KeyValue> AssignmentsOf(
      const std::vector<std::string>& status_keys) ABSL_LOCKS_EXCLUDED(mu_);
  // Applies one key's value (nullptr: deleted) at `version`.
  void ApplyLocked(Kind kind, const std::string& key, const std::string* value,
                   int64_t version, bool listing,
                   std::vector<std::string>* touched)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NodeSeenLocked(const std::string& node, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  NodeState& NodeLocked(const std::string& node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What List() shows of an entry, if anything.
  std::optional<tidal::v1::Instance> ViewLocked(const Entry& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recomputes the views of `ids`, queueing a change for each that changed.
  void RefreshLocked(const std::vector<std::string>& ids,
                     const std::string& lost_node = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> IdsOnNodeLocked(const std::string& node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the listener with the queued changes, in order.
  void Deliver() ABSL_LOCKS_EXCLUDED(mu_);
  // Deletes the assignments and status records of lost nodes.
  void CleanUpLostNodes() ABSL_LOCKS_EXCLUDED(mu_);
  void CheckLoop();
  std::string NewIdLocked(const std::string& app)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Store* const reads_;
  Store* const writes_;
  Runtime* const local_;
  const Options options_;
  Clock* const clock_;

  absl::Mutex mu_;
  Listener listener_ ABSL_GUARDED_BY(mu_);
  // One thread at a time calls the listener (with changes taken from
  // pending_), outside mu_; SetListener waits for it.
  bool delivering_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id delivering_thread_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, NodeState> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);  // by id
  // What List() shows (and the listener was told), by id.
  std::map<std::string, tidal::v1::Instance> shown_ ABSL_GUARDED_BY(mu_);
  std::vector<InstanceChange> pending_ ABSL_GUARDED_BY(mu_);
  // The revision up to which the assignments' watch was applied.
  int64_t assign_seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool adopted_ ABSL_GUARDED_BY(mu_) = false;
  bool acting_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);

  std::unique_ptr<StoreMirror> node_mirror_;
  std::unique_ptr<StoreMirror> assign_mirror_;
  std::unique_ptr<StoreMirror> status_mirror_;
  std::thread check_thread_;
};

}  // namespace tidal::ha
