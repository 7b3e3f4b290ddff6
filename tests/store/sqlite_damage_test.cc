// A damaged SQLite store is refused or detected, never served as if it held
// less data: flipped WAL bytes, a 0-byte or tableless database, a missing
// identity record, random byte flips, corruption found at run time; and a
// full disk is ResourceExhausted naming the data directory.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "store/sqlite_store.h"

namespace tidal {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tidal-damage-XXXXXX")
            .string();
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr int kApps = 30;

std::string AppKey(int i) { return absl::StrCat("/apps/default/app", 100 + i); }

// Writes kApps keys, one txn each, in a child process that then exits
// without closing the store (as kill -9 would): the WAL stays un-checkpointed.
void WriteAndCrash(const std::string& path) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto store = SqliteStore::Open(path);
    if (!store.ok()) _exit(2);
    for (int i = 0; i < kApps; ++i) {
      if (!(*store)->Create(AppKey(i), std::string(300, 'a' + i % 26)).ok())
        _exit(3);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// Writes kApps keys and closes the store (everything checkpointed).
void WriteAndClose(const std::string& path) {
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  for (int i = 0; i < kApps; ++i)
    ASSERT_TRUE((*store)->Create(AppKey(i), std::string(300, 'x')).ok());
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
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

void Sql(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

// Asserts Open refuses `path` as damaged, with `what` in the message.
void ExpectDamaged(const std::string& path, const std::string& what) {
  auto store = SqliteStore::Open(path);
  ASSERT_FALSE(store.ok()) << "opened a damaged store";
  EXPECT_TRUE(absl::IsDataLoss(store.status())) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(),
                                absl::StrCat("store ", path, " is damaged")))
      << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), what))
      << store.status();
  auto report = SqliteStore::Check(path);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_FALSE(report->problems.empty());
}

TEST(SqliteDamageTest, NewStoreHasAnIdentityThatSurvivesReopen) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  std::string id;
  {
    auto store = SqliteStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    id = (*store)->store_id();
    EXPECT_EQ(id.size(), 32u);
    EXPECT_TRUE((*store)->Health().ok());
  }
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->store_id(), id);
  EXPECT_FALSE(std::filesystem::exists(path + ".new"));
}

TEST(SqliteDamageTest, CrashedStoreWithSoundWalOpensWithEverything) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndCrash(path);
  ASSERT_GT(std::filesystem::file_size(path + "-wal"), 0u);
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto list = (*store)->List("/apps/");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->items.size(), static_cast<size_t>(kApps));
}

TEST(SqliteDamageTest, FlippedWalBytesAreRefusedAndTheLogIsKept) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndCrash(path);
  const std::string wal = path + "-wal";
  // A byte in the page data of a frame a few transactions in.
  FlipByte(wal, 32 + 6 * (24 + 4096) + 24 + 100);
  const std::string before = ReadAll(wal);
  ExpectDamaged(path, "write-ahead log");
  // The evidence is left as it was (no checkpoint folded it away).
  EXPECT_EQ(ReadAll(wal), before);
  auto store = SqliteStore::Open(path);
  EXPECT_TRUE(
      absl::StrContains(store.status().message(), "committed transactions"))
      << store.status();
}

TEST(SqliteDamageTest, FlippedWalHeaderIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndCrash(path);
  FlipByte(path + "-wal", 17);  // salt-1
  ExpectDamaged(path, "header of the write-ahead log");
}

TEST(SqliteDamageTest, TornLastTransactionIsNotDamage) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndCrash(path);
  const std::string wal = path + "-wal";
  // A power loss in the middle of the last frame's write.
  std::filesystem::resize_file(wal, std::filesystem::file_size(wal) - 1000);
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto list = (*store)->List("/apps/");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->items.size(), static_cast<size_t>(kApps - 1));
}

TEST(SqliteDamageTest, ZeroByteDatabaseIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndClose(path);
  std::filesystem::resize_file(path, 0);
  ExpectDamaged(path, "empty (0 bytes)");
  EXPECT_EQ(std::filesystem::file_size(path), 0u);  // not re-created
}

TEST(SqliteDamageTest, MissingDatabaseWithItsWalIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndCrash(path);
  std::filesystem::remove(path);
  auto store = SqliteStore::Open(path);
  EXPECT_TRUE(absl::IsDataLoss(store.status())) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), "is missing"))
      << store.status();
}

TEST(SqliteDamageTest, DroppedTableIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndClose(path);
  Sql(path, "DROP TABLE kv");
  ExpectDamaged(path, "table kv is missing");
}

TEST(SqliteDamageTest, MissingIdentityRecordIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndClose(path);
  Sql(path, "DELETE FROM identity");
  ExpectDamaged(path, "identity record is missing");
}

TEST(SqliteDamageTest, ForeignSqliteFileIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  Sql(path, "CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('x')");
  ExpectDamaged(path, "no Tidal schema");
}

TEST(SqliteDamageTest, StoreFromBeforeIdentityRecordsIsUpgraded) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  // The schema version 1 layout, as an older tidald wrote it.
  Sql(path,
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE kv (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL,"
      " resource_version INTEGER NOT NULL, create_version INTEGER NOT NULL)"
      " WITHOUT ROWID;"
      "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1),"
      " revision INTEGER NOT NULL);"
      "INSERT INTO meta VALUES (1, 7);"
      "INSERT INTO kv VALUES (CAST('/apps/default/old' AS BLOB), x'0a00', 7, "
      "7);"
      "PRAGMA user_version=1;");
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->store_id().size(), 32u);
  EXPECT_EQ(*(*store)->CurrentVersion(), 7);
  EXPECT_TRUE((*store)->Get("/apps/default/old").ok());
  store->reset();
  auto report = SqliteStore::Check(path);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok()) << report->problems.size();
}

TEST(SqliteDamageTest, NewerSchemaIsFailedPrecondition) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndClose(path);
  Sql(path, "PRAGMA user_version=99");
  auto store = SqliteStore::Open(path);
  EXPECT_TRUE(absl::IsFailedPrecondition(store.status())) << store.status();
}

// Random bytes of a closed store flipped: Open refuses it, or every key is
// still there (a flip inside a value's bytes is not visible to SQLite).
TEST(SqliteDamageTest, RandomByteFlipsNeverServeFewerKeys) {
  std::mt19937 rng(17);
  int refused = 0;
  for (int trial = 0; trial < 40; ++trial) {
    TempDir dir;
    const std::string path = dir.path() + "/s.db";
    WriteAndClose(path);
    const int64_t size = std::filesystem::file_size(path);
    for (int k = 0; k < 5; ++k)
      FlipByte(path, std::uniform_int_distribution<int64_t>(0, size - 1)(rng));
    auto store = SqliteStore::Open(path);
    if (!store.ok()) {
      EXPECT_TRUE(absl::IsDataLoss(store.status()) ||
                  absl::IsFailedPrecondition(store.status()))
          << store.status();
      ++refused;
      continue;
    }
    auto list = (*store)->List("/apps/");
    ASSERT_TRUE(list.ok()) << "trial " << trial << ": " << list.status();
    EXPECT_EQ(list->items.size(), static_cast<size_t>(kApps))
        << "trial " << trial;
    for (int i = 0; i < kApps; ++i) {
      EXPECT_TRUE((*store)->Get(AppKey(i)).ok()) << "trial " << trial;
      // An apply would see the app and never answer "created".
      EXPECT_TRUE(absl::IsFailedPrecondition(
          (*store)->Create(AppKey(i), "again").status()))
          << "trial " << trial;
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(SqliteDamageTest, CorruptionFoundAtRunTimeFailsHealth) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  WriteAndClose(path);
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Health().ok());
  // Garbage over every page after the schema page, under the open store.
  {
    const int64_t size = std::filesystem::file_size(path);
    int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    std::string junk(size - 4096, '\xee');
    ASSERT_EQ(::pwrite(fd, junk.data(), junk.size(), 4096),
              static_cast<ssize_t>(junk.size()));
    ::close(fd);
  }
  auto list = (*store)->List("/apps/");
  EXPECT_TRUE(absl::IsDataLoss(list.status())) << list.status();
  absl::Status health = (*store)->Health();
  EXPECT_TRUE(absl::IsDataLoss(health)) << health;
  EXPECT_TRUE(absl::StrContains(health.message(), path)) << health;
}

TEST(SqliteDamageTest, CheckReportsAndBackupRestoreRoundTrip) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  const std::string backup = dir.path() + "/backup.db";
  std::string id;
  {
    auto store = SqliteStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    id = (*store)->store_id();
    for (int i = 0; i < kApps; ++i)
      ASSERT_TRUE((*store)->Create(AppKey(i), "v1").ok());
    // Online: the store is open (and locked) while it is copied.
    auto b = SqliteStore::Backup(path, backup);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->keys, kApps);
    EXPECT_EQ(b->store_id, id);
    auto live = SqliteStore::Check(path);
    ASSERT_TRUE(live.ok());
    EXPECT_TRUE(live->live);
    EXPECT_TRUE(live->ok());
    // Restore refuses while the store is open.
    auto refused = SqliteStore::Restore(backup, path);
    EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()))
        << refused.status();
    ASSERT_TRUE((*store)->Create("/apps/default/after-backup", "v").ok());
  }
  // A value check flags one value and keeps going.
  auto checked = SqliteStore::Check(path, [](const KeyValue& kv) {
    return kv.key == AppKey(3) ? absl::DataLossError("cannot decode")
                               : absl::OkStatus();
  });
  ASSERT_TRUE(checked.ok());
  EXPECT_FALSE(checked->live);
  ASSERT_EQ(checked->damaged_keys.size(), 1u);
  EXPECT_EQ(checked->damaged_keys[0], AppKey(3) + ": cannot decode");
  EXPECT_EQ(checked->keys, kApps + 1);

  // Damage the store, then restore the backup over it.
  std::filesystem::resize_file(path, 0);
  ASSERT_FALSE(SqliteStore::Open(path).ok());
  auto damaged_backup = SqliteStore::Backup(path, dir.path() + "/b2.db");
  EXPECT_TRUE(absl::IsDataLoss(damaged_backup.status()));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/b2.db"));
  std::string kept;
  auto restored = SqliteStore::Restore(backup, path, &kept);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(std::filesystem::exists(kept)) << kept;
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->store_id(), id);
  auto list = (*store)->List("/apps/");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->items.size(), static_cast<size_t>(kApps));

  // A damaged backup is refused and changes nothing.
  std::filesystem::resize_file(backup, 4096);
  store->reset();
  auto bad = SqliteStore::Restore(backup, path);
  EXPECT_TRUE(absl::IsDataLoss(bad.status())) << bad.status();
  EXPECT_TRUE(SqliteStore::Open(path).ok());
}

TEST(SqliteDamageTest, PageLimitReachedIsResourceExhausted) {
  TempDir dir;
  const std::string path = dir.path() + "/s.db";
  SqliteStore::Options options;
  options.max_pages = 16;
  auto store = SqliteStore::Open(path, options);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::Status s;
  for (int i = 0; i < 100 && s.ok(); ++i)
    s = (*store)->Create(AppKey(i), std::string(8000, 'f')).status();
  ASSERT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_TRUE(absl::StrContains(
      s.message(), absl::StrCat("the data directory is full: ", dir.path())))
      << s;
  EXPECT_TRUE((*store)->Get(AppKey(0)).ok());  // reads go on
  // Health() probes with a write that rewrites a page in place: it fits
  // under the page limit, so the store counts as writable again.
  EXPECT_TRUE((*store)->Health().ok());
}

// A real full disk: a 2 MiB tmpfs (needs root and mount; skipped otherwise).
TEST(SqliteDamageTest, FullDiskIsResourceExhaustedUntilSpaceIsFreed) {
  TempDir dir;
  const std::string mnt = dir.path() + "/mnt";
  std::filesystem::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=2M") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs at " << mnt << " ("
                 << std::strerror(errno) << "); needs root";
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string path = mnt + "/tidal.db";
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Create(AppKey(0), "v").ok());
  // Fill the rest of the file system.
  const std::string filler = mnt + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    std::string block(64 << 10, 'z');
    while (out.write(block.data(), block.size())) {
    }
  }
  absl::Status s;
  for (int i = 1; i < 50 && s.ok(); ++i)
    s = (*store)->Create(AppKey(i), std::string(16 << 10, 'f')).status();
  ASSERT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_TRUE(absl::StrContains(
      s.message(), absl::StrCat("the data directory is full: ", mnt)))
      << s;
  EXPECT_TRUE(absl::IsResourceExhausted((*store)->Health()));
  std::filesystem::remove(filler);
  EXPECT_TRUE((*store)->Health().ok());
  EXPECT_TRUE((*store)->Create("/apps/default/later", "v").ok());
}

}  // namespace
}  // namespace tidal
