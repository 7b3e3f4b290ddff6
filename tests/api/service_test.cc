// TidalService over a MemoryStore, served by a real gRPC server on
// 127.0.0.1:0 and called through a real client stub.

#include "api/service.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/grpc_status.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "fakes/eventually.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "gtest/gtest.h"
#include "invalid_specs.h"
#include "store/keys.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal {
namespace {

using testing::Eventually;
using testing::FakeClock;
using testing::FakeRuntime;
using testing::MemoryStore;

v1::App MakeApp(const std::string& name, int replicas,
                std::map<std::string, std::string> labels = {}) {
  v1::App app;
  app.set_api_version("tidal.dev/v1");
  app.set_kind("App");
  app.mutable_metadata()->set_name(name);
  for (const auto& [k, v] : labels)
    (*app.mutable_metadata()->mutable_labels())[k] = v;
  app.mutable_spec()->set_replicas(replicas);
  app.mutable_spec()->mutable_template_()->add_command("/bin/sleep");
  app.mutable_spec()->mutable_template_()->add_args("1000");
  return app;
}

v1::App InvalidApp(const std::string& name) {
  v1::App app = MakeApp(name, 1);
  app.mutable_spec()->clear_replicas();
  app.mutable_spec()->mutable_scaling()->set_min_replicas(5);
  app.mutable_spec()->mutable_scaling()->set_max_replicas(3);
  return app;
}

// A store that lets a "concurrent writer" write the key first, `conflicts`
// times, whenever the service commits a transaction.
class InterferingStore : public MemoryStore {
 public:
  absl::StatusOr<int64_t> Txn(const std::vector<Op>& ops) override {
    if (conflicts_ > 0 && !ops.empty()) {
      --conflicts_;
      ++interfered_;
      auto cur = MemoryStore::Get(ops[0].key);
      v1::App other = MakeApp("other-writer", 7);
      if (cur.ok()) other.ParseFromString(cur->value);
      other.mutable_status()->set_ready_replicas(interfered_);
      auto r =
          MemoryStore::Txn({Op::Put(ops[0].key, other.SerializeAsString())});
      if (!r.ok()) return r.status();
    }
    return MemoryStore::Txn(ops);
  }
  std::atomic<int> conflicts_{0};
  std::atomic<int> interfered_{0};
};

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_ = std::make_unique<FakeRuntime>(true);
    Start(&store_);
  }
  void Start(Store* store, ServiceOptions opts = {}) {
    server_.reset();
    opts.store_name = "memory";
    opts.runtime_name = "fake";
    opts.poll_interval = absl::Milliseconds(20);
    service_ =
        std::make_unique<TidalService>(store, runtime_.get(), &clock_, opts);
    auto server = StartServer("127.0.0.1:0", service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                            grpc::InsecureChannelCredentials());
    stub_ = v1::Tidal::NewStub(channel);
  }
  void TearDown() override { server_.reset(); }

  absl::StatusOr<v1::ApplyResponse> Apply(std::vector<v1::App> apps,
                                          bool dry_run = false,
                                          const std::string& cause = "") {
    v1::ApplyRequest req;
    for (auto& a : apps) *req.add_apps() = a;
    req.set_dry_run(dry_run);
    req.set_change_cause(cause);
    grpc::ClientContext ctx;
    v1::ApplyResponse resp;
    absl::Status s = FromGrpc(stub_->Apply(&ctx, req, &resp));
    if (!s.ok()) return s;
    return resp;
  }
  absl::StatusOr<v1::App> Get(const std::string& name,
                              const std::string& ns = "") {
    v1::GetRequest req;
    req.set_namespace_(ns);
    req.set_name(name);
    grpc::ClientContext ctx;
    v1::App app;
    absl::Status s = FromGrpc(stub_->Get(&ctx, req, &app));
    if (!s.ok()) return s;
    return app;
  }
  std::vector<std::string> ListNames(const std::string& selector,
                                     bool all = false,
                                     absl::Status* status = nullptr) {
    v1::ListRequest req;
    req.set_label_selector(selector);
    req.set_all_namespaces(all);
    grpc::ClientContext ctx;
    v1::ListResponse resp;
    absl::Status s = FromGrpc(stub_->List(&ctx, req, &resp));
    if (status) *status = s;
    std::vector<std::string> names;
    for (const auto& a : resp.apps()) names.push_back(a.metadata().name());
    return names;
  }

  FakeClock clock_;
  MemoryStore store_;
  std::unique_ptr<FakeRuntime> runtime_;
  std::unique_ptr<TidalService> service_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<v1::Tidal::Stub> stub_;
};

TEST_F(ServiceTest, ApplyCreatesConfiguresAndLeavesUnchanged) {
  auto r = Apply({MakeApp("hello", 2)});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 1);
  EXPECT_EQ(r->results(0).action(), "created");
  EXPECT_EQ(r->results(0).namespace_(), "default");
  const v1::ObjectMeta md = r->results(0).app().metadata();
  EXPECT_TRUE(std::regex_match(md.uid(),
                               std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}"
                                          "-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << md.uid();
  EXPECT_EQ(md.generation(), 1);
  EXPECT_EQ(FromProtoTime(md.creation_timestamp()), clock_.Now());
  EXPECT_GT(md.resource_version(), 0);

  auto got = Get("hello");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->metadata().uid(), md.uid());
  EXPECT_EQ(got->metadata().resource_version(), md.resource_version());
  EXPECT_EQ(got->spec().replicas(), 2);

  // The controller writes status; apply keeps it.
  v1::App with_status = *got;
  with_status.mutable_status()->set_ready_replicas(2);
  with_status.mutable_metadata()->set_resource_version(0);
  ASSERT_TRUE(store_
                  .Update(keys::App("default", "hello"),
                          with_status.SerializeAsString(),
                          got->metadata().resource_version())
                  .ok());

  const int64_t txns = store_.txn_count();
  r = Apply({MakeApp("hello", 2)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).action(), "unchanged");
  EXPECT_EQ(r->results(0).app().metadata().generation(), 1);
  EXPECT_EQ(store_.txn_count(), txns) << "unchanged apply must not write";

  clock_.Advance(absl::Minutes(1));
  r = Apply({MakeApp("hello", 5)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).action(), "configured");
  got = Get("hello");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->metadata().generation(), 2);
  EXPECT_EQ(got->metadata().uid(), md.uid());
  EXPECT_EQ(got->metadata().creation_timestamp().seconds(),
            md.creation_timestamp().seconds());
  EXPECT_EQ(got->spec().replicas(), 5);
  EXPECT_EQ(got->status().ready_replicas(), 2);

  // Labels and annotations count as changes too.
  r = Apply({MakeApp("hello", 5, {{"team", "core"}})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->results(0).action(), "configured");
  r = Apply({MakeApp("hello", 5, {{"team", "core"}})}, false, "bump");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->results(0).action(), "configured");
  got = Get("hello");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->metadata().generation(), 4);
  EXPECT_EQ(
      got->metadata().annotations().at(TidalService::kChangeCauseAnnotation),
      "bump");
}

TEST_F(ServiceTest, ApplyIsAllOrNothing) {
  auto r = Apply({MakeApp("good", 1), InvalidApp("bad")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "bad")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "minReplicas"))
      << r.status();
  EXPECT_EQ(store_.txn_count(), 0);
  EXPECT_TRUE(ListNames("").empty());
  EXPECT_EQ(Get("good").status().code(), absl::StatusCode::kNotFound);

  // The same name twice in one apply is refused too.
  r = Apply({MakeApp("twice", 1), MakeApp("twice", 2)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.txn_count(), 0);

  // Two valid documents are written in one transaction.
  r = Apply({MakeApp("a", 1), MakeApp("b", 1)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(store_.txn_count(), 1);
  EXPECT_EQ(r->results(0).app().metadata().resource_version(),
            r->results(1).app().metadata().resource_version());
}

TEST_F(ServiceTest, ApplyYamlReportsEveryErrorWithLines) {
  v1::ApplyRequest req;
  req.set_source("hello.yaml");
  req.set_yaml(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: ok
spec:
  replicas: 1
  template:
    command: ["/bin/sleep", "1000"]
---
apiVersion: tidal.dev/v1
kind: App
metadata:
  name: broken
spec:
  scaling:
    minReplicas: 5
    maxReplicas: 3
  template:
    command: ["/bin/sleep", "1000"]
)");
  grpc::ClientContext ctx;
  v1::ApplyResponse resp;
  absl::Status s = FromGrpc(stub_->Apply(&ctx, req, &resp));
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "hello.yaml:")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "spec.scaling.minReplicas")) << s;
  EXPECT_EQ(store_.txn_count(), 0);

  // The valid document alone goes through, with -n as its namespace.
  v1::ApplyRequest ok_req;
  ok_req.set_source("ok.yaml");
  ok_req.set_default_namespace("team-a");
  ok_req.set_yaml(req.yaml().substr(0, req.yaml().find("---")));
  grpc::ClientContext ctx2;
  s = FromGrpc(stub_->Apply(&ctx2, ok_req, &resp));
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).namespace_(), "team-a");
  EXPECT_TRUE(Get("ok", "team-a").ok());
}

// Every row of the parser's table of invalid specs, applied through the API
// on top of an existing app: refused with its own error (file, line and
// field), and the store is left exactly as it was.
TEST_F(ServiceTest, EveryInvalidSpecIsRefusedWholeAndChangesNothing) {
  ASSERT_TRUE(Apply({MakeApp("existing", 2)}).ok());
  const int64_t txns = store_.txn_count();
  auto before = store_.List("");
  ASSERT_TRUE(before.ok());
  auto rows = spec::testing::InvalidRows();
  ASSERT_GE(rows.size(), 40u);
  for (const auto& row : rows) {
    SCOPED_TRACE(row.name);
    for (bool dry_run : {false, true}) {
      v1::ApplyRequest req;
      req.set_source("app.yaml");
      req.set_yaml(row.yaml);
      req.set_dry_run(dry_run);
      grpc::ClientContext ctx;
      v1::ApplyResponse resp;
      absl::Status st = FromGrpc(stub_->Apply(&ctx, req, &resp));
      ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
      std::string msg(st.message());
      // An empty request is refused before it is parsed.
      EXPECT_TRUE(absl::StrContains(
          msg, row.yaml.empty() ? "nothing to apply" : row.message))
          << msg;
      if (row.line > 0) {
        EXPECT_TRUE(
            absl::StrContains(msg, absl::StrCat("app.yaml:", row.line, ":")))
            << msg;
      }
      if (!row.field.empty()) {
        EXPECT_TRUE(absl::StrContains(msg, row.field)) << msg;
      }
      EXPECT_EQ(resp.results_size(), 0);
    }
  }
  EXPECT_EQ(store_.txn_count(), txns);
  auto after = store_.List("");
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->items.size(), before->items.size());
  for (size_t i = 0; i < after->items.size(); ++i) {
    EXPECT_EQ(after->items[i].key, before->items[i].key);
    EXPECT_EQ(after->items[i].value, before->items[i].value);
    EXPECT_EQ(after->items[i].resource_version,
              before->items[i].resource_version);
  }
}

TEST_F(ServiceTest, DryRunWritesNothing) {
  auto r = Apply({MakeApp("hello", 1)}, /*dry_run=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).action(), "created");
  EXPECT_EQ(store_.txn_count(), 0);
  ASSERT_TRUE(Apply({MakeApp("hello", 1)}).ok());
  r = Apply({MakeApp("hello", 3)}, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->results(0).action(), "configured");
  EXPECT_EQ(Get("hello")->spec().replicas(), 1);
  EXPECT_EQ(store_.txn_count(), 1);
}

TEST_F(ServiceTest, ApplyRetriesOnConcurrentWriterAndGivesUpWhenItNeverStops) {
  InterferingStore store;
  Start(&store);
  ASSERT_TRUE(Apply({MakeApp("hello", 1)}).ok());
  store.conflicts_ = 2;
  auto r = Apply({MakeApp("hello", 4)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(store.interfered_, 2);
  auto got = Get("hello");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->spec().replicas(), 4);
  EXPECT_EQ(got->status().ready_replicas(), 2) << "built on the latest write";

  store.conflicts_ = 1000;
  r = Apply({MakeApp("hello", 9)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  store.conflicts_ = 0;
  server_.reset();
}

TEST_F(ServiceTest, ConcurrentAppliesAllLandWithoutLostUpdates) {
  ASSERT_TRUE(Apply({MakeApp("hello", 0)}).ok());
  constexpr int kThreads = 4, kEach = 10;
  std::atomic<int> configured{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = Apply({MakeApp("hello", 1 + t * kEach + i)});
        if (!r.ok()) {
          ++failed;
        } else if (r->results(0).action() == "configured") {
          ++configured;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(configured, kThreads * kEach);
  EXPECT_EQ(Get("hello")->metadata().generation(), 1 + kThreads * kEach);
}

TEST_F(ServiceTest, ListFiltersByNamespaceAndLabelSelector) {
  ASSERT_TRUE(Apply({MakeApp("web", 1, {{"tier", "frontend"}, {"env", "prod"}}),
                     MakeApp("api", 1, {{"tier", "backend"}, {"env", "prod"}}),
                     MakeApp("batch", 1, {{"env", "dev"}})})
                  .ok());
  v1::App other = MakeApp("web", 1, {{"tier", "frontend"}});
  other.mutable_metadata()->set_namespace_("team-b");
  ASSERT_TRUE(Apply({other}).ok());

  using V = std::vector<std::string>;
  EXPECT_EQ(ListNames(""), (V{"api", "batch", "web"}));
  EXPECT_EQ(ListNames("", true), (V{"api", "batch", "web", "web"}));
  EXPECT_EQ(ListNames("tier=frontend"), (V{"web"}));
  EXPECT_EQ(ListNames("tier=frontend", true), (V{"web", "web"}));
  EXPECT_EQ(ListNames("env!=prod"), (V{"batch"}));
  EXPECT_EQ(ListNames("tier in (frontend,backend)"), (V{"api", "web"}));
  EXPECT_EQ(ListNames("tier notin (frontend)"), (V{"api", "batch"}));
  EXPECT_EQ(ListNames("tier"), (V{"api", "web"}));
  EXPECT_EQ(ListNames("!tier"), (V{"batch"}));
  EXPECT_EQ(ListNames("env=prod,tier=backend"), (V{"api"}));
  absl::Status s;
  ListNames("tier in frontend", false, &s);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ServiceTest, ListPagesWithLimitAndContinue) {
  // Seven apps in two namespaces, three of them labelled.
  std::vector<v1::App> apps;
  for (const char* n : {"a", "b", "c", "d", "e"}) {
    apps.push_back(
        MakeApp(n, 1,
                n[0] % 2 ? std::map<std::string, std::string>{{"odd", "yes"}}
                         : std::map<std::string, std::string>{}));
  }
  ASSERT_TRUE(Apply(apps).ok());
  v1::App x = MakeApp("x", 1), y = MakeApp("y", 1);
  x.mutable_metadata()->set_namespace_("team-b");
  y.mutable_metadata()->set_namespace_("team-b");
  ASSERT_TRUE(Apply({x, y}).ok());

  // Reads every page of `base` with `limit`; returns ns/name of each app and
  // the pages' sizes.
  auto pages = [&](v1::ListRequest base, int64_t limit,
                   std::vector<int>* sizes) {
    std::vector<std::string> got;
    base.set_limit(limit);
    for (int i = 0; i < 20; ++i) {
      grpc::ClientContext ctx;
      v1::ListResponse resp;
      EXPECT_TRUE(stub_->List(&ctx, base, &resp).ok());
      EXPECT_GT(resp.resource_version(), 0);
      sizes->push_back(resp.apps_size());
      for (const auto& a : resp.apps())
        got.push_back(a.metadata().namespace_() + "/" + a.metadata().name());
      if (resp.continue_().empty()) break;
      base.set_continue_(resp.continue_());
    }
    return got;
  };
  using V = std::vector<std::string>;
  v1::ListRequest all;
  all.set_all_namespaces(true);
  std::vector<int> sizes;
  EXPECT_EQ(pages(all, 2, &sizes),
            (V{"default/a", "default/b", "default/c", "default/d", "default/e",
               "team-b/x", "team-b/y"}));
  // Full pages and a last one without continue (7 = 2+2+2+1).
  EXPECT_EQ(sizes, (std::vector<int>{2, 2, 2, 1}));
  sizes.clear();
  EXPECT_EQ(pages(all, 7, &sizes).size(), 7u);
  EXPECT_EQ(sizes, (std::vector<int>{7}));  // exactly full: no continue

  // One namespace; a selector fills pages from further on.
  v1::ListRequest odd;
  odd.set_label_selector("odd=yes");
  sizes.clear();
  EXPECT_EQ(pages(odd, 2, &sizes), (V{"default/a", "default/c", "default/e"}));
  EXPECT_EQ(sizes, (std::vector<int>{2, 1}));

  // A token of another list, a made-up token, a continue without a limit
  // and a negative limit are refused.
  v1::ListRequest first = all;
  first.set_limit(1);
  grpc::ClientContext c1;
  v1::ListResponse r1;
  ASSERT_TRUE(stub_->List(&c1, first, &r1).ok());
  ASSERT_FALSE(r1.continue_().empty());
  v1::ListRequest bad;
  bad.set_namespace_("team-b");
  bad.set_limit(1);
  bad.set_continue_(r1.continue_());  // a key in "default"
  for (int i = 0; i < 4; ++i) {
    if (i == 1) bad.set_continue_("not base64 !");
    if (i == 2) bad.set_limit(0);
    if (i == 3) {
      bad.clear_continue_();
      bad.set_limit(-1);
    }
    grpc::ClientContext ctx;
    v1::ListResponse resp;
    EXPECT_EQ(stub_->List(&ctx, bad, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << i;
  }
}

TEST_F(ServiceTest, DeleteMarksAndKeepsTheObject) {
  auto missing = Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "app \"nope\" not found in namespace \"default\"");

  ASSERT_TRUE(Apply({MakeApp("hello", 1)}).ok());
  v1::DeleteRequest req;
  req.set_name("hello");
  req.set_dry_run(true);
  v1::DeleteResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Delete(&ctx, req, &resp).ok());
  }
  EXPECT_TRUE(resp.app().metadata().has_deletion_timestamp());
  EXPECT_FALSE(Get("hello")->metadata().has_deletion_timestamp())
      << "dry run marks nothing";

  req.set_dry_run(false);
  clock_.Advance(absl::Seconds(30));
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Delete(&ctx, req, &resp).ok());
  }
  auto got = Get("hello");
  ASSERT_TRUE(got.ok()) << "the controller removes the key, not Delete";
  EXPECT_EQ(FromProtoTime(got->metadata().deletion_timestamp()), clock_.Now());

  // Applying an app that is being deleted is refused; deleting again is fine.
  auto r = Apply({MakeApp("hello", 2)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
      << r.status();
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Delete(&ctx, req, &resp).ok());
  }
  req.set_name("nope");
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->Delete(&ctx, req, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

absl::Status DeleteApp(v1::Tidal::Stub* stub, const std::string& name,
                       std::optional<int64_t> grace, bool force,
                       v1::App* out = nullptr) {
  v1::DeleteRequest req;
  req.set_name(name);
  if (grace.has_value()) req.set_grace_period_seconds(*grace);
  req.set_force(force);
  v1::DeleteResponse resp;
  grpc::ClientContext ctx;
  absl::Status s = FromGrpc(stub->Delete(&ctx, req, &resp));
  if (out != nullptr) *out = resp.app();
  return s;
}

// delete --grace-period / --force: the period is stored on the app for the
// controller (metadata.deletionGracePeriodSeconds); a later delete can only
// shorten it; 0 needs force, and the period is bounded as the template's.
TEST_F(ServiceTest, DeleteGracePeriodAndForce) {
  v1::App app = MakeApp("hello", 1);
  app.mutable_spec()->mutable_template_()->set_termination_grace_period_seconds(
      600);
  ASSERT_TRUE(Apply({app}).ok());
  absl::Status s = DeleteApp(stub_.get(), "hello", 0, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(s.message(),
            "grace period 0 (kill at once) needs force (tidalctl delete "
            "--grace-period=0 --force)");
  s = DeleteApp(stub_.get(), "hello", 3601, true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(s.message(),
            "grace period: must be between 0 and 3600 seconds, got 3601");
  s = DeleteApp(stub_.get(), "hello", -1, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_FALSE(Get("hello")->metadata().has_deletion_timestamp());

  v1::App out;
  ASSERT_TRUE(DeleteApp(stub_.get(), "hello", 120, false, &out).ok());
  EXPECT_EQ(out.metadata().deletion_grace_period_seconds(), 120);
  EXPECT_EQ(Get("hello")->metadata().deletion_grace_period_seconds(), 120);
  const int64_t version = Get("hello")->metadata().resource_version();
  // Longer, or none: nothing changes.
  ASSERT_TRUE(DeleteApp(stub_.get(), "hello", 300, false).ok());
  ASSERT_TRUE(DeleteApp(stub_.get(), "hello", std::nullopt, false).ok());
  EXPECT_EQ(Get("hello")->metadata().resource_version(), version);
  EXPECT_EQ(Get("hello")->metadata().deletion_grace_period_seconds(), 120);
  // Shorter: stored. --force alone is 0.
  ASSERT_TRUE(DeleteApp(stub_.get(), "hello", 10, false).ok());
  EXPECT_EQ(Get("hello")->metadata().deletion_grace_period_seconds(), 10);
  ASSERT_TRUE(DeleteApp(stub_.get(), "hello", std::nullopt, true).ok());
  auto got = Get("hello");
  EXPECT_TRUE(got->metadata().has_deletion_grace_period_seconds());
  EXPECT_EQ(got->metadata().deletion_grace_period_seconds(), 0);

  // On an app marked without a period, a shorter one than the template's
  // (600s) is stored.
  ASSERT_TRUE(Apply({MakeApp("other", 1)}).ok());
  ASSERT_TRUE(DeleteApp(stub_.get(), "other", std::nullopt, false).ok());
  EXPECT_FALSE(Get("other")->metadata().has_deletion_grace_period_seconds());
  ASSERT_TRUE(DeleteApp(stub_.get(), "other", 0, true).ok());
  EXPECT_TRUE(Get("other")->metadata().has_deletion_grace_period_seconds());
}

// `scale` owns the replica fields until the file sets them again (kubectl's
// three-way merge): re-applying the unchanged file keeps the scaled count
// (the README's walkthrough: scale 5, apply, still 5); a file with another
// count wins and the app is the file's again (issue 16).
TEST_F(ServiceTest, ApplyKeepsAScaleUntilTheFileChangesReplicas) {
  ASSERT_TRUE(Apply({MakeApp("web", 3)}).ok());
  auto scale = [&](int32_t n) {
    v1::ScaleRequest req;
    req.set_name("web");
    req.set_replicas(n);
    v1::App out;
    grpc::ClientContext ctx;
    return FromGrpc(stub_->Scale(&ctx, req, &out));
  };
  ASSERT_TRUE(scale(5).ok());
  ASSERT_TRUE(scale(6).ok());
  auto r = Apply({MakeApp("web", 3)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).action(), "unchanged");
  EXPECT_EQ(Get("web")->spec().replicas(), 6);
  // The annotation copied from `get -o yaml` is not taken from the file.
  v1::App round_trip = MakeApp("web", 3);
  (*round_trip.mutable_metadata()
        ->mutable_annotations())[spec::kAppliedReplicasAnnotation] =
      "replicas=6";
  r = Apply({round_trip});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Get("web")->spec().replicas(), 6);

  r = Apply({MakeApp("web", 4)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).action(), "configured");
  auto got = Get("web");
  EXPECT_EQ(got->spec().replicas(), 4);
  EXPECT_EQ(
      got->metadata().annotations().count(spec::kAppliedReplicasAnnotation),
      0u);
  // The file owns them again: the next apply of another count is taken.
  r = Apply({MakeApp("web", 2)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Get("web")->spec().replicas(), 2);
}

TEST_F(ServiceTest, ScaleAndApplyAboveThePerAppMaximumAreRefused) {
  ASSERT_TRUE(Apply({MakeApp("web", 2)}).ok());
  const int64_t txns = store_.txn_count();
  v1::ScaleRequest req;
  req.set_name("web");
  req.set_replicas(2147483647);
  v1::App out;
  grpc::ClientContext ctx;
  absl::Status s = FromGrpc(stub_->Scale(&ctx, req, &out));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(s.message(),
            "spec.replicas: 2147483647 exceeds the per-app maximum of 1000 "
            "instances (tidald --max-instances-per-app)");
  v1::ScaleRequest max_req;
  max_req.set_name("web");
  max_req.set_max_replicas(1001);
  grpc::ClientContext ctx2;
  s = FromGrpc(stub_->Scale(&ctx2, max_req, &out));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(absl::StrContains(s.message(),
                                "spec.scaling.maxReplicas: 1001 "
                                "exceeds the per-app maximum"))
      << s;
  EXPECT_EQ(store_.txn_count(), txns);
  EXPECT_EQ(Get("web")->spec().replicas(), 2);

  // The port range bounds it further: each local instance needs a port.
  ServiceOptions opts;
  opts.validation.ports = 100;
  opts.validation.port_range = "20000-20099";
  Start(&store_, opts);
  auto r = Apply({MakeApp("big", 101)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "app default/big: spec.replicas: 101 exceeds the 100 ports of "
            "tidald --port-range 20000-20099 (each instance needs its own "
            "port)");
  EXPECT_TRUE(Apply({MakeApp("big", 100)}).ok());
}

// --max-instances-per-namespace: the sum over the namespace's apps of the
// most instances each may run by its spec (replicas, else maxReplicas with
// unbounded as the per-app maximum); a change that would raise it above
// the limit is refused with the file, line and field.
TEST_F(ServiceTest, PerNamespaceMaximumCountsEveryAppsMostInstances) {
  ServiceOptions opts;
  opts.max_instances_per_namespace = 10;
  Start(&store_, opts);
  v1::App b = MakeApp("b", 0);
  b.mutable_spec()->clear_replicas();
  b.mutable_spec()->mutable_scaling()->set_max_replicas(5);
  ASSERT_TRUE(Apply({MakeApp("a", 4), b}).ok());
  // Another namespace has its own room.
  v1::App other = MakeApp("c", 10);
  other.mutable_metadata()->set_namespace_("team-b");
  ASSERT_TRUE(Apply({other}).ok());

  const int64_t txns = store_.txn_count();
  for (bool dry_run : {false, true}) {
    v1::ApplyRequest req;
    req.set_source("c.yaml");
    req.set_dry_run(dry_run);
    req.set_yaml(
        "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: c\nspec:\n"
        "  replicas: 2\n  template: {command: [x]}\n");
    grpc::ClientContext ctx;
    v1::ApplyResponse resp;
    absl::Status s = FromGrpc(stub_->Apply(&ctx, req, &resp));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_EQ(s.message(),
              "c.yaml:6: spec.replicas: namespace \"default\" could run 11 "
              "instances with this app's 2 (the other apps: 9); the "
              "per-namespace maximum is 10 (tidald "
              "--max-instances-per-namespace). Counted: spec.replicas, else "
              "the largest of scaling.maxReplicas (unset or 0: 1000), its "
              "schedules and initialScale");
  }
  // An autoscaled app without maxReplicas counts as the per-app maximum.
  v1::App unbounded = MakeApp("d", 0);
  unbounded.mutable_spec()->clear_replicas();
  unbounded.mutable_spec()->mutable_scaling()->set_min_replicas(0);
  auto r = Apply({unbounded});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(r.status().message(),
                                "app default/d: spec.scaling.maxReplicas: "
                                "namespace \"default\" could run 1009"))
      << r.status();
  // Scale is held to it too.
  v1::ScaleRequest req;
  req.set_name("b");
  req.set_max_replicas(7);
  v1::App out;
  {
    grpc::ClientContext ctx;
    absl::Status s = FromGrpc(stub_->Scale(&ctx, req, &out));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(absl::StrContains(s.message(),
                                  "spec.scaling.maxReplicas: namespace "
                                  "\"default\" could run 11"))
        << s;
  }
  EXPECT_EQ(store_.txn_count(), txns);
  // Room made by scaling one app down, or by deleting one, can be taken.
  ASSERT_TRUE(Apply({MakeApp("a", 2)}).ok());
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Scale(&ctx, req, &out).ok());
  }
  ASSERT_TRUE(DeleteApp(stub_.get(), "a", std::nullopt, false).ok());
  EXPECT_TRUE(Apply({MakeApp("c", 3)}).ok());
}

// Reads watch events on a thread into a vector.
class WatchReader {
 public:
  WatchReader(v1::Tidal::Stub* stub, v1::WatchRequest req) {
    reader_ = stub->Watch(&ctx_, req);
    thread_ = std::thread([this] {
      v1::WatchEvent e;
      while (reader_->Read(&e)) {
        absl::MutexLock lock(&mu_);
        events_.push_back(absl::StrCat(e.type(), " ", e.app().metadata().name(),
                                       " ", e.app().spec().replicas()));
      }
    });
  }
  ~WatchReader() {
    ctx_.TryCancel();
    thread_.join();
    reader_->Finish();
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  bool WaitFor(size_t n) {
    return Eventually([&] { return events().size() >= n; });
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ServiceTest, WatchSendsCurrentStateThenChanges) {
  ASSERT_TRUE(
      Apply({MakeApp("a", 1, {{"watch", "yes"}}), MakeApp("b", 1)}).ok());
  using V = std::vector<std::string>;
  {
    WatchReader all(stub_.get(), v1::WatchRequest());
    v1::WatchRequest selected;
    selected.set_label_selector("watch=yes");
    WatchReader sel(stub_.get(), selected);
    ASSERT_TRUE(all.WaitFor(2));
    ASSERT_TRUE(sel.WaitFor(1));
    ASSERT_TRUE(Apply({MakeApp("c", 1)}).ok());
    ASSERT_TRUE(Apply({MakeApp("a", 3, {{"watch", "yes"}})}).ok());
    ASSERT_TRUE(
        Apply({MakeApp("b", 2, {{"watch", "yes"}})}).ok());  // newly selected
    ASSERT_TRUE(Apply({MakeApp("a", 3)}).ok());  // no longer selected
    ASSERT_TRUE(store_.Delete(keys::App("default", "c"))
                    .ok());  // the controller's removal
    ASSERT_TRUE(all.WaitFor(7));
    ASSERT_TRUE(sel.WaitFor(4));
    EXPECT_EQ(all.events(),
              (V{"ADDED a 1", "ADDED b 1", "ADDED c 1", "MODIFIED a 3",
                 "MODIFIED b 2", "MODIFIED a 3", "DELETED c 1"}));
    EXPECT_EQ(sel.events(),
              (V{"ADDED a 1", "MODIFIED a 3", "ADDED b 2", "DELETED a 3"}));
    EXPECT_EQ(store_.watch_count(), 2);
  }
  // The client cancelled: the server-side watches end.
  EXPECT_TRUE(Eventually([&] { return store_.watch_count() == 0; }));
}

TEST_F(ServiceTest, WatchRelistsWhenItFallsBehind) {
  MemoryStore small(/*max_backlog=*/2);
  Start(&small);
  ASSERT_TRUE(Apply({MakeApp("a", 1)}).ok());
  WatchReader w(stub_.get(), v1::WatchRequest());
  ASSERT_TRUE(w.WaitFor(1));
  // One transaction of 4 documents overflows the backlog of 2: the service
  // re-lists and sends the differences.
  ASSERT_TRUE(Apply({MakeApp("a", 2), MakeApp("b", 1), MakeApp("c", 1),
                     MakeApp("d", 1)})
                  .ok());
  ASSERT_TRUE(w.WaitFor(5));
  using V = std::vector<std::string>;
  EXPECT_EQ(w.events(), (V{"ADDED a 1", "MODIFIED a 2", "ADDED b 1",
                           "ADDED c 1", "ADDED d 1"}));
  ASSERT_TRUE(Apply({MakeApp("d", 7)}).ok());
  ASSERT_TRUE(w.WaitFor(6));
  EXPECT_EQ(w.events().back(), "MODIFIED d 7");
  server_.reset();  // before `small` goes away
}

TEST_F(ServiceTest, ListEventsNewestLastWithLimit) {
  auto put_event = [&](const std::string& app, const std::string& id, int64_t t,
                       const std::string& reason) {
    v1::Event e;
    e.set_id(id);
    e.mutable_involved()->set_kind("App");
    e.mutable_involved()->set_namespace_("default");
    e.mutable_involved()->set_name(app);
    e.set_reason(reason);
    *e.mutable_last_time() = ToProtoTime(absl::FromUnixSeconds(t));
    ASSERT_TRUE(
        store_.Create(keys::Event("default", app, id), e.SerializeAsString())
            .ok());
  };
  put_event("hello", "z", 100, "Scheduled");
  put_event("hello", "a", 300, "Ready");
  put_event("hello", "m", 200, "Started");
  put_event("other", "b", 250, "Elsewhere");

  v1::ListEventsRequest req;
  req.set_app("hello");
  v1::ListEventsResponse resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListEvents(&ctx, req, &resp).ok());
  }
  std::vector<std::string> reasons;
  for (const auto& e : resp.events()) reasons.push_back(e.reason());
  EXPECT_EQ(reasons,
            (std::vector<std::string>{"Scheduled", "Started", "Ready"}));

  req.set_limit(2);
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListEvents(&ctx, req, &resp).ok());
  }
  reasons.clear();
  for (const auto& e : resp.events()) reasons.push_back(e.reason());
  EXPECT_EQ(reasons, (std::vector<std::string>{"Started", "Ready"}));

  req.set_app("");
  req.set_limit(0);
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ListEvents(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.events_size(), 4);
}

TEST_F(ServiceTest, ListInstancesComesFromTheRuntime) {
  InstanceRequest ir;
  ir.namespace_ = "default";
  ir.app = "hello";
  ASSERT_TRUE(runtime_->Start(ir).ok());
  ASSERT_TRUE(runtime_->Start(ir).ok());
  ir.app = "other";
  ASSERT_TRUE(runtime_->Start(ir).ok());
  v1::ListInstancesRequest req;
  req.set_app("hello");
  v1::ListInstancesResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ListInstances(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.instances_size(), 2);
  EXPECT_EQ(resp.instances(0).app(), "hello");
}

// Issue 16: the output of an instance that has stopped (crashed and was
// replaced) is reachable by its name, and with `previous` (kubectl logs
// --previous) for every stopped instance of the app; running ones are not
// in `previous`, stopped ones not in a plain `logs APP`.
TEST_F(ServiceTest, LogsOfStoppedInstances) {
  InstanceRequest ir;
  ir.namespace_ = "default";
  ir.app = "hello";
  auto crashed = runtime_->Start(ir);
  auto running = runtime_->Start(ir);
  ASSERT_TRUE(crashed.ok() && running.ok());
  runtime_->AppendLog(crashed->id(), "panic: out of cheese\n");
  runtime_->AppendLog(running->id(), "serving\n");
  ASSERT_TRUE(runtime_->Stop(crashed->id(), absl::ZeroDuration()).ok());
  auto read = [&](const std::string& instance, bool previous,
                  grpc::Status* status) {
    v1::LogsRequest req;
    req.set_app("hello");
    req.set_instance(instance);
    req.set_previous(previous);
    grpc::ClientContext ctx;
    auto reader = stub_->Logs(&ctx, req);
    std::string all;
    v1::LogChunk c;
    while (reader->Read(&c)) all += c.instance() + ": " + c.data();
    *status = reader->Finish();
    return all;
  };
  grpc::Status s;
  EXPECT_EQ(read(crashed->id(), false, &s),
            crashed->id() + ": panic: out of cheese\n");
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(read("", true, &s), crashed->id() + ": panic: out of cheese\n");
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(read("", false, &s), running->id() + ": serving\n");
  EXPECT_TRUE(s.ok()) << s.error_message();
  read(running->id(), true, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  read("hello-nope", false, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

// The Logs RPC over the runtime's log streams (rotation of log files is the
// process runtime's: tests/runtime/file_log_stream_test.cc, log_cap_test.cc).
TEST_F(ServiceTest, LogsTailAndFollow) {
  InstanceRequest ir;
  ir.namespace_ = "default";
  ir.app = "hello";
  auto inst = runtime_->Start(ir);
  ASSERT_TRUE(inst.ok());
  v1::LogsRequest req;
  req.set_app("hello");
  {
    // The runtime has no output of it: an error, as for a missing log.
    grpc::ClientContext ctx;
    auto reader = stub_->Logs(&ctx, req);
    v1::LogChunk c;
    EXPECT_FALSE(reader->Read(&c));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  runtime_->AppendLog(inst->id(), "one\ntwo\nthree\n");
  req.set_tail_lines(2);
  {
    grpc::ClientContext ctx;
    auto reader = stub_->Logs(&ctx, req);
    std::string all;
    v1::LogChunk c;
    while (reader->Read(&c)) {
      EXPECT_EQ(c.instance(), inst->id());
      all += c.data();
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(all, "two\nthree\n");
  }

  req.set_follow(true);
  req.set_tail_lines(1);
  grpc::ClientContext ctx;
  auto reader = stub_->Logs(&ctx, req);
  absl::Mutex mu;
  std::string got;
  std::set<std::string> from;
  std::thread t([&] {
    v1::LogChunk c;
    while (reader->Read(&c)) {
      absl::MutexLock lock(&mu);
      got += c.data();
      from.insert(c.instance());
    }
  });
  auto seen = [&](const std::string& want) {
    return Eventually([&] {
      absl::MutexLock lock(&mu);
      return got == want;
    });
  };
  EXPECT_TRUE(seen("three\n"));
  runtime_->AppendLog(inst->id(), "four\n");
  EXPECT_TRUE(seen("three\nfour\n"));
  runtime_->AppendLog(inst->id(), "five\n");
  EXPECT_TRUE(seen("three\nfour\nfive\n"));
  // An instance started while following: all of its output (no tail).
  auto second = runtime_->Start(ir);
  ASSERT_TRUE(second.ok());
  runtime_->AppendLog(second->id(), "a\nb\n");
  EXPECT_TRUE(seen("three\nfour\nfive\na\nb\n"));
  ctx.TryCancel();
  t.join();
  reader->Finish();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(from, (std::set<std::string>{inst->id(), second->id()}));
}

TEST_F(ServiceTest, VersionAndStatusConversion) {
  v1::VersionResponse v;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Version(&ctx, v1::VersionRequest(), &v).ok());
  EXPECT_EQ(v.version(), TIDAL_VERSION);
  EXPECT_EQ(v.store(), "memory");
  EXPECT_EQ(v.runtime(), "fake");

  absl::Status s = absl::FailedPreconditionError("busy");
  EXPECT_EQ(FromGrpc(ToGrpc(s)), s);
  EXPECT_TRUE(FromGrpc(ToGrpc(absl::OkStatus())).ok());
  EXPECT_EQ(ToGrpc(absl::NotFoundError("x")).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, StartServerFailsOnABusyPort) {
  auto second =
      StartServer(absl::StrCat("127.0.0.1:", server_->port()), service_.get());
  ASSERT_FALSE(second.ok()) << "two servers on one port";
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  auto bad = StartServer("not an address", service_.get());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tidal
