// tidal-gateway-bench: runs a Gateway with one static route, for
// bench/gateway/run.sh and manual testing.
//
//   tidal-gateway-bench --port P --threads N --upstream 127.0.0.1:8081
//   [--upstream ...]
//                       [--app bench] [--ns default] [--concurrency 0]
//                       [--protocol http1|h2c|grpc] [--history 0|1]
//
// --history 1 also records the app's history once a second from the
// gateway's metrics, as tidald does for its dashboard (docs/dashboard.md):
// bench/gateway/cost.sh with HISTORY=1 measures what that costs a request.
//
// Prints "listening on <port>" once serving; SIGINT/SIGTERM stops it.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gateway/gateway.h"
#include "scaler/load_history.h"

namespace {

[[noreturn]] void Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "error: %s\n", error.c_str());
  std::fprintf(
      stderr,
      "usage: tidal-gateway-bench [--port P] [--threads N] --upstream "
      "HOST:PORT...\n"
      "       [--app NAME] [--ns NAME] [--concurrency N] [--domain D]\n"
      "       [--protocol http1|h2c|grpc] [--history 0|1]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  tidal::gateway::GatewayOptions opts;
  opts.port = 0;
  tidal::gateway::Route route;
  route.ns = "default";
  route.app = "bench";
  tidal::gateway::RevisionRoute rev;
  rev.revision = 1;
  bool history = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) Usage("missing value for " + flag);
    std::string value = argv[++i];
    int n = 0;
    if (flag == "--port" && absl::SimpleAtoi(value, &n)) {
      opts.port = n;
    } else if (flag == "--threads" && absl::SimpleAtoi(value, &n)) {
      opts.threads = n;
    } else if (flag == "--concurrency" && absl::SimpleAtoi(value, &n)) {
      route.concurrency = n;
    } else if (flag == "--app") {
      route.app = value;
    } else if (flag == "--ns") {
      route.ns = value;
    } else if (flag == "--protocol") {
      if (value != "http1" && value != "h2c" && value != "grpc") {
        Usage("bad --protocol " + value);
      }
      route.h2 = value != "http1";
    } else if (flag == "--history" && (value == "0" || value == "1")) {
      history = value == "1";
    } else if (flag == "--domain") {
      opts.domain = value;
    } else if (flag == "--upstream") {
      auto colon = value.rfind(':');
      if (colon == std::string::npos ||
          !absl::SimpleAtoi(value.substr(colon + 1), &n)) {
        Usage("bad --upstream " + value);
      }
      tidal::gateway::Endpoint e;
      e.instance_id = absl::StrCat("upstream-", rev.endpoints.size());
      e.host = value.substr(0, colon);
      e.port = n;
      rev.endpoints.push_back(e);
    } else {
      Usage("unknown flag " + flag);
    }
  }
  if (rev.endpoints.empty()) Usage("at least one --upstream is needed");
  route.revisions.push_back(rev);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts

  tidal::gateway::Gateway gw(opts);
  absl::Status st = gw.Start();
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  gw.SetRoute(route);
  tidal::LoadHistory load;
  tidal::HistoryRecorder recorder(
      &load, &gw,
      [&route](const auto& visit) {
        tidal::HistoryRecorder::AppNow app;
        app.ns = route.ns;
        app.name = route.app;
        app.desired = app.ready = 1;
        visit(app);
      },
      tidal::RealClock::Get());
  if (history) recorder.Start();
  std::printf("listening on %d\n", gw.port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  recorder.Stop();
  gw.Stop();
  return 0;
}
