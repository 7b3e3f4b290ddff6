// GatedStore over a MemoryStore: calls pass while the gate is open or says
// something other than Unavailable, and answer Unavailable at once, without
// touching the store, while it says Unavailable.

#include "store/gated_store.h"

#include <gtest/gtest.h>

#include <atomic>

#include "absl/strings/match.h"
#include "fakes/memory_store.h"

namespace tidal {
namespace {

TEST(GatedStoreTest, AnUnavailableGateAnswersForTheStore) {
  testing::MemoryStore base;
  absl::Status gate = absl::OkStatus();
  std::atomic<int> asked{0};
  GatedStore store(&base, [&] {
    ++asked;
    return gate;
  });
  ASSERT_TRUE(store.Create("/a", "1").ok());
  EXPECT_EQ(store.Get("/a")->value, "1");

  gate = absl::UnavailableError("the store (etcd:x) does not answer: late");
  const int before = asked.load();
  auto refused = store.Create("/b", "2");
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(),
                                "does not answer: late; tidald serves this "
                                "again once it does"))
      << refused.status();
  EXPECT_TRUE(absl::IsUnavailable(store.Get("/a").status()));
  EXPECT_TRUE(absl::IsUnavailable(store.List("/").status()));
  EXPECT_TRUE(absl::IsUnavailable(store.ListAfter("/", "", 1).status()));
  EXPECT_TRUE(absl::IsUnavailable(store.WatchPrefix("/", 0).status()));
  EXPECT_TRUE(absl::IsUnavailable(store.CurrentVersion().status()));
  EXPECT_GT(asked.load(), before);
  EXPECT_TRUE(absl::IsNotFound(base.Get("/b").status()));  // never written
  EXPECT_TRUE(store.Health().ok());  // the real check, not the gate

  // A full disk or a damaged store is not a store that does not answer:
  // reads go on.
  gate = absl::ResourceExhaustedError("the data directory is full");
  EXPECT_EQ(store.Get("/a")->value, "1");
  gate = absl::OkStatus();
  EXPECT_TRUE(store.Create("/b", "2").ok());
}

}  // namespace
}  // namespace tidal
