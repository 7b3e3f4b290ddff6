// Runs the real tidalctl binary ($TIDAL_BUILD_DIR/src/cli/tidalctl) against a
// TidalService over a MemoryStore, served on 127.0.0.1:0 in this process.

#include <fcntl.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "api/service.h"
#include "cli/tidalctl_fixture.h"
#include "common/proto_time.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "fakes/statusless_h2_server.h"
#include "gtest/gtest.h"
#include "store/keys.h"
#include "tidal/v1/api.grpc.pb.h"

extern char** environ;

namespace tidal {
namespace {

namespace fs = std::filesystem;

using cli_test::Eventually;
using cli_test::ReadAll;
using cli_test::Result;

// A port nothing listens on.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class TidalctlTest : public cli_test::TidalctlFixture {
 protected:
  void Configure(ServiceOptions* opts) override {
    opts->poll_interval = absl::Milliseconds(20);
    // A limit only tidald knows (tidald --max-instances-per-app).
    opts->validation.max_instances_per_app = 1000;
  }

  static std::string AppYaml(const std::string& name, int replicas,
                             const std::string& extra_labels = "") {
    return absl::StrCat(
        "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: ", name,
        "\n  labels:\n    team: core\n", extra_labels,
        "spec:\n  replicas: ", replicas,
        "\n  template:\n    command: [\"/bin/sleep\", \"1000\"]\n");
  }
};

TEST_F(TidalctlTest, ApplyGetAndOutputFormats) {
  std::string file = WriteFile("hello.yaml", AppYaml("hello", 2));
  Result r = Run({"apply", "-f", file});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/hello created\n");
  r = Run({"apply", "-f", file});
  EXPECT_EQ(r.out, "app.tidal.dev/hello unchanged\n");
  r = Run({"apply", "-f", WriteFile("hello.yaml", AppYaml("hello", 3)),
           "--message", "more"});
  EXPECT_EQ(r.out, "app.tidal.dev/hello configured\n");

  r = Run({"get", "apps"});
  ASSERT_EQ(r.code, 0) << r.err;
  // AGE is wall-clock time since creation: 0s, or a second or two on a
  // loaded machine.
  const std::string table_head =
      "NAME    READY   DESIRED   STATUS    URL   AGE\n"
      "hello   0/3     3         Pending   -     ";
  ASSERT_TRUE(absl::StartsWith(r.out, table_head)) << r.out;
  EXPECT_TRUE(r.out.substr(table_head.size()) == "0s\n" ||
              r.out.substr(table_head.size()) == "1s\n" ||
              r.out.substr(table_head.size()) == "2s\n")
      << r.out;

  r = Run({"get", "app", "hello", "-o", "yaml"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "name: hello")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "replicas: 3")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "tidal.dev/change-cause: more"))
      << r.out;

  r = Run({"get", "app", "hello", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "\"name\": \"hello\"")) << r.out;
  EXPECT_EQ(r.out.front(), '{');

  r = Run({"get", "apps", "-o", "json"});
  EXPECT_TRUE(absl::StrContains(r.out, "\"kind\": \"List\"")) << r.out;

  r = Run({"get", "apps", "-o", "name", "-l", "team=core"});
  EXPECT_EQ(r.out, "app.tidal.dev/hello\n");
  r = Run({"get", "apps", "-l", "team in (web)"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "No apps found in namespace default.\n");
  r = Run({"get", "apps", "-l", "team in web"});
  EXPECT_EQ(r.code, 2);

  r = Run({"get", "apps", "-A", "-o", "wide"});
  EXPECT_TRUE(absl::StartsWith(r.out,
                               "NAMESPACE   NAME    READY   DESIRED   STATUS   "
                               " URL   AGE   REVISION   TEMPLATE HASH"))
      << r.out;

  r = Run({"get", "app", "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "error: app \"nope\" not found in namespace \"default\"\n");
}

TEST_F(TidalctlTest, ApplyDirectoryStdinAndNamespace) {
  WriteFile("dir/b.yaml", AppYaml("bravo", 1));
  WriteFile("dir/a.yml", AppYaml("alpha", 1));
  WriteFile("dir/ignored.txt", "not yaml");
  Result r = Run({"apply", "-f", (dir_ / "dir").string(), "-n", "team-a"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "app.tidal.dev/alpha created in namespace team-a\n"
            "app.tidal.dev/bravo created in namespace team-a\n");
  r = Run({"get", "apps", "-n", "team-a", "-o", "name"});
  EXPECT_EQ(r.out, "app.tidal.dev/alpha\napp.tidal.dev/bravo\n");

  std::string in = WriteFile("stdin.yaml", AppYaml("charlie", 1));
  r = Run({"apply", "-f", "-"}, {}, in);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/charlie created\n");
}

// Issue 16: -n and a namespace written in the file must agree (kubectl):
// a mismatch is a usage error naming the file and line, and nothing is
// applied, diffed or deleted; the result lines name a namespace that is
// not "default".
TEST_F(TidalctlTest, NamespaceFlagMustMatchTheFile) {
  std::string file = WriteFile(
      "staging.yaml",
      absl::StrCat("apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: "
                   "web\n  namespace: staging\nspec:\n  replicas: 1\n  "
                   "template:\n    command: [\"/bin/sleep\", \"1000\"]\n"));
  for (const auto& cmd : {"apply", "diff", "delete"}) {
    Result r = Run({cmd, "-f", file, "-n", "team-a"});
    EXPECT_EQ(r.code, 2) << cmd << ": " << r.out << r.err;
    EXPECT_TRUE(absl::StrContains(
        r.err, absl::StrCat(file,
                            ":1: app \"web\" sets metadata.namespace "
                            "\"staging\", which does not match -n "
                            "\"team-a\"")))
        << cmd << ": " << r.err;
  }
  EXPECT_FALSE(store_.Get(keys::App("staging", "web")).ok());
  EXPECT_FALSE(store_.Get(keys::App("team-a", "web")).ok());
  Result r = Run({"apply", "-f", file, "-n", "staging"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/web created in namespace staging\n");
  r = Run({"apply", "-f", file});  // no -n: the file's namespace
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/web unchanged in namespace staging\n");
  r = Run({"scale", "web", "-n", "staging", "--replicas", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/web scaled in namespace staging\n");
  // The scale stands through a diff and an apply of the unchanged file.
  r = Run({"diff", "-f", file});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  r = Run({"apply", "-f", file});
  EXPECT_EQ(r.out, "app.tidal.dev/web unchanged in namespace staging\n");
  r = Run({"delete", "app", "web", "-n", "staging"});
  EXPECT_EQ(r.out, "app.tidal.dev \"web\" deleted in namespace staging\n");
}

TEST_F(TidalctlTest, SpecErrorsOnePerLineAndNothingApplied) {
  std::string bad = WriteFile(
      "bad.yaml",
      "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: bad\nspec:\n"
      "  scaling:\n    minReplicas: 5\n    maxReplicas: 3\n  template:\n"
      "    command: [\"/bin/sleep\"]\n  colour: blue\n");
  Result r = Run({"apply", "-f", bad});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "bad.yaml:7:")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "spec.scaling.minReplicas")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "colour")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "nothing was changed")) << r.err;
  EXPECT_EQ(store_.txn_count(), 0);

  // Two files, the second invalid: neither is applied.
  std::string good = WriteFile("good.yaml", AppYaml("good", 1));
  r = Run({"apply", "-f", good, "-f", bad});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "bad.yaml:")) << r.err;
  EXPECT_EQ(store_.txn_count(), 0);
}

TEST_F(TidalctlTest, DeleteNodeOnASingleNodeIsRefused) {
  Result r = Run({"delete", "node", "n1"});
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.err, "single node")) << r.err;
}

TEST_F(TidalctlTest, ClientAndServerDryRun) {
  std::string file = WriteFile("hello.yaml", AppYaml("hello", 2));
  Result r = Run({"apply", "-f", file, "--dry-run=client"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/hello created (dry run)\n");
  r = Run({"apply", "-f", file, "--dry-run=server"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/hello created (server dry run)\n");
  EXPECT_EQ(store_.txn_count(), 0);

  ASSERT_EQ(Run({"apply", "-f", file}).code, 0);
  r = Run({"apply", "-f", file, "--dry-run=client"});
  EXPECT_EQ(r.out, "app.tidal.dev/hello unchanged (dry run)\n");
  r = Run({"apply", "-f", WriteFile("hello3.yaml", AppYaml("hello", 3)),
           "--dry-run=client"});
  EXPECT_EQ(r.out, "app.tidal.dev/hello configured (dry run)\n");
  EXPECT_EQ(store_.txn_count(), 1);

  // Client dry run validates locally even with no server.
  r = Run({"--server", absl::StrCat("127.0.0.1:", ClosedPort()), "apply", "-f",
           file, "--dry-run=client"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "app.tidal.dev/hello valid (dry run"))
      << r.out;
  std::string bad = WriteFile("bad.yaml", AppYaml("Bad_Name", 1));
  r = Run({"apply", "-f", bad, "--dry-run=client"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "bad.yaml:4:")) << r.err;
}

TEST_F(TidalctlTest, DiffExitCodes) {
  std::string file = WriteFile("hello.yaml", AppYaml("hello", 2));
  Result r = Run({"diff", "-f", file});
  EXPECT_EQ(r.code, 1) << "not yet created: different";
  EXPECT_TRUE(absl::StrContains(r.out, "+++ desired/default/hello")) << r.out;

  // Applied with a change cause: the annotation is history, not a difference.
  ASSERT_EQ(Run({"apply", "-f", file, "--message", "release 7"}).code, 0);
  r = Run({"diff", "-f", file});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "");

  r = Run({"diff", "-f", WriteFile("hello3.yaml", AppYaml("hello", 3))});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(
      r.out, "--- live/default/hello\n+++ desired/default/hello\n"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\n-  replicas: 2\n+  replicas: 3\n"))
      << r.out;

  r = Run({"diff", "-f", WriteFile("bad.yaml", "kind: [\n")});
  EXPECT_EQ(r.code, 2) << r.err;
  r = Run({"diff", "-f", (dir_ / "missing.yaml").string()});
  EXPECT_EQ(r.code, 2) << r.err;
  r = Run({"--server", absl::StrCat("127.0.0.1:", ClosedPort()), "diff", "-f",
           file});
  EXPECT_EQ(r.code, 3) << r.err;
}

TEST_F(TidalctlTest, UnreachableServerSaysWhatToDo) {
  const std::string addr = absl::StrCat("127.0.0.1:", ClosedPort());
  Result r = Run({"--server", addr, "get", "apps"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(
      r.err,
      absl::StrCat("error: cannot reach tidald at ", addr,
                   ": connection refused \u2014 is it running? (start it with "
                   "`tidald` or `make run`)\n"));
  // The address comes from TIDAL_SERVER, then the config file.
  r = Run({"--no-server-flag", "version"},
          {absl::StrCat("TIDAL_SERVER=", addr)});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(absl::StrContains(r.err, addr)) << r.err;
  WriteFile("home/.config/tidal/config.yaml",
            absl::StrCat("server: ", address_, "\n"));
  r = Run({"--no-server-flag", "version"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("Client: tidalctl ", TIDAL_VERSION,
                                "\nServer: tidald ", TIDAL_VERSION, " at ",
                                address_, " (store memory, runtime fake)\n"));
  r = Run({"--no-server-flag", "version"},
          {absl::StrCat("TIDAL_SERVER=", addr)});
  EXPECT_EQ(r.code, 3) << "the environment wins over the config file";

  r = Run({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  r = Run({"get", "apps", "--timeout", "soon"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--timeout")) << r.err;
}

// A server that ends a call with trailers holding no grpc-status (as a
// tidald being stopped may): gRPC 1.51's retry filter aborted the client on
// them (grpc/grpc#34683, SIGABRT, 134). tidalctl runs without it: an error.
TEST_F(TidalctlTest, TrailersWithoutAStatusAreAnErrorNotACrash) {
  testing::StatuslessH2Server server;
  ASSERT_GT(server.port(), 0);
  Result r = Run(
      {"--server", absl::StrCat("127.0.0.1:", server.port()), "get", "apps"});
  EXPECT_GE(server.answered(), 1);
  EXPECT_TRUE(r.code >= 1 && r.code <= 3) << r.code << " " << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "No status received")) << r.err;
}

TEST_F(TidalctlTest, DeleteDescribeInstancesEventsAndLogs) {
  std::string file = WriteFile("hello.yaml", AppYaml("hello", 1));
  ASSERT_EQ(Run({"apply", "-f", file}).code, 0);
  InstanceRequest ir;
  ir.namespace_ = "default";
  ir.app = "hello";
  ASSERT_TRUE(runtime_.Start(ir).ok());
  v1::Event ev;
  ev.set_id("e1");
  ev.mutable_involved()->set_kind("App");
  ev.mutable_involved()->set_namespace_("default");
  ev.mutable_involved()->set_name("hello");
  ev.set_type("Normal");
  ev.set_reason("Started");
  ev.set_message("Started instance hello-0");
  *ev.mutable_last_time() = ToProtoTime(absl::Now());
  ASSERT_TRUE(
      store_
          .Create(keys::Event("default", "hello", "e1"), ev.SerializeAsString())
          .ok());

  Result r = Run({"get", "instances", "hello"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(
      r.out, "NAME      APP     READY   STATUS    RESTARTS   PORT"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "hello-0   hello   1/1     Running"))
      << r.out;
  r = Run({"get", "events", "hello"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.out, "Normal   Started   app/hello   Started instance hello-0"))
      << r.out;
  r = Run({"get", "instances", "-o", "json"});
  EXPECT_TRUE(absl::StrContains(r.out, "\"id\": \"hello-0\"")) << r.out;

  r = Run({"describe", "app", "hello"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* want :
       {"Name:           hello", "Replicas:       1 (fixed)",
        "Command:      /bin/sleep 1000", "hello-0", "Started instance"}) {
    EXPECT_TRUE(absl::StrContains(r.out, want)) << want << "\n" << r.out;
  }

  r = Run({"logs", "hello"});
  EXPECT_EQ(r.code, 1) << "the fake runtime keeps no logs";
  EXPECT_TRUE(absl::StartsWith(r.err, "error: ")) << r.err;

  // One instance's log breaks off (its node stops answering): what there is
  // is printed, the gap is said on stderr, and the exit code is 1.
  auto second = runtime_.Start(ir);
  ASSERT_TRUE(second.ok());
  runtime_.AppendLog("hello-0", "zero\n");
  runtime_.AppendLog(second->id(), "one\n");
  runtime_.BreakLog(second->id(),
                    absl::UnavailableError("node n2 does not answer"));
  r = Run({"logs", "hello"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.out, "zero\none\n");
  EXPECT_EQ(r.err, absl::StrCat("warning: the log of instance ", second->id(),
                                " cannot be read: node n2 does not answer\n"
                                "error: the output is incomplete: 1 "
                                "instance's log could not be read (see the "
                                "warnings above)\n"));
  ASSERT_TRUE(runtime_.Stop(second->id(), absl::ZeroDuration()).ok());

  r = Run({"delete", "app", "hello", "--dry-run=client"});
  EXPECT_EQ(r.out, "app.tidal.dev \"hello\" deleted (dry run)\n");
  r = Run({"delete", "app", "nothere", "--dry-run=client"});
  EXPECT_EQ(r.code, 1) << r.out;
  r = Run({"get", "apps"});
  EXPECT_FALSE(absl::StrContains(r.out, "Terminating")) << r.out;
  r = Run({"delete", "app", "hello", "--dry-run=server"});
  EXPECT_EQ(r.out, "app.tidal.dev \"hello\" deleted (server dry run)\n");
  r = Run({"delete", "app", "hello"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev \"hello\" deleted\n");
  r = Run({"get", "apps"});
  EXPECT_TRUE(absl::StrContains(r.out, "Terminating")) << r.out;
  // --wait returns once the controller (here: the test) removes the app.
  pid_t waiter = Spawn({"--server", address_, "delete", "-f", file, "--wait"},
                       Env({}), "wait");
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(ReadAll(dir_ / "wait.out"), "deleted");
  }));
  ASSERT_TRUE(store_.Delete(keys::App("default", "hello")).ok());
  int status = 0;
  waitpid(waiter, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadAll(dir_ / "wait.err");
  r = Run({"delete", "app", "hello"});
  EXPECT_EQ(r.code, 1);
}

// delete --grace-period / --force with kubectl's rules, down to the app the
// controller reads (metadata.deletionGracePeriodSeconds).
TEST_F(TidalctlTest, DeleteGracePeriodAndForce) {
  ASSERT_EQ(
      Run({"apply", "-f",
           WriteFile("a.yaml", AppYaml("a", 1) + "---\n" + AppYaml("b", 1) +
                                   "---\n" + AppYaml("c", 1) + "---\n" +
                                   AppYaml("d", 1))})
          .code,
      0);
  auto grace = [&](const std::string& name) -> int64_t {
    v1::GetRequest req;
    req.set_name(name);
    auto app = service_->Get(req);
    if (!app.ok() || !app->metadata().has_deletion_timestamp()) return -2;
    if (!app->metadata().has_deletion_grace_period_seconds()) return -1;
    return app->metadata().deletion_grace_period_seconds();
  };
  Result r = Run({"delete", "app", "a", "--grace-period=5000"});
  EXPECT_EQ(r.code, 2) << "an invalid request is a usage error";
  EXPECT_EQ(r.err,
            "error: grace period: must be between 0 and 3600 seconds, got "
            "5000\n");
  EXPECT_EQ(grace("a"), -2) << "nothing marked";

  r = Run({"delete", "app", "a", "--grace-period=7"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev \"a\" deleted\n");
  EXPECT_EQ(grace("a"), 7);
  // 0 without --force is 1 (kubectl's rule).
  r = Run({"delete", "app", "b", "--grace-period=0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(grace("b"), 1);
  // --force alone, and --grace-period=0 --force: kill at once, with a warning.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"delete", "app", "c", "--force"},
           {"delete", "app", "a", "--grace-period=0", "--force"}}) {
    r = Run(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(absl::StartsWith(r.err, "warning: immediate deletion"))
        << r.err;
  }
  EXPECT_EQ(grace("c"), 0);
  EXPECT_EQ(grace("a"), 0) << "a shorter period on an app being deleted";
  // No flag: the template's period (nothing stored); a dry run stores none.
  r = Run({"delete", "app", "d", "--force", "--dry-run=server"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(grace("d"), -2);
  r = Run({"delete", "app", "d"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(grace("d"), -1);
}

TEST_F(TidalctlTest, SelectorOnInstancesAndEventsGoesByTheirAppsLabels) {
  ASSERT_EQ(Run({"apply", "-f",
                 WriteFile("a.yaml", AppYaml("web", 1, "    tier: front\n") +
                                         "---\n" + AppYaml("db", 1))})
                .code,
            0);
  for (const char* app : {"web", "db"}) {
    InstanceRequest ir;
    ir.namespace_ = "default";
    ir.app = app;
    ASSERT_TRUE(runtime_.Start(ir).ok());
    v1::Event ev;
    ev.set_id(absl::StrCat("e-", app));
    ev.mutable_involved()->set_kind("App");
    ev.mutable_involved()->set_namespace_("default");
    ev.mutable_involved()->set_name(app);
    ev.set_type("Normal");
    ev.set_reason("Started");
    ev.set_message(absl::StrCat("Started an instance of ", app));
    *ev.mutable_last_time() = ToProtoTime(absl::Now());
    ASSERT_TRUE(store_
                    .Create(keys::Event("default", app, ev.id()),
                            ev.SerializeAsString())
                    .ok());
  }
  Result r = Run({"get", "instances", "-l", "tier=front", "-o", "name"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "web-")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "db-")) << r.out;
  r = Run({"get", "instances", "-l", "team=core"});
  EXPECT_TRUE(absl::StrContains(r.out, "web-") &&
              absl::StrContains(r.out, "db-"))
      << r.out;
  r = Run({"get", "events", "-l", "tier!=front"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "Started an instance of db")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "Started an instance of web")) << r.out;
  r = Run({"get", "instances", "-l", "tier in (x"});
  EXPECT_EQ(r.code, 2) << r.out << r.err;
}

TEST_F(TidalctlTest, GetWatchPrintsRowsAsTheyChange) {
  ASSERT_EQ(Run({"apply", "-f", WriteFile("a.yaml", AppYaml("alpha", 1))}).code,
            0);
  pid_t pid =
      Spawn({"--server", address_, "get", "apps", "-w"}, Env({}), "watch");
  background_.push_back(pid);
  auto out = [&] { return ReadAll(dir_ / "watch.out"); };
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(out(), "alpha"); }))
      << out();
  ASSERT_EQ(Run({"apply", "-f", WriteFile("b.yaml", AppYaml("bravo", 2))}).code,
            0);
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(out(), "bravo"); }))
      << out();
  ASSERT_TRUE(store_.Delete(keys::App("default", "alpha")).ok());
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(out(), "Deleted"); }))
      << out();
  std::string text = out();
  EXPECT_TRUE(
      absl::StartsWith(text, "NAME    READY   DESIRED   STATUS    URL   AGE\n"))
      << text;
  EXPECT_EQ(text.find("NAME", 1), std::string::npos) << "one header only\n"
                                                     << text;

  // tidald stopping ends the watch: tidalctl says so and fails, not a
  // silent exit 0.
  service_->Stop();
  int status = 0;
  ASSERT_TRUE(
      Eventually([&] { return waitpid(pid, &status, WNOHANG) == pid; }));
  background_.clear();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  std::string err = ReadAll(dir_ / "watch.err");
  EXPECT_TRUE(absl::StrContains(err, "the watch ended: tidald at ")) << err;
}

// kubectl (pflag) reads a short option's value after '=' as well.
TEST_F(TidalctlTest, ShortOptionsTakeTheirValueAfterAnEqualsSign) {
  std::string file = WriteFile("a.yaml", AppYaml("alpha", 1));
  Result r = Run({"apply", "-f=" + file, "-n=default"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = Run({"get", "apps", "-n=default", "-o=name"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/alpha\n");
  r = Run({"get", "apps", "-l=team=core", "-o", "name"});
  EXPECT_EQ(r.out, "app.tidal.dev/alpha\n") << r.err;
  r = Run({"get", "apps", "-n=other"});
  EXPECT_TRUE(absl::StrContains(r.err, "No apps found in namespace other."))
      << r.err;
}

// A bare --dry-run is --dry-run=client, as kubectl takes it (with its
// warning), and never swallows the word after it.
TEST_F(TidalctlTest, ABareDryRunIsAClientDryRun) {
  std::string file = WriteFile("a.yaml", AppYaml("alpha", 1));
  Result r = Run({"apply", "--dry-run", "-f", file});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "--dry-run is deprecated")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "(dry run)")) << r.out;
  ASSERT_EQ(Run({"apply", "-f", file}).code, 0);
  r = Run({"delete", "--dry-run", "app", "alpha"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev \"alpha\" deleted (dry run)\n");
  r = Run({"get", "apps", "-o", "name"});
  EXPECT_EQ(r.out, "app.tidal.dev/alpha\n");
  // The value goes after '=' only.
  r = Run({"delete", "app", "alpha", "--dry-run=server"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "(server dry run)")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.err, "deprecated")) << r.err;
}

// A tidald from before ApplyRequest.files: it reads none of the files and
// answers as it does for a request without documents.
class OldTidald final : public tidal::v1::Tidal::Service {
 public:
  grpc::Status Apply(grpc::ServerContext*, const tidal::v1::ApplyRequest* req,
                     tidal::v1::ApplyResponse*) override {
    files_sent += req->files_size();
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "nothing to apply: no App or Secret documents");
  }
  std::atomic<int> files_sent{0};
};

TEST_F(TidalctlTest, ATidaldOlderThanTidalctlIsNamed) {
  OldTidald old;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&old);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  const std::string at = absl::StrCat("127.0.0.1:", port);
  std::string file = WriteFile("a.yaml", AppYaml("alpha", 1));
  Result r = Run({"--server", at, "apply", "-f", file});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_GE(old.files_sent.load(), 1);
  EXPECT_TRUE(
      absl::StrContains(r.err, absl::StrCat("tidald at ", at,
                                            " read none of the documents: it "
                                            "is older than this tidalctl")))
      << r.err;
  // A file that really has no document is said so, old server or not.
  r = Run({"--server", at, "apply", "-f", WriteFile("none.yaml", "# x\n")});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "older")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "none.yaml: no documents")) << r.err;
  server->Shutdown();
}

// Records the bearer token of each List call.
class TokenSpy final : public tidal::v1::Tidal::Service {
 public:
  grpc::Status List(grpc::ServerContext* ctx, const tidal::v1::ListRequest*,
                    tidal::v1::ListResponse*) override {
    auto it = ctx->client_metadata().find("authorization");
    absl::MutexLock lock(&mu);
    seen.push_back(it == ctx->client_metadata().end()
                       ? "none"
                       : std::string(it->second.data(), it->second.size()));
    return grpc::Status::OK;
  }
  absl::Mutex mu;
  std::vector<std::string> seen ABSL_GUARDED_BY(mu);
};

// The local bootstrap token goes to a loopback server only when the
// token's owner listens there (not an instance of another user).
TEST_F(TidalctlTest, TheLocalBootstrapTokenGoesOnlyToItsOwnersServer) {
  TokenSpy spy;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&spy);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  const std::string at = absl::StrCat("127.0.0.1:", port);
  fs::create_directories(dir_ / "home/.local/share/tidal");
  const fs::path token = dir_ / "home/.local/share/tidal/admin.token";
  { std::ofstream(token) << "tidal_0123456789abcdef_the-secret\n"; }
  // This test process listens, as the file's owner.
  Result r = Run({"--server", at, "get", "apps"});
  EXPECT_EQ(r.code, 0) << r.err;
  // Owned by another user: not sent, and said.
  ASSERT_EQ(::chown(token.c_str(), getuid() + 1, static_cast<gid_t>(-1)),
            getuid() == 0 ? 0 : -1);
  if (getuid() == 0) {
    r = Run({"--server", at, "get", "apps"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err,
                                  "not sending the bootstrap admin "
                                  "token of"))
        << r.err;
  }
  absl::MutexLock lock(&spy.mu);
  ASSERT_GE(spy.seen.size(), 1u);
  EXPECT_EQ(spy.seen[0], "Bearer tidal_0123456789abcdef_the-secret");
  if (getuid() == 0) {
    ASSERT_EQ(spy.seen.size(), 2u);
    EXPECT_EQ(spy.seen[1], "none");
  }
  server->Shutdown();
}

// A file without a document among several (a placeholder in a -f
// directory) is skipped, as kubectl does; with nothing else it is an error.
TEST_F(TidalctlTest, AFileWithoutADocumentAmongSeveralIsSkipped) {
  fs::create_directories(dir_ / "conf");
  WriteFile("conf/a.yaml", AppYaml("alpha", 1));
  WriteFile("conf/notes.yaml", "# the apps of team core\n");
  const std::string conf = (dir_ / "conf").string();
  Result r = Run({"diff", "-f", conf});
  EXPECT_EQ(r.code, 1) << r.err;
  r = Run({"apply", "-f", conf});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/alpha created\n");
  fs::remove(dir_ / "conf/a.yaml");
  WriteFile("conf/empty.yaml", "---\n");
  r = Run({"apply", "-f", conf});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "notes.yaml: no documents")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "empty.yaml: no documents")) << r.err;
  r = Run({"diff", "-f", conf});
  EXPECT_EQ(r.code, 2) << r.err;
}

// As kubectl: delete -f needs a document's kind and name, not a valid spec
// (a file kept from before a field was renamed still deletes its app).
TEST_F(TidalctlTest, DeleteByFileNeedsOnlyKindAndName) {
  ASSERT_EQ(Run({"apply", "-f", WriteFile("a.yaml", AppYaml("alpha", 1))}).code,
            0);
  std::string old = WriteFile(
      "old.yaml", AppYaml("alpha", 1) + "  colour: blue\n");  // not a field
  Result r = Run({"apply", "-f", old});
  ASSERT_EQ(r.code, 2) << r.err;
  r = Run({"delete", "-f", old});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "warning: the files do not validate"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "app.tidal.dev \"alpha\" deleted"))
      << r.out;
  // Without a kind and a name there is nothing to go by.
  r = Run({"delete", "-f", WriteFile("x.yaml", "kind: App\nspec: {}\n")});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "metadata.name")) << r.err;
}

// get -o json|yaml of several apps prints a List, which apply takes back.
TEST_F(TidalctlTest, AListFromGetAppliesBack) {
  ASSERT_EQ(Run({"apply", "-f", WriteFile("a.yaml", AppYaml("alpha", 1)), "-f",
                 WriteFile("b.yaml", AppYaml("bravo", 2))})
                .code,
            0);
  for (const char* format : {"json", "yaml"}) {
    Result got = Run({"get", "apps", "-o", format});
    ASSERT_EQ(got.code, 0) << got.err;
    std::string file = WriteFile(absl::StrCat("all.", format), got.out);
    Result r = Run({"apply", "-f", file});
    EXPECT_EQ(r.code, 0) << format << "\n" << got.out << r.err;
    EXPECT_EQ(r.out,
              "app.tidal.dev/alpha unchanged\napp.tidal.dev/bravo unchanged\n")
        << format;
  }
}

// No app: -o json and -o yaml both print an empty List, as kubectl does.
TEST_F(TidalctlTest, NoAppsIsAnEmptyListInJsonAndYaml) {
  Result r = Run({"get", "apps", "-o", "yaml"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "apiVersion: tidal.dev/v1\nkind: List\nitems: []\n");
  r = Run({"get", "apps", "-o", "json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\n  \"apiVersion\": \"tidal.dev/v1\",\n  \"kind\": \"List\",\n  "
            "\"items\": []\n}\n");
}

// What -o name prints is what get, describe and delete take, as in kubectl:
// `tidalctl get apps -o name | xargs tidalctl delete`.
TEST_F(TidalctlTest, ResourcesGoByTypeSlashName) {
  ASSERT_EQ(Run({"apply", "-f", WriteFile("a.yaml", AppYaml("alpha", 1)), "-f",
                 WriteFile("b.yaml", AppYaml("bravo", 1))})
                .code,
            0);
  Result r = Run({"get", "app.tidal.dev/alpha", "-o", "name"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/alpha\n");
  r = Run({"get", "apps.tidal.dev", "-o", "name"});
  EXPECT_EQ(r.out, "app.tidal.dev/alpha\napp.tidal.dev/bravo\n") << r.err;
  r = Run({"describe", "app/bravo"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "bravo")) << r.out;
  r = Run({"delete", "app.tidal.dev/alpha", "secret/x"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "one type at a time")) << r.err;
  r = Run({"delete", "app.tidal.dev/alpha", "bravo"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "TYPE/NAME")) << r.err;
  r = Run({"delete", "app.tidal.dev/alpha", "app.tidal.dev/bravo"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "app.tidal.dev \"alpha\" deleted"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "app.tidal.dev \"bravo\" deleted"))
      << r.out;
}

// A file is checked here before it is sent (text that is not UTF-8 cannot
// be), then by tidald against its own limits, whose errors name the file and
// line however many files there are; diff runs tidald's checks too, so a file
// apply would refuse fails a CI gate instead of passing as a difference.
TEST_F(TidalctlTest, EveryErrorNamesItsFileAndDiffFailsWhatApplyRefuses) {
  std::string latin1 =
      WriteFile("latin1.yaml", "# caf\xe9\n" + AppYaml("latin", 1));
  Result r = Run({"apply", "-f", latin1});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err,
                                "latin1.yaml:1:6: the text is not "
                                "valid UTF-8 (byte 0xe9)"))
      << r.err;

  const std::string over_text =
      "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: over\nspec:\n"
      "  replicas: 1001\n  template:\n    command: [\"/bin/sleep\"]\n";
  std::string over = WriteFile("over.yaml", over_text);
  std::string good = WriteFile("good.yaml", AppYaml("good", 1));
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"apply", "-f", over},
        std::vector<std::string>{"apply", "-f", good, "-f", over}}) {
    r = Run(args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_TRUE(absl::StrContains(
        r.err,
        "over.yaml:6:13: spec.replicas: 1001 exceeds the per-app maximum"))
        << r.err;
  }
  EXPECT_EQ(store_.txn_count(), 0) << "nothing half-applied";

  r = Run({"diff", "-f", over});
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "over.yaml:6:")) << r.err;
  EXPECT_EQ(r.out, "");
  r = Run({"diff", "-f", good});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(store_.txn_count(), 0) << "diff's dry run writes nothing";

  // Files without a document: said so, not blamed on tidald's version.
  for (const char* text : {"# only a comment\n", "---\n---\n"}) {
    r = Run({"apply", "-f", WriteFile("empty.yaml", text)});
    EXPECT_EQ(r.code, 2) << text << r.err;
    EXPECT_FALSE(absl::StrContains(r.err, "older")) << r.err;
  }

  // Several files still apply as one.
  std::string other = WriteFile("other.yaml", AppYaml("other", 2));
  r = Run({"apply", "-f", good, "-f", other});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/good created\napp.tidal.dev/other created\n");
  EXPECT_EQ(store_.txn_count(), 1);
}

TEST_F(TidalctlTest, ContradictionsAndUnsupportedFlagsAreUsageErrors) {
  std::string file = WriteFile("a.yaml", AppYaml("alpha", 1));
  Result r = Run({"apply", "-f", file, "-n", "Bad_NS"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(
      r.err, "error: -n: must be a DNS-1123 label (at most 63 lowercase"))
      << r.err;
  // An empty --token (a script's unset variable) falls back to no other.
  r = Run({"--token", "", "get", "apps"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--token is empty (an unset variable?)"))
      << r.err;
  ASSERT_EQ(Run({"apply", "-f", file}).code, 0);

  r = Run({"scale", "alpha", "--replicas", "2", "--min", "1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "not both")) << r.err;
  r = Run({"get", "revisions", "alpha", "-o", "name"});
  EXPECT_EQ(r.code, 2) << r.out;
  r = Run({"get", "revisions", "alpha", "-w"});
  EXPECT_EQ(r.code, 2) << r.out;
  r = Run({"get", "leader", "-w"});
  EXPECT_EQ(r.code, 2) << r.out;
  // -o name prints names only; a single node has none.
  r = Run({"get", "leader", "-o", "name"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");

  // A part of the config that cannot be read is an error, never skipped.
  fs::create_directories(dir_ / "conf");
  WriteFile("conf/a.yaml", AppYaml("alpha", 1));
  fs::create_symlink(dir_ / "gone.yaml", dir_ / "conf/b.yaml");
  r = Run({"apply", "-f", (dir_ / "conf").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "b.yaml is a symbolic link to"))
      << r.err;
  r = Run({"diff", "-f", (dir_ / "conf").string()});
  EXPECT_EQ(r.code, 2);
}

// Issue 16, what kubectl users miss: unknown commands named (with a
// suggestion), get --help listing every resource, --show-labels,
// --sort-by, -o jsonpath= and custom-columns=, delete --ignore-not-found,
// explain, completion.
TEST_F(TidalctlTest, WhatKubectlUsersExpect) {
  Result r = Run({"scael", "hello"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StartsWith(
      r.err, "error: unknown command \"scael\" for \"tidalctl\"\n"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "Did you mean this?\n        scale\n"))
      << r.err;
  r = Run({"rollout", "stauts", "hello"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(
      r.err, "unknown command \"stauts\" for \"tidalctl rollout\""))
      << r.err;
  r = Run({"get", "--help"});
  EXPECT_EQ(r.code, 0);
  for (const char* type : {"apps", "instances", "events", "revisions",
                           "secrets", "leader", "nodes"}) {
    EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("\n  ", type, " ")))
        << type << "\n"
        << r.out;
  }

  ASSERT_EQ(Run({"apply", "-f", WriteFile("b.yaml", AppYaml("bravo", 3))}).code,
            0);
  ASSERT_EQ(Run({"apply", "-f",
                 WriteFile("a.yaml", AppYaml("alpha", 10, "    tier: web\n"))})
                .code,
            0);
  r = Run({"get", "apps", "--show-labels"});
  EXPECT_TRUE(absl::StrContains(r.out, "   LABELS\n")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "team=core,tier=web\n")) << r.out;
  r = Run({"get", "apps", "-o", "jsonpath={.items[*].metadata.name}"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "alpha bravo");
  // kubectl's --chunk-size: pages of one app read the same list.
  r = Run({"get", "apps", "--chunk-size", "1", "-o",
           "jsonpath={.items[*].metadata.name}"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "alpha bravo");
  r = Run({"get", "app", "bravo", "-o=jsonpath={.spec.replicas}"});
  EXPECT_EQ(r.out, "3");
  r = Run({"get", "apps", "--sort-by", ".spec.replicas", "-o",
           "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,"
           "TIER:.metadata.labels.tier"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "NAME    REPLICAS   TIER\n"
            "bravo   3          <none>\n"
            "alpha   10         web\n");
  r = Run({"get", "apps", "-o", "yamlish"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "jsonpath=TEMPLATE")) << r.err;

  r = Run({"delete", "app", "nope", "--ignore-not-found"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  r = Run({"delete", "app", "nope"});
  EXPECT_EQ(r.code, 1);

  r = Run({"explain", "app.spec.template.annotations"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(
      absl::StrContains(r.out, "FIELD:    annotations <map[string]string>"))
      << r.out;
  r = Run({"explain", "app.spec.scaling"});
  EXPECT_TRUE(absl::StrContains(r.out, "\n   minReplicas\t<integer>\n"))
      << r.out;
  r = Run({"explain", "app.spec.scalng"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "did you mean \"scaling\"")) << r.err;

  for (const char* shell : {"bash", "zsh", "fish"}) {
    r = Run({"completion", shell});
    EXPECT_EQ(r.code, 0) << shell << r.err;
    EXPECT_TRUE(absl::StrContains(r.out, "rollout")) << shell;
    EXPECT_TRUE(absl::StrContains(r.out, "__tidalctl_apps")) << shell;
  }
  // The bash script is valid bash and completes commands and subcommands.
  const std::string script =
      WriteFile("completion.bash", Run({"completion", "bash"}).out);
  auto complete = [&](const std::string& words, int cword) {
    std::string cmd = absl::StrCat("bash -c 'source ", script, "; COMP_WORDS=(",
                                   words, "); COMP_CWORD=", cword,
                                   "; _tidalctl; echo \"${COMPREPLY[*]}\"'");
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[256];
    while (p != nullptr && fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    if (p != nullptr) pclose(p);
    return out;
  };
  EXPECT_EQ(complete("tidalctl rollo", 1), "rollout\n");
  EXPECT_EQ(complete("tidalctl -n x rollout sta", 4), "status\n");
  EXPECT_TRUE(
      absl::StrContains(complete("tidalctl get --sho", 2), "--show-labels"));
}

// `tidalctl edit app NAME`: the editor's change is validated and applied;
// an unchanged file cancels; an invalid one is shown again with its
// errors and, saved unchanged, cancels with exit 1.
TEST_F(TidalctlTest, EditValidatesAndApplies) {
  ASSERT_EQ(Run({"apply", "-f", WriteFile("h.yaml", AppYaml("hello", 2))}).code,
            0);
  std::string to4 = WriteFile(
      "to4.sh", "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 4/' \"$1\"\n");
  std::string keep = WriteFile("keep.sh", "#!/bin/sh\nexit 0\n");
  std::string bad = WriteFile(
      "bad.sh", "#!/bin/sh\nsed -i 's/replicas: .*/replicas: -1/' \"$1\"\n");
  for (const auto& f : {to4, keep, bad})
    fs::permissions(f, fs::perms::owner_all);
  Result r = Run({"edit", "app", "hello"}, {"EDITOR=" + keep});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Edit cancelled, no changes made.\n");
  r = Run({"edit", "app", "hello"}, {"EDITOR=" + to4});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/hello edited\n");
  r = Run({"get", "app", "hello", "-o", "jsonpath={.spec.replicas}"});
  EXPECT_EQ(r.out, "4");
  r = Run({"edit", "app", "hello"}, {"EDITOR=" + bad});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "spec.replicas")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "edit cancelled, no valid changes"))
      << r.err;
  r = Run({"get", "app", "hello", "-o", "jsonpath={.spec.replicas}"});
  EXPECT_EQ(r.out, "4");
}

}  // namespace
}  // namespace tidal
