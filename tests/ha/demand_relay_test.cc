// DemandRelay over a MemoryStore: requests held at zero on a standby reach
// the leader's callback and Held; a burst is a few writes; nothing held
// removes the record; only live nodes count.

#include "ha/demand_relay.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>

#include "absl/strings/str_cat.h"
#include "fakes/eventually.h"
#include "fakes/fake_clock.h"
#include "fakes/memory_store.h"
#include "store/keys.h"

namespace tidal::ha {
namespace {

using ::tidal::testing::Eventually;

class DemandTest : public ::testing::Test {
 protected:
  DemandRelay::Options NodeOptions(const std::string& node) {
    DemandRelay::Options o;
    o.node = node;
    o.clock = &clock_;
    o.min_interval = absl::Milliseconds(500);
    o.poll = absl::Milliseconds(5);
    return o;
  }
  DemandRelay::Options LeaderOptions() {
    DemandRelay::Options o = NodeOptions("a");
    o.on_demand = [this](const std::string& ns, const std::string& app) {
      absl::MutexLock l(&mu_);
      ++calls_[absl::StrCat(ns, "/", app)];
    };
    o.live_nodes = [this] {
      absl::MutexLock l(&mu_);
      return live_;
    };
    return o;
  }
  int Calls(const std::string& key) {
    absl::MutexLock l(&mu_);
    return calls_[key];
  }
  int DemandKeys() {
    auto list = store_.List(keys::DemandPrefix());
    return list.ok() ? static_cast<int>(list->items.size()) : -1;
  }

  testing::MemoryStore store_;
  testing::FakeClock clock_;
  absl::Mutex mu_;
  std::map<std::string, int> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> live_ ABSL_GUARDED_BY(mu_) = {"a", "b"};
};

TEST_F(DemandTest, HeldOnAStandbyReachesTheLeader) {
  DemandRelay leader(&store_, LeaderOptions());
  leader.Start();
  leader.StartWatching();
  DemandRelay standby(&store_, NodeOptions("b"));
  standby.Start();

  standby.Report("default", "hello", 1);
  ASSERT_TRUE(Eventually([&] { return Calls("default/hello") == 1; }));
  EXPECT_EQ(leader.Held("default", "hello"), 1);
  EXPECT_EQ(leader.Held("default", "other"), 0);
  EXPECT_TRUE(Eventually([&] { return standby.writes() == 1; }));

  // A burst of held requests: the count is published at most once per
  // interval, and more held requests are no new demand.
  for (int i = 2; i <= 100; ++i) standby.Report("default", "hello", i);
  clock_.Advance(absl::Milliseconds(600));
  ASSERT_TRUE(
      Eventually([&] { return leader.Held("default", "hello") == 100; }));
  EXPECT_LE(standby.writes(), 3);
  EXPECT_EQ(Calls("default/hello"), 1);

  // Nothing held: the record goes.
  standby.Report("default", "hello", 0);
  clock_.Advance(absl::Milliseconds(600));
  ASSERT_TRUE(Eventually([&] { return DemandKeys() == 0; }));
  EXPECT_TRUE(Eventually([&] { return leader.Held("default", "hello") == 0; }));

  // Held again: new demand, written at once (no interval to wait).
  standby.Report("default", "hello", 3);
  ASSERT_TRUE(Eventually([&] { return Calls("default/hello") == 2; }));
  EXPECT_EQ(leader.Held("default", "hello"), 3);

  // A node that is not live does not count.
  {
    absl::MutexLock l(&mu_);
    live_ = {"a"};
  }
  EXPECT_EQ(leader.Held("default", "hello"), 0);
}

TEST_F(DemandTest, LeaderOwnDemandIsNotCountedTwice) {
  DemandRelay leader(&store_, LeaderOptions());
  leader.Start();
  leader.StartWatching();
  leader.Report("default", "hello", 4);  // the local gateway counts these
  ASSERT_TRUE(Eventually([&] { return DemandKeys() == 1; }));
  DemandRelay standby(&store_, NodeOptions("b"));
  standby.Start();
  standby.Report("default", "hello", 2);
  ASSERT_TRUE(Eventually([&] { return leader.Held("default", "hello") == 2; }));
  EXPECT_EQ(Calls("default/hello"), 1);
}

TEST_F(DemandTest, NewLeaderSeesDemandHeldBeforeItStarted) {
  DemandRelay standby(&store_, NodeOptions("b"));
  standby.Start();
  standby.Report("default", "hello", 2);
  ASSERT_TRUE(Eventually([&] { return DemandKeys() == 1; }));
  DemandRelay leader(&store_, LeaderOptions());
  leader.StartWatching();
  ASSERT_TRUE(Eventually([&] { return Calls("default/hello") == 1; }));
  EXPECT_EQ(leader.Held("default", "hello"), 2);
  leader.StopWatching();
  EXPECT_EQ(leader.Held("default", "hello"), 0);
}

TEST_F(DemandTest, GatewayCountsAreRefreshedAndOldRecordsCleared) {
  // An earlier run of node b left a record.
  ASSERT_TRUE(
      store_
          .Txn({Op::Put(absl::StrCat(keys::DemandPrefix(), "b/default/stale"),
                        "x")})
          .ok());
  std::atomic<int> held{1};
  DemandRelay::Options o = NodeOptions("b");
  o.held = [&](const std::string&, const std::string&) { return held.load(); };
  DemandRelay standby(&store_, o);
  standby.Start();
  ASSERT_TRUE(Eventually([&] { return DemandKeys() == 0; }));
  DemandRelay leader(&store_, LeaderOptions());
  leader.StartWatching();
  standby.Report("default", "hello", 1);
  ASSERT_TRUE(Eventually([&] { return leader.Held("default", "hello") == 1; }));
  held = 7;
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Eventually([&] { return leader.Held("default", "hello") == 7; }));
  held = 0;  // the gateway served them
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(Eventually([&] { return DemandKeys() == 0; }));
}

}  // namespace
}  // namespace tidal::ha
