#pragma once

// CachedHealth: a slow check (the store's health, which with etcd down takes
// its whole deadline) made on a thread of its own every `period`, so that
// /readyz answers at once from the last result. A check still running after
// `stale` is itself the answer: "the store has not answered for 3s".
// Thread-safe; the thread runs between Start() and Stop().

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tidal {

class CachedHealth {
 public:
  struct Result {
    absl::Status status;
    std::string detail;  // lines shown after the verdict ("leader: ...")
  };
  struct Options {
    absl::Duration period = absl::Seconds(1);
    absl::Duration stale = absl::Seconds(2);
    std::string what = "the store";  // "<what> has not answered for 3s"
  };
  CachedHealth(Options options, std::function<Result()> check);
  ~CachedHealth();
  CachedHealth(const CachedHealth&) = delete;
  CachedHealth& operator=(const CachedHealth&) = delete;

  // Checks once (so Current() is right at once), then every period.
  void Start();
  void Stop();

  // The last check's status; Unavailable while a check has run past
  // `stale`; Unavailable before the first check ends.
  absl::Status Current() const;
  std::string Detail() const;

 private:
  void Loop();

  const Options options_;
  const std::function<Result()> check_;
  mutable absl::Mutex mu_;
  bool have_ ABSL_GUARDED_BY(mu_) = false;
  Result last_ ABSL_GUARDED_BY(mu_);
  absl::Time running_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tidal
