// Exec credential plugins: the kubeconfig's `exec`, what a plugin prints,
// and real plugins (shell scripts) run as child processes.
#include "runtime/kubernetes/exec_credential.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/kubernetes/kube_config.h"

namespace tidal::kube {
namespace {

using ::testing::HasSubstr;

constexpr char kV1[] = "client.authentication.k8s.io/v1";

class ExecCredentialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/exec_credential_test.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    (void)std::system(cmd.c_str());
  }
  std::string Write(const std::string& name, const std::string& text,
                    bool executable = false) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    if (executable) chmod(path.c_str(), 0755);
    return path;
  }
  std::string Read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // A kubeconfig whose user runs `exec` (YAML, indented under user:).
  absl::StatusOr<KubeConfig> Config(const std::string& exec) {
    return ParseKubeconfig(absl::StrCat(R"(
apiVersion: v1
kind: Config
current-context: eks
clusters:
- name: c
  cluster: {server: "https://10.0.0.1:443", certificate-authority-data: UEVN}
contexts:
- name: eks
  context: {cluster: c, user: u}
users:
- name: u
  user:
    exec:
)",
                                        exec),
                           dir_ + "/config");
  }
  // A plugin that counts its runs in ./runs and prints `credential` (JSON).
  KubeConfig Plugin(const std::string& credential) {
    Write("plugin.sh",
          absl::StrCat("#!/bin/sh\necho run >> ", dir_, "/runs\n",
                       "printf '%s' \"$KUBERNETES_EXEC_INFO\" > ", dir_,
                       "/info\ncat <<'EOF'\n", credential, "\nEOF\n"),
          true);
    KubeConfig c;
    c.server = "https://10.0.0.1:443";
    c.source = "test";
    c.has_exec = true;
    c.exec.api_version = kV1;
    c.exec.command = dir_ + "/plugin.sh";
    c.exec.interactive_mode = "Never";
    return c;
  }
  int Runs() {
    std::string r = Read("runs");
    return static_cast<int>(std::count(r.begin(), r.end(), '\n'));
  }
  std::string dir_;
};

TEST_F(ExecCredentialTest, KubeconfigExecAsClientGoReadsIt) {
  absl::StatusOr<KubeConfig> c = Config(R"(
      apiVersion: client.authentication.k8s.io/v1beta1
      command: bin/aws-iam
      args: [eks, get-token, --cluster-name, prod]
      env: [{name: AWS_PROFILE, value: prod}]
      installHint: install the AWS CLI
      provideClusterInfo: true
)");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->has_exec);
  EXPECT_EQ(c->exec.api_version, "client.authentication.k8s.io/v1beta1");
  // A relative path with a directory is the kubeconfig's.
  EXPECT_EQ(c->exec.command, dir_ + "/bin/aws-iam");
  EXPECT_THAT(c->exec.args, ::testing::ElementsAre("eks", "get-token",
                                                   "--cluster-name", "prod"));
  ASSERT_EQ(c->exec.env.size(), 1u);
  EXPECT_EQ(c->exec.env[0].first, "AWS_PROFILE");
  EXPECT_EQ(c->exec.env[0].second, "prod");
  EXPECT_EQ(c->exec.install_hint, "install the AWS CLI");
  EXPECT_TRUE(c->exec.provide_cluster_info);
  EXPECT_EQ(c->exec.interactive_mode, "IfAvailable");  // v1beta1's default
  // A bare name is looked up in PATH when run.
  c = Config(
      "      {apiVersion: client.authentication.k8s.io/v1, command: "
      "gke-gcloud-auth-plugin, interactiveMode: Never}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->exec.command, "gke-gcloud-auth-plugin");
}

TEST_F(ExecCredentialTest, KubeconfigExecErrorsNameTheField) {
  const std::string where = dir_ + "/config: field users[u].user.exec";
  struct Case {
    std::string exec;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {"      {apiVersion: client.authentication.k8s.io/v1alpha1, "
            "command: x}\n",
            ".apiVersion: \"client.authentication.k8s.io/v1alpha1\" is not"},
           {"      {apiVersion: client.authentication.k8s.io/v1, "
            "interactiveMode: Never}\n",
            ".command: not set"},
           {"      {apiVersion: client.authentication.k8s.io/v1, command: x}\n",
            ".interactiveMode: must be set"},
           {"      {apiVersion: client.authentication.k8s.io/v1, command: x, "
            "interactiveMode: Always}\n",
            ".interactiveMode: Always needs a terminal"},
           {"      {apiVersion: client.authentication.k8s.io/v1, command: x, "
            "interactiveMode: Never, env: [{value: v}]}\n",
            ".env[0].name: must be set"},
       }) {
    absl::StatusOr<KubeConfig> k = Config(c.exec);
    ASSERT_FALSE(k.ok()) << c.exec;
    EXPECT_THAT(std::string(k.status().message()),
                HasSubstr(absl::StrCat(where, c.error)));
  }
  absl::StatusOr<KubeConfig> k = ParseKubeconfig(R"(
current-context: x
clusters: [{name: c, cluster: {server: "https://h"}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {auth-provider: {name: gcp}}}]
)",
                                                 "/k");
  EXPECT_TRUE(absl::IsUnimplemented(k.status())) << k.status();
  EXPECT_THAT(std::string(k.status().message()),
              HasSubstr("/k: field users[u].user.auth-provider: not "
                        "supported"));
}

TEST_F(ExecCredentialTest, WhatAPluginPrints) {
  absl::StatusOr<ExecResult> r = ParseExecCredential(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
          "status":{"token":"k8s-aws-v1.abc","expirationTimestamp":"2026-12-08T00:15:00Z"}})",
      kV1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->credential.token, "k8s-aws-v1.abc");
  EXPECT_EQ(r->expiry, absl::FromUnixSeconds(1796688900));
  r = ParseExecCredential(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
          "status":{"clientCertificateData":"CERT","clientKeyData":"KEY"}})",
      kV1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->credential.client_cert_pem, "CERT");
  EXPECT_EQ(r->credential.client_key_pem, "KEY");
  EXPECT_EQ(r->expiry, absl::InfiniteFuture());
  struct Case {
    std::string out;
    std::string error;
  };
  for (
      const Case& c : std::vector<Case>{
          {"token", "not an ExecCredential"},
          {R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"Status"})",
           "of kind \"Status\""},
          {R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t"}})",
           "returned apiVersion \"client.authentication.k8s.io/v1beta1\""},
          {R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"})",
           "no status"},
          {R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}})",
           "neither a token nor"},
          {R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"C"}})",
           "not both"},
          {R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"tomorrow"}})",
           "\"tomorrow\" is not an RFC 3339 time"},
      }) {
    r = ParseExecCredential(c.out, kV1);
    ASSERT_FALSE(r.ok()) << c.out;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.error));
  }
}

TEST_F(ExecCredentialTest, APluginRunsWithItsArgsEnvAndTheExecInfo) {
  Write(
      "plugin.sh",
      absl::StrCat("#!/bin/sh\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > ", dir_,
                   "/info\n",
                   "cat <<EOF\n{\"apiVersion\":\"client.authentication.k8s.io/"
                   "v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":"
                   "\"$1-$PROFILE\"}}\nEOF\n"),
      true);
  absl::StatusOr<KubeConfig> c = Config(absl::StrCat(
      "      apiVersion: client.authentication.k8s.io/v1\n"
      "      command: ./plugin.sh\n      args: [tok]\n"
      "      env: [{name: PROFILE, value: prod}]\n"
      "      interactiveMode: Never\n      provideClusterInfo: true\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<ExecResult> r = RunExecPlugin(*c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->credential.token, "tok-prod");
  EXPECT_EQ(Read("info"),
            "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
            "\"ExecCredential\",\"spec\":{\"interactive\":false,\"cluster\":{"
            "\"server\":\"https://10.0.0.1:443\",\"certificate-authority-"
            "data\":\"UEVN\"}}}");
}

TEST_F(ExecCredentialTest, APluginThatFailsSaysHow) {
  KubeConfig c = Plugin("{}");
  c.exec.command = dir_ + "/missing-plugin";
  c.exec.install_hint = "install it with apt-get install missing-plugin\n";
  absl::StatusOr<ExecResult> r = RunExecPlugin(c);
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("missing-plugin (test): executable not found (install "
                        "it with apt-get install missing-plugin)"));
  c.exec.command = Write("fail.sh",
                         "#!/bin/sh\necho 'error: SSO session expired' >&2\n"
                         "echo 'run aws sso login' >&2\nexit 3\n",
                         true);
  r = RunExecPlugin(c);
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("failed with exit status 3: error: SSO session "
                        "expired / run aws sso login"));
  // One that never answers is killed at the timeout.
  c.exec.command = Write("hang.sh", "#!/bin/sh\nexec sleep 60\n", true);
  const absl::Time start = absl::Now();
  r = RunExecPlugin(c, absl::Milliseconds(200));
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("no answer within 200ms; killed"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  // So is one that closes its output and lingers.
  c.exec.command =
      Write("linger.sh", "#!/bin/sh\nexec >&- 2>&-\nexec sleep 60\n", true);
  r = RunExecPlugin(c, absl::Milliseconds(200));
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("no answer within 200ms; killed"));
  // Output that is not a credential.
  c = Plugin("{\"kind\":\"ExecCredential\"}");
  r = RunExecPlugin(c);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("returned apiVersion \"\""));
}

TEST_F(ExecCredentialTest, TheSourceRunsThePluginAgainOnlyWhenItExpires) {
  // No expiry: one run, whatever the number of requests; a 401 runs it again.
  KubeConfig c = Plugin(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t1"}})");
  TokenSource tokens(c);
  EXPECT_EQ(*tokens.Token(), "t1");
  EXPECT_EQ(*tokens.Token(), "t1");
  EXPECT_EQ(Runs(), 1);
  EXPECT_FALSE(tokens.Refresh());  // the same token again
  EXPECT_EQ(Runs(), 2);
  // Expired already: every Get runs it.
  c = Plugin(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t2","expirationTimestamp":"2020-01-01T00:00:00Z"}})");
  TokenSource expiring(c);
  EXPECT_EQ(*expiring.Token(), "t2");
  EXPECT_EQ(*expiring.Token(), "t2");
  EXPECT_EQ(Runs(), 4);
  // A client certificate.
  c = Plugin(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"C","clientKeyData":"K"}})");
  TokenSource certs(c);
  absl::StatusOr<Credential> cred = certs.Get();
  ASSERT_TRUE(cred.ok()) << cred.status();
  EXPECT_EQ(cred->token, "");
  EXPECT_EQ(cred->client_cert_pem, "C");
  EXPECT_EQ(cred->client_key_pem, "K");
  // A token in the kubeconfig wins over the plugin, as in client-go.
  c.token = "static";
  TokenSource fixed(c);
  EXPECT_EQ(*fixed.Token(), "static");
  EXPECT_EQ(Runs(), 5);
}

}  // namespace
}  // namespace tidal::kube
