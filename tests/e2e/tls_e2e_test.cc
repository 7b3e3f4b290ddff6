// TLS end to end (docs/tls.md): tidalctl over TLS with a test CA, mutual TLS
// refusing a client without a certificate, a rotated certificate served
// without a restart, and the gateway's HTTPS listener with a certificate per
// SNI name, proxying to a running app, and its redirect from HTTP. The
// certificates are made for each run by the openssl command (TestCa).
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <memory>
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

// A TLS client connection to the gateway (no certificate check: the test is
// about timing, not names), blocking.
class TlsConn {
 public:
  TlsConn(int port, const std::string& sni)
      : ctx_(boost::asio::ssl::context::tls_client), stream_(io_, ctx_) {
    boost::system::error_code ec;
    stream_.next_layer().connect({boost::asio::ip::make_address("127.0.0.1"),
                                  static_cast<unsigned short>(port)},
                                 ec);
    if (ec) return;
    SSL_set_tlsext_host_name(stream_.native_handle(), sni.c_str());
    stream_.handshake(boost::asio::ssl::stream_base::client, ec);
    ok_ = !ec;
  }
  bool ok() const { return ok_; }
  bool Send(const std::string& bytes) {
    boost::system::error_code ec;
    boost::asio::write(stream_, boost::asio::buffer(bytes), ec);
    return !ec;
  }
  // A response's header (the sample app's /healthz body is read with it or
  // left for the next read: the test looks at the status line only).
  std::string ReadHeader() {
    boost::system::error_code ec;
    boost::asio::streambuf buf;
    boost::asio::read_until(stream_, buf, "\r\n\r\n", ec);
    if (ec) return "";
    return std::string(boost::asio::buffers_begin(buf.data()),
                       boost::asio::buffers_begin(buf.data()) + buf.size());
  }
  // Whether the gateway has closed the connection (the socket at EOF or
  // reset; the gateway closes without a close_notify).
  bool ClosedByServer() {
    char c;
    ssize_t n = recv(stream_.next_layer().native_handle(), &c, 1,
                     MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ssl::context ctx_;
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket> stream_;
  bool ok_ = false;
};

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

  // Applies the app `hello` (one sample-app instance, ready on /healthz).
  void ApplyHello(Daemon& d) {
    WriteFile(dir_.path() + "/hello.yaml",
              absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: hello
spec:
  replicas: 1
  template:
    command: [")",
                           BuildDir(),
                           R"(/examples/tidal-sample-app"]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
)"));
    auto applied = d.Ctl({"apply", "-f", dir_.path() + "/hello.yaml"});
    ASSERT_EQ(applied.exit_code, 0) << applied.err;
  }

  TempDir dir_;
  std::unique_ptr<TestCa> ca_;
  TempDir data_;
};

TEST_F(TlsE2eTest, TidalctlOverTlsAndARotatedCertificate) {
  Daemon d(data_.path(),
           {"--stop-instances-on-exit", "--tls-cert=" + Path("api", ".crt"),
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
  auto https = Sh({"/usr/bin/env", "TIDAL_CA=" + ca_->cert(),
                   BuildDir() + "/src/cli/tidalctl",
                   "--server=https://" + d.api(), "version"});
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
  ASSERT_TRUE(other.Issue("api2", "tidal-api-2",
                          {"IP:127.0.0.1", "DNS:api.tidal.test"}))
      << other.error();
  const pid_t pid = d.pid();
  // Key first, as docs/tls.md says, and the certificate only after several
  // reload intervals and the API watchdog's three probes: meanwhile the
  // previous certificate is served (the API was torn down before).
  WriteFile(Path("api", ".key"), ReadFile(other.Path("api2", ".key")));
  const absl::Time half = absl::Now();
  while (absl::Now() - half < absl::Seconds(5)) {
    auto still = d.Ctl({"version"});
    ASSERT_EQ(still.exit_code, 0) << still.err;
    absl::SleepFor(absl::Milliseconds(250));  // probing a steady state
  }
  const std::string served =
      SClient(std::stoi(d.api().substr(d.api().rfind(':') + 1)));
  EXPECT_TRUE(absl::StrContains(served, "CN = tidal-api-1")) << served;
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

  // --tls-server-name: the name checked instead of the dialled address.
  auto named = Sh({BuildDir() + "/src/cli/tidalctl", "--server=" + d.api(),
                   "--certificate-authority=" + other.cert(),
                   "--tls-server-name=api.tidal.test", "version"});
  EXPECT_EQ(named.exit_code, 0) << named.err;
  auto misnamed = Sh({BuildDir() + "/src/cli/tidalctl", "--server=" + d.api(),
                      "--certificate-authority=" + other.cert(),
                      "--tls-server-name=wrong.tidal.test", "version"});
  EXPECT_EQ(misnamed.exit_code, 3);
  EXPECT_TRUE(absl::StrContains(misnamed.err, "TLS handshake failed"))
      << misnamed.err;
}

TEST_F(TlsE2eTest, MutualTlsRejectsAClientWithoutACertificate) {
  ASSERT_TRUE(ca_->Issue("client", "ci-bot", {}, /*client=*/true))
      << ca_->error();
  Daemon d(
      data_.path(),
      {"--stop-instances-on-exit", "--tls-cert=" + Path("api", ".crt"),
       "--tls-key=" + Path("api", ".key"), "--tls-client-ca=" + ca_->cert()});
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

TEST_F(TlsE2eTest, GatewayServesHttpsForTwoNamesAndRedirectsHttp) {
  // A certificate for the apps (*.apps.test: hello.default.apps.test), one
  // for another name, and the default.
  ASSERT_TRUE(ca_->Issue("apps", "gw-apps", {"DNS:*.default.apps.test"}));
  ASSERT_TRUE(ca_->Issue("other", "gw-other", {"DNS:other.test"}));
  ASSERT_TRUE(ca_->Issue("fallback", "gw-default", {"IP:127.0.0.1"}));
  const int https_port = FreePort();
  Daemon d(data_.path(),
           {"--stop-instances-on-exit", "--domain=apps.test",
            absl::StrCat("--gateway-tls-listen=127.0.0.1:", https_port),
            "--gateway-tls-cert=*.apps.test=" + Path("apps", ".crt") + "," +
                Path("apps", ".key"),
            "--gateway-tls-cert=other.test=" + Path("other", ".crt") + "," +
                Path("other", ".key"),
            "--gateway-tls-cert=" + Path("fallback", ".crt") + "," +
                Path("fallback", ".key"),
            "--gateway-https-redirect", "--tls-reload-interval=1s"});
  ASSERT_TRUE(d.Start());
  ASSERT_NO_FATAL_FAILURE(ApplyHello(d));

  // HTTPS to the app, its name checked against the test CA by curl.
  const std::string host = "hello.default.apps.test";
  auto curl = [&](const std::string& name, const std::string& path) {
    return Sh({"/usr/bin/curl", "-sS", "--max-time", "10", "--cacert",
               ca_->cert(), "--resolve",
               absl::StrCat(name, ":", https_port, ":127.0.0.1"), "-o",
               "/dev/null", "-w", "%{http_code}",
               absl::StrCat("https://", name, ":", https_port, path)});
  };
  EXPECT_TRUE(Eventually([&] { return curl(host, "/").out == "200"; },
                         absl::Seconds(60)))
      << curl(host, "/").err;

  // Each name gets its own certificate (SNI); no name, the default.
  EXPECT_TRUE(absl::StrContains(SClient(https_port, host), "CN = gw-apps"));
  EXPECT_TRUE(
      absl::StrContains(SClient(https_port, "other.test"), "CN = gw-other"));
  EXPECT_TRUE(absl::StrContains(SClient(https_port), "CN = gw-default"));
  // other.test has a certificate but no app: the gateway's 404, over TLS.
  EXPECT_EQ(curl("other.test", "/").out, "404");

  // The plain listener redirects to HTTPS, path and query kept.
  auto redirected = HttpGet(d.gateway_port(), host, "/stats?x=1");
  EXPECT_EQ(redirected.status, 308);
  EXPECT_EQ(redirected.headers["location"],
            absl::StrCat("https://", host, ":", https_port, "/stats?x=1"));
  // The app's URL is the HTTPS one: the HTTP URL only redirects.
  auto url = d.Ctl({"get", "app", "hello", "-o", "jsonpath={.status.url}"});
  EXPECT_EQ(url.out, absl::StrCat("https://", host, ":", https_port))
      << url.err;

  // A rotated certificate reaches new connections without a restart.
  ASSERT_TRUE(ca_->Issue("other2", "gw-other-2", {"DNS:other.test"}));
  WriteFile(Path("other", ".key"), ReadFile(Path("other2", ".key")));
  WriteFile(Path("other", ".crt"), ReadFile(Path("other2", ".crt")));
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(SClient(https_port, "other.test"),
                             "CN = gw-other-2");
  }));
  EXPECT_TRUE(absl::StrContains(SClient(https_port, host), "CN = gw-apps"));
  EXPECT_EQ(curl(host, "/").out, "200");
}

TEST_F(TlsE2eTest, KeptAliveHttpsConnectionsAreIdleAndTheirHeadersTimed) {
  // Over TLS as in clear text: a kept-alive connection waits for its next
  // request as an idle one (counted, evicted past the idle cap), and once
  // that request's first byte is there its header has the header timeout
  // (1 s here), not the idle timeout (60 s) that a slowloris would hide in.
  ASSERT_TRUE(ca_->Issue("apps", "gw-apps", {"DNS:*.default.apps.test"}));
  const int https_port = FreePort();
  Daemon d(data_.path(),
           {"--stop-instances-on-exit", "--domain=apps.test",
            absl::StrCat("--gateway-tls-listen=127.0.0.1:", https_port),
            "--gateway-tls-cert=" + Path("apps", ".crt") + "," +
                Path("apps", ".key"),
            "--gateway-header-timeout=1s", "--gateway-idle-timeout=60s",
            "--gateway-max-idle-connections=2"});
  ASSERT_TRUE(d.Start());
  ASSERT_NO_FATAL_FAILURE(ApplyHello(d));
  const std::string host = "hello.default.apps.test";
  const std::string get =
      absl::StrCat("GET /healthz HTTP/1.1\r\nHost: ", host, "\r\n\r\n");
  // One request answered on a fresh connection; the connection kept.
  auto served = [&](TlsConn* c) {
    return c->ok() && c->Send(get) &&
           absl::StartsWith(c->ReadHeader(), "HTTP/1.1 200 ");
  };
  ASSERT_TRUE(Eventually(
      [&] {
        TlsConn c(https_port, host);
        return served(&c);
      },
      absl::Seconds(60)));

  // A second header trickled a byte at a time, every 100 ms.
  TlsConn slow(https_port, host);
  ASSERT_TRUE(served(&slow));
  ASSERT_TRUE(slow.Send(
      absl::StrCat("GET / HTTP/1.1\r\nHost: ", host, "\r\nX-Slow: ")));
  const absl::Time start = absl::Now();
  absl::Time last;
  EXPECT_TRUE(Eventually(
      [&] {
        if (slow.ClosedByServer()) return true;
        if (absl::Now() - last >= absl::Milliseconds(100)) {
          last = absl::Now();
          if (!slow.Send("a")) return true;
        }
        return false;
      },
      absl::Seconds(30)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));

  // Two kept-alive connections waiting for their next request are idle.
  auto metric = [&](const std::string& name) {
    auto m = HttpGet(d.admin_port(), "localhost", "/metrics");
    return MetricValue(m.body, name);
  };
  TlsConn a(https_port, host), b(https_port, host);
  ASSERT_TRUE(served(&a));
  ASSERT_TRUE(served(&b));
  EXPECT_TRUE(
      Eventually([&] { return metric("tidal_gateway_idle_connections") == 2; },
                 absl::Seconds(20)));
  // A third with a cap of two: the longest idle one of the new
  // connection's gateway thread (or the next thread's) makes room.
  TlsConn c(https_port, host);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(
      Eventually([&] { return a.ClosedByServer() || b.ClosedByServer(); },
                 absl::Seconds(20)));
  EXPECT_EQ(metric("tidal_gateway_idle_connections_closed_total"), 1);
  EXPECT_TRUE(served(&c));
  EXPECT_FALSE(a.ClosedByServer() && b.ClosedByServer());
}

}  // namespace
}  // namespace tidal::e2e
