// tidald on etcd (the highly available store) instead of the embedded SQLite
// file: a real etcd server on loopback ports, a real tidald, real instances.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "e2e/e2e_util.h"

namespace tidal::e2e {
namespace {

constexpr char kEtcd[] = "/usr/bin/etcd";

TEST(EtcdE2ETest, AppsLiveInEtcdAndSurviveKill9) {
  if (access(kEtcd, X_OK) != 0) GTEST_SKIP() << "etcd-server is not installed";
  TempDir dir;
  int client = FreePort(), peer = FreePort();
  std::string client_url = absl::StrCat("http://127.0.0.1:", client);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", peer);
  Child etcd;
  ASSERT_TRUE(
      etcd.Start({kEtcd, "--name=e2e", "--data-dir=" + dir.path() + "/etcd",
                  "--listen-client-urls=" + client_url,
                  "--advertise-client-urls=" + client_url,
                  "--listen-peer-urls=" + peer_url,
                  "--initial-advertise-peer-urls=" + peer_url,
                  "--initial-cluster=e2e=" + peer_url, "--log-level=error"},
                 dir.path() + "/etcd.log"));
  std::string marker = absl::StrCat("etcd-e2e-", getpid());
  Daemon daemon(dir.path(), {absl::StrCat("--store=etcd:127.0.0.1:", client)});
  ASSERT_TRUE(daemon.Start()) << "see " << daemon.log_path();
  auto version = daemon.Ctl({"version"});
  EXPECT_TRUE(absl::StrContains(version.out, "store etcd")) << version.out;

  std::string path = dir.path() + "/app.yaml";
  WriteFile(path, absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  replicas: 2
  template:
    command: [")",
                               BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", ")",
                               marker, R"("]
)"));
  auto r = daemon.Ctl({"apply", "-f", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ready = [&] {
    auto g = daemon.Ctl({"get", "app", "web", "-o", "json"});
    return absl::StrContains(g.out, "\"readyReplicas\": 2");
  };
  ASSERT_TRUE(Eventually(ready)) << daemon.Ctl({"describe", "app", "web"}).out;
  EXPECT_EQ(FindProcesses(marker).size(), 2u);

  daemon.Kill9();
  ASSERT_TRUE(daemon.Start());
  ASSERT_TRUE(Eventually(ready));
  EXPECT_EQ(FindProcesses(marker).size(), 2u);

  ASSERT_EQ(daemon.Ctl({"delete", "app", "web"}).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return FindProcesses(marker).empty(); }));
  ASSERT_TRUE(Eventually([&] {
    return daemon.Ctl({"get", "app", "web"}).exit_code != 0;
  }));
  for (pid_t pid : FindProcesses(marker)) kill(pid, SIGKILL);
}

}  // namespace
}  // namespace tidal::e2e
