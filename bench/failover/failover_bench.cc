// bench/failover: how long a three-node HA cluster (3 etcd members, 3 tidald
// on 127.0.0.21-23) is without a leader after kill -9 of the leader, over N
// trials, and how many requests fail meanwhile at each node's gateway for an
// app whose instances keep running. The reference, measured in the same run:
// the election TTL (the bound) and a graceful handover (SIGTERM: the leader
// resigns).
//
//   TIDAL_BUILD_DIR=build build/bench/failover/failover_bench \
//       [--trials 20] [--ttl 10] [--graceful 3]

#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "e2e/e2e_util.h"
#include "e2e/ha_cluster.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

// Requests through one node's gateway. A node is "up" from the return of its
// Daemon::Start (its API answers, so its gateway listens) until just before
// it is killed or stopped; requests to a node that is down are not sent (a
// request in flight when it goes down finishes first: `mu`).
struct Load {
  absl::Mutex mu;
  bool up ABSL_GUARDED_BY(mu) = true;
  std::atomic<int64_t> ok{0}, failed{0};
  absl::Mutex errors_mu;
  std::map<std::string, int> errors ABSL_GUARDED_BY(errors_mu);
};

void SetUp(Load* l, bool up) {
  absl::MutexLock lock(&l->mu);
  l->up = up;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Time from the kill (or SIGTERM) of the leader until another node is the
// leader every running node agrees on; restarts the old leader afterwards.
absl::StatusOr<absl::Duration> OneFailover(HaCluster& c, int sig,
                                           std::vector<Load>& loads) {
  int leader = -1;
  if (!Eventually([&] { return (leader = c.AgreedLeader()) >= 0; },
                  absl::Seconds(60))) {
    return absl::DeadlineExceededError("no leader before the trial");
  }
  SetUp(&loads[leader], false);
  const absl::Time t0 = absl::Now();
  if (sig == SIGKILL) {
    c.node(leader).Kill9();
  } else if (!c.node(leader).Stop()) {
    return absl::InternalError("the leader did not stop on SIGTERM");
  }
  int next = -1;
  if (!Eventually(
          [&] {
            next = c.AgreedLeader();
            return next >= 0 && next != leader;
          },
          absl::Seconds(60))) {
    return absl::DeadlineExceededError("no new leader within 60 s");
  }
  const absl::Duration d = absl::Now() - t0;
  if (!c.node(leader).Start()) {
    return absl::InternalError("the old leader did not come back");
  }
  SetUp(&loads[leader], true);
  return d;
}

int Main(int argc, char** argv) {
  int trials = 20, ttl_s = 10, graceful = 3;
  CLI::App app{"failover of a three-node Tidal HA cluster"};
  app.add_option("--trials", trials, "kill -9 trials");
  app.add_option("--ttl", ttl_s, "--election-ttl in seconds");
  app.add_option("--graceful", graceful, "SIGTERM (resign) trials");
  CLI11_PARSE(app, argc, argv);
  TempDir dir;
  std::vector<DaemonPlace> places;
  for (int i = 0; i < 3; ++i) {
    places.push_back(DaemonPlace{absl::StrCat("127.0.0.", 21 + i), {}});
  }
  HaCluster c(dir.path(), places, absl::Seconds(ttl_s),
              {"--node-lost-timeout=120s", "--stop-instances-on-exit"});
  if (!c.Start()) {
    fprintf(stderr, "the cluster did not start; logs in %s\n",
            dir.path().c_str());
    return 1;
  }
  const std::string yaml = absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  replicas: 3
  template:
    command: [")",
                                        BuildDir(),
                                        R"(/examples/tidal-sample-app"]
    readinessProbe: {httpGet: {path: /healthz}, periodSeconds: 1}
)");
  WriteFile(dir.path() + "/web.yaml", yaml);
  auto r = c.node(0).Ctl(
      {"apply", "-f", dir.path() + "/web.yaml", "--wait", "--timeout", "120s"});
  if (r.exit_code != 0) {
    fprintf(stderr, "apply failed: %s%s\n", r.out.c_str(), r.err.c_str());
    return 1;
  }
  // Steady requests through every node's gateway (fresh connections each
  // 20 ms; a node that is down while it restarts is not counted).
  std::vector<Load> loads(3);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      Load& l = loads[i];
      while (!stop.load()) {
        {
          absl::MutexLock lock(&l.mu);
          if (l.up) {
            HttpResponse resp =
                HttpGet(c.node(i).gateway_port(), AppHost("web"), "/",
                        absl::Seconds(10), c.node(i).host());
            if (resp.status == 200) {
              l.ok++;
            } else {
              l.failed++;
              absl::MutexLock elock(&l.errors_mu);
              l.errors[resp.status != 0 ? absl::StrCat("HTTP ", resp.status)
                                        : resp.error]++;
            }
          }
        }
        absl::SleepFor(absl::Milliseconds(20));
      }
    });
  }
  std::vector<double> kill_ms, term_ms;
  for (int t = 0; t < trials; ++t) {
    auto d = OneFailover(c, SIGKILL, loads);
    if (!d.ok()) {
      fprintf(stderr, "trial %d: %s\n", t, d.status().ToString().c_str());
      break;
    }
    kill_ms.push_back(absl::ToDoubleMilliseconds(*d));
    fprintf(stderr, "kill -9 trial %d: %.0f ms\n", t, kill_ms.back());
  }
  for (int t = 0; t < graceful; ++t) {
    auto d = OneFailover(c, SIGTERM, loads);
    if (!d.ok()) {
      fprintf(stderr, "graceful trial %d: %s\n", t,
              d.status().ToString().c_str());
      break;
    }
    term_ms.push_back(absl::ToDoubleMilliseconds(*d));
  }
  stop = true;
  for (auto& th : threads) th.join();
  const double ttl_ms = ttl_s * 1000.0;
  printf("failover after kill -9 of the leader, %zu trials (ttl %d s):\n",
         kill_ms.size(), ttl_s);
  printf(
      "  median %.0f ms, p99 %.0f ms, max %.0f ms; median/ttl %.2f "
      "(bar: <= ttl + 2 s = %.0f ms)\n",
      Percentile(kill_ms, 0.5), Percentile(kill_ms, 0.99),
      kill_ms.empty() ? 0 : *std::max_element(kill_ms.begin(), kill_ms.end()),
      Percentile(kill_ms, 0.5) / ttl_ms, ttl_ms + 2000);
  printf(
      "  reference: graceful handover (SIGTERM, resign) median %.0f ms over "
      "%zu trials\n",
      Percentile(term_ms, 0.5), term_ms.size());
  for (int i = 0; i < 3; ++i) {
    printf(
        "  node n%d gateway (while up): %lld requests answered 200, %lld "
        "failed\n",
        i, static_cast<long long>(loads[i].ok.load()),
        static_cast<long long>(loads[i].failed.load()));
    absl::MutexLock lock(&loads[i].errors_mu);
    for (const auto& [what, n] : loads[i].errors) {
      printf("    %d x %s\n", n, what.c_str());
    }
  }
  return kill_ms.size() == static_cast<size_t>(trials) ? 0 : 1;
}

}  // namespace
}  // namespace tidal::e2e

int main(int argc, char** argv) { return tidal::e2e::Main(argc, argv); }
