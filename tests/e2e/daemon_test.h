#pragma once

// DaemonTest: a GoogleTest fixture with one tidald (default flags) on a temp
// data dir, a marker unique to the test for its instances' command lines
// (every process with it is killed after the test), and `Apply` of a YAML
// text through tidalctl.

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "e2e/e2e_util.h"
#include "gtest/gtest.h"

namespace tidal::e2e {

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    marker_ = absl::StrCat(
        "e2e-", getpid(), "-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    daemon_ = std::make_unique<Daemon>(dir_.path());
    ASSERT_TRUE(daemon_->Start())
        << "tidald did not start; see " << daemon_->log_path();
  }
  void TearDown() override {
    daemon_.reset();
    // Nothing of ours may outlive the test.
    for (pid_t pid : FindProcesses(marker_)) kill(pid, SIGKILL);
  }
  CommandResult Apply(const std::string& yaml) {
    std::string path = dir_.path() + "/app.yaml";
    WriteFile(path, yaml);
    return daemon_->Ctl({"apply", "-f", path});
  }
  // Live processes of this test's instances.
  int Count() { return static_cast<int>(FindProcesses(marker_).size()); }
  // The app's status.readyReplicas; -1 when it cannot be read.
  int Ready(const std::string& name) {
    auto r = daemon_->Ctl({"get", "app", name, "-o", "json"});
    if (r.exit_code != 0) return -1;
    auto pos = r.out.find("\"readyReplicas\":");
    if (pos == std::string::npos) return 0;
    return atoi(r.out.c_str() + pos + strlen("\"readyReplicas\":"));
  }

  TempDir dir_;
  std::string marker_;
  std::unique_ptr<Daemon> daemon_;
};

}  // namespace tidal::e2e
