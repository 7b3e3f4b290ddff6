// Table tests of the rollout's gates: each row is the evidence a gate sees
// and the verdict (kind, reason, message) it must return.

#include "deployer/gates.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/proto_time.h"
#include "runtime/runtime.h"

namespace tidal::deployer {
namespace {

using tidal::v1::Instance;
using Kind = Verdict::Kind;

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

std::string KindName(Kind k) {
  switch (k) {
    case Kind::kPass:
      return "pass";
    case Kind::kFail:
      return "fail";
    case Kind::kInconclusive:
      return "inconclusive";
  }
  return "?";
}

// Compares a verdict with a row's wants; `message` "" skips the message.
void ExpectVerdict(const Verdict& got, Kind kind, const std::string& reason,
                   const std::string& message) {
  EXPECT_EQ(KindName(got.kind), KindName(kind));
  EXPECT_EQ(got.reason, reason);
  if (!message.empty()) {
    EXPECT_EQ(got.message, message);
  }
}

// --- Health gate ---

// An instance as the health gate sees it.
struct Inst {
  std::string id;
  std::string phase = "Running";
  bool ready = true;
  int restarts = 0;
  // Start of the current run, relative to now; nullopt: unset.
  std::optional<absl::Duration> started_ago = absl::Minutes(1);
  bool was_ready = true;  // has a ready_time
  std::string reason, message;
};

Instance Make(const Inst& i) {
  Instance out;
  out.set_id(i.id);
  out.set_phase(i.phase);
  out.set_ready(i.ready);
  out.set_restarts(i.restarts);
  if (i.started_ago)
    *out.mutable_start_time() = ToProtoTime(kNow - *i.started_ago);
  if (i.was_ready)
    *out.mutable_ready_time() = ToProtoTime(kNow - absl::Seconds(30));
  out.set_reason(i.reason);
  out.set_message(i.message);
  return out;
}

Inst Crashed(const std::string& id, int restarts, bool was_ready = false) {
  Inst i{id, "CrashLoopBackOff", false, restarts};
  i.was_ready = was_ready;
  i.message = "exit status 1";
  return i;
}

Inst Stuck(const std::string& id, const std::string& reason) {
  Inst i{id, "Running", false};
  i.was_ready = false;
  i.reason = reason;
  i.message = "probe says 503";
  return i;
}

struct HealthRow {
  std::string name;
  std::vector<Inst> instances;
  Kind want = Kind::kPass;
  std::string want_reason;
  std::string want_message;  // "" skips
};

void PrintTo(const HealthRow& r, std::ostream* os) { *os << r.name; }

class HealthGateTest : public ::testing::TestWithParam<HealthRow> {};

TEST_P(HealthGateTest, Row) {
  const HealthRow& row = GetParam();
  HealthGate gate(kNow);
  for (const auto& i : row.instances) gate.Add(Make(i));
  ExpectVerdict(gate.Check(7), row.want, row.want_reason, row.want_message);
}

std::vector<HealthRow> HealthRows() {
  Inst ok1{"a"}, ok2{"b"}, ok3{"c"};
  Inst long_ago = Crashed("old", 3);
  long_ago.started_ago = absl::Minutes(11);
  Inst failed{"f", "Failed", false, 5};
  failed.message = "gave up";
  Inst unknown_start = Crashed("u", 1);
  unknown_start.started_ago = std::nullopt;
  return {
      {"NoInstancesPass", {}},
      {"AllRunningPass", {ok1, ok2, ok3}},
      {"OneStartupCrashAmongSeveralIsLeftToTheRuntime",
       {ok1, ok2, Crashed("x", 0)}},
      {"OnlyInstanceCrashedAtStartupFails",
       {Crashed("x", 0)},
       Kind::kFail,
       "CrashLoop",
       "revision 7 does not start: instance x is CrashLoopBackOff after 0 "
       "restart(s): exit status 1"},
      {"TwoCrashedFail",
       {ok1, Crashed("x", 0), Crashed("y", 0)},
       Kind::kFail,
       "CrashLoop"},
      {"SecondCrashWithinTheWindowFailsAlone",
       {ok1, ok2, Crashed("x", 1)},
       Kind::kFail,
       "CrashLoop",
       "revision 7 does not start: instance x is CrashLoopBackOff after 1 "
       "restart(s): exit status 1"},
      {"CrashOfARunStartedLongAgoIsLeftToTheRuntime", {long_ago}},
      {"CrashWithoutAStartTimeCountsAsRecent",
       {ok1, unknown_start},
       Kind::kFail,
       "CrashLoop"},
      {"OneCrashAfterBeingReadyIsLeftToTheRuntime",
       {Crashed("x", 0, /*was_ready=*/true)}},
      {"FailedInstanceFails",
       {failed},
       Kind::kFail,
       "CrashLoop",
       "revision 7 does not start: instance f is Failed after 5 restart(s): "
       "gave up"},
      {"OnlyInstanceNeverReadyFails",
       {Stuck("s", kReasonReadinessProbeFailed)},
       Kind::kFail,
       "NeverReady",
       "revision 7 never gets ready: instance s (ReadinessProbeFailed): probe "
       "says 503"},
      {"OneNeverReadyAmongSeveralPasses",
       {ok1, Stuck("s", kReasonStartupTimeout)}},
      {"TwoNeverReadyFail",
       {ok1, Stuck("s", kReasonStartupTimeout),
        Stuck("t", kReasonStartupTimeout)},
       Kind::kFail,
       "NeverReady",
       "revision 7 never gets ready: instance s (StartupTimeout): probe says "
       "503"},
      {"ACrashIsNamedBeforeANeverReadyInstance",
       {Stuck("s", kReasonStartupTimeout), Crashed("x", 0)},
       Kind::kFail,
       "CrashLoop",
       "revision 7 does not start: instance x is CrashLoopBackOff after 0 "
       "restart(s): exit status 1"},
      {"TheLoopingInstanceIsNamedFirst",
       {Crashed("x", 0), Crashed("loop", 1), Crashed("y", 0)},
       Kind::kFail,
       "CrashLoop",
       "revision 7 does not start: instance loop is CrashLoopBackOff after 1 "
       "restart(s): exit status 1"},
      {"ThenTheMostRestartedOne",
       {Crashed("x", 1), Crashed("most", 4), Crashed("y", 2)},
       Kind::kFail,
       "CrashLoop",
       "revision 7 does not start: instance most is CrashLoopBackOff after 4 "
       "restart(s): exit status 1"},
      {"AReadyReasonDoesNotCount", {[] {
         Inst i = Stuck("s", kReasonReadinessProbeFailed);
         i.ready = true;
         return i;
       }()}},
  };
}

INSTANTIATE_TEST_SUITE_P(Rows, HealthGateTest,
                         ::testing::ValuesIn(HealthRows()),
                         [](const auto& info) { return info.param.name; });

// --- Error-rate and latency gates, one analysis window ---

struct Window {
  int64_t requests = 0;
  int64_t errors = 0;
  double p99 = 0;
};

struct AnalysisRow {
  std::string name;
  // Analysis config: min requests, max error rate (nullopt: unset), max p99.
  int64_t min_requests = 0;
  std::optional<double> max_error_rate;
  int64_t max_p99_ms = 0;
  Window window;
  // Wanted verdicts of each gate and of the whole window.
  Kind want_error_rate = Kind::kPass;
  Kind want_latency = Kind::kPass;
  Kind want_window = Kind::kPass;
  std::string want_window_reason;
  std::string want_window_message;  // "" skips
};

void PrintTo(const AnalysisRow& r, std::ostream* os) { *os << r.name; }

class AnalysisGatesTest : public ::testing::TestWithParam<AnalysisRow> {};

TEST_P(AnalysisGatesTest, Row) {
  const AnalysisRow& row = GetParam();
  tidal::v1::Analysis an;
  an.set_min_requests(row.min_requests);
  if (row.max_error_rate) an.set_max_error_rate(*row.max_error_rate);
  an.set_max_p99_latency_ms(row.max_p99_ms);
  RequestStats s;
  s.requests = row.window.requests;
  s.responses_5xx = row.window.errors;
  s.responses_2xx = row.window.requests - row.window.errors;
  s.p99_ms = row.window.p99;

  const Verdict er = ErrorRateGate(an, s);
  EXPECT_EQ(KindName(er.kind), KindName(row.want_error_rate)) << "error rate";
  if (er.failed()) {
    EXPECT_EQ(er.reason, "ErrorRate");
  }
  const Verdict lat = LatencyGate(an, s);
  EXPECT_EQ(KindName(lat.kind), KindName(row.want_latency)) << "latency";
  if (lat.failed()) {
    EXPECT_EQ(lat.reason, "Latency");
  }

  const WindowAnalysis w = AnalyzeWindow(an, s, absl::Seconds(30));
  ExpectVerdict(w.verdict, row.want_window, row.want_window_reason,
                row.want_window_message);
}

std::vector<AnalysisRow> AnalysisRows() {
  std::vector<AnalysisRow> rows;
  auto row = [&](AnalysisRow r) { rows.push_back(std::move(r)); };
  row({"NoTrafficIsInconclusive",
       0,
       0.05,
       0,
       {0, 0, 0},
       Kind::kPass,
       Kind::kPass,
       Kind::kInconclusive,
       "",
       "inconclusive: fewer than 1 requests"});
  row({"BelowMinRequestsIsInconclusiveEvenWhenFailing",
       20,
       0.05,
       100,
       {10, 10, 900},
       Kind::kFail,
       Kind::kFail,
       Kind::kInconclusive,
       "",
       "inconclusive: fewer than 20 requests"});
  row({"UnderBothLimitsPasses", 10, 0.05, 500, {100, 2, 120}});
  row({"AtTheErrorLimitPasses", 10, 0.05, 0, {100, 5, 0}});
  row({"OverTheErrorLimitFails",
       10,
       0.05,
       0,
       {100, 12, 0},
       Kind::kFail,
       Kind::kPass,
       Kind::kFail,
       "AnalysisFailed",
       "5xx rate 12.0% > 5.0%"});
  row({"OverTheLatencyLimitFails",
       10,
       std::nullopt,
       500,
       {100, 50, 900},
       Kind::kPass,
       Kind::kFail,
       Kind::kFail,
       "AnalysisFailed",
       "p99 900ms > 500ms"});
  row({"BothOverAreBothNamed",
       1,
       0.01,
       200,
       {50, 25, 300},
       Kind::kFail,
       Kind::kFail,
       Kind::kFail,
       "AnalysisFailed",
       "5xx rate 50.0% > 1.0%, p99 300ms > 200ms"});
  row({"UnsetLimitsNeverFail", 1, std::nullopt, 0, {100, 100, 99999}});
  row({"ZeroErrorRateLimitFailsOnAnyError",
       1,
       0.0,
       0,
       {1000, 1, 0},
       Kind::kFail,
       Kind::kPass,
       Kind::kFail,
       "AnalysisFailed",
       "5xx rate 0.1% > 0.0%"});
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Rows, AnalysisGatesTest,
                         ::testing::ValuesIn(AnalysisRows()),
                         [](const auto& info) { return info.param.name; });

TEST(AnalysisGatesTest, FiguresDescribeTheWindow) {
  tidal::v1::Analysis an;
  an.set_max_error_rate(0.05);
  RequestStats s;
  s.requests = 40;
  s.responses_5xx = 1;
  s.p99_ms = 120.4;
  EXPECT_EQ(AnalyzeWindow(an, s, absl::Seconds(30)).figures,
            "requests=40 5xx=2.5% p99=120ms over 30s");
}

TEST(AnalysisGatesTest, ConfiguredWhenAnyLimitIsSet) {
  tidal::v1::Analysis an;
  EXPECT_FALSE(AnalysisConfigured(an));
  an.set_interval_ms(1000);  // an interval alone analyses nothing
  EXPECT_FALSE(AnalysisConfigured(an));
  for (int i = 0; i < 3; ++i) {
    tidal::v1::Analysis a;
    if (i == 0) a.set_min_requests(5);
    if (i == 1) a.set_max_error_rate(0);
    if (i == 2) a.set_max_p99_latency_ms(100);
    EXPECT_TRUE(AnalysisConfigured(a)) << i;
  }
}

// --- Webhook gate ---

// Answers per hook URL; records the calls.
class ScriptedSender : public WebhookSender {
 public:
  absl::Status Call(const tidal::v1::Webhook& hook,
                    const std::string& payload) override {
    calls.push_back(hook.url());
    auto it = answers.find(hook.url());
    return it == answers.end() ? absl::OkStatus() : it->second;
  }
  void Notify(const tidal::v1::Webhook&, const std::string&) override {
    ++notified;
  }
  std::map<std::string, absl::Status> answers;
  std::vector<std::string> calls;
  int notified = 0;
};

struct Hook {
  std::string type, url;
};

struct WebhookRow {
  std::string name;
  std::vector<Hook> hooks;
  std::map<std::string, absl::Status> answers;  // by url
  bool no_sender = false;
  std::string type = "pre-rollout";
  Kind want = Kind::kPass;
  std::string want_message;
  std::vector<std::string> want_calls;
};

void PrintTo(const WebhookRow& r, std::ostream* os) { *os << r.name; }

class WebhookGateTest : public ::testing::TestWithParam<WebhookRow> {};

TEST_P(WebhookGateTest, Row) {
  const WebhookRow& row = GetParam();
  google::protobuf::RepeatedPtrField<tidal::v1::Webhook> hooks;
  for (const auto& h : row.hooks) {
    auto* w = hooks.Add();
    w->set_type(h.type);
    w->set_url(h.url);
  }
  ScriptedSender sender;
  sender.answers = row.answers;
  const Verdict v = WebhookGate(row.no_sender ? nullptr : &sender, hooks,
                                row.type, "PreRolloutWebhookFailed", "{}");
  ExpectVerdict(v, row.want,
                row.want == Kind::kFail ? "PreRolloutWebhookFailed" : "",
                row.want_message);
  EXPECT_EQ(sender.calls, row.want_calls);
  EXPECT_EQ(sender.notified, 0);  // a gate calls, it never notifies
}

std::vector<WebhookRow> WebhookRows() {
  const Hook pre1{"pre-rollout", "http://a/1"};
  const Hook pre2{"pre-rollout", "http://a/2"};
  const Hook confirm{"confirm-promotion", "http://a/c"};
  const Hook post{"post-rollout", "http://a/p"};
  return {
      {"NoHooksPass", {}, {}},
      {"OnlyHooksOfTheTypeAreCalled",
       {post, pre1, confirm},
       {},
       false,
       "pre-rollout",
       Kind::kPass,
       "",
       {"http://a/1"}},
      {"AllAcceptInOrder",
       {pre1, pre2},
       {},
       false,
       "pre-rollout",
       Kind::kPass,
       "",
       {"http://a/1", "http://a/2"}},
      {"FirstRefusalFailsAndStops",
       {pre1, pre2},
       {{"http://a/1", absl::UnavailableError("answered 503")}},
       false,
       "pre-rollout",
       Kind::kFail,
       "answered 503",
       {"http://a/1"}},
      {"ALaterRefusalFails",
       {pre1, pre2},
       {{"http://a/2", absl::DeadlineExceededError("timed out")}},
       false,
       "pre-rollout",
       Kind::kFail,
       "timed out",
       {"http://a/1", "http://a/2"}},
      {"ARefusingHookOfAnotherTypeIsNotCalled",
       {confirm, pre1},
       {{"http://a/c", absl::UnavailableError("no")}},
       false,
       "pre-rollout",
       Kind::kPass,
       "",
       {"http://a/1"}},
      {"NoSenderPasses",
       {pre1},
       {{"http://a/1", absl::UnavailableError("no")}},
       true,
       "pre-rollout",
       Kind::kPass,
       "",
       {}},
  };
}

INSTANTIATE_TEST_SUITE_P(Rows, WebhookGateTest,
                         ::testing::ValuesIn(WebhookRows()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace tidal::deployer
