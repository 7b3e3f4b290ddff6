// Starting instance processes (runtime/spawner.h), without a runtime.

#include "runtime/spawner.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/proc_stat.h"
#include "runtime/test_util.h"

namespace tidal {
namespace {

using testing::ReadFile;
using testing::TempDir;

bool Has(const std::vector<std::string>& env, const std::string& entry) {
  return std::find(env.begin(), env.end(), entry) != env.end();
}

std::string Get(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& e : env) {
    if (absl::StartsWith(e, name + "=")) return e.substr(name.size() + 1);
  }
  return "<unset>";
}

tidal::v1::Instance Info() {
  tidal::v1::Instance info;
  info.set_id("hello-abcde");
  info.set_namespace_("team");
  info.set_app("hello");
  info.set_port(20123);
  info.set_revision(7);
  return info;
}

TEST(SpawnerTest, EnvironmentLayersTidaldsTheTemplateAndTheInstance) {
  setenv("HOME", "/home/tidal-test", 1);
  setenv("TIDAL_SPAWNER_TEST_SECRET", "not inherited", 1);
  tidal::v1::Template tmpl;
  auto* e = tmpl.add_env();
  e->set_name("GREETING");
  e->set_value("hi");
  e = tmpl.add_env();
  e->set_name("HOME");
  e->set_value("/srv/app");
  e = tmpl.add_env();
  e->set_name("PORT");
  e->set_value("1");  // the instance's own wins
  auto env = BuildInstanceEnv(Info(), tmpl, {"/opt/a", "/opt/b"});
  EXPECT_TRUE(std::is_sorted(env.begin(), env.end()));
  EXPECT_TRUE(Has(env, "GREETING=hi"));
  EXPECT_TRUE(Has(env, "HOME=/srv/app"));
  EXPECT_TRUE(Has(env, "PORT=20123"));
  EXPECT_TRUE(Has(env, "TIDAL_APP=hello"));
  EXPECT_TRUE(Has(env, "TIDAL_NAMESPACE=team"));
  EXPECT_TRUE(Has(env, "TIDAL_INSTANCE=hello-abcde"));
  EXPECT_TRUE(Has(env, "TIDAL_REVISION=7"));
  EXPECT_EQ(Get(env, "TIDAL_SPAWNER_TEST_SECRET"), "<unset>");
  EXPECT_TRUE(absl::StartsWith(Get(env, "PATH"), "/opt/a:/opt/b:"))
      << Get(env, "PATH");

  unsetenv("TIDAL_SPAWNER_TEST_SECRET");
  const std::string saved = getenv("PATH") ? getenv("PATH") : "";
  unsetenv("PATH");
  env = BuildInstanceEnv(Info(), tidal::v1::Template(), {});
  EXPECT_EQ(Get(env, "PATH"), "/usr/local/bin:/usr/bin:/bin");
  setenv("PATH", saved.c_str(), 1);
}

TEST(SpawnerTest, HostIsTheInstancesAddressUnlessTheTemplateSetsOne) {
  tidal::v1::Instance info = Info();
  EXPECT_EQ(Get(BuildInstanceEnv(info, tidal::v1::Template(), {}), "HOST"),
            "<unset>");
  info.set_host("10.0.0.7");
  EXPECT_EQ(Get(BuildInstanceEnv(info, tidal::v1::Template(), {}), "HOST"),
            "10.0.0.7");
  tidal::v1::Template tmpl;
  auto* e = tmpl.add_env();
  e->set_name("HOST");
  e->set_value("0.0.0.0");
  EXPECT_EQ(Get(BuildInstanceEnv(info, tmpl, {}), "HOST"), "0.0.0.0");
}

TEST(SpawnerTest, SecretReferencesTakeResolvedValues) {
  tidal::v1::Template tmpl;
  auto add = [&](const std::string& name, const std::string& secret,
                 bool optional) {
    auto* e = tmpl.add_env();
    e->set_name(name);
    auto* ref = e->mutable_value_from()->mutable_secret_key_ref();
    ref->set_name(secret);
    ref->set_key("k");
    ref->set_optional(optional);
  };
  add("A", "db", false);
  add("B", "gone", true);
  std::vector<std::string> asked;
  SecretResolver resolver =
      [&](const std::string& ns, const std::string& name,
          const std::string& key) -> absl::StatusOr<std::string> {
    asked.push_back(absl::StrCat(ns, "/", name, "/", key));
    if (name == "db") return std::string("v4lue");
    return absl::NotFoundError(
        absl::StrCat("secret \"", ns, "/", name, "\" not found"));
  };
  auto env = ResolveSecretEnv(tmpl, "team", resolver);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(asked, (std::vector<std::string>{"team/db/k", "team/gone/k"}));
  EXPECT_EQ(env->size(), 1u);
  auto built = BuildInstanceEnv(Info(), tmpl, {}, *env);
  EXPECT_EQ(Get(built, "A"), "v4lue");
  EXPECT_EQ(Get(built, "B"), "<unset>");  // optional and missing: unset

  add("C", "gone", false);
  env = ResolveSecretEnv(tmpl, "team", resolver);
  EXPECT_TRUE(absl::IsFailedPrecondition(env.status()));
  EXPECT_EQ(env.status().message(),
            "CreateContainerConfigError: env C: secret \"team/gone\" not "
            "found");
  EXPECT_TRUE(absl::IsFailedPrecondition(
      ResolveSecretEnv(tmpl, "team", nullptr).status()));
  // No references: nothing is asked, even without a resolver.
  EXPECT_TRUE(ResolveSecretEnv(tidal::v1::Template(), "team", nullptr).ok());
}

TEST(SpawnerTest, ResolveCommandSearchesThePathOfTheEnvironment) {
  TempDir dir;
  const std::string exe = dir.path() + "/tool";
  { std::ofstream(exe) << "#!/bin/sh\n"; }
  chmod(exe.c_str(), 0755);
  { std::ofstream(dir.path() + "/data") << "x"; }  // not executable
  std::vector<std::string> env = {"PATH=/nonexistent:" + dir.path()};
  EXPECT_EQ(ResolveCommand("tool", env), exe);
  EXPECT_EQ(ResolveCommand("data", env), "");
  EXPECT_EQ(ResolveCommand("missing", env), "");
  EXPECT_EQ(ResolveCommand("./rel/tool", env), "./rel/tool");
  EXPECT_EQ(ResolveCommand("sh", {"PATH=/bin:/usr/bin"}), "/bin/sh");
}

TEST(SpawnerTest, AboveStdioMovesLowDescriptors) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  EXPECT_EQ(AboveStdio(fds[0]), fds[0]);  // > 2 already
  EXPECT_EQ(AboveStdio(-1), -1);
  close(fds[0]);
  close(fds[1]);
}

int OpenOutput(const std::string& path) {
  return open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

int WaitExit(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(SpawnerTest, SpawnRunsTheCommandOnceRecorded) {
  TempDir dir;
  const std::string out = dir.path() + "/out";
  SpawnSpec spec;
  spec.argv = {"sh", "-c",
               "echo \"$GREETING from $(pwd)\"; echo err >&2; "
               "cut -d' ' -f6 /proc/$$/stat; echo $$"};
  spec.env = {"PATH=/usr/bin:/bin", "GREETING=hello"};
  spec.working_dir = dir.path();
  spec.output_fd = OpenOutput(out);
  pid_t recorded = 0;
  uint64_t recorded_ticks = 0;
  auto spawned = Spawn(spec, [&](pid_t pid, uint64_t ticks) {
    recorded = pid;
    recorded_ticks = ticks;
    return absl::OkStatus();
  });
  ASSERT_TRUE(spawned.ok()) << spawned.status();
  EXPECT_EQ(spawned->error, "");
  EXPECT_EQ(spawned->pid, recorded);
  EXPECT_EQ(spawned->start_ticks, recorded_ticks);
  EXPECT_GT(recorded_ticks, 0u);
  if (spawned->pidfd >= 0) close(spawned->pidfd);
  EXPECT_EQ(WaitExit(spawned->pid), 0);
  const std::string pid = std::to_string(spawned->pid);
  // Its own session (sid == its pid); stdout and stderr both in the file.
  EXPECT_EQ(ReadFile(out),
            "hello from " + dir.path() + "\nerr\n" + pid + "\n" + pid + "\n");
}

TEST(SpawnerTest, ARecordFailureStopsTheChildBeforeExec) {
  TempDir dir;
  const std::string marker = dir.path() + "/ran";
  SpawnSpec spec;
  spec.argv = {"/bin/sh", "-c", "touch " + marker};
  spec.output_fd = OpenOutput(dir.path() + "/out");
  auto spawned = Spawn(spec, [](pid_t, uint64_t) {
    return absl::UnavailableError("disk full");
  });
  EXPECT_EQ(spawned.status().code(), absl::StatusCode::kUnavailable);
  struct stat st;
  EXPECT_NE(stat(marker.c_str(), &st), 0) << "the command ran";
}

TEST(SpawnerTest, ExecFailuresAreReportedAndTheProcessExits127) {
  TempDir dir;
  auto record = [](pid_t, uint64_t) { return absl::OkStatus(); };
  struct Case {
    std::vector<std::string> argv;
    std::string workdir;
    std::string want;
  } cases[] = {
      {{"no-such-tool-xyz"}, "", "executable \"no-such-tool-xyz\" not found"},
      {{dir.path()}, "", "exec " + dir.path() + ": Permission denied"},
      {{"/bin/true"},
       dir.path() + "/missing",
       "chdir " + dir.path() + "/missing: No such file"},
  };
  for (const auto& c : cases) {
    SpawnSpec spec;
    spec.argv = c.argv;
    spec.env = {"PATH=/bin:/usr/bin"};
    spec.working_dir = c.workdir;
    spec.output_fd = OpenOutput(dir.path() + "/out");
    auto spawned = Spawn(spec, record);
    ASSERT_TRUE(spawned.ok()) << spawned.status();
    EXPECT_TRUE(absl::StartsWith(spawned->error, c.want)) << spawned->error;
    if (spawned->pidfd >= 0) close(spawned->pidfd);
    EXPECT_EQ(WaitExit(spawned->pid), 127);
  }
}

// As another user (root only): the first match on PATH that user may not
// run (a directory closed to it, like /root/.pyenv/shims) gives way to the
// next, as with execvp; HOME, USER and LOGNAME are the user's.
TEST(SpawnerTest, AnotherUserRunsTheFirstCommandOnPathItMayRun) {
  if (geteuid() != 0) GTEST_SKIP() << "only root can switch users";
  auto nobody = LookupUser("nobody");
  ASSERT_TRUE(nobody.ok()) << nobody.status();
  TempDir closed, open, out_dir;  // mkdtemp: 0700, root's
  ASSERT_EQ(chmod(open.path().c_str(), 0755), 0);
  for (const auto* d : {&closed, &open}) {
    const std::string tool = d->path() + "/tidal-spawner-tool";
    std::ofstream(tool) << "#!/bin/sh\necho \"ran " << d->path()
                        << " as $(id -u) $USER $HOME\"\n";
    ASSERT_EQ(chmod(tool.c_str(), 0755), 0);
  }
  EXPECT_EQ(CommandCandidates("tidal-spawner-tool",
                              {"PATH=" + closed.path() + ":" + open.path()})
                .size(),
            2u);
  tidal::v1::Template tmpl;
  std::vector<std::string> env =
      BuildInstanceEnv(Info(), tmpl, {}, {}, &*nobody);
  EXPECT_EQ(Get(env, "USER"), "nobody");
  EXPECT_EQ(Get(env, "HOME"), nobody->home);
  for (auto& e : env) {
    if (absl::StartsWith(e, "PATH="))
      e = "PATH=" + closed.path() + ":" + open.path() + ":/usr/bin:/bin";
  }
  const std::string out = out_dir.path() + "/out";
  SpawnSpec spec;
  spec.argv = {"tidal-spawner-tool"};
  spec.env = env;
  spec.user = *nobody;
  spec.output_fd = OpenOutput(out);
  auto spawned = Spawn(spec, [](pid_t, uint64_t) { return absl::OkStatus(); });
  ASSERT_TRUE(spawned.ok()) << spawned.status();
  EXPECT_EQ(spawned->error, "");
  if (spawned->pidfd >= 0) close(spawned->pidfd);
  EXPECT_EQ(WaitExit(spawned->pid), 0);
  EXPECT_EQ(ReadFile(out),
            "ran " + open.path() + " as 65534 nobody " + nobody->home + "\n");

  // Only the closed one: the error names the user and the files tried.
  for (auto& e : spec.env) {
    if (absl::StartsWith(e, "PATH=")) e = "PATH=" + closed.path();
  }
  spec.output_fd = OpenOutput(out);
  spawned = Spawn(spec, [](pid_t, uint64_t) { return absl::OkStatus(); });
  ASSERT_TRUE(spawned.ok()) << spawned.status();
  if (spawned->pidfd >= 0) close(spawned->pidfd);
  EXPECT_EQ(WaitExit(spawned->pid), 127);
  EXPECT_TRUE(absl::StrContains(spawned->error, "as user nobody"))
      << spawned->error;
  EXPECT_TRUE(absl::StrContains(spawned->error, "Permission denied"))
      << spawned->error;
}

TEST(SpawnerTest, PortFreeSeesABoundPort) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  EXPECT_FALSE(PortFree(port));
  close(fd);
  EXPECT_TRUE(PortFree(port));
}

}  // namespace
}  // namespace tidal
