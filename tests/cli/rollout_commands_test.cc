// The CI gate and rollout commands of the real tidalctl binary against a
// TidalService over a MemoryStore (TidalctlFixture). No controller runs: the
// tests write the app's status and rollout state as the controller would.

#include <signal.h>
#include <sys/wait.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/spec.h"
#include "cli/tidalctl_fixture.h"
#include "deployer/control.h"
#include "deployer/revisions.h"
#include "gtest/gtest.h"
#include "store/keys.h"

namespace tidal {
namespace {

using cli_test::Eventually;
using cli_test::ReadAll;

class RolloutCommandsTest : public cli_test::TidalctlFixture {
 protected:
  void Configure(ServiceOptions* opts) override {
    control_ =
        std::make_unique<deployer::DeployerControl>(&store_, &clock_, nullptr);
    opts->rollouts = control_.get();
  }

  // Writes app "web" (generation 1) with the given rollout status.
  void PutApp(const std::string& phase, bool complete,
              const std::string& reason = "") {
    v1::App app;
    auto kv = store_.Get(keys::App("default", "web"));
    int64_t version = 0;
    if (kv.ok()) {
      ASSERT_TRUE(app.ParseFromString(kv->value));
      version = kv->resource_version;
    } else {
      app.set_api_version("tidal.dev/v1");
      app.set_kind("App");
      app.mutable_metadata()->set_name("web");
      app.mutable_metadata()->set_namespace_("default");
      app.mutable_metadata()->set_generation(1);
      app.mutable_spec()->set_replicas(2);
      app.mutable_spec()->mutable_template_()->add_command("tidal-sample-app");
    }
    auto* st = app.mutable_status();
    st->set_observed_generation(1);
    st->set_desired_replicas(2);
    st->set_ready_replicas(complete ? 2 : 0);
    st->clear_conditions();
    auto* c = st->add_conditions();
    c->set_type("Progressing");
    c->set_status(complete ? "True" : "False");
    c->set_reason(complete ? "Complete" : "Updating");
    auto* r = st->mutable_rollout();
    r->set_phase(phase);
    r->set_stable_revision(1);
    r->set_reason(reason);
    r->set_message(reason.empty() ? "" : "revision 1 does not start");
    r->set_observed_generation(1);
    app.mutable_metadata()->set_resource_version(0);
    if (version == 0) {
      ASSERT_TRUE(
          store_.Create(keys::App("default", "web"), app.SerializeAsString())
              .ok());
    } else {
      ASSERT_TRUE(store_
                      .Update(keys::App("default", "web"),
                              app.SerializeAsString(), version)
                      .ok());
    }
  }

  // Waits for a background tidalctl; -1 if it does not exit in time.
  int WaitExit(pid_t pid, absl::Duration timeout) {
    int status = 0;
    const bool done = Eventually(
        [&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout);
    if (!done) return -1;
    background_.erase(std::remove(background_.begin(), background_.end(), pid),
                      background_.end());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::unique_ptr<deployer::DeployerControl> control_;
};

// tidald goes away in the middle of the wait and comes back on the same
// address: the gate says so once, keeps waiting, and exits 0 when the
// release is out (not 3 at the first failed request).
TEST_F(RolloutCommandsTest, WaitSurvivesARestartOfTidald) {
  PutApp("Progressing", false);
  pid_t pid = Spawn(
      {"--server", address_, "rollout", "status", "web", "--timeout", "60s"},
      Env({}), "wait");
  background_.push_back(pid);
  const std::string out = (dir_ / "wait.out").string();
  const std::string err = (dir_ / "wait.err").string();
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(ReadAll(out), "Progressing");
  })) << ReadAll(err);
  const int port = server_->port();
  server_.reset();  // tidald is down
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(ReadAll(err), "is unreachable");
  })) << ReadAll(err);
  EXPECT_NE(ReadAll(err).find("still waiting until the --timeout"),
            std::string::npos);
  // The release finishes while tidald is down; it comes back.
  PutApp("Succeeded", true);
  auto server = StartServer(absl::StrCat("127.0.0.1:", port), service_.get());
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  const int code = WaitExit(pid, absl::Seconds(30));
  EXPECT_EQ(code, 0) << ReadAll(err);
  EXPECT_NE(ReadAll(out).find("is rolled out"), std::string::npos)
      << ReadAll(out);
  EXPECT_NE(ReadAll(err).find("tidald answers again"), std::string::npos);
}

// Unreachable for the whole --timeout: exit 4 (timeout), not 3.
TEST_F(RolloutCommandsTest, WaitTimesOutWhileTidaldStaysDown) {
  PutApp("Progressing", false);
  pid_t pid = Spawn(
      {"--server", address_, "rollout", "status", "web", "--timeout", "3s"},
      Env({}), "wait");
  background_.push_back(pid);
  const std::string out = (dir_ / "wait.out").string();
  ASSERT_TRUE(Eventually(
      [&] { return absl::StrContains(ReadAll(out), "Progressing"); }));
  server_.reset();
  const int code = WaitExit(pid, absl::Seconds(30));
  EXPECT_EQ(code, 4) << ReadAll(dir_ / "wait.err");
}

// An app's first revision that failed (nothing to roll back to): exit 1,
// naming that revision.
TEST_F(RolloutCommandsTest, FailedFirstRevisionExitsOne) {
  PutApp("Failed", false, "CrashLoop");
  auto r = Run({"rollout", "status", "web", "--timeout", "10s"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("revision 1 failed (CrashLoop)"), std::string::npos)
      << r.err;
}

// `rollout retry` then at once `rollout status`: the old RolledBack verdict
// is not reported again before the controller has run.
TEST_F(RolloutCommandsTest, StatusRightAfterRetryIsNotTheOldVerdict) {
  PutApp("RolledBack", false, "AnalysisFailed");
  v1::RolloutState st;
  st.set_stable_revision(1);
  st.set_stable_hash("aaa");
  st.set_phase("RolledBack");
  // The spec still names the template that rolled back.
  v1::App app;
  ASSERT_TRUE(
      app.ParseFromString(store_.Get(keys::App("default", "web"))->value));
  st.set_failed_hash(spec::TemplateHash(app.spec().template_()));
  st.set_failed_revision(2);
  ASSERT_TRUE(
      store_.Create(keys::RolloutKey("default", "web"), st.SerializeAsString())
          .ok());
  auto before = Run({"rollout", "status", "web", "--timeout", "5s"});
  EXPECT_EQ(before.code, 1) << before.err;
  auto retry = Run({"rollout", "retry", "web"});
  ASSERT_EQ(retry.code, 0) << retry.err;
  auto after = Run({"rollout", "status", "web", "--timeout", "1s"});
  EXPECT_EQ(after.code, 4) << after.out << after.err;  // pending, no verdict
}

// After a rollback the progress line names the revision that rolled back,
// then the one that serves (not "revision 1 RolledBack").
TEST_F(RolloutCommandsTest, StatusAfterARollbackNamesBothRevisions) {
  PutApp("RolledBack", true, "CrashLoop");
  auto kv = store_.Get(keys::App("default", "web"));
  ASSERT_TRUE(kv.ok());
  v1::App app;
  ASSERT_TRUE(app.ParseFromString(kv->value));
  app.mutable_status()->mutable_rollout()->set_failed_revision(2);
  ASSERT_TRUE(store_
                  .Update(keys::App("default", "web"), app.SerializeAsString(),
                          kv->resource_version)
                  .ok());
  auto r = Run({"rollout", "status", "web", "--timeout", "1s"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.out, "web: revision 2 RolledBack; revision 1 serves: 2/2 ready"))
      << r.out;
}

TEST_F(RolloutCommandsTest, HistoryYamlIsYaml) {
  PutApp("Succeeded", true);
  v1::Revision rev;
  rev.set_namespace_("default");
  rev.set_app("web");
  rev.set_number(1);
  rev.set_template_hash("aaa");
  rev.set_change_cause("first");
  ASSERT_TRUE(store_
                  .Create(deployer::RevisionKey("default", "web", 1),
                          rev.SerializeAsString())
                  .ok());
  auto r = Run({"rollout", "history", "web", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "{")) << r.out;
  auto y = Run({"rollout", "history", "web", "-o", "yaml"});
  ASSERT_EQ(y.code, 0) << y.err;
  EXPECT_TRUE(absl::StartsWith(y.out, "revisions:\n")) << y.out;
  EXPECT_NE(y.out.find("changeCause: first"), std::string::npos) << y.out;
}

// `rollout restart` marks the template with an annotation, never a label
// value the label rule refuses: the app stays valid, so a scale, and the
// round trip `get -o yaml | apply -f -`, still work afterwards (issue 16).
TEST_F(RolloutCommandsTest, RestartLeavesAValidApp) {
  PutApp("Succeeded", true);
  auto restart = Run({"rollout", "restart", "web"});
  ASSERT_EQ(restart.code, 0) << restart.err;
  auto kv = store_.Get(keys::App("default", "web"));
  ASSERT_TRUE(kv.ok());
  v1::App app;
  ASSERT_TRUE(app.ParseFromString(kv->value));
  const auto& t = app.spec().template_();
  EXPECT_EQ(t.labels().count("tidal.dev/restartedAt"), 0u);
  ASSERT_EQ(t.annotations().count("tidal.dev/restartedAt"), 1u);
  EXPECT_NE(t.annotations().at("tidal.dev/restartedAt").find('T'),
            std::string::npos);

  auto scale = Run({"scale", "web", "--replicas", "3"});
  EXPECT_EQ(scale.code, 0) << scale.err;
  auto yaml = Run({"get", "app", "web", "-o", "yaml"});
  ASSERT_EQ(yaml.code, 0) << yaml.err;
  EXPECT_NE(yaml.out.find("tidal.dev/restartedAt"), std::string::npos)
      << yaml.out;
  const std::string file = (dir_ / "web.yaml").string();
  { std::ofstream(file) << yaml.out; }
  auto apply = Run({"apply", "-f", "-"}, {}, file);
  EXPECT_EQ(apply.code, 0) << apply.err;
  EXPECT_NE(apply.out.find("app.tidal.dev/web unchanged"), std::string::npos)
      << apply.out;
}

// Applying the file again after `rollout restart` keeps the restart (as
// kubectl's apply keeps kubectl.kubernetes.io/restartedAt, a field the file
// never set): the template keeps its hash, so no rollout back to the
// template before the restart. A value the file sets itself wins.
TEST_F(RolloutCommandsTest, ApplyAfterRestartKeepsTheRestart) {
  const std::string file = (dir_ / "web.yaml").string();
  {
    std::ofstream(file) << "apiVersion: tidal.dev/v1\nkind: App\n"
                           "metadata: {name: web}\n"
                           "spec:\n  replicas: 2\n"
                           "  template: {command: [tidal-sample-app]}\n";
  }
  ASSERT_EQ(Run({"apply", "-f", file}).code, 0);
  auto read = [&] {
    v1::App app;
    auto kv = store_.Get(keys::App("default", "web"));
    EXPECT_TRUE(kv.ok() && app.ParseFromString(kv->value));
    return app;
  };
  const std::string before = spec::TemplateHash(read().spec().template_());
  auto restart = Run({"rollout", "restart", "web"});
  ASSERT_EQ(restart.code, 0) << restart.err;
  const v1::App restarted = read();
  const std::string hash = spec::TemplateHash(restarted.spec().template_());
  ASSERT_NE(hash, before);
  const std::string at =
      restarted.spec().template_().annotations().at("tidal.dev/restartedAt");

  auto diff = Run({"diff", "-f", file});
  EXPECT_EQ(diff.out.find("restartedAt"), std::string::npos) << diff.out;
  auto apply = Run({"apply", "-f", file});
  ASSERT_EQ(apply.code, 0) << apply.err;
  v1::App app = read();
  EXPECT_EQ(spec::TemplateHash(app.spec().template_()), hash);
  EXPECT_EQ(app.spec().template_().annotations().at("tidal.dev/restartedAt"),
            at);
  EXPECT_EQ(Run({"diff", "-f", file}).code, 0);

  {
    std::ofstream(file) << "apiVersion: tidal.dev/v1\nkind: App\n"
                           "metadata: {name: web}\n"
                           "spec:\n  replicas: 2\n"
                           "  template:\n    command: [tidal-sample-app]\n"
                           "    annotations: {tidal.dev/restartedAt: mine}\n";
  }
  ASSERT_EQ(Run({"apply", "-f", file}).code, 0);
  EXPECT_EQ(read().spec().template_().annotations().at("tidal.dev/restartedAt"),
            "mine");
}

// Issue 16: `rollout undo` records its change cause (`undo to revision
// N`) where history shows it, on the revision it brings back, keeping what
// that revision said before.
TEST_F(RolloutCommandsTest, UndoRecordsItsChangeCause) {
  PutApp("Succeeded", true);
  auto kv = store_.Get(keys::App("default", "web"));
  ASSERT_TRUE(kv.ok());
  v1::App app;
  ASSERT_TRUE(app.ParseFromString(kv->value));
  v1::Revision one;
  one.set_namespace_("default");
  one.set_app("web");
  one.set_number(1);
  *one.mutable_template_() = app.spec().template_();
  one.mutable_template_()->add_args("v1");
  one.set_template_hash(spec::TemplateHash(one.template_()));
  one.set_change_cause("first release");
  v1::Revision two = one;
  two.set_number(2);
  *two.mutable_template_() = app.spec().template_();
  two.set_template_hash(spec::TemplateHash(two.template_()));
  two.set_change_cause("second");
  for (const auto& r : {one, two}) {
    ASSERT_TRUE(store_
                    .Create(deployer::RevisionKey("default", "web", r.number()),
                            r.SerializeAsString())
                    .ok());
  }
  v1::RolloutState st;
  st.set_stable_revision(2);
  st.set_stable_hash(two.template_hash());
  st.set_phase("Succeeded");
  ASSERT_TRUE(
      store_.Create(keys::RolloutKey("default", "web"), st.SerializeAsString())
          .ok());
  auto undo = Run({"rollout", "undo", "web"});
  ASSERT_EQ(undo.code, 0) << undo.err;
  EXPECT_EQ(undo.out, "app.tidal.dev/web rolled back\n");
  auto history = Run({"rollout", "history", "web"});
  ASSERT_EQ(history.code, 0) << history.err;
  EXPECT_TRUE(
      absl::StrContains(history.out, "undo to revision 1 (was: first release)"))
      << history.out;
  // Undone twice: the cause says it once.
  ASSERT_TRUE(store_.Get(keys::App("default", "web")).ok());
  auto again = Run({"rollout", "undo", "web", "--to-revision", "1"});
  ASSERT_EQ(again.code, 0) << again.err;
  history = Run({"rollout", "history", "web"});
  EXPECT_TRUE(
      absl::StrContains(history.out, "undo to revision 1 (was: first release)"))
      << history.out;
  EXPECT_FALSE(absl::StrContains(history.out, "(was: undo")) << history.out;
}

}  // namespace
}  // namespace tidal
