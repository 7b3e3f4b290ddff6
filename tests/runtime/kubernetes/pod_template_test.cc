// A revision as Kubernetes objects, and a Pod read back as an Instance.
#include "runtime/kubernetes/pod_template.h"

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/kubernetes/kube_json.h"
#include "runtime/kubernetes/kube_rbac.h"

namespace tidal::kube {
namespace {

using ::testing::HasSubstr;

InstanceRequest Full() {
  InstanceRequest r;
  r.namespace_ = "team-a";
  r.app = "web";
  r.template_hash = "0123456789";
  r.revision = 7;
  auto& t = r.tmpl;
  t.set_image("registry.example.com/web:1.4");
  t.add_command("/bin/web");
  t.add_args("--verbose");
  auto* e = t.add_env();
  e->set_name("GREETING");
  e->set_value("hi");
  t.set_working_dir("/srv");
  t.set_port(9000);
  t.mutable_readiness_probe()->mutable_http_get()->set_path("/ready");
  t.mutable_liveness_probe()->mutable_tcp_socket();
  t.mutable_liveness_probe()->set_period_seconds(7);
  t.set_termination_grace_period_seconds(12);
  t.mutable_resources()->set_cpu_millis(500);
  t.mutable_resources()->set_memory_bytes(256 << 20);
  (*t.mutable_labels())["tier"] = "front";
  return r;
}

TEST(PodTemplateTest, TheTemplateMapsToThePodSpec) {
  absl::StatusOr<std::string> m = DeploymentManifest(Full(), "web-x");
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<json::value> d = ParseJson(*m);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(GetString(*d, {"apiVersion"}), "apps/v1");
  EXPECT_EQ(GetString(*d, {"kind"}), "Deployment");
  EXPECT_EQ(GetString(*d, {"metadata", "labels", "tidal.dev/app"}), "web");
  EXPECT_EQ(GetString(*d, {"metadata", "labels", "tidal.dev/revision"}), "7");
  EXPECT_EQ(GetString(*d, {"metadata", "annotations", "tidal.dev/owner"}),
            "team-a/web");
  EXPECT_EQ(Find(*d, {"spec", "replicas"}), nullptr)
      << "replicas only through /scale";
  EXPECT_EQ(GetString(*d, {"spec", "selector", "matchLabels",
                           "tidal.dev/template-hash"}),
            "0123456789");
  EXPECT_EQ(GetString(*d, {"spec", "template", "metadata", "labels", "tier"}),
            "front");
  const json::value* pod = Find(*d, {"spec", "template", "spec"});
  ASSERT_NE(pod, nullptr);
  EXPECT_EQ(GetInt(*pod, {"terminationGracePeriodSeconds"}), 12);
  const json::value& c = pod->at("containers").as_array()[0];
  EXPECT_EQ(GetString(c, {"image"}), "registry.example.com/web:1.4");
  EXPECT_EQ(json::serialize(c.at("command")), R"(["/bin/web"])");
  EXPECT_EQ(json::serialize(c.at("args")), R"(["--verbose"])");
  EXPECT_EQ(
      json::serialize(c.at("env")),
      R"([{"name":"PORT","value":"9000"},{"name":"GREETING","value":"hi"}])");
  EXPECT_EQ(GetString(c, {"workingDir"}), "/srv");
  EXPECT_EQ(GetInt(c.at("ports").as_array()[0], {"containerPort"}), 9000);
  EXPECT_EQ(GetString(c, {"readinessProbe", "httpGet", "path"}), "/ready");
  EXPECT_EQ(GetInt(c, {"readinessProbe", "httpGet", "port"}), 9000);
  EXPECT_EQ(GetInt(c, {"readinessProbe", "periodSeconds"}), 1);
  EXPECT_EQ(GetInt(c, {"livenessProbe", "tcpSocket", "port"}), 9000);
  EXPECT_EQ(GetInt(c, {"livenessProbe", "periodSeconds"}), 7);
  EXPECT_EQ(GetString(c, {"resources", "limits", "cpu"}), "500m");
  EXPECT_EQ(GetString(c, {"resources", "requests", "memory"}), "268435456");
}

TEST(PodTemplateTest, SecretReferencesStayReferences) {
  InstanceRequest r = Full();
  auto* e = r.tmpl.add_env();
  e->set_name("DB_PASSWORD");
  auto* ref = e->mutable_value_from()->mutable_secret_key_ref();
  ref->set_name("db");
  ref->set_key("password");
  ref->set_optional(true);
  absl::StatusOr<std::string> m = DeploymentManifest(r, "web-x");
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<json::value> d = ParseJson(*m);
  ASSERT_TRUE(d.ok());
  const json::value& c =
      Find(*d, {"spec", "template", "spec"})->at("containers").as_array()[0];
  EXPECT_EQ(json::serialize(c.at("env").as_array()[2]),
            R"({"name":"DB_PASSWORD","valueFrom":{"secretKeyRef":{"name":"db",)"
            R"("key":"password","optional":true}}})");
}

TEST(PodTemplateTest, WithoutAnImageTheFieldIsNamed) {
  InstanceRequest r = Full();
  r.tmpl.clear_image();
  absl::StatusOr<std::string> m = DeploymentManifest(r, "web-x");
  ASSERT_TRUE(absl::IsInvalidArgument(m.status()));
  EXPECT_THAT(std::string(m.status().message()),
              HasSubstr("spec.template.image"));
}

TEST(PodTemplateTest, DefaultsAPortAndAReadinessProbe) {
  InstanceRequest r;
  r.namespace_ = "n";
  r.app = "a";
  r.template_hash = "h";
  r.tmpl.set_image("i");
  absl::StatusOr<json::value> d = ParseJson(*DeploymentManifest(r, "a-x"));
  const json::value& c =
      d->at("spec").at("template").at("spec").at("containers").as_array()[0];
  EXPECT_EQ(GetInt(c.at("ports").as_array()[0], {"containerPort"}),
            kDefaultPort);
  EXPECT_EQ(GetInt(c, {"readinessProbe", "tcpSocket", "port"}), kDefaultPort);
  EXPECT_EQ(Find(c, {"command"}), nullptr) << "the image's entrypoint";
  EXPECT_EQ(c.at("ports").as_array()[0].at("name").as_string(), "http");
}

// An app whose instances speak h2c names its ports "h2c", as Knative does,
// for ingresses and meshes in front of the Service.
TEST(PodTemplateTest, HttpTwoAppsNameTheirPortsH2c) {
  for (const char* protocol : {"h2c", "grpc"}) {
    InstanceRequest r;
    r.namespace_ = "n";
    r.app = "a";
    r.template_hash = "h";
    r.tmpl.set_image("i");
    r.tmpl.set_protocol(protocol);
    absl::StatusOr<json::value> d = ParseJson(*DeploymentManifest(r, "a-x"));
    const json::value& c =
        d->at("spec").at("template").at("spec").at("containers").as_array()[0];
    EXPECT_EQ(c.at("ports").as_array()[0].at("name").as_string(), "h2c");
    absl::StatusOr<json::value> s = ParseJson(ServiceManifest(r, "a-x"));
    EXPECT_EQ(s->at("spec").at("ports").as_array()[0].at("name").as_string(),
              "h2c");
  }
}

TEST(PodTemplateTest, RevisionNamesAreServiceNames) {
  const std::string long_app(80, 'x');
  for (const std::string& app : {std::string("web"), long_app,
                                 std::string("9lives"), std::string("a.b_c")}) {
    const std::string n = RevisionName("ns", app, "hash");
    EXPECT_LE(n.size(), 63u) << n;
    EXPECT_TRUE(absl::ascii_isalpha(n[0])) << n;
    for (char ch : n) {
      EXPECT_TRUE(absl::ascii_islower(ch) || absl::ascii_isdigit(ch) ||
                  ch == '-')
          << n;
    }
  }
  EXPECT_NE(RevisionName("a", "web", "h"), RevisionName("b", "web", "h"));
  EXPECT_NE(RevisionName("a", "web", "h1"), RevisionName("a", "web", "h2"));
}

TEST(PodTemplateTest, APodReadsBackAsAnInstance) {
  const std::string pod = R"({
    "metadata": {"name": "web-x-abc-12345", "uid": "u1",
      "creationTimestamp": "2026-12-04T10:00:00Z",
      "labels": {"tidal.dev/managed-by": "tidal", "tidal.dev/namespace": "team-a",
                 "tidal.dev/app": "web", "tidal.dev/template-hash": "0123456789",
                 "tidal.dev/revision": "7"}},
    "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9000}]}]},
    "status": {"phase": "Running", "podIP": "10.1.2.3",
      "conditions": [{"type": "Ready", "status": "True",
                      "lastTransitionTime": "2026-12-04T10:00:05Z"}],
      "containerStatuses": [{"restartCount": 1,
        "state": {"running": {}},
        "lastState": {"terminated": {"reason": "OOMKilled"}}}]}})";
  absl::StatusOr<PodView> v = PodToInstance(pod);
  ASSERT_TRUE(v.ok()) << v.status();
  const auto& i = v->instance;
  EXPECT_EQ(i.id(), "web-x-abc-12345");
  EXPECT_EQ(i.namespace_(), "team-a");
  EXPECT_EQ(i.app(), "web");
  EXPECT_EQ(i.revision(), 7);
  EXPECT_EQ(i.phase(), "Running");
  EXPECT_TRUE(i.ready());
  EXPECT_EQ(i.host(), "10.1.2.3");
  EXPECT_EQ(i.port(), 9000);
  EXPECT_EQ(i.restarts(), 1);
  EXPECT_EQ(i.reason(), "OOMKilled");
  EXPECT_EQ(i.ready_time().seconds() - i.start_time().seconds(), 5);
  EXPECT_EQ(v->deployment, RevisionName("team-a", "web", "0123456789"));
  EXPECT_FALSE(PodToInstance(R"({"metadata":{"name":"x"}})").ok());
}

TEST(KubeRbacTest, RequestsMapToTheirVerbs) {
  auto need = RbacNeedOf("GET", "/api/v1/namespaces/n/pods?watch=true&x=1");
  EXPECT_EQ(need.verb, "watch");
  EXPECT_EQ(need.resource, "pods");
  need = RbacNeedOf("PUT", "/apis/apps/v1/namespaces/n/deployments/d/scale");
  EXPECT_EQ(need.api_group, "apps");
  EXPECT_EQ(need.resource, "deployments/scale");
  EXPECT_EQ(need.verb, "update");
  EXPECT_TRUE(RbacAllows(need));
  EXPECT_FALSE(RbacAllows(RbacNeedOf("POST", "/api/v1/namespaces/n/pods")));
  EXPECT_FALSE(RbacAllows(RbacNeedOf("GET", "/api/v1/namespaces/n/secrets")));
}

}  // namespace
}  // namespace tidal::kube
