// Tokens and roles end to end (docs/auth.md): a real tidald with its default
// --auth=token, the bootstrap admin token it writes, tidalctl with --token,
// TIDAL_TOKEN and a config-file context, per-namespace roles, can-i's exit
// codes, revocation, the audit log; and --auth=none refused off loopback.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "e2e/e2e_util.h"

namespace tidal::e2e {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char kApp[] = R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: web
  namespace: NS
spec:
  replicas: 0
  template:
    command: [sleep, "3600"]
)";

std::string AppIn(const std::string& ns) {
  std::string y = kApp;
  y.replace(y.find("NS"), 2, ns);
  return y;
}

class AuthE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(dir_.path());
    ASSERT_TRUE(daemon_->Start());
  }
  // tidalctl against the daemon with `env` (VAR=value) and no token of the
  // test's own unless given.
  CommandResult Ctl(const std::vector<std::string>& args,
                    const std::vector<std::string>& env = {},
                    const std::string& input = "") {
    std::vector<std::string> argv = {
        "/usr/bin/env", "HOME=" + dir_.path() + "/home",
        "XDG_CONFIG_HOME=" + dir_.path() + "/cfg", "TIDAL_TOKEN="};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.push_back(BuildDir() + "/src/cli/tidalctl");
    argv.push_back("--server=" + daemon_->api());
    argv.insert(argv.end(), args.begin(), args.end());
    return e2e::Run(argv, input);
  }
  std::string AdminToken() {
    return std::string(absl::StripSuffix(Slurp(daemon_->token_file()), "\n"));
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(AuthE2ETest, TokensRolesContextsAndTheAuditLog) {
  // The bootstrap admin token, private to tidald's user.
  struct stat st {};
  ASSERT_EQ(stat(daemon_->token_file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  const std::string admin = AdminToken();
  ASSERT_TRUE(absl::StartsWith(admin, "tidal_")) << admin;

  // No token: refused, saying how to give one.
  auto r = Ctl({"get", "apps"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "requires a token")) << r.err;
  // version stays open (health probes), and says who the server is.
  EXPECT_EQ(Ctl({"version"}).exit_code, 0);

  // The admin makes a developer token for team-a (printed once, alone on
  // stdout) and a viewer token for team-b.
  r = Ctl({"--token", admin, "auth", "create-token", "ci-a", "-n", "team-a",
           "--role", "developer", "--ttl", "30d"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dev(absl::StripSuffix(r.out, "\n"));
  EXPECT_TRUE(absl::StartsWith(dev, "tidal_"));
  EXPECT_TRUE(absl::StrContains(r.err, "shown only this once"));
  EXPECT_TRUE(absl::StrContains(r.err, "expires in 30d")) << r.err;
  r = Ctl({"--token", admin, "auth", "create-token", "look-b", "-n", "team-b",
           "--role", "viewer"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string viewer(absl::StripSuffix(r.out, "\n"));

  // TIDAL_TOKEN (CI): the developer applies in team-a ...
  const std::string app_a = dir_.path() + "/a.yaml";
  WriteFile(app_a, AppIn("team-a"));
  r = Ctl({"apply", "-f", app_a}, {"TIDAL_TOKEN=" + dev});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // ... and not in team-b: PermissionDenied naming verb, resource and
  // namespace; nothing applied.
  const std::string app_b = dir_.path() + "/b.yaml";
  WriteFile(app_b, AppIn("team-b"));
  r = Ctl({"apply", "-f", app_b}, {"TIDAL_TOKEN=" + dev});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(
      absl::StrContains(r.err, "cannot apply apps in namespace \"team-b\""))
      << r.err;
  r = Ctl({"--token", admin, "get", "apps", "-A", "-o", "name"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/web\n");  // the denied apply wrote nothing

  // A context in the config file (like a kubeconfig).
  r = Ctl({"config", "set-context", "team-a", "--token", dev, "--namespace",
           "team-a", "--server", daemon_->api(), "--current"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat cst {};
  ASSERT_EQ(stat((dir_.path() + "/cfg/tidal/config.yaml").c_str(), &cst), 0);
  EXPECT_EQ(cst.st_mode & 0777, 0600);  // it holds a token
  r = Ctl({"auth", "whoami"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "ci-a")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "developer@team-a")) << r.out;
  r = Ctl({"get", "app", "web"});  // namespace team-a from the context
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"config", "view"});
  EXPECT_FALSE(absl::StrContains(r.out, dev)) << "config view shows a token";

  // can-i: exit 0 yes, 1 no (kubectl).
  r = Ctl({"auth", "can-i", "delete", "apps"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "yes\n");
  r = Ctl({"auth", "can-i", "delete", "apps", "-n", "team-b"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "no\n");
  r = Ctl({"auth", "can-i", "create", "tokens"});
  EXPECT_EQ(r.exit_code, 1);
  r = Ctl({"--token", viewer, "auth", "can-i", "list", "apps", "-n", "team-b"});
  EXPECT_EQ(r.exit_code, 0);

  // The viewer of team-b sees nothing of team-a: a get there is
  // PermissionDenied whether or not the app exists.
  auto exists = Ctl({"--token", viewer, "get", "app", "web", "-n", "team-a"});
  auto missing = Ctl({"--token", viewer, "get", "app", "nope", "-n", "team-a"});
  EXPECT_EQ(exists.exit_code, 1);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(exists.err, "cannot get apps"));
  EXPECT_EQ(exists.err, missing.err);

  // Tokens: listed without secrets; revoked at once.
  r = Ctl({"--token", admin, "auth", "list-tokens", "-A"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "ci-a"));
  EXPECT_TRUE(absl::StrContains(r.out, "bootstrap-admin"));
  EXPECT_FALSE(absl::StrContains(r.out, dev.substr(24)));
  r = Ctl({"--token", admin, "auth", "revoke", "ci-a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"get", "apps"});  // the context's token, now revoked
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "not valid")) << r.err;

  // The audit log: the apply, the denied apply, the token changes; never a
  // token's secret.
  const std::string audit = Slurp(dir_.path() + "/audit.log");
  EXPECT_TRUE(absl::StrContains(audit, "\"method\":\"Apply\""));
  EXPECT_TRUE(absl::StrContains(audit, "\"outcome\":\"denied\""));
  EXPECT_TRUE(absl::StrContains(audit, "\"method\":\"RevokeToken\""));
  EXPECT_TRUE(absl::StrContains(audit, "\"username\":\"ci-a\""));
  for (const std::string& t : {admin, dev, viewer}) {
    EXPECT_FALSE(absl::StrContains(audit, t.substr(23))) << "a secret";
    EXPECT_FALSE(absl::StrContains(Slurp(daemon_->log_path()), t.substr(23)));
  }
}

TEST(AuthFlagsE2ETest, NoAuthIsForLoopbackOnly) {
  TempDir dir;
  CommandResult r =
      e2e::Run({BuildDir() + "/src/daemon/tidald", "--data-dir=" + dir.path(),
                "--auth=none", absl::StrCat("--listen=0.0.0.0:", FreePort()),
                absl::StrCat("--gateway-listen=127.0.0.1:", FreePort()),
                absl::StrCat("--admin-listen=127.0.0.1:", FreePort())});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out + r.err, "--auth: none would let anyone"))
      << r.out << r.err;
}

}  // namespace
}  // namespace tidal::e2e
