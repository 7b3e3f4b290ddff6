#pragma once

// CallLimiter: counts the API's calls in flight by kind, per client and in
// total, against ApiLimits, and refuses a call beyond them. Thread-safe.

#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "api/api_limits.h"

namespace tidal {

class CallLimiter {
 public:
  enum Kind { kApply = 0, kRead = 1, kStream = 2 };

  explicit CallLimiter(ApiLimits limits) : limits_(std::move(limits)) {}

  // A call in flight until destroyed (movable; an empty one holds nothing).
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept { *this = std::move(o); }
    Slot& operator=(Slot&& o) noexcept {
      std::swap(owner_, o.owner_);
      std::swap(kind_, o.kind_);
      std::swap(client_, o.client_);
      return *this;
    }
    ~Slot() {
      if (owner_ != nullptr) owner_->Release(kind_, client_);
    }

   private:
    friend class CallLimiter;
    CallLimiter* owner_ = nullptr;
    Kind kind_ = kApply;
    std::string client_;
  };

  // Takes a slot for a `kind` call of `client`, or ResourceExhausted naming
  // the limit, its flag and when to retry (nothing is taken then).
  absl::Status Acquire(Kind kind, const std::string& client, Slot* slot);

  // Calls of `kind` in flight, and refused since the start.
  int64_t in_flight(Kind kind) const;
  int64_t refused(Kind kind) const;
  const ApiLimits& limits() const { return limits_; }

 private:
  void Release(Kind kind, const std::string& client);

  const ApiLimits limits_;
  mutable absl::Mutex mu_;
  int64_t total_[3] ABSL_GUARDED_BY(mu_) = {0, 0, 0};
  int64_t refused_[3] ABSL_GUARDED_BY(mu_) = {0, 0, 0};
  // Per client, the calls in flight of each kind (entries at zero erased).
  absl::flat_hash_map<std::string, std::array<int32_t, 3>> clients_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace tidal
