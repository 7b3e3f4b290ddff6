#include "runtime/kubernetes/kube_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tidal::kube {
namespace {

using ::testing::HasSubstr;

class KubeConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kube_config_test.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    (void)std::system(cmd.c_str());
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(KubeConfigTest, InClusterReadsServiceAccount) {
  InClusterOptions o;
  o.host = "10.96.0.1";
  o.port = "443";
  o.token_file = Write("token", "tok-1\n");
  o.ca_file = Write("ca.crt", "PEM");
  o.namespace_file = Write("namespace", "team-a\n");
  absl::StatusOr<KubeConfig> c = LoadInClusterConfig(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->ca_file, o.ca_file);
  EXPECT_EQ(c->namespace_, "team-a");
  EXPECT_EQ(c->token_file, o.token_file);
  TokenSource tokens(*c);
  EXPECT_EQ(*tokens.Token(), "tok-1");
}

TEST_F(KubeConfigTest, InClusterErrors) {
  InClusterOptions o;
  o.host = "fd00::1";
  o.port = "443";
  o.token_file = dir_ + "/missing";
  absl::StatusOr<KubeConfig> c = LoadInClusterConfig(o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(o.token_file));
  o.token_file = Write("token", "  \n");
  c = LoadInClusterConfig(o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("is empty"));
  o.token_file = Write("token", "t");
  c = LoadInClusterConfig(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://[fd00::1]:443");
}

TEST_F(KubeConfigTest, TokenFileRereadWhenItChanges) {
  KubeConfig c;
  c.token_file = Write("token", "old");
  TokenSource tokens(c);
  EXPECT_EQ(*tokens.Token(), "old");
  // A rotation with another size: seen by the stat on the next call.
  Write("token", "newer");
  EXPECT_EQ(*tokens.Token(), "newer");
  // Same size and the old mtime: only a Refresh (after a 401) sees it.
  struct stat st;
  ASSERT_EQ(::stat(c.token_file.c_str(), &st), 0);
  Write("token", "other");
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, c.token_file.c_str(), times, 0), 0);
  EXPECT_EQ(*tokens.Token(), "newer");
  EXPECT_TRUE(tokens.Refresh());
  EXPECT_EQ(*tokens.Token(), "other");
  EXPECT_FALSE(tokens.Refresh());
}

TEST_F(KubeConfigTest, KubeconfigCurrentContextWithToken) {
  Write("ca.pem", "PEM");
  std::string path = Write("config", R"(
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c1
  cluster:
    server: https://k8s.example:6443/
    certificate-authority: ca.pem
- name: c2
  cluster:
    server: https://other:6443
    insecure-skip-tls-verify: true
contexts:
- name: dev
  context: {cluster: c1, user: u1, namespace: team-a}
- name: prod
  context: {cluster: c2, user: u2}
users:
- name: u1
  user: {token: secret-1}
- name: u2
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
)");
  absl::StatusOr<KubeConfig> c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://k8s.example:6443");
  EXPECT_EQ(c->ca_file, dir_ + "/ca.pem");
  EXPECT_EQ(c->token, "secret-1");
  EXPECT_EQ(c->namespace_, "team-a");
  EXPECT_FALSE(c->insecure_skip_tls_verify);

  c = LoadKubeconfig(path, "prod");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://other:6443");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->client_cert_data, "CERT");
  EXPECT_EQ(c->client_key_data, "KEY");
  EXPECT_EQ(c->namespace_, "default");
}

TEST_F(KubeConfigTest, KubeconfigErrorsNameFileAndField) {
  struct Case {
    std::string yaml;
    std::string want;
  };
  const Case cases[] = {
      {"current-context: x\n", "field contexts: no context named \"x\""},
      {"contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
       "field clusters: no cluster named \"c\""},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
       "clusters: [{name: c, cluster: {}}]\n",
       "field clusters[c].cluster.server: not set"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: "
       "u}}]\nclusters: [{name: c, cluster: {server: https://a}}]\n"
       "users: [{name: u, user: {client-certificate-data: '%%%'}}]\n",
       "field users[u].user.client-certificate-data: not valid base64"},
      {"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: "
       "u}}]\nclusters: [{name: c, cluster: {server: https://a}}]\n"
       "users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]\n",
       "must be given together"},
      {"clusters: [\n", "config:"},
      {"", "not a kubeconfig"},
  };
  for (const Case& tc : cases) {
    std::string path = Write("config", tc.yaml);
    absl::StatusOr<KubeConfig> c = LoadKubeconfig(path);
    ASSERT_FALSE(c.ok()) << tc.yaml;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(path)) << tc.yaml;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(tc.want))
        << tc.yaml;
  }
  absl::StatusOr<KubeConfig> missing = LoadKubeconfig(dir_ + "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nope"));
}

}  // namespace
}  // namespace tidal::kube
