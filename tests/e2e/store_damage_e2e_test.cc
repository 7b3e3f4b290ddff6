// A real tidald and tidalctl against damaged and full stores: tidald refuses
// a damaged store and says how to recover; --store-check, --store-backup and
// --store-restore bring it back; one undecodable app is shown as damaged
// while the rest are served; a full data directory is "the data directory is
// full" (tidalctl exit 5) and /readyz says so until space is freed.

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

constexpr int kApps = 30;

std::string AppsYaml(int first, int count) {
  std::string y;
  for (int i = first; i < first + count; ++i) {
    absl::StrAppend(&y, "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n",
                    "  name: app", i, "\nspec:\n  replicas: 0\n  template:\n",
                    "    command: [\"sleep\", \"1000\"]\n---\n");
  }
  return y;
}

std::string Tidald() { return BuildDir() + "/src/daemon/tidald"; }

// Runs tidald with `args` to completion (a store command, or a start that is
// expected to fail).
CommandResult TidaldRun(const std::string& data_dir,
                        std::vector<std::string> args) {
  std::vector<std::string> argv = {
      Tidald(), "--data-dir=" + data_dir,
      "--listen=127.0.0.1:" + std::to_string(FreePort()),
      "--gateway-listen=127.0.0.1:" + std::to_string(FreePort()),
      "--admin-listen=127.0.0.1:" + std::to_string(FreePort())};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv, "", absl::Seconds(60));
}

void FlipByte(const std::string& path, int64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekg(offset);
  char c = 0;
  f.read(&c, 1);
  c ^= 0x5a;
  f.seekp(offset);
  f.write(&c, 1);
}

int ListedApps(Daemon& d) {
  auto r = d.Ctl({"get", "apps", "-o", "name"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  int n = 0;
  for (char c : r.out) n += c == '\n';
  return n;
}

TEST(StoreDamageE2E, DamagedWalIsRefusedThenRestoredFromAnOnlineBackup) {
  TempDir dir;
  const std::string backup = dir.path() + "/backup.db";
  const std::string data = dir.path() + "/data";
  std::filesystem::create_directories(data);
  {
    Daemon d(data);
    ASSERT_TRUE(d.Start());
    ASSERT_EQ(d.Ctl({"apply", "-f", "-"}, AppsYaml(0, kApps)).exit_code, 0);
    // Online backup and check while tidald runs.
    auto b = TidaldRun(data, {"--store-backup", backup});
    ASSERT_EQ(b.exit_code, 0) << b.out << b.err;
    EXPECT_TRUE(absl::StrContains(b.out, "(verified)")) << b.out;
    auto c = TidaldRun(data, {"--store-check"});
    EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
    EXPECT_TRUE(absl::StrContains(c.out, "result:     healthy")) << c.out;
    // One app at a time, so the log holds many commits.
    for (int i = kApps; i < kApps + 10; ++i)
      ASSERT_EQ(d.Ctl({"apply", "-f", "-"}, AppsYaml(i, 1)).exit_code, 0);
    ASSERT_EQ(ListedApps(d), kApps + 10);
    d.Kill9();
  }
  const std::string wal = data + "/tidal.db-wal";
  ASSERT_GT(std::filesystem::file_size(wal), 20u * 4120);
  FlipByte(wal, 32 + 4 * 4120 + 24 + 77);

  auto start = TidaldRun(data, {});
  EXPECT_EQ(start.exit_code, 1);
  const std::string said = start.out + start.err;
  EXPECT_TRUE(absl::StrContains(said, "/tidal.db is damaged: the write-ahead"))
      << said;
  EXPECT_TRUE(absl::StrContains(said, "--store-check")) << said;
  EXPECT_TRUE(absl::StrContains(said, "--store-restore")) << said;

  auto check = TidaldRun(data, {"--store-check"});
  EXPECT_EQ(check.exit_code, 1) << check.out;
  EXPECT_TRUE(absl::StrContains(check.out, "DAMAGED:")) << check.out;

  auto restore = TidaldRun(data, {"--store-restore", backup});
  ASSERT_EQ(restore.exit_code, 0) << restore.out << restore.err;
  EXPECT_TRUE(absl::StrContains(restore.out, "kept as")) << restore.out;

  Daemon d(data);
  ASSERT_TRUE(d.Start());
  EXPECT_EQ(ListedApps(d), kApps);
  // A restore refuses while tidald runs.
  auto busy = TidaldRun(data, {"--store-restore", backup});
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(busy.out, "stop it")) << busy.out;
}

TEST(StoreDamageE2E, EmptiedDatabaseIsRefusedNotStartedEmpty) {
  TempDir dir;
  {
    Daemon d(dir.path());
    ASSERT_TRUE(d.Start());
    ASSERT_EQ(d.Ctl({"apply", "-f", "-"}, AppsYaml(0, 3)).exit_code, 0);
    ASSERT_TRUE(d.Stop());
  }
  std::filesystem::resize_file(dir.path() + "/tidal.db", 0);
  auto start = TidaldRun(dir.path(), {});
  EXPECT_EQ(start.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(start.out + start.err, "empty (0 bytes)"))
      << start.out << start.err;
}

TEST(StoreDamageE2E, OneUndecodableAppIsShownDamagedAndTheRestServed) {
  TempDir dir;
  {
    Daemon d(dir.path());
    ASSERT_TRUE(d.Start());
    ASSERT_EQ(d.Ctl({"apply", "-f", "-"}, AppsYaml(0, 5)).exit_code, 0);
    ASSERT_TRUE(d.Stop());
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path() + "/tidal.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "UPDATE kv SET value = x'ffffff01' WHERE key = "
                           "CAST('/apps/default/app2' AS BLOB)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }
  auto check = TidaldRun(dir.path(), {"--store-check"});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(check.out, "BAD VALUE:  /apps/default/app2"))
      << check.out;

  Daemon d(dir.path());
  ASSERT_TRUE(d.Start());
  auto get = d.Ctl({"get", "apps"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(absl::StrContains(get.out, absl::StrCat("app", i))) << get.out;
  EXPECT_TRUE(absl::StrContains(get.out, "StoreDamaged")) << get.out;
  auto one = d.Ctl({"get", "app", "app2"});
  EXPECT_EQ(one.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(one.err, "is damaged in the store")) << one.err;
  HttpClient admin(d.admin_port(), "127.0.0.1");
  EXPECT_EQ(admin.Get("/readyz").status, 200);
  // Recovery for one app: delete it, apply it again.
  auto del = d.Ctl({"delete", "app", "app2"});
  EXPECT_EQ(del.exit_code, 0) << del.err;
  auto again = d.Ctl({"apply", "-f", "-"}, AppsYaml(2, 1));
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(absl::StrContains(again.out, "created")) << again.out;
}

TEST(StoreDamageE2E, FullDataDirectoryIsReportedAsSuchUntilSpaceIsFreed) {
  TempDir dir;
  const std::string mnt = dir.path() + "/mnt";
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=4M") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs at " << mnt << " ("
                 << std::strerror(errno) << "); needs root";
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string data = mnt + "/data";
  std::filesystem::create_directories(data);
  Daemon d(data);
  ASSERT_TRUE(d.Start());
  ASSERT_EQ(d.Ctl({"apply", "-f", "-"}, AppsYaml(0, 2)).exit_code, 0);
  const std::string filler = mnt + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    std::string block(64 << 10, 'z');
    while (out.write(block.data(), block.size())) {
    }
  }
  auto apply = d.Ctl({"apply", "-f", "-"}, AppsYaml(2, kApps));
  EXPECT_EQ(apply.exit_code, 5) << apply.out << apply.err;
  EXPECT_TRUE(absl::StrContains(
      apply.err, absl::StrCat("the data directory is full: ", data)))
      << apply.err;
  EXPECT_FALSE(absl::StrContains(apply.err, "cannot reach")) << apply.err;
  HttpClient admin(d.admin_port(), "127.0.0.1");
  // /readyz answers from a check made every second.
  HttpResponse ready;
  EXPECT_TRUE(Eventually(
      [&] {
        ready = admin.Get("/readyz");
        return ready.status == 503;
      },
      absl::Seconds(10)));
  EXPECT_TRUE(absl::StrContains(ready.body, "the data directory is full"))
      << ready.body;
  EXPECT_EQ(ListedApps(d), 2);  // reads go on

  std::filesystem::remove(filler);
  EXPECT_TRUE(Eventually([&] { return admin.Get("/readyz").status == 200; },
                         absl::Seconds(10)));
  auto later = d.Ctl({"apply", "-f", "-"}, AppsYaml(2, kApps));
  EXPECT_EQ(later.exit_code, 0) << later.err;
  EXPECT_EQ(ListedApps(d), kApps + 2);
}

}  // namespace
}  // namespace tidal::e2e
