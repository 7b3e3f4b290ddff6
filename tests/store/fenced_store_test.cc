#include "store/fenced_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fakes/etcd_process.h"
#include "fakes/memory_store.h"

namespace tidal {
namespace {

using ::testing::HasSubstr;
using testing::MemoryStore;

constexpr char kFence[] = "/tidal/leader";

TEST(FencedStoreTest, PassThroughWritesAndReadsTheBase) {
  MemoryStore base;
  FencedStore store(&base);
  auto rev = store.Txn({Op::Put("/a", "1")});
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_EQ(base.Get("/a")->value, "1");
  EXPECT_EQ(store.Get("/a")->resource_version, *rev);
  EXPECT_EQ(store.List("/")->items.size(), 1u);
  EXPECT_EQ(*store.CurrentVersion(), *rev);
  EXPECT_TRUE(store.Health().ok());
  // Preconditions are the base's.
  EXPECT_TRUE(absl::IsFailedPrecondition(store.Create("/a", "2").status()));
  EXPECT_EQ(store.refused_writes(), 0);
}

TEST(FencedStoreTest, RefuseModeWritesNothing) {
  MemoryStore base;
  ASSERT_TRUE(base.Create("/a", "1").ok());
  FencedStore store(&base);
  store.Refuse();
  const int64_t txns = base.txn_count();
  auto r = store.Txn({Op::Put("/a", "2")});
  ASSERT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not the leader"));
  EXPECT_TRUE(absl::IsFailedPrecondition(store.Delete("/a").status()));
  EXPECT_EQ(store.refused_writes(), 2);
  EXPECT_EQ(base.txn_count(), txns);
  EXPECT_EQ(store.Get("/a")->value, "1");  // reads still work
  auto watch = store.WatchPrefix("/", 0);
  EXPECT_TRUE(watch.ok()) << watch.status();

  store.PassThrough();
  EXPECT_TRUE(store.Txn({Op::Put("/a", "3")}).ok());
  EXPECT_EQ(base.Get("/a")->value, "3");
  EXPECT_EQ(store.refused_writes(), 2);
}

TEST(FencedStoreTest, FencedWritesApplyOnlyWhileTheFenceKeyLives) {
  MemoryStore base;
  auto token = base.Create(kFence, "leader-a");
  ASSERT_TRUE(token.ok());
  FencedStore store(&base);
  store.Fence(kFence, *token);

  auto ok = store.Txn({Op::Put("/a", "1"), Op::Put("/b", "1")});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(base.Get("/a")->value, "1");
  EXPECT_EQ(base.Get(kFence)->resource_version, *token);  // untouched

  // Another op's precondition: the base's own error, not the fence's.
  auto cas = store.Update("/a", "2", *ok + 100);
  ASSERT_TRUE(absl::IsFailedPrecondition(cas.status())) << cas.status();
  EXPECT_THAT(std::string(cas.status().message()), HasSubstr("\"/a\""));
  EXPECT_THAT(std::string(cas.status().message()),
              ::testing::Not(HasSubstr("fenced")));
  EXPECT_EQ(store.refused_writes(), 0);

  // The fence key goes (the lease ended): refused, nothing applied.
  ASSERT_TRUE(base.Delete(kFence).ok());
  auto gone = store.Txn({Op::Put("/a", "stale"), Op::Put("/c", "stale")});
  ASSERT_TRUE(absl::IsFailedPrecondition(gone.status())) << gone.status();
  EXPECT_THAT(std::string(gone.status().message()),
              HasSubstr("fenced: leadership lost"));
  EXPECT_EQ(store.refused_writes(), 1);
  EXPECT_EQ(base.Get("/a")->value, "1");
  EXPECT_TRUE(absl::IsNotFound(base.Get("/c").status()));

  // Another leader created it again: still refused.
  auto other = base.Create(kFence, "leader-b");
  ASSERT_TRUE(other.ok());
  auto stale = store.Delete("/b");
  ASSERT_TRUE(absl::IsFailedPrecondition(stale.status())) << stale.status();
  EXPECT_THAT(std::string(stale.status().message()),
              HasSubstr(absl::StrCat(*other)));
  EXPECT_EQ(store.refused_writes(), 2);
  EXPECT_TRUE(base.Get("/b").ok());

  // Fenced on the new token: writes apply again.
  store.Fence(kFence, *other);
  EXPECT_TRUE(store.Delete("/b").ok());
  EXPECT_EQ(store.refused_writes(), 2);
}

TEST(FencedStoreTest, ModeSwitchesRaceWithWrites) {
  MemoryStore base;
  auto token = base.Create(kFence, "leader");
  ASSERT_TRUE(token.ok());
  FencedStore store(&base);
  std::atomic<bool> done{false};
  std::atomic<int64_t> failed{0}, applied{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        auto r = store.Txn({Op::Put(absl::StrCat("/w/", t, "/", i), "x")});
        if (r.ok()) {
          applied.fetch_add(1);
        } else {
          EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
          failed.fetch_add(1);
        }
      }
    });
  }
  std::thread switcher([&] {
    for (int i = 0; !done.load(); ++i) {
      if (i % 3 == 0) store.Refuse();
      if (i % 3 == 1) store.Fence(kFence, *token);
      if (i % 3 == 2) store.PassThrough();
    }
  });
  for (auto& w : writers) w.join();
  done.store(true);
  switcher.join();
  EXPECT_EQ(applied.load() + failed.load(), 1200);
  EXPECT_EQ(store.refused_writes(), failed.load());
  EXPECT_EQ(static_cast<int64_t>(base.List("/w/")->items.size()),
            applied.load());
}

// Against etcd: the fence is an etcd compare on the key's create revision,
// and a key on a revoked lease fails it.
TEST(FencedStoreTest, EtcdRefusesWritesOnceTheLeaseEnds) {
  if (!testing::HaveEtcd()) GTEST_SKIP() << "no " << testing::kEtcdBinary;
  testing::EtcdProcess etcd;
  auto base = etcd.Open();
  ASSERT_TRUE(base.ok()) << base.status();
  auto lease = (*base)->GrantLease(absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  Op put = Op::Put(kFence, "leader", 0);
  put.lease = *lease;
  auto token = (*base)->Txn({put});
  ASSERT_TRUE(token.ok()) << token.status();
  FencedStore store(base->get());
  store.Fence(kFence, *token);
  ASSERT_TRUE(store.Txn({Op::Put("/a", "1")}).ok());
  ASSERT_TRUE((*base)->RevokeLease(*lease).ok());
  auto r = store.Txn({Op::Put("/a", "2")});
  ASSERT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("fenced: leadership lost"));
  EXPECT_EQ(store.refused_writes(), 1);
  EXPECT_EQ((*base)->Get("/a")->value, "1");
}

}  // namespace
}  // namespace tidal
