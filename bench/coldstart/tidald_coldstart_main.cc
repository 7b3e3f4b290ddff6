// tidal-coldstart-tidald-bench: first-request latency of an app at zero
// through a real tidald (gateway activator -> scaler Wake -> reconciler ->
// process runtime -> readiness -> route -> dispatch), minus the sample app's
// own exec-to-ready measured directly in the same run (spawned by this
// program, port polled every 100 us), paired run by run.
//
//   tidal-coldstart-tidald-bench [--runs 20]
//
// Each run applies a new app (minReplicas 0, so no instance), waits until it
// is reconciled, sends one request and deletes the app.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace {

using namespace tidal::e2e;

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

// The sample app started directly: exec to accepting connections.
double DirectExecToReadyMs(const std::string& dir, int run) {
  int port = FreePort();
  Child child;
  absl::Time start = absl::Now();
  if (!child.Start({BuildDir() + "/examples/tidal-sample-app", "--port",
                    absl::StrCat(port), "--version", "direct"},
                   absl::StrCat(dir, "/direct-", run, ".log"))) {
    return -1;
  }
  absl::Time deadline = start + absl::Seconds(10);
  while (!Accepts(port) && absl::Now() < deadline) {
    absl::SleepFor(absl::Microseconds(100));
  }
  double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  child.Signal(SIGKILL);
  child.Wait(absl::Seconds(5));
  return ms;
}

std::string AppYaml(const std::string& name) {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: )",
                      name, R"(
spec:
  scaling:
    minReplicas: 0
    scaleToZeroGracePeriod: 30s
  template:
    command: [")",
                      BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", "coldstart-bench"]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
    terminationGracePeriodSeconds: 2
)");
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 20;
  // --tidald-flag F (repeatable) is passed to tidald, e.g. to compare
  // `--instance-cgroup off` with the default.
  std::vector<std::string> tidald_flags = {"--stop-instances-on-exit"};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--runs" &&
        !absl::SimpleAtoi(argv[i + 1], &runs)) {
      fprintf(stderr, "--runs: not a number: %s\n", argv[i + 1]);
      return 2;
    }
    if (std::string(argv[i]) == "--tidald-flag")
      tidald_flags.push_back(argv[i + 1]);
  }
  TempDir dir;
  Daemon daemon(dir.path(), tidald_flags);
  if (!daemon.Start()) {
    std::cerr << "tidald did not start; see " << daemon.log_path() << "\n";
    return 1;
  }
  std::vector<double> first, direct, overhead;
  for (int run = 0; run < runs; ++run) {
    double d = DirectExecToReadyMs(dir.path(), run);
    std::string name = absl::StrCat("cold-", run);
    std::string path = absl::StrCat(dir.path(), "/", name, ".yaml");
    WriteFile(path, AppYaml(name));
    if (daemon.Ctl({"apply", "-f", path}).exit_code != 0) return 1;
    // Reconciled: the scaler has decided (0) and the route exists.
    if (!Eventually([&] {
          return absl::StrContains(
              daemon.Ctl({"get", "app", name, "-o", "json"}).out,
              "\"lastReason\"");
        })) {
      std::cerr << "app " << name << " was not reconciled\n";
      return 1;
    }
    HttpResponse r = HttpGet(daemon.gateway_port(), AppHost(name), "/");
    if (r.status != 200 || d < 0) {
      std::cerr << "run " << run << ": status " << r.status << " " << r.error
                << "\n";
      return 1;
    }
    double f = absl::ToDoubleMilliseconds(r.latency);
    first.push_back(f);
    direct.push_back(d);
    overhead.push_back(f - d);
    daemon.Ctl({"delete", "app", name});
  }
  std::printf("%d cold starts through tidald (gateway -> scaler -> runtime)\n",
              runs);
  std::printf("%-32s %8s %8s\n", "", "p50_ms", "p99_ms");
  std::printf("%-32s %8.2f %8.2f\n", "first-request latency",
              Percentile(first, 0.5), Percentile(first, 0.99));
  std::printf("%-32s %8.2f %8.2f\n", "app exec-to-ready (direct)",
              Percentile(direct, 0.5), Percentile(direct, 0.99));
  std::printf("%-32s %8.2f %8.2f\n", "tidald overhead (paired)",
              Percentile(overhead, 0.5), Percentile(overhead, 0.99));
  std::printf("target: overhead p50 < 10 ms: %s\n",
              Percentile(overhead, 0.5) < 10 ? "PASS" : "FAIL");
  daemon.Stop();
  return 0;
}
