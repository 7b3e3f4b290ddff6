// tidal-sample-app as a real process: routes, knobs, keep-alive, SIGTERM drain.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/test_util.h"

extern char** environ;

namespace tidal {
namespace {

using testing::Eventually;
using testing::HttpConn;
using testing::HttpGet;
using testing::SampleAppPath;

// The sample app on --port 0; the port comes from its "listening on" line.
class App {
 public:
  explicit App(std::vector<std::string> args) {
    int out[2];
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    std::vector<std::string> all = {SampleAppPath(), "--port", "0"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    start_ = std::chrono::steady_clock::now();
    EXPECT_EQ(posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ),
              0);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    out_ = fdopen(out[0], "r");
    char line[512];
    if (fgets(line, sizeof(line), out_) != nullptr) {
      first_line_ = line;
      // "tidal-sample-app v1 listening on 127.0.0.1:PORT (pid ..."
      size_t at = first_line_.find("127.0.0.1:");
      if (at != std::string::npos)
        port_ = std::atoi(first_line_.c_str() + at + 10);
    }
  }
  ~App() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ != nullptr) fclose(out_);
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::chrono::steady_clock::time_point start() const { return start_; }
  const std::string& first_line() const { return first_line_; }
  // Waits for exit; returns the wait status or -1 on timeout.
  int Wait(absl::Duration timeout = absl::Seconds(10)) {
    int status = -1;
    bool done = Eventually(
        [&] {
          pid_t w = waitpid(pid_, &status, WNOHANG);
          return w == pid_;
        },
        timeout);
    if (!done) return -1;
    pid_ = 0;
    return status;
  }

 private:
  pid_t pid_ = 0;
  FILE* out_ = nullptr;
  int port_ = 0;
  std::string first_line_;
  std::chrono::steady_clock::time_point start_;
};

TEST(SampleAppTest, StartsFastAndServesRoutes) {
  App app({"--version", "v3"});
  ASSERT_GT(app.port(), 0) << app.first_line();
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - app.start())
                  .count();
  std::printf("spawn -> listening: %.2f ms\n", ms);
  EXPECT_LT(ms, 500);

  auto r = HttpGet(app.port(), "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, absl::StrCat("hello from v3 (pid ", app.pid(), ")\n"));
  EXPECT_EQ(r->headers["x-version"], "v3");

  r = HttpGet(app.port(), "/healthz");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers["x-version"], "v3");

  r = HttpGet(app.port(), "/bytes?n=100000");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, std::string(100000, 'x'));

  r = HttpGet(app.port(), "/bytes?n=abc");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);

  r = HttpGet(app.port(), "/nope");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);

  HttpConn c(app.port());
  std::string body(300000, 'q');
  body += "end";
  r = c.Request("POST", "/echo", body);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, body);
}

TEST(SampleAppTest, KeepAlive) {
  App app({});
  ASSERT_GT(app.port(), 0);
  HttpConn c(app.port());
  for (int i = 0; i < 100; ++i) {
    auto r = c.Request("GET", "/");
    ASSERT_TRUE(r.has_value()) << i;
    ASSERT_EQ(r->status, 200);
  }
}

TEST(SampleAppTest, Latency) {
  App app({"--latency", "50ms"});
  ASSERT_GT(app.port(), 0);
  HttpConn c(app.port());
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.Request("GET", "/");
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
  ASSERT_TRUE(r.has_value());
  EXPECT_GE(ms, 49);
  // The query overrides the flag, both up and down.
  t0 = std::chrono::steady_clock::now();
  r = c.Request("GET", "/?latency=0");
  ms = std::chrono::duration<double, std::milli>(
           std::chrono::steady_clock::now() - t0)
           .count();
  ASSERT_TRUE(r.has_value());
  EXPECT_LT(ms, 45);
  t0 = std::chrono::steady_clock::now();
  r = c.Request("GET", "/?latency=200ms");
  ms = std::chrono::duration<double, std::milli>(
           std::chrono::steady_clock::now() - t0)
           .count();
  ASSERT_TRUE(r.has_value());
  EXPECT_GE(ms, 199);
}

TEST(SampleAppTest, LatencyDoesNotBlockOtherRequests) {
  App app({"--threads", "1"});
  ASSERT_GT(app.port(), 0);
  std::thread slow([&] {
    auto r = HttpGet(app.port(), "/?latency=1s");
    EXPECT_TRUE(r.has_value());
  });
  // While the slow one waits, a fast one on the same single thread completes.
  ASSERT_TRUE(Eventually([&] {
    auto st = HttpGet(app.port(), "/stats");
    return st.has_value() && absl::StrContains(st->body, "inflight=1");
  }));
  auto t0 = std::chrono::steady_clock::now();
  auto r = HttpGet(app.port(), "/");
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
  ASSERT_TRUE(r.has_value());
  EXPECT_LT(ms, 500);
  slow.join();
}

TEST(SampleAppTest, ErrorRate) {
  App all({"--error-rate", "1"});
  ASSERT_GT(all.port(), 0);
  auto r = HttpGet(all.port(), "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  r = HttpGet(all.port(),
              "/healthz");  // health is never failed by the error rate
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);

  App half({"--error-rate", "0.5"});
  ASSERT_GT(half.port(), 0);
  HttpConn c(half.port());
  int errors = 0;
  for (int i = 0; i < 400; ++i) {
    auto x = c.Request("GET", "/");
    ASSERT_TRUE(x.has_value());
    errors += x->status == 500;
  }
  EXPECT_GT(errors, 120);
  EXPECT_LT(errors, 280);
}

TEST(SampleAppTest, EnvironmentKnobs) {
  setenv("VERSION", "from-env", 1);
  App app({});
  unsetenv("VERSION");
  ASSERT_GT(app.port(), 0);
  auto r = HttpGet(app.port(), "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->headers["x-version"], "from-env");
}

TEST(SampleAppTest, UnhealthyAfterRequests) {
  App app({"--unhealthy-after", "3"});
  ASSERT_GT(app.port(), 0);
  HttpConn c(app.port());
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(c.Request("GET", "/healthz")->status, 200);
  EXPECT_EQ(c.Request("GET", "/healthz")->status, 500);
}

TEST(SampleAppTest, CrashAfterAndExitAtStart) {
  App app({"--crash-after", "2"});
  ASSERT_GT(app.port(), 0);
  HttpConn c(app.port());
  EXPECT_EQ(c.Request("GET", "/")->status, 200);
  auto second = c.Request("GET", "/");
  int status = app.Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);

  App bad({"--exit-at-start", "3"});
  EXPECT_EQ(bad.port(), 0);
  status = bad.Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
}

TEST(SampleAppTest, SigtermDrainsInFlightRequests) {
  App app({"--threads", "2"});
  ASSERT_GT(app.port(), 0);
  HttpConn idle(app.port());
  ASSERT_EQ(idle.Request("GET", "/")->status,
            200);  // an idle keep-alive connection
  std::optional<testing::HttpResponse> slow_result;
  std::thread slow(
      [&] { slow_result = HttpGet(app.port(), "/?latency=400ms"); });
  // Wait until the slow request is in progress in the server. One
  // keep-alive connection for the polls: the server reads the next one only
  // after it has counted the last one out (on separate connections a poll
  // could still count the one before it).
  HttpConn stats(app.port());
  ASSERT_TRUE(Eventually([&] {
    auto st = stats.Request("GET", "/stats");
    return st.has_value() && absl::StrContains(st->body, "inflight=1");
  }));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(app.pid(), SIGTERM), 0);
  int status = app.Wait();
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
  slow.join();
  ASSERT_TRUE(slow_result.has_value()) << "in-flight request was dropped";
  EXPECT_EQ(slow_result->status, 200);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // Not held by the idle keep-alive connection (that would never end); the
  // bound is loose because a loaded 2-core CI machine took over 2 s.
  EXPECT_LT(ms, 10000);
  EXPECT_TRUE(idle.PeerClosed());
  EXPECT_FALSE(testing::CanConnect(app.port()));
}

}  // namespace
}  // namespace tidal
