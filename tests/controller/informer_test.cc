#include "controller/informer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>

#include "absl/time/clock.h"
#include "fakes/eventually.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

namespace tidal {
namespace {

using testing::Eventually;
using tidal::v1::App;

App MakeApp(int64_t generation) {
  App app;
  app.mutable_metadata()->set_name("a");
  app.mutable_metadata()->set_namespace_("ns");
  app.mutable_metadata()->set_generation(generation);
  return app;
}

TEST(AppInformerTest, ListsThenWatchesAndSkipsStatusOnlyWrites) {
  testing::MemoryStore store;
  ASSERT_TRUE(
      store.Create(keys::App("ns", "pre"), MakeApp(1).SerializeAsString())
          .ok());
  std::atomic<int> calls{0}, deletes{0};
  AppInformer informer(&store, [&](const std::string& key, const App* app) {
    calls++;
    if (app == nullptr) deletes++;
  });
  ASSERT_TRUE(informer.Start().ok());
  EXPECT_EQ(calls.load(), 1);  // the listed app
  EXPECT_TRUE(informer.Get("ns/pre").has_value());

  auto v = store.Create(keys::App("ns", "a"), MakeApp(1).SerializeAsString());
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(Eventually([&] { return calls.load() == 2; }));

  // A status-only write updates the cache but calls nobody.
  App with_status = MakeApp(1);
  with_status.mutable_status()->set_ready_replicas(3);
  v = store.Update(keys::App("ns", "a"), with_status.SerializeAsString(), *v);
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(Eventually([&] {
    auto a = informer.Get("ns/a");
    return a && a->status().ready_replicas() == 3;
  }));
  EXPECT_EQ(calls.load(), 2);

  // A new generation and a label change are reconciled.
  App next = with_status;
  next.mutable_metadata()->set_generation(2);
  v = store.Update(keys::App("ns", "a"), next.SerializeAsString(), *v);
  ASSERT_TRUE(Eventually([&] { return calls.load() == 3; }));
  (*next.mutable_metadata()->mutable_labels())["tier"] = "web";
  v = store.Update(keys::App("ns", "a"), next.SerializeAsString(), *v);
  ASSERT_TRUE(Eventually([&] { return calls.load() == 4; }));

  ASSERT_TRUE(store.Delete(keys::App("ns", "a")).ok());
  ASSERT_TRUE(Eventually([&] { return deletes.load() == 1; }));
  EXPECT_FALSE(informer.Get("ns/a").has_value());
  informer.Stop();
}

TEST(AppInformerTest, RelistsAfterFallingBehind) {
  testing::MemoryStore store(/*max_backlog=*/4);
  std::atomic<int> calls{0};
  AppInformer informer(&store,
                       [&](const std::string&, const App*) { calls++; });
  ASSERT_TRUE(informer.Start().ok());
  store.Compact();
  for (int i = 0; i < 20; ++i) {
    App app = MakeApp(1);
    app.mutable_metadata()->set_name("app" + std::to_string(i));
    ASSERT_TRUE(store
                    .Create(keys::App("ns", "app" + std::to_string(i)),
                            app.SerializeAsString())
                    .ok());
  }
  ASSERT_TRUE(Eventually([&] { return informer.Size() == 20; }));
  // The cache is filled before the handler runs: wait for the calls too.
  EXPECT_TRUE(Eventually([&] { return calls.load() >= 20; }))
      << calls.load() << " calls";
  informer.Stop();
}

// A Store whose first List runs a hook after reading, so the store changes
// and compacts between the informer's list and its watch.
class ListHookStore : public testing::MemoryStore {
 public:
  explicit ListHookStore(std::function<void()> hook) : hook_(std::move(hook)) {}
  absl::StatusOr<ListResult> List(const std::string& prefix,
                                  int64_t limit) override {
    auto list = MemoryStore::List(prefix, limit);
    ++lists_;
    std::function<void()> hook;
    hook.swap(hook_);  // the informer lists from one thread at a time
    if (hook) hook();
    return list;
  }
  // As the SQLite store does: a start revision before the last compaction
  // is refused by WatchPrefix itself.
  absl::StatusOr<std::unique_ptr<Watch>> WatchPrefix(
      const std::string& prefix, int64_t from_version) override {
    if (from_version < compacted_.load())
      return absl::OutOfRangeError("watch start compacted; re-list");
    return MemoryStore::WatchPrefix(prefix, from_version);
  }
  void CompactNow() {
    Compact();
    compacted_ = *CurrentVersion();
  }
  std::atomic<int> lists_{0};
  std::atomic<int64_t> compacted_{0};

 private:
  std::function<void()> hook_;
};

// A store that reports a compacted start revision from WatchPrefix itself
// (SQLite): Start lists again instead of failing.
TEST(AppInformerTest, ListsAgainWhenTheWatchStartWasCompacted) {
  ListHookStore* raw = nullptr;
  ListHookStore store([&] {
    EXPECT_TRUE(raw->Txn({Op::Put(keys::App("ns", "a"),
                                  MakeApp(2).SerializeAsString())})
                    .ok());
    raw->CompactNow();
  });
  raw = &store;
  ASSERT_TRUE(
      store.Create(keys::App("ns", "a"), MakeApp(1).SerializeAsString()).ok());
  std::atomic<int64_t> generation{0};
  AppInformer informer(&store, [&](const std::string&, const App* app) {
    if (app) generation = app->metadata().generation();
  });
  absl::Status st = informer.Start();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(store.lists_.load(), 2);
  EXPECT_EQ(generation.load(), 2);
  ASSERT_TRUE(informer.Get("ns/a").has_value());
  EXPECT_EQ(informer.Get("ns/a")->metadata().generation(), 2);
  informer.Stop();
}

}  // namespace
}  // namespace tidal
