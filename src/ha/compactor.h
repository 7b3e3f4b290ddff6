#pragma once

// Compactor: keeps etcd's history bounded in a highly available control
// plane. Run on the leader only: every `interval` it compacts etcd's history
// up to the current revision minus `keep` revisions (watches further behind
// get OutOfRange and their informers list again).
//
// Thread-safe; Start and Stop may alternate.

#include <cstdint>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/etcd_store.h"

namespace tidal {

class Compactor {
 public:
  struct Options {
    absl::Duration interval = absl::Minutes(5);
    // Revisions of history kept behind the current one.
    int64_t keep = 10000;
  };

  // `store` is not owned and must outlive the compactor.
  Compactor(EtcdStore* store, Options options);
  ~Compactor();  // stops
  Compactor(const Compactor&) = delete;
  Compactor& operator=(const Compactor&) = delete;

  // Starts the periodic compaction (the first one after `interval`).
  void Start();
  void Stop();

  // Compacts once now, when there is history to discard: up to the current
  // revision minus `keep`, if that is past the last compaction. Returns the
  // revision compacted at (0: nothing to do).
  absl::StatusOr<int64_t> CompactOnce();

  // The revision of the last successful compaction (0: none yet).
  int64_t compacted() const;

 private:
  void Run();

  // Constant after construction.
  EtcdStore* const store_;
  const Options options_;

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  int64_t compacted_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex thread_mu_;  // Start/Stop
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace tidal
