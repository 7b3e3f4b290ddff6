#include "fakes/memory_store.h"

#include <deque>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "store/txn_check.h"

namespace tidal::testing {

class MemoryWatch;

namespace {
struct Entry {
  std::string value;
  int64_t resource_version = 0;
  int64_t create_version = 0;
};
}  // namespace

struct MemoryStore::Snapshot {
  std::map<std::string, Entry> data;
  int64_t revision = 0;
  int64_t compacted = 0;
  std::vector<WatchEvent> history;
};

struct MemoryStore::Core {
  explicit Core(size_t backlog) : max_backlog(backlog) {}

  const size_t max_backlog;
  absl::Mutex mu;
  std::map<std::string, Entry> data ABSL_GUARDED_BY(mu);
  int64_t revision ABSL_GUARDED_BY(mu) = 0;
  int64_t compacted ABSL_GUARDED_BY(mu) =
      0;  // history holds revisions > compacted
  std::vector<WatchEvent> history ABSL_GUARDED_BY(mu);
  std::set<MemoryWatch*> watches ABSL_GUARDED_BY(mu);
  absl::Status fail ABSL_GUARDED_BY(mu);
  int64_t txns ABSL_GUARDED_BY(mu) = 0;
  bool closed ABSL_GUARDED_BY(mu) = false;
};

// A prefix watch over a MemoryStore. Its queue is guarded by the store's
// mutex; the commit path appends to it.
class MemoryWatch : public Watch {
 public:
  MemoryWatch(std::shared_ptr<MemoryStore::Core> core, std::string prefix)
      : core_(std::move(core)), prefix_(std::move(prefix)) {}

  ~MemoryWatch() override {
    absl::MutexLock lock(&core_->mu);
    core_->watches.erase(this);
  }

  absl::StatusOr<std::vector<WatchEvent>> Next(
      absl::Duration timeout) override {
    absl::MutexLock lock(&core_->mu);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
      return !pending_.empty() || overflow_ || cancelled_ || core_->closed;
    };
    core_->mu.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (cancelled_ || core_->closed)
      return absl::CancelledError("watch cancelled");
    if (overflow_) {
      return absl::OutOfRangeError(
          !too_old_.empty()
              ? too_old_
              : absl::StrCat("watch on ", prefix_,
                             " fell too far behind; re-list and watch again"));
    }
    std::vector<WatchEvent> out(pending_.begin(), pending_.end());
    pending_.clear();
    return out;
  }

  void Cancel() override {
    absl::MutexLock lock(&core_->mu);
    cancelled_ = true;
  }

  // Called by the store with its mutex held: the same mutex as core_->mu,
  // which the analysis cannot prove from the caller (w->core_ is core_), so
  // the callee asserts it.
  void Push(const WatchEvent& e) {
    core_->mu.AssertHeld();
    if (overflow_ || !absl::StartsWith(e.kv.key, prefix_)) return;
    if (pending_.size() >= core_->max_backlog) {
      overflow_ = true;
      pending_.clear();
      return;
    }
    pending_.push_back(e);
  }
  // The watch starts before the retained history.
  void SetOverflow(std::string message) {
    core_->mu.AssertHeld();
    overflow_ = true;
    too_old_ = std::move(message);
  }

 private:
  const std::shared_ptr<MemoryStore::Core> core_;
  const std::string prefix_;
  std::deque<WatchEvent> pending_ ABSL_GUARDED_BY(core_->mu);
  bool overflow_ ABSL_GUARDED_BY(core_->mu) = false;
  std::string too_old_ ABSL_GUARDED_BY(core_->mu);
  bool cancelled_ ABSL_GUARDED_BY(core_->mu) = false;
};

MemoryStore::MemoryStore(size_t max_backlog)
    : core_(std::make_shared<Core>(max_backlog)) {}

MemoryStore::MemoryStore(std::shared_ptr<const Snapshot> from,
                         size_t max_backlog)
    : core_(std::make_shared<Core>(max_backlog)) {
  if (from == nullptr) return;
  absl::MutexLock lock(&core_->mu);
  core_->data = from->data;
  core_->revision = from->revision;
  core_->compacted = from->compacted;
  core_->history = from->history;
}

std::shared_ptr<const MemoryStore::Snapshot> MemoryStore::TakeSnapshot() {
  auto snap = std::make_shared<Snapshot>();
  absl::MutexLock lock(&core_->mu);
  snap->data = core_->data;
  snap->revision = core_->revision;
  snap->compacted = core_->compacted;
  snap->history = core_->history;
  return snap;
}

MemoryStore::~MemoryStore() {
  absl::MutexLock lock(&core_->mu);
  core_->closed = true;
}

absl::StatusOr<int64_t> MemoryStore::Txn(const std::vector<Op>& ops) {
  // The same validation and preconditions as the real stores (txn_check.h).
  absl::Status valid = store_internal::ValidateOps(ops);
  if (valid.ok()) valid = store_internal::RejectLeases(ops);
  if (!valid.ok()) return valid;
  absl::MutexLock lock(&core_->mu);
  if (core_->closed) return absl::UnavailableError("store closed");
  if (!core_->fail.ok()) return core_->fail;
  // Check every precondition first: all or nothing.
  for (const Op& op : ops) {
    auto it = core_->data.find(op.key);
    store_internal::KeyState cur;
    if (it != core_->data.end()) {
      cur.exists = true;
      cur.resource_version = it->second.resource_version;
      cur.create_version = it->second.create_version;
    }
    absl::Status s = store_internal::CheckPrecondition(op, cur);
    if (!s.ok()) return s;
  }
  // Checks alone write nothing (as an etcd txn without writes).
  if (store_internal::ChecksOnly(ops)) return core_->revision;
  const int64_t rev = ++core_->revision;
  ++core_->txns;
  for (const Op& op : ops) {
    if (op.type == Op::Type::kCheck) continue;
    WatchEvent e;
    auto it = core_->data.find(op.key);
    if (op.type == Op::Type::kPut) {
      e.type = WatchEvent::Type::kPut;
      Entry entry;
      entry.value = op.value;
      entry.resource_version = rev;
      if (it == core_->data.end()) {
        entry.create_version = rev;
        e.prev_version = 0;
      } else {
        entry.create_version = it->second.create_version;
        e.prev_version = it->second.resource_version;
      }
      core_->data[op.key] = entry;
      e.kv = KeyValue{op.key, op.value, rev, entry.create_version};
    } else {
      e.type = WatchEvent::Type::kDelete;
      e.prev_version = it->second.resource_version;
      e.kv = KeyValue{op.key, it->second.value, rev, it->second.create_version};
      core_->data.erase(it);
    }
    core_->history.push_back(e);
    for (MemoryWatch* w : core_->watches) w->Push(e);
  }
  return rev;
}

absl::StatusOr<KeyValue> MemoryStore::Get(const std::string& key) {
  absl::MutexLock lock(&core_->mu);
  auto it = core_->data.find(key);
  if (it == core_->data.end())
    return absl::NotFoundError(absl::StrCat("key ", key, " not found"));
  return KeyValue{key, it->second.value, it->second.resource_version,
                  it->second.create_version};
}

absl::StatusOr<ListResult> MemoryStore::List(const std::string& prefix,
                                             int64_t limit) {
  if (limit < 0) return absl::InvalidArgumentError("negative list limit");
  absl::MutexLock lock(&core_->mu);
  ListResult out;
  out.resource_version = core_->revision;
  for (auto it = core_->data.lower_bound(prefix);
       it != core_->data.end() && absl::StartsWith(it->first, prefix); ++it) {
    if (limit > 0 && static_cast<int64_t>(out.items.size()) >= limit) break;
    out.items.push_back(KeyValue{it->first, it->second.value,
                                 it->second.resource_version,
                                 it->second.create_version});
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Watch>> MemoryStore::WatchPrefix(
    const std::string& prefix, int64_t from_version) {
  if (from_version < 0)
    return absl::InvalidArgumentError("negative watch revision");
  auto w = std::make_unique<MemoryWatch>(core_, prefix);
  absl::MutexLock lock(&core_->mu);
  if (core_->closed) return absl::UnavailableError("store closed");
  if (from_version < core_->compacted) {
    w->SetOverflow(
        store_internal::WatchTooOld(from_version, core_->compacted + 1));
  } else {
    for (const WatchEvent& e : core_->history) {
      if (e.kv.resource_version > from_version) w->Push(e);
    }
  }
  core_->watches.insert(w.get());
  return std::unique_ptr<Watch>(std::move(w));
}

absl::StatusOr<int64_t> MemoryStore::CurrentVersion() {
  absl::MutexLock lock(&core_->mu);
  return core_->revision;
}

void MemoryStore::Compact() {
  absl::MutexLock lock(&core_->mu);
  core_->history.clear();
  core_->compacted = core_->revision;
}

void MemoryStore::FailTxns(absl::Status status) {
  absl::MutexLock lock(&core_->mu);
  core_->fail = std::move(status);
}

int64_t MemoryStore::txn_count() {
  absl::MutexLock lock(&core_->mu);
  return core_->txns;
}

int MemoryStore::watch_count() {
  absl::MutexLock lock(&core_->mu);
  return static_cast<int>(core_->watches.size());
}

}  // namespace tidal::testing
