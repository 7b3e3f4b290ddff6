#include "store/etcd_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "e2e/e2e_util.h"
#include "e2e/test_ca.h"
#include "fakes/etcd_process.h"
#include "fakes/eventually.h"
#include "fakes/free_port.h"
#include "fakes/statusless_h2_server.h"
#include "store/store_conformance.h"

namespace tidal {
namespace {

using testing::StoreConformanceTest;
using testing::StoreImpl;
using testing::StoreTestEnv;

using testing::EtcdProcess;
using testing::HaveEtcd;

constexpr int64_t kWatchBuffer = 200;

class EtcdEnv : public StoreTestEnv {
 public:
  absl::StatusOr<std::unique_ptr<Store>> Open() override {
    auto store = OpenEtcd();
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(std::move(store).value());
  }

  // Retries until etcd has started (first open) or the deadline passes.
  absl::StatusOr<std::unique_ptr<EtcdStore>> OpenEtcd() {
    EtcdStore::Options options;
    options.watch_buffer_events = kWatchBuffer;
    return etcd_.Open(options);
  }

  // Writes ten times more events than a watch buffers, then waits until a
  // probe watch over the same range has received them all, so a watch that
  // did not read in the meantime has overflowed by then.
  absl::Status OverflowWatchers(Store* store,
                                const std::string& prefix) override {
    auto start = store->CurrentVersion();
    if (!start.ok()) return start.status();
    int64_t last = 0;
    for (int batch = 0; batch * 100 < 10 * kWatchBuffer; ++batch) {
      std::vector<Op> ops;
      for (int i = 0; i < 100; ++i) {
        ops.push_back(Op::Put(absl::StrCat(prefix, batch, "/", i), "x"));
      }
      auto r = store->Txn(ops);
      if (!r.ok()) return r.status();
      last = *r;
    }
    // The probe buffers without limit (its own client, default options).
    auto probe_store = EtcdStore::Open(etcd_.endpoint());
    if (!probe_store.ok()) return probe_store.status();
    auto probe = (*probe_store)->WatchPrefix(prefix, *start);
    if (!probe.ok()) return probe.status();
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    int64_t seen = *start;
    while (seen < last && absl::Now() < deadline) {
      auto batch = (*probe)->Next(absl::Milliseconds(200));
      if (!batch.ok()) return batch.status();
      if (!batch->empty()) seen = batch->back().kv.resource_version;
    }
    return seen == last ? absl::OkStatus()
                        : absl::DeadlineExceededError("probe watch lagged");
  }

  // etcd keeps the compaction revision itself watchable: write one more
  // revision and compact at it, so every earlier start is gone.
  absl::Status DiscardHistory(Store* store,
                              const std::string& prefix) override {
    auto rev = store->Txn({Op::Put(prefix + "compact", "x")});
    if (!rev.ok()) return rev.status();
    return static_cast<EtcdStore*>(store)->Compact(*rev);
  }

  bool KeepsWatchHistoryAcrossReopen() const override { return true; }

  std::string endpoint() const { return etcd_.endpoint(); }

 private:
  EtcdProcess etcd_;
};

std::unique_ptr<StoreTestEnv> MakeEtcdEnv() {
  if (!HaveEtcd()) return nullptr;
  return std::make_unique<EtcdEnv>();
}

INSTANTIATE_TEST_SUITE_P(Etcd, StoreConformanceTest,
                         ::testing::Values(StoreImpl{"etcd", MakeEtcdEnv}),
                         testing::StoreImplName);

TEST(EtcdStoreTest, UnreachableEndpointIsUnavailable) {
  EtcdStore::Options options;
  options.connect_timeout = absl::Milliseconds(500);
  auto store = EtcdStore::Open(
      absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort()), options);
  EXPECT_TRUE(absl::IsUnavailable(store.status())) << store.status();
}

TEST(EtcdStoreTest, MalformedEndpointsAreInvalid) {
  EXPECT_TRUE(absl::IsInvalidArgument(EtcdStore::Open("nohostport").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(EtcdStore::Open("host:notaport").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(EtcdStore::Open("").status()));
}

TEST(EtcdStoreTest, EndpointsAreAllPlainOrAllHttps) {
  auto tls = etcd_internal::ParseEndpoints(
      "https://10.0.0.1:2379, https://[::1]:2379/");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(tls->hosts,
            (std::vector<std::string>{"10.0.0.1:2379", "[::1]:2379"}));
  auto plain = etcd_internal::ParseEndpoints("http://a:1,b:2");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->tls);
  EXPECT_EQ(plain->hosts, (std::vector<std::string>{"a:1", "b:2"}));
  auto mixed = etcd_internal::ParseEndpoints("https://a:1,b:2");
  EXPECT_TRUE(absl::IsInvalidArgument(mixed.status())) << mixed.status();
  EXPECT_TRUE(absl::StrContains(mixed.status().message(), "mix https://"))
      << mixed.status();
}

// etcd serving TLS and asking for client certificates
// (--client-cert-auth): tidald's client gets in with the CA and a client
// certificate, and nothing else does.
TEST(EtcdStoreTest, OverTlsOnlyACertifiedClientGetsIn) {
  if (!HaveEtcd()) GTEST_SKIP() << "no " << testing::kEtcdBinary;
  if (!e2e::TestCa::Available()) GTEST_SKIP() << "no openssl command";
  e2e::TempDir dir;
  e2e::TestCa ca(dir.path(), "ca");
  ASSERT_TRUE(ca.ok()) << ca.error();
  ASSERT_TRUE(ca.Issue("etcd", "etcd", {"DNS:etcd.test", "IP:127.0.0.1"}))
      << ca.error();
  ASSERT_TRUE(ca.Issue("client", "tidal", {}, /*client=*/true)) << ca.error();
  e2e::TestCa other(dir.path(), "other");
  ASSERT_TRUE(other.ok()) << other.error();
  ASSERT_TRUE(other.Issue("stranger", "tidal", {}, /*client=*/true))
      << other.error();
  EtcdProcess etcd(EtcdProcess::Tls{ca.Path("etcd", ".crt"),
                                    ca.Path("etcd", ".key"), ca.cert()});
  ASSERT_TRUE(absl::StartsWith(etcd.endpoint(), "https://"));

  EtcdStore::Options good;
  good.tls.root_certs = e2e::ReadFile(ca.cert());
  good.tls.cert_chain = e2e::ReadFile(ca.Path("client", ".crt"));
  good.tls.private_key = e2e::ReadFile(ca.Path("client", ".key"));
  auto store = etcd.Open(good);
  ASSERT_TRUE(store.ok()) << store.status();
  auto w = (*store)->WatchPrefix("/tls/", 0);
  ASSERT_TRUE(w.ok()) << w.status();
  auto created = (*store)->Create("/tls/a", "x");
  ASSERT_TRUE(created.ok()) << created.status();
  auto ev = (*w)->Next(absl::Seconds(10));
  ASSERT_TRUE(ev.ok()) << ev.status();
  ASSERT_EQ(ev->size(), 1u);
  EXPECT_EQ(ev->front().kv.key, "/tls/a");
  // The name checked can be any the certificate carries.
  EtcdStore::Options named = good;
  named.tls.server_name = "etcd.test";
  named.connect_timeout = absl::Seconds(5);
  auto by_name = EtcdStore::Open(etcd.endpoint(), named);
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ((*by_name)->Get("/tls/a")->value, "x");

  auto refused = [&](EtcdStore::Options o, const std::string& endpoint,
                     const std::string& hint) {
    o.connect_timeout = absl::Seconds(2);
    auto s = EtcdStore::Open(endpoint, o);
    EXPECT_TRUE(absl::IsUnavailable(s.status())) << s.status();
    EXPECT_TRUE(absl::StrContains(s.status().message(), hint)) << s.status();
  };
  EtcdStore::Options no_cert = good;
  no_cert.tls.cert_chain.clear();
  no_cert.tls.private_key.clear();
  refused(no_cert, etcd.endpoint(), "--etcd-cert");
  EtcdStore::Options stranger = good;
  stranger.tls.cert_chain = e2e::ReadFile(other.Path("stranger", ".crt"));
  stranger.tls.private_key = e2e::ReadFile(other.Path("stranger", ".key"));
  refused(stranger, etcd.endpoint(), "--etcd-cert");
  EtcdStore::Options wrong_ca = good;
  wrong_ca.tls.root_certs = e2e::ReadFile(other.cert());
  refused(wrong_ca, etcd.endpoint(), "--etcd-cacert");
  EtcdStore::Options wrong_name = good;
  wrong_name.tls.server_name = "elsewhere.test";
  refused(wrong_name, etcd.endpoint(), "names \"elsewhere.test\"");
  // Plain text to a TLS port.
  refused(EtcdStore::Options(), etcd.endpoint().substr(strlen("https://")),
          "name https:// endpoints");
}

// Several members over TLS, each with a certificate naming only itself (as
// etcd's own recipes make them): the first endpoint (127.0.0.2, nothing
// listening) fails, and the member at 127.0.0.1 is trusted for naming its
// own endpoint, with no --etcd-server-name. A certificate naming no endpoint
// is refused, saying which names it carries.
TEST(EtcdStoreTest, OverTlsEachMembersCertificateNamesItsOwnEndpoint) {
  if (!HaveEtcd()) GTEST_SKIP() << "no " << testing::kEtcdBinary;
  if (!e2e::TestCa::Available()) GTEST_SKIP() << "no openssl command";
  e2e::TempDir dir;
  e2e::TestCa ca(dir.path(), "ca");
  ASSERT_TRUE(ca.ok()) << ca.error();
  ASSERT_TRUE(ca.Issue("etcd", "etcd", {"IP:127.0.0.1"})) << ca.error();
  ASSERT_TRUE(ca.Issue("client", "tidal", {}, /*client=*/true)) << ca.error();
  EtcdProcess etcd(EtcdProcess::Tls{ca.Path("etcd", ".crt"),
                                    ca.Path("etcd", ".key"), ca.cert()});
  const std::string port =
      etcd.endpoint().substr(etcd.endpoint().rfind(':') + 1);
  EtcdStore::Options o;
  o.tls.root_certs = e2e::ReadFile(ca.cert());
  o.tls.cert_chain = e2e::ReadFile(ca.Path("client", ".crt"));
  o.tls.private_key = e2e::ReadFile(ca.Path("client", ".key"));
  o.connect_timeout = absl::Seconds(10);
  const std::string two = absl::StrCat(
      "https://127.0.0.2:", testing::FreeLoopbackPort(), ",", etcd.endpoint());
  auto store = EtcdStore::Open(two, o);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Create("/tls/b", "y").ok());
  EXPECT_EQ((*store)->Get("/tls/b")->value, "y");

  o.connect_timeout = absl::Seconds(2);
  auto by_name = EtcdStore::Open(absl::StrCat("https://localhost:", port), o);
  EXPECT_TRUE(absl::IsUnavailable(by_name.status())) << by_name.status();
  EXPECT_TRUE(absl::StrContains(by_name.status().message(),
                                "names its own endpoint (one of localhost)"))
      << by_name.status();
}

// An etcd member being stopped can end a call with trailers that hold no
// grpc-status. gRPC 1.51's retry filter aborted tidald on them
// (grpc/grpc#34683: `Assertion 'false && "this->engaged_"' failed` in
// absl::optional<grpc_status_code>); the store's channel runs without it,
// so the call fails and its caller retries.
TEST(EtcdStoreTest, TrailersWithoutAStatusFailTheCallNotTheProcess) {
  testing::StatuslessH2Server server;
  ASSERT_GT(server.port(), 0);
  EtcdStore::Options o;
  o.connect_timeout = absl::Seconds(5);
  auto store = EtcdStore::Open(absl::StrCat("127.0.0.1:", server.port()), o);
  EXPECT_TRUE(absl::IsUnavailable(store.status())) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), "No status received"))
      << store.status();
  EXPECT_GE(server.answered(), 1);
}

// etcd's own limits are ResourceExhausted naming the flag to raise, not
// InvalidArgument (a bad spec, to the API's clients).
TEST(EtcdStoreTest, EtcdLimitsAreResourceExhaustedAndNamed) {
  if (!HaveEtcd()) GTEST_SKIP() << "no " << testing::kEtcdBinary;
  EtcdEnv env;
  auto store = env.OpenEtcd();
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<Op> ops;
  for (int i = 0; i < 129; ++i) {  // etcd's default --max-txn-ops: 128
    ops.push_back(Op::Put(absl::StrCat("/limits/", i), "x"));
  }
  auto r = (*store)->Txn(ops);
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(),
                                "the change needs 129 operations"))
      << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "--max-txn-ops"))
      << r.status();
  ops.resize(128);
  EXPECT_TRUE((*store)->Txn(ops).ok());
  // Over --max-request-bytes (1.5 MiB by default): refused by etcd, or, past
  // 2 MiB, by its gRPC server.
  for (size_t size : {size_t{1700} << 10, size_t{3} << 20}) {
    auto big = (*store)->Txn({Op::Put("/limits/big", std::string(size, 'x'))});
    EXPECT_TRUE(absl::IsResourceExhausted(big.status())) << big.status();
    EXPECT_TRUE(
        absl::StrContains(big.status().message(), "--max-request-bytes"))
        << big.status();
  }
}

TEST(EtcdStoreTest, FailsOverToALiveEndpoint) {
  if (!HaveEtcd()) GTEST_SKIP() << "no " << testing::kEtcdBinary;
  EtcdEnv env;
  auto first = env.OpenEtcd();  // waits for etcd to be up
  ASSERT_TRUE(first.ok()) << first.status();
  // A dead endpoint first in the list: the client moves on to the live one.
  EtcdStore::Options options;
  options.connect_timeout = absl::Seconds(10);
  auto store =
      EtcdStore::Open(absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort(),
                                   ",", env.endpoint()),
                      options);
  ASSERT_TRUE(store.ok()) << store.status();
  auto r = (*store)->Create("/failover", "x");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*first)->Get("/failover")->resource_version, *r);
}

TEST(EtcdStoreTest, LeasesKeepAndDropTheirKeys) {
  if (!HaveEtcd()) GTEST_SKIP() << "no " << testing::kEtcdBinary;
  EtcdEnv env;
  auto store = env.OpenEtcd();
  ASSERT_TRUE(store.ok()) << store.status();
  auto lease = (*store)->GrantLease(absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_NE(*lease, 0);
  Op put = Op::Put("/leased", "v", 0);
  put.lease = *lease;
  auto rev = (*store)->Txn({put, Op::Put("/plain", "v")});
  ASSERT_TRUE(rev.ok()) << rev.status();

  auto ttl = (*store)->KeepAliveOnce(*lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GT(*ttl, absl::Seconds(25));
  EXPECT_LE(*ttl, absl::Seconds(30));

  // Revoking deletes the leased key (the other stays) and ends the lease.
  ASSERT_TRUE((*store)->RevokeLease(*lease).ok());
  EXPECT_TRUE(absl::IsNotFound((*store)->Get("/leased").status()));
  EXPECT_TRUE((*store)->Get("/plain").ok());
  EXPECT_TRUE(absl::IsNotFound((*store)->KeepAliveOnce(*lease).status()));
  EXPECT_TRUE(absl::IsNotFound((*store)->RevokeLease(*lease)));
  // A put on the revoked lease: NotFound, nothing of the txn applied.
  auto late = (*store)->Txn({put, Op::Put("/plain", "w")});
  EXPECT_TRUE(absl::IsNotFound(late.status())) << late.status();
  EXPECT_EQ((*store)->Get("/plain")->value, "v");
  EXPECT_TRUE(absl::IsInvalidArgument(
      (*store)->GrantLease(absl::ZeroDuration()).status()));
}

TEST(EtcdStoreTest, ExpiredLeaseDeletesItsKey) {
  if (!HaveEtcd()) GTEST_SKIP() << "no " << testing::kEtcdBinary;
  EtcdEnv env;
  auto store = env.OpenEtcd();
  ASSERT_TRUE(store.ok()) << store.status();
  auto lease = (*store)->GrantLease(absl::Seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status();
  Op put = Op::Put("/short", "v");
  put.lease = *lease;
  ASSERT_TRUE((*store)->Txn({put}).ok());
  ASSERT_TRUE(testing::Eventually(
      [&] { return absl::IsNotFound((*store)->Get("/short").status()); },
      absl::Seconds(10)));
  EXPECT_TRUE(absl::IsNotFound((*store)->KeepAliveOnce(*lease).status()));
}

}  // namespace
}  // namespace tidal
