// `tidalctl get leader`, `get nodes` and `delete node`: the real binary
// against a TidalService of one node of a highly available control plane
// (MemoryStore holding the leader and node records), served on 127.0.0.1:0
// in this process, as in tidalctl_test.cc.

#include <map>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "api/service.h"
#include "cli/tidalctl_fixture.h"
#include "common/proto_time.h"
#include "gtest/gtest.h"
#include "store/keys.h"
#include "tidal/v1/ha.pb.h"

namespace tidal {
namespace {

using cli_test::Result;

class ClusterCommandsTest : public cli_test::TidalctlFixture {
 protected:
  void Configure(ServiceOptions* opts) override {
    opts->ha = true;
    opts->node_name = "n0";
    opts->node_lost_timeout = absl::Seconds(30);
    opts->node_last_seen =
        [this](const std::string& node) -> std::optional<absl::Time> {
      absl::MutexLock l(&mu_);
      auto it = seen_.find(node);
      if (it == seen_.end()) return std::nullopt;
      return it->second;
    };
  }

  void SetUp() override {
    cli_test::TidalctlFixture::SetUp();
    const absl::Time now = clock_.Now();
    v1::LeaderRecord leader;
    leader.set_node("n0");
    leader.set_api_address("10.0.0.1:7070");
    *leader.mutable_since() = ToProtoTime(now - absl::Minutes(5));
    ASSERT_TRUE(
        store_.Txn({Op::Put(keys::LeaderKey(), leader.SerializeAsString())})
            .ok());
    for (int i = 0; i < 2; ++i) {
      v1::NodeRecord n;
      n.set_name(absl::StrCat("n", i));
      n.set_address(absl::StrCat("10.0.0.", i + 1));
      n.set_api_address(absl::StrCat("10.0.0.", i + 1, ":7070"));
      n.set_gateway_port(8080);
      *n.mutable_started() = ToProtoTime(now - absl::Hours(1));
      *n.mutable_heartbeat() = ToProtoTime(now);
      n.set_heartbeats(3600);
      ASSERT_TRUE(
          store_.Txn({Op::Put(keys::Node(n.name()), n.SerializeAsString())})
              .ok());
      SetSeen(n.name(), now);
    }
  }

  void SetSeen(const std::string& node, absl::Time t) {
    absl::MutexLock l(&mu_);
    seen_[node] = t;
  }

  bool Exists(const std::string& key) { return store_.Get(key).ok(); }

  absl::Mutex mu_;
  std::map<std::string, absl::Time> seen_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ClusterCommandsTest, GetLeaderAndNodes) {
  Result r = Run({"get", "leader"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "NODE")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "n0")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "10.0.0.1:7070")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "5m")) << r.out;  // since
  r = Run({"get", "leader", "-o", "name"});
  EXPECT_EQ(r.out, "n0\n");

  r = Run({"get", "nodes"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "ROLE")) << r.out;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  ASSERT_GE(lines.size(), 3u) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[1], "n0")) << r.out;
  EXPECT_TRUE(absl::StrContains(lines[1], "leader")) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[2], "n1")) << r.out;
  EXPECT_TRUE(absl::StrContains(lines[2], "standby")) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[0], "NAME   STATUS   ROLE")) << r.out;
  EXPECT_TRUE(absl::StrContains(lines[2], "Ready")) << r.out;
  // A node gone quiet is NotReady, then Lost, and no longer a standby.
  SetSeen("n1", clock_.Now() - absl::Seconds(5));
  r = Run({"get", "nodes"});
  lines = absl::StrSplit(r.out, '\n');
  ASSERT_GE(lines.size(), 3u) << r.out;
  EXPECT_TRUE(absl::StrContains(lines[2], "NotReady")) << r.out;
  EXPECT_FALSE(absl::StrContains(lines[2], "standby")) << r.out;
  SetSeen("n1", clock_.Now() - absl::Seconds(31));
  r = Run({"get", "nodes", "-o", "wide"});
  lines = absl::StrSplit(r.out, '\n');
  ASSERT_GE(lines.size(), 3u) << r.out;
  EXPECT_TRUE(absl::StrContains(lines[2], "Lost")) << r.out;
  EXPECT_TRUE(absl::StrContains(lines[2], "8080")) << r.out;  // GATEWAY
  SetSeen("n1", clock_.Now());
  r = Run({"get", "nodes", "-o", "name"});
  EXPECT_EQ(r.out, "node/n0\nnode/n1\n");
  r = Run({"get", "nodes", "-o", "json"});
  EXPECT_TRUE(absl::StrContains(r.out, "\"answeredBy\": \"n0\"")) << r.out;
}

// A node gone for good: refused while live, then its records go (and only
// its own).
TEST_F(ClusterCommandsTest, DeleteNodeOnlyOnceItIsGone) {
  // What n1 left, and what n0 has.
  for (const std::string& node : {"n0", "n1"}) {
    ASSERT_TRUE(store_
                    .Txn({Op::Put(keys::Metrics(node), "m"),
                          Op::Put(absl::StrCat(keys::DemandPrefix(), node,
                                               "/default/web"),
                                  "d"),
                          Op::Put(keys::Assignment(node, node + "-i1"), "a"),
                          Op::Put(keys::Instance(node, node + "-i1"), "s")})
                    .ok());
  }
  Result r = Run({"delete", "node", "n1"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(
      r.err, "node n1 is live (heard from less than a second ago"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "stop its tidald first")) << r.err;
  EXPECT_TRUE(Exists(keys::Node("n1")));
  // The node answering is never deleted.
  r = Run({"delete", "node", "n0"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "node n0 is live")) << r.err;

  SetSeen("n1", clock_.Now() - absl::Seconds(31));
  r = Run({"delete", "node", "n1", "--dry-run=server"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "node \"n1\" deleted (server dry run) (5 records)\n");
  EXPECT_TRUE(Exists(keys::Node("n1")));
  EXPECT_TRUE(Exists(keys::Metrics("n1")));

  r = Run({"delete", "node", "n1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "node \"n1\" deleted (5 records)\n");
  EXPECT_FALSE(Exists(keys::Node("n1")));
  EXPECT_FALSE(Exists(keys::Metrics("n1")));
  EXPECT_FALSE(Exists(absl::StrCat(keys::DemandPrefix(), "n1/default/web")));
  EXPECT_FALSE(Exists(keys::Assignment("n1", "n1-i1")));
  EXPECT_FALSE(Exists(keys::Instance("n1", "n1-i1")));
  for (const std::string& key :
       {keys::Node("n0"), keys::Metrics("n0"),
        absl::StrCat(keys::DemandPrefix(), "n0/default/web"),
        keys::Assignment("n0", "n0-i1"), keys::Instance("n0", "n0-i1")}) {
    EXPECT_TRUE(Exists(key)) << key;
  }
  r = Run({"get", "nodes", "-o", "name"});
  EXPECT_EQ(r.out, "node/n0\n");

  r = Run({"delete", "node", "n1"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "node \"n1\" not found")) << r.err;
  r = Run({"delete", "node"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "give at least one NAME")) << r.err;
}

}  // namespace
}  // namespace tidal
