// The exchanges KubeClient sends, kept as golden files
// (tests/runtime/kubernetes/golden/*.txt, checked by hand against the
// Kubernetes API reference: golden/README.md). TIDAL_UPDATE_GOLDEN=1
// rewrites them from what the client sends now.
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "fakes/eventually.h"
#include "fakes/kube_emulator.h"
#include "gtest/gtest.h"
#include "runtime/kubernetes/kube_client.h"
#include "runtime/kubernetes/kubernetes_runtime.h"
#include "runtime/kubernetes/pod_template.h"

namespace tidal::kube {
namespace {

using tidal::testing::KubeEmulator;
using tidal::testing::RecordedRequest;

std::string GoldenPath(const std::string& name) {
  return std::string(TIDAL_SOURCE_DIR_DEFAULT) +
         "/tests/runtime/kubernetes/golden/" + name + ".txt";
}

// Method, target, content type, accept and body of each request, with the
// volatile values (resource versions, uids) replaced.
std::string Normalize(const std::vector<RecordedRequest>& reqs) {
  static const std::regex rv_query("resourceVersion=[0-9]+");
  static const std::regex rv_body("\"resourceVersion\":\"[0-9]+\"");
  static const std::regex uid_body("\"uid\":\"[0-9a-f-]+\"");
  std::string out;
  for (const RecordedRequest& r : reqs) {
    std::string target =
        std::regex_replace(r.target, rv_query, "resourceVersion=<rv>");
    std::string body =
        std::regex_replace(r.body, rv_body, "\"resourceVersion\":\"<rv>\"");
    body = std::regex_replace(body, uid_body, "\"uid\":\"<uid>\"");
    out += r.method + " " + target + "\n";
    out += "Accept: " + r.accept + "\n";
    if (!r.content_type.empty())
      out += "Content-Type: " + r.content_type + "\n";
    out += "Authorization: " +
           std::string(r.authorization.empty() ? "" : "Bearer <token>") + "\n";
    if (!body.empty()) out += "\n" + body + "\n";
    out += "---\n";
  }
  return out;
}

void CheckGolden(const std::string& name, const std::string& got) {
  const std::string path = GoldenPath(name);
  const char* update = std::getenv("TIDAL_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(path) << got;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "no golden file " << path
                  << " (run with TIDAL_UPDATE_GOLDEN=1 to write it)";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(want.str(), got)
      << "the client's requests differ from " << path
      << "; if the change is meant, check it against the API reference and "
         "run with TIDAL_UPDATE_GOLDEN=1";
}

class KubeGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(emu_.Start().ok());
    KubeConfig c;
    c.server = emu_.url();
    c.token = "emulator-token";
    client_ = std::make_unique<KubeClient>(c);
  }
  KubeEmulator emu_;
  std::unique_ptr<KubeClient> client_;
};

constexpr char kManifest[] =
    R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web-r1",)"
    R"("labels":{"tidal.dev/app":"web","tidal.dev/revision":"1"},)"
    R"("annotations":{"tidal.dev/owner":"team-a/web"}},"spec":{"selector":)"
    R"({"matchLabels":{"tidal.dev/app":"web","tidal.dev/revision":"1"}},)"
    R"("template":{"metadata":{"labels":{"tidal.dev/app":"web",)"
    R"("tidal.dev/revision":"1"}},"spec":{"containers":[{"name":"app",)"
    R"("image":"example/web:1","ports":[{"containerPort":8080}]}]}}}})";

TEST_F(KubeGoldenTest, DeploymentApplyScaleDelete) {
  ASSERT_TRUE(client_->Apply(kDeployments, "team-a", "web-r1", kManifest).ok());
  ASSERT_TRUE(client_->Get(kDeployments, "team-a", "web-r1").ok());
  absl::StatusOr<Scale> s = client_->GetScale(kDeployments, "team-a", "web-r1");
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(client_
                  ->UpdateScale(kDeployments, "team-a", "web-r1", 2,
                                s->resource_version)
                  .ok());
  DeleteOptions d;
  d.precondition_uid = "00000000-0000-4000-8000-000000000001";
  ASSERT_TRUE(client_->Delete(kDeployments, "team-a", "web-r1", d).ok());
  CheckGolden("deployment_apply_scale_delete", Normalize(emu_.Requests()));
}

TEST_F(KubeGoldenTest, PodsListWatch) {
  ASSERT_TRUE(client_->Apply(kDeployments, "team-a", "web-r1", kManifest).ok());
  emu_.ClearRequests();
  ListOptions lo;
  lo.label_selector = "tidal.dev/app=web,tidal.dev/revision=1";
  absl::StatusOr<KubeList> list = client_->List(kPods, "team-a", lo);
  ASSERT_TRUE(list.ok());
  WatchOptions wo;
  wo.label_selector = lo.label_selector;
  wo.resource_version = list->resource_version;
  wo.timeout_seconds = 1;
  ASSERT_TRUE(
      client_
          ->Watch(kPods, "team-a", wo, [](const WatchEvent&) { return true; })
          .ok());
  CheckGolden("pods_list_watch", Normalize(emu_.Requests()));
}

TEST_F(KubeGoldenTest, PodLogsDeleteEndpointSlices) {
  ASSERT_TRUE(client_->Apply(kDeployments, "team-a", "web-r1", kManifest).ok());
  const std::string pod = emu_.PodsOf("team-a", "web-r1").at(0);
  ASSERT_TRUE(emu_.AppendPodLog("team-a", pod, "hello\n").ok());
  emu_.ClearRequests();
  PodLogOptions lo;
  lo.container = "app";
  lo.tail_lines = 100;
  ASSERT_TRUE(
      client_->PodLogs("team-a", pod, lo, [](std::string_view) { return true; })
          .ok());
  // The previous container's log (`logs --previous`), after a restart.
  ASSERT_TRUE(
      emu_.SetContainerWaiting("team-a", pod, "CrashLoopBackOff", 1).ok());
  PodLogOptions prev;
  prev.container = "app";
  prev.previous = true;
  std::string previous_log;
  ASSERT_TRUE(client_
                  ->PodLogs("team-a", pod, prev,
                            [&](std::string_view d) {
                              previous_log.append(d);
                              return true;
                            })
                  .ok());
  EXPECT_EQ(previous_log, "hello\n");
  DeleteOptions d;
  d.grace_period_seconds = 30;
  ASSERT_TRUE(client_->Delete(kPods, "team-a", pod, d).ok());
  ListOptions sl;
  sl.label_selector = "kubernetes.io/service-name=web-r1";
  ASSERT_TRUE(client_->List(kEndpointSlices, "team-a", sl).ok());
  // Pod names are random: the golden file has <pod>.
  std::string got = Normalize(emu_.Requests());
  for (size_t at; (at = got.find(pod)) != std::string::npos;) {
    got.replace(at, pod.size(), "<pod>");
  }
  CheckGolden("pod_logs_delete_endpointslices", got);
}

// What KubernetesRuntime itself sends to start an instance of a revision,
// stop it and collect the revision: the writes and the /scale reads (the
// background lists and watches are left out; their form is in
// pods_list_watch).
TEST_F(KubeGoldenTest, RuntimeStartStopCollect) {
  KubernetesRuntimeOptions o;
  o.default_namespace = "tidal-apps";
  o.gc_interval = absl::Hours(1);
  KubernetesRuntime rt(client_.get(), o);
  ASSERT_TRUE(rt.Adopt().ok());
  InstanceRequest req;
  req.namespace_ = "team-a";
  req.app = "web";
  req.template_hash = "0123456789";
  req.revision = 3;
  req.tmpl.set_image("registry.example.com/web:1.4");
  req.tmpl.add_args("--serve");
  req.tmpl.set_port(8080);
  ASSERT_TRUE(rt.Start(req).ok());
  std::string pod;
  ASSERT_TRUE(tidal::testing::Eventually([&] {
    for (const auto& i : rt.List()) {
      if (i.id().find("-pending-") == std::string::npos) pod = i.id();
    }
    return !pod.empty();
  }));
  ASSERT_TRUE(rt.Stop(pod, absl::Seconds(15)).ok());
  ASSERT_TRUE(tidal::testing::Eventually([&] {
    rt.CollectGarbage();
    return !emu_.GetObject("deployments", "tidal-apps",
                           RevisionName("team-a", "web", "0123456789"))
                .has_value();
  }));
  rt.Shutdown(false);
  std::vector<RecordedRequest> writes;
  for (const RecordedRequest& r : emu_.Requests()) {
    const bool collection_read =
        r.method == "GET" && r.target.find("/scale") == std::string::npos;
    if (!collection_read) writes.push_back(r);
  }
  CheckGolden("runtime_start_stop_collect", Normalize(writes));
}

}  // namespace
}  // namespace tidal::kube
