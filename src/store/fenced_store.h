#pragma once

// FencedStore: the Store the leader's controller writes through in a highly
// available control plane (docs/ha.md). A decorator over another Store
// whose writes depend on who leads:
//   - pass-through: every call goes to the base store (single node);
//   - refuse: every Txn fails with FailedPrecondition "not the leader"
//     (a standby; nothing reaches the base store);
//   - fenced(key, token): every Txn carries Op::Check(key, token), so the
//     base store applies it only while `key` is the one created at revision
//     `token` (the leader key of the election that made this node leader).
//     A txn refused by that check returns FailedPrecondition "fenced:
//     leadership lost (...)" — a deposed leader's writes never apply.
// Reads and watches always go to the base store.
//
// Thread-safe; the mode may change at any time (a Txn uses the mode it saw
// when it started).

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "store/store.h"

namespace tidal {

class FencedStore : public Store {
 public:
  // `base` is not owned and must outlive this store. Starts in pass-through.
  explicit FencedStore(Store* base);

  void PassThrough();
  void Refuse();
  void Fence(std::string key, int64_t token);

  // Writes refused because this node does not lead (refuse mode) or lost
  // its leadership (a fenced txn the base store refused because of the
  // fence): the HA "fencing counter".
  int64_t refused_writes() const { return refused_.load(); }

  absl::StatusOr<int64_t> Txn(const std::vector<Op>& ops) override;
  absl::StatusOr<KeyValue> Get(const std::string& key) override;
  absl::StatusOr<ListResult> List(const std::string& prefix,
                                  int64_t limit = 0) override;
  absl::StatusOr<ListResult> ListAfter(const std::string& prefix,
                                       const std::string& after,
                                       int64_t limit) override;
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(
      const std::string& prefix, int64_t from_version) override;
  absl::StatusOr<int64_t> CurrentVersion() override;
  absl::Status Health() override;

 private:
  enum class Mode { kPassThrough, kRefuse, kFenced };

  // Constant after construction.
  Store* const base_;

  absl::Mutex mu_;
  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kPassThrough;
  std::string fence_key_ ABSL_GUARDED_BY(mu_);
  int64_t token_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<int64_t> refused_{0};
};

}  // namespace tidal
