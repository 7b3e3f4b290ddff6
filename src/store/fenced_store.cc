#include "store/fenced_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace tidal {

FencedStore::FencedStore(Store* base) : base_(base) {}

void FencedStore::PassThrough() {
  absl::MutexLock lock(&mu_);
  mode_ = Mode::kPassThrough;
  fence_key_.clear();
  token_ = 0;
}

void FencedStore::Refuse() {
  absl::MutexLock lock(&mu_);
  mode_ = Mode::kRefuse;
  fence_key_.clear();
  token_ = 0;
}

void FencedStore::Fence(std::string key, int64_t token) {
  absl::MutexLock lock(&mu_);
  mode_ = Mode::kFenced;
  fence_key_ = std::move(key);
  token_ = token;
}

absl::StatusOr<int64_t> FencedStore::Txn(const std::vector<Op>& ops) {
  Mode mode;
  std::string key;
  int64_t token;
  {
    absl::MutexLock lock(&mu_);
    mode = mode_;
    key = fence_key_;
    token = token_;
  }
  if (mode == Mode::kPassThrough) return base_->Txn(ops);
  if (mode == Mode::kRefuse) {
    refused_.fetch_add(1);
    return absl::FailedPreconditionError("not the leader");
  }
  std::vector<Op> fenced;
  fenced.reserve(ops.size() + 1);
  fenced = ops;
  fenced.push_back(Op::Check(key, token));
  auto rev = base_->Txn(fenced);
  if (rev.ok() || !absl::IsFailedPrecondition(rev.status())) return rev;
  // Was it the fence? Read the fence key rather than parse the message.
  auto kv = base_->Get(key);
  if (kv.ok() && kv->create_version == token) return rev;  // another op
  if (!kv.ok() && !absl::IsNotFound(kv.status())) {
    // Cannot tell; the write did not apply either way.
    return rev;
  }
  refused_.fetch_add(1);
  const std::string now =
      kv.ok() ? absl::StrCat("it was created again at revision ",
                             kv->create_version)
              : std::string("it no longer exists");
  GetLogger("store")->warn(
      "fenced write refused: leadership lost ({} created at revision {}; {})",
      key, token, now);
  return absl::FailedPreconditionError(
      absl::StrCat("fenced: leadership lost (", key, " created at revision ",
                   token, ": ", now, ")"));
}

absl::StatusOr<KeyValue> FencedStore::Get(const std::string& key) {
  return base_->Get(key);
}

absl::StatusOr<ListResult> FencedStore::List(const std::string& prefix,
                                             int64_t limit) {
  return base_->List(prefix, limit);
}

absl::StatusOr<ListResult> FencedStore::ListAfter(const std::string& prefix,
                                                  const std::string& after,
                                                  int64_t limit) {
  return base_->ListAfter(prefix, after, limit);
}

absl::StatusOr<std::unique_ptr<Watch>> FencedStore::WatchPrefix(
    const std::string& prefix, int64_t from_version) {
  return base_->WatchPrefix(prefix, from_version);
}

absl::StatusOr<int64_t> FencedStore::CurrentVersion() {
  return base_->CurrentVersion();
}

absl::Status FencedStore::Health() { return base_->Health(); }

}  // namespace tidal
