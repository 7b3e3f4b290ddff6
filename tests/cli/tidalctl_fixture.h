#pragma once

// TidalctlFixture: runs the real tidalctl binary
// ($TIDAL_BUILD_DIR/src/cli/tidalctl) against a TidalService over a MemoryStore
// and a FakeRuntime, served on 127.0.0.1:0 in the test process. Shared by the
// CLI tests.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "api/service.h"
#include "fakes/eventually.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "gtest/gtest.h"

namespace tidal::cli_test {

using ::tidal::testing::Eventually;

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::string ReadAll(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TidalctlFixture : public ::testing::Test {
 protected:
  // Hooks for a derived fixture: adjust the service's options before it is
  // made, and wire collaborators into it before it serves.
  virtual void Configure(ServiceOptions* opts) {}
  virtual void Serve(TidalService* service) {}

  void SetUp() override {
    // $TIDAL_BUILD_DIR, else the build directory this test binary sits in
    // (<build>/tests/cli/tidalctl_test).
    const char* build = std::getenv("TIDAL_BUILD_DIR");
    fs::path build_dir = build != nullptr && *build
                             ? fs::path(build)
                             : fs::read_symlink("/proc/self/exe")
                                   .parent_path()
                                   .parent_path()
                                   .parent_path();
    binary_ = build_dir / "src/cli/tidalctl";
    ASSERT_TRUE(fs::exists(binary_)) << binary_;
    dir_ = fs::temp_directory_path() /
           absl::StrCat("tidalctl-test-", getpid(), "-", ++counter_);
    fs::create_directories(dir_ / "home");
    ServiceOptions opts;
    opts.store_name = "memory";
    opts.runtime_name = "fake";
    Configure(&opts);
    service_ =
        std::make_unique<TidalService>(&store_, &runtime_, &clock_, opts);
    Serve(service_.get());
    auto server = StartServer("127.0.0.1:0", service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    address_ = absl::StrCat("127.0.0.1:", server_->port());
  }
  void TearDown() override {
    for (pid_t pid : background_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    server_.reset();
    fs::remove_all(dir_);
  }

  std::vector<std::string> Env(const std::vector<std::string>& extra) {
    std::vector<std::string> env = {
        absl::StrCat("HOME=", (dir_ / "home").string()), "PATH=/usr/bin:/bin"};
    for (const auto& e : extra) env.push_back(e);
    return env;
  }

  // Starts tidalctl with stdout/stderr to files; returns its pid.
  pid_t Spawn(const std::vector<std::string>& args,
              const std::vector<std::string>& env, const std::string& tag,
              const std::string& stdin_path = "/dev/null") {
    std::vector<std::string> argv_s = {binary_.string()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv, envp;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s = env;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, stdin_path.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, (dir_ / (tag + ".out")).c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, (dir_ / (tag + ".err")).c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, binary_.c_str(), &fa, nullptr, argv.data(),
                         envp.data());
    posix_spawn_file_actions_destroy(&fa);
    EXPECT_EQ(rc, 0);
    return pid;
  }

  // Runs tidalctl against the test server (unless args name another).
  Result Run(std::vector<std::string> args,
             std::vector<std::string> extra_env = {},
             const std::string& stdin_path = "/dev/null") {
    bool has_server = false;
    for (const auto& a : args)
      has_server = has_server || absl::StartsWith(a, "--server");
    // "--no-server-flag": leave the address to TIDAL_SERVER / the config file.
    auto marker = std::find(args.begin(), args.end(), "--no-server-flag");
    if (marker != args.end()) {
      args.erase(marker);
      has_server = true;
    }
    if (!has_server) args.insert(args.begin(), {"--server", address_});
    const std::string tag = absl::StrCat("run", ++runs_);
    pid_t pid = Spawn(args, Env(extra_env), tag, stdin_path);
    int status = 0;
    waitpid(pid, &status, 0);
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = ReadAll(dir_ / (tag + ".out"));
    r.err = ReadAll(dir_ / (tag + ".err"));
    return r;
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  static inline int counter_ = 0;
  int runs_ = 0;
  fs::path binary_, dir_;
  std::string address_;
  testing::FakeClock clock_{absl::Now()};
  testing::MemoryStore store_;
  testing::FakeRuntime runtime_{true};
  std::unique_ptr<TidalService> service_;
  std::unique_ptr<ApiServer> server_;
  std::vector<pid_t> background_;
};

}  // namespace tidal::cli_test
