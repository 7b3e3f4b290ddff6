// End-to-end surge (issue 4): the sample app under 10 concurrent clients, then
// a sudden step to 50 for a minute. Real tidald, real sample-app processes,
// real HTTP. The gateway must fail no request, replicas must reach what the
// load needs within 2 s plus the app's start time (with the default knobs), and
// the test prints the time until p99 latency is back under its pre-step value.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

constexpr int kPerInstance = 5;  // template.concurrency and scaling.target
constexpr int kBefore = 10;      // clients before the step
constexpr int kAfter = 50;       // clients after it
constexpr absl::Duration kLatency = absl::Milliseconds(100);

// One run of the story: the scaling knobs beyond the defaults, and how long
// the 50 clients last.
struct Surge {
  std::string name;
  std::string knobs;  // extra lines under spec.scaling
  absl::Duration surge = absl::Minutes(1);
};
// Test names show the case, not its bytes.
void PrintTo(const Surge& s, std::ostream* os) { *os << s.name; }

// The bar: the needed instances are ready within 2 s plus the app's start
// time after the step. The only tolerance is tick alignment: the planner
// ticks 100 ms after each whole second (MultiScaler::Options::tick_offset),
// once the gateway has closed the second, so a decision can come up to
// 100 ms later than "the end of the step's first complete second". Ready
// times are the runtime's own timestamps, not polled.
constexpr absl::Duration kTickAlignment = absl::Milliseconds(100);

std::string SurgeYaml(const std::string& marker, const std::string& knobs) {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: surge
spec:
  scaling:
    minReplicas: 1
    maxReplicas: 30
    metric: concurrency
    target: )",
                      kPerInstance, "\n", knobs, R"(  template:
    concurrency: )",
                      kPerInstance, R"(
    command: [")",
                      BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", "v1-)",
                      marker, R"(", "--latency", "100ms", "--threads", "1"]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
    terminationGracePeriodSeconds: 10
)");
}

int JsonInt(const std::string& json, const std::string& field) {
  auto pos = json.find(absl::StrCat("\"", field, "\":"));
  if (pos == std::string::npos) return 0;
  return atoi(json.c_str() + pos + field.size() + 3);
}

// RFC 3339 timestamps of `field` in JSON text, in order.
std::vector<absl::Time> JsonTimes(const std::string& json,
                                  const std::string& field) {
  std::vector<absl::Time> out;
  const std::string key = absl::StrCat("\"", field, "\":");
  for (size_t pos = json.find(key); pos != std::string::npos;
       pos = json.find(key, pos + 1)) {
    size_t start = json.find('"', pos + key.size());
    if (start == std::string::npos) break;
    ++start;
    size_t end = json.find('"', start);
    absl::Time t;
    std::string err;
    if (absl::ParseTime(absl::RFC3339_full, json.substr(start, end - start), &t,
                        &err)) {
      out.push_back(t);
    }
  }
  return out;
}

double P99(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = static_cast<size_t>(std::ceil(0.99 * v.size())) - 1;
  return v[std::min(idx, v.size() - 1)];
}

struct Sample {
  absl::Time sent;
  double ms;
  int status;
};

class ScalingE2ETest : public ::testing::TestWithParam<Surge> {};

TEST_P(ScalingE2ETest, SurgeFromTenToFiftyClients) {
  const Surge& surge = GetParam();
  TempDir dir;
  const std::string marker =
      absl::StrCat("e2e-surge-", getpid(), "-", surge.name);
  Daemon daemon(dir.path());
  ASSERT_TRUE(daemon.Start()) << daemon.log_path();
  std::string path = dir.path() + "/surge.yaml";
  WriteFile(path, SurgeYaml(marker, surge.knobs));
  ASSERT_EQ(daemon.Ctl({"apply", "-f", path}).exit_code, 0);
  auto json = [&] {
    return daemon.Ctl({"get", "app", "surge", "-o", "json"}).out;
  };
  ASSERT_TRUE(
      Eventually([&] { return JsonInt(json(), "readyReplicas") >= 1; }));

  std::mutex mu;
  std::vector<Sample> samples;
  std::vector<std::string> errors;
  absl::Notification go;  // the step
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < kAfter; ++c) {
    clients.emplace_back([&, c] {
      HttpClient client(daemon.gateway_port(), AppHost("surge"));
      if (c >= kBefore) go.WaitForNotification();
      // Bounded: at most 3,000 requests per client (5 min at 100 ms).
      for (int i = 0; i < 3000 && !stop.load(); ++i) {
        absl::Time sent = absl::Now();
        HttpResponse r = client.Get("/");
        std::lock_guard<std::mutex> l(mu);
        samples.push_back(
            {sent, absl::ToDoubleMilliseconds(r.latency), r.status});
        if (r.status != 200)
          errors.push_back(absl::StrCat(r.status, " ", r.error, r.body));
      }
    });
  }

  // Before the step: the replicas settle for 10 clients, then 8 s of steady
  // load give the pre-step p99.
  int settled = 0;
  bool settled_ok = Eventually(
      [&] {
        std::string j = json();
        int ready = JsonInt(j, "readyReplicas");
        settled = ready;
        return ready >= 2 && ready == JsonInt(j, "desiredReplicas");
      },
      absl::Seconds(40));
  if (!settled_ok) {
    go.Notify();
    stop = true;
    for (auto& t : clients) t.join();
    FAIL() << "replicas did not settle under " << kBefore << " clients";
  }
  // The desired count over time, polled the same way before and after the
  // step (so the polling costs the same CPU in both latency figures).
  const int needed = (kAfter + kPerInstance - 1) / kPerInstance;
  std::atomic<int64_t> step_ns{INT64_MAX};
  std::atomic<int64_t> desired_at_ns{INT64_MAX};
  std::atomic<int> peak_desired{0};
  std::atomic<bool> ready_seen{false};  // status.readyReplicas >= needed
  std::atomic<bool> stop_monitor{false};
  std::thread monitor([&] {
    while (!stop_monitor.load()) {
      const std::string j = json();
      int desired = JsonInt(j, "desiredReplicas");
      int64_t now = absl::GetCurrentTimeNanos();
      if (now >= step_ns.load()) {
        if (JsonInt(j, "readyReplicas") >= needed) ready_seen = true;
        peak_desired = std::max(peak_desired.load(), desired);
        if (desired >= needed && desired_at_ns.load() == INT64_MAX)
          desired_at_ns = now;
      }
      absl::SleepFor(absl::Milliseconds(250));  // sampling period
    }
  });
  const absl::Time steady_from = absl::Now();
  // 8 s of steady load (a measurement period), then the step.
  Eventually([&] { return absl::Now() - steady_from > absl::Seconds(8); },
             absl::Seconds(10));
  const absl::Time step = absl::Now();
  step_ns = absl::ToUnixNanos(step);
  go.Notify();
  // The condition: the instances the 50 clients need are ready (as the
  // monitor polls the status, so the wait adds no tidalctl calls), with the
  // surge as the deadline; the bar itself is checked on the runtime's ready
  // times below. Then the load holds for the rest of the surge.
  const bool reached =
      Eventually([&] { return ready_seen.load(); }, surge.surge);
  const absl::Duration reached_after = absl::Now() - step;
  Eventually([&] { return absl::Now() - step > surge.surge; },
             surge.surge + absl::Seconds(1));
  stop = true;
  for (auto& t : clients) t.join();
  stop_monitor = true;
  monitor.join();
  const absl::Time desired_at = absl::FromUnixNanos(desired_at_ns.load());

  // When the needed number of instances was ready (the runtime's ready
  // times), and the instances' own start time (exec to ready).
  auto inst = daemon.Ctl({"get", "instances", "-o", "json"});
  std::vector<absl::Time> starts = JsonTimes(inst.out, "startTime");
  std::vector<absl::Time> readies = JsonTimes(inst.out, "readyTime");
  absl::Duration start_time;
  for (size_t i = 0; i < starts.size() && i < readies.size(); ++i)
    start_time = std::max(start_time, readies[i] - starts[i]);
  std::sort(readies.begin(), readies.end());
  const absl::Time ready_at = static_cast<int>(readies.size()) >= needed
                                  ? readies[needed - 1]
                                  : absl::InfiniteFuture();

  std::vector<double> pre;
  std::map<int, std::vector<double>> after;  // second since the step -> ms
  int failed = 0, total = 0;
  {
    std::lock_guard<std::mutex> l(mu);
    for (const Sample& s : samples) {
      ++total;
      if (s.status != 200) ++failed;
      if (s.sent >= steady_from && s.sent < step) pre.push_back(s.ms);
      if (s.sent >= step)
        after[static_cast<int>(absl::ToInt64Seconds(s.sent - step))].push_back(
            s.ms);
    }
  }
  const double pre_p99 = P99(pre);
  // Time until p99 is back: the first 1-s window (by send time) whose p99 is
  // under the pre-step p99, and the second from which every window stays
  // within 5% of it (a p99 over ~500 requests moves by a few percent).
  int first_under = -1, stays_within = -1;
  double worst = 0;
  std::string series;
  for (auto& [sec, v] : after) {
    double p = P99(v);
    worst = std::max(worst, p);
    if (sec < 12) absl::StrAppend(&series, " ", sec, "s:", static_cast<int>(p));
    if (first_under < 0 && p <= pre_p99) first_under = sec;
    if (p <= pre_p99 * 1.05) {
      if (stays_within < 0) stays_within = sec;
    } else {
      stays_within = -1;
    }
  }
  std::cout << "[ figures  ] surge " << kBefore << " -> " << kAfter
            << " clients for " << absl::FormatDuration(surge.surge) << " ("
            << absl::FormatDuration(kLatency) << " per request, "
            << kPerInstance << " per instance): " << total << " requests, "
            << failed << " failed\n"
            << "[ figures  ] replicas before the step " << settled
            << ", needed after " << needed << ", peak desired "
            << peak_desired.load() << "\n[ figures  ] desired >= " << needed
            << " after " << absl::FormatDuration(desired_at - step)
            << ", ready >= " << needed << " after "
            << absl::FormatDuration(ready_at - step)
            << "; instance start time (exec to ready, max) "
            << absl::FormatDuration(start_time) << "\n"
            << "[ figures  ] p99 before the step " << pre_p99
            << " ms, worst 1-s p99 after " << worst
            << " ms; first 1-s window under it: second " << first_under
            << "; within 5% of it for good from second " << stays_within
            << "\n[ figures  ] p99 (ms) per second after the step:" << series
            << "\n";

  EXPECT_EQ(failed, 0) << (errors.empty() ? "" : errors.front());
  EXPECT_TRUE(reached) << "ready replicas never reached " << needed
                       << " during the surge (polled for "
                       << absl::FormatDuration(reached_after) << ")";
  ASSERT_NE(ready_at, absl::InfiniteFuture()) << "never reached " << needed;
  // The bar: 2 s plus the start time (plus the tick alignment above).
  EXPECT_LE(ready_at - step, absl::Seconds(2) + start_time + kTickAlignment)
      << "start time " << absl::FormatDuration(start_time);
  daemon.Ctl({"delete", "app", "surge"});
  EXPECT_TRUE(Eventually([&] { return FindProcesses(marker).empty(); }));
  for (pid_t pid : FindProcesses(marker)) kill(pid, SIGKILL);
}

// Defaults (algorithm tidal: a 1 s tick, and a burst in the latest complete
// seconds is sized on its peak, not on the 6 s panic-window average): the
// bar holds over the issue's minute of 50 clients (measured: ready about 1 s
// after the step). "fast" also shortens the panic window to 1 s
// (panicWindowPercentage 2 of 60 s) and sets the tick explicitly: the same
// bar, over a 20 s surge to keep the suite's time reasonable.
INSTANTIATE_TEST_SUITE_P(
    Surges, ScalingE2ETest,
    ::testing::Values(Surge{"defaults", "", absl::Minutes(1)},
                      Surge{"fast",
                            "    tick: 1s\n    panicWindowPercentage: 2\n",
                            absl::Seconds(20)}),
    [](const ::testing::TestParamInfo<Surge>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace tidal::e2e
