// KubeClient against the KubeEmulator (tests/fakes/kube_emulator.h): the
// wire format the client speaks and how it handles the API's faults.
#include "runtime/kubernetes/kube_client.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "fakes/eventually.h"
#include "fakes/kube_emulator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tidal::kube {
namespace {

using ::testing::HasSubstr;
using tidal::testing::Eventually;
using tidal::testing::KubeEmulator;

constexpr char kNs[] = "team-a";

std::string Manifest(const std::string& name, const std::string& image) {
  return absl::StrCat(
      R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":")",
      name,
      R"(","labels":{"tidal.dev/app":"web","tidal.dev/revision":"1"},)"
      R"("annotations":{"tidal.dev/owner":"team-a/web"}},"spec":{"selector":)"
      R"({"matchLabels":{"tidal.dev/app":"web","tidal.dev/revision":"1"}},)"
      R"("template":{"metadata":{"labels":{"tidal.dev/app":"web",)"
      R"("tidal.dev/revision":"1"}},"spec":{"containers":[{"name":"app",)"
      R"("image":")",
      image, R"("}]}}}})");
}

class KubeClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(emu_.Start().ok());
    KubeConfig c;
    c.server = emu_.url();
    c.token = "emulator-token";
    client_ = std::make_unique<KubeClient>(c);
  }
  // After the server moved from emulator-token to emulator-tokem: the next
  // request is refused once (401) and retried with the new token.
  void ExpectARetryWithTheNewToken(KubeClient& client) {
    emu_.ClearRequests();
    absl::StatusOr<KubeList> list = client.List(kPods, kNs);
    ASSERT_TRUE(list.ok()) << list.status();
    auto reqs = emu_.Requests();
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(reqs[0].authorization, "Bearer emulator-token");
    EXPECT_EQ(reqs[1].authorization, "Bearer emulator-tokem");
  }
  KubeEmulator emu_;
  std::unique_ptr<KubeClient> client_;
};

TEST_F(KubeClientTest, ApplyTwiceIsIdempotent) {
  absl::StatusOr<KubeObject> a =
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->name, "web-r1");
  EXPECT_EQ(a->namespace_, kNs);
  EXPECT_FALSE(a->uid.empty());
  absl::StatusOr<KubeObject> b =
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->resource_version, b->resource_version);
  EXPECT_EQ(a->uid, b->uid);
  EXPECT_THAT(a->json, HasSubstr(R"("manager":"tidal","operation":"Apply")"));
  EXPECT_EQ(emu_.PodsOf(kNs, "web-r1").size(), 1u);
  // A changed template is a new version.
  absl::StatusOr<KubeObject> c =
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v2"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(c->resource_version, b->resource_version);

  for (const auto& r : emu_.Requests()) {
    EXPECT_EQ(r.method, "PATCH");
    EXPECT_EQ(r.content_type, "application/apply-patch+yaml");
    EXPECT_EQ(r.target,
              "/apis/apps/v1/namespaces/team-a/deployments/web-r1"
              "?fieldManager=tidal&force=true");
    EXPECT_EQ(r.authorization, "Bearer emulator-token");
  }
  absl::StatusOr<KubeObject> got = client_->Get(kDeployments, kNs, "web-r1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->resource_version, c->resource_version);
  absl::StatusOr<KubeObject> none = client_->Get(kDeployments, kNs, "nope");
  EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr("GET /apis/apps/v1/namespaces/team-a/deployments/nope: "
                        "HTTP 404 Not Found (NotFound)"));
}

TEST_F(KubeClientTest, ScaleThroughSubresource) {
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"))
          .ok());
  absl::StatusOr<Scale> s =
      client_->UpdateScale(kDeployments, kNs, "web-r1", 3);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->spec_replicas, 3);
  EXPECT_EQ(emu_.PodsOf(kNs, "web-r1").size(), 3u);
  absl::StatusOr<Scale> g = client_->GetScale(kDeployments, kNs, "web-r1");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->spec_replicas, 3);
  EXPECT_EQ(g->status_replicas, 3);
  EXPECT_EQ(g->selector, "tidal.dev/app=web,tidal.dev/revision=1");
  // Applying again does not touch the replicas.
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v2"))
          .ok());
  EXPECT_EQ(emu_.PodsOf(kNs, "web-r1").size(), 3u);
  // A stale resourceVersion: 409 Conflict, Aborted.
  absl::StatusOr<Scale> stale =
      client_->UpdateScale(kDeployments, kNs, "web-r1", 1, g->resource_version);
  EXPECT_TRUE(absl::IsAborted(stale.status())) << stale.status();
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("HTTP 409"));
  s = client_->UpdateScale(kDeployments, kNs, "web-r1", 0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(emu_.PodsOf(kNs, "web-r1").empty());
}

TEST_F(KubeClientTest, ListWatchWithBookmark) {
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"))
          .ok());
  ListOptions lo;
  lo.label_selector = "tidal.dev/app=web";
  absl::StatusOr<KubeList> list = client_->List(kPods, kNs, lo);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->items.size(), 1u);
  EXPECT_FALSE(list->resource_version.empty());
  absl::StatusOr<KubeList> other = client_->List(
      kPods, kNs, ListOptions{.label_selector = "tidal.dev/app=other"});
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->items.empty());

  std::atomic<int> added{0};
  std::atomic<bool> bookmark{false};
  absl::StatusOr<WatchResult> result;
  std::thread watcher([&] {
    WatchOptions wo;
    wo.label_selector = lo.label_selector;
    wo.resource_version = list->resource_version;
    wo.timeout_seconds = 60;
    result = client_->Watch(kPods, kNs, wo, [&](const WatchEvent& ev) {
      if (ev.type == "ADDED") ++added;
      if (ev.type == "BOOKMARK") {
        bookmark = true;
        return false;
      }
      return true;
    });
  });
  ASSERT_TRUE(client_->UpdateScale(kDeployments, kNs, "web-r1", 3).ok());
  ASSERT_TRUE(Eventually([&] { return added == 2; }));
  ASSERT_TRUE(Eventually([&] { return emu_.open_watches() == 1; }));
  emu_.SendBookmarks();
  watcher.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(bookmark);
  EXPECT_TRUE(result->cancelled);
  EXPECT_EQ(result->resource_version, absl::StrCat(emu_.resource_version()));
  const auto reqs = emu_.Requests();
  bool seen = false;
  for (const auto& r : reqs) {
    if (r.target.find("watch=true") != std::string::npos) {
      seen = true;
      EXPECT_THAT(r.target, HasSubstr("allowWatchBookmarks=true"));
      EXPECT_THAT(r.target, HasSubstr("timeoutSeconds=60"));
    }
  }
  EXPECT_TRUE(seen);
}

TEST_F(KubeClientTest, WatchFromCompactedVersionIsGone) {
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"))
          .ok());
  emu_.Compact();
  WatchOptions wo;
  wo.resource_version = "1";
  wo.timeout_seconds = 30;
  absl::StatusOr<WatchResult> r =
      client_->Watch(kPods, kNs, wo, [](const WatchEvent&) { return true; });
  EXPECT_TRUE(IsGone(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("410"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("Expired"));
  // Listed again, the watch goes on from the list's version.
  absl::StatusOr<KubeList> list = client_->List(kPods, kNs);
  ASSERT_TRUE(list.ok());
  wo.resource_version = list->resource_version;
  wo.timeout_seconds = 1;
  r = client_->Watch(kPods, kNs, wo, [](const WatchEvent&) { return true; });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->dropped);
  EXPECT_EQ(r->resource_version, list->resource_version);
}

TEST_F(KubeClientTest, WatchDroppedMidStreamResumes) {
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"))
          .ok());
  absl::StatusOr<KubeList> list = client_->List(kPods, kNs);
  ASSERT_TRUE(list.ok());
  absl::StatusOr<WatchResult> result;
  std::atomic<int> events{0};
  std::thread watcher([&] {
    WatchOptions wo;
    wo.resource_version = list->resource_version;
    wo.timeout_seconds = 60;
    result = client_->Watch(kPods, kNs, wo, [&](const WatchEvent&) {
      ++events;
      return true;
    });
  });
  ASSERT_TRUE(client_->UpdateScale(kDeployments, kNs, "web-r1", 2).ok());
  ASSERT_TRUE(Eventually([&] { return events == 1; }));
  emu_.DropWatches();
  watcher.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->dropped);
  EXPECT_EQ(result->resource_version, absl::StrCat(emu_.resource_version()));
}

TEST_F(KubeClientTest, TooManyRequestsHonoursRetryAfter) {
  emu_.Throttle(1, 1);
  const absl::Time start = absl::Now();
  absl::StatusOr<KubeList> list = client_->List(kPods, kNs);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(emu_.Requests().size(), 2u);
  // Past max_retries: Unavailable naming the 429.
  KubeConfig c;
  c.server = emu_.url();
  c.token = "emulator-token";
  KubeClient impatient(c, KubeClientOptions{.max_retries = 0});
  emu_.Throttle(1, 1);
  list = impatient.List(kPods, kNs);
  EXPECT_TRUE(absl::IsUnavailable(list.status())) << list.status();
  EXPECT_THAT(std::string(list.status().message()),
              HasSubstr("HTTP 429 Too Many Requests"));
}

TEST_F(KubeClientTest, ExpiredTokenRereadOn401) {
  char tmpl[] = "/tmp/kube_client_test.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string file = dir + "/token";
  std::ofstream(file) << "emulator-token";
  KubeConfig c;
  c.server = emu_.url();
  c.token_file = file;
  KubeClient client(c);
  ASSERT_TRUE(client.List(kPods, kNs).ok());
  // The server moves on; the file is rewritten with the same size and
  // mtime, so only the 401 makes the client read it again.
  struct stat st;
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  emu_.RotateToken("emulator-tokem");
  std::ofstream(file) << "emulator-tokem";
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), times, 0), 0);
  ExpectARetryWithTheNewToken(client);
  // A token the server never accepts: Unauthenticated after one retry.
  emu_.RotateToken("something-else");
  absl::StatusOr<KubeList> list = client.List(kPods, kNs);
  EXPECT_TRUE(absl::IsUnauthenticated(list.status())) << list.status();
  std::string cmd = "rm -rf " + dir;
  (void)std::system(cmd.c_str());
}

// A kubeconfig's exec plugin (aws eks get-token and the like) gives the
// token; a 401 runs it again, as client-go does.
TEST_F(KubeClientTest, ExecPluginTokenRenewedOn401) {
  char tmpl[] = "/tmp/kube_client_test.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string plugin = dir + "/get-token";
  std::ofstream(dir + "/current") << "emulator-token";
  std::ofstream(plugin) << "#!/bin/sh\necho run >> " << dir
                        << "/runs\nprintf "
                           "'{\"apiVersion\":\"client.authentication.k8s.io/"
                           "v1\",\"kind\":\"ExecCredential\",\"status\":{"
                           "\"token\":\"%s\"}}' \"$(cat "
                        << dir << "/current)\"\n";
  ASSERT_EQ(chmod(plugin.c_str(), 0755), 0);
  KubeConfig c;
  c.server = emu_.url();
  c.has_exec = true;
  c.exec.api_version = "client.authentication.k8s.io/v1";
  c.exec.command = plugin;
  c.exec.interactive_mode = "Never";
  KubeClient client(c);
  ASSERT_TRUE(client.List(kPods, kNs).ok());
  ASSERT_TRUE(client.List(kPods, kNs).ok());
  emu_.RotateToken("emulator-tokem");
  std::ofstream(dir + "/current") << "emulator-tokem";
  ExpectARetryWithTheNewToken(client);
  // Run once for the first two requests, once after the 401.
  std::ifstream runs(dir + "/runs");
  std::string all((std::istreambuf_iterator<char>(runs)),
                  std::istreambuf_iterator<char>());
  EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 2);
  std::string cmd = "rm -rf " + dir;
  (void)std::system(cmd.c_str());
}

TEST_F(KubeClientTest, ConflictsAndPreconditions) {
  emu_.FailNext(1, 409, "Conflict",
                "Apply failed with 1 conflict: conflict with \"kubectl\"");
  absl::StatusOr<KubeObject> a =
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"));
  EXPECT_TRUE(absl::IsAborted(a.status())) << a.status();
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("PATCH /apis/apps/v1/namespaces/team-a/deployments/"
                        "web-r1?fieldManager=tidal&force=true: HTTP 409 "
                        "Conflict (Conflict): Apply failed"));
  emu_.FailNext(1, 409, "AlreadyExists", "already exists");
  a = client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"));
  EXPECT_TRUE(absl::IsAlreadyExists(a.status())) << a.status();
  a = client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"));
  ASSERT_TRUE(a.ok()) << a.status();

  DeleteOptions wrong;
  wrong.precondition_uid = "not-the-uid";
  absl::Status d = client_->Delete(kDeployments, kNs, "web-r1", wrong);
  EXPECT_TRUE(absl::IsAborted(d)) << d;
  EXPECT_THAT(std::string(d.message()), HasSubstr("Precondition failed"));
  DeleteOptions right;
  right.precondition_uid = a->uid;
  d = client_->Delete(kDeployments, kNs, "web-r1", right);
  ASSERT_TRUE(d.ok()) << d;
  EXPECT_TRUE(emu_.PodsOf(kNs, "web-r1").empty());
  EXPECT_TRUE(
      absl::IsNotFound(client_->Get(kDeployments, kNs, "web-r1").status()));
}

TEST_F(KubeClientTest, ManifestWithoutNameIsRefusedLocally) {
  absl::StatusOr<KubeObject> a =
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("other", "v1"));
  EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << a.status();
  a = client_->Apply(kDeployments, kNs, "web-r1", "{not json");
  EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << a.status();
  EXPECT_TRUE(emu_.Requests().empty());
}

TEST_F(KubeClientTest, PodLogsTailAndFollow) {
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"))
          .ok());
  const std::string pod = emu_.PodsOf(kNs, "web-r1").at(0);
  ASSERT_TRUE(emu_.AppendPodLog(kNs, pod, "one\ntwo\nthree\n").ok());
  std::string got;
  PodLogOptions lo;
  lo.tail_lines = 2;
  absl::Status st = client_->PodLogs(kNs, pod, lo, [&](std::string_view d) {
    got.append(d);
    return true;
  });
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(got, "two\nthree\n");
  EXPECT_EQ(
      emu_.Requests().back().target,
      absl::StrCat("/api/v1/namespaces/team-a/pods/", pod, "/log?tailLines=2"));

  // Follow: what comes later arrives; the stream ends with the pod.
  std::atomic<size_t> size{0};
  std::string followed;
  absl::Mutex mu;
  std::thread reader([&] {
    PodLogOptions fo;
    fo.follow = true;
    st = client_->PodLogs(kNs, pod, fo, [&](std::string_view d) {
      absl::MutexLock lock(&mu);
      followed.append(d);
      size = followed.size();
      return true;
    });
  });
  ASSERT_TRUE(Eventually([&] { return size == 14; }));
  ASSERT_TRUE(emu_.AppendPodLog(kNs, pod, "four\n").ok());
  ASSERT_TRUE(Eventually([&] { return size == 19; }));
  ASSERT_TRUE(client_->Delete(kPods, kNs, pod).ok());
  reader.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(followed, "one\ntwo\nthree\nfour\n");
  // The pod was replaced by the controller.
  EXPECT_EQ(emu_.PodsOf(kNs, "web-r1").size(), 1u);
  absl::Status missing =
      client_->PodLogs(kNs, pod, {}, [](std::string_view) { return true; });
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
}

TEST_F(KubeClientTest, PodStatesReadyAndCrashLoop) {
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"))
          .ok());
  const std::string pod = emu_.PodsOf(kNs, "web-r1").at(0);
  EXPECT_THAT(pod, ::testing::StartsWith("web-r1-"));
  ASSERT_TRUE(emu_.SetPodReady(kNs, pod, true).ok());
  absl::StatusOr<KubeObject> p = client_->Get(kPods, kNs, pod);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(p->json, HasSubstr(R"({"type":"Ready","status":"True"})"));
  EXPECT_THAT(p->json, HasSubstr(R"("phase":"Running")"));
  ASSERT_TRUE(emu_.SetContainerWaiting(kNs, pod, "CrashLoopBackOff", 3).ok());
  p = client_->Get(kPods, kNs, pod);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(p->json, HasSubstr(R"({"type":"Ready","status":"False"})"));
  EXPECT_THAT(p->json, HasSubstr(R"("reason":"CrashLoopBackOff")"));
  EXPECT_THAT(p->json, HasSubstr(R"("restartCount":3)"));
}

TEST_F(KubeClientTest, EndpointSlicesOfReadyPods) {
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"))
          .ok());
  ASSERT_TRUE(client_->UpdateScale(kDeployments, kNs, "web-r1", 2).ok());
  const std::vector<std::string> pods = emu_.PodsOf(kNs, "web-r1");
  ASSERT_EQ(pods.size(), 2u);
  ASSERT_TRUE(emu_.SetPodReady(kNs, pods[0], true).ok());
  ListOptions lo;
  lo.label_selector = "kubernetes.io/service-name=web-r1";
  absl::StatusOr<KubeList> slices = client_->List(kEndpointSlices, kNs, lo);
  ASSERT_TRUE(slices.ok()) << slices.status();
  ASSERT_EQ(slices->items.size(), 1u);
  const std::string& json = slices->items[0].json;
  EXPECT_THAT(json, HasSubstr(R"("addressType":"IPv4")"));
  EXPECT_THAT(json, HasSubstr(R"("conditions":{"ready":true)"));
  EXPECT_THAT(json, HasSubstr(pods[0]));
  EXPECT_THAT(json, ::testing::Not(HasSubstr(pods[1])));  // no IP yet
  ASSERT_TRUE(emu_.SetPodReady(kNs, pods[0], false).ok());
  slices = client_->List(kEndpointSlices, kNs, lo);
  ASSERT_TRUE(slices.ok()) << slices.status();
  EXPECT_THAT(slices->items[0].json,
              HasSubstr(R"("conditions":{"ready":false)"));
  ASSERT_TRUE(client_->Delete(kDeployments, kNs, "web-r1").ok());
  slices = client_->List(kEndpointSlices, kNs, lo);
  ASSERT_TRUE(slices.ok()) << slices.status();
  EXPECT_TRUE(slices->items.empty());
}

TEST_F(KubeClientTest, ServerDownThenBack) {
  ASSERT_TRUE(
      client_->Apply(kDeployments, kNs, "web-r1", Manifest("web-r1", "v1"))
          .ok());
  emu_.GoDown();
  absl::StatusOr<KubeObject> got = client_->Get(kDeployments, kNs, "web-r1");
  EXPECT_TRUE(absl::IsUnavailable(got.status())) << got.status();
  EXPECT_THAT(
      std::string(got.status().message()),
      HasSubstr("GET /apis/apps/v1/namespaces/team-a/deployments/web-r1"));
  ASSERT_TRUE(emu_.ComeBack().ok());
  got = client_->Get(kDeployments, kNs, "web-r1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->name, "web-r1");
}

}  // namespace
}  // namespace tidal::kube
