// The gateway's /metrics text from hand-made app metrics: which series
// exist, their labels, values and order. No sockets, no clock.

#include "gateway/prometheus_text.h"

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gateway/request_metrics.h"
#include "gateway/route_table.h"
#include "gtest/gtest.h"

namespace tidal::gateway {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kMs = 1'000'000;
const int64_t kT0 = int64_t{1'700'000'000} * kSec;

bool HasLine(const std::string& text, const std::string& line) {
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (l == line) return true;
  }
  return false;
}

// Lines that start with `prefix`, in order.
std::vector<std::string> Lines(const std::string& text,
                               const std::string& prefix) {
  std::vector<std::string> out;
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(l, prefix)) out.emplace_back(l);
  }
  return out;
}

// Prometheus conventions (issue 16): every sample's family has one # HELP
// and one # TYPE before it, and all samples of a family carry the same label
// names (no name mixes series with and without `revision`, so sum() never
// counts twice); histogram samples are name_bucket (with le), _sum, _count.
void ExpectHygiene(const std::string& text) {
  std::map<std::string, std::string> type;
  std::map<std::string, int> help;
  std::map<std::string, std::set<std::string>> label_sets;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> w = absl::StrSplit(line, ' ');
    if (w.size() >= 3 && w[0] == "#" && w[1] == "HELP") {
      ++help[w[2]];
      continue;
    }
    if (w.size() >= 4 && w[0] == "#" && w[1] == "TYPE") {
      EXPECT_EQ(type.count(w[2]), 0u) << "two TYPE lines for " << w[2];
      type[w[2]] = w[3];
      continue;
    }
    std::string name(line.substr(0, line.find_first_of("{ ")));
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string base(absl::StripSuffix(name, suffix));
      if (base != name && type[base] == "histogram") family = base;
    }
    ASSERT_EQ(help[family], 1) << line;
    ASSERT_FALSE(type[family].empty()) << line;
    // The label names, `le` of a histogram's buckets aside.
    std::string names;
    size_t open = line.find('{');
    if (open != absl::string_view::npos) {
      absl::string_view body = line.substr(open + 1, line.find('}') - open - 1);
      for (absl::string_view kv : absl::StrSplit(body, ',')) {
        absl::string_view key = kv.substr(0, kv.find('='));
        if (key != "le") absl::StrAppend(&names, key, ",");
      }
    }
    label_sets[family].insert(names);
  }
  for (const auto& [family, sets] : label_sets) {
    EXPECT_EQ(sets.size(), 1u) << family << " mixes label sets";
  }
}

class PrometheusTextTest : public ::testing::Test {
 protected:
  std::shared_ptr<AppState> App(const std::string& ns, const std::string& app,
                                std::vector<int64_t> revisions) {
    auto s = std::make_shared<AppState>(ns, app, &config_, kT0);
    Route r;
    r.ns = ns;
    r.app = app;
    for (int64_t rev : revisions) {
      RevisionRoute rr;
      rr.revision = rev;
      rr.endpoints.push_back(
          {ns + "-" + app + "-" + std::to_string(rev), "127.0.0.1", 1, false});
      r.revisions.push_back(rr);
    }
    std::vector<std::shared_ptr<EndpointState>> added;
    s->Update(r, &next_uid_, &added);
    return s;
  }

  AppConfig config_;
  std::atomic<uint64_t> next_uid_{1};
};

TEST_F(PrometheusTextTest, NoAppsStillDescribesEverySeries) {
  GatewayCounters c;
  c.unknown_host_total = 3;
  c.client_closed_total = 4;
  c.connections_refused_total = 5;
  c.accept_errors_total = 6;
  c.connection_slots = 8;
  c.max_connections = 100;
  std::string text = RenderPrometheusText({}, c, kT0);
  for (const char* name :
       {"tidal_gateway_requests_total", "tidal_gateway_app_requests_total",
        "tidal_gateway_revision_in_flight_seconds_total",
        "tidal_gateway_app_in_flight_seconds_total",
        "tidal_gateway_cold_starts_total",
        "tidal_gateway_cold_start_duration_seconds",
        "tidal_gateway_request_duration_seconds", "tidal_gateway_in_flight",
        "tidal_gateway_queue_length", "tidal_gateway_activator_held",
        "tidal_gateway_last_request_timestamp_seconds",
        "tidal_gateway_unknown_host_total", "tidal_gateway_client_closed_total",
        "tidal_gateway_connections_refused_total",
        "tidal_gateway_accept_errors_total", "tidal_gateway_connection_slots",
        "tidal_gateway_max_connections"}) {
    EXPECT_EQ(Lines(text, std::string("# HELP ") + name + " ").size(), 1u)
        << name;
    EXPECT_EQ(Lines(text, std::string("# TYPE ") + name + " ").size(), 1u)
        << name;
  }
  EXPECT_TRUE(HasLine(text, "# TYPE tidal_gateway_requests_total counter"));
  EXPECT_TRUE(
      HasLine(text, "# TYPE tidal_gateway_request_duration_seconds histogram"));
  EXPECT_TRUE(HasLine(text, "# TYPE tidal_gateway_in_flight gauge"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_unknown_host_total 3"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_client_closed_total 4"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_connections_refused_total 5"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_accept_errors_total 6"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_connection_slots 8"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_max_connections 100"));
  // No app: no labelled series.
  EXPECT_TRUE(Lines(text, "tidal_gateway_requests_total{").empty());
  EXPECT_TRUE(text.back() == '\n');
  ExpectHygiene(text);
}

TEST_F(PrometheusTextTest, ResponsesByRevisionAndByApp) {
  auto app = App("default", "hello", {1, 2});
  auto r1 = app->RevisionMetrics(1);
  auto r2 = app->RevisionMetrics(2);
  ASSERT_NE(r1, nullptr);
  ASSERT_NE(r2, nullptr);
  // Revision 1: two 200s and a 502 (an instance that refused); revision 2:
  // one 404. The app: those, plus the gateway's own 503.
  for (int status : {200, 200, 502}) {
    r1->Start(0, kT0);
    r1->Finish(0, kT0, kT0 + 3 * kMs, status);
  }
  r2->Start(0, kT0);
  r2->Finish(0, kT0, kT0 + kMs, 404);
  for (int status : {200, 200, 502, 404, 503}) {
    app->metrics.Start(0, kT0);
    app->metrics.Finish(0, kT0, kT0 + 4 * kMs, status);
  }
  app->metrics.Start(0, kT0);  // one still in flight
  app->last_request_ns.store(kT0 + 1500 * kMs);

  std::string text = RenderPrometheusText({app.get()}, {}, kT0 + kSec);
  const std::string rev1 = R"(namespace="default",app="hello",revision="1")";
  const std::string rev2 = R"(namespace="default",app="hello",revision="2")";
  const std::string labels = R"(namespace="default",app="hello")";
  // Classes with no response are left out, but 2xx (always there).
  EXPECT_EQ(
      Lines(text, "tidal_gateway_requests_total{"),
      (std::vector<std::string>{
          "tidal_gateway_requests_total{" + rev1 + R"(,code_class="2xx"} 2)",
          "tidal_gateway_requests_total{" + rev1 + R"(,code_class="5xx"} 1)",
          "tidal_gateway_requests_total{" + rev2 + R"(,code_class="2xx"} 0)",
          "tidal_gateway_requests_total{" + rev2 + R"(,code_class="4xx"} 1)",
      }));
  EXPECT_EQ(Lines(text, "tidal_gateway_app_requests_total{"),
            (std::vector<std::string>{
                "tidal_gateway_app_requests_total{" + labels +
                    R"(,code_class="2xx"} 2)",
                "tidal_gateway_app_requests_total{" + labels +
                    R"(,code_class="4xx"} 1)",
                "tidal_gateway_app_requests_total{" + labels +
                    R"(,code_class="5xx"} 2)",
            }));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_in_flight{" + labels + "} 1"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_queue_length{" + labels + "} 0"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_activator_held{" + labels + "} 0"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_last_request_timestamp_seconds{" +
                                labels + "} 1700000001.500"));
  // In-flight integrals (request-seconds; they never run backwards, so the
  // requests above, all started at kT0, count from where the integral
  // stood): revision 1 had one request in flight for 3 ms, revision 2 for
  // 1 ms; the app one for 4 ms, then the one still in flight until the
  // reading at kT0 + 1 s.
  EXPECT_EQ(Lines(text, "tidal_gateway_revision_in_flight_seconds_total{"),
            (std::vector<std::string>{
                "tidal_gateway_revision_in_flight_seconds_total{" + rev1 +
                    "} 0.003000",
                "tidal_gateway_revision_in_flight_seconds_total{" + rev2 +
                    "} 0.001000",
            }));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_app_in_flight_seconds_total{" +
                                labels + "} 1.000000"));
  EXPECT_TRUE(
      HasLine(text, "tidal_gateway_cold_starts_total{" + labels + "} 0"));
  ExpectHygiene(text);
}

TEST_F(PrometheusTextTest, LatencyHistogramIsCumulative) {
  auto app = App("default", "hello", {1});
  auto m = app->RevisionMetrics(1);
  // 1 ms, 1 ms, 50 ms, 200 s (past the last finite bucket).
  for (int64_t latency : {kMs, kMs, 50 * kMs, 200 * kSec}) {
    m->Start(0, kT0);
    m->Finish(0, kT0, kT0 + latency, 200);
  }
  std::string text = RenderPrometheusText({app.get()}, {}, kT0 + 300 * kSec);
  const std::string prefix =
      R"(tidal_gateway_request_duration_seconds_bucket{namespace="default",app="hello",revision="1",le=")";
  auto buckets = Lines(text, prefix);
  ASSERT_GE(buckets.size(), 3u);
  // Every doubling up to ~105 s, then +Inf; counts never decrease.
  EXPECT_EQ(buckets.front(),
            absl::StrCat(prefix, BucketBoundSeconds(0), "\"} 0"));
  EXPECT_EQ(
      buckets[buckets.size() - 2],
      absl::StrCat(prefix, BucketBoundSeconds(kFiniteBuckets - 1), "\"} 3"));
  EXPECT_EQ(buckets.size(), kFiniteBuckets / 4 + 2u);
  EXPECT_EQ(buckets.back(), prefix + "+Inf\"} 4");
  uint64_t last = 0;
  for (const std::string& b : buckets) {
    uint64_t v = std::stoull(b.substr(b.rfind(' ') + 1));
    EXPECT_GE(v, last) << b;
    last = v;
  }
  EXPECT_TRUE(HasLine(
      text,
      R"(tidal_gateway_request_duration_seconds_count{namespace="default",app="hello",revision="1"} 4)"));
  auto sum = Lines(
      text,
      R"(tidal_gateway_request_duration_seconds_sum{namespace="default",app="hello",revision="1"} )");
  ASSERT_EQ(sum.size(), 1u);
  EXPECT_NEAR(std::stod(sum[0].substr(sum[0].rfind(' ') + 1)), 200.052, 1e-6);
}

TEST_F(PrometheusTextTest, AppsInNamespaceThenNameOrder) {
  auto b = App("prod", "api", {1});
  auto a = App("default", "web", {1});
  auto c = App("default", "api", {1});
  a->last_request_ns.store(0);  // never: no timestamp series
  std::string text = RenderPrometheusText({b.get(), a.get(), c.get()}, {}, kT0);
  EXPECT_EQ(Lines(text, "tidal_gateway_in_flight{"),
            (std::vector<std::string>{
                R"(tidal_gateway_in_flight{namespace="default",app="api"} 0)",
                R"(tidal_gateway_in_flight{namespace="default",app="web"} 0)",
                R"(tidal_gateway_in_flight{namespace="prod",app="api"} 0)",
            }));
  EXPECT_TRUE(
      Lines(text, "tidal_gateway_last_request_timestamp_seconds{").empty());
}

// A request held while the app has no ready instance (the activator) and
// served once one is: a cold start, its wait in the histogram; a second
// request held in the same episode adds a wait but no cold start; a new
// episode after the queue emptied is a second one.
class Held : public Waiter {
 public:
  void Dispatch(std::shared_ptr<EndpointState> lease) override {
    this->lease = std::move(lease);
  }
  std::shared_ptr<EndpointState> lease;
};

TEST_F(PrometheusTextTest, ColdStartsAndTheirWaits) {
  auto app = App("default", "hello", {});
  uint64_t rng = 1;
  std::shared_ptr<EndpointState> lease;
  auto hold = [&] {
    auto w = std::make_shared<Held>();
    EXPECT_EQ(app->AcquireOrWait(*app->route(), w, {}, &rng, kT0, &lease),
              AppState::Outcome::kQueued);
    return w;
  };
  auto first = hold();
  auto second = hold();
  EXPECT_EQ(app->cold_starts().total, 0u);
  std::vector<std::shared_ptr<EndpointState>> added;
  Route r;
  r.ns = "default";
  r.app = "hello";
  RevisionRoute rr;
  rr.revision = 1;
  rr.endpoints.push_back({"hello-1", "127.0.0.1", 1, false});
  r.revisions.push_back(rr);
  app->Update(r, &next_uid_, &added);
  ASSERT_NE(first->lease, nullptr);
  ASSERT_NE(second->lease, nullptr);
  ColdStarts cs = app->cold_starts();
  EXPECT_EQ(cs.total, 1u);
  uint64_t waits = 0;
  for (uint64_t b : cs.wait_buckets) waits += b;
  EXPECT_EQ(waits, 2u);
  // Served with instances ready: no cold start.
  app->Release(first->lease);
  app->Release(second->lease);
  auto direct = std::make_shared<Held>();
  EXPECT_EQ(app->AcquireOrWait(*app->route(), direct, {}, &rng, kT0, &lease),
            AppState::Outcome::kLeased);
  app->Release(lease);
  // Back to zero, a held request, then an instance: the second.
  Route zero = r;
  zero.revisions = {RevisionRoute{}};
  app->Update(zero, &next_uid_, &added);
  auto third = hold();
  app->Update(r, &next_uid_, &added);
  ASSERT_NE(third->lease, nullptr);
  EXPECT_EQ(app->cold_starts().total, 2u);
  std::string text = RenderPrometheusText({app.get()}, {}, kT0);
  const std::string labels = R"(namespace="default",app="hello")";
  EXPECT_TRUE(
      HasLine(text, "tidal_gateway_cold_starts_total{" + labels + "} 2"));
  EXPECT_TRUE(HasLine(text, "tidal_gateway_cold_start_duration_seconds_count{" +
                                labels + "} 3"));
  EXPECT_TRUE(
      HasLine(text, "tidal_gateway_cold_start_duration_seconds_bucket{" +
                        labels + ",le=\"+Inf\"} 3"));
  ExpectHygiene(text);
}

}  // namespace
}  // namespace tidal::gateway
