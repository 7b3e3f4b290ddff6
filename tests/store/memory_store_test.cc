// The store conformance suite against the tests' MemoryStore, so the fake
// most unit tests run on keeps the contract SQLite and etcd keep.

#include "fakes/memory_store.h"

#include <gtest/gtest.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "store/store_conformance.h"

namespace tidal {
namespace {

using testing::MemoryStore;
using testing::StoreConformanceTest;
using testing::StoreImpl;
using testing::StoreTestEnv;

constexpr size_t kTestBacklog = 1000;

// "Persistence" for an in-memory store: closing the store keeps a snapshot
// of what it committed, and the next Open continues from it, change history
// included.
class MemoryEnv : public StoreTestEnv {
 public:
  absl::StatusOr<std::unique_ptr<Store>> Open() override {
    return std::unique_ptr<Store>(std::make_unique<SavingStore>(this));
  }
  absl::Status OverflowWatchers(Store* store,
                                const std::string& prefix) override {
    // One txn with more events than a watcher's backlog holds.
    std::vector<Op> ops;
    for (size_t i = 0; i <= kTestBacklog; ++i)
      ops.push_back(Op::Put(absl::StrCat(prefix, i), "x"));
    return store->Txn(ops).status();
  }
  absl::Status DiscardHistory(Store* store, const std::string&) override {
    static_cast<MemoryStore*>(store)->Compact();
    return absl::OkStatus();
  }
  bool KeepsWatchHistoryAcrossReopen() const override { return true; }

 private:
  class SavingStore : public MemoryStore {
   public:
    explicit SavingStore(MemoryEnv* env)
        : MemoryStore(env->saved_, kTestBacklog), env_(env) {}
    ~SavingStore() override { env_->saved_ = TakeSnapshot(); }

   private:
    MemoryEnv* const env_;
  };

  std::shared_ptr<const MemoryStore::Snapshot> saved_;
};

INSTANTIATE_TEST_SUITE_P(Memory, StoreConformanceTest,
                         ::testing::Values(StoreImpl{
                             "memory",
                             [] { return std::make_unique<MemoryEnv>(); }}),
                         testing::StoreImplName);

}  // namespace
}  // namespace tidal
