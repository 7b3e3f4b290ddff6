// KubeClient over TLS, as it talks to a real API server: the server's
// certificate checked against the cluster's CA (a file or PEM data), a
// client certificate (mutual TLS) from files or PEM data, and
// insecure-skip-tls-verify. The emulator speaks plain HTTP; a TLS front
// (tests/fakes/tls_proxy.py, Python's ssl module) terminates TLS before it,
// with certificates made by the openssl command for each run.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "e2e/e2e_util.h"
#include "e2e/test_ca.h"
#include "fakes/kube_emulator.h"
#include "runtime/kubernetes/kube_client.h"

namespace tidal::kube {
namespace {

using tidal::e2e::Child;
using Cmd = tidal::e2e::CommandResult;
Cmd Sh(const std::vector<std::string>& argv) { return tidal::e2e::Run(argv); }
using tidal::e2e::TempDir;
using tidal::testing::Eventually;
using tidal::testing::KubeEmulator;

using tidal::e2e::ReadFile;

class KubeTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!e2e::TestCa::Available() ||
        Sh({"/usr/bin/python3", "-c", "import ssl"}).exit_code != 0) {
      GTEST_SKIP() << "openssl or python3 is not installed";
    }
    ASSERT_TRUE(emu_.Start().ok());
    // A CA, another one, a server certificate for 127.0.0.1 and a client
    // certificate (DIR/ca.crt, other.crt, server.crt, client.crt, keys).
    e2e::TestCa ca(dir_.path(), "ca");
    ASSERT_TRUE(ca.ok()) << ca.error();
    e2e::TestCa other(dir_.path(), "other");
    ASSERT_TRUE(other.ok()) << other.error();
    ASSERT_TRUE(ca.Issue("server", "server", {"IP:127.0.0.1"})) << ca.error();
    ASSERT_TRUE(ca.Issue("client", "client", {}, /*client=*/true))
        << ca.error();
  }

  // The TLS front; with mutual TLS it asks for a client certificate of the
  // test CA.
  void StartFront(bool mutual) {
    const std::string d = dir_.path();
    std::vector<std::string> argv = {
        "/usr/bin/python3",
        std::string(TIDAL_SOURCE_DIR_DEFAULT) + "/tests/fakes/tls_proxy.py",
        "--cert",
        d + "/server.crt",
        "--key",
        d + "/server.key",
        "--target-port",
        absl::StrCat(emu_.port())};
    if (mutual) {
      argv.push_back("--client-ca");
      argv.push_back(d + "/ca.crt");
    }
    const std::string log = d + "/front.log";
    ASSERT_TRUE(front_.Start(argv, log));
    ASSERT_TRUE(Eventually([&] {
      std::string first = ReadFile(log);
      first = first.substr(0, first.find('\n'));
      return absl::SimpleAtoi(first, &port_) && port_ > 0;
    })) << ReadFile(log);
  }

  KubeConfig Config() {
    KubeConfig c;
    c.server = absl::StrCat("https://127.0.0.1:", port_);
    c.token = "emulator-token";
    return c;
  }

  absl::Status ListPods(const KubeConfig& c) {
    KubeClientOptions o;
    o.request_timeout = absl::Seconds(10);
    o.max_retries = 0;
    KubeClient client(c, o);
    return client.List(kPods, "team-a").status();
  }

  TempDir dir_;
  KubeEmulator emu_;
  Child front_;
  int port_ = 0;
};

TEST_F(KubeTlsTest, TheServerIsCheckedAgainstTheClustersCa) {
  StartFront(/*mutual=*/false);
  KubeConfig c = Config();
  c.ca_file = dir_.path() + "/ca.crt";
  EXPECT_TRUE(ListPods(c).ok()) << ListPods(c);
  // The same CA as PEM data (certificate-authority-data, decoded).
  c.ca_file.clear();
  c.ca_data = ReadFile(dir_.path() + "/ca.crt");
  EXPECT_TRUE(ListPods(c).ok()) << ListPods(c);
  // Another CA: refused, and the error says why.
  c.ca_data = ReadFile(dir_.path() + "/other.crt");
  absl::Status wrong = ListPods(c);
  EXPECT_FALSE(wrong.ok());
  EXPECT_TRUE(absl::IsUnavailable(wrong)) << wrong;
  // insecure-skip-tls-verify accepts any server.
  c.ca_data.clear();
  c.insecure_skip_tls_verify = true;
  EXPECT_TRUE(ListPods(c).ok()) << ListPods(c);
}

TEST_F(KubeTlsTest, AClientCertificateIsSentWhenTheServerAsks) {
  StartFront(/*mutual=*/true);
  KubeConfig c = Config();
  c.ca_file = dir_.path() + "/ca.crt";
  EXPECT_FALSE(ListPods(c).ok()) << "no client certificate: refused";
  c.client_cert_file = dir_.path() + "/client.crt";
  c.client_key_file = dir_.path() + "/client.key";
  EXPECT_TRUE(ListPods(c).ok()) << ListPods(c);
  // From PEM data (client-certificate-data, client-key-data).
  c.client_cert_file.clear();
  c.client_key_file.clear();
  c.client_cert_data = ReadFile(dir_.path() + "/client.crt");
  c.client_key_data = ReadFile(dir_.path() + "/client.key");
  EXPECT_TRUE(ListPods(c).ok()) << ListPods(c);
  // From an exec plugin's ExecCredential (clientCertificateData,
  // clientKeyData; the emulator's token too, as a plugin may give both).
  c.client_cert_data.clear();
  c.client_key_data.clear();
  c.token.clear();
  const std::string plugin = dir_.path() + "/cert-plugin";
  std::ofstream(plugin)
      << "#!/usr/bin/python3\nimport json\nd = '" << dir_.path()
      << "'\nprint(json.dumps({'apiVersion': "
         "'client.authentication.k8s.io/v1', 'kind': "
         "'ExecCredential', 'status': {'token': "
         "'emulator-token', 'clientCertificateData': open(d + "
         "'/client.crt').read(), 'clientKeyData': open(d + "
         "'/client.key').read()}}))\n";
  ASSERT_EQ(chmod(plugin.c_str(), 0755), 0);
  c.has_exec = true;
  c.exec.api_version = "client.authentication.k8s.io/v1";
  c.exec.command = plugin;
  c.exec.interactive_mode = "Never";
  EXPECT_TRUE(ListPods(c).ok()) << ListPods(c);
}

}  // namespace
}  // namespace tidal::kube
