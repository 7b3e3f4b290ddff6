// NamespaceUsers: a uid per namespace, made once, remembered across a
// restart, never one the machine's users or groups have, and refused when
// the range is spent.

#include "runtime/namespace_users.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "e2e/e2e_util.h"

namespace tidal {
namespace {

TEST(NamespaceUsersTest, AUidPerNamespaceRememberedAndNeverAUsersOwn) {
  if (geteuid() != 0) GTEST_SKIP() << "only root runs a user per namespace";
  e2e::TempDir dir;
  const std::string file = dir.path() + "/instance-uids";
  // nobody (65534) is in the range: never given.
  ASSERT_NE(getpwuid(65534), nullptr);
  auto users = NamespaceUsers::Open(file, 65534, 65536);
  ASSERT_TRUE(users.ok()) << users.status();
  auto a = (*users)->For("team-a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_NE(a->uid, 65534u);
  EXPECT_EQ(a->gid, a->uid);
  EXPECT_EQ(a->name, "tidal-team-a");
  EXPECT_EQ((*users)->For("team-a")->uid, a->uid);
  auto b = (*users)->For("team-b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(b->uid, a->uid);
  // Spent.
  auto c = (*users)->For("team-c");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(c.status().message(), "team-c"));
  // Remembered: a new process gives the same.
  auto again = NamespaceUsers::Open(file, 65534, 65536);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->For("team-b")->uid, b->uid);
  EXPECT_EQ((*again)->Assigned().size(), 2u);
  EXPECT_EQ(e2e::ReadFile(file),
            absl::StrCat(a->uid, " team-a\n", b->uid, " team-b\n"));
}

TEST(NamespaceUsersTest, BadRangesAndFilesAreRefused) {
  e2e::TempDir dir;
  EXPECT_EQ(NamespaceUsers::Open(dir.path() + "/u", 0, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NamespaceUsers::Open(dir.path() + "/u", 20, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  if (geteuid() != 0) return;
  e2e::WriteFile(dir.path() + "/bad", "123 ok\nnot a line\n");
  auto bad = NamespaceUsers::Open(dir.path() + "/bad", 100000, 100010);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "/bad:2"))
      << bad.status();
}

}  // namespace
}  // namespace tidal
