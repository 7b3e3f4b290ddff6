// bench/apply: applies N apps (replicas 0) to a running tidald over gRPC from
// several client threads and reports applies per second, the latency from
// Apply to the controller's observed status (p50/p99, measured through a
// Watch), tidald's idle CPU with every app in place, and its resident memory.
//
//   apply_bench --server 127.0.0.1:7070 --pid PID [--apps 10000] [--threads 8]

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tidal/v1/api.grpc.pb.h"

namespace {

using tidal::v1::Tidal;

double CpuSeconds(int pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(f, line);
  auto rp = line.rfind(')');
  std::vector<std::string> v = absl::StrSplit(line.substr(rp + 2), ' ');
  return (std::stod(v[11]) + std::stod(v[12])) / sysconf(_SC_CLK_TCK);
}

long RssKb(int pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  std::string server = "127.0.0.1:7070";
  int pid = 0, apps = 10000, threads = 8, idle_seconds = 10;
  std::string ns = "bench";
  std::string token;
  CLI::App app{"apply benchmark"};
  app.add_option("--server", server);
  app.add_option("--token", token, "API token (tidald --auth=token)");
  app.add_option("--pid", pid, "tidald's pid (for CPU and memory)")->required();
  app.add_option("--apps", apps);
  app.add_option("--threads", threads);
  app.add_option("--idle-seconds", idle_seconds);
  app.add_option("--namespace", ns);
  CLI11_PARSE(app, argc, argv);

  auto channel =
      grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  auto stub = Tidal::NewStub(channel);
  auto authorize = [&](grpc::ClientContext* ctx) {
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  };

  // Watch for observed status before applying anything.
  std::mutex mu;
  std::unordered_map<std::string, absl::Time> applied_at;
  std::vector<double> observe_ms;
  std::atomic<int> observed{0};
  grpc::ClientContext watch_ctx;
  tidal::v1::WatchRequest wreq;
  wreq.set_namespace_(ns);
  {
    // Only changes from now on: watch from the current revision.
    grpc::ClientContext lctx;
    authorize(&lctx);
    tidal::v1::ListRequest lreq;
    lreq.set_namespace_(ns);
    tidal::v1::ListResponse lresp;
    grpc::Status st = stub->List(&lctx, lreq, &lresp);
    if (!st.ok()) {
      fprintf(stderr, "cannot reach tidald at %s: %s\n", server.c_str(),
              st.error_message().c_str());
      return 2;
    }
    wreq.set_resource_version(lresp.resource_version());
  }
  authorize(&watch_ctx);
  auto reader = stub->Watch(&watch_ctx, wreq);
  std::thread watcher([&] {
    tidal::v1::WatchEvent ev;
    while (reader->Read(&ev)) {
      const auto& a = ev.app();
      if (a.status().observed_generation() != a.metadata().generation() ||
          a.metadata().generation() == 0)
        continue;
      absl::Time now = absl::Now();
      std::lock_guard<std::mutex> l(mu);
      auto it = applied_at.find(a.metadata().name());
      if (it == applied_at.end()) continue;
      observe_ms.push_back(absl::ToDoubleMilliseconds(now - it->second));
      applied_at.erase(it);
      observed++;
    }
  });

  std::atomic<int> next{0}, failures{0};
  std::vector<double> apply_ms;
  std::mutex amu;
  absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds(pid);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      std::vector<double> local;
      while (true) {
        int i = next++;
        if (i >= apps) break;
        tidal::v1::ApplyRequest req;
        auto* a = req.add_apps();
        a->set_api_version("tidal.dev/v1");
        a->set_kind("App");
        std::string name = absl::StrCat("app-", i);
        a->mutable_metadata()->set_name(name);
        a->mutable_metadata()->set_namespace_(ns);
        a->mutable_spec()->set_replicas(0);
        a->mutable_spec()->mutable_template_()->add_command("tidal-sample-app");
        tidal::v1::ApplyResponse resp;
        grpc::ClientContext ctx;
        authorize(&ctx);
        absl::Time t0 = absl::Now();
        {
          std::lock_guard<std::mutex> l(mu);
          applied_at[name] = t0;
        }
        grpc::Status st = stub->Apply(&ctx, req, &resp);
        local.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
        if (!st.ok()) {
          failures++;
          if (failures < 5)
            fprintf(stderr, "apply %s: %s\n", name.c_str(),
                    st.error_message().c_str());
        }
      }
      std::lock_guard<std::mutex> l(amu);
      apply_ms.insert(apply_ms.end(), local.begin(), local.end());
    });
  }
  for (auto& w : workers) w.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  const double apply_cpu = CpuSeconds(pid) - cpu_start;
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (observed.load() < apps - failures.load() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  watch_ctx.TryCancel();
  watcher.join();

  // Idle: every app applied and reconciled; nothing changes.
  absl::SleepFor(absl::Seconds(2));
  double cpu0 = CpuSeconds(pid);
  absl::Time i0 = absl::Now();
  absl::SleepFor(absl::Seconds(idle_seconds));
  double idle_pct = 100.0 * (CpuSeconds(pid) - cpu0) /
                    absl::ToDoubleSeconds(absl::Now() - i0);
  long rss = RssKb(pid);

  std::lock_guard<std::mutex> l(mu);
  printf("apps applied:            %d (%d failed) by %d client threads\n", apps,
         failures.load(), threads);
  printf("applies per second:      %.0f   (target >= 2000)\n", apps / secs);
  printf("tidald CPU per 1000 applies: %.3f s\n", 1000 * apply_cpu / apps);
  printf("apply RPC latency:       p50 %.2f ms, p99 %.2f ms\n",
         Pct(apply_ms, 50), Pct(apply_ms, 99));
  printf(
      "apply -> observed:       p50 %.2f ms, p99 %.2f ms over %zu apps   "
      "(target p99 < 50 ms)\n",
      Pct(observe_ms, 50), Pct(observe_ms, 99), observe_ms.size());
  printf(
      "tidald idle CPU:         %.2f%% of one core over %d s   (target < "
      "5%%)\n",
      idle_pct, idle_seconds);
  printf("tidald resident memory:  %.1f MB   (target < 200 MB)\n",
         rss / 1024.0);
  return failures.load() == 0 && static_cast<int>(observe_ms.size()) == apps
             ? 0
             : 1;
}
