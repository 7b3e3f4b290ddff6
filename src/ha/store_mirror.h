#pragma once

// StoreMirror: follows one key prefix of the Store for the cluster's parts
// (NodeAgent, ClusterRuntime): a List, then a Watch from the list's revision,
// handing both to its owner. When the watch falls behind or its revision was
// compacted (OutOfRange), or on any other error, it lists again (after a
// back-off for errors) and hands over the whole listing, so nothing is lost.
//
// Thread-safe. The callbacks run one at a time on the mirror's thread (the
// first listing of Start(true): on the caller's).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace tidal::ha {

class StoreMirror {
 public:
  struct Callbacks {
    // Everything under the prefix at one revision (the first listing and
    // every re-list): the owner replaces what it knew. `first`: the first
    // listing since Start.
    std::function<void(const ListResult& list, bool first)> on_list;
    // Changes after the last listing, in revision order.
    std::function<void(const std::vector<WatchEvent>& events)> on_events;
  };
  struct Options {
    // How long one wait for watch events lasts (Stop interrupts it anyway).
    absl::Duration poll = absl::Seconds(1);
    // Back-off after an error: doubling from retry_min up to retry_max.
    absl::Duration retry_min = absl::Milliseconds(50);
    absl::Duration retry_max = absl::Seconds(2);
  };

  StoreMirror(Store* store, std::string prefix, Callbacks callbacks,
              Options options);
  StoreMirror(Store* store, std::string prefix, Callbacks callbacks)
      : StoreMirror(store, std::move(prefix), std::move(callbacks), Options()) {
  }
  ~StoreMirror();  // Stop()

  StoreMirror(const StoreMirror&) = delete;
  StoreMirror& operator=(const StoreMirror&) = delete;

  // Starts following. list_first: the first listing is done on the caller's
  // thread and its error returned (then nothing runs); else it is done (and
  // retried) on the mirror's thread.
  absl::Status Start(bool list_first);
  // Stops the thread; no callback runs after it returns. Start may follow.
  void Stop();

  // Listings done since construction (the first included).
  int64_t lists() const;
  // The revision of the last listing or event handed over.
  int64_t revision() const;

 private:
  // Lists and hands the listing over; the revision to watch from.
  absl::StatusOr<int64_t> ListOnce(bool first);
  void Run(bool listed, int64_t from);
  // Waits up to `d` or until Stop; true when stopping.
  bool WaitOrStop(absl::Duration d);

  // Constant after construction.
  Store* const store_;
  const std::string prefix_;
  const Callbacks callbacks_;
  const Options options_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Watch* watch_ ABSL_GUARDED_BY(mu_) = nullptr;  // the open one, to cancel
  int64_t lists_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace tidal::ha
