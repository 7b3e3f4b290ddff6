// tidalctl's secret commands against an in-process service: apply (mixed
// with apps, several files), create secret generic, get/describe/delete,
// diff; the value is never printed.
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "cli/tidalctl_fixture.h"
#include "common/secret_box.h"
#include "gtest/gtest.h"

namespace tidal::cli_test {
namespace {

constexpr char kPlain[] = "C1i-T3st-S3cr3t-v4lue";

class SecretCommandsTest : public TidalctlFixture {
 protected:
  void Configure(ServiceOptions* opts) override { opts->secret_box = &box_; }
  void ExpectClean(const Result& r) {
    for (const std::string& s :
         {std::string(kPlain), absl::Base64Escape(kPlain)}) {
      EXPECT_FALSE(absl::StrContains(r.out, s)) << r.out;
      EXPECT_FALSE(absl::StrContains(r.err, s)) << r.err;
    }
  }
  SecretBox box_ = *SecretBox::FromKey(std::string(32, 'c'));
};

TEST_F(SecretCommandsTest, CreateGetDescribeDiffDelete) {
  std::string pw = WriteFile("pw.txt", kPlain);
  Result r = Run({"create", "secret", "generic", "db", "--from-file", pw,
                  "--from-literal=user=admin"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "secret/db created\n");
  r = Run({"get", "secrets"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out,
                               "NAME   TYPE     KEYS   AGE\n"
                               "db     Opaque   2      "))
      << r.out;
  r = Run({"get", "secret", "db", "-o", "yaml"});
  ExpectClean(r);
  EXPECT_TRUE(absl::StrContains(r.out, "pw.txt: \"<redacted>\"")) << r.out;
  r = Run({"describe", "secret", "db"});
  ExpectClean(r);
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat("pw.txt:  ", sizeof(kPlain) - 1, " bytes")))
      << r.out;

  // A file with a secret and an app, then a second file: one apply.
  std::string a = WriteFile(
      "a.yaml", absl::StrCat("apiVersion: tidal.dev/v1\nkind: Secret\n"
                             "metadata: {name: api}\nstringData:\n  token: ",
                             kPlain, "\n"));
  std::string b = WriteFile(
      "b.yaml",
      "apiVersion: tidal.dev/v1\nkind: App\nmetadata: {name: web}\nspec:\n"
      "  template:\n    command: [/bin/sleep, '1000']\n    env:\n"
      "      - name: TOKEN\n        valueFrom:\n"
      "          secretKeyRef: {name: api, key: token}\n");
  r = Run({"apply", "-f", a, "-f", b});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/web created\nsecret/api created\n");
  r = Run({"diff", "-f", a});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  r = Run({"describe", "app", "web"});
  ExpectClean(r);
  EXPECT_TRUE(absl::StrContains(
      r.out, "TOKEN=<set to the key 'token' in secret 'api'>"))
      << r.out;
  r = Run({"apply", "-f", a, "--dry-run=client"});
  ExpectClean(r);
  EXPECT_EQ(r.out, "secret/api valid (dry run)\n");

  r = Run({"delete", "-f", a});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "secret \"api\" deleted\n");
  r = Run({"delete", "secret", "db"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "secret \"db\" deleted\n");
  r = Run({"get", "secret", "db"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "secret \"db\" not found")) << r.err;
  r = Run({"create", "secret", "generic", "x", "--from-literal", kPlain});
  EXPECT_NE(r.code, 0);
  ExpectClean(r);
}

// Issue 16: `delete secret --ignore-not-found` (kubectl's flag) skips a
// missing secret silently and still deletes the others; without it a
// missing secret is an error; a dry run skips the same way.
TEST_F(SecretCommandsTest, DeleteIgnoreNotFound) {
  ASSERT_EQ(
      Run({"create", "secret", "generic", "db", "--from-literal=u=a"}).code, 0);
  Result r = Run({"delete", "secret", "gone"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "\"gone\" not found")) << r.err;
  r = Run({"delete", "secret", "gone", "db", "--ignore-not-found",
           "--dry-run=client"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "secret \"db\" deleted (dry run)\n");
  r = Run({"delete", "secret", "gone", "db", "--ignore-not-found"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "secret \"db\" deleted\n");
  EXPECT_EQ(r.err, "");
  r = Run({"get", "secret", "db"});
  EXPECT_NE(r.code, 0);
  // A file's secret that is gone already.
  std::string f =
      WriteFile("s.yaml",
                "apiVersion: tidal.dev/v1\nkind: Secret\nmetadata: {name: db}\n"
                "stringData: {u: a}\n");
  EXPECT_EQ(Run({"delete", "-f", f}).code, 1);
  r = Run({"delete", "-f", f, "--ignore-not-found"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace tidal::cli_test
