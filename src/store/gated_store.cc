#include "store/gated_store.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace tidal {

GatedStore::GatedStore(Store* base, std::function<absl::Status()> gate)
    : base_(base), gate_(std::move(gate)) {}

absl::Status GatedStore::Closed() const {
  if (!gate_) return absl::OkStatus();
  absl::Status s = gate_();
  if (!absl::IsUnavailable(s)) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(s.message(), "; tidald serves this again once it does"));
}

absl::StatusOr<int64_t> GatedStore::Txn(const std::vector<Op>& ops) {
  if (absl::Status s = Closed(); !s.ok()) return s;
  return base_->Txn(ops);
}

absl::StatusOr<KeyValue> GatedStore::Get(const std::string& key) {
  if (absl::Status s = Closed(); !s.ok()) return s;
  return base_->Get(key);
}

absl::StatusOr<ListResult> GatedStore::List(const std::string& prefix,
                                            int64_t limit) {
  if (absl::Status s = Closed(); !s.ok()) return s;
  return base_->List(prefix, limit);
}

absl::StatusOr<ListResult> GatedStore::ListAfter(const std::string& prefix,
                                                 const std::string& after,
                                                 int64_t limit) {
  if (absl::Status s = Closed(); !s.ok()) return s;
  return base_->ListAfter(prefix, after, limit);
}

absl::StatusOr<std::unique_ptr<Watch>> GatedStore::WatchPrefix(
    const std::string& prefix, int64_t from_version) {
  if (absl::Status s = Closed(); !s.ok()) return s;
  return base_->WatchPrefix(prefix, from_version);
}

absl::StatusOr<int64_t> GatedStore::CurrentVersion() {
  if (absl::Status s = Closed(); !s.ok()) return s;
  return base_->CurrentVersion();
}

absl::Status GatedStore::Health() { return base_->Health(); }

}  // namespace tidal
