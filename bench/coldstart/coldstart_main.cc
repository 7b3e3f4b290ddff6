// tidal-coldstart-bench: cold-start overhead of the gateway's activator.
//
//   tidal-coldstart-bench --app BUILD/examples/tidal-sample-app [--runs 30]
//
// Each run: the app "hello" has a route with no endpoint; a client sends
// GET /; the gateway holds it and calls on_demand; a runtime stand-in spawns
// the sample app on a free port, polls the port every 100 us until it
// accepts (that is the app's own exec-to-ready time), then SetRoute()s the
// instance; the held request is dispatched. Overhead = first-request latency
// minus exec-to-ready of the same start. The instance is stopped after each
// run. Prints p50/p99 of both and of the overhead.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/gateway.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends one GET and reads until the response header and a body byte arrive.
bool Get(int port, const std::string& host) {
  int fd = Connect(port);
  if (fd < 0) return false;
  std::string req = absl::StrCat("GET / HTTP/1.1\r\nHost: ", host,
                                 "\r\nConnection: close\r\n\r\n");
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return false;
  }
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) got.append(buf, n);
  close(fd);
  return got.rfind("HTTP/1.1 200", 0) == 0;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  std::string app;
  int runs = 30;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i];
    if (f == "--app") app = argv[i + 1];
    if (f == "--runs" && (!absl::SimpleAtoi(argv[i + 1], &runs) || runs < 1))
      runs = 0;
  }
  if (app.empty() || runs < 1 || access(app.c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "usage: tidal-coldstart-bench --app PATH/tidal-sample-app "
                 "[--runs N]\n");
    return 2;
  }

  std::mutex mu;
  std::condition_variable cv;
  int demands = 0;
  tidal::gateway::GatewayOptions opts;
  opts.port = 0;
  opts.threads = 2;
  opts.on_demand = [&](const std::string&, const std::string&) {
    std::lock_guard<std::mutex> lock(mu);
    ++demands;
    cv.notify_all();
  };
  tidal::gateway::Gateway gw(opts);
  if (!gw.Start().ok()) return 1;
  tidal::gateway::Route zero;
  zero.ns = "default";
  zero.app = "hello";
  zero.revisions.push_back({1, 100, {}});
  gw.SetRoute(zero);
  const std::string host = "hello.default.tidal.localhost";

  std::vector<double> first, ready, overhead;
  for (int r = 0; r < runs; ++r) {
    pid_t pid = -1;
    Clock::time_point spawned, up;
    std::thread runtime([&] {  // the runtime stand-in
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return demands > r; });
      }
      int port = FreePort();
      std::string port_s = std::to_string(port);
      const char* args[] = {app.c_str(), "--port", port_s.c_str(),
                            "--threads", "1",      nullptr};
      spawned = Clock::now();
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
      posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
      posix_spawn(&pid, app.c_str(), &fa, nullptr,
                  const_cast<char* const*>(args), environ);
      posix_spawn_file_actions_destroy(&fa);
      int fd;
      while ((fd = Connect(port)) < 0)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      close(fd);
      up = Clock::now();
      tidal::gateway::Route route = zero;
      route.revisions[0].endpoints.push_back(
          {"hello-" + std::to_string(r), "127.0.0.1", port, false});
      gw.SetRoute(route);
    });
    Clock::time_point sent = Clock::now();
    bool ok = Get(gw.port(), host);
    Clock::time_point done = Clock::now();
    runtime.join();
    gw.SetRoute(zero);
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
    if (!ok) {
      std::fprintf(stderr, "run %d: request failed\n", r);
      return 1;
    }
    first.push_back(Ms(done - sent));
    ready.push_back(Ms(up - spawned));
    overhead.push_back(Ms(done - sent) - Ms(up - spawned));
  }
  std::printf("cold starts: %d (on_demand calls: %d)\n", runs, demands);
  std::printf("%-28s %9s %9s\n", "", "p50_ms", "p99_ms");
  std::printf("%-28s %9.2f %9.2f\n", "first-request latency",
              Percentile(first, .5), Percentile(first, .99));
  std::printf("%-28s %9.2f %9.2f\n", "app exec-to-ready (direct)",
              Percentile(ready, .5), Percentile(ready, .99));
  std::printf("%-28s %9.2f %9.2f\n", "gateway overhead",
              Percentile(overhead, .5), Percentile(overhead, .99));
  std::printf("target: overhead p50 < 10 ms: %s\n",
              Percentile(overhead, .5) < 10 ? "PASS" : "FAIL");
  gw.Stop();
  return 0;
}
