// CheckStoreIdentity over MemoryStores and real data directories: the id is
// made once and remembered; a wiped store or another one is refused, with
// nothing written to it; removing the remembered id accepts a new store.

#include "daemon/store_identity.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "e2e/e2e_util.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

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

}  // namespace
}  // namespace tidal
