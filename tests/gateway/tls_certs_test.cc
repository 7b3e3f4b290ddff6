// The HTTPS listener's certificates: which certificate a server name (SNI)
// gets, and their reload when the files change (a bad file keeps the old
// certificate). Certificates of a test CA, made by the openssl command.
#include "gateway/tls_certs.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/logging.h"
#include "e2e/e2e_util.h"
#include "e2e/test_ca.h"
#include "test_upstream.h"

namespace tidal::gateway {
namespace {

TEST(MatchServerNameTest, LongestSuffixWinsAndWildcardsCoverEveryDepth) {
  const std::vector<std::string> domains = {
      "",                         // 0: the default
      "*.apps.example.com",       // 1
      "example.com",              // 2
      "*.team.apps.example.com",  // 3
      "api.example.com",          // 4
      "*.example.org",            // 5
  };
  struct Row {
    const char* name;
    int want;
  };
  const std::vector<Row> rows = {
      {"hello.default.apps.example.com", 1},
      {"HELLO.Default.Apps.Example.COM.", 1},
      {"x.team.apps.example.com", 3},
      {"a.b.team.apps.example.com", 3},
      {"team.apps.example.com", 1},
      {"apps.example.com", 2},  // the wildcard needs a label before it
      {"example.com", 2},
      {"www.example.com", 2},
      {"api.example.com", 4},
      {"v1.api.example.com", 4},
      {"example.org", -1},  // a wildcard does not match its own suffix
      {"a.example.org", 5},
      {"badexample.com", -1},
      {"other.net", -1},
      {"", -1},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(MatchServerName(domains, row.name), row.want) << row.name;
  }
  // An exact domain wins over a wildcard of the same suffix.
  EXPECT_EQ(MatchServerName({"*.a.example", "a.example"}, "x.a.example"), 1);
  EXPECT_EQ(MatchServerName({"a.example", "*.a.example"}, "x.a.example"), 0);
}

// The subject CN of the certificate `ctx` serves.
std::string ServedCn(boost::asio::ssl::context& ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  if (cert == nullptr) return "";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
                            sizeof(cn));
  return cn;
}

class TlsCertsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!e2e::TestCa::Available()) GTEST_SKIP() << "no openssl command";
    ca_ = std::make_unique<e2e::TestCa>(dir_.path(), "ca");
    ASSERT_TRUE(ca_->ok()) << ca_->error();
    for (const char* name : {"default", "apps", "apps-v2", "api"}) {
      ASSERT_TRUE(ca_->Issue(name, name, {})) << ca_->error();
    }
  }

  GatewayTlsCert Cert(const std::string& domain, const std::string& name) {
    return {domain, ca_->Path(name, ".crt"), ca_->Path(name, ".key")};
  }

  e2e::TempDir dir_;
  std::unique_ptr<e2e::TestCa> ca_;
};

TEST_F(TlsCertsTest, ServesTheCertificateOfEachNameAndADefault) {
  auto certs =
      TlsCerts::Load({Cert("*.apps.example.com", "apps"), Cert("", "default"),
                      Cert("api.example.com", "api")},
                     GetLogger("gateway"));
  ASSERT_TRUE(certs.ok()) << certs.status();
  auto set = (*certs)->Current();
  EXPECT_EQ(ServedCn(set->initial()), "default");
  EXPECT_EQ(ServedCn(set->ForName("a.b.apps.example.com")), "apps");
  EXPECT_EQ(ServedCn(set->ForName("api.example.com")), "api");
  EXPECT_EQ(ServedCn(set->ForName("unknown.example.net")), "default");

  // Without an entry lacking a domain, the first is the default.
  auto first = TlsCerts::Load(
      {Cert("api.example.com", "api"), Cert("*.apps.example.com", "apps")},
      GetLogger("gateway"));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(ServedCn((*first)->Current()->initial()), "api");
}

TEST_F(TlsCertsTest, AKeyOfAnotherCertificateIsRefusedNamingTheFiles) {
  auto certs = TlsCerts::Load(
      {{"", ca_->Path("apps", ".crt"), ca_->Path("api", ".key")}},
      GetLogger("gateway"));
  ASSERT_FALSE(certs.ok());
  EXPECT_NE(certs.status().message().find(ca_->Path("api", ".key")),
            std::string::npos)
      << certs.status();
}

TEST_F(TlsCertsTest, ChangedFilesAreReloadedAndABadOneKeepsTheOld) {
  // The served files are copies, rewritten below.
  const std::string crt = dir_.path() + "/served.crt";
  const std::string key = dir_.path() + "/served.key";
  e2e::WriteFile(crt, e2e::ReadFile(ca_->Path("apps", ".crt")));
  e2e::WriteFile(key, e2e::ReadFile(ca_->Path("apps", ".key")));
  auto loaded =
      TlsCerts::Load({{"*.apps.example.com", crt, key}}, GetLogger("gateway"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  TlsCerts& certs = **loaded;
  auto before = certs.Current();
  EXPECT_EQ(certs.Reload(), 0);  // nothing changed
  EXPECT_EQ(certs.Current(), before);

  // A certificate whose key is not there yet: the old one stays.
  e2e::WriteFile(crt, e2e::ReadFile(ca_->Path("apps-v2", ".crt")));
  EXPECT_EQ(certs.Reload(), 0);
  EXPECT_EQ(certs.Current(), before);
  EXPECT_EQ(ServedCn(certs.Current()->ForName("a.b.apps.example.com")), "apps");
  EXPECT_EQ(certs.Reload(), 0);  // the same bad files: tried (and logged) once

  // Its key arrives: the new certificate for new connections; the old set
  // lives on for the connections that hold it.
  e2e::WriteFile(key, e2e::ReadFile(ca_->Path("apps-v2", ".key")));
  EXPECT_EQ(certs.Reload(), 1);
  EXPECT_NE(certs.Current(), before);
  EXPECT_EQ(ServedCn(certs.Current()->ForName("a.b.apps.example.com")),
            "apps-v2");
  EXPECT_EQ(ServedCn(before->ForName("a.b.apps.example.com")), "apps");

  // A file that vanishes (a rotation by rename, half-way) keeps the old.
  std::remove(key.c_str());
  EXPECT_EQ(certs.Reload(), 0);
  EXPECT_EQ(ServedCn(certs.Current()->initial()), "apps-v2");
}

// The HTTPS listener end to end in one process: the handshake by SNI, keep-
// alive over TLS, X-Forwarded-Proto: https to the instance, and the plain
// listener's redirect (curl as the client, trusting the test CA).
TEST_F(TlsCertsTest, TheHttpsListenerProxiesAndThePlainOneRedirects) {
  ASSERT_TRUE(ca_->Issue("site", "site", {"DNS:*.default.tidal.localhost"}));
  testing::TestUpstream upstream("a");
  GatewayOptions o;
  o.port = 0;
  o.threads = 2;
  o.tls_port = 0;
  o.tls_certs = {Cert("", "default"), Cert("*.tidal.localhost", "site")};
  o.https_redirect = true;
  Gateway gw(std::move(o));
  ASSERT_TRUE(gw.Start().ok());
  ASSERT_GT(gw.tls_port(), 0);
  Route route;
  route.ns = "default";
  route.app = "hello";
  route.revisions.push_back(
      {1, 100, {Endpoint{"a-1", "127.0.0.1", upstream.port()}}});
  gw.SetRoute(route);

  const std::string host = "hello.default.tidal.localhost";
  const std::string url =
      "https://" + host + ":" + std::to_string(gw.tls_port());
  // Two HTTP/1.1 requests on one connection (curl reuses it): the second
  // one proves the session reads the next request over TLS. (HTTP/2 over
  // TLS: H2GatewayTest.AlpnChoosesH2.)
  auto r =
      e2e::Run({"/usr/bin/curl", "-sS", "--http1.1", "--max-time", "10",
                "--cacert", ca_->cert(), "--resolve",
                host + ":" + std::to_string(gw.tls_port()) + ":127.0.0.1", "-w",
                " connects=%{num_connects}", url + "/echo-headers", url + "/"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("X-Forwarded-Proto: https"), std::string::npos) << r.out;
  // The instance's name, on the connection of the first request.
  EXPECT_TRUE(absl::EndsWith(r.out, " connects=1a connects=0")) << r.out;
  EXPECT_EQ(upstream.requests(), 2);

  // Plain HTTP: 308 to the HTTPS port, the instance not asked.
  auto plain = e2e::Run(
      {"/usr/bin/curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
       "%{http_code} %{redirect_url}", "-H", "Host: " + host + ":1234",
       "http://127.0.0.1:" + std::to_string(gw.port()) + "/x?y=1"});
  EXPECT_EQ(plain.out, "308 " + url + "/x?y=1") << plain.err;
  EXPECT_EQ(upstream.requests(), 2);
  // HTTP/2 in clear text is redirected too: with prior knowledge (each
  // stream gets the 308), and an Upgrade: h2c request is answered in
  // HTTP/1.1 instead of upgraded.
  for (const char* h2 : {"--http2-prior-knowledge", "--http2"}) {
    auto cleartext = e2e::Run(
        {"/usr/bin/curl", "-sS", h2, "--max-time", "10", "-o", "/dev/null",
         "-w", "%{http_code} %{redirect_url} %{http_version}", "-H",
         "Host: " + host + ":1234",
         "http://127.0.0.1:" + std::to_string(gw.port()) + "/x?y=1"});
    EXPECT_EQ(cleartext.out, "308 " + url + "/x?y=1 " +
                                 (std::string(h2) == "--http2" ? "1.1" : "2"))
        << h2 << ": " << cleartext.err;
  }
  EXPECT_EQ(upstream.requests(), 2);
  gw.Stop();
}

}  // namespace
}  // namespace tidal::gateway
