// Server: the whole tidald in-process on a temporary data directory with a
// real SQLite store, real instance processes (the sample app) and ports 0.
// The controller side stops and starts again while the API, the gateway and
// the runtime keep running, and reconciling resumes after it.

#include "daemon/server.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "e2e/http_client.h"
#include "fakes/eventually.h"
#include "store/keys.h"
#include "tidal/v1/app.pb.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;
using ::tidal::testing::Eventually;
using tidal::v1::App;

std::string BuildDir() {
  const char* env = std::getenv("TIDAL_BUILD_DIR");
  return env != nullptr && *env ? env : TIDAL_BUILD_DIR_DEFAULT;
}

App SampleApp(int replicas, int generation) {
  App app;
  app.set_api_version("tidal.dev/v1");
  app.set_kind("App");
  app.mutable_metadata()->set_name("web");
  app.mutable_metadata()->set_namespace_("default");
  app.mutable_metadata()->set_uid("uid-web");
  app.mutable_metadata()->set_generation(generation);
  app.mutable_spec()->set_replicas(replicas);
  auto* t = app.mutable_spec()->mutable_template_();
  t->add_command(BuildDir() + "/examples/tidal-sample-app");
  t->add_args("--version");
  t->add_args("v1");
  t->mutable_readiness_probe()->mutable_http_get()->set_path("/healthz");
  t->mutable_readiness_probe()->set_period_seconds(1);
  return app;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InitLogging("warn", "text");
    char tmpl[] = "/tmp/tidal-server-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  DaemonFlags Flags() {
    DaemonFlags f;
    f.data_dir = dir_;
    f.listen = "127.0.0.1:0";
    f.gateway_listen = "127.0.0.1:0";
    f.admin_listen = "127.0.0.1:0";
    f.port_range = "8200-8999";  // under the ephemeral range
    f.instance_cgroup = "off";
    f.stop_instances_on_exit = true;
    f.workers = 2;
    return f;
  }

  App Stored() {
    App app;
    auto kv = server_->store()->Get(keys::App("default", "web"));
    if (kv.ok()) app.ParseFromString(kv->value);
    return app;
  }
  // Writes the app's spec (keeping what the controller wrote in status).
  void PutSpec(const App& spec) {
    auto kv = server_->store()->Get(keys::App("default", "web"));
    if (!kv.ok()) {
      ASSERT_TRUE(
          server_->store()
              ->Create(keys::App("default", "web"), spec.SerializeAsString())
              .ok());
      return;
    }
    App app;
    ASSERT_TRUE(app.ParseFromString(kv->value));
    *app.mutable_spec() = spec.spec();
    app.mutable_metadata()->set_generation(spec.metadata().generation());
    ASSERT_TRUE(server_->store()
                    ->Update(keys::App("default", "web"),
                             app.SerializeAsString(), kv->resource_version)
                    .ok());
  }
  bool Reconciled(int replicas, int generation) {
    App app = Stored();
    return app.status().observed_generation() == generation &&
           app.status().ready_replicas() == replicas;
  }

  std::string dir_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, ReconcilingResumesAfterTheControllerSideRestarts) {
  auto config = MakeDaemonConfig(Flags(), 1024);
  ASSERT_TRUE(config.ok()) << config.status();
  auto server = Server::Create(std::move(config).value());
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  // A second Server on the same data directory is refused (the lock),
  // before it touches anything.
  {
    auto again = MakeDaemonConfig(Flags(), 1024);
    ASSERT_TRUE(again.ok());
    // The lock waits up to 10 s for a dying tidald's children; that is the
    // point of this check, so it takes that long.
    auto second = Server::Create(std::move(again).value());
    ASSERT_FALSE(second.ok());
    EXPECT_TRUE(absl::StrContains(second.status().message(),
                                  "another tidald is running"))
        << second.status();
  }
  ASSERT_TRUE(server_->Start().ok());
  EXPECT_TRUE(server_->controller_side_running());
  EXPECT_GT(server_->api_port(), 0);
  EXPECT_GT(server_->gateway_port(), 0);
  EXPECT_GT(server_->admin_port(), 0);

  // One app, applied through the store: reconciled and served.
  PutSpec(SampleApp(1, 1));
  ASSERT_TRUE(Eventually([&] { return Reconciled(1, 1); }))
      << Stored().status().ShortDebugString();
  EXPECT_EQ(Stored().status().url(),
            absl::StrCat("http://web.default.tidal.localhost:",
                         server_->gateway_port()));
  auto resp = e2e::HttpGet(server_->gateway_port(), e2e::AppHost("web"));
  EXPECT_EQ(resp.status, 200) << resp.error;

  // The controller side stops; the gateway, the runtime and the API keep
  // running: the app is still served, the admin endpoint answers ready.
  server_->StopControllerSide();
  server_->StopControllerSide();  // idempotent
  EXPECT_FALSE(server_->controller_side_running());
  PutSpec(SampleApp(2, 2));
  resp = e2e::HttpGet(server_->gateway_port(), e2e::AppHost("web"));
  EXPECT_EQ(resp.status, 200) << resp.error;
  auto ready = e2e::HttpGet(server_->admin_port(), "127.0.0.1", "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.error << ready.body;
  // The gateway's own readiness, for load balancers in front of it.
  auto gateway =
      e2e::HttpGet(server_->admin_port(), "127.0.0.1", "/readyz/gateway");
  EXPECT_EQ(gateway.status, 200) << gateway.error << gateway.body;
  EXPECT_EQ(gateway.body, "ready\n");
  // Nothing reconciled the new generation meanwhile.
  EXPECT_EQ(Stored().status().observed_generation(), 1);

  // Started again: the change made while it was stopped is reconciled.
  ASSERT_TRUE(server_->StartControllerSide().ok());
  ASSERT_TRUE(server_->StartControllerSide().ok());  // no effect
  EXPECT_TRUE(server_->controller_side_running());
  ASSERT_TRUE(Eventually([&] { return Reconciled(2, 2); }))
      << Stored().status().ShortDebugString();
  // And it keeps watching.
  PutSpec(SampleApp(1, 3));
  ASSERT_TRUE(Eventually([&] { return Reconciled(1, 3); }))
      << Stored().status().ShortDebugString();

  // Scale from zero after the restart: the request the gateway holds wakes
  // the scaler (the DemandSignal, at once; its next tick would see it too)
  // and queues the app; it is answered once an instance is ready.
  App zero = SampleApp(0, 1);
  zero.mutable_metadata()->set_name("zero");
  zero.mutable_metadata()->set_uid("uid-zero");
  zero.mutable_spec()->clear_replicas();
  auto* scaling = zero.mutable_spec()->mutable_scaling();
  scaling->set_min_replicas(0);
  scaling->set_max_replicas(1);
  scaling->set_initial_scale(0);
  scaling->set_metric("concurrency");
  scaling->set_target(10);
  scaling->set_scale_to_zero_grace_period_ms(60000);
  ASSERT_TRUE(
      server_->store()
          ->Create(keys::App("default", "zero"), zero.SerializeAsString())
          .ok());
  auto stored_zero = [&] {
    App app;
    auto kv = server_->store()->Get(keys::App("default", "zero"));
    if (kv.ok()) app.ParseFromString(kv->value);
    return app;
  };
  ASSERT_TRUE(Eventually(
      [&] { return stored_zero().status().observed_generation() == 1; }));
  EXPECT_EQ(stored_zero().status().ready_replicas(), 0);
  resp = e2e::HttpGet(server_->gateway_port(), e2e::AppHost("zero"), "/",
                      absl::Seconds(30));
  EXPECT_EQ(resp.status, 200) << resp.error;
  EXPECT_TRUE(Eventually([&] {
    return stored_zero().status().ready_replicas() == 1;
  })) << stored_zero().status().ShortDebugString();

  server_->Stop();
  server_->Stop();  // idempotent
  EXPECT_FALSE(server_->controller_side_running());
  // Stopped: the gateway no longer answers.
  resp = e2e::HttpGet(server_->gateway_port(), e2e::AppHost("web"), "/",
                      absl::Seconds(2));
  EXPECT_NE(resp.status, 200);
}

}  // namespace
}  // namespace tidal
