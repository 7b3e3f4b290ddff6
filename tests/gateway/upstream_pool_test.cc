// Upstream connections: the idle pool over real loopback connections (reuse,
// its bounds and the connection budget, expiry), and the connect-stall and
// delivery checks on hand-made times.

#include "gateway/upstream_pool.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <vector>

#include "gateway/clocks.h"
#include "gateway/connection_budget.h"
#include "gtest/gtest.h"

namespace tidal::gateway {
namespace {

using tcp = boost::asio::ip::tcp;

// Loopback connections to one listening socket.
class Loopback {
 public:
  Loopback()
      : acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {}
  tcp::socket Connect() {
    tcp::socket s(ioc_);
    s.connect(acceptor_.local_endpoint());
    accepted_.push_back(acceptor_.accept());
    return s;
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  boost::asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::vector<tcp::socket> accepted_;
};

std::shared_ptr<EndpointState> Endpoint1(uint64_t uid, int port) {
  return std::make_shared<EndpointState>(
      uid, Endpoint{"i" + std::to_string(uid), "127.0.0.1", port, false}, 1,
      nullptr);
}

TEST(ConnectionBudgetTest, ReservesUpToItsLimit) {
  ConnectionBudget b(5);
  EXPECT_TRUE(b.Reserve(2));
  EXPECT_TRUE(b.Reserve(2));
  EXPECT_FALSE(b.Reserve(2));  // 6 > 5
  EXPECT_TRUE(b.Reserve(1));
  EXPECT_EQ(b.held(), 5);
  b.Unreserve(2);
  EXPECT_TRUE(b.Reserve(2));
  ConnectionBudget unlimited(0);
  EXPECT_TRUE(unlimited.Reserve(1'000'000));
  EXPECT_EQ(unlimited.held(), 1'000'000);
}

TEST(ClientCountsTest, AnAddressOrAnIpv6Slash64HoldsAtMostTheLimit) {
  ClientCounts counts(2);
  EXPECT_TRUE(counts.Add("10.0.0.1"));
  EXPECT_TRUE(counts.Add("10.0.0.1"));
  EXPECT_FALSE(counts.Add("10.0.0.1"));
  EXPECT_TRUE(counts.Add("10.0.0.2"));
  // Two addresses of one /64 count as one client; another /64 does not.
  EXPECT_TRUE(counts.Add("2001:db8:1:2::1"));
  EXPECT_TRUE(counts.Add("2001:db8:1:2:ffff::9"));
  EXPECT_FALSE(counts.Add("2001:db8:1:2:abcd::1"));
  EXPECT_TRUE(counts.Add("2001:db8:1:3::1"));
  EXPECT_EQ(ClientCounts::Key("2001:db8:1:2:abcd::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(ClientCounts::Key("::ffff:10.0.0.1"), "::ffff:10.0.0.1");
  // Released under the same key.
  counts.Remove("2001:db8:1:2:ffff::9");
  EXPECT_TRUE(counts.Add("2001:db8:1:2::7"));
  counts.Remove("10.0.0.1");
  EXPECT_TRUE(counts.Add("10.0.0.1"));
}

TEST(UpstreamPoolTest, TakesBackTheLatestConnectionOfItsEndpoint) {
  Loopback lo;
  ConnectionBudget budget(0);
  UpstreamPool pool(&budget);
  auto e1 = Endpoint1(1, lo.port());
  EXPECT_FALSE(pool.Take(1).has_value());

  tcp::socket a = lo.Connect();
  tcp::socket b = lo.Connect();
  auto b_local = b.local_endpoint();
  ASSERT_TRUE(pool.Put(e1, a, 8));
  ASSERT_TRUE(pool.Put(e1, b, 8));
  EXPECT_EQ(pool.idle(), 2u);
  EXPECT_EQ(budget.held(), 2);             // one slot per idle connection
  EXPECT_FALSE(pool.Take(2).has_value());  // another endpoint's

  auto got = pool.Take(1);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->is_open());
  EXPECT_EQ(got->local_endpoint(), b_local);  // the most recent first
  EXPECT_EQ(budget.held(), 1);                // its slot passed to the caller
  EXPECT_TRUE(pool.Take(1).has_value());
  EXPECT_FALSE(pool.Take(1).has_value());
  EXPECT_EQ(budget.held(), 0);
}

TEST(UpstreamPoolTest, KeepsAtMostMaxIdleAndOnlyWithinTheBudget) {
  Loopback lo;
  ConnectionBudget budget(3);
  UpstreamPool pool(&budget);
  auto e1 = Endpoint1(1, lo.port());
  auto e2 = Endpoint1(2, lo.port());
  std::vector<tcp::socket> socks;
  for (int i = 0; i < 4; ++i) socks.push_back(lo.Connect());
  EXPECT_TRUE(pool.Put(e1, socks[0], 2));
  EXPECT_TRUE(pool.Put(e1, socks[1], 2));
  EXPECT_FALSE(pool.Put(e1, socks[2], 2));  // max_idle per endpoint
  EXPECT_TRUE(socks[2].is_open());          // the caller's to close
  EXPECT_TRUE(pool.Put(e2, socks[2], 2));
  EXPECT_EQ(budget.held(), 3);
  EXPECT_FALSE(pool.Put(e2, socks[3], 2));  // no slot left
  EXPECT_EQ(pool.idle(), 3u);

  // A client connection needs two slots: the oldest idle ones go first.
  EXPECT_EQ(pool.DropIdle(2), 2);
  EXPECT_EQ(budget.held(), 1);
  EXPECT_EQ(pool.idle(), 1u);
  EXPECT_EQ(pool.DropIdle(5), 1);
  EXPECT_EQ(pool.DropIdle(5), 0);
  EXPECT_EQ(budget.held(), 0);
}

TEST(UpstreamPoolTest, ExpiresIdleConnectionsAndThoseOfRemovedEndpoints) {
  Loopback lo;
  ConnectionBudget budget(0);
  UpstreamPool pool(&budget);
  auto e1 = Endpoint1(1, lo.port());
  auto e2 = Endpoint1(2, lo.port());
  tcp::socket a = lo.Connect();
  tcp::socket b = lo.Connect();
  ASSERT_TRUE(pool.Put(e1, a, 8));
  ASSERT_TRUE(pool.Put(e2, b, 8));
  const int64_t now = MonoMs();
  pool.Expire(now, 30'000);  // young, endpoints in the route: kept
  EXPECT_EQ(pool.idle(), 2u);
  e2->removed.store(true);
  pool.Expire(now, 30'000);  // e2 left the route
  EXPECT_EQ(pool.idle(), 1u);
  EXPECT_FALSE(pool.Take(2).has_value());
  pool.Expire(now + 30'001, 30'000);  // idle too long
  EXPECT_EQ(pool.idle(), 0u);
  EXPECT_EQ(budget.held(), 0);
}

TEST(UpstreamPoolTest, AFreshConnectionsRequestIsAcknowledged) {
  Loopback lo;
  tcp::socket s = lo.Connect();
  boost::asio::write(s, boost::asio::buffer("GET / HTTP/1.1\r\n\r\n", 18));
  // Loopback acknowledges at once; wait for it with a deadline all the same.
  Delivery d = Delivery::kPending;
  for (int i = 0; i < 1000 && d != Delivery::kAcked; ++i) {
    d = RequestDelivery(s);
  }
  EXPECT_EQ(d, Delivery::kAcked);
}

TEST(UpstreamConnectTest, HoldDeadlineOr) {
  EXPECT_EQ(HoldDeadlineOr(0, 500), 500);    // never held
  EXPECT_EQ(HoldDeadlineOr(300, 500), 300);  // the queue deadline first
  EXPECT_EQ(HoldDeadlineOr(700, 500), 500);
}

TEST(UpstreamConnectTest, ConnectChecks) {
  struct Row {
    const char* what;
    int64_t now, hold;
    int unconfirmed;
    ConnectCheck want;
    int64_t next;  // for kWait
  };
  // The connect started at 1000, times out at 3000; stall threshold 250.
  const std::vector<Row> rows = {
      {"alone on the instance: wait", 1250, 0, 1, ConnectCheck::kWait, 1500},
      {"others pending, past the threshold: stalled", 1250, 0, 2,
       ConnectCheck::kStalled, 0},
      {"others pending, before it: wait", 1200, 0, 5, ConnectCheck::kWait,
       1450},
      {"never held, at the connect deadline: 504", 3000, 0, 1,
       ConnectCheck::kTimeout, 0},
      {"last check before the connect deadline", 2900, 0, 1,
       ConnectCheck::kWait, 3000},
      {"held, at its queue deadline: 504", 2000, 2000, 1,
       ConnectCheck::kTimeout, 0},
      {"held, next check capped by its queue deadline", 1900, 2000, 1,
       ConnectCheck::kWait, 2000},
      {"held, past the connect deadline: stalled (queued again)", 3000, 9000, 1,
       ConnectCheck::kStalled, 0},
  };
  for (const Row& row : rows) {
    int64_t next = -1;
    EXPECT_EQ(CheckConnect(row.now, 1000, 3000, row.hold, 250, row.unconfirmed,
                           &next),
              row.want)
        << row.what;
    if (row.want == ConnectCheck::kWait) {
      EXPECT_EQ(next, row.next) << row.what;
    }
  }
}

TEST(UpstreamConnectTest, DeliveryChecks) {
  struct Row {
    const char* what;
    Delivery delivery;
    bool resendable;
    int64_t now, hold;
    DeliveryCheck want;
    int64_t next;  // for kWait
  };
  // The response is due by 10000; stall threshold 250.
  const std::vector<Row> rows = {
      {"acknowledged", Delivery::kAcked, true, 1000, 0,
       DeliveryCheck::kConfirmed, 0},
      {"acknowledged, even late", Delivery::kAcked, false, 20000, 0,
       DeliveryCheck::kConfirmed, 0},
      {"lost, nothing sent for good: again", Delivery::kLost, true, 1000, 0,
       DeliveryCheck::kLost, 0},
      {"lost after body bytes: wait", Delivery::kLost, false, 1000, 0,
       DeliveryCheck::kWait, 1250},
      {"pending: wait", Delivery::kPending, true, 1000, 0, DeliveryCheck::kWait,
       1250},
      {"pending at the response deadline: 504", Delivery::kPending, true, 10000,
       0, DeliveryCheck::kTimeout, 0},
      {"pending, held: 504 at the queue deadline", Delivery::kPending, true,
       5000, 5000, DeliveryCheck::kTimeout, 0},
      {"pending, held: next check capped", Delivery::kPending, true, 4900, 5000,
       DeliveryCheck::kWait, 5000},
  };
  for (const Row& row : rows) {
    int64_t next = -1;
    EXPECT_EQ(CheckDelivery(row.delivery, row.resendable, row.now, 10000,
                            row.hold, 250, &next),
              row.want)
        << row.what;
    if (row.want == DeliveryCheck::kWait) {
      EXPECT_EQ(next, row.next) << row.what;
    }
  }
}

}  // namespace
}  // namespace tidal::gateway
