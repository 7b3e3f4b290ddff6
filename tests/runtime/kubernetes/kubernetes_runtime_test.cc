// KubernetesRuntime against the API emulator (tests/fakes/kube_emulator.h):
// revisions as Deployments scaled only through /scale, Pods as instances,
// stops of one chosen Pod, garbage collection, adoption, the API's faults
// (watches dropped, 410 Gone, conflicts, the API server down), Pod states
// as instance phases and reasons, logs; and every request it sends is one
// the Role in deploy/kubernetes grants (kube_rbac.h).
#include "runtime/kubernetes/kubernetes_runtime.h"

#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "fakes/eventually.h"
#include "fakes/kube_emulator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/kubernetes/kube_json.h"
#include "runtime/kubernetes/kube_rbac.h"
#include "runtime/kubernetes/pod_template.h"

namespace tidal::kube {
namespace {

using ::testing::HasSubstr;
using tidal::testing::Eventually;
using tidal::testing::KubeEmulator;
using tidal::v1::Instance;

constexpr char kKubeNs[] = "tidal-apps";

InstanceRequest Request(const std::string& app, const std::string& hash,
                        int64_t revision = 1) {
  InstanceRequest r;
  r.namespace_ = "team-a";
  r.app = app;
  r.template_hash = hash;
  r.revision = revision;
  r.tmpl.set_image("registry.example.com/web:1.4");
  r.tmpl.add_args("--serve");
  r.tmpl.set_port(9000);
  return r;
}

class KubernetesRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(emu_.Start().ok());
    KubeConfig c;
    c.server = emu_.url();
    c.token = "emulator-token";
    KubeClientOptions co;
    co.request_timeout = absl::Seconds(5);
    co.connect_timeout = absl::Seconds(1);
    co.max_retries = 2;
    co.max_retry_after = absl::Seconds(1);
    client_ = std::make_unique<KubeClient>(c, co);
    options_.default_namespace = kKubeNs;
    options_.retry_interval = absl::Milliseconds(50);
    options_.max_retry_interval = absl::Milliseconds(500);
    options_.gc_interval = absl::Hours(1);  // tests collect garbage by hand
  }

  void TearDown() override {
    if (rt_ != nullptr) rt_->Shutdown(false);
    rt_.reset();
    // Every request the runtime sent is one the Role grants.
    for (const auto& r : emu_.Requests()) {
      const RbacNeed need = RbacNeedOf(r.method, r.target);
      EXPECT_TRUE(RbacAllows(need))
          << r.method << " " << r.target << " needs " << need.verb << " on "
          << need.api_group << "/" << need.resource
          << ", which deploy/kubernetes/role.yaml does not grant";
    }
  }

  void MakeRuntime() {
    rt_ = std::make_unique<KubernetesRuntime>(client_.get(), options_);
    rt_->SetListener([this](const InstanceChange& c) {
      absl::MutexLock lock(&mu_);
      changes_.push_back(c);
    });
    ASSERT_TRUE(rt_->Adopt().ok());
  }

  // Pods (not placeholders) of the runtime's view.
  std::vector<Instance> Pods(const std::string& app = "") {
    std::vector<Instance> out;
    for (auto& i : rt_->List("team-a", app)) {
      if (!absl::StrContains(i.id(), "-pending-")) out.push_back(i);
    }
    return out;
  }

  std::optional<Instance> Find(const std::string& id) {
    for (auto& i : rt_->List()) {
      if (i.id() == id) return i;
    }
    return std::nullopt;
  }

  int64_t SpecReplicas(const std::string& deployment) {
    auto d = emu_.GetObject("deployments", kKubeNs, deployment);
    if (!d.has_value()) return -1;
    auto v = ParseJson(*d);
    return GetInt(*v, {"spec", "replicas"}, -1);
  }

  std::vector<InstanceChange> Changes() {
    absl::MutexLock lock(&mu_);
    return changes_;
  }

  KubeEmulator emu_;
  std::unique_ptr<KubeClient> client_;
  KubernetesRuntimeOptions options_;
  std::unique_ptr<KubernetesRuntime> rt_;
  absl::Mutex mu_;
  std::vector<InstanceChange> changes_ ABSL_GUARDED_BY(mu_);
};

TEST_F(KubernetesRuntimeTest, StartAppliesARevisionAndScalesItThroughScale) {
  MakeRuntime();
  const InstanceRequest req = Request("web", "abc123");
  absl::StatusOr<Instance> a = rt_->Start(req);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->phase(), "Starting");
  const std::string dep = RevisionName("team-a", "web", "abc123");
  ASSERT_TRUE(emu_.GetObject("deployments", kKubeNs, dep).has_value());
  ASSERT_TRUE(emu_.GetObject("services", kKubeNs, dep).has_value());
  EXPECT_EQ(SpecReplicas(dep), 1);
  ASSERT_TRUE(rt_->Start(req).ok());
  EXPECT_EQ(SpecReplicas(dep), 2);
  // Applies never carry spec.replicas; /scale sets it.
  int applies = 0, scales = 0;
  for (const auto& r : emu_.Requests()) {
    if (r.method == "PATCH" && absl::StrContains(r.target, "/deployments/")) {
      ++applies;
      EXPECT_EQ(r.content_type, "application/apply-patch+yaml");
      EXPECT_THAT(r.target, HasSubstr("fieldManager=tidal"));
      EXPECT_FALSE(absl::StrContains(r.body, "\"replicas\"")) << r.body;
    }
    if (r.method == "PUT" && absl::EndsWith(r.target, "/scale")) ++scales;
  }
  EXPECT_EQ(applies, 1);  // the revision is applied once
  EXPECT_EQ(scales, 2);
  // The Pods become the instances, with the revision's labels.
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 2; }));
  EXPECT_EQ(rt_->List("team-a", "web").size(), 2u);  // no placeholder left
  for (const Instance& i : Pods("web")) {
    EXPECT_EQ(i.template_hash(), "abc123");
    EXPECT_EQ(i.revision(), 1);
    EXPECT_EQ(i.port(), 9000);
    EXPECT_FALSE(i.ready());
  }
  // Ready from the Pod's Ready condition; the address from the
  // EndpointSlice.
  const std::string pod = Pods("web")[0].id();
  ASSERT_TRUE(emu_.SetPodReady(kKubeNs, pod, true).ok());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(pod);
    return i && i->ready() && i->phase() == "Running" && !i->host().empty();
  }));
  // The listener hears of it just after the state changes (it is called
  // outside the runtime's lock; a TSan run caught it in between).
  EXPECT_TRUE(Eventually([&] {
    for (const auto& c : Changes()) {
      if (c.instance.id() == pod && c.instance.ready()) return true;
    }
    return false;
  })) << "the listener heard of the ready Pod";
}

TEST_F(KubernetesRuntimeTest, StopTakesThatPodAndScalesDown) {
  MakeRuntime();
  const InstanceRequest req = Request("web", "abc123");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rt_->Start(req).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 3; }));
  std::set<std::string> before;
  for (const auto& p : Pods("web")) {
    before.insert(p.id());
    ASSERT_TRUE(emu_.SetPodReady(kKubeNs, p.id(), true).ok());
  }
  const std::string victim = *std::next(before.begin());
  ASSERT_TRUE(rt_->Stop(victim, absl::Seconds(5)).ok());
  const std::string dep = RevisionName("team-a", "web", "abc123");
  EXPECT_EQ(SpecReplicas(dep), 2);
  ASSERT_TRUE(Eventually([&] { return !Find(victim).has_value(); }));
  // The two others are still there, and nothing replaced the victim.
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 2; }));
  for (const auto& p : Pods("web")) {
    EXPECT_TRUE(before.count(p.id()) > 0) << p.id() << " is new";
    EXPECT_NE(p.id(), victim);
  }
  // The delete carried the grace period.
  bool graced = false;
  for (const auto& r : emu_.Requests()) {
    if (r.method == "DELETE" && absl::EndsWith(r.target, "/pods/" + victim)) {
      graced = absl::StrContains(r.body, "\"gracePeriodSeconds\":5");
    }
  }
  EXPECT_TRUE(graced);
  EXPECT_TRUE(absl::IsNotFound(rt_->Stop("no-such-pod", absl::Seconds(1))));
}

TEST_F(KubernetesRuntimeTest, StopOfAPlaceholderScalesDown) {
  MakeRuntime();
  // Placeholders stand for Pods the Deployment still has to make; the
  // emulator makes them at once, so hold the scale on the API side: ask for
  // one, then take the placeholder the runtime reported before its Pod.
  const InstanceRequest req = Request("web", "abc123");
  absl::StatusOr<Instance> a = rt_->Start(req);
  ASSERT_TRUE(a.ok());
  const std::string dep = RevisionName("team-a", "web", "abc123");
  if (absl::StrContains(a->id(), "-pending-") && Find(a->id()).has_value()) {
    ASSERT_TRUE(rt_->Stop(a->id(), absl::Seconds(1)).ok());
  } else {
    ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 1; }));
    ASSERT_TRUE(rt_->Stop(Pods("web")[0].id(), absl::Seconds(1)).ok());
  }
  EXPECT_EQ(SpecReplicas(dep), 0);
  ASSERT_TRUE(Eventually([&] { return rt_->List("team-a", "web").empty(); }));
}

TEST_F(KubernetesRuntimeTest, GarbageIsRevisionsWithNoPodWantedAndOnlyThose) {
  // Not Tidal's: never touched.
  ASSERT_TRUE(
      client_
          ->Apply(kDeployments, kKubeNs, "someone-elses",
                  R"({"apiVersion":"apps/v1","kind":"Deployment",)"
                  R"("metadata":{"name":"someone-elses"},"spec":{)"
                  R"("replicas":0,"selector":{"matchLabels":{"a":"b"}},)"
                  R"("template":{"metadata":{"labels":{"a":"b"}},)"
                  R"("spec":{"containers":[{"name":"c","image":"i"}]}}}})")
          .ok());
  MakeRuntime();
  const InstanceRequest v1 = Request("web", "rev1", 1);
  const InstanceRequest v2 = Request("web", "rev2", 2);
  ASSERT_TRUE(rt_->Start(v1).ok());
  ASSERT_TRUE(rt_->Start(v2).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 2; }));
  // Revision 1 stopped: its Deployment and Service go; revision 2's stay.
  for (const auto& p : Pods("web")) {
    if (p.template_hash() == "rev1") {
      ASSERT_TRUE(rt_->Stop(p.id(), absl::Seconds(1)).ok());
    }
  }
  const std::string d1 = RevisionName("team-a", "web", "rev1");
  const std::string d2 = RevisionName("team-a", "web", "rev2");
  ASSERT_TRUE(Eventually([&] {
    rt_->CollectGarbage();
    return !emu_.GetObject("deployments", kKubeNs, d1).has_value();
  }));
  EXPECT_FALSE(emu_.GetObject("services", kKubeNs, d1).has_value());
  EXPECT_TRUE(emu_.GetObject("deployments", kKubeNs, d2).has_value());
  EXPECT_TRUE(emu_.GetObject("services", kKubeNs, d2).has_value());
  EXPECT_TRUE(
      emu_.GetObject("deployments", kKubeNs, "someone-elses").has_value());
  for (const auto& r : emu_.Requests()) {
    EXPECT_FALSE(absl::StrContains(r.target, "someone-elses") &&
                 r.method != "PATCH")
        << r.method << " " << r.target;
  }
}

TEST_F(KubernetesRuntimeTest, AdoptTakesOverWhatAPreviousTidaldLeft) {
  MakeRuntime();
  const InstanceRequest req = Request("web", "abc123");
  ASSERT_TRUE(rt_->Start(req).ok());
  ASSERT_TRUE(rt_->Start(req).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 2; }));
  std::set<std::string> before;
  for (const auto& p : Pods("web")) before.insert(p.id());
  // An app whose revision was scaled to zero just before the crash.
  const InstanceRequest gone = Request("old", "zzz");
  ASSERT_TRUE(rt_->Start(gone).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("old").size() == 1; }));
  ASSERT_TRUE(rt_->Stop(Pods("old")[0].id(), absl::Seconds(1)).ok());
  rt_->Shutdown(false);  // the instances keep running

  rt_ = std::make_unique<KubernetesRuntime>(client_.get(), options_);
  ASSERT_TRUE(rt_->Adopt().ok());
  std::set<std::string> after;
  for (const auto& p : Pods("web")) after.insert(p.id());
  EXPECT_EQ(before, after);
  EXPECT_FALSE(emu_.GetObject("deployments", kKubeNs,
                              RevisionName("team-a", "old", "zzz"))
                   .has_value())
      << "a revision left at zero replicas is garbage";
  // Counting goes on from the cluster's replicas, on the same Deployment.
  ASSERT_TRUE(rt_->Start(req).ok());
  EXPECT_EQ(SpecReplicas(RevisionName("team-a", "web", "abc123")), 3);
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 3; }));
}

// Two tidald of a highly available control plane on one cluster: the
// standby shows the Pods as they are and no placeholder (what the leader
// asked of a Deployment is the leader's to know); taking over, it reads the
// replicas the leader left, so it neither shows nor stops an instance that
// does not exist.
TEST_F(KubernetesRuntimeTest, AStandbyTakesTheReplicasOverFromTheCluster) {
  MakeRuntime();  // the leader
  const InstanceRequest web = Request("web", "abc123");
  const InstanceRequest old = Request("old", "zzz");
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(rt_->Start(web).ok());
  ASSERT_TRUE(rt_->Start(old).ok());
  ASSERT_TRUE(Eventually([&] { return Pods().size() == 3; }));

  auto standby = std::make_unique<KubernetesRuntime>(client_.get(), options_);
  standby->SetActing(false);
  ASSERT_TRUE(standby->Adopt().ok());
  auto ids = [&](KubernetesRuntime* rt) {
    std::set<std::string> out;
    for (const auto& i : rt->List("team-a")) out.insert(i.id());
    return out;
  };
  const std::string dep_web = RevisionName("team-a", "web", "abc123");
  const std::string dep_old = RevisionName("team-a", "old", "zzz");
  auto real = [&] {  // the Pods the cluster has
    std::set<std::string> out;
    for (const std::string& dep : {dep_web, dep_old}) {
      for (const auto& p : emu_.PodsOf(kKubeNs, dep)) out.insert(p);
    }
    return out;
  };
  ASSERT_TRUE(Eventually([&] { return ids(standby.get()) == real(); }));

  // The leader stops one of web's and all of old's; old's Deployment and
  // Service are collected.
  ASSERT_TRUE(rt_->Stop(Pods("web")[0].id(), absl::Seconds(1)).ok());
  ASSERT_TRUE(rt_->Stop(Pods("old")[0].id(), absl::Seconds(1)).ok());
  ASSERT_TRUE(Eventually([&] {
    rt_->CollectGarbage();
    return !emu_.GetObject("deployments", kKubeNs, dep_old).has_value();
  }));
  ASSERT_TRUE(Eventually([&] { return Pods().size() == 1; }));
  // The standby shows the one Pod left, no placeholder for the two the
  // leader no longer wants.
  ASSERT_TRUE(Eventually([&] { return ids(standby.get()) == real(); }))
      << absl::StrJoin(ids(standby.get()), ",");

  // The leader goes; the standby takes over and still shows only the Pod.
  rt_->Shutdown(false);
  standby->SetActing(true);
  EXPECT_EQ(ids(standby.get()), real());
  EXPECT_EQ(SpecReplicas(dep_web), 1);
  // Its garbage collection has nothing to say about old (gone) and leaves
  // web alone.
  standby->CollectGarbage();
  EXPECT_EQ(SpecReplicas(dep_web), 1);
  EXPECT_EQ(ids(standby.get()), real());
  // It counts on from the cluster's replicas.
  ASSERT_TRUE(standby->Start(web).ok());
  EXPECT_EQ(SpecReplicas(dep_web), 2);
  ASSERT_TRUE(Eventually(
      [&] { return real().size() == 2 && ids(standby.get()) == real(); }));
  standby->Shutdown(false);
}

// A Service whose Deployment never came (a refused apply) or went (a stop
// between the two deletes) is deleted: by the garbage collector after the
// refused start, and by a node taking over for the others. Services
// without Tidal's labels are never touched.
TEST_F(KubernetesRuntimeTest, AServiceWithoutItsDeploymentIsDeleted) {
  MakeRuntime();
  const InstanceRequest web = Request("web", "abc123");
  const std::string dep = RevisionName("team-a", "web", "abc123");
  emu_.FailNext(1, 403, "Forbidden",
                "deployments.apps \"" + dep +
                    "\" is forbidden: exceeded quota: count/deployments.apps",
                "PATCH /apis/apps/v1/");
  absl::StatusOr<Instance> refused = rt_->Start(web);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("exceeded quota"));
  EXPECT_TRUE(emu_.GetObject("services", kKubeNs, dep).has_value());
  EXPECT_FALSE(emu_.GetObject("deployments", kKubeNs, dep).has_value());
  rt_->CollectGarbage();
  EXPECT_FALSE(emu_.GetObject("services", kKubeNs, dep).has_value());

  // Left behind by an earlier tidald: one of Tidal's, one not.
  auto service = [](const std::string& name, const std::string& labels) {
    return absl::StrCat(R"({"apiVersion":"v1","kind":"Service","metadata":{)",
                        R"("name":")", name, R"(","labels":{)", labels,
                        R"(}},"spec":{"clusterIP":"None"}})");
  };
  ASSERT_TRUE(
      client_
          ->Apply(kServices, kKubeNs, "tidal-left",
                  service("tidal-left",
                          absl::StrCat("\"", kLabelManagedBy, "\":\"tidal\"")))
          .ok());
  ASSERT_TRUE(client_
                  ->Apply(kServices, kKubeNs, "someone-elses",
                          service("someone-elses", R"("a":"b")"))
                  .ok());
  rt_->SetActing(false);
  rt_->SetActing(true);
  EXPECT_FALSE(emu_.GetObject("services", kKubeNs, "tidal-left").has_value());
  EXPECT_TRUE(emu_.GetObject("services", kKubeNs, "someone-elses").has_value());
  // A revision that runs keeps its Service.
  ASSERT_TRUE(rt_->Start(web).ok());
  rt_->SetActing(false);
  rt_->SetActing(true);
  EXPECT_TRUE(emu_.GetObject("services", kKubeNs, dep).has_value());
}

TEST_F(KubernetesRuntimeTest, WatchDroppedOrExpiredIsResumedOrListedAgain) {
  MakeRuntime();
  const InstanceRequest req = Request("web", "abc123");
  ASSERT_TRUE(rt_->Start(req).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 1; }));
  const std::string pod = Pods("web")[0].id();
  ASSERT_TRUE(Eventually([&] { return emu_.open_watches() >= 2; }));
  emu_.DropWatches();
  ASSERT_TRUE(emu_.SetPodReady(kKubeNs, pod, true).ok());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(pod);
    return i && i->ready();
  }));
  // History compacted while the watches are down: the re-watch gets 410
  // and the runtime lists again.
  emu_.Compact();
  emu_.DropWatches();
  ASSERT_TRUE(emu_.SetPodReady(kKubeNs, pod, false).ok());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(pod);
    return i && !i->ready();
  }));
  ASSERT_TRUE(rt_->Start(req).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 2; }));
}

TEST_F(KubernetesRuntimeTest, AConflictFailsOneStartAndTheNextOneWorks) {
  MakeRuntime();
  // Both watches open (they send nothing more for minutes), so the fault
  // meets the start's first request: the Service's apply.
  ASSERT_TRUE(Eventually([&] { return emu_.open_watches() >= 2; }));
  emu_.FailNext(1, 409, "Conflict", "Apply failed with 1 conflict");
  absl::StatusOr<Instance> a = rt_->Start(Request("web", "abc123"));
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("409"));
  ASSERT_TRUE(rt_->Start(Request("web", "abc123")).ok());
  const std::string dep = RevisionName("team-a", "web", "abc123");
  EXPECT_EQ(SpecReplicas(dep), 1);
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 1; }));
}

TEST_F(KubernetesRuntimeTest, TheApiServerDownFor30SecondsIsRecoveredFrom) {
  MakeRuntime();
  const InstanceRequest req = Request("web", "abc123");
  ASSERT_TRUE(rt_->Start(req).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 1; }));
  const std::string pod = Pods("web")[0].id();
  emu_.GoDown();
  const absl::Time back = absl::Now() + absl::Seconds(30);
  absl::StatusOr<Instance> failed = rt_->Start(req);
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(Pods("web").size(), 1u) << "what was known stays listed";
  // Down for 30 s in all; the runtime keeps retrying meanwhile.
  absl::SleepFor(back - absl::Now());
  ASSERT_TRUE(emu_.ComeBack().ok());
  ASSERT_TRUE(emu_.SetPodReady(kKubeNs, pod, true).ok());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(pod);
    return i && i->ready();
  })) << "the watch came back";
  ASSERT_TRUE(rt_->Start(req).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 2; }));
  // One Deployment for the revision, at the replicas asked for.
  ListOptions lo;
  lo.label_selector = ManagedSelector();
  absl::StatusOr<KubeList> deps = client_->List(kDeployments, kKubeNs, lo);
  ASSERT_TRUE(deps.ok());
  EXPECT_EQ(deps->items.size(), 1u);
  EXPECT_EQ(SpecReplicas(RevisionName("team-a", "web", "abc123")), 2);
}

TEST_F(KubernetesRuntimeTest, PodStatesBecomePhasesReasonsAndEvents) {
  MakeRuntime();
  const InstanceRequest req = Request("web", "abc123");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rt_->Start(req).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 3; }));
  std::vector<Instance> pods = Pods("web");
  ASSERT_TRUE(
      emu_.SetContainerWaiting(kKubeNs, pods[0].id(), "CrashLoopBackOff", 2)
          .ok());
  ASSERT_TRUE(
      emu_.SetContainerWaiting(kKubeNs, pods[1].id(), "ImagePullBackOff", 0, "")
          .ok());
  ASSERT_TRUE(emu_.SetContainerWaiting(kKubeNs, pods[2].id(),
                                       "CrashLoopBackOff", 1, "OOMKilled")
                  .ok());
  ASSERT_TRUE(Eventually([&] {
    auto a = Find(pods[0].id()), b = Find(pods[1].id()), c = Find(pods[2].id());
    return a && a->phase() == "CrashLoopBackOff" && a->restarts() == 2 && b &&
           b->phase() == "Failed" && b->reason() == "ImagePullBackOff" && c &&
           c->phase() == "CrashLoopBackOff" && c->reason() == "OOMKilled";
  }));
  // The events reach the listener just after the states change.
  std::set<std::string> reasons;
  EXPECT_TRUE(Eventually([&] {
    reasons.clear();
    for (const auto& c : Changes()) {
      if (!c.event_reason.empty()) reasons.insert(c.event_reason);
    }
    return reasons.count("BackOff") > 0 &&
           reasons.count("ImagePullBackOff") > 0;
  })) << absl::StrJoin(reasons, ", ");
}

TEST_F(KubernetesRuntimeTest, LogsComeFromThePodLogApi) {
  MakeRuntime();
  ASSERT_TRUE(rt_->Start(Request("web", "abc123")).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 1; }));
  const std::string pod = Pods("web")[0].id();
  ASSERT_TRUE(emu_.AppendPodLog(kKubeNs, pod, "one\ntwo\nthree\n").ok());
  LogOptions tail;
  tail.tail_lines = 2;
  auto s = rt_->OpenLogs(pod, tail);
  ASSERT_TRUE(s.ok()) << s.status();
  std::string text;
  for (;;) {
    absl::StatusOr<std::string> n = (*s)->Next(absl::Seconds(5));
    if (!n.ok()) {
      EXPECT_TRUE(absl::IsOutOfRange(n.status())) << n.status();
      break;
    }
    text += *n;
  }
  EXPECT_EQ(text, "two\nthree\n");
  LogOptions follow;
  follow.follow = true;
  auto f = rt_->OpenLogs(pod, follow);
  ASSERT_TRUE(f.ok());
  std::string got;
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<std::string> n = (*f)->Next(absl::Milliseconds(100));
    if (n.ok()) got += *n;
    if (got == "one\ntwo\nthree\n") {
      (void)emu_.AppendPodLog(kKubeNs, pod, "four\n");
    }
    return absl::EndsWith(got, "four\n");
  }));
  (*f)->Cancel();
  EXPECT_TRUE(absl::IsNotFound(rt_->OpenLogs("nope", {}).status()));
}

// Everything a stream has until its end.
std::string ReadToEnd(LogStream& s) {
  std::string text;
  for (;;) {
    absl::StatusOr<std::string> n = s.Next(absl::Seconds(5));
    if (!n.ok()) {
      EXPECT_TRUE(absl::IsOutOfRange(n.status())) << n.status();
      return text;
    }
    text += *n;
  }
}

// Issue 16, `logs --previous` on Kubernetes: a Pod whose container
// restarted is listed by StoppedInstances, and its previous container's
// output comes from the pod log API with previous=true (never followed);
// the current log is the new container's. A Pod that never restarted is
// not listed, and the API server's 400 for it is passed on.
TEST_F(KubernetesRuntimeTest, PreviousLogsAreThePreviousContainers) {
  MakeRuntime();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(rt_->Start(Request("web", "abc123")).ok());
  }
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 2; }));
  const std::vector<Instance> pods = Pods("web");
  const std::string pod = pods[0].id();
  const std::string other = pods[1].id();
  ASSERT_TRUE(emu_.SetPodReady(kKubeNs, pod, true).ok());
  ASSERT_TRUE(emu_.AppendPodLog(kKubeNs, pod, "panic: no config\n").ok());
  EXPECT_TRUE(rt_->StoppedInstances("team-a", "web").empty());
  ASSERT_TRUE(
      emu_.SetContainerWaiting(kKubeNs, pod, "CrashLoopBackOff", 1).ok());
  ASSERT_TRUE(emu_.AppendPodLog(kKubeNs, pod, "starting again\n").ok());
  ASSERT_TRUE(Eventually([&] {
    auto p = Find(pod);
    return p && p->restarts() == 1;
  }));
  EXPECT_EQ(rt_->StoppedInstances("team-a", "web"),
            (std::vector<StoppedInstance>{{pod, "team-a", "web"}}));
  EXPECT_EQ(rt_->StoppedInstances(), rt_->StoppedInstances("team-a", "web"));
  EXPECT_TRUE(rt_->StoppedInstances("team-a", "other").empty());

  LogOptions previous;
  previous.previous = true;
  previous.follow = true;  // a previous run's log ends: not followed
  auto s = rt_->OpenLogs(pod, previous);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(ReadToEnd(**s), "panic: no config\n");
  auto now = rt_->OpenLogs(pod, {});
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(ReadToEnd(**now), "starting again\n");

  auto none = rt_->OpenLogs(other, previous);
  ASSERT_TRUE(none.ok()) << none.status();
  absl::StatusOr<std::string> n = (*none)->Next(absl::Seconds(5));
  ASSERT_FALSE(n.ok());
  EXPECT_TRUE(
      absl::StrContains(n.status().message(), "previous terminated container"))
      << n.status();
  bool asked_previous = false;
  for (const auto& r : emu_.Requests()) {
    asked_previous |= absl::StrContains(
        r.target,
        absl::StrCat("/pods/", pod, "/log?container=app&previous=true"));
  }
  EXPECT_TRUE(asked_previous);
}

TEST_F(KubernetesRuntimeTest, NamespacesMapToKubernetesNamespaces) {
  options_.namespace_map["team-b"] = "b-apps";
  MakeRuntime();
  InstanceRequest b = Request("api", "h1");
  b.namespace_ = "team-b";
  ASSERT_TRUE(rt_->Start(b).ok());
  EXPECT_TRUE(emu_.GetObject("deployments", "b-apps",
                             RevisionName("team-b", "api", "h1"))
                  .has_value());
  ASSERT_TRUE(
      Eventually([&] { return rt_->List("team-b", "api").size() == 1; }));
  ASSERT_TRUE(Eventually([&] {
    auto l = rt_->List("team-b", "api");
    return l.size() == 1 && !absl::StrContains(l[0].id(), "-pending-");
  }));
}

TEST_F(KubernetesRuntimeTest, UsageComesFromTheMetricsApi) {
  options_.usage_refresh = absl::ZeroDuration();
  MakeRuntime();
  ASSERT_TRUE(rt_->Start(Request("web", "abc123")).ok());
  ASSERT_TRUE(Eventually([&] { return Pods("web").size() == 1; }));
  const std::string pod = Pods("web")[0].id();
  ASSERT_TRUE(emu_.SetPodReady(kKubeNs, pod, true).ok());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(pod);
    return i && i->phase() == "Running";
  }));
  EXPECT_TRUE(rt_->Usage("team-a", "web").empty()) << "no sample yet";
  const absl::Time t0 = absl::FromUnixSeconds(1800000000);
  ASSERT_TRUE(emu_.SetPodMetrics(kKubeNs, pod, "250000000n", "20Mi", t0).ok());
  std::vector<InstanceUsage> u = rt_->Usage("team-a", "web");
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].instance_id, pod);
  EXPECT_EQ(u[0].memory_bytes, 20 << 20);
  EXPECT_EQ(u[0].sampled_at, t0);
  EXPECT_NEAR(u[0].cpu_seconds, 0.25 * 15, 1e-9)  // the first 15 s window
      << "a quarter of a core";
  // The same sample read again changes nothing; a new one adds its rate
  // times the time since the last: the scaler's delta gives the rate back.
  EXPECT_EQ(rt_->Usage("team-a", "web")[0].cpu_seconds, u[0].cpu_seconds);
  ASSERT_TRUE(
      emu_.SetPodMetrics(kKubeNs, pod, "500m", "30Mi", t0 + absl::Seconds(15))
          .ok());
  std::vector<InstanceUsage> v = rt_->Usage("team-a", "web");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NEAR((v[0].cpu_seconds - u[0].cpu_seconds) /
                  absl::ToDoubleSeconds(v[0].sampled_at - u[0].sampled_at),
              0.5, 1e-9);
  EXPECT_EQ(v[0].memory_bytes, 30 << 20);
  EXPECT_TRUE(rt_->Usage("team-a", "other").empty());
}

}  // namespace
}  // namespace tidal::kube
