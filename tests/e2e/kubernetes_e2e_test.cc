// tidald --runtime=kubernetes end to end: a real tidald and tidalctl, apps
// applied as YAML, instances as Pods of Deployments.
//
// By default against the API emulator (tests/fakes/kube_emulator.h), which
// plays the kubelet's part too (the test marks Pods ready). Against a real
// cluster (docs/kubernetes.md, "End-to-end against a real cluster"):
//   TIDAL_K8S_E2E_KUBECONFIG=~/.kube/config \
//   TIDAL_K8S_E2E_NAMESPACE=tidal-e2e \
//   ctest --test-dir build -R KubernetesE2E --output-on-failure
// The namespace must exist and the kubeconfig's user needs the Role of
// deploy/kubernetes/role.yaml in it; TIDAL_K8S_E2E_IMAGE (default
// registry.k8s.io/e2e-test-images/agnhost:2.39, run as `netexec
// --http-port=8080`) is the image the app runs.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "e2e/e2e_util.h"
#include "fakes/kube_emulator.h"
#include "runtime/kubernetes/kube_client.h"
#include "runtime/kubernetes/kube_config.h"
#include "runtime/kubernetes/pod_template.h"

namespace tidal::e2e {
namespace {

using tidal::testing::KubeEmulator;

std::string Env(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

class KubernetesE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubeconfig_ = Env("TIDAL_K8S_E2E_KUBECONFIG");
    kube_ns_ = Env("TIDAL_K8S_E2E_NAMESPACE", "tidal-e2e");
    image_ = Env("TIDAL_K8S_E2E_IMAGE",
                 "registry.k8s.io/e2e-test-images/agnhost:2.39");
    if (kubeconfig_.empty()) {
      emu_ = std::make_unique<KubeEmulator>();
      ASSERT_TRUE(emu_->Start().ok());
      kubeconfig_ = dir_.path() + "/kubeconfig";
      WriteFile(kubeconfig_, absl::StrCat(R"(apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster: {server: ")",
                                          emu_->url(), R"("}
users:
- name: tidal
  user: {token: emulator-token}
contexts:
- name: e2e
  context: {cluster: emulator, user: tidal, namespace: )",
                                          kube_ns_, R"(}
current-context: e2e
)"));
    }
    absl::StatusOr<kube::KubeConfig> kc = kube::LoadKubeconfig(kubeconfig_);
    ASSERT_TRUE(kc.ok()) << kc.status();
    client_ = std::make_unique<kube::KubeClient>(*kc);
  }

  // The Deployments with Tidal's labels in the namespace.
  std::vector<std::string> Deployments() {
    kube::ListOptions lo;
    lo.label_selector = kube::ManagedSelector();
    auto l = client_->List(kube::kDeployments, kube_ns_, lo);
    std::vector<std::string> out;
    if (!l.ok()) return {"<error: " + l.status().ToString() + ">"};
    for (const auto& o : l->items) out.push_back(o.name);
    return out;
  }

  // The emulator has no kubelet: Pods are made ready here.
  void MarkPodsReady() {
    if (emu_ == nullptr) return;
    kube::ListOptions lo;
    lo.label_selector = kube::ManagedSelector();
    auto l = client_->List(kube::kPods, kube_ns_, lo);
    if (!l.ok()) return;
    for (const auto& p : l->items) {
      if (!absl::StrContains(p.json, "\"podIP\"")) {
        (void)emu_->SetPodReady(kube_ns_, p.name, true);
      }
    }
  }

  TempDir dir_;
  std::unique_ptr<KubeEmulator> emu_;
  std::string kubeconfig_, kube_ns_, image_;
  std::unique_ptr<kube::KubeClient> client_;
};

TEST_F(KubernetesE2ETest, AppsRunAsDeploymentsScaleAndGoAway) {
  Daemon daemon(dir_.path(),
                {"--runtime=kubernetes", "--kube-config=" + kubeconfig_,
                 "--kube-namespace=" + kube_ns_});
  ASSERT_TRUE(daemon.Start()) << "see " << daemon.log_path();

  // Without an image the apply is refused, naming the file, line and field.
  const std::string bad = dir_.path() + "/bad.yaml";
  WriteFile(bad, R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: noimage}
spec:
  template:
    command: ["/bin/web"]
)");
  auto refused = daemon.Ctl({"apply", "-f", bad});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(refused.err, "spec.template.image"))
      << refused.err;

  const std::string path = dir_.path() + "/app.yaml";
  WriteFile(path, absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  replicas: 2
  template:
    image: ")",
                               image_, R"("
    args: ["netexec", "--http-port=8080"]
    port: 8080
)"));
  auto r = daemon.Ctl({"apply", "-f", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ready = [&](int n) {
    MarkPodsReady();
    auto g = daemon.Ctl({"get", "app", "web", "-o", "json"});
    return absl::StrContains(g.out, absl::StrCat("\"readyReplicas\": ", n));
  };
  ASSERT_TRUE(Eventually([&] { return ready(2); }, absl::Seconds(120)))
      << daemon.Ctl({"describe", "app", "web"}).out << "\nsee "
      << daemon.log_path();
  ASSERT_EQ(Deployments().size(), 1u);
  const std::string dep = Deployments()[0];
  auto instances = daemon.Ctl({"get", "instances", "web"});
  EXPECT_TRUE(absl::StrContains(instances.out, dep)) << instances.out;

  // Logs come from the Pod log API through tidalctl, as with local
  // instances (against a real cluster: whatever the image writes).
  if (emu_ != nullptr) {
    kube::ListOptions lo;
    lo.label_selector = kube::ManagedSelector();
    auto pods = client_->List(kube::kPods, kube_ns_, lo);
    ASSERT_TRUE(pods.ok());
    for (const auto& p : pods->items) {
      ASSERT_TRUE(
          emu_->AppendPodLog(kube_ns_, p.name, "hello from " + p.name + "\n")
              .ok());
    }
    auto logs = daemon.Ctl({"logs", "web"});
    EXPECT_EQ(logs.exit_code, 0) << logs.err;
    for (const auto& p : pods->items) {
      EXPECT_TRUE(absl::StrContains(logs.out, "hello from " + p.name))
          << logs.out;
    }
  }

  // A crash of tidald: the Pods keep running and are taken over, and no
  // second Deployment appears.
  daemon.Kill9();
  ASSERT_TRUE(daemon.Start());
  ASSERT_TRUE(Eventually([&] { return ready(2); }, absl::Seconds(120)));
  EXPECT_EQ(Deployments(), std::vector<std::string>{dep});

  // Scale through tidalctl: /scale of the same Deployment.
  ASSERT_EQ(daemon.Ctl({"scale", "web", "--replicas", "3"}).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return ready(3); }, absl::Seconds(120)));
  auto scale = client_->GetScale(kube::kDeployments, kube_ns_, dep);
  ASSERT_TRUE(scale.ok());
  EXPECT_EQ(scale->spec_replicas, 3);

  // Delete: the Pods stop and the Deployment and Service are collected.
  ASSERT_EQ(daemon.Ctl({"delete", "app", "web"}).exit_code, 0);
  ASSERT_TRUE(
      Eventually([&] { return Deployments().empty(); }, absl::Seconds(120)))
      << "see " << daemon.log_path();
  EXPECT_TRUE(Eventually([&] {
    return daemon.Ctl({"get", "app", "web"}).exit_code != 0;
  }));
  EXPECT_TRUE(daemon.Stop());
}

}  // namespace
}  // namespace tidal::e2e
