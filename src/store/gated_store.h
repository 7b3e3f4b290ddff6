#pragma once

// GatedStore: a decorator that answers Unavailable at once while `gate` says
// the store does not answer, instead of letting each call wait out the
// store's own deadline. The API reads and writes through it: with etcd's
// quorum lost, a `tidalctl get` hung until its own --timeout and then said
// to raise it; it now says the store does not answer, in milliseconds.
// `gate` is cheap (tidald's once-a-second store check, CachedHealth); only
// its Unavailable closes the gate (a full disk or a damaged store still
// serves reads). Thread-safe when `gate` is.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "store/store.h"

namespace tidal {

class GatedStore : public Store {
 public:
  // `base` is not owned and must outlive this store.
  GatedStore(Store* base, std::function<absl::Status()> gate);

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
  // OK, or the Unavailable to answer with.
  absl::Status Closed() const;

  Store* const base_;
  const std::function<absl::Status()> gate_;
};

}  // namespace tidal
