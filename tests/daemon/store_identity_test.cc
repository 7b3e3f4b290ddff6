// CheckStoreIdentity over MemoryStores and real data directories: the id is
// made once and remembered; a wiped store or another one is refused, with
// nothing written to it; removing the remembered id accepts a new store.

#include "daemon/store_identity.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "e2e/e2e_util.h"
#include "fakes/memory_store.h"
#include "store/keys.h"
#include "store/sqlite_store.h"
#include "tidal/v1/ha.pb.h"

namespace tidal {
namespace {

TEST(StoreIdentityTest, MadeOnceRememberedAndSharedByEveryNode) {
  testing::MemoryStore store;
  e2e::TempDir a, b;
  auto id = CheckStoreIdentity(&store, a.path(), "etcd:one");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->size(), 32u);
  EXPECT_EQ(store.Get(keys::StoreId())->value, *id);
  EXPECT_EQ(e2e::ReadFile(a.path() + "/store-id"), *id + "\n");
  // Again, and from another node's data directory: the same id.
  EXPECT_EQ(*CheckStoreIdentity(&store, a.path(), "etcd:one"), *id);
  EXPECT_EQ(*CheckStoreIdentity(&store, b.path(), "etcd:one"), *id);
  EXPECT_EQ(e2e::ReadFile(b.path() + "/store-id"), *id + "\n");
}

TEST(StoreIdentityTest, AWipedStoreIsRefusedAndLeftAlone) {
  testing::MemoryStore store, wiped;
  e2e::TempDir dir;
  auto id = CheckStoreIdentity(&store, dir.path(), "etcd:one");
  ASSERT_TRUE(id.ok()) << id.status();
  auto refused = CheckStoreIdentity(&wiped, dir.path(), "etcd:one");
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string why(refused.status().message());
  EXPECT_TRUE(absl::StrContains(why, "has no id")) << why;
  EXPECT_TRUE(absl::StrContains(why, *id)) << why;
  EXPECT_TRUE(absl::StrContains(why, "remove " + dir.path() + "/store-id"))
      << why;
  // Nothing written: neither an id in the store nor a new remembered one.
  EXPECT_TRUE(absl::IsNotFound(wiped.Get(keys::StoreId()).status()));
  EXPECT_EQ(e2e::ReadFile(dir.path() + "/store-id"), *id + "\n");
  // The old store is still accepted.
  EXPECT_EQ(*CheckStoreIdentity(&store, dir.path(), "etcd:one"), *id);
  // Told so (the remembered id removed), the wiped store is taken.
  std::filesystem::remove(dir.path() + "/store-id");
  auto taken = CheckStoreIdentity(&wiped, dir.path(), "etcd:one");
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_NE(*taken, *id);
}

TEST(StoreIdentityTest, AnotherClusterIsRefused) {
  testing::MemoryStore one, other;
  e2e::TempDir dir, elsewhere;
  auto id = CheckStoreIdentity(&one, dir.path(), "etcd:one");
  auto other_id = CheckStoreIdentity(&other, elsewhere.path(), "etcd:other");
  ASSERT_TRUE(id.ok() && other_id.ok());
  auto refused = CheckStoreIdentity(&other, dir.path(), "etcd:other");
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string why(refused.status().message());
  EXPECT_TRUE(absl::StrContains(why, "etcd:other has id " + *other_id)) << why;
  EXPECT_TRUE(absl::StrContains(why, *id)) << why;
  EXPECT_EQ(e2e::ReadFile(dir.path() + "/store-id"), *id + "\n");
}

v1::NodeRecord NodeOf(const std::string& uid, int64_t heartbeats) {
  v1::NodeRecord rec;
  rec.set_name("n1");
  rec.set_uid(uid);
  rec.set_api_address("10.0.0.1:7070");
  rec.set_heartbeats(heartbeats);
  return rec;
}

// The same data directory is the same node; another whose node still
// heartbeats is a second tidald under the name, refused; one whose node
// went silent takes the name over.
TEST(NodeIdentityTest, ASecondLiveNodeUnderTheSameNameIsRefused) {
  testing::MemoryStore store;
  e2e::TempDir mine, other;
  auto uid = CheckNodeIdentity(&store, mine.path(), "n1", absl::Seconds(1));
  ASSERT_TRUE(uid.ok()) << uid.status();
  EXPECT_EQ(uid->size(), 32u);
  EXPECT_EQ(e2e::ReadFile(mine.path() + "/node-uid"), *uid + "\n");
  ASSERT_TRUE(
      store.Create(keys::Node("n1"), NodeOf(*uid, 1).SerializeAsString()).ok());
  // This node again (a restart): at once, whatever the record does.
  const absl::Time t0 = absl::Now();
  EXPECT_EQ(*CheckNodeIdentity(&store, mine.path(), "n1", absl::Seconds(30)),
            *uid);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));

  // Another data directory while this node heartbeats.
  std::atomic<bool> stop{false};
  std::thread beat([&] {
    for (int64_t n = 2; !stop.load(); ++n) {
      auto kv = store.Get(keys::Node("n1"));
      if (kv.ok()) {
        (void)store.Txn(
            {Op::Put(keys::Node("n1"), NodeOf(*uid, n).SerializeAsString(),
                     kv->resource_version)});
      }
      absl::SleepFor(absl::Milliseconds(100));  // the heartbeat's period
    }
  });
  auto refused =
      CheckNodeIdentity(&store, other.path(), "n1", absl::Seconds(2));
  stop = true;
  beat.join();
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  const std::string why(refused.status().message());
  EXPECT_TRUE(absl::StrContains(why, "a live tidald runs under this name"))
      << why;
  EXPECT_TRUE(absl::StrContains(why, "10.0.0.1:7070")) << why;
  // The record is untouched.
  v1::NodeRecord after;
  ASSERT_TRUE(after.ParseFromString(store.Get(keys::Node("n1"))->value));
  EXPECT_EQ(after.uid(), *uid);

  // Silent: the name is taken over.
  auto taken =
      CheckNodeIdentity(&store, other.path(), "n1", absl::Milliseconds(600));
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_NE(*taken, *uid);
}

// The first start on etcd of a machine that ran the embedded store: its
// instances are listed nowhere in etcd, and would all be stopped.
TEST(NodeIdentityTest, AMachineMovedFromTheEmbeddedStoreIsRefused) {
  e2e::TempDir dir;
  const std::string db = dir.path() + "/tidal.db";
  testing::MemoryStore etcd;
  EXPECT_TRUE(CheckNotMovedFromEmbedded(&etcd, db, "etcd:x").ok());  // none
  {
    auto sqlite = SqliteStore::Open(db);
    ASSERT_TRUE(sqlite.ok()) << sqlite.status();
    ASSERT_TRUE(
        (*sqlite)->Create(keys::SecretPrefix() + "default/db", "x").ok());
  }
  // A store without an app: nothing to lose.
  EXPECT_TRUE(CheckNotMovedFromEmbedded(&etcd, db, "etcd:x").ok());
  {
    auto sqlite = SqliteStore::Open(db);
    ASSERT_TRUE(sqlite.ok()) << sqlite.status();
    ASSERT_TRUE((*sqlite)->Create(keys::AppPrefix() + "default/web", "x").ok());
  }
  absl::Status refused = CheckNotMovedFromEmbedded(&etcd, db, "etcd:x");
  ASSERT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), db + ", 1 app(s)"))
      << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "From one machine to etcd"))
      << refused;
  // The keyspace has apps (moved already): accepted.
  ASSERT_TRUE(etcd.Create(keys::AppPrefix() + "default/web", "x").ok());
  EXPECT_TRUE(CheckNotMovedFromEmbedded(&etcd, db, "etcd:x").ok());
}

}  // namespace
}  // namespace tidal
