// The README's "Five minutes from zero to a scaled, rolled-out app", walked
// as written (real tidald, tidalctl and sample-app processes) with every
// output line the README shows asserted, ports and ages aside (issue 16).

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

// The lines of the README's first code block that follows `heading`.
std::string ReadmeBlock(const std::string& heading) {
  std::string readme = ReadFile(SourceDir() + "/README.md");
  size_t at = readme.find(heading);
  if (at == std::string::npos) return "";
  size_t start = readme.find("```sh\n", at);
  size_t end = readme.find("```\n", start + 6);
  if (start == std::string::npos || end == std::string::npos) return "";
  return readme.substr(start + 6, end - start - 6);
}

// The output lines the README shows after `command` ("#  " lines).
std::vector<std::string> ShownAfter(const std::string& block,
                                    const std::string& command) {
  std::vector<std::string> out;
  bool in = false;
  for (absl::string_view line : absl::StrSplit(block, '\n')) {
    if (!in) {
      // The command, without a trailing "# comment".
      absl::string_view cmd = line.substr(0, line.find(" #"));
      in = absl::StripTrailingAsciiWhitespace(cmd) == command;
      continue;
    }
    if (!absl::StartsWith(line, "#  ")) break;
    out.emplace_back(line.substr(3));
  }
  return out;
}

// `line` with runs of spaces as one, for columns whose width depends on
// the port.
std::string Squeeze(const std::string& line) {
  return std::regex_replace(line, std::regex(" +"), " ");
}

// One tidald as `make run` starts it (instances stop with it).
class ReadmeE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(
        dir_.path(), std::vector<std::string>{"--stop-instances-on-exit"});
    ASSERT_TRUE(daemon_->Start())
        << "tidald did not start; see " << daemon_->log_path();
  }
  // The app's status.readyReplicas; -1 when it cannot be read.
  int Ready(const std::string& name) {
    auto r = daemon_->Ctl({"get", "app", name, "-o", "json"});
    if (r.exit_code != 0) return -1;
    const size_t at = r.out.find("\"readyReplicas\":");
    if (at == std::string::npos) return 0;
    return std::atoi(r.out.c_str() + at + strlen("\"readyReplicas\":"));
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(ReadmeE2ETest, FiveMinutesFromZero) {
  const std::string block = ReadmeBlock("## Five minutes from zero");
  ASSERT_FALSE(block.empty()) << "README.md has no five-minute walkthrough";
  const std::string port = std::to_string(daemon_->gateway_port());
  auto ctl = [&](const std::vector<std::string>& args) {
    return daemon_->Ctl(args);
  };
  // make run applies the sample app.
  auto r = ctl({"apply", "-f", SourceDir() + "/examples/hello.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/hello created\n");

  // 1. get apps: the README's table, with this daemon's gateway port.
  std::vector<std::string> shown = ShownAfter(block, "tidalctl get apps");
  ASSERT_EQ(shown.size(), 2u) << block;
  ASSERT_TRUE(
      Eventually([&] { return Ready("hello") == 3; }, absl::Seconds(60)));
  ASSERT_TRUE(Eventually([&] {
    r = ctl({"get", "apps"});
    return absl::StrContains(r.out, " Ready ");
  }));
  std::vector<std::string> got = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(got.size(), 2u) << r.out;
  EXPECT_EQ(Squeeze(got[0]), Squeeze(shown[0]));
  const std::string want_row = absl::StrReplaceAll(
      Squeeze(shown[1]), {{":8080", ":" + port}, {" 10s", ""}});
  EXPECT_TRUE(absl::StartsWith(Squeeze(got[1]) + " ", want_row + " "))
      << got[1] << " vs " << shown[1];

  // curl: "hello from v1 (pid 4242)".
  shown = ShownAfter(block, "curl http://hello.default.tidal.localhost:8080/");
  ASSERT_EQ(shown.size(), 1u) << block;
  auto hello = HttpGet(daemon_->gateway_port(), AppHost("hello"), "/");
  EXPECT_EQ(hello.status, 200) << hello.error;
  EXPECT_TRUE(std::regex_match(
      hello.body,
      std::regex(std::regex_replace(shown[0], std::regex("\\(pid [0-9]+\\)"),
                                    "\\(pid [0-9]+\\)") +
                 "\n")))
      << hello.body << " vs " << shown[0];
  r = ctl({"describe", "app", "hello"});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // 2. Scale by hand, then an app that scales from zero.
  ASSERT_TRUE(absl::StrContains(block, "tidalctl scale hello --replicas 5"));
  r = ctl({"scale", "hello", "--replicas", "5"});
  EXPECT_EQ(r.out, "app.tidal.dev/hello scaled\n") << r.err;
  r = ctl({"apply", "-f", SourceDir() + "/examples/scale-to-zero.yaml"});
  EXPECT_EQ(r.out, "app.tidal.dev/scale-to-zero created\n") << r.err;
  auto zero = HttpGet(daemon_->gateway_port(), AppHost("scale-to-zero"), "/",
                      absl::Seconds(60));
  EXPECT_EQ(zero.status, 200) << zero.error << zero.body;
  EXPECT_TRUE(absl::StartsWith(zero.body, "hello from v1")) << zero.body;
  ASSERT_TRUE(
      Eventually([&] { return Ready("hello") == 5; }, absl::Seconds(60)));
  r = ctl({"get", "apps", "-o", "wide"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "METRIC")) << r.out;
  r = ctl({"top", "apps"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "NAME")) << r.out;

  // 3. A new version, waited for as CI would; the scale stands (the file
  // still says replicas: 3, README step 3).
  ASSERT_TRUE(absl::StrContains(block, "sed 's/\"v1\"/\"v2\"/'"));
  std::string v2 = absl::StrReplaceAll(
      ReadFile(SourceDir() + "/examples/hello.yaml"), {{"\"v1\"", "\"v2\""}});
  WriteFile(dir_.path() + "/hello-v2.yaml", v2);
  r = ctl({"apply", "-f", dir_.path() + "/hello-v2.yaml", "--wait", "--timeout",
           "5m"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "app.tidal.dev/hello configured\n"))
      << r.out;
  EXPECT_TRUE(absl::EndsWith(
      r.out, "app.tidal.dev/hello revision 2 is rolled out (5/5 ready)\n"))
      << r.out;
  r = ctl({"rollout", "history", "hello"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "\n1 ")) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\n2 +<none> +stable ")))
      << r.out;
  r = ctl({"rollout", "undo", "hello"});
  EXPECT_EQ(r.out, "app.tidal.dev/hello rolled back\n") << r.err;
  r = ctl({"rollout", "status", "hello", "--timeout", "2m"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::EndsWith(
      r.out, "app.tidal.dev/hello revision 1 is rolled out (5/5 ready)\n"))
      << r.out;
  r = ctl({"rollout", "history", "hello"});
  EXPECT_TRUE(absl::StrContains(r.out, "undo to revision 1")) << r.out;

  // 4. Clean up.
  ASSERT_TRUE(
      absl::StrContains(block, "tidalctl delete app hello scale-to-zero"));
  r = ctl({"delete", "app", "hello", "scale-to-zero", "--wait"});
  EXPECT_EQ(r.out,
            "app.tidal.dev \"hello\" deleted\n"
            "app.tidal.dev \"scale-to-zero\" deleted\n")
      << r.err;
}

}  // namespace
}  // namespace tidal::e2e
