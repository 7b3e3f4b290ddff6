// End-to-end tests of the gateway's bars (issue 3) with real tidald, real
// sample-app processes and real HTTP on loopback: scale from zero and back,
// scale-down and delete under load, and the activator queue overflowing.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

// A sample-app spec; `marker` lands in every process's command line.
std::string AppYaml(const std::string& name, const std::string& marker,
                    const std::string& spec, const std::string& extra_args) {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: )",
                      name, "\nspec:\n", spec, R"(  template:
    command: [")",
                      BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", "v1-)",
                      marker, "\"", extra_args, R"(]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
    terminationGracePeriodSeconds: 10
)");
}

// Integer field of `tidalctl get app NAME -o json` (0 when absent: proto3
// JSON leaves zeros out).
int JsonInt(const std::string& json, const std::string& field) {
  auto pos = json.find(absl::StrCat("\"", field, "\":"));
  if (pos == std::string::npos) return 0;
  return atoi(json.c_str() + pos + field.size() + 3);
}

class GatewayE2ETest : public ::testing::Test {
 protected:
  void StartDaemon(std::vector<std::string> flags = {}) {
    marker_ = absl::StrCat(
        "e2e-gw-", getpid(), "-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    daemon_ = std::make_unique<Daemon>(dir_.path(), std::move(flags));
    ASSERT_TRUE(daemon_->Start())
        << "tidald did not start; see " << daemon_->log_path();
  }
  void TearDown() override {
    daemon_.reset();
    for (pid_t pid : FindProcesses(marker_)) kill(pid, SIGKILL);
  }
  CommandResult Apply(const std::string& yaml) {
    std::string path = dir_.path() + "/app.yaml";
    WriteFile(path, yaml);
    return daemon_->Ctl({"apply", "-f", path});
  }
  int Count() { return static_cast<int>(FindProcesses(marker_).size()); }
  std::string Json(const std::string& name) {
    auto r = daemon_->Ctl({"get", "app", name, "-o", "json"});
    return r.exit_code == 0 ? r.out : "";
  }
  std::string Describe(const std::string& name) {
    return daemon_->Ctl({"describe", "app", name}).out;
  }

  TempDir dir_;
  std::string marker_;
  std::unique_ptr<Daemon> daemon_;
};

// Bar 1: minReplicas 0 has no process; 100 concurrent requests all succeed
// with exactly one instance started; after the grace period no process is
// left.
TEST_F(GatewayE2ETest, ScaleFromZeroServesABurstThenReturnsToZero) {
  StartDaemon();
  ASSERT_EQ(Apply(AppYaml("zero", marker_, R"(  scaling:
    minReplicas: 0
    maxReplicas: 5
    metric: concurrency
    target: 200
    scaleToZeroGracePeriod: 3s
)",
                          ""))
                .exit_code,
            0);
  // The app is reconciled (its status written) and has no instance.
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(Json("zero"), "\"lastReason\"");
  })) << Describe("zero");
  EXPECT_EQ(Count(), 0);
  EXPECT_EQ(JsonInt(Json("zero"), "desiredReplicas"), 0);

  constexpr int kRequests = 100;
  std::vector<HttpResponse> results(kRequests);
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      results[i] = HttpGet(daemon_->gateway_port(), AppHost("zero"), "/");
    });
  }
  for (auto& t : threads) t.join();
  const absl::Duration all = absl::Now() - start;
  absl::Duration slowest;
  for (const auto& r : results) {
    EXPECT_EQ(r.status, 200) << r.error << " " << r.body;
    slowest = std::max(slowest, r.latency);
  }
  EXPECT_EQ(Count(), 1);
  // Exactly one instance was started for the burst (not one started and
  // another stopped): one Started event, once.
  // Events are written in batches off the reconcile path: wait for it.
  CommandResult events;
  auto started = [&] {
    events = daemon_->Ctl({"get", "events", "zero", "-o", "json"});
    size_t n = 0;
    for (size_t at = events.out.find("\"reason\": \"Started\"");
         at != std::string::npos;
         at = events.out.find("\"reason\": \"Started\"", at + 1)) {
      ++n;
    }
    return n;
  };
  ASSERT_TRUE(Eventually([&] { return started() >= 1; }, absl::Seconds(10)))
      << events.out << events.err;
  EXPECT_EQ(started(), 1u) << events.out;
  std::cout << "[ figures  ] 100 concurrent requests to an app at zero: all "
            << "done in " << absl::FormatDuration(all) << ", slowest "
            << absl::FormatDuration(slowest) << "\n";
  std::string described;
  EXPECT_TRUE(Eventually(
      [&] {
        described = Describe("zero");
        return absl::StrContains(described, "ScaledUp");
      },
      absl::Seconds(10)))
      << described;

  // Back to zero after the grace period (plus the panic window of quiet the
  // scaler waits for), and the process is gone.
  const absl::Time idle_from = absl::Now();
  ASSERT_TRUE(Eventually([&] { return Count() == 0; }, absl::Seconds(40)))
      << Describe("zero");
  std::cout << "[ figures  ] back to zero "
            << absl::FormatDuration(absl::Now() - idle_from)
            << " after the last request\n";
  EXPECT_TRUE(Eventually(
      [&] {
        described = Describe("zero");
        return absl::StrContains(described, "ScaledDown");
      },
      absl::Seconds(10)))
      << described;
  EXPECT_TRUE(absl::StrContains(described, "idle")) << described;

  // And it comes back on the next request.
  HttpResponse again = HttpGet(daemon_->gateway_port(), AppHost("zero"), "/");
  EXPECT_EQ(again.status, 200) << again.error;
}

// Bar 2: 3 instances under steady load are scaled down to 1, then the app is
// deleted: no request fails except those sent after the delete, which get
// 404.
TEST_F(GatewayE2ETest, ScaleDownAndDeleteUnderLoadFailNoRequest) {
  StartDaemon();
  ASSERT_EQ(Apply(AppYaml("steady", marker_, "  replicas: 3\n",
                          R"(, "--latency", "20ms")"))
                .exit_code,
            0);
  ASSERT_TRUE(Eventually([&] {
    return JsonInt(Json("steady"), "readyReplicas") == 3;
  })) << Describe("steady");

  std::atomic<bool> stop{false};
  std::atomic<int64_t> delete_sent_ns{INT64_MAX};
  std::mutex mu;
  std::map<int, int> before_delete, after_delete;  // status -> count
  std::vector<std::string> errors;
  std::vector<std::thread> clients;
  constexpr int kClients = 8;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      HttpClient client(daemon_->gateway_port(), AppHost("steady"));
      // Bounded: at most 5,000 requests per client.
      for (int i = 0; i < 5000 && !stop.load(); ++i) {
        const int64_t sent = absl::GetCurrentTimeNanos();
        HttpResponse r = client.Get("/");
        std::lock_guard<std::mutex> l(mu);
        (sent < delete_sent_ns.load() ? before_delete
                                      : after_delete)[r.status]++;
        if (r.status == 0) errors.push_back(r.error);
        if (r.status == 404) client.Close();
      }
    });
  }
  auto total = [&] {
    std::lock_guard<std::mutex> l(mu);
    int n = 0;
    for (auto& [s, c] : before_delete) n += c;
    return n;
  };
  ASSERT_TRUE(Eventually([&] { return total() > 400; }));
  auto r = daemon_->Ctl({"scale", "steady", "--replicas", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Eventually([&] { return Count() == 1; }, absl::Seconds(30)))
      << Describe("steady");
  const int at_one = total();
  ASSERT_TRUE(Eventually([&] { return total() > at_one + 400; }));

  delete_sent_ns = absl::GetCurrentTimeNanos();
  r = daemon_->Ctl({"delete", "app", "steady"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> l(mu);
    return after_delete[404] >= 20;
  })) << Describe("steady");
  stop = true;
  for (auto& t : clients) t.join();

  std::lock_guard<std::mutex> l(mu);
  std::cout << "[ figures  ] before the delete:";
  for (auto& [s, c] : before_delete) std::cout << " " << s << "×" << c;
  std::cout << "; after:";
  for (auto& [s, c] : after_delete) std::cout << " " << s << "×" << c;
  std::cout << "\n";
  for (auto& [status, count] : before_delete) {
    EXPECT_EQ(status, 200) << count << " requests got " << status;
  }
  for (auto& [status, count] : after_delete) {
    EXPECT_TRUE(status == 200 || status == 404)
        << count << " requests got " << status;
  }
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_TRUE(Eventually([&] { return Count() == 0; }));
}

// Bar 3: more concurrent requests than the queue holds, to an app at zero:
// the excess gets 503 (with Retry-After) quickly, the held ones are served
// once the instance is ready, memory stays bounded, and the gateway serves
// normally after.
TEST_F(GatewayE2ETest, QueueOverflowAtZeroGets503QuicklyAndRecovers) {
  StartDaemon({"--gateway-queue-size", "10", "--gateway-queue-timeout", "20s"});
  ASSERT_EQ(Apply(AppYaml("burst", marker_, R"(  scaling:
    minReplicas: 0
    target: 200
    scaleToZeroGracePeriod: 30s
)",
                          R"(, "--startup-delay", "3s")"))
                .exit_code,
            0);
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(Json("burst"), "\"lastReason\"");
  })) << Describe("burst");
  ASSERT_EQ(Count(), 0);

  auto rss = [&] {
    HttpResponse m = HttpGet(daemon_->admin_port(), "localhost", "/metrics");
    auto pos = m.body.find("\nprocess_resident_memory_bytes ");
    return pos == std::string::npos
               ? -1.0
               : atof(m.body.c_str() + pos +
                      strlen("\nprocess_resident_memory_bytes "));
  };
  const double rss_before = rss();
  ASSERT_GT(rss_before, 0) << "no process_resident_memory_bytes on /metrics";

  // Far more than the queue holds, all sent while the instance starts.
  constexpr int kRequests = 300;
  std::vector<HttpResponse> results(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      results[i] = HttpGet(daemon_->gateway_port(), AppHost("burst"), "/");
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0, rejected = 0;
  absl::Duration slowest_503;
  for (const auto& r : results) {
    if (r.status == 200) {
      ++ok;
    } else {
      EXPECT_EQ(r.status, 503) << r.error << " " << r.body;
      if (r.status != 503) continue;
      ++rejected;
      slowest_503 = std::max(slowest_503, r.latency);
      EXPECT_TRUE(r.headers.count("retry-after")) << r.body;
    }
  }
  // The queue holds 10 and the instance needs 3 s: 10 served, the rest
  // refused without waiting for the instance.
  EXPECT_EQ(ok, 10);
  EXPECT_EQ(rejected, kRequests - 10);
  EXPECT_LT(slowest_503, absl::Milliseconds(500));
  std::cout << "[ figures  ] " << rejected << " of " << kRequests
            << " got 503; slowest 503 after "
            << absl::FormatDuration(slowest_503) << "\n";

  // Normal service after.
  HttpClient client(daemon_->gateway_port(), AppHost("burst"));
  for (int i = 0; i < 50; ++i) {
    HttpResponse r = client.Get("/");
    ASSERT_EQ(r.status, 200) << r.error;
  }
  // Refused requests hold nothing: tidald's memory after 290 refusals and
  // a cold start stays within a few MiB of where it was.
  const double rss_after = rss();
  ASSERT_GT(rss_after, 0);
  EXPECT_LT(rss_after - rss_before, 32.0 * 1024 * 1024);
  std::cout << "[ figures  ] tidald RSS " << rss_before / 1048576 << " MiB → "
            << rss_after / 1048576 << " MiB\n";
  EXPECT_EQ(Count(), 1);
}

// The gateway's limits are tidald flags: a body over --gateway-max-body gets
// 413, and a bad value is refused at start with the flag's name.
TEST_F(GatewayE2ETest, GatewayLimitsAreFlags) {
  CommandResult bad = e2e::Run(
      {BuildDir() + "/src/daemon/tidald", "--data-dir=" + dir_.path() + "/bad",
       "--listen=127.0.0.1:" + std::to_string(FreePort()),
       "--gateway-listen=127.0.0.1:" + std::to_string(FreePort()),
       "--admin-listen=127.0.0.1:" + std::to_string(FreePort()),
       "--gateway-connect-timeout=soon"});
  EXPECT_EQ(bad.exit_code, 2) << bad.out << bad.err;
  EXPECT_TRUE(absl::StrContains(bad.err, "--gateway-connect-timeout"))
      << bad.err;

  StartDaemon({"--gateway-max-body=1Ki", "--gateway-response-timeout=5s"});
  ASSERT_EQ(Apply(AppYaml("limits", marker_, "  replicas: 1\n", "")).exit_code,
            0);
  ASSERT_TRUE(Eventually([&] {
    return JsonInt(Json("limits"), "readyReplicas") == 1;
  })) << Describe("limits");
  const std::string url =
      absl::StrCat("http://127.0.0.1:", daemon_->gateway_port(), "/");
  auto post = [&](size_t bytes) {
    std::string body_path = dir_.path() + "/body";
    WriteFile(body_path, std::string(bytes, 'x'));
    return e2e::Run({"/usr/bin/curl", "-s", "-o", "/dev/null", "-w",
                     "%{http_code}", "-H", "Host: " + AppHost("limits"),
                     "--data-binary", "@" + body_path, url});
  };
  EXPECT_EQ(post(100).out, "200");
  EXPECT_EQ(post(4096).out, "413");
}

}  // namespace
}  // namespace tidal::e2e
