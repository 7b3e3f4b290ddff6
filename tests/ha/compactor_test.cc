#include "ha/compactor.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "controller/informer.h"
#include "fakes/etcd_process.h"
#include "fakes/eventually.h"
#include "store/keys.h"
#include "tidal/v1/app.pb.h"

namespace tidal {
namespace {

using testing::EtcdProcess;
using testing::Eventually;
using tidal::v1::App;

// The first error a watch from `from` reports within a few seconds (from
// WatchPrefix or from Next); OK when none.
absl::Status WatchError(Store* store, const std::string& prefix, int64_t from) {
  auto watch = store->WatchPrefix(prefix, from);
  if (!watch.ok()) return watch.status();
  const absl::Time end = absl::Now() + absl::Seconds(2);
  while (absl::Now() < end) {
    auto batch = (*watch)->Next(absl::Milliseconds(100));
    if (!batch.ok()) return batch.status();
  }
  return absl::OkStatus();
}

class CompactorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HaveEtcd()) GTEST_SKIP() << "no " << testing::kEtcdBinary;
    etcd_ = std::make_unique<EtcdProcess>();
    auto store = etcd_->Open();
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // Writes `n` revisions; returns the last.
  int64_t Write(int n) {
    int64_t rev = 0;
    for (int i = 0; i < n; ++i) {
      auto r = store_->Txn({Op::Put(absl::StrCat("/c/", i % 5), "x")});
      EXPECT_TRUE(r.ok()) << r.status();
      if (r.ok()) rev = *r;
    }
    return rev;
  }

  std::unique_ptr<EtcdProcess> etcd_;
  std::unique_ptr<EtcdStore> store_;
};

TEST_F(CompactorTest, CompactsAllButTheLastKeepRevisions) {
  const int64_t last = Write(30);
  Compactor compactor(store_.get(), {absl::Minutes(5), 10});
  auto rev = compactor.CompactOnce();
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_EQ(*rev, last - 10);
  EXPECT_EQ(compactor.compacted(), last - 10);
  // History before the compaction is gone; the kept revisions are not.
  EXPECT_TRUE(absl::IsOutOfRange(WatchError(store_.get(), "/c/", 1)));
  auto kept = store_->WatchPrefix("/c/", last - 5);
  ASSERT_TRUE(kept.ok()) << kept.status();
  auto events = (*kept)->Next(absl::Seconds(5));
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->size(), 5u);
  // Nothing new to discard.
  rev = compactor.CompactOnce();
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_EQ(*rev, 0);
  // Too little history: nothing to do.
  Compactor keep_all(store_.get(), {absl::Minutes(5), 1000});
  rev = keep_all.CompactOnce();
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_EQ(*rev, 0);
}

TEST_F(CompactorTest, CompactsEveryInterval) {
  Write(20);
  Compactor compactor(store_.get(), {absl::Milliseconds(100), 5});
  compactor.Start();
  ASSERT_TRUE(Eventually([&] { return compactor.compacted() > 0; }));
  const int64_t first = compactor.compacted();
  const int64_t last = Write(20);
  ASSERT_TRUE(Eventually([&] { return compactor.compacted() == last - 5; }));
  EXPECT_GT(compactor.compacted(), first);
  compactor.Stop();
  compactor.Stop();  // idempotent
}

// A Store whose first List runs a hook after reading: the store changes
// and is compacted between the informer's list and its watch, so the watch
// starts at a revision etcd no longer has (OutOfRange).
class HookedStore : public Store {
 public:
  HookedStore(Store* base, std::function<void()> after_first_list)
      : base_(base), hook_(std::move(after_first_list)) {}
  absl::StatusOr<int64_t> Txn(const std::vector<Op>& ops) override {
    return base_->Txn(ops);
  }
  absl::StatusOr<KeyValue> Get(const std::string& key) override {
    return base_->Get(key);
  }
  absl::StatusOr<ListResult> List(const std::string& prefix,
                                  int64_t limit) override {
    auto list = base_->List(prefix, limit);
    std::function<void()> hook;
    {
      absl::MutexLock lock(&mu_);
      ++lists_;
      hook.swap(hook_);
    }
    if (hook) hook();
    return list;
  }
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(
      const std::string& prefix, int64_t from_version) override {
    return base_->WatchPrefix(prefix, from_version);
  }
  absl::StatusOr<int64_t> CurrentVersion() override {
    return base_->CurrentVersion();
  }
  int lists() {
    absl::MutexLock lock(&mu_);
    return lists_;
  }

 private:
  Store* const base_;
  absl::Mutex mu_;
  std::function<void()> hook_ ABSL_GUARDED_BY(mu_);
  int lists_ ABSL_GUARDED_BY(mu_) = 0;
};

App MakeApp(const std::string& name, int64_t generation) {
  App app;
  app.mutable_metadata()->set_name(name);
  app.mutable_metadata()->set_namespace_("ns");
  app.mutable_metadata()->set_generation(generation);
  return app;
}

TEST_F(CompactorTest, InformerListsAgainWhenItsWatchWasCompacted) {
  ASSERT_TRUE(store_
                  ->Create(keys::App("ns", "kept"),
                           MakeApp("kept", 1).SerializeAsString())
                  .ok());
  ASSERT_TRUE(store_
                  ->Create(keys::App("ns", "changed"),
                           MakeApp("changed", 1).SerializeAsString())
                  .ok());
  ASSERT_TRUE(store_
                  ->Create(keys::App("ns", "deleted"),
                           MakeApp("deleted", 1).SerializeAsString())
                  .ok());
  Compactor compactor(store_.get(), {absl::Minutes(5), 0});
  HookedStore hooked(store_.get(), [&] {
    // Between the list and the watch: changes, then a compaction past them.
    EXPECT_TRUE(store_
                    ->Txn({Op::Put(keys::App("ns", "changed"),
                                   MakeApp("changed", 2).SerializeAsString())})
                    .ok());
    EXPECT_TRUE(store_->Delete(keys::App("ns", "deleted")).ok());
    EXPECT_TRUE(store_
                    ->Create(keys::App("ns", "added"),
                             MakeApp("added", 1).SerializeAsString())
                    .ok());
    auto rev = compactor.CompactOnce();
    EXPECT_TRUE(rev.ok() && *rev > 0) << rev.status();
  });

  absl::Mutex mu;
  std::map<std::string, int64_t> seen;  // key -> last generation, -1 deleted
  AppInformer informer(&hooked, [&](const std::string& key, const App* app) {
    absl::MutexLock lock(&mu);
    seen[key] = app ? app->metadata().generation() : -1;
  });
  absl::Status started = informer.Start();
  ASSERT_TRUE(started.ok()) << started;
  auto seen_is = [&](const std::map<std::string, int64_t>& want) {
    absl::MutexLock lock(&mu);
    return seen == want;
  };
  const std::map<std::string, int64_t> want = {
      {"ns/kept", 1}, {"ns/changed", 2}, {"ns/deleted", -1}, {"ns/added", 1}};
  ASSERT_TRUE(Eventually([&] { return seen_is(want); })) << [&] {
    absl::MutexLock lock(&mu);
    std::string s;
    for (auto& [k, g] : seen) absl::StrAppend(&s, k, "=", g, " ");
    return s;
  }();
  EXPECT_GE(hooked.lists(), 2);  // it listed again
  EXPECT_EQ(informer.Size(), 3u);
  ASSERT_TRUE(informer.Get("ns/changed").has_value());
  EXPECT_EQ(informer.Get("ns/changed")->metadata().generation(), 2);
  EXPECT_FALSE(informer.Get("ns/deleted").has_value());

  // And it keeps watching from the new list.
  ASSERT_TRUE(store_
                  ->Txn({Op::Put(keys::App("ns", "kept"),
                                 MakeApp("kept", 2).SerializeAsString())})
                  .ok());
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return seen["ns/kept"] == 2;
  }));
  informer.Stop();
}

}  // namespace
}  // namespace tidal
