#include "fakes/kube_emulator.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "runtime/kubernetes/kube_json.h"
#include "runtime/log_stream.h"

namespace tidal::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
namespace json = boost::json;
using kube::Find;
using kube::GetInt;
using kube::GetString;

namespace {

struct Event {
  int64_t rv;
  std::string plural;
  std::string ns;
  std::string type;
  json::value object;
};

// The Pod's Ready condition is True.
bool PodReady(const json::value& pod) {
  bool ready = false;
  if (const json::value* cs = Find(pod, {"status", "conditions"});
      cs && cs->is_array()) {
    for (const json::value& c : cs->get_array()) {
      if (GetString(c, {"type"}) == "Ready") {
        ready = GetString(c, {"status"}) == "True";
      }
    }
  }
  return ready;
}

std::string Now() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(),
                          absl::UTCTimeZone());
}

json::value StatusObject(int code, const std::string& reason,
                         const std::string& message) {
  return json::object{
      {"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object{}},
      {"status", "Failure"}, {"message", message}, {"reason", reason},
      {"code", code}};
}

// labelSelector "a=b,c!=d,e,!f".
bool Matches(const json::value& obj, const std::string& selector) {
  if (selector.empty()) return true;
  const json::value* labels = Find(obj, {"metadata", "labels"});
  auto label = [&](const std::string& k) -> const json::value* {
    if (labels == nullptr || !labels->is_object()) return nullptr;
    return labels->get_object().if_contains(k);
  };
  for (absl::string_view term : absl::StrSplit(selector, ',')) {
    std::string t(term);
    size_t p;
    if ((p = t.find("!=")) != std::string::npos) {
      const json::value* v = label(t.substr(0, p));
      if (v != nullptr && v->is_string() && v->get_string() == t.substr(p + 2))
        return false;
    } else if ((p = t.find('=')) != std::string::npos) {
      std::string val = t.substr(t[p + 1] == '=' ? p + 2 : p + 1);
      const json::value* v = label(t.substr(0, p));
      if (v == nullptr || !v->is_string() || v->get_string() != val)
        return false;
    } else if (!t.empty() && t[0] == '!') {
      if (label(t.substr(1)) != nullptr) return false;
    } else if (label(t) == nullptr) {
      return false;
    }
  }
  return true;
}

// Kubernetes' "safe" alphabet for generated names.
constexpr char kAlphabet[] = "bcdfghjklmnpqrstvwxz2456789";

std::string TemplateHash(const json::value& tmpl) {
  uint32_t h = 2166136261u;
  for (char c : json::serialize(tmpl)) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619u;
  }
  std::string out;
  do {
    out += kAlphabet[h % 27];
    h /= 27;
  } while (h != 0);
  return out;
}

}  // namespace

struct KubeEmulator::State {
  mutable absl::Mutex mu;
  // Deployments and pods by "plural/ns/name".
  std::map<std::string, json::value> objects ABSL_GUARDED_BY(mu);
  // PodMetrics (metrics.k8s.io/v1beta1) by "pods/ns/name".
  std::map<std::string, json::value> metrics ABSL_GUARDED_BY(mu);
  // Pod output by "pods/ns/name".
  std::map<std::string, std::string> logs ABSL_GUARDED_BY(mu);
  // The previous container's output (a restart moved it here), same keys.
  std::map<std::string, std::string> previous_logs ABSL_GUARDED_BY(mu);
  std::vector<Event> events ABSL_GUARDED_BY(mu);
  std::vector<RecordedRequest> requests ABSL_GUARDED_BY(mu);
  int64_t rv ABSL_GUARDED_BY(mu) = 0;
  int64_t compacted ABSL_GUARDED_BY(mu) = 0;
  int64_t bookmark_gen ABSL_GUARDED_BY(mu) = 0;
  int64_t drop_gen ABSL_GUARDED_BY(mu) = 0;
  // Not listening (GoDown): a stream that began as the listener closed
  // ends too, whatever drop_gen it saw.
  bool down ABSL_GUARDED_BY(mu) = false;
  int watches ABSL_GUARDED_BY(mu) = 0;
  int throttle ABSL_GUARDED_BY(mu) = 0;
  int retry_after ABSL_GUARDED_BY(mu) = 1;
  int fail ABSL_GUARDED_BY(mu) = 0;
  int fail_code ABSL_GUARDED_BY(mu) = 0;
  std::string fail_reason ABSL_GUARDED_BY(mu);
  std::string fail_message ABSL_GUARDED_BY(mu);
  std::string fail_only ABSL_GUARDED_BY(mu);  // FailNext's `only`
  std::string token ABSL_GUARDED_BY(mu);
  int64_t uids ABSL_GUARDED_BY(mu) = 0;
  int64_t ips ABSL_GUARDED_BY(mu) = 0;
  uint64_t rand ABSL_GUARDED_BY(mu) = 12345;
  bool stopping ABSL_GUARDED_BY(mu) = false;

  asio::io_context io;
  tcp::acceptor acceptor{io};
  int port = 0;
  std::thread accept_thread;
  std::mutex threads_mu;
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<tcp::socket>> sockets;

  static std::string Key(const std::string& plural, const std::string& ns,
                         const std::string& name) {
    return absl::StrCat(plural, "/", ns, "/", name);
  }

  std::string NextUid() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    char buf[64];
    snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012lld",
             static_cast<long long>(++uids));
    return buf;
  }

  std::string RandomSuffix() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::string s;
    for (int i = 0; i < 5; ++i) {
      rand = rand * 6364136223846793005ull + 1442695040888963407ull;
      s += kAlphabet[(rand >> 33) % 27];
    }
    return s;
  }

  // Stores `obj` under a new resourceVersion and records the event.
  void Put(const std::string& plural, const std::string& type, json::value obj)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ++rv;
    json::object& meta = obj.as_object()["metadata"].as_object();
    meta["resourceVersion"] = absl::StrCat(rv);
    const std::string ns = GetString(obj, {"metadata", "namespace"});
    const std::string key =
        Key(plural, ns, GetString(obj, {"metadata", "name"}));
    if (type == "DELETED") {
      objects.erase(key);
    } else {
      objects[key] = obj;
    }
    const std::string owner =
        plural == "pods" ? GetString(obj, {"metadata", "annotations",
                                           "emulator.tidal.dev/deployment"})
                         : "";
    events.push_back(Event{rv, plural, ns, type, std::move(obj)});
    if (!owner.empty()) UpdateSlice(ns, owner);
  }

  // The EndpointSlice of a Deployment's Pods (as if a Service named after
  // it selected them): an endpoint per Pod with an IP.
  void UpdateSlice(const std::string& ns, const std::string& deployment)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const std::string name =
        absl::StrCat(deployment, "-", TemplateHash(json::value(deployment)));
    const std::string key = Key("endpointslices", ns, name);
    auto old = objects.find(key);
    auto dep = objects.find(Key("deployments", ns, deployment));
    if (dep == objects.end()) {
      if (old != objects.end()) Put("endpointslices", "DELETED", old->second);
      return;
    }
    json::array endpoints;
    for (const std::string& p : PodsOfLocked(ns, deployment)) {
      const json::value& pod = objects[Key("pods", ns, p)];
      const std::string ip = GetString(pod, {"status", "podIP"});
      if (ip.empty()) continue;
      const bool ready = PodReady(pod);
      endpoints.push_back(json::object{
          {"addresses", json::array{json::value(ip)}},
          {"conditions",
           json::object{
               {"ready", ready}, {"serving", ready}, {"terminating", false}}},
          {"nodeName", "emulator-node"},
          {"targetRef",
           json::object{{"kind", "Pod"},
                        {"namespace", ns},
                        {"name", p},
                        {"uid", GetString(pod, {"metadata", "uid"})}}}});
    }
    json::array ports;
    if (const json::value* cs =
            Find(dep->second, {"spec", "template", "spec", "containers"});
        cs && cs->is_array() && !cs->get_array().empty()) {
      if (const json::value* ps = Find(cs->get_array()[0], {"ports"});
          ps && ps->is_array()) {
        for (const json::value& port : ps->get_array()) {
          ports.push_back(
              json::object{{"name", GetString(port, {"name"})},
                           {"port", GetInt(port, {"containerPort"})},
                           {"protocol", GetString(port, {"protocol"}, "TCP")}});
        }
      }
    }
    json::object labels;
    if (const json::value* l = Find(dep->second, {"metadata", "labels"});
        l && l->is_object()) {
      labels = l->get_object();
    }
    labels["kubernetes.io/service-name"] = deployment;
    labels["endpointslice.kubernetes.io/managed-by"] =
        "endpointslice-controller.k8s.io";
    json::value slice = json::object{
        {"kind", "EndpointSlice"},
        {"apiVersion", "discovery.k8s.io/v1"},
        {"metadata",
         json::object{{"name", name},
                      {"namespace", ns},
                      {"uid", old != objects.end()
                                  ? json::value(GetString(old->second,
                                                          {"metadata", "uid"}))
                                  : json::value(NextUid())},
                      {"labels", labels}}},
        {"addressType", "IPv4"},
        {"endpoints", endpoints},
        {"ports", ports}};
    if (old != objects.end()) {
      json::value cmp = old->second;
      cmp.as_object()["metadata"].as_object().erase("resourceVersion");
      if (cmp == slice) return;
    }
    Put("endpointslices", old == objects.end() ? "ADDED" : "MODIFIED",
        std::move(slice));
  }

  std::vector<std::string> PodsOfLocked(const std::string& ns,
                                        const std::string& deployment) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::vector<std::string> out;
    const std::string prefix = Key("pods", ns, "");
    for (auto it = objects.lower_bound(prefix);
         it != objects.end() && it->first.rfind(prefix, 0) == 0; ++it) {
      if (GetString(it->second, {"metadata", "annotations",
                                 "emulator.tidal.dev/deployment"}) ==
          deployment) {
        out.push_back(GetString(it->second, {"metadata", "name"}));
      }
    }
    return out;
  }

  // The Deployment controller: spec.replicas Pods of the current template.
  void Reconcile(const std::string& ns, const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = objects.find(Key("deployments", ns, name));
    std::vector<std::string> pods = PodsOfLocked(ns, name);
    if (it == objects.end()) {
      for (const std::string& p : pods) {
        Put("pods", "DELETED", objects[Key("pods", ns, p)]);
      }
      return;
    }
    const json::value dep = it->second;
    const json::value* tmpl = Find(dep, {"spec", "template"});
    json::value tv = tmpl ? *tmpl : json::value(json::object{});
    const std::string hash = TemplateHash(tv);
    const int64_t want = GetInt(dep, {"spec", "replicas"}, 1);
    std::vector<std::string> current;
    for (const std::string& p : pods) {
      const json::value& pod = objects[Key("pods", ns, p)];
      if (GetString(pod, {"metadata", "labels", "pod-template-hash"}) != hash) {
        Put("pods", "DELETED", pod);
      } else {
        current.push_back(p);
      }
    }
    if (static_cast<int64_t>(current.size()) > want) {
      // As a ReplicaSet ranks Pods to delete: not ready before ready, then
      // the newest first (uids here grow with creation).
      auto rank = [&](const std::string& p) {
        mu.AssertHeld();  // called under Reconcile's lock
        const json::value& pod = objects[Key("pods", ns, p)];
        return std::make_pair(PodReady(pod),
                              GetString(pod, {"metadata", "uid"}));
      };
      std::sort(current.begin(), current.end(),
                [&](const std::string& a, const std::string& b) {
                  auto ra = rank(a), rb = rank(b);
                  if (ra.first != rb.first) return !ra.first;
                  return ra.second > rb.second;
                });
    }
    while (static_cast<int64_t>(current.size()) > want) {
      Put("pods", "DELETED", objects[Key("pods", ns, current.front())]);
      current.erase(current.begin());
    }
    while (static_cast<int64_t>(current.size()) < want) {
      json::object labels;
      if (const json::value* l = Find(tv, {"metadata", "labels"});
          l && l->is_object()) {
        labels = l->get_object();
      }
      labels["pod-template-hash"] = hash;
      const std::string rs = absl::StrCat(name, "-", hash);
      const std::string pod_name = absl::StrCat(rs, "-", RandomSuffix());
      json::object spec;
      if (const json::value* s = Find(tv, {"spec"}); s && s->is_object()) {
        spec = s->get_object();
      }
      spec["nodeName"] = "emulator-node";
      json::object pod{
          {"kind", "Pod"},
          {"apiVersion", "v1"},
          {"metadata",
           json::object{
               {"name", pod_name},
               {"namespace", ns},
               {"uid", NextUid()},
               {"creationTimestamp", Now()},
               {"labels", labels},
               {"annotations",
                json::object{{"emulator.tidal.dev/deployment", name}}},
               {"ownerReferences",
                json::array{json::object{{"apiVersion", "apps/v1"},
                                         {"kind", "ReplicaSet"},
                                         {"name", rs},
                                         {"uid", NextUid()},
                                         {"controller", true},
                                         {"blockOwnerDeletion", true}}}}}},
          {"spec", spec},
          {"status",
           json::object{
               {"phase", "Pending"},
               {"conditions",
                json::array{
                    json::object{{"type", "PodScheduled"}, {"status", "True"}},
                    json::object{{"type", "Ready"}, {"status", "False"}},
                    json::object{{"type", "ContainersReady"},
                                 {"status", "False"}}}}}}};
      Put("pods", "ADDED", pod);
      current.push_back(pod_name);
    }
  }
};

KubeEmulator::KubeEmulator(KubeEmulatorOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  absl::MutexLock lock(&state_->mu);
  state_->token = options_.token;
}

KubeEmulator::~KubeEmulator() {
  {
    absl::MutexLock lock(&state_->mu);
    state_->stopping = true;
  }
  StopListening();
}

void KubeEmulator::StopListening() {
  State& s = *state_;
  {
    absl::MutexLock lock(&s.mu);
    s.down = true;
  }
  boost::system::error_code ec;
  if (s.acceptor.is_open()) {
    ::shutdown(s.acceptor.native_handle(), SHUT_RDWR);
  }
  if (s.accept_thread.joinable()) s.accept_thread.join();
  s.acceptor.close(ec);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(s.threads_mu);
    for (auto& sock : s.sockets) ::shutdown(sock->native_handle(), SHUT_RDWR);
    threads.swap(s.threads);
    s.sockets.clear();
  }
  for (std::thread& t : threads) t.join();
}

void KubeEmulator::GoDown() {
  {
    absl::MutexLock lock(&state_->mu);
    ++state_->drop_gen;  // open watches and followed logs end
  }
  StopListening();
}

absl::Status KubeEmulator::ComeBack() { return Listen(state_->port); }

int KubeEmulator::port() const { return state_->port; }

std::string KubeEmulator::url() const {
  return absl::StrCat("http://127.0.0.1:", state_->port);
}

namespace {

using Request = http::request<http::string_body>;

void WriteJson(tcp::socket& sock, int code, const json::value& body,
               int retry_after = 0) {
  http::response<http::string_body> res{static_cast<http::status>(code), 11};
  res.set(http::field::content_type, "application/json");
  if (retry_after > 0)
    res.set(http::field::retry_after, std::to_string(retry_after));
  res.keep_alive(false);
  res.body() = json::serialize(body);
  res.prepare_payload();
  boost::system::error_code ec;
  http::write(sock, res, ec);
}

struct Target {
  std::string path;
  std::map<std::string, std::string> query;
};

std::string Unescape(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() + 0 && i + 2 <= s.size() - 1 + 0) {
      int v = 0;
      if (absl::SimpleHexAtoi(s.substr(i + 1, 2), &v)) {
        out += static_cast<char>(v);
        i += 2;
        continue;
      }
    }
    out += s[i] == '+' ? ' ' : s[i];
  }
  return out;
}

Target ParseTarget(absl::string_view t) {
  Target out;
  size_t q = t.find('?');
  out.path = std::string(t.substr(0, q));
  if (q != absl::string_view::npos) {
    for (absl::string_view kv : absl::StrSplit(t.substr(q + 1), '&')) {
      size_t eq = kv.find('=');
      if (eq == absl::string_view::npos) {
        out.query[Unescape(kv)] = "";
      } else {
        out.query[Unescape(kv.substr(0, eq))] = Unescape(kv.substr(eq + 1));
      }
    }
  }
  return out;
}

}  // namespace

absl::Status KubeEmulator::Start() { return Listen(0); }

absl::Status KubeEmulator::Listen(int port) {
  State& s = *state_;
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"),
                   static_cast<uint16_t>(port));
  s.acceptor.open(ep.protocol(), ec);
  if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(ep, ec);
  if (!ec) s.acceptor.listen(64, ec);
  if (ec) return absl::UnavailableError("emulator listen: " + ec.message());
  s.port = s.acceptor.local_endpoint().port();
  {
    absl::MutexLock lock(&s.mu);
    s.down = false;
  }
  s.accept_thread = std::thread([this] {
    State& s = *state_;
    for (;;) {
      auto sock = std::make_shared<tcp::socket>(s.io);
      boost::system::error_code ec;
      s.acceptor.accept(*sock, ec);
      if (ec) return;
      std::lock_guard<std::mutex> lock(s.threads_mu);
      s.sockets.push_back(sock);
      s.threads.emplace_back([this, sock] { Serve(sock); });
    }
  });
  return absl::OkStatus();
}

void KubeEmulator::Serve(std::shared_ptr<void> socket) {
  State& s = *state_;
  tcp::socket& sock = *std::static_pointer_cast<tcp::socket>(socket);
  beast::flat_buffer buf;
  Request req;
  boost::system::error_code ec;
  http::read(sock, buf, req, ec);
  if (ec) return;
  const std::string method(req.method_string());
  const Target target = ParseTarget(std::string(req.target()));
  RecordedRequest rec{method,
                      std::string(req.target()),
                      std::string(req[http::field::content_type]),
                      std::string(req[http::field::accept]),
                      std::string(req[http::field::authorization]),
                      req.body()};

  absl::ReleasableMutexLock lock(&s.mu);
  s.requests.push_back(rec);
  // Answers and gives up the lock (clang cannot follow the scoped lock into
  // a lambda).
  auto reply = [&](int code, const json::value& body, int retry_after = 0)
                   ABSL_NO_THREAD_SAFETY_ANALYSIS {
                     lock.Release();
                     WriteJson(sock, code, body, retry_after);
                   };
  if (!s.token.empty() && rec.authorization != "Bearer " + s.token) {
    return reply(401, StatusObject(401, "Unauthorized", "Unauthorized"));
  }
  if (s.throttle > 0) {
    --s.throttle;
    return reply(429,
                 StatusObject(429, "TooManyRequests",
                              "Too many requests, please try again later."),
                 s.retry_after);
  }
  if (s.fail > 0 &&
      absl::StrContains(absl::StrCat(method, " ", rec.target), s.fail_only)) {
    --s.fail;
    return reply(s.fail_code,
                 StatusObject(s.fail_code, s.fail_reason, s.fail_message));
  }
  // /api/v1/namespaces/NS/pods[/NAME] or /apis/apps/v1/namespaces/NS/
  // deployments[/NAME[/scale]].
  std::vector<std::string> segs =
      absl::StrSplit(target.path, '/', absl::SkipEmpty());
  size_t at = 0;
  std::string api_version;
  if (segs.size() > 2 && segs[0] == "api") {
    api_version = segs[1];
    at = 2;
  } else if (segs.size() > 3 && segs[0] == "apis") {
    api_version = segs[1] + "/" + segs[2];
    at = 3;
  }
  auto not_found = [&](const std::string& what) {
    return reply(404, StatusObject(404, "NotFound", what));
  };
  if (at == 0 || segs.size() < at + 3 || segs[at] != "namespaces") {
    return not_found("the server could not find the requested resource");
  }
  const std::string ns = segs[at + 1];
  const std::string plural = segs[at + 2];
  const std::string name = segs.size() > at + 3 ? segs[at + 3] : "";
  const std::string sub = segs.size() > at + 4 ? segs[at + 4] : "";
  const bool is_dep = plural == "deployments" && api_version == "apps/v1";
  const bool is_pod = plural == "pods" && api_version == "v1";
  const bool is_slice =
      plural == "endpointslices" && api_version == "discovery.k8s.io/v1";
  const bool is_svc = plural == "services" && api_version == "v1";
  if (plural == "pods" && api_version == "metrics.k8s.io/v1beta1") {
    // The resource metrics API (metrics-server): list only.
    if (method != "GET" || segs.size() != at + 3) {
      return not_found("the server could not find the requested resource");
    }
    const std::string selector = target.query.count("labelSelector") > 0
                                     ? target.query.at("labelSelector")
                                     : std::string();
    json::array items;
    const std::string prefix = State::Key("pods", ns, "");
    for (auto it = s.metrics.lower_bound(prefix);
         it != s.metrics.end() && it->first.rfind(prefix, 0) == 0; ++it) {
      if (s.objects.count(it->first) > 0 && Matches(it->second, selector)) {
        items.push_back(it->second);
      }
    }
    return reply(200, json::object{{"kind", "PodMetricsList"},
                                   {"apiVersion", "metrics.k8s.io/v1beta1"},
                                   {"metadata", json::object{}},
                                   {"items", items}});
  }
  if (is_slice && method != "GET") {
    return reply(405, StatusObject(405, "MethodNotAllowed",
                                   "endpointslices are read-only here"));
  }
  if ((!is_dep && !is_pod && !is_slice && !is_svc) ||
      (!sub.empty() && !(is_dep && sub == "scale") &&
       !(is_pod && sub == "log"))) {
    return not_found("the server could not find the requested resource");
  }
  const std::string kind =
      is_dep ? "Deployment"
             : (is_pod ? "Pod" : (is_svc ? "Service" : "EndpointSlice"));
  const std::string group_res =
      is_dep
          ? "deployments.apps"
          : (is_pod
                 ? "pods"
                 : (is_svc ? "services" : "endpointslices.discovery.k8s.io"));
  const std::string key = State::Key(plural, ns, name);
  auto get_q = [&](const std::string& k) {
    auto it = target.query.find(k);
    return it == target.query.end() ? std::string() : it->second;
  };
  auto missing = [&] {
    return not_found(absl::StrCat(group_res, " \"", name, "\" not found"));
  };
  auto conflict = [&](const std::string& msg) {
    return reply(409, StatusObject(409, "Conflict", msg));
  };
  const std::string modified = absl::StrCat(
      "Operation cannot be fulfilled on ", group_res, " \"", name,
      "\": the object has been modified; please apply your changes to the "
      "latest version and try again");

  // Collection: list or watch.
  if (name.empty() && method == "GET") {
    const std::string selector = get_q("labelSelector");
    const std::string watch = get_q("watch");
    if (watch != "true" && watch != "1") {
      json::array items;
      const std::string prefix = State::Key(plural, ns, "");
      for (auto it = s.objects.lower_bound(prefix);
           it != s.objects.end() && it->first.rfind(prefix, 0) == 0; ++it) {
        if (Matches(it->second, selector)) items.push_back(it->second);
      }
      return reply(
          200, json::object{{"kind", kind + "List"},
                            {"apiVersion", api_version},
                            {"metadata", json::object{{"resourceVersion",
                                                       absl::StrCat(s.rv)}}},
                            {"items", items}});
    }
    // Watch: chunked newline-delimited events.
    int64_t from = 0;
    const std::string rv_q = get_q("resourceVersion");
    const bool bookmarks = get_q("allowWatchBookmarks") == "true";
    int64_t timeout_s = 0;
    (void)absl::SimpleAtoi(get_q("timeoutSeconds"), &timeout_s);
    const absl::Time deadline = timeout_s > 0
                                    ? absl::Now() + absl::Seconds(timeout_s)
                                    : absl::InfiniteFuture();
    std::vector<std::string> out;  // lines to write, built under the lock
    auto line = [&](const std::string& type, const json::value& obj) {
      out.push_back(
          json::serialize(json::object{{"type", type}, {"object", obj}}) +
          "\n");
    };
    bool gone = false;
    if (rv_q.empty() || rv_q == "0") {
      // Every current object as ADDED first.
      const std::string prefix = State::Key(plural, ns, "");
      for (auto it = s.objects.lower_bound(prefix);
           it != s.objects.end() && it->first.rfind(prefix, 0) == 0; ++it) {
        if (Matches(it->second, selector)) line("ADDED", it->second);
      }
      from = s.rv;
    } else if (!absl::SimpleAtoi(rv_q, &from)) {
      return reply(400, StatusObject(400, "BadRequest",
                                     "invalid resourceVersion " + rv_q));
    } else if (from < s.compacted) {
      gone = true;
      line("ERROR", StatusObject(410, "Expired",
                                 absl::StrCat("too old resource version: ",
                                              from, " (", s.compacted, ")")));
    }
    ++s.watches;
    const int64_t drop_gen = s.drop_gen;
    int64_t bookmark_gen = s.bookmark_gen;
    absl::Time next_bookmark = options_.bookmark_interval > absl::ZeroDuration()
                                   ? absl::Now() + options_.bookmark_interval
                                   : absl::InfiniteFuture();
    lock.Release();

    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "application/json");
    res.chunked(true);
    res.keep_alive(false);
    http::response_serializer<http::empty_body> sr{res};
    http::write_header(sock, sr, ec);
    bool dropped = false;
    size_t next_event = 0;
    while (!ec) {
      for (const std::string& l : out) {
        asio::write(sock, http::make_chunk(asio::buffer(l)), ec);
        if (ec) break;
      }
      out.clear();
      if (ec || gone) break;
      absl::MutexLock l2(&s.mu);
      auto ready = [&] {
        s.mu.AssertHeld();  // Await calls it with the lock held
        return s.stopping || s.down || s.drop_gen != drop_gen ||
               s.bookmark_gen != bookmark_gen ||
               (!s.events.empty() && s.events.back().rv > from);
      };
      const absl::Time wake = std::min(deadline, next_bookmark);
      while (!ready() && absl::Now() < wake) {
        s.mu.AwaitWithDeadline(absl::Condition(&ready), wake);
      }
      if (s.stopping || s.down || s.drop_gen != drop_gen) {
        dropped = true;
        break;
      }
      for (; next_event < s.events.size(); ++next_event) {
        const Event& e = s.events[next_event];
        if (e.rv <= from) continue;
        from = e.rv;
        if (e.plural == plural && e.ns == ns && Matches(e.object, selector)) {
          line(e.type, e.object);
        }
      }
      const bool want_bookmark =
          s.bookmark_gen != bookmark_gen || absl::Now() >= next_bookmark;
      bookmark_gen = s.bookmark_gen;
      if (want_bookmark && bookmarks) {
        line("BOOKMARK",
             json::object{{"kind", kind},
                          {"apiVersion", api_version},
                          {"metadata", json::object{{"resourceVersion",
                                                     absl::StrCat(s.rv)}}}});
        from = std::max(from, s.rv);
      }
      if (absl::Now() >= next_bookmark) {
        next_bookmark = absl::Now() + options_.bookmark_interval;
      }
      if (out.empty() && absl::Now() >= deadline) break;
    }
    if (!dropped && !ec) asio::write(sock, http::make_chunk_last(), ec);
    absl::MutexLock l3(&s.mu);
    --s.watches;
    if (dropped) ::shutdown(sock.native_handle(), SHUT_RDWR);
    return;
  }

  auto it = s.objects.find(key);
  if (sub == "log") {
    if (it == s.objects.end()) return missing();
    int64_t tail = 0;
    (void)absl::SimpleAtoi(get_q("tailLines"), &tail);
    if (get_q("previous") == "true") {
      // The kubelet's log of the container's last terminated run; 400 when
      // it has not restarted (the API server's words).
      auto prev = s.previous_logs.find(key);
      if (prev == s.previous_logs.end()) {
        return reply(
            400, StatusObject(400, "BadRequest",
                              absl::StrCat("previous terminated container \"",
                                           get_q("container"), "\" in pod \"",
                                           name, "\" not found")));
      }
      std::string text = TailLines(prev->second, tail);
      lock.Release();
      http::response<http::string_body> res{http::status::ok, 11};
      res.set(http::field::content_type, "text/plain");
      res.keep_alive(false);
      res.body() = std::move(text);
      res.prepare_payload();
      http::write(sock, res, ec);
      return;
    }
    const bool follow = get_q("follow") == "true";
    std::string text = TailLines(s.logs[key], tail);
    size_t sent = s.logs[key].size();
    const int64_t drop_gen = s.drop_gen;
    lock.Release();
    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain");
    res.chunked(true);
    res.keep_alive(false);
    http::response_serializer<http::empty_body> sr{res};
    http::write_header(sock, sr, ec);
    bool dropped = false;
    while (!ec) {
      if (!text.empty()) {
        asio::write(sock, http::make_chunk(asio::buffer(text)), ec);
      }
      if (ec || !follow) break;
      absl::MutexLock l2(&s.mu);
      auto ready = [&] {
        s.mu.AssertHeld();  // Await calls it with the lock held
        return s.stopping || s.down || s.drop_gen != drop_gen ||
               s.objects.count(key) == 0 || s.logs[key].size() != sent;
      };
      s.mu.Await(absl::Condition(&ready));
      if (s.stopping || s.down || s.drop_gen != drop_gen) {
        dropped = true;
        break;
      }
      if (s.objects.count(key) == 0) break;  // the pod is gone: log ends
      text = s.logs[key].substr(sent);
      sent = s.logs[key].size();
    }
    if (dropped) {
      ::shutdown(sock.native_handle(), SHUT_RDWR);
    } else if (!ec) {
      asio::write(sock, http::make_chunk_last(), ec);
    }
    return;
  }
  if (method == "GET" && sub.empty()) {
    if (it == s.objects.end()) return missing();
    return reply(200, it->second);
  }
  auto scale_of = [&](const json::value& d) {
    s.mu.AssertHeld();
    std::string selector;
    if (const json::value* m = Find(d, {"spec", "selector", "matchLabels"});
        m && m->is_object()) {
      for (const auto& kv : m->get_object()) {
        if (!selector.empty()) selector += ",";
        absl::StrAppend(&selector, std::string(kv.key()), "=",
                        std::string(kv.value().as_string()));
      }
    }
    return json::object{
        {"kind", "Scale"},
        {"apiVersion", "autoscaling/v1"},
        {"metadata",
         json::object{
             {"name", name},
             {"namespace", ns},
             {"uid", GetString(d, {"metadata", "uid"})},
             {"resourceVersion", GetString(d, {"metadata", "resourceVersion"})},
             {"creationTimestamp",
              GetString(d, {"metadata", "creationTimestamp"})}}},
        {"spec", json::object{{"replicas", GetInt(d, {"spec", "replicas"})}}},
        {"status",
         json::object{{"replicas",
                       static_cast<int64_t>(s.PodsOfLocked(ns, name).size())},
                      {"selector", selector}}}};
  };
  if (sub == "scale") {
    if (it == s.objects.end()) return missing();
    if (method == "GET") return reply(200, scale_of(it->second));
    if (method != "PUT") {
      return reply(405, StatusObject(405, "MethodNotAllowed",
                                     "method not allowed on scale"));
    }
    absl::StatusOr<json::value> body = kube::ParseJson(req.body());
    if (!body.ok() || GetString(*body, {"kind"}) != "Scale") {
      return reply(400,
                   StatusObject(400, "BadRequest",
                                "the body must be an autoscaling/v1 Scale"));
    }
    const std::string want_rv =
        GetString(*body, {"metadata", "resourceVersion"});
    if (!want_rv.empty() &&
        want_rv != GetString(it->second, {"metadata", "resourceVersion"})) {
      return conflict(modified);
    }
    const int64_t replicas = GetInt(*body, {"spec", "replicas"}, -1);
    if (replicas < 0) {
      return reply(422,
                   StatusObject(422, "Invalid", "spec.replicas: must be >= 0"));
    }
    if (replicas != GetInt(it->second, {"spec", "replicas"})) {
      json::value d = it->second;
      d.as_object()["spec"].as_object()["replicas"] = replicas;
      json::object& meta = d.as_object()["metadata"].as_object();
      meta["generation"] = GetInt(d, {"metadata", "generation"}) + 1;
      s.Put("deployments", "MODIFIED", d);
      s.Reconcile(ns, name);
    }
    return reply(200, scale_of(s.objects[key]));
  }
  if (method == "DELETE") {
    if (it == s.objects.end()) return missing();
    absl::StatusOr<json::value> body = req.body().empty()
                                           ? json::value(json::object{})
                                           : kube::ParseJson(req.body());
    if (!body.ok()) {
      return reply(400,
                   StatusObject(400, "BadRequest", "invalid DeleteOptions"));
    }
    const std::string uid = GetString(*body, {"preconditions", "uid"});
    const std::string prv =
        GetString(*body, {"preconditions", "resourceVersion"});
    const std::string have_uid = GetString(it->second, {"metadata", "uid"});
    const std::string have_rv =
        GetString(it->second, {"metadata", "resourceVersion"});
    if (!uid.empty() && uid != have_uid) {
      return conflict(absl::StrCat("Precondition failed: UID in precondition: ",
                                   uid, ", UID in object meta: ", have_uid));
    }
    if (!prv.empty() && prv != have_rv) {
      return conflict(absl::StrCat(
          "Precondition failed: ResourceVersion in precondition: ", prv,
          ", ResourceVersion in object meta: ", have_rv));
    }
    json::value obj = it->second;
    s.Put(plural, "DELETED", obj);
    if (is_dep) {
      if (GetString(*body, {"propagationPolicy"}) != "Orphan") {
        s.Reconcile(ns, name);
      }
      s.UpdateSlice(ns, name);
      return reply(200,
                   json::object{{"kind", "Status"},
                                {"apiVersion", "v1"},
                                {"metadata", json::object{}},
                                {"status", "Success"},
                                {"details", json::object{{"name", name},
                                                         {"group", "apps"},
                                                         {"kind", plural},
                                                         {"uid", have_uid}}}});
    }
    // A pod of a Deployment is replaced.
    const std::string owner = GetString(
        obj, {"metadata", "annotations", "emulator.tidal.dev/deployment"});
    if (!owner.empty()) s.Reconcile(ns, owner);
    return reply(200, obj);
  }
  if (method == "PATCH" && is_svc) {
    // Server-side apply of a Service: created, or its labels, annotations
    // and spec replaced (no cluster IP is allocated: Tidal's are headless).
    if (rec.content_type != "application/apply-patch+yaml" ||
        get_q("fieldManager").empty()) {
      return reply(415, StatusObject(415, "UnsupportedMediaType",
                                     "the emulator only takes server-side "
                                     "apply patches with a fieldManager"));
    }
    absl::StatusOr<json::value> body = kube::ParseJson(req.body());
    if (!body.ok() || !body->is_object() ||
        GetString(*body, {"apiVersion"}) != "v1" ||
        GetString(*body, {"kind"}) != "Service" ||
        GetString(*body, {"metadata", "name"}) != name) {
      return reply(400, StatusObject(400, "BadRequest",
                                     "a JSON v1 Service named as in the URL "
                                     "is expected"));
    }
    json::value svc =
        it != s.objects.end()
            ? it->second
            : json::value(json::object{
                  {"kind", "Service"},
                  {"apiVersion", "v1"},
                  {"metadata", json::object{{"name", name},
                                            {"namespace", ns},
                                            {"uid", s.NextUid()},
                                            {"creationTimestamp", Now()}}}});
    const json::value before = svc;
    json::object& meta = svc.as_object()["metadata"].as_object();
    for (const char* f : {"labels", "annotations"}) {
      if (const json::value* v = Find(*body, {"metadata", f}); v) meta[f] = *v;
    }
    if (const json::value* v = Find(*body, {"spec"}); v) {
      svc.as_object()["spec"] = *v;
    }
    if (svc == before) return reply(200, svc);
    const bool created = it == s.objects.end();
    s.Put("services", created ? "ADDED" : "MODIFIED", svc);
    return reply(created ? 201 : 200, s.objects[key]);
  }
  if (method == "PATCH" && is_dep) {
    if (rec.content_type != "application/apply-patch+yaml") {
      return reply(415, StatusObject(415, "UnsupportedMediaType",
                                     "the emulator only takes server-side "
                                     "apply patches"));
    }
    const std::string manager = get_q("fieldManager");
    if (manager.empty()) {
      return reply(422,
                   StatusObject(422, "Invalid",
                                "PatchOptions.meta.k8s.io \"\" is invalid: "
                                "fieldManager: Required value: is required "
                                "for apply patch"));
    }
    absl::StatusOr<json::value> body = kube::ParseJson(req.body());
    if (!body.ok() || !body->is_object()) {
      return reply(400, StatusObject(400, "BadRequest",
                                     "the emulator takes JSON apply patches"));
    }
    if (GetString(*body, {"apiVersion"}) != "apps/v1" ||
        GetString(*body, {"kind"}) != "Deployment" ||
        GetString(*body, {"metadata", "name"}) != name) {
      return reply(400, StatusObject(400, "BadRequest",
                                     "apiVersion, kind or metadata.name do not "
                                     "match the URL"));
    }
    const std::string want_rv =
        GetString(*body, {"metadata", "resourceVersion"});
    json::value d;
    json::object fields_spec;
    if (it == s.objects.end()) {
      if (!want_rv.empty()) return missing();
      d = json::object{{"kind", "Deployment"},
                       {"apiVersion", "apps/v1"},
                       {"metadata", json::object{{"name", name},
                                                 {"namespace", ns},
                                                 {"uid", s.NextUid()},
                                                 {"generation", 0},
                                                 {"creationTimestamp", Now()}}},
                       {"spec", json::object{{"replicas", 1}}},
                       {"status", json::object{}}};
    } else {
      if (!want_rv.empty() &&
          want_rv != GetString(it->second, {"metadata", "resourceVersion"})) {
        return conflict(modified);
      }
      d = it->second;
    }
    const json::value before = d;
    json::object& meta = d.as_object()["metadata"].as_object();
    for (const char* f : {"labels", "annotations"}) {
      if (const json::value* v = Find(*body, {"metadata", f}); v) {
        meta[f] = *v;
      }
    }
    json::object& spec = d.as_object()["spec"].as_object();
    bool spec_changed = false;
    if (const json::value* v = Find(*body, {"spec"}); v && v->is_object()) {
      for (const auto& kv : v->get_object()) {
        fields_spec[absl::StrCat("f:", std::string(kv.key()))] = json::object{};
        if (spec[kv.key()] != kv.value()) {
          spec[kv.key()] = kv.value();
          spec_changed = true;
        }
      }
    }
    if (d == before) return reply(200, d);  // nothing changed: same version
    if (spec_changed)
      meta["generation"] = GetInt(d, {"metadata", "generation"}) + 1;
    meta["managedFields"] = json::array{
        json::object{{"manager", manager},
                     {"operation", "Apply"},
                     {"apiVersion", "apps/v1"},
                     {"time", Now()},
                     {"fieldsType", "FieldsV1"},
                     {"fieldsV1", json::object{{"f:spec", fields_spec}}}}};
    s.Put("deployments", it == s.objects.end() ? "ADDED" : "MODIFIED", d);
    s.Reconcile(ns, name);
    return reply(it == s.objects.end() ? 201 : 200, s.objects[key]);
  }
  return reply(405, StatusObject(405, "MethodNotAllowed",
                                 absl::StrCat(method, " is not supported on ",
                                              target.path)));
}

std::vector<RecordedRequest> KubeEmulator::Requests() const {
  absl::MutexLock lock(&state_->mu);
  return state_->requests;
}

void KubeEmulator::ClearRequests() {
  absl::MutexLock lock(&state_->mu);
  state_->requests.clear();
}

int64_t KubeEmulator::resource_version() const {
  absl::MutexLock lock(&state_->mu);
  return state_->rv;
}

std::optional<std::string> KubeEmulator::GetObject(
    const std::string& plural, const std::string& ns,
    const std::string& name) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->objects.find(State::Key(plural, ns, name));
  if (it == state_->objects.end()) return std::nullopt;
  return json::serialize(it->second);
}

std::vector<std::string> KubeEmulator::PodsOf(
    const std::string& ns, const std::string& deployment) const {
  absl::MutexLock lock(&state_->mu);
  return state_->PodsOfLocked(ns, deployment);
}

absl::Status KubeEmulator::SetPodReady(const std::string& ns,
                                       const std::string& pod, bool ready) {
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  auto it = s.objects.find(State::Key("pods", ns, pod));
  if (it == s.objects.end()) return absl::NotFoundError("no pod " + pod);
  json::value p = it->second;
  json::object& status = p.as_object()["status"].as_object();
  if (ready) {
    status["phase"] = "Running";
    if (!status.contains("podIP")) {
      status["podIP"] = absl::StrCat("10.244.0.", ++s.ips);
      status["hostIP"] = "10.0.0.1";
    }
  }
  for (json::value& c : status["conditions"].as_array()) {
    const std::string type = GetString(c, {"type"});
    if (type == "Ready" || type == "ContainersReady") {
      c.as_object()["status"] = ready ? "True" : "False";
    }
  }
  s.Put("pods", "MODIFIED", p);
  return absl::OkStatus();
}

absl::Status KubeEmulator::SetContainerWaiting(
    const std::string& ns, const std::string& pod, const std::string& reason,
    int restart_count, const std::string& last_terminated_reason) {
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  auto it = s.objects.find(State::Key("pods", ns, pod));
  if (it == s.objects.end()) return absl::NotFoundError("no pod " + pod);
  json::value p = it->second;
  json::object& status = p.as_object()["status"].as_object();
  // A restart (a higher count than the pod had): the kubelet keeps the
  // output of the run that ended as the previous log; the new run's log
  // starts empty.
  int64_t restarted = 0;
  if (const json::value* cs = Find(p, {"status", "containerStatuses"});
      cs && cs->is_array() && !cs->get_array().empty()) {
    restarted = GetInt(cs->get_array()[0], {"restartCount"});
  }
  if (restart_count > restarted) {
    const std::string key = State::Key("pods", ns, pod);
    s.previous_logs[key] = std::move(s.logs[key]);
    s.logs[key].clear();
  }
  status["phase"] = "Running";
  for (json::value& c : status["conditions"].as_array()) {
    const std::string type = GetString(c, {"type"});
    if (type == "Ready" || type == "ContainersReady") {
      c.as_object()["status"] = "False";
    }
  }
  json::array statuses;
  if (const json::value* cs = Find(p, {"spec", "containers"});
      cs && cs->is_array()) {
    for (const json::value& c : cs->get_array()) {
      statuses.push_back(json::object{
          {"name", GetString(c, {"name"})},
          {"image", GetString(c, {"image"})},
          {"ready", false},
          {"started", false},
          {"restartCount", restart_count},
          {"state",
           json::object{{"waiting", json::object{{"reason", reason},
                                                 {"message", "emulated"}}}}},
          {"lastState",
           json::object{
               {"terminated",
                json::object{{"exitCode",
                              last_terminated_reason == "OOMKilled" ? 137 : 1},
                             {"reason", last_terminated_reason}}}}}});
    }
  }
  status["containerStatuses"] = std::move(statuses);
  s.Put("pods", "MODIFIED", p);
  return absl::OkStatus();
}

absl::Status KubeEmulator::SetPodMetrics(const std::string& ns,
                                         const std::string& pod,
                                         const std::string& cpu,
                                         const std::string& memory,
                                         absl::Time timestamp) {
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  const std::string key = State::Key("pods", ns, pod);
  auto it = s.objects.find(key);
  if (it == s.objects.end()) return absl::NotFoundError("no pod " + pod);
  json::object labels;
  if (const json::value* l = Find(it->second, {"metadata", "labels"});
      l && l->is_object()) {
    labels = l->get_object();
  }
  s.metrics[key] = json::object{
      {"kind", "PodMetrics"},
      {"apiVersion", "metrics.k8s.io/v1beta1"},
      {"metadata",
       json::object{{"name", pod}, {"namespace", ns}, {"labels", labels}}},
      {"timestamp",
       absl::FormatTime(absl::RFC3339_sec, timestamp, absl::UTCTimeZone())},
      {"window", "15s"},
      {"containers",
       json::array{json::object{
           {"name", "app"},
           {"usage", json::object{{"cpu", cpu}, {"memory", memory}}}}}}};
  return absl::OkStatus();
}

absl::Status KubeEmulator::AppendPodLog(const std::string& ns,
                                        const std::string& pod,
                                        const std::string& text) {
  State& s = *state_;
  absl::MutexLock lock(&s.mu);
  const std::string key = State::Key("pods", ns, pod);
  if (s.objects.count(key) == 0) return absl::NotFoundError("no pod " + pod);
  s.logs[key] += text;
  return absl::OkStatus();
}

void KubeEmulator::Compact() {
  absl::MutexLock lock(&state_->mu);
  state_->compacted = state_->rv;
}

void KubeEmulator::SendBookmarks() {
  absl::MutexLock lock(&state_->mu);
  ++state_->bookmark_gen;
}

int KubeEmulator::open_watches() const {
  absl::MutexLock lock(&state_->mu);
  return state_->watches;
}

void KubeEmulator::DropWatches() {
  absl::MutexLock lock(&state_->mu);
  ++state_->drop_gen;
}

void KubeEmulator::Throttle(int n, int retry_after_seconds) {
  absl::MutexLock lock(&state_->mu);
  state_->throttle = n;
  state_->retry_after = retry_after_seconds;
}

void KubeEmulator::FailNext(int n, int code, const std::string& reason,
                            const std::string& message,
                            const std::string& only) {
  absl::MutexLock lock(&state_->mu);
  state_->fail = n;
  state_->fail_only = only;
  state_->fail_code = code;
  state_->fail_reason = reason;
  state_->fail_message = message;
}

void KubeEmulator::RotateToken(const std::string& token) {
  absl::MutexLock lock(&state_->mu);
  state_->token = token;
}

}  // namespace tidal::testing
