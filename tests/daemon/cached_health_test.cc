// CachedHealth: /readyz answers from the last check at once; a check that
// hangs (etcd without quorum) is itself the answer once it runs past
// `stale`, and the next one that ends takes its place.

#include "daemon/cached_health.h"

#include <gtest/gtest.h>

#include <atomic>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "fakes/eventually.h"

namespace tidal {
namespace {

using testing::Eventually;

TEST(CachedHealthTest, AnswersAtOnceAndAHangingCheckIsTheAnswer) {
  std::atomic<int> mode{0};  // 0 ok, 1 hang, 2 error
  absl::Notification release;
  std::atomic<int> checks{0};
  CachedHealth::Options o;
  o.period = absl::Milliseconds(20);
  o.stale = absl::Milliseconds(200);
  CachedHealth health(o, [&] {
    ++checks;
    CachedHealth::Result r;
    if (mode == 1) release.WaitForNotification();
    if (mode == 2) r.status = absl::UnavailableError("etcd: no leader");
    r.detail = "leader: n1\n";
    return r;
  });
  EXPECT_TRUE(absl::IsUnavailable(health.Current()));  // not checked yet
  health.Start();
  // Checked once by Start.
  EXPECT_TRUE(health.Current().ok()) << health.Current();
  EXPECT_EQ(health.Detail(), "leader: n1\n");
  mode = 2;
  ASSERT_TRUE(
      Eventually([&] { return absl::IsUnavailable(health.Current()); }));
  EXPECT_TRUE(absl::StrContains(health.Current().message(), "no leader"));
  // A check that hangs: the last answer until `stale`, then the hang.
  mode = 1;
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(health.Current().message(),
                             "has not answered for");
  })) << health.Current();
  const absl::Time asked = absl::Now();
  (void)health.Current();
  EXPECT_LT(absl::Now() - asked, absl::Milliseconds(50));  // from the cache
  mode = 0;
  release.Notify();
  ASSERT_TRUE(Eventually([&] { return health.Current().ok(); }))
      << health.Current();
  health.Stop();
}

}  // namespace
}  // namespace tidal
