// bench/rollout: releases a new revision of an app with N sample-app
// instances in B batches on a running tidald and compares the total release
// time (apply to "fully rolled out") with the sum of the batches' own
// readiness times (first start to last ready of each batch's instances, from
// the runtime's timestamps). The difference is the deployer's overhead:
// noticing readiness, stopping the old instances and starting the next batch.
//
//   rollout_bench --server 127.0.0.1:7070 --sample-app PATH [--instances 100]
//                 [--batches 10] [--startup-delay 300ms]

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tidal/v1/api.grpc.pb.h"

namespace {

using tidal::v1::Tidal;

absl::Time T(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string Yaml(const std::string& app, const std::string& version,
                 int instances, int batches, const std::string& delay) {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: )",
                      app, R"(, namespace: bench}
spec:
  replicas: )",
                      instances, R"(
  template:
    command: [")",
                      "SAMPLE", R"("]
    args: ["--version", ")",
                      version, R"(", "--startup-delay", ")", delay,
                      R"(", "--threads", "1"]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
    terminationGracePeriodSeconds: 5
  rollout:
    batches: )",
                      batches, R"(
    maxSurge: ")",
                      instances / std::max(1, batches), R"("
    maxUnavailable: "0"
    progressDeadline: 5m
)");
}

int64_t ApplyYaml(Tidal::Stub& stub, const std::string& yaml) {
  tidal::v1::ApplyRequest req;
  req.set_yaml(yaml);
  req.set_source("bench.yaml");
  tidal::v1::ApplyResponse resp;
  grpc::ClientContext ctx;
  auto s = stub.Apply(&ctx, req, &resp);
  if (!s.ok() || resp.results_size() != 1) {
    fprintf(stderr, "apply failed: %s\n", s.error_message().c_str());
    exit(1);
  }
  return resp.results(0).app().metadata().generation();
}

// Polls until the release of `generation` is out; returns when it was seen.
absl::Time WaitOut(Tidal::Stub& stub, const std::string& app,
                   int64_t generation, int instances) {
  absl::Time deadline = absl::Now() + absl::Minutes(10);
  while (absl::Now() < deadline) {
    tidal::v1::GetRequest req;
    req.set_namespace_("bench");
    req.set_name(app);
    tidal::v1::App got;
    grpc::ClientContext ctx;
    if (stub.Get(&ctx, req, &got).ok()) {
      const auto& st = got.status();
      bool complete = false;
      for (const auto& c : st.conditions())
        complete |= c.type() == "Progressing" && c.reason() == "Complete";
      if (st.observed_generation() >= generation &&
          st.rollout().phase() == "Succeeded" && complete &&
          st.ready_replicas() >= instances)
        return absl::Now();
      if (st.rollout().phase() == "RolledBack") {
        fprintf(stderr, "release rolled back: %s\n",
                st.rollout().message().c_str());
        exit(1);
      }
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  fprintf(stderr, "timed out\n");
  exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string server = "127.0.0.1:7070", sample, delay = "300ms";
  int instances = 100, batches = 10;
  CLI::App cli{"rollout benchmark"};
  cli.add_option("--server", server);
  cli.add_option("--sample-app", sample)->required();
  cli.add_option("--instances", instances);
  cli.add_option("--batches", batches);
  cli.add_option("--startup-delay", delay);
  CLI11_PARSE(cli, argc, argv);

  auto stub = Tidal::NewStub(
      grpc::CreateChannel(server, grpc::InsecureChannelCredentials()));
  auto yaml = [&](const std::string& v) {
    std::string y = Yaml("release", v, instances, batches, delay);
    y.replace(y.find("SAMPLE"), 6, sample);
    return y;
  };
  absl::Time t = absl::Now();
  int64_t gen = ApplyYaml(*stub, yaml("v1"));
  WaitOut(*stub, "release", gen, instances);
  printf("v1: %d instances ready in %.2fs\n", instances,
         absl::ToDoubleSeconds(absl::Now() - t));

  absl::Time start = absl::Now();
  gen = ApplyYaml(*stub, yaml("v2"));
  absl::Time end = WaitOut(*stub, "release", gen, instances);
  const double total = absl::ToDoubleSeconds(end - start);

  tidal::v1::ListInstancesRequest lreq;
  lreq.set_namespace_("bench");
  lreq.set_app("release");
  tidal::v1::ListInstancesResponse lresp;
  grpc::ClientContext lctx;
  if (!stub->ListInstances(&lctx, lreq, &lresp).ok()) return 1;
  std::vector<tidal::v1::Instance> v2;
  for (const auto& i : lresp.instances())
    if (i.revision() == 2) v2.push_back(i);
  std::sort(v2.begin(), v2.end(), [](const auto& a, const auto& b) {
    return T(a.start_time()) < T(b.start_time());
  });
  // Batches start together: split by start order (the deployer spreads the
  // remainder over the first batches).
  double sum = 0;
  size_t at = 0;
  printf("batch  instances  own readiness (first start -> last ready)\n");
  for (int k = 0; k < batches && at < v2.size(); ++k) {
    size_t n = instances / batches + (k < instances % batches ? 1 : 0);
    absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
    for (size_t i = at; i < at + n && i < v2.size(); ++i) {
      first = std::min(first, T(v2[i].start_time()));
      last = std::max(last, T(v2[i].ready_time()));
    }
    at += n;
    double own = absl::ToDoubleSeconds(last - first);
    sum += own;
    printf("%5d  %9zu  %.3fs\n", k + 1, n, own);
  }
  printf(
      "release of %d instances in %d batches: total %.3fs, sum of batch "
      "readiness %.3fs, overhead %.3fs (%.1f%%; target < 10%%)\n",
      instances, batches, total, sum, total - sum, 100 * (total - sum) / sum);
  return 0;
}
