#pragma once

// NodeAgent: one per tidald node in highly available mode (docs/ha.md). It
// makes the node's local runtime (the ProcessRuntime) run what the leader
// assigned to this node, and tells the cluster what runs here:
//
//  - heartbeat: writes its NodeRecord (`/nodes/<node>`) at Start and every
//    heartbeat_period (heartbeats counts up); the leader judges the node's
//    liveness by it. It carries the usage of the local instances and the
//    stopped instances whose logs the node keeps (the newest
//    kStoppedPublished), which other nodes' APIs serve `logs --previous`
//    from (ClusterRuntime::StoppedInstances).
//  - assignments: lists and watches `/assign/<node>/`. Each assignment not
//    running here is started under the assignment's id; one marked stop is
//    stopped (SIGTERM, grace_ms, then SIGKILL). A deleted assignment stops
//    its instance (the leader gave it up: the node was lost). After every
//    full listing, a local instance with no assignment (adopted after a
//    restart of tidald while the leader replaced it elsewhere) is stopped, so
//    nothing runs twice.
//  - status: publishes every change of a local instance as
//    `/instances/<node>/<id>` (tidal.v1.Instance, node and host set); once an
//    instance is gone, deletes its status record and its assignment in one
//    transaction. Events the runtime attaches to changes go to on_event.
//
// It owns the local runtime's listener and adopts its instances (Start calls
// local->Adopt()). Store errors are retried (a watch that fell behind is
// listed again). Writes go to a plain Store (a node's own keys, not fenced).
// Thread-safe.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "ha/store_mirror.h"
#include "runtime/runtime.h"
#include "store/store.h"
#include "tidal/v1/ha.pb.h"

namespace tidal::ha {

// Stopped instances a NodeRecord lists at most (the newest).
inline constexpr size_t kStoppedPublished = 100;

struct NodeAgentOptions {
  std::string node;         // --node-name
  std::string uid;          // NodeRecord.uid: the data directory's
  std::string address;      // NodeRecord.address: the host others reach
  std::string api_address;  // host:port of this node's API
  int gateway_port = 0;
  absl::Duration heartbeat_period = absl::Seconds(1);
  // The grace of a stop the leader did not give one for: an instance with no
  // assignment, or whose assignment was deleted (the template's
  // terminationGracePeriodSeconds when the agent knows it).
  absl::Duration orphan_grace = absl::Seconds(30);
  // A start that failed (other than for a bad request) is tried again after
  // this long.
  absl::Duration start_retry = absl::Seconds(10);
  // Back-off of failed status writes (doubling up to 2 s).
  absl::Duration retry_min = absl::Milliseconds(50);
  // NodeRecord.started/heartbeat. Defaults to RealClock.
  Clock* clock = nullptr;
  // Called (on the agent's publisher thread, in order) with each change of
  // a local instance that carries an event (event_reason set), and with the
  // agent's own events (FailedCreate). tidald records them (EventRecorder).
  std::function<void(const InstanceChange&)> on_event;
  // The assignment watch's back-off and poll (tests shorten them).
  StoreMirror::Options mirror;
};

class NodeAgent {
 public:
  using Options = NodeAgentOptions;

  // Neither is owned; both outlive the agent.
  NodeAgent(Store* store, Runtime* local, Options options);
  ~NodeAgent();  // Stop()

  NodeAgent(const NodeAgent&) = delete;
  NodeAgent& operator=(const NodeAgent&) = delete;

  // Sets the local runtime's listener, adopts the local instances
  // (local->Adopt(); its error is returned), then starts heartbeating,
  // following the assignments and publishing. Store errors do not fail it
  // (they are retried in the background).
  absl::Status Start();
  // Stops the agent's threads and detaches from the local runtime; the
  // instances keep running (the next tidald adopts them).
  void Stop();
  // The gateway's port, once it listens (NodeRecord.gateway_port; until
  // then Options.gateway_port).
  void SetGatewayPort(int port) { gateway_port_.store(port); }

  // Heartbeats written so far.
  int64_t heartbeats();
  // Whether the assignments were listed in full at least once since Start.
  bool synced();

 private:
  struct Held {
    tidal::v1::Assignment assignment;
    int64_t version = 0;
  };

  void OnLocalChange(const InstanceChange& change);
  void OnAssignList(const ListResult& list, bool first);
  void OnAssignEvents(const std::vector<WatchEvent>& events);
  // Makes the local runtime follow one assignment. `local`: the local
  // instances by id (an instance started is added).
  void Follow(const std::string& id, const tidal::v1::Assignment& a,
              std::map<std::string, tidal::v1::Instance>* local);
  // The instance started, or nothing (already running; or failed: then its
  // status says Failed and it is tried again later).
  std::optional<tidal::v1::Instance> StartLocal(const std::string& id,
                                                const tidal::v1::Assignment& a);
  std::map<std::string, tidal::v1::Instance> LocalInstances();
  // Whether the local runtime lists an instance with this id.
  bool RunsHere(const std::string& id);
  // Deletes what is left in the store of an instance that is gone: its
  // status record and its assignment, in one transaction. OK when neither
  // exists.
  absl::Status RemoveRecords(const std::string& id);
  // Deletes status records of ids neither assigned nor running here.
  void CollectStaleStatus(const std::set<std::string>& keep);
  absl::Status Heartbeat();
  void HeartbeatLoop();
  void RetryStarts();
  void PublishLoop();
  // Waits `d` (real time) or until Stop; true when stopping.
  bool WaitOrStop(absl::Duration d);

  // Constant after construction.
  Store* const store_;
  Runtime* const local_;
  const Options options_;
  Clock* const clock_;
  absl::Time started_;
  std::atomic<int> gateway_port_;  // set once the gateway listens

  absl::Mutex mu_;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  int64_t heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  // This node's assignments, by id, as last seen.
  std::map<std::string, Held> assignments_ ABSL_GUARDED_BY(mu_);
  // Ids of instances that ended here while their assignment was still
  // listed: never started again under that id.
  std::set<std::string> ended_ ABSL_GUARDED_BY(mu_);
  // Starts that failed: when to try again (real time).
  std::map<std::string, absl::Time> failed_starts_ ABSL_GUARDED_BY(mu_);
  // Status changes not yet written: the latest of each id, in arrival order.
  std::map<std::string, InstanceChange> unpublished_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> publish_order_ ABSL_GUARDED_BY(mu_);
  std::deque<InstanceChange> events_ ABSL_GUARDED_BY(mu_);

  std::unique_ptr<StoreMirror> mirror_;
  std::thread heartbeat_thread_;
  std::thread publish_thread_;
};

}  // namespace tidal::ha
