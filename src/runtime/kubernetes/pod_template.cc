#include "runtime/kubernetes/pod_template.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/proto_time.h"
#include "runtime/kubernetes/kube_json.h"

namespace tidal::kube {
namespace {

// The port's name says its protocol, as Knative names it: "h2c" for apps
// whose instances speak HTTP/2 without TLS (template.protocol h2c, grpc).
std::string PortName(const tidal::v1::Template& t) {
  return t.protocol() == "h2c" || t.protocol() == "grpc" ? "h2c" : "http";
}

using tidal::v1::Probe;
using tidal::v1::Template;

std::string Hex40(const std::string& text) {
  uint64_t h = 14695981039346656037ULL;  // FNV-1a 64
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  snprintf(buf, sizeof buf, "%010llx",
           static_cast<unsigned long long>(h & 0xFFFFFFFFFFULL));
  return buf;
}

json::object Labels(const InstanceRequest& req) {
  return json::object{{kLabelManagedBy, kManagedBy},
                      {kLabelNamespace, req.namespace_},
                      {kLabelApp, req.app},
                      {kLabelTemplateHash, req.template_hash},
                      {kLabelRevision, absl::StrCat(req.revision)}};
}

// What selects a revision's Pods (immutable in a Deployment: a revision's
// Deployment is never re-pointed).
json::object Selector(const InstanceRequest& req) {
  return json::object{{kLabelManagedBy, kManagedBy},
                      {kLabelNamespace, req.namespace_},
                      {kLabelApp, req.app},
                      {kLabelTemplateHash, req.template_hash}};
}

json::object Metadata(const InstanceRequest& req, const std::string& name) {
  return json::object{
      {"name", name},
      {"labels", Labels(req)},
      {"annotations",
       json::object{
           {kAnnotationOwner, absl::StrCat(req.namespace_, "/", req.app)}}}};
}

int32_t PortOf(const Template& t) {
  return t.port() != 0 ? t.port() : kDefaultPort;
}

json::object ProbeJson(const Probe& p, int32_t port, bool readiness) {
  json::object o;
  if (p.has_http_get()) {
    o["httpGet"] = json::object{
        {"path", p.http_get().path().empty() ? "/" : p.http_get().path()},
        {"port", p.http_get().port() != 0 ? p.http_get().port() : port}};
  } else {
    o["tcpSocket"] =
        json::object{{"port", p.has_tcp_socket() && p.tcp_socket().port() != 0
                                  ? p.tcp_socket().port()
                                  : port}};
  }
  o["initialDelaySeconds"] = p.initial_delay_seconds();
  // Tidal's defaults (docs/spec.md), written out: Kubernetes' would differ
  // (its readiness period is 10 s).
  o["periodSeconds"] =
      p.has_period_seconds() ? p.period_seconds() : (readiness ? 1 : 10);
  o["timeoutSeconds"] = p.has_timeout_seconds() ? p.timeout_seconds() : 1;
  o["failureThreshold"] = p.has_failure_threshold() ? p.failure_threshold() : 3;
  o["successThreshold"] = p.has_success_threshold() ? p.success_threshold() : 1;
  return o;
}

json::object Container(const Template& t) {
  const int32_t port = PortOf(t);
  json::object c{{"name", "app"}, {"image", t.image()}};
  if (!t.command().empty()) {
    json::array a;
    for (const auto& s : t.command()) a.push_back(json::value(s));
    c["command"] = std::move(a);
  }
  if (!t.args().empty()) {
    json::array a;
    for (const auto& s : t.args()) a.push_back(json::value(s));
    c["args"] = std::move(a);
  }
  // $PORT first, as a local instance gets it.
  json::array env{
      json::object{{"name", "PORT"}, {"value", absl::StrCat(port)}}};
  for (const auto& e : t.env()) {
    if (e.value_from().has_secret_key_ref()) {
      // A reference to the Kubernetes Secret of the same name in the Pod's
      // namespace (docs/secrets.md): the value never enters the Pod
      // template, the Deployment or tidald.
      const auto& ref = e.value_from().secret_key_ref();
      json::object sel{{"name", ref.name()}, {"key", ref.key()}};
      if (ref.optional()) sel["optional"] = true;
      env.push_back(json::object{
          {"name", e.name()},
          {"valueFrom", json::object{{"secretKeyRef", std::move(sel)}}}});
      continue;
    }
    env.push_back(json::object{{"name", e.name()}, {"value", e.value()}});
  }
  c["env"] = std::move(env);
  if (!t.working_dir().empty()) c["workingDir"] = t.working_dir();
  c["ports"] = json::array{json::object{
      {"name", PortName(t)}, {"containerPort", port}, {"protocol", "TCP"}}};
  // A template without a readiness probe is ready once its port accepts
  // connections, as a local instance is.
  c["readinessProbe"] = ProbeJson(
      t.has_readiness_probe() ? t.readiness_probe() : Probe(), port, true);
  if (t.has_liveness_probe()) {
    c["livenessProbe"] = ProbeJson(t.liveness_probe(), port, false);
  }
  json::object amounts;
  if (t.resources().cpu_millis() > 0) {
    amounts["cpu"] = absl::StrCat(t.resources().cpu_millis(), "m");
  }
  if (t.resources().memory_bytes() > 0) {
    amounts["memory"] = absl::StrCat(t.resources().memory_bytes());
  }
  if (!amounts.empty()) {
    // Requests equal to limits: what the process runtime's cgroup gives.
    c["resources"] = json::object{{"requests", amounts}, {"limits", amounts}};
  }
  return c;
}

absl::Time ParseTimestamp(const std::string& text) {
  absl::Time t;
  std::string err;
  if (text.empty() || !absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return absl::InfinitePast();
  }
  return t;
}

// Waiting reasons of a container that cannot start at all: the instance is
// Failed (the deployer fails the release at once).
bool CannotStart(const std::string& reason) {
  return reason == "ImagePullBackOff" || reason == "ErrImagePull" ||
         reason == "InvalidImageName" ||
         reason == "CreateContainerConfigError" ||
         reason == "CreateContainerError";
}

}  // namespace

std::string ManagedSelector() {
  return absl::StrCat(kLabelManagedBy, "=", kManagedBy);
}

std::string RevisionName(const std::string& ns, const std::string& app,
                         const std::string& template_hash) {
  std::string base = absl::AsciiStrToLower(app);
  for (char& c : base) {
    if (!absl::ascii_isalnum(c)) c = '-';
  }
  // 63 = base + '-' + 10 hex; a DNS-1035 label starts with a letter.
  if (base.empty() || !absl::ascii_isalpha(base[0])) base = "t-" + base;
  if (base.size() > 52) base.resize(52);
  while (!base.empty() && base.back() == '-') base.pop_back();
  return absl::StrCat(base, "-",
                      Hex40(absl::StrCat(ns, "/", app, "/", template_hash)));
}

absl::StatusOr<std::string> DeploymentManifest(const InstanceRequest& req,
                                               const std::string& name) {
  const Template& t = req.tmpl;
  if (t.image().empty()) {
    return absl::InvalidArgumentError(
        "spec.template.image: required: instances run as Kubernetes Pods "
        "(tidald --runtime=kubernetes)");
  }
  json::object pod_labels;
  for (const auto& [k, v] : t.labels()) pod_labels[k] = v;
  for (const auto& [k, v] : Labels(req)) pod_labels[k] = v;
  json::object pod_spec{
      {"containers", json::array{Container(t)}},
      {"terminationGracePeriodSeconds",
       t.has_termination_grace_period_seconds()
           ? t.termination_grace_period_seconds()
           : int64_t{30}},
      // Instances find each other through Tidal's gateway, not through the
      // docker-link variables of every Service in the namespace.
      {"enableServiceLinks", false}};
  json::object pod_meta{{"labels", pod_labels}};
  if (!t.annotations().empty()) {
    json::object pod_annotations;
    for (const auto& [k, v] : t.annotations()) pod_annotations[k] = v;
    pod_meta["annotations"] = std::move(pod_annotations);
  }
  json::object spec{
      {"selector", json::object{{"matchLabels", Selector(req)}}},
      // Stops are Tidal's (a Pod is deleted before the scale goes down);
      // the Deployment never replaces a revision's template in place.
      {"strategy", json::object{{"type", "Recreate"}}},
      {"template",
       json::object{{"metadata", std::move(pod_meta)}, {"spec", pod_spec}}}};
  json::value d = json::object{{"apiVersion", "apps/v1"},
                               {"kind", "Deployment"},
                               {"metadata", Metadata(req, name)},
                               {"spec", spec}};
  return json::serialize(d);
}

std::string ServiceManifest(const InstanceRequest& req,
                            const std::string& name) {
  const int32_t port = PortOf(req.tmpl);
  json::value s = json::object{
      {"apiVersion", "v1"},
      {"kind", "Service"},
      {"metadata", Metadata(req, name)},
      {"spec", json::object{{"clusterIP", "None"},
                            {"selector", Selector(req)},
                            {"ports", json::array{json::object{
                                          {"name", PortName(req.tmpl)},
                                          {"port", port},
                                          {"targetPort", port},
                                          {"protocol", "TCP"}}}}}}};
  return json::serialize(s);
}

absl::StatusOr<PodView> PodToInstance(const std::string& pod_json) {
  absl::StatusOr<json::value> parsed = ParseJson(pod_json);
  if (!parsed.ok()) return parsed.status();
  const json::value& pod = *parsed;
  PodView view;
  tidal::v1::Instance& inst = view.instance;
  inst.set_id(GetString(pod, {"metadata", "name"}));
  view.uid = GetString(pod, {"metadata", "uid"});
  inst.set_namespace_(GetString(pod, {"metadata", "labels", kLabelNamespace}));
  inst.set_app(GetString(pod, {"metadata", "labels", kLabelApp}));
  inst.set_template_hash(
      GetString(pod, {"metadata", "labels", kLabelTemplateHash}));
  if (inst.id().empty() || inst.namespace_().empty() || inst.app().empty() ||
      inst.template_hash().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pod \"", inst.id(), "\" lacks Tidal's labels"));
  }
  view.deployment =
      RevisionName(inst.namespace_(), inst.app(), inst.template_hash());
  int64_t revision = 0;
  const std::string rev =
      GetString(pod, {"metadata", "labels", kLabelRevision});
  for (char c : rev) {
    if (c < '0' || c > '9') break;
    revision = revision * 10 + (c - '0');
  }
  inst.set_revision(revision);
  inst.set_host(GetString(pod, {"status", "podIP"}));
  inst.set_port(kDefaultPort);
  const json::value* containers = Find(pod, {"spec", "containers"});
  if (containers != nullptr && containers->is_array() &&
      !containers->get_array().empty()) {
    const json::value& c = containers->get_array()[0];
    if (const json::value* ports = Find(c, {"ports"});
        ports && ports->is_array() && !ports->get_array().empty()) {
      inst.set_port(static_cast<int32_t>(
          GetInt(ports->get_array()[0], {"containerPort"}, kDefaultPort)));
    }
  }
  const absl::Time created =
      ParseTimestamp(GetString(pod, {"metadata", "creationTimestamp"}));
  if (created != absl::InfinitePast()) {
    *inst.mutable_start_time() = ToProtoTime(created);
  }
  bool ready = false;
  if (const json::value* cs = Find(pod, {"status", "conditions"});
      cs && cs->is_array()) {
    for (const json::value& c : cs->get_array()) {
      if (GetString(c, {"type"}) != "Ready") continue;
      ready = GetString(c, {"status"}) == "True";
      const absl::Time at =
          ParseTimestamp(GetString(c, {"lastTransitionTime"}));
      if (ready && at != absl::InfinitePast()) {
        *inst.mutable_ready_time() = ToProtoTime(at);
      }
    }
  }
  int32_t restarts = 0;
  std::string waiting, waiting_message, terminated;
  if (const json::value* ss = Find(pod, {"status", "containerStatuses"});
      ss && ss->is_array()) {
    for (const json::value& s : ss->get_array()) {
      restarts += static_cast<int32_t>(GetInt(s, {"restartCount"}));
      const std::string w = GetString(s, {"state", "waiting", "reason"});
      if (!w.empty() && waiting.empty()) {
        waiting = w;
        waiting_message = GetString(s, {"state", "waiting", "message"});
      }
      std::string t = GetString(s, {"state", "terminated", "reason"});
      if (t.empty()) t = GetString(s, {"lastState", "terminated", "reason"});
      if (!t.empty() && terminated.empty()) terminated = t;
    }
  }
  inst.set_restarts(restarts);
  const std::string phase = GetString(pod, {"status", "phase"});
  const json::value* deletion = Find(pod, {"metadata", "deletionTimestamp"});
  view.deleting = deletion != nullptr && !deletion->is_null();
  if (view.deleting) {
    inst.set_phase("Terminating");
  } else if (phase == "Failed" || phase == "Succeeded" ||
             CannotStart(waiting)) {
    inst.set_phase("Failed");
  } else if (waiting == "CrashLoopBackOff") {
    inst.set_phase("CrashLoopBackOff");
  } else if (phase == "Running") {
    inst.set_phase("Running");
  } else {
    inst.set_phase("Starting");
  }
  inst.set_ready(ready && !view.deleting);
  // The reason users need: why it cannot start, else why it last stopped
  // (OOMKilled), else why it waits.
  if (CannotStart(waiting)) {
    inst.set_reason(waiting);
    inst.set_message(waiting_message);
  } else if (!terminated.empty() && terminated != "Completed") {
    inst.set_reason(terminated);
    inst.set_message(waiting_message);
  } else if (!waiting.empty() && waiting != "ContainerCreating") {
    inst.set_reason(waiting);
    inst.set_message(waiting_message);
  } else if (phase == "Failed") {
    inst.set_reason(GetString(pod, {"status", "reason"}, "Failed"));
    inst.set_message(GetString(pod, {"status", "message"}));
  }
  return view;
}

}  // namespace tidal::kube
