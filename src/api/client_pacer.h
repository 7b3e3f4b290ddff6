// Paces each client's applies (tidald --api-apply-bytes-per-second and
// --api-refused-apply-cpu-per-second): per client (its token; its address
// without one) two token buckets, refilled at their rates up to their bursts:
// the bytes of its Apply requests, taken when a call arrives, and the CPU time
// tidald spent on its applies that were refused, taken when each is refused.
// While either bucket is in debt the client's calls wait until it is repaid
// before they are answered. A client that sends large applies back to back
// (each one costs tidald tens of ms of CPU to receive and refuse,
// docs/benchmarks.md), or small specs that are costly to parse and refuse
// (deep nesting, thousands of unknown fields), is slowed to the rate, and the
// gateway keeps the CPU; a client within the rates never waits.
#ifndef TIDAL_API_CLIENT_PACER_H_
#define TIDAL_API_CLIENT_PACER_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tidal {

class ClientPacer {
 public:
  struct Options {
    int64_t bytes_per_second = 4 << 20;  // 0: no pacing by bytes
    int64_t burst = 8 << 20;  // what a rested client may send at once
    // CPU seconds of refused applies per second (0: no pacing by CPU), and
    // what a rested client may spend at once.
    double refused_cpu_per_second = 0.01;
    double refused_cpu_burst = 0.2;
    // Calls waiting at once, in total: past it a call is not held (a flood
    // from many clients cannot take every API thread).
    int max_waiting = 32;
    // The longest one call waits.
    absl::Duration max_wait = absl::Seconds(10);
  };
  explicit ClientPacer(Options options) : options_(options) {}

  // Takes `bytes` of `client`'s bucket at `now`; returns how long the call
  // should wait (zero: at once; at most max_wait).
  absl::Duration Charge(const std::string& client, int64_t bytes,
                        absl::Time now);
  // Takes `cpu` (the CPU time tidald spent on one of `client`'s applies that
  // was refused) from its CPU bucket at `now`: its next calls wait while the
  // bucket is in debt.
  void ChargeRefusedCpu(const std::string& client, absl::Duration cpu,
                        absl::Time now);

  // A wait in progress (counted against max_waiting while it lives).
  class Waiter {
   public:
    Waiter(ClientPacer* pacer, absl::Duration wait);
    ~Waiter();
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    // Whether this call may wait (false: too many wait already).
    bool admitted() const { return admitted_; }

   private:
    ClientPacer* const pacer_;
    bool admitted_ = false;
  };

  // Calls held so far, the seconds they waited, and those not held because
  // max_waiting were waiting (metrics).
  int64_t paced_total() const;
  double paced_seconds_total() const;
  int64_t not_held_total() const;
  size_t clients() const;  // buckets kept (tests)

 private:
  struct Bucket {
    double level = 0;  // bytes; below zero: in debt
    double cpu = 0;    // CPU seconds; below zero: in debt
    absl::Time at;
  };
  // `b` refilled up to `now` at the rates, capped at the bursts.
  void Refill(Bucket* b, absl::Time now) const;
  // `client`'s bucket, refilled up to `now`.
  Bucket& Take(const std::string& client, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `b` would be full at `now` (it can be forgotten).
  bool Full(const Bucket& b, absl::Time now) const;
  // How long a client with bucket `b` waits (at most max_wait).
  absl::Duration Wait(const Bucket& b) const;
  // Forgets the buckets that have filled up again (every 256 charges), so
  // that the map holds the clients of the last few seconds only.
  void Sweep(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t paced_total_ ABSL_GUARDED_BY(mu_) = 0;
  double paced_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t not_held_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t charges_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tidal

#endif  // TIDAL_API_CLIENT_PACER_H_
