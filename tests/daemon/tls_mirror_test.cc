// TlsPairMirror with real certificates (openssl): a rotation written key
// first leaves the copies gRPC reads on the previous pair until the
// certificate follows; a pair that never matches is refused at start.

#include "daemon/tls_mirror.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "e2e/e2e_util.h"
#include "e2e/test_ca.h"

namespace tidal {
namespace {

using e2e::ReadFile;
using e2e::TempDir;
using e2e::TestCa;
using e2e::WriteFile;

TEST(TlsPairMirrorTest, OnlyAMatchingPairReachesTheCopies) {
  if (!TestCa::Available()) GTEST_SKIP() << "no openssl command";
  TempDir dir;
  TestCa ca(dir.path(), "ca");
  ASSERT_TRUE(ca.ok()) << ca.error();
  ASSERT_TRUE(ca.Issue("one", "api-one", {"IP:127.0.0.1"})) << ca.error();
  ASSERT_TRUE(ca.Issue("two", "api-two", {"IP:127.0.0.1"})) << ca.error();
  const std::string cert = dir.path() + "/api.crt";
  const std::string key = dir.path() + "/api.key";
  WriteFile(cert, ReadFile(ca.Path("one", ".crt")));
  WriteFile(key, ReadFile(ca.Path("one", ".key")));

  // A period long enough that only the explicit SyncOnce calls act.
  TlsPairMirror mirror(cert, key, dir.path() + "/live", absl::Hours(1));
  ASSERT_TRUE(mirror.Start().ok());
  EXPECT_EQ(ReadFile(mirror.cert_path()), ReadFile(ca.Path("one", ".crt")));
  EXPECT_EQ(ReadFile(mirror.key_path()), ReadFile(ca.Path("one", ".key")));
  struct stat st {};
  ASSERT_EQ(stat(mirror.key_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(mirror.SyncOnce());  // nothing new

  // Key first: the copies keep the previous pair.
  WriteFile(key, ReadFile(ca.Path("two", ".key")));
  EXPECT_FALSE(mirror.SyncOnce());
  EXPECT_EQ(ReadFile(mirror.cert_path()), ReadFile(ca.Path("one", ".crt")));
  EXPECT_EQ(ReadFile(mirror.key_path()), ReadFile(ca.Path("one", ".key")));
  // Then the certificate: the new pair.
  WriteFile(cert, ReadFile(ca.Path("two", ".crt")));
  EXPECT_TRUE(mirror.SyncOnce());
  EXPECT_EQ(ReadFile(mirror.cert_path()), ReadFile(ca.Path("two", ".crt")));
  EXPECT_EQ(ReadFile(mirror.key_path()), ReadFile(ca.Path("two", ".key")));
  mirror.Stop();

  // A pair that does not match is refused at start, naming the flags.
  WriteFile(key, ReadFile(ca.Path("one", ".key")));
  TlsPairMirror bad(cert, key, dir.path() + "/bad", absl::Hours(1));
  absl::Status st2 = bad.Start();
  EXPECT_TRUE(absl::IsInvalidArgument(st2)) << st2;
  EXPECT_TRUE(absl::StrContains(st2.message(), "--tls-key")) << st2;
  EXPECT_TRUE(absl::StrContains(st2.message(), "does not match")) << st2;
}

}  // namespace
}  // namespace tidal
