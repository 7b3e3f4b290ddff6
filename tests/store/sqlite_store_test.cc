#include "store/sqlite_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "store/store_conformance.h"

namespace tidal {
namespace {

using testing::StoreConformanceTest;
using testing::StoreImpl;
using testing::StoreTestEnv;

// A temporary directory removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tidal-store-XXXXXX")
            .string();
    char* dir = mkdtemp(tmpl.data());
    EXPECT_NE(dir, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr int64_t kTestRing = 2000;

// A real SQLite file in a temp dir, with a small watch ring.
class SqliteEnv : public StoreTestEnv {
 public:
  absl::StatusOr<std::unique_ptr<Store>> Open() override {
    SqliteStore::Options options;
    options.watch_history_events = kTestRing;
    auto store = SqliteStore::Open(dir_.path() + "/store.db", options);
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(std::move(store).value());
  }
  absl::Status OverflowWatchers(Store* store,
                                const std::string& prefix) override {
    return Fill(store, prefix);
  }
  absl::Status DiscardHistory(Store* store,
                              const std::string& prefix) override {
    return Fill(store, prefix);
  }
  bool KeepsWatchHistoryAcrossReopen() const override { return false; }

 private:
  // One txn with more events than the ring holds.
  static absl::Status Fill(Store* store, const std::string& prefix) {
    std::vector<Op> ops;
    for (int i = 0; i <= kTestRing; ++i)
      ops.push_back(Op::Put(absl::StrCat(prefix, i), "x"));
    return store->Txn(ops).status();
  }

  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformanceTest,
                         ::testing::Values(StoreImpl{
                             "sqlite",
                             [] { return std::make_unique<SqliteEnv>(); }}),
                         testing::StoreImplName);

TEST(SqliteStoreTest, SecondOpenOfSameFileFails) {
  TempDir dir;
  auto first = SqliteStore::Open(dir.path() + "/s.db");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = SqliteStore::Open(dir.path() + "/s.db");
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  first->reset();
  auto third = SqliteStore::Open(dir.path() + "/s.db");
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(SqliteStoreTest, NotADatabaseIsDataLoss) {
  TempDir dir;
  const std::string path = dir.path() + "/garbage.db";
  {
    std::ofstream out(path);
    out << std::string(8192, 'g');
  }
  auto store = SqliteStore::Open(path);
  EXPECT_TRUE(absl::IsDataLoss(store.status())) << store.status();
}

TEST(SqliteStoreTest, UnwritableDirectoryIsUnavailable) {
  auto store = SqliteStore::Open("/nonexistent-dir/for/tidal/s.db");
  EXPECT_TRUE(absl::IsUnavailable(store.status())) << store.status();
}

TEST(SqliteStoreTest, UsesWalMode) {
  TempDir dir;
  auto store = SqliteStore::Open(dir.path() + "/s.db");
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Create("/a", "b").ok());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/s.db-wal"));
}

TEST(SqliteStoreTest, ListOfTenThousandKeysIsFast) {
  TempDir dir;
  auto store = SqliteStore::Open(dir.path() + "/s.db");
  ASSERT_TRUE(store.ok());
  const std::string value(300, 'v');
  for (int batch = 0; batch < 10; ++batch) {
    std::vector<Op> ops;
    for (int i = 0; i < 1000; ++i) {
      ops.push_back(
          Op::Put(absl::StrCat("/apps/default/app-", batch * 1000 + i), value));
    }
    ASSERT_TRUE((*store)->Txn(ops).ok());
  }
  ASSERT_TRUE((*store)->Create("/apps0", "outside").ok());
  absl::Duration best = absl::InfiniteDuration();
  for (int i = 0; i < 5; ++i) {
    const absl::Time start = absl::Now();
    auto list = (*store)->List("/apps/");
    best = std::min(best, absl::Now() - start);
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->items.size(), 10000u);
  }
  absl::Duration best_get = absl::InfiniteDuration();
  for (int i = 0; i < 1000; ++i) {
    const absl::Time start = absl::Now();
    ASSERT_TRUE((*store)->Get(absl::StrCat("/apps/default/app-", i * 7)).ok());
    best_get = std::min(best_get, absl::Now() - start);
  }
  std::printf(
      "List of 10000 keys: %.2f ms (best of 5); Get: %.1f us (best of 1000)\n",
      absl::ToDoubleMilliseconds(best), absl::ToDoubleMicroseconds(best_get));
  // Generous bound for a shared machine; typical figures are a few ms.
  EXPECT_LT(best, absl::Milliseconds(100));
}

// Throughput with several watchers: many concurrent single-key creates (as
// API applies do); group commit batches them into few fsyncs.
TEST(SqliteStoreTest, ConcurrentCreatesWithWatchers) {
  TempDir dir;
  auto store_or = SqliteStore::Open(dir.path() + "/s.db");
  ASSERT_TRUE(store_or.ok());
  SqliteStore* store = store_or->get();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 1250;
  constexpr int kWatchers = 4;
  const int64_t start = *store->CurrentVersion();
  std::vector<std::thread> watchers;
  std::atomic<int> seen[kWatchers] = {};
  for (int w = 0; w < kWatchers; ++w) {
    auto watch = store->WatchPrefix("/apps/", start);
    ASSERT_TRUE(watch.ok());
    watchers.emplace_back(
        [&, w, watch = std::shared_ptr<Watch>(std::move(watch).value())] {
          while (seen[w] < kThreads * kPerThread) {
            auto batch = watch->Next(absl::Seconds(1));
            ASSERT_TRUE(batch.ok()) << batch.status();
            seen[w] += batch->size();
          }
        });
  }
  const std::string value(500, 'v');
  const absl::Time t0 = absl::Now();
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = store->Create(absl::StrCat("/apps/ns/app-", t, "-", i), value);
        ASSERT_TRUE(r.ok()) << r.status();
      }
    });
  }
  for (auto& t : writers) t.join();
  const absl::Duration elapsed = absl::Now() - t0;
  for (auto& t : watchers) t.join();
  const double rate = kThreads * kPerThread / absl::ToDoubleSeconds(elapsed);
  std::printf("%d creates from %d threads with %d watchers: %.0f txn/s\n",
              kThreads * kPerThread, kThreads, kWatchers, rate);
  for (int w = 0; w < kWatchers; ++w) EXPECT_EQ(seen[w], kThreads * kPerThread);
  EXPECT_EQ(*store->CurrentVersion(), start + kThreads * kPerThread);
}

}  // namespace
}  // namespace tidal
