// Adoption records on disk (runtime/instance_records.h).

#include "runtime/instance_records.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "gtest/gtest.h"
#include "runtime/proc_stat.h"
#include "runtime/test_util.h"

namespace tidal {
namespace {

using runtime::InstanceRecord;
using testing::ReadFile;
using testing::TempDir;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

InstanceRecord Record(const std::string& id) {
  InstanceRecord rec;
  rec.set_id(id);
  rec.set_namespace_("default");
  rec.set_app("hello");
  rec.set_port(20001);
  rec.mutable_template_()->add_command("/bin/sleep");
  return rec;
}

TEST(InstanceRecordsTest, WriteLoadRemove) {
  TempDir dir;
  InstanceRecords records(dir.path(), /*sync=*/true);
  EXPECT_EQ(records.PathOf("a-1"), dir.path() + "/a-1.pb");
  EXPECT_EQ(records.FifoPathOf("a-1"), dir.path() + "/a-1.fifo");
  EXPECT_FALSE(records.Exists("a-1"));
  ASSERT_TRUE(records.Write(Record("b-2")).ok());
  ASSERT_TRUE(records.Write(Record("a-1")).ok());
  EXPECT_TRUE(records.Exists("a-1"));
  EXPECT_FALSE(Exists(records.PathOf("a-1") + ".tmp"));

  auto loaded = records.LoadAll();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->records.size(), 2u);
  EXPECT_TRUE(loaded->unreadable.empty());
  // Sorted by path.
  EXPECT_EQ(loaded->records[0].record.id(), "a-1");
  EXPECT_EQ(loaded->records[0].path, records.PathOf("a-1"));
  EXPECT_EQ(loaded->records[0].record.port(), 20001);
  EXPECT_EQ(loaded->records[0].record.template_().command(0), "/bin/sleep");
  EXPECT_EQ(loaded->records[1].record.id(), "b-2");

  records.Remove("a-1");
  records.Remove("a-1");  // fine twice
  EXPECT_FALSE(records.Exists("a-1"));
  loaded = records.LoadAll();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->records.size(), 1u);
}

TEST(InstanceRecordsTest, LoadDropsUnreadableRecordsAndLeftoverTempFiles) {
  TempDir dir;
  InstanceRecords records(dir.path(), false);
  ASSERT_TRUE(records.Write(Record("good-1")).ok());
  { std::ofstream(dir.path() + "/junk.pb") << "\xff\xff not a record"; }
  // Parses, but has no id.
  { std::ofstream(dir.path() + "/empty.pb"); }
  { std::ofstream(dir.path() + "/cut-1.pb.tmp") << "half"; }
  auto loaded = records.LoadAll();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->records.size(), 1u);
  EXPECT_EQ(loaded->records[0].record.id(), "good-1");
  EXPECT_EQ(loaded->unreadable.size(), 2u);
  EXPECT_FALSE(Exists(dir.path() + "/junk.pb"));
  EXPECT_FALSE(Exists(dir.path() + "/empty.pb"));
  EXPECT_FALSE(Exists(dir.path() + "/cut-1.pb.tmp"));
}

TEST(InstanceRecordsTest, LoadFailsWithoutTheDirectory) {
  InstanceRecords records("/nonexistent/tidal-records", false);
  EXPECT_EQ(records.LoadAll().status().code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(records.Write(Record("x-1")).ok());
}

TEST(InstanceRecordsTest, RecordedProcessRunsOnlyForTheSameProcessAndBoot) {
  ProcStat self;
  ASSERT_TRUE(ReadProcStat(getpid(), &self));
  InstanceRecord rec = Record("me-1");
  rec.set_pid(getpid());
  rec.set_start_ticks(self.start_ticks);
  const std::string boot = BootId();
  EXPECT_TRUE(RecordedProcessRuns(rec, boot));
  rec.set_boot_id(boot);
  EXPECT_TRUE(RecordedProcessRuns(rec, boot));
  // Written before a reboot.
  rec.set_boot_id("00000000-0000-0000-0000-000000000000");
  EXPECT_FALSE(RecordedProcessRuns(rec, boot));
  // A reused pid.
  rec.set_boot_id(boot);
  rec.set_start_ticks(self.start_ticks + 1);
  EXPECT_FALSE(RecordedProcessRuns(rec, boot));
}

TEST(InstanceRecordsTest, WriteFileAtomicAndMakeDirs) {
  TempDir dir;
  const std::string nested = dir.path() + "/a/b/c";
  ASSERT_TRUE(MakeDirs(nested).ok());
  ASSERT_TRUE(MakeDirs(nested).ok());  // exists already
  ASSERT_TRUE(WriteFileAtomic(nested + "/f", "first", false).ok());
  ASSERT_TRUE(WriteFileAtomic(nested + "/f", "second", true).ok());
  EXPECT_EQ(ReadFile(nested + "/f"), "second");
  EXPECT_FALSE(Exists(nested + "/f.tmp"));
  EXPECT_FALSE(WriteFileAtomic(dir.path() + "/missing/f", "x", false).ok());
}

}  // namespace
}  // namespace tidal
