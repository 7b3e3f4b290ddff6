// tidald on etcd (the highly available store) instead of the embedded SQLite
// file: a real etcd server on loopback ports, a real tidald, real instances.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"
#include "e2e/test_ca.h"
#include "fakes/etcd_process.h"

namespace tidal::e2e {
namespace {

// An app of two sample-app instances whose command lines carry `marker`.
std::string TwoInstances(const std::string& marker) {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  replicas: 2
  template:
    command: [")",
                      BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", ")",
                      marker, R"("]
)");
}

std::vector<pid_t> Processes(const std::string& marker) {
  std::vector<pid_t> pids = FindProcesses(marker);
  std::sort(pids.begin(), pids.end());
  return pids;
}

bool TwoReady(Daemon& daemon) {
  auto g = daemon.Ctl({"get", "app", "web", "-o", "json"});
  return absl::StrContains(g.out, "\"readyReplicas\": 2");
}

std::string StoreFlag(const testing::EtcdProcess& etcd) {
  return "--store=etcd:" + etcd.endpoint();
}

TEST(EtcdE2ETest, AppsLiveInEtcdAndSurviveKill9) {
  if (!testing::HaveEtcd()) GTEST_SKIP() << "etcd-server is not installed";
  TempDir dir;
  testing::EtcdProcess etcd;
  ASSERT_TRUE(etcd.Open().ok()) << etcd.Log();
  std::string marker = absl::StrCat("etcd-e2e-", getpid());
  Daemon daemon(dir.path(), {StoreFlag(etcd)});
  ASSERT_TRUE(daemon.Start()) << "see " << daemon.log_path();
  auto version = daemon.Ctl({"version"});
  EXPECT_TRUE(absl::StrContains(version.out, "store etcd")) << version.out;

  std::string path = dir.path() + "/app.yaml";
  WriteFile(path, TwoInstances(marker));
  auto r = daemon.Ctl({"apply", "-f", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ready = [&] { return TwoReady(daemon); };
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

// Pointed at a wiped etcd (or another cluster: here a fresh one), tidald
// refuses to start instead of seeing no apps and stopping every instance it
// adopts; back on its own cluster it adopts them (docs/store.md).
TEST(EtcdE2ETest, AWipedClusterIsRefusedAndTheInstancesLive) {
  if (!testing::HaveEtcd()) GTEST_SKIP() << "etcd-server is not installed";
  TempDir dir;
  testing::EtcdProcess etcd, wiped;
  ASSERT_TRUE(etcd.Open().ok()) << etcd.Log();
  ASSERT_TRUE(wiped.Open().ok()) << wiped.Log();
  std::string marker = absl::StrCat("etcd-wiped-e2e-", getpid());
  Daemon daemon(dir.path(), {StoreFlag(etcd)});
  ASSERT_TRUE(daemon.Start()) << "see " << daemon.log_path();
  WriteFile(dir.path() + "/app.yaml", TwoInstances(marker));
  ASSERT_EQ(daemon.Ctl({"apply", "-f", dir.path() + "/app.yaml"}).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return TwoReady(daemon); }));
  const std::vector<pid_t> pids = Processes(marker);
  ASSERT_EQ(pids.size(), 2u);

  daemon.Kill9();  // the instances keep running
  CommandResult refused =
      e2e::Run({BuildDir() + "/src/daemon/tidald", "--data-dir=" + dir.path(),
                StoreFlag(wiped), "--listen=127.0.0.1:0",
                "--gateway-listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"},
               "", absl::Seconds(60));
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  const std::string said = refused.out + refused.err;
  EXPECT_TRUE(absl::StrContains(said, "has no id")) << said;
  EXPECT_TRUE(absl::StrContains(said, "refusing to start")) << said;
  EXPECT_EQ(Processes(marker), pids);

  ASSERT_TRUE(daemon.Start()) << "see " << daemon.log_path();
  ASSERT_TRUE(Eventually([&] { return TwoReady(daemon); }));
  EXPECT_EQ(Processes(marker), pids);

  ASSERT_EQ(daemon.Ctl({"delete", "app", "web"}).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return FindProcesses(marker).empty(); }));
  for (pid_t pid : FindProcesses(marker)) kill(pid, SIGKILL);
}

// etcd behind TLS with client certificates (docs/ha.md, "Securing etcd"):
// tidald runs on it with --etcd-cacert/--etcd-cert/--etcd-key, and without
// the client certificate it stops at once, naming the flags to check.
TEST(EtcdE2ETest, OnEtcdOverTlsWithAClientCertificate) {
  if (!testing::HaveEtcd()) GTEST_SKIP() << "etcd-server is not installed";
  if (!TestCa::Available()) GTEST_SKIP() << "no openssl command";
  TempDir dir;
  TestCa ca(dir.path(), "ca");
  ASSERT_TRUE(ca.ok()) << ca.error();
  ASSERT_TRUE(ca.Issue("etcd", "etcd", {"IP:127.0.0.1"})) << ca.error();
  ASSERT_TRUE(ca.Issue("tidald", "tidald", {}, /*client=*/true)) << ca.error();
  testing::EtcdProcess etcd(testing::EtcdProcess::Tls{
      ca.Path("etcd", ".crt"), ca.Path("etcd", ".key"), ca.cert()});
  const std::vector<std::string> tls = {
      "--etcd-cacert=" + ca.cert(), "--etcd-cert=" + ca.Path("tidald", ".crt"),
      "--etcd-key=" + ca.Path("tidald", ".key")};

  // No client certificate: refused by etcd, said plainly.
  CommandResult refused = e2e::Run(
      {BuildDir() + "/src/daemon/tidald", "--data-dir=" + dir.path() + "/x",
       StoreFlag(etcd), tls[0], "--listen=127.0.0.1:0",
       "--gateway-listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"},
      "", absl::Seconds(60));
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  const std::string said = refused.out + refused.err;
  EXPECT_TRUE(absl::StrContains(said, "cannot reach etcd at https://")) << said;
  EXPECT_TRUE(absl::StrContains(said, "--etcd-cert and --etcd-key")) << said;

  std::vector<std::string> flags = tls;
  flags.push_back(StoreFlag(etcd));
  Daemon daemon(dir.path() + "/d", flags);
  ASSERT_TRUE(daemon.Start()) << "see " << daemon.log_path();
  std::string marker = absl::StrCat("etcd-tls-e2e-", getpid());
  WriteFile(dir.path() + "/app.yaml", TwoInstances(marker));
  auto r = daemon.Ctl({"apply", "-f", dir.path() + "/app.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Eventually([&] { return TwoReady(daemon); }))
      << daemon.Ctl({"describe", "app", "web"}).out;
  ASSERT_EQ(daemon.Ctl({"delete", "app", "web"}).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return FindProcesses(marker).empty(); }));
  for (pid_t pid : FindProcesses(marker)) kill(pid, SIGKILL);
}

// More documents than etcd takes in one transaction (--max-txn-ops, 128 by
// default): the apply fails whole, says which etcd flag to raise, and is not
// a usage error (exit 1, not 2).
TEST(EtcdE2ETest, AnApplyOverEtcdsTransactionLimitSaysSo) {
  if (!testing::HaveEtcd()) GTEST_SKIP() << "etcd-server is not installed";
  TempDir dir;
  testing::EtcdProcess etcd;
  ASSERT_TRUE(etcd.Open().ok()) << etcd.Log();
  Daemon daemon(dir.path(), {StoreFlag(etcd)});
  ASSERT_TRUE(daemon.Start()) << "see " << daemon.log_path();
  std::string yaml;
  for (int i = 0; i < 129; ++i) {
    absl::StrAppend(&yaml, "---\napiVersion: tidal.dev/v1\nkind: App\n",
                    "metadata: {name: bulk", i, "}\nspec:\n  replicas: 0\n",
                    "  template:\n    command: [\"/bin/true\"]\n");
  }
  auto r = daemon.Ctl({"apply", "-f", "-"}, yaml);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "--max-txn-ops")) << r.err;
  auto listed = daemon.Ctl({"get", "apps", "-o", "name"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_FALSE(absl::StrContains(listed.out, "bulk")) << listed.out;
}

// etcd stops answering (frozen: SIGSTOP, as behind a partition): within
// seconds /readyz says so, and API calls answer at once that the store does
// not answer (exit 3) instead of hanging until tidalctl's --timeout; once
// etcd answers again, so does the API.
TEST(EtcdE2ETest, WhileEtcdDoesNotAnswerTheApiSaysSoAtOnce) {
  if (!testing::HaveEtcd()) GTEST_SKIP() << "etcd-server is not installed";
  TempDir dir;
  testing::EtcdProcess etcd;
  ASSERT_TRUE(etcd.Open().ok()) << etcd.Log();
  Daemon daemon(dir.path(), {StoreFlag(etcd)});
  ASSERT_TRUE(daemon.Start()) << "see " << daemon.log_path();
  ASSERT_EQ(daemon.Ctl({"get", "apps"}).exit_code, 0);
  HttpClient admin(daemon.admin_port(), "127.0.0.1");
  etcd.Pause();
  HttpResponse ready;
  EXPECT_TRUE(Eventually(
      [&] {
        ready = admin.Get("/readyz");
        return ready.status == 503;
      },
      absl::Seconds(20)))
      << ready.status << " " << ready.body;
  EXPECT_TRUE(absl::StrContains(ready.body, "has not answered")) << ready.body;
  const absl::Time asked = absl::Now();
  auto got = daemon.Ctl({"get", "apps", "--timeout", "30s"});
  const absl::Duration took = absl::Now() - asked;
  EXPECT_EQ(got.exit_code, 3) << got.out << got.err;
  EXPECT_TRUE(absl::StrContains(got.err, "does not answer")) << got.err;
  EXPECT_FALSE(absl::StrContains(got.err, "is it running")) << got.err;
  EXPECT_LT(took, absl::Seconds(10)) << got.err;  // not the 30 s timeout
  etcd.Resume();
  EXPECT_TRUE(Eventually(
      [&] {
        return daemon.Ctl({"get", "apps"}).exit_code == 0;
      },
      absl::Seconds(30)));
}

// With etcd every node needs the cluster's secrets key: a node without a key
// file is refused instead of making a key of its own (every instance using
// a secret failed there), and a node with another key says how many
// secrets it cannot open.
TEST(EtcdE2ETest, ANodeWithoutTheClustersSecretsKeyIsTold) {
  if (!testing::HaveEtcd()) GTEST_SKIP() << "etcd-server is not installed";
  TempDir dir;
  testing::EtcdProcess etcd;
  ASSERT_TRUE(etcd.Open().ok()) << etcd.Log();
  std::filesystem::create_directories(dir.path() + "/n1");  // for its log
  Daemon first(dir.path() + "/n1", {StoreFlag(etcd), "--node-name=n1"});
  ASSERT_TRUE(first.Start()) << "see " << first.log_path();
  auto applied = first.Ctl({"apply", "-f", "-"}, R"(apiVersion: tidal.dev/v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
)");
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  const std::string key_id = [&] {
    std::string log = ReadFile(first.log_path());
    size_t at = log.find("secrets: key ");
    return at == std::string::npos ? std::string()
                                   : log.substr(at + 13, 19);  // k1-<16 hex>
  }();
  ASSERT_EQ(key_id.size(), 19u);

  CommandResult refused = e2e::Run(
      {BuildDir() + "/src/daemon/tidald", "--data-dir=" + dir.path() + "/n2",
       StoreFlag(etcd), "--node-name=n2", "--listen=127.0.0.1:0",
       "--gateway-listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"},
      "", absl::Seconds(60));
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  const std::string said = refused.out + refused.err;
  EXPECT_TRUE(absl::StrContains(
      said, absl::StrCat("does not exist, and the store holds secrets sealed "
                         "with ",
                         key_id, " (1 secret): copy the key file")))
      << said;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/n2/secrets.key"));

  // Another key: it starts, and says what it cannot open.
  std::filesystem::create_directories(dir.path() + "/n3");
  std::filesystem::copy_file(dir.path() + "/n1/admin.token",
                             dir.path() + "/n3/admin.token");
  {
    const std::string key = dir.path() + "/n3/secrets.key";
    WriteFile(key, std::string(32, 'k'));
    std::filesystem::permissions(key, std::filesystem::perms::owner_read |
                                          std::filesystem::perms::owner_write);
  }
  Daemon third(dir.path() + "/n3", {StoreFlag(etcd), "--node-name=n3"});
  ASSERT_TRUE(third.Start()) << "see " << third.log_path();
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(
        ReadFile(third.log_path()),
        absl::StrCat(
            "1 of 1 secrets in the store are sealed with another key (", key_id,
            " (1 secret)) than this node's"));
  })) << ReadFile(third.log_path());
}

}  // namespace
}  // namespace tidal::e2e
