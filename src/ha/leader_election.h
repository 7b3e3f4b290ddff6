#pragma once

// LeaderElector: one tidald's campaign for leadership of the control plane
// (docs/ha.md). The leader key (keys::LeaderKey()) holds a LeaderRecord on
// the leader's etcd lease; whoever creates it leads, and the key's create
// revision is the leader's fencing token (FencedStore guards every leader
// write with Op::Check(key, token)).
//
// Leader side: renews the lease every renew_interval (ttl/3) and counts
// itself deposed — calling on_deposed on its thread before doing anything
// else — as soon as (a) a keepalive says the lease is gone, (b) its local
// deadline passes: the send time of the last successful keepalive (or of the
// grant) plus the TTL minus a safety margin, on the monotonic clock, so it
// stops before etcd can expire the lease, or (c) its watch sees the key
// deleted or created again by someone else. Standby side: watches the key
// and campaigns as soon as it is deleted, and again every retry_period.
//
// Thread-safe. The callbacks run on the elector's own thread, one at a time,
// with no lock held; they must not call Start/Resign/Stop on this elector.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "store/etcd_store.h"
#include "store/keys.h"
#include "store/store.h"
#include "tidal/v1/ha.pb.h"

namespace tidal {

// Who leads, as the leader key says.
struct LeaderInfo {
  bool present = false;  // false: nobody leads now
  tidal::v1::LeaderRecord record;
  int64_t token = 0;  // the key's create revision (fencing token)
};

// Reads the leader key of `store` (`key`: keys::LeaderKey() unless told).
// Unavailable etc. from the store; a missing key is OK with present false;
// DataLoss when the value does not parse.
absl::StatusOr<LeaderInfo> CurrentLeader(
    Store* store, const std::string& key = keys::LeaderKey());

class LeaderElector {
 public:
  struct Options {
    std::string key = keys::LeaderKey();
    // This node's name (logs; record.node when that is empty).
    std::string identity;
    // The value written to the key; `since` is set at each win.
    tidal::v1::LeaderRecord record;
    // The lease's TTL: a crashed leader is replaced within about this.
    absl::Duration ttl = absl::Seconds(10);
    // How often the leader renews its lease (zero: ttl / 3).
    absl::Duration renew_interval = absl::ZeroDuration();
    // How much before the lease could expire the leader steps down (zero:
    // ttl / 10, at least 100 ms).
    absl::Duration safety_margin = absl::ZeroDuration();
    // How often a standby campaigns (besides when it sees the key go).
    absl::Duration retry_period = absl::Seconds(1);
    // For LeaderRecord.since (nullptr: the real clock). Deadlines use the
    // monotonic clock.
    Clock* clock = nullptr;
  };
  struct Callbacks {
    // This node now leads with fencing token `token`.
    std::function<void(int64_t token)> on_elected;
    // This node no longer leads (deposed or resigning). Called before the
    // elector does anything else, and before Resign revokes the lease.
    std::function<void()> on_deposed;
  };

  // `store` is not owned and must outlive the elector.
  LeaderElector(EtcdStore* store, Options options, Callbacks callbacks);
  // Resigns (graceful).
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // Starts campaigning on the elector's thread. FailedPrecondition when
  // started before, InvalidArgument for bad options.
  absl::Status Start();

  // Stops for good: stops renewing, calls on_deposed if leading, then
  // revokes the lease so the key goes and a standby wins within about one
  // retry period. Blocks until the elector's thread has finished.
  void Resign();

  // For tests (a crash): stops the thread without calling on_deposed and
  // without revoking; the lease expires on its own after the TTL.
  void Abandon();

  bool IsLeader() const;
  // The fencing token while leading, else 0.
  int64_t token() const;
  // How many times this elector won / was deposed (including resigning).
  int64_t elections() const;
  int64_t depositions() const;
  // The etcd lease the leader key is on while leading, else 0.
  int64_t lease() const;

 private:
  enum class Exit { kNone, kResign, kAbandon };
  enum class KeyEvent { kNone, kGone, kChanged, kStopped };

  void Run();
  // One campaign: grant a lease and try to create the key on it. Returns
  // true when this node now leads.
  bool Campaign();
  // Leads until deposed or stopped.
  void Lead();
  // Waits up to `timeout` for a change of the key seen by the watch (opened
  // when there is none). `token`: leading with it (0: a standby).
  KeyEvent WaitForKey(absl::Duration timeout, int64_t token);
  absl::Status OpenWatch(int64_t from, absl::Duration timeout);
  void DropWatch();
  void Deposed(const std::string& why);
  bool stopping() const;

  // Constant after construction.
  EtcdStore* const store_;
  const Options options_;
  const Callbacks callbacks_;
  absl::Duration renew_interval_;
  absl::Duration margin_;

  // Used by the elector's thread only.
  int64_t lease_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  // The revision the key's watch resumes after (0: list first; -1: leading
  // without a watch).
  int64_t watch_from_ = 0;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  Exit exit_ ABSL_GUARDED_BY(mu_) = Exit::kNone;
  bool leader_ ABSL_GUARDED_BY(mu_) = false;
  int64_t token_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t lease_id_ ABSL_GUARDED_BY(mu_) = 0;  // lease_ while leading
  int64_t elections_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t depositions_ ABSL_GUARDED_BY(mu_) = 0;
  // The watch on the key; the thread reads it, Resign/Abandon cancel it.
  std::unique_ptr<Watch> watch_ ABSL_GUARDED_BY(mu_);

  // Serializes joining the thread (Resign and Abandon from any thread).
  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace tidal
