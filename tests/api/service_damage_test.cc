// One app whose stored value cannot be decoded (a real SQLite store) is
// reported as damaged, through the gRPC API, while the others are served;
// apply does not answer "created" over it, and delete removes it.

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/grpc_status.h"
#include "api/service.h"
#include "fakes/fake_clock.h"
#include "gtest/gtest.h"
#include "store/keys.h"
#include "store/sqlite_store.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal {
namespace {

using testing::FakeClock;

v1::App MakeApp(const std::string& name) {
  v1::App app;
  app.set_api_version("tidal.dev/v1");
  app.set_kind("App");
  app.mutable_metadata()->set_name(name);
  app.mutable_metadata()->set_namespace_("default");
  app.mutable_spec()->set_replicas(1);
  app.mutable_spec()->mutable_template_()->add_command("sleep");
  app.mutable_spec()->mutable_template_()->add_args("100");
  return app;
}

class ServiceDamageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tidal-svc-damage-XXXXXX")
            .string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto store = SqliteStore::Open(dir_ + "/tidal.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    ServiceOptions opts;
    opts.poll_interval = absl::Milliseconds(20);
    service_ =
        std::make_unique<TidalService>(store_.get(), nullptr, &clock_, opts);
    auto server = StartServer("127.0.0.1:0", service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::Tidal::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                            grpc::InsecureChannelCredentials()));
    v1::ApplyRequest req;
    for (const char* n : {"a", "b", "c"}) *req.add_apps() = MakeApp(n);
    auto applied = Apply(req);
    ASSERT_TRUE(applied.ok()) << applied.status();
    // A value that is not an App (0xff: an invalid wire type).
    ASSERT_TRUE(
        store_->Txn({Op::Put(keys::App("default", "b"), "\xff\xff\xff\x01")})
            .ok());
  }
  void TearDown() override {
    service_->Stop();
    server_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<v1::ApplyResponse> Apply(const v1::ApplyRequest& req) {
    grpc::ClientContext ctx;
    v1::ApplyResponse resp;
    absl::Status s = FromGrpc(stub_->Apply(&ctx, req, &resp));
    if (!s.ok()) return s;
    return resp;
  }

  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<TidalService> service_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<v1::Tidal::Stub> stub_;
};

TEST_F(ServiceDamageTest, ListServesTheOthersAndShowsTheDamagedOne) {
  grpc::ClientContext ctx;
  v1::ListRequest req;
  v1::ListResponse resp;
  ASSERT_TRUE(stub_->List(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.apps_size(), 3);
  EXPECT_EQ(resp.apps(0).spec().template_().command(0), "sleep");
  EXPECT_EQ(resp.apps(2).spec().template_().command(0), "sleep");
  const v1::App& b = resp.apps(1);
  EXPECT_EQ(b.metadata().name(), "b");
  ASSERT_EQ(b.status().conditions_size(), 1);
  EXPECT_EQ(b.status().conditions(0).reason(), "StoreDamaged");
  EXPECT_EQ(b.status().conditions(0).status(), "False");
  EXPECT_TRUE(absl::StrContains(b.status().conditions(0).message(),
                                "cannot be decoded"));
}

TEST_F(ServiceDamageTest, GetOfTheDamagedAppIsDataLossNamingIt) {
  grpc::ClientContext ctx;
  v1::GetRequest req;
  req.set_name("b");
  v1::App app;
  absl::Status s = FromGrpc(stub_->Get(&ctx, req, &app));
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(),
                                "app \"b\" in namespace "
                                "\"default\" is damaged"))
      << s;
  grpc::ClientContext ctx2;
  req.set_name("a");
  EXPECT_TRUE(stub_->Get(&ctx2, req, &app).ok());
}

TEST_F(ServiceDamageTest, ApplyNeverAnswersCreatedOverTheDamagedApp) {
  v1::ApplyRequest req;
  *req.add_apps() = MakeApp("b");
  auto r = Apply(req);
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  v1::ApplyRequest other;
  *other.add_apps() = MakeApp("d");
  auto d = Apply(other);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->results(0).action(), "created");
}

TEST_F(ServiceDamageTest, WatchSendsEveryAppWithTheDamagedOneMarked) {
  grpc::ClientContext ctx;
  v1::WatchRequest req;
  auto reader = stub_->Watch(&ctx, req);
  std::map<std::string, v1::App> seen;
  v1::WatchEvent ev;
  while (seen.size() < 3 && reader->Read(&ev))
    seen[ev.app().metadata().name()] = ev.app();
  ctx.TryCancel();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen["b"].status().conditions(0).reason(), "StoreDamaged");
  EXPECT_EQ(seen["a"].spec().replicas(), 1);
}

TEST_F(ServiceDamageTest, DeleteRemovesTheDamagedApp) {
  grpc::ClientContext ctx;
  v1::DeleteRequest req;
  req.set_name("b");
  v1::DeleteResponse resp;
  absl::Status s = FromGrpc(stub_->Delete(&ctx, req, &resp));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(
      absl::IsNotFound(store_->Get(keys::App("default", "b")).status()));
  v1::ApplyRequest again;
  *again.add_apps() = MakeApp("b");
  auto r = Apply(again);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).action(), "created");
}

}  // namespace
}  // namespace tidal
