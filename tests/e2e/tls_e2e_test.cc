// TLS end to end (docs/tls.md): tidalctl over TLS with a test CA, mutual TLS
// refusing a client without a certificate, a rotated certificate served
// without a restart, and the gateway's HTTPS listener with a certificate per
// SNI name, proxying to a running app, and its redirect from HTTP. The
// certificates are made for each run by the openssl command (TestCa).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"
#include "e2e/test_ca.h"

namespace tidal::e2e {
namespace {

// A command (gtest's Test::Run hides e2e::Run inside a test).
CommandResult Sh(const std::vector<std::string>& argv,
                 const std::string& input = "",
                 absl::Duration timeout = absl::Seconds(60)) {
  return Run(argv, input, timeout);
}

class TlsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestCa::Available()) GTEST_SKIP() << "openssl is not installed";
    ca_ = std::make_unique<TestCa>(dir_.path(), "ca");
    ASSERT_TRUE(ca_->ok()) << ca_->error();
    // The API's certificate: for 127.0.0.1, where the tests reach it.
    ASSERT_TRUE(ca_->Issue("api", "tidal-api-1", {"IP:127.0.0.1"}))
        << ca_->error();
  }

  std::string Path(const std::string& name, const std::string& ext) const {
    return ca_->Path(name, ext);
  }

  // `openssl s_client` to 127.0.0.1:port with SNI `name` (none if empty):
  // its output (the peer's certificate's subject among it).
  static std::string SClient(int port, const std::string& name = "") {
    std::vector<std::string> argv = {"/usr/bin/openssl", "s_client", "-connect",
                                     absl::StrCat("127.0.0.1:", port)};
    if (!name.empty()) {
      argv.push_back("-servername");
      argv.push_back(name);
    }
    CommandResult r = Sh(argv, "", absl::Seconds(20));
    return r.out + r.err;
  }

  TempDir dir_;
  std::unique_ptr<TestCa> ca_;
  TempDir data_;
};

TEST_F(TlsE2eTest, TidalctlOverTlsAndARotatedCertificate) {
  Daemon d(data_.path(),
           {"--tls-cert=" + Path("api", ".crt"),
            "--tls-key=" + Path("api", ".key"), "--tls-reload-interval=1s"});
  d.set_ctl_flags({"--certificate-authority=" + ca_->cert()});
  ASSERT_TRUE(d.Start());  // tidalctl version over TLS

  auto apps = d.Ctl({"get", "apps"});
  EXPECT_EQ(apps.exit_code, 0) << apps.err;

  // /readyz: tidald's own probe of its API speaks TLS too.
  EXPECT_TRUE(Eventually([&] {
    return HttpGet(d.admin_port(), "127.0.0.1", "/readyz").status == 200;
  }));

  // https:// in --server and the CA from the environment work as well.
  auto https =
      Sh({BuildDir() + "/src/cli/tidalctl", "--server=https://" + d.api(),
          "--certificate-authority=" + ca_->cert(), "version"});
  EXPECT_EQ(https.exit_code, 0) << https.err;

  // A client that trusts another CA is told why it cannot connect.
  TestCa other(dir_.path(), "other-ca");
  ASSERT_TRUE(other.ok()) << other.error();
  auto untrusted = Sh({BuildDir() + "/src/cli/tidalctl", "--server=" + d.api(),
                       "--certificate-authority=" + other.cert(), "version"});
  EXPECT_EQ(untrusted.exit_code, 3);
  EXPECT_TRUE(absl::StrContains(untrusted.err, "TLS handshake failed"))
      << untrusted.err;
  // A client without TLS gets no answer from a TLS listener.
  auto plain =
      Sh({BuildDir() + "/src/cli/tidalctl", "--server=" + d.api(), "version"});
  EXPECT_EQ(plain.exit_code, 3) << plain.err;
  EXPECT_TRUE(absl::StrContains(plain.err, "require TLS")) << plain.err;

  // Rotation: a new certificate from another CA, with another name,
  // written over the served files. New connections get it without a
  // restart: a client that trusts only the new CA gets through.
  ASSERT_TRUE(other.Issue("api2", "tidal-api-2", {"IP:127.0.0.1"}))
      << other.error();
  const pid_t pid = d.pid();
  WriteFile(Path("api", ".key"), ReadFile(other.Path("api2", ".key")));
  WriteFile(Path("api", ".crt"), ReadFile(other.Path("api2", ".crt")));
  EXPECT_TRUE(Eventually([&] {
    return Sh({BuildDir() + "/src/cli/tidalctl", "--server=" + d.api(),
               "--certificate-authority=" + other.cert(), "version"})
               .exit_code == 0;
  }));
  EXPECT_TRUE(absl::StrContains(
      SClient(std::stoi(d.api().substr(d.api().rfind(':') + 1))),
      "CN = tidal-api-2"));
  EXPECT_EQ(d.pid(), pid);
  EXPECT_TRUE(d.Running());
}

TEST_F(TlsE2eTest, MutualTlsRejectsAClientWithoutACertificate) {
  ASSERT_TRUE(ca_->Issue("client", "ci-bot", {}, /*client=*/true))
      << ca_->error();
  Daemon d(data_.path(), {"--tls-cert=" + Path("api", ".crt"),
                          "--tls-key=" + Path("api", ".key"),
                          "--tls-client-ca=" + ca_->cert()});
  d.set_ctl_flags({"--certificate-authority=" + ca_->cert(),
                   "--client-certificate=" + Path("client", ".crt"),
                   "--client-key=" + Path("client", ".key")});
  ASSERT_TRUE(d.Start());
  auto apps = d.Ctl({"get", "apps"});
  EXPECT_EQ(apps.exit_code, 0) << apps.err;

  auto anonymous =
      Sh({BuildDir() + "/src/cli/tidalctl", "--server=" + d.api(),
          "--certificate-authority=" + ca_->cert(), "get", "apps"});
  EXPECT_EQ(anonymous.exit_code, 3);
  EXPECT_TRUE(absl::StrContains(anonymous.err, "client certificate"))
      << anonymous.err;

  // A certificate of another CA is refused as well.
  TestCa other(dir_.path(), "other-ca");
  ASSERT_TRUE(other.ok()) << other.error();
  ASSERT_TRUE(other.Issue("stranger", "stranger", {}, /*client=*/true));
  auto stranger =
      Sh({BuildDir() + "/src/cli/tidalctl", "--server=" + d.api(),
          "--certificate-authority=" + ca_->cert(),
          "--client-certificate=" + other.Path("stranger", ".crt"),
          "--client-key=" + other.Path("stranger", ".key"), "version"});
  EXPECT_EQ(stranger.exit_code, 3) << stranger.err;
  EXPECT_TRUE(absl::StrContains(stranger.err, "refused the client"))
      << stranger.err;

  // /readyz: tidald's probe needs no client certificate.
  EXPECT_TRUE(Eventually([&] {
    return HttpGet(d.admin_port(), "127.0.0.1", "/readyz").status == 200;
  }));
}

TEST_F(TlsE2eTest, BadFilesStopTidaldNamingTheFlag) {
  ASSERT_TRUE(ca_->Issue("other", "other", {"IP:127.0.0.1"}));
  auto tidald = [&](const std::string& cert, const std::string& key) {
    return Sh({BuildDir() + "/src/daemon/tidald", "--data-dir=" + data_.path(),
               "--listen=127.0.0.1:0", "--gateway-listen=127.0.0.1:0",
               "--admin-listen=127.0.0.1:0", "--tls-cert=" + cert,
               "--tls-key=" + key});
  };
  auto mismatch = tidald(Path("api", ".crt"), Path("other", ".key"));
  EXPECT_EQ(mismatch.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(
      mismatch.out + mismatch.err,
      "--tls-key: " + Path("other", ".key") + ": does not match"))
      << mismatch.out << mismatch.err;
  auto missing = tidald(Path("nothing", ".crt"), Path("api", ".key"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(missing.out + missing.err,
                                "--tls-cert: " + Path("nothing", ".crt")))
      << missing.out << missing.err;
}

}  // namespace
}  // namespace tidal::e2e
