// End-to-end tests of tidald running out of file descriptors (issue 17,
// item 3): real tidald under `prlimit --nofile=256`, a real slow sample app,
// and hundreds of gateway clients that hang up. The API must keep answering
// (the gateway's connection budget), or answer again soon after the clients
// go (accept loops that survive EMFILE, the API server restarted when its
// listener has stopped), and /readyz must not say ready while the API does
// not answer.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

constexpr int kNoFile = 256;

int CountFds(pid_t pid) {
  std::error_code ec;
  int n = 0;
  for (auto it = std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// A raw client connection that sent a request and waits (or hangs up).
int OpenClient(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      write(fd, request.data(), request.size()) !=
          static_cast<ssize_t>(request.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

double Metric(const std::string& text, const std::string& name) {
  return MetricValue(text, name);
}

class FdExhaustionE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    // This process holds hundreds of client sockets.
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    marker_ = absl::StrCat(
        "e2e-fd-", getpid(), "-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    for (int fd : clients_) close(fd);
    if (tidald_.Running()) {
      tidald_.Signal(SIGTERM);
      if (tidald_.Wait(absl::Seconds(15)) == -1) {
        tidald_.Signal(SIGKILL);
        tidald_.Wait(absl::Seconds(5));
      }
    }
    for (pid_t pid : FindProcesses(marker_)) kill(pid, SIGKILL);
  }

  // tidald with at most kNoFile descriptors (soft and hard).
  void StartDaemon(std::vector<std::string> flags = {}) {
    api_port_ = FreePort();
    gateway_port_ = FreePort();
    admin_port_ = FreePort();
    log_path_ = dir_.path() + "/tidald.log";
    std::vector<std::string> argv = {
        "/usr/bin/prlimit",
        absl::StrCat("--nofile=", kNoFile, ":", kNoFile),
        BuildDir() + "/src/daemon/tidald",
        "--data-dir=" + dir_.path(),
        absl::StrCat("--listen=127.0.0.1:", api_port_),
        absl::StrCat("--gateway-listen=127.0.0.1:", gateway_port_),
        absl::StrCat("--admin-listen=127.0.0.1:", admin_port_),
        "--gateway-threads=2",
        "--auth=none"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    ASSERT_TRUE(tidald_.Start(argv, log_path_));
    ASSERT_TRUE(Eventually([&] { return ApiAnswers(); }, absl::Seconds(30)))
        << "tidald did not come up; see " << log_path_;
  }

  CommandResult Ctl(const std::vector<std::string>& args,
                    absl::Duration timeout = absl::Seconds(20)) {
    std::vector<std::string> argv = {
        BuildDir() + "/src/cli/tidalctl",
        absl::StrCat("--server=127.0.0.1:", api_port_), "--timeout=3s"};
    argv.insert(argv.end(), args.begin(), args.end());
    return e2e::Run(argv, "", timeout);
  }
  bool ApiAnswers() { return Ctl({"version"}).exit_code == 0; }
  int Readyz() {
    return HttpGet(admin_port_, "localhost", "/readyz", absl::Seconds(2))
        .status;
  }
  std::string Metrics() {
    return HttpGet(admin_port_, "localhost", "/metrics", absl::Seconds(5)).body;
  }

  // A slow app with one instance, answering through the gateway.
  void DeploySlowApp() {
    std::string yaml = absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: slow
spec:
  replicas: 1
  template:
    command: [")",
                                    BuildDir(),
                                    R"(/examples/tidal-sample-app"]
    args: ["--version", ")",
                                    marker_, R"(", "--threads", "4"]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
)");
    std::string path = dir_.path() + "/slow.yaml";
    WriteFile(path, yaml);
    auto r = Ctl({"apply", "-f", path});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(Eventually(
        [&] {
          return HttpGet(gateway_port_, AppHost("slow"), "/", absl::Seconds(2))
                     .status == 200;
        },
        absl::Seconds(60)));
  }

  // Opens `n` clients that each ask for a response 30 s away.
  void OpenSlowClients(int n) {
    std::string req = absl::StrCat(
        "GET /?latency=30s HTTP/1.1\r\nHost: ", AppHost("slow"), "\r\n\r\n");
    for (int i = 0; i < n; ++i) {
      int fd = OpenClient(gateway_port_, req);
      if (fd >= 0) clients_.push_back(fd);
    }
  }
  // Every client hangs up (half of them with a reset).
  void HangUp() {
    for (size_t i = 0; i < clients_.size(); ++i) {
      if (i % 2 == 0) {
        struct linger l = {1, 0};
        setsockopt(clients_[i], SOL_SOCKET, SO_LINGER, &l, sizeof(l));
      }
      close(clients_[i]);
    }
    clients_.clear();
  }

  TempDir dir_;
  std::string marker_;
  Child tidald_;
  std::string log_path_;
  int api_port_ = 0, gateway_port_ = 0, admin_port_ = 0;
  std::vector<int> clients_;
};

// With the default budget the gateway refuses connections before it takes
// the descriptors the API needs, and hung-up clients free their instance
// connections at once.
TEST_F(FdExhaustionE2ETest, HungUpClientsOfASlowAppDoNotTakeTheApiDown) {
  StartDaemon();
  DeploySlowApp();
  pid_t pid = tidald_.pid();
  int baseline = CountFds(pid);
  OpenSlowClients(300);  // 600 descriptors' worth against a limit of 256
  ASSERT_TRUE(Eventually([&] {
    return Metric(Metrics(), "tidal_gateway_connections_refused_total") > 0;
  }));
  EXPECT_LT(CountFds(pid), kNoFile);
  auto apps = Ctl({"get", "apps"});
  EXPECT_EQ(apps.exit_code, 0) << apps.err;
  EXPECT_EQ(Readyz(), 200);
  absl::Time hung_up = absl::Now();
  HangUp();
  // The gateway closes each upstream connection when its client goes, not
  // at the 60 s response timeout.
  ASSERT_TRUE(Eventually([&] { return CountFds(pid) <= baseline + 8; },
                         absl::Seconds(10)))
      << CountFds(pid) << " descriptors open, " << baseline << " before";
  EXPECT_LT(absl::Now() - hung_up, absl::Seconds(5));
  EXPECT_GT(Metric(Metrics(), "tidal_gateway_client_closed_total"), 0);
  EXPECT_EQ(Ctl({"get", "apps"}).exit_code, 0);
  EXPECT_EQ(HttpGet(gateway_port_, AppHost("slow"), "/").status, 200);
}

// Without a budget the descriptors run out: gRPC's listener fails accept4
// with EMFILE and (gRPC 1.51) never polls again. Once the clients go, the
// API must answer again within a deadline, and /readyz must not say ready
// while it does not.
TEST_F(FdExhaustionE2ETest, TheApiAnswersAgainAfterDescriptorsRunOut) {
  StartDaemon({"--gateway-max-connections=100000"});
  DeploySlowApp();
  pid_t pid = tidald_.pid();
  OpenSlowClients(200);
  ASSERT_TRUE(Eventually([&] { return CountFds(pid) >= kNoFile - 2; },
                         absl::Seconds(20)))
      << CountFds(pid) << " descriptors open";
  // Exhausted. Whether a new API connection is accepted now depends on who
  // gets the next free descriptor first; what must hold is that /readyz
  // does not say ready while the API does not answer (it probes the API
  // every second, so a verdict may be up to one probe period old).
  const absl::Duration kProbeSlack = absl::Milliseconds(1500);
  absl::Time api_down_since = absl::InfiniteFuture();
  int lies = 0, truthful_not_ready = 0;
  auto poll = [&] {
    int ready = Readyz();
    bool api = ApiAnswers();
    absl::Time now = absl::Now();
    if (api) {
      api_down_since = absl::InfiniteFuture();
    } else if (api_down_since == absl::InfiniteFuture()) {
      api_down_since = now;
    }
    if (ready == 200 && !api && now - api_down_since > kProbeSlack) ++lies;
    if (ready != 200 && !api) ++truthful_not_ready;
    return ready == 200 && api;
  };
  for (int i = 0; i < 3; ++i) poll();
  HangUp();
  absl::Time hung_up = absl::Now();
  // Recovery: poll both until /readyz says ready and the API answers.
  absl::Time deadline = absl::Now() + absl::Seconds(40);
  bool recovered = false;
  while (absl::Now() < deadline) {
    if (poll()) {
      recovered = true;
      break;
    }
  }
  ASSERT_TRUE(recovered) << "the API did not answer again within 40 s; see "
                         << log_path_;
  EXPECT_EQ(lies, 0) << "/readyz said ready while the API did not answer";
  printf(
      "the API answered again %.1f s after the clients hung up; /readyz said "
      "503 while it did not answer in %d polls\n",
      absl::ToDoubleSeconds(absl::Now() - hung_up), truthful_not_ready);
  EXPECT_EQ(Ctl({"get", "apps"}).exit_code, 0);
  EXPECT_EQ(HttpGet(gateway_port_, AppHost("slow"), "/").status, 200);
  EXPECT_GT(Metric(Metrics(), "tidal_gateway_client_closed_total"), 0);
}

}  // namespace
}  // namespace tidal::e2e
