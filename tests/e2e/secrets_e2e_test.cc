// End-to-end test of Secrets (docs/secrets.md): a real tidald and tidalctl,
// an instance that takes a secret value through valueFrom.secretKeyRef and
// writes only its hash. The plaintext (and its base64) must appear in no
// tidalctl output, no tidald log line and no file under the data directory.

#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "e2e/e2e_util.h"
#include "fakes/eventually.h"

namespace tidal::e2e {
namespace {

using testing::Eventually;

constexpr char kPlain[] = "Tid4l-e2e-Pl41nT3xt-S3cr3t-q7x";
constexpr char kPlain2[] = "Tid4l-e2e-B4s364-V4lue-w2k";   // given as base64
constexpr char kPlain3[] = "Tid4l-e2e-L1t3r4l-V4lue-m5j";  // --from-literal

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

std::string Sha256Hex(const std::string& s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(d), sizeof(d)));
}

class SecretsE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    marker_ = absl::StrCat("secrets-e2e-", getpid());
    // Instances run as nobody (tidald as root): they write their hashes to
    // a directory open to them.
    out_ = dir_.path() + "/out";
    chmod(dir_.path().c_str(), 0755);
    mkdir(out_.c_str(), 0777);
    chmod(out_.c_str(), 0777);
    data_ = dir_.path() + "/data";
    // The audit log at its fullest level is one of the files checked.
    daemon_ = std::make_unique<Daemon>(
        data_, std::vector<std::string>{"--audit-level=Request"});
    ASSERT_TRUE(daemon_->Start())
        << "tidald did not start; see " << daemon_->log_path();
  }
  void TearDown() override {
    daemon_.reset();
    for (pid_t pid : FindProcesses(marker_)) kill(pid, SIGKILL);
  }

  // Runs tidalctl and keeps what it printed, to be searched at the end.
  CommandResult Ctl(const std::vector<std::string>& args) {
    CommandResult r = daemon_->Ctl(args);
    outputs_.push_back({absl::StrJoin(args, " "), r.out + r.err});
    return r;
  }
  void ExpectNoPlaintext(const std::string& where, const std::string& text) {
    for (const std::string& p :
         {std::string(kPlain), std::string(kPlain2), std::string(kPlain3)}) {
      EXPECT_FALSE(absl::StrContains(text, p)) << where << " holds " << p;
      EXPECT_FALSE(absl::StrContains(text, absl::Base64Escape(p)))
          << where << " holds the base64 of " << p;
    }
  }

  // An app whose instance writes the SHA-256 of $DB_PASSWORD to a file and
  // to its output, and stays up (its $0 carries the marker).
  std::string AppYaml(const std::string& name, const std::string& secret) {
    return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: )",
                        name, R"(
spec:
  replicas: 1
  template:
    command: ["/bin/sh", "-c", "h=$(printf %s \"$DB_PASSWORD\" | sha256sum | cut -c1-64); echo hash=$h; echo $h > )",
                        out_, "/", name,
                        R"(.hash; while :; do sleep 1; done", ")", marker_,
                        R"("]
    terminationGracePeriodSeconds: 1
    env:
      - name: DB_PASSWORD
        valueFrom:
          secretKeyRef: {name: )",
                        secret, R"(, key: password}
      - name: OTHER
        valueFrom:
          secretKeyRef: {name: )",
                        secret, R"(, key: other, optional: true}
)");
  }

  TempDir dir_;
  std::string data_;
  std::string marker_;
  std::string out_;
  std::unique_ptr<Daemon> daemon_;
  std::vector<std::pair<std::string, std::string>> outputs_;
};

TEST_F(SecretsE2ETest, ValueReachesOnlyTheInstanceEnvironment) {
  const std::string spec = dir_.path() + "/spec.yaml";
  WriteFile(spec, absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: Secret
metadata:
  name: db
stringData:
  password: )",
                               kPlain, R"(
data:
  api: )",
                               absl::Base64Escape(kPlain2), "\n---\n",
                               AppYaml("web", "db")));
  CommandResult r = Ctl({"apply", "-f", spec});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "secret/db created")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "app.tidal.dev/web created")) << r.out;

  // The instance got the value.
  const std::string hash_file = out_ + "/web.hash";
  ASSERT_TRUE(Eventually([&] {
    return absl::StripAsciiWhitespace(ReadAll(hash_file)) == Sha256Hex(kPlain);
  })) << ReadAll(hash_file);

  // Every read of it and of the app.
  r = Ctl({"get", "secrets"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.out, "db")) << r.out;
  r = Ctl({"get", "secret", "db", "-o", "yaml"});
  EXPECT_TRUE(absl::StrContains(r.out, "password: \"<redacted>\"")) << r.out;
  r = Ctl({"get", "secrets", "-o", "json"});
  EXPECT_TRUE(absl::StrContains(r.out, "<redacted>")) << r.out;
  r = Ctl({"describe", "secret", "db"});
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat("password:  ", sizeof(kPlain) - 1, " bytes")))
      << r.out;
  r = Ctl({"get", "app", "web", "-o", "yaml"});
  EXPECT_TRUE(absl::StrContains(r.out, "secretKeyRef")) << r.out;
  Ctl({"get", "app", "web", "-o", "json"});
  r = Ctl({"describe", "app", "web"});
  EXPECT_TRUE(absl::StrContains(r.out,
                                "<set to the key 'password' in secret "
                                "'db'>"))
      << r.out;
  Ctl({"get", "instances", "-o", "json"});
  Ctl({"get", "revisions", "web", "-o", "yaml"});
  Ctl({"diff", "-f", spec});
  r = Ctl({"apply", "-f", spec, "--dry-run=server"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "secret/db unchanged")) << r.out;
  Ctl({"apply", "-f", spec, "--dry-run=client"});
  Ctl({"apply", "-f", spec});
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(Ctl({"logs", "web"}).out,
                             absl::StrCat("hash=", Sha256Hex(kPlain)));
  }));

  // kubectl's habit: create secret generic; a second app takes it.
  r = Ctl({"create", "secret", "generic", "lit",
           absl::StrCat("--from-literal=password=", kPlain3)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "secret/lit created")) << r.out;
  const std::string spec2 = dir_.path() + "/lit.yaml";
  WriteFile(spec2, AppYaml("lit-app", "lit"));
  ASSERT_EQ(Ctl({"apply", "-f", spec2}).exit_code, 0);
  ASSERT_TRUE(Eventually([&] {
    return absl::StripAsciiWhitespace(ReadAll(out_ + "/lit-app.hash")) ==
           Sha256Hex(kPlain3);
  }));

  // A missing secret keeps the instance from starting, with a clear event.
  const std::string spec3 = dir_.path() + "/missing.yaml";
  WriteFile(spec3, AppYaml("orphan", "nope"));
  ASSERT_EQ(Ctl({"apply", "-f", spec3}).exit_code, 0);
  ASSERT_TRUE(Eventually([&] {
    CommandResult ev = Ctl({"get", "events", "orphan"});
    return absl::StrContains(ev.out, "CreateContainerConfigError") &&
           absl::StrContains(ev.out, "secret \"default/nope\" not found");
  }));
  EXPECT_TRUE(FindProcesses(absl::StrCat(out_, "/orphan.hash")).empty());
  Ctl({"get", "events"});
  Ctl({"describe", "app", "orphan"});
  r = Ctl({"delete", "secret", "lit"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"get", "secret", "lit"});
  EXPECT_NE(r.exit_code, 0);

  // The key file: 0600, 32 bytes.
  struct stat st {};
  ASSERT_EQ(stat((data_ + "/secrets.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  EXPECT_EQ(st.st_size, 32);

  // Stop tidald (its log complete), then search everything.
  ASSERT_TRUE(daemon_->Stop());
  for (const auto& [cmd, text] : outputs_)
    ExpectNoPlaintext("tidalctl " + cmd, text);
  ExpectNoPlaintext("tidald's log " + daemon_->log_path(),
                    ReadAll(daemon_->log_path()));
  int files = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(data_)) {
    if (!entry.is_regular_file()) continue;
    ++files;
    ExpectNoPlaintext(entry.path().string(), ReadAll(entry.path().string()));
  }
  EXPECT_GT(files, 3);  // the store, the key, instance records, logs
  EXPECT_TRUE(std::filesystem::exists(data_ + "/instances"));

  // Another key (a rotation, or a key file lost): tidald says at start how
  // many secrets it cannot open, instead of nothing until an instance fails.
  WriteFile(data_ + "/secrets.key", std::string(32, 'n'));
  chmod((data_ + "/secrets.key").c_str(), 0600);
  ASSERT_TRUE(daemon_->Start());
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(ReadAll(daemon_->log_path()),
                             "secrets in the store are sealed with another "
                             "key");
  }));
  ASSERT_TRUE(daemon_->Stop());
}

// tidald refuses a key file others may read, or of the wrong size, naming
// the flag and the file (run directly: it exits at once).
TEST(SecretsKeyFileE2ETest, ABadKeyFileStopsTidald) {
  TempDir dir;
  const std::string key = dir.path() + "/k";
  for (const auto& [bytes, mode, want] :
       std::vector<std::tuple<std::string, mode_t, std::string>>{
           {std::string(32, 'k'), 0644, "chmod 600"},
           {std::string(31, 'k'), 0600, "exactly 32 bytes"}}) {
    WriteFile(key, bytes);
    chmod(key.c_str(), mode);
    CommandResult r = e2e::Run(
        {BuildDir() + "/src/daemon/tidald", "--data-dir", dir.path() + "/d",
         "--secrets-key-file", key, "--listen", "127.0.0.1:0",
         "--gateway-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
        "", absl::Seconds(30));
    EXPECT_NE(r.exit_code, 0);
    const std::string all = r.out + r.err;
    EXPECT_TRUE(absl::StrContains(all, "--secrets-key-file")) << all;
    EXPECT_TRUE(absl::StrContains(all, key)) << all;
    EXPECT_TRUE(absl::StrContains(all, want)) << all;
  }
}

}  // namespace
}  // namespace tidal::e2e
