#include "api/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/message_differencer.h"
#include "invalid_specs.h"
#include "tidal/v1/api.pb.h"
#include "tidal/v1/auth.pb.h"
#include "tidal/v1/traffic.pb.h"

namespace tidal::spec {
namespace {

using google::protobuf::util::MessageDifferencer;
using tidal::v1::App;

using testing::InvalidRow;
using testing::InvalidRows;
using testing::Spec;

// The source tree: from the environment when set, else from this file's
// path (tests/api/spec_test.cc).
std::filesystem::path SourceDir() {
  const char* src = std::getenv("TIDAL_SOURCE_DIR");
  if (src != nullptr && *src != '\0') return src;
  return std::filesystem::path(__FILE__)
      .parent_path()
      .parent_path()
      .parent_path();
}

std::string AllErrors(const ParseResult& r) {
  std::vector<std::string> lines;
  for (const auto& e : r.errors) lines.push_back(e.ToString());
  return absl::StrJoin(lines, "\n");
}

TEST(ParseAppsTest, InvalidSpecsTable) {
  auto rows = InvalidRows();
  ASSERT_GE(rows.size(), 40u);
  for (const InvalidRow& row : rows) {
    SCOPED_TRACE(row.name);
    ParseResult r =
        ParseApps(row.yaml, "app.yaml", "default", DefaultServerOptions());
    ASSERT_FALSE(r.ok()) << row.yaml;
    EXPECT_TRUE(r.apps.empty());
    EXPECT_FALSE(r.ToStatus().ok());
    const SpecError* match = nullptr;
    for (const auto& e : r.errors) {
      if (e.field == row.field && e.message == row.message) match = &e;
    }
    ASSERT_NE(match, nullptr)
        << "want " << row.field << ": " << row.message << "\ngot:\n"
        << AllErrors(r);
    EXPECT_EQ(match->source, "app.yaml");
    EXPECT_EQ(match->line, row.line) << AllErrors(r);
    if (row.column) {
      EXPECT_EQ(match->column, row.column) << AllErrors(r);
    }
  }
}

// kubectl's List, as `tidalctl get apps -o yaml|json` prints it: each item
// is a document, its errors at its own lines.
TEST(ParseAppsTest, AListsItemsAreDocuments) {
  const std::string list = R"(apiVersion: v1
kind: List
items:
- apiVersion: tidal.dev/v1
  kind: App
  metadata: {name: web}
  spec:
    replicas: 2
    template: {command: [web]}
- apiVersion: tidal.dev/v1
  kind: App
  metadata: {name: api, namespace: team-a}
  spec:
    template: {command: [api]}
)";
  ParseResult r = ParseApps(list, "apps.yaml");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_EQ(r.apps.size(), 2u);
  EXPECT_EQ(r.apps[0].app.metadata().name(), "web");
  EXPECT_EQ(r.apps[0].app.spec().replicas(), 2);
  EXPECT_EQ(r.apps[1].app.metadata().namespace_(), "team-a");
  EXPECT_EQ(r.apps[1].line, 10);

  std::string bad = list;
  bad.replace(bad.find("replicas: 2"), 11, "replicas: x");
  r = ParseApps(bad, "apps.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].ToString(),
            "apps.yaml:8:15: spec.replicas: must be an integer, got \"x\"");
  EXPECT_TRUE(r.apps.empty());
  r = ParseApps("apiVersion: v1\nkind: List\nitems: {}\n", "l.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].field, "items");
}

TEST(ParseAppsTest, ErrorToStringNamesFileLineColumnAndField) {
  ParseResult r = ParseApps(
      Spec("  template: {command: [x]}\n  scaling:\n    minReplicas: 5\n"
           "    maxReplicas: 3\n"),
      "hello.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].ToString(),
            "hello.yaml:8:18: spec.scaling.minReplicas: must be <= maxReplicas "
            "(5 > 3)");
  EXPECT_EQ(r.ToStatus().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.ToStatus().message(), r.errors[0].ToString());
}

// Found by spec_fuzz: bytes that are not UTF-8 inside a flow sequence were
// accepted, and the app's YAML (get -o yaml) then did not parse back.
TEST(ParseAppsTest, TextThatIsNotUtf8IsRefusedWhereItStarts) {
  const std::string good =
      Spec("  template: {command: [x], args: [\"caf\xc3\xa9\"]}\n");
  ParseResult ok = ParseApps(good, "ok.yaml");
  ASSERT_TRUE(ok.ok()) << AllErrors(ok);
  EXPECT_EQ(ok.apps[0].app.spec().template_().args(0), "caf\xc3\xa9");
  for (const std::string& bad :
       {std::string("\xff\xff"), std::string("\xc0\xaf"),  // overlong '/'
        std::string("\xed\xa0\x80"),                       // a surrogate
        std::string("\xf4\x90\x80\x80"),                   // past U+10FFFF
        std::string("\xe2\x82")}) {                        // cut short
    const std::string yaml =
        Spec("  template:\n    command: [x]\n    args: [\"--version\", v1," +
             bad + " \"--latency\"]\n");
    ParseResult r = ParseApps(yaml, "bad.yaml");
    ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
    EXPECT_TRUE(r.apps.empty());
    const size_t at = yaml.find(bad);
    const size_t nl = yaml.rfind('\n', at);
    EXPECT_EQ(r.errors[0].line,
              1 + std::count(yaml.begin(), yaml.begin() + at, '\n'));
    EXPECT_EQ(r.errors[0].column, static_cast<int>(at - nl));
    EXPECT_TRUE(absl::StrContains(r.errors[0].message, "not valid UTF-8"))
        << r.errors[0].ToString();
  }
}

// Found by spec_fuzz: "v?" was written plain inside a flow list, which
// yaml-cpp then refused to read back.
// An App document with `extra` lines under spec (after template.command).
std::string AppWith(const std::string& extra) {
  return "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: a\n"
         "spec:\n  template:\n    command: [x]\n" +
         extra;
}

TEST(ParseAppsTest, InputBeyondItsLimitsIsRefusedBeforeLoading) {
  ValidationOptions opts;
  opts.input.max_documents = 3;
  opts.input.max_document_bytes = 4096;
  opts.input.max_errors = 5;
  // Documents.
  // (Empty documents do not count.)
  ParseResult r = ParseApps("---\n---\n" + AppWith("") + "---\n" + AppWith("") +
                                "---\n" + AppWith("") + "---\n" + AppWith(""),
                            "docs.yaml", "default", opts);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].ToString(),
            "docs.yaml:26: more than 3 documents in one apply (tidald "
            "--api-max-documents); apply them in parts");
  // A document's bytes.
  r = ParseApps(AppWith("  x: \"" + std::string(5000, 'a') + "\"\n"),
                "big.yaml", "default", opts);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_TRUE(absl::StrContains(
      r.errors[0].ToString(),
      "big.yaml:1: the document is 5098 bytes, more than the 4096 a spec may "
      "have (tidald --api-max-spec-size)"))
      << AllErrors(r);
  // Errors: the first five, then a count.
  std::string unknown;
  for (int i = 0; i < 12; ++i) absl::StrAppend(&unknown, "  u", i, ": 1\n");
  r = ParseApps(AppWith(unknown), "many.yaml", "default", opts);
  EXPECT_EQ(r.errors.size(), 5u);
  EXPECT_EQ(r.more_errors, 7);
  EXPECT_TRUE(
      absl::EndsWith(r.ToStatus().message(),
                     "\n... and 7 more errors (only the first 5 are listed)"))
      << r.ToStatus();
  EXPECT_EQ(r.errors[0].ToString().substr(0, 20), "many.yaml:8:3: spec.");
}

TEST(ParseAppsTest, AliasBombsDeepNestingAndCyclesAreRefusedUnexpanded) {
  const std::string head = "apiVersion: tidal.dev/v1\nkind: App\n";
  // 10 levels of 10 aliases: 10^10 nodes expanded, 110 written.
  std::string bomb = head + "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 10; ++i) {
    std::vector<std::string> refs(10, absl::StrCat("*a", i - 1));
    absl::StrAppend(&bomb, "a", i, ": &a", i, " [", absl::StrJoin(refs, ", "),
                    "]\n");
  }
  ParseResult r = ParseApps(bomb, "bomb.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].ToString(),
            "bomb.yaml:7:10: refused before loading: more than 20000 YAML "
            "nodes in one document (keys, values and list items; an alias "
            "counts as what it stands for)");
  // Aliases of small nodes are fine, up to 100 of them.
  std::string aliases = AppWith("    args: [&v x");
  for (int i = 0; i < 99; ++i) aliases += ", *v";
  r = ParseApps(aliases + "]\n", "ok.yaml");
  EXPECT_TRUE(r.ok()) << AllErrors(r);
  r = ParseApps(aliases + ", *v, *v]\n", "many.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_TRUE(absl::StrContains(r.errors[0].ToString(),
                                "more than 100 aliases (*name) in one "
                                "document"));
  // Depth.
  r = ParseApps(
      head + "metadata: " + std::string(40, '[') + std::string(40, ']') + "\n",
      "deep.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].ToString(),
            "deep.yaml:3:42: refused before loading: nested deeper than 32 "
            "levels");
  // Documents yaml-cpp would read ahead whole before its first event (a
  // flow collection inside another: 274 MB for a million brackets, 165 MB
  // for the 1.8 MB list below) are measured by libyaml, which stops at the
  // bound passed, whatever precedes them (a quote in a plain scalar).
  r = ParseApps(head + "labels: it's\nmetadata: " + std::string(1000000, '[') +
                    std::string(1000000, ']') + "\n",
                "deeper.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].ToString(),
            "deeper.yaml:4:42: refused before loading: nested deeper than 32 "
            "levels");
  std::string wide = head + "metadata: [[";
  for (int i = 0; i < 600000; ++i) wide += "x, ";
  r = ParseApps(wide + "y]]\n", "wide.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_TRUE(absl::StrContains(r.errors[0].ToString(),
                                "wide.yaml:3:59989: refused before loading: "
                                "more than 20000 YAML nodes"))
      << r.errors[0].ToString();
  // A large document with a syntax error is refused with libyaml's message
  // (yaml-cpp might read it ahead whole); a small one gets yaml-cpp's.
  const std::string bad = head + "metadata: {a: [x}\n";
  r = ParseApps(bad + "# " + std::string(70000, 'p') + "\n", "large.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_TRUE(absl::StartsWith(r.errors[0].ToString(),
                               "large.yaml:3:17: refused before loading: not "
                               "valid YAML: did not find expected ',' or ']'"))
      << r.errors[0].ToString();
  r = ParseApps(bad, "small.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_FALSE(absl::StrContains(r.errors[0].ToString(), "not valid YAML"))
      << r.errors[0].ToString();
  // Brackets in quotes, comments and block scalars are text.
  std::string brackets =
      AppWith("    args: [\"" + std::string(2000, '[') + "\", '" +
              std::string(2000, '{') + "', \"\\\"[\"]  # " +
              std::string(2000, '[') + "\n    env:\n      SCRIPT: |\n" + [] {
                std::string lines;
                for (int i = 0; i < 50; ++i)
                  lines += "        if [ -f x ]; then [\n";
                return lines;
              }());
  r = ParseApps(brackets, "brackets.yaml");
  EXPECT_TRUE(r.ok()) << AllErrors(r);
  // Depth through aliases: each anchor aliases the one before 20 levels
  // down, so the loaded tree nests 5 x 20 levels with none deeper than 21
  // written.
  std::string chain = head;
  for (int i = 0; i < 5; ++i) {
    absl::StrAppend(&chain, "d", i, ": &d", i, " ", std::string(20, '['),
                    i == 0 ? "x" : absl::StrCat("*d", i - 1),
                    std::string(20, ']'), "\n");
  }
  r = ParseApps(chain, "chain.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_TRUE(absl::StrContains(r.errors[0].ToString(),
                                "nested deeper than 32 levels (through an "
                                "alias)"))
      << r.errors[0].ToString();
  // A cycle.
  r = ParseApps(head + "metadata: &m\n  name: c\n  labels: *m\n", "c.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].ToString(),
            "c.yaml:5:11: refused before loading: an alias inside the node it "
            "names (a cycle)");
}

TEST(ParseAppsTest, RawNulBytesAreRefusedWhereTheyAre) {
  ParseResult r =
      ParseApps(AppWith(std::string("    args: [a\0]\n", 15)), "nul.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].ToString(),
            "nul.yaml:8:13: the text holds a NUL byte, which YAML does not "
            "allow");
}

TEST(ParseAppsTest, ArgsWithQuestionMarksRoundTrip) {
  ParseResult r = ParseApps(
      Spec("  template: {command: [x], args: [\"v?\", \"a?b\", \"?\"]}\n"),
      "q.yaml");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ParseResult again = ParseApps(AppToYaml(r.apps[0].app), "again.yaml");
  ASSERT_TRUE(again.ok()) << AllErrors(again) << AppToYaml(r.apps[0].app);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      r.apps[0].app, again.apps[0].app));
}

// Found by spec_fuzz: YAML escapes that yaml-cpp decodes to bytes that are
// not UTF-8 ("\_" is U+00A0, "\N" U+0085, both written as one raw byte).
TEST(ParseAppsTest, EscapesThatDecodeToInvalidUtf8AreRefused) {
  for (const std::string& esc : {std::string("\\_"), std::string("\\N")}) {
    ParseResult r = ParseApps(
        Spec("  template:\n    command: [x]\n    args: [\"a" + esc + "b\"]\n"),
        "esc.yaml");
    ASSERT_EQ(r.errors.size(), 1u) << esc << AllErrors(r);
    EXPECT_TRUE(r.apps.empty());
    EXPECT_EQ(r.errors[0].field, "spec.template.args[0]");
    EXPECT_GT(r.errors[0].line, 0);
    EXPECT_TRUE(absl::StrContains(r.errors[0].message, "not valid UTF-8"))
        << r.errors[0].ToString();
  }
  // Escapes that decode to valid UTF-8 are fine.
  ParseResult ok = ParseApps(
      Spec("  template:\n    command: [x]\n    args: [\"caf\\u00e9\"]\n"),
      "ok.yaml");
  ASSERT_TRUE(ok.ok()) << AllErrors(ok);
  EXPECT_EQ(ok.apps[0].app.spec().template_().args(0), "caf\xc3\xa9");
}

TEST(ParseAppsTest, CollectsEveryErrorOfEveryDocument) {
  std::string yaml =
      Spec("  replicas: -2\n  template:\n    comand: [x]\n") +      // lines 1-8
      "---\n"                                                       // 9
      "apiVersion: tidal.dev/v1\nkind: App\nmetadata: {name: b}\n"  // 10-12
      "spec: {template: {command: [x]}, scaling: {maxReplicas: -1}}\n"  // 13
      "---\n"                                                           // 14
      "key: [unclosed\n";                                               // 15
  ParseResult r = ParseApps(yaml, "multi.yaml");
  EXPECT_TRUE(r.apps.empty());
  std::vector<std::string> got;
  for (const auto& e : r.errors) got.push_back(e.ToString());
  EXPECT_EQ(got, (std::vector<std::string>{
                     "multi.yaml:6:13: spec.replicas: must not be negative, "
                     "got -2",
                     "multi.yaml:7:3: spec.template.command: required: the "
                     "program to run and its fixed arguments, e.g. "
                     "[\"tidal-sample-app\"]",
                     "multi.yaml:8:5: spec.template.comand: unknown field "
                     "(did you mean \"command\"?)",
                     "multi.yaml:13:57: spec.scaling.maxReplicas: must not "
                     "be negative, got -1",
                     "multi.yaml:16:1: invalid YAML: end of sequence flow not "
                     "found",
                 }))
      << AllErrors(r);
}

TEST(ParseAppsTest, OnlySecondDocumentBadReturnsNoApps) {
  std::string yaml = Spec("  template: {command: [x]}\n") +
                     "---\n"
                     "apiVersion: tidal.dev/v1\nkind: App\n"
                     "metadata: {name: other}\nspec:\n"
                     "  template: {command: [x]}\n"
                     "  scaling: {minReplicas: 5, maxReplicas: 3}\n";
  ParseResult r = ParseApps(yaml, "two.yaml");
  EXPECT_TRUE(r.apps.empty());
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].line, 13);
  EXPECT_EQ(r.errors[0].field, "spec.scaling.minReplicas");
}

TEST(ParseAppsTest, SeveralDocumentsWithDefaultsAndEnvOrder) {
  std::string yaml = R"(# two apps
apiVersion: tidal.dev/v1
kind: App
metadata:
  name: a
spec:
  replicas: 2
  template:
    command: [server, --flag]
    env:
      ZED: "1"
      ALPHA: two
      MIDDLE: 3
---
apiVersion: tidal.dev/v1
kind: App
metadata:
  name: b
  namespace: prod
spec:
  template:
    command: [worker]
    env:
    - name: B
      value: "x"
    - name: A
      value: ""
...
---

)";
  ParseResult r = ParseApps(yaml, "ok.yaml", "team");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_EQ(r.apps.size(), 2u);
  const auto& a = r.apps[0].app;
  EXPECT_EQ(r.apps[0].line, 2);
  EXPECT_EQ(r.apps[0].source, "ok.yaml");
  EXPECT_EQ(a.metadata().namespace_(), "team");
  EXPECT_EQ(a.spec().replicas(), 2);
  ASSERT_EQ(a.spec().template_().env_size(), 3);
  EXPECT_EQ(a.spec().template_().env(0).name(), "ZED");
  EXPECT_EQ(a.spec().template_().env(1).name(), "ALPHA");
  EXPECT_EQ(a.spec().template_().env(1).value(), "two");
  EXPECT_EQ(a.spec().template_().env(2).value(), "3");
  EXPECT_FALSE(a.spec().has_scaling());  // defaults are not filled in
  EXPECT_FALSE(a.spec().template_().has_termination_grace_period_seconds());
  const auto& b = r.apps[1].app;
  EXPECT_EQ(r.apps[1].line, 15);
  EXPECT_EQ(b.metadata().namespace_(), "prod");
  ASSERT_EQ(b.spec().template_().env_size(), 2);
  EXPECT_EQ(b.spec().template_().env(0).name(), "B");
  EXPECT_EQ(b.spec().template_().env(1).name(), "A");
}

TEST(ParseAppsTest, SameNameInDifferentNamespacesIsFine) {
  std::string yaml = Spec("  template: {command: [x]}\n") + "---\n" +
                     "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n"
                     "  name: hello\n  namespace: other\nspec:\n"
                     "  template: {command: [x]}\n";
  ParseResult r = ParseApps(yaml, "ns.yaml");
  EXPECT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_EQ(r.apps.size(), 2u);
}

TEST(ParseAppsTest, QuantitiesPercentagesAndPauses) {
  ParseResult r = ParseApps(Spec(R"(  template:
    command: [x]
    resources: {cpu: 500m, memory: 256Mi}
  rollout:
    strategy: canary
    maxSurge: 25%
    maxUnavailable: 0
    pause: manual
    steps:
    - {weight: 10, pause: 5m}
    - {replicas: 3, pause: manual}
    - {weight: 50}
    analysis:
      maxErrorRate: 5%
      maxP99Latency: 250ms
  webhooks:
  - {name: ci, type: confirm-promotion, url: "http://127.0.0.1:9/x", timeout: 10s}
)"),
                            "q.yaml");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  const auto& s = r.apps[0].app.spec();
  EXPECT_EQ(s.template_().resources().cpu_millis(), 500);
  EXPECT_EQ(s.template_().resources().memory_bytes(), 256 << 20);
  EXPECT_EQ(s.rollout().max_surge(), "25%");
  EXPECT_EQ(s.rollout().max_unavailable(), "0");
  EXPECT_TRUE(s.rollout().pause_manual());
  EXPECT_EQ(s.rollout().steps(0).pause_ms(), 300000);
  EXPECT_TRUE(s.rollout().steps(1).pause_manual());
  EXPECT_EQ(s.rollout().steps(1).replicas(), 3);
  EXPECT_DOUBLE_EQ(s.rollout().analysis().max_error_rate(), 0.05);
  EXPECT_EQ(s.rollout().analysis().max_p99_latency_ms(), 250);
  EXPECT_EQ(s.webhooks(0).timeout_ms(), 10000);
}

App FullApp() {
  ParseResult r = ParseApps(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: full
  namespace: prod
  labels: {team: video, tier: web}
  annotations: {tidal.dev/change-cause: "v2: faster", note: "true"}
spec:
  replicas: 4
  template:
    command: [tidal-sample-app]
    args: [--version, v2, "--latency=5ms", "yes", "123"]
    env: {GREETING: "hello: world", EMPTY: "", NUM: "42"}
    workingDir: /srv
    port: 8080
    readinessProbe:
      httpGet: {path: /healthz, port: 8081}
      initialDelaySeconds: 1
      periodSeconds: 2
      timeoutSeconds: 3
      failureThreshold: 4
      successThreshold: 2
    livenessProbe:
      tcpSocket: {}
      periodSeconds: 10
    terminationGracePeriodSeconds: 0
    concurrency: 10
    protocol: grpc
    timeoutSeconds: 600
    responseStartTimeoutSeconds: 30
    idleTimeoutSeconds: 120
    resources: {cpu: 1500m, memory: 1Gi}
    labels: {app.kubernetes.io/name: full}
  scaling:
    minReplicas: 2
    maxReplicas: 20
    metric: concurrency
    algorithm: kpa
    target: 7.5
    targetUtilization: 70
    stableWindow: 1m
    panicWindowPercentage: 10
    panicThreshold: 200
    maxScaleUpRate: 1000
    maxScaleDownRate: 2
    scaleDownDelay: 30s
    scaleToZeroGracePeriod: 30s
    initialScale: 3
    tolerance: 0.1
    tick: 2s
    behavior:
      scaleUp:
        stabilizationWindowSeconds: 0
        selectPolicy: Max
        policies:
        - {type: Percent, value: 100, periodSeconds: 15}
        - {type: Pods, value: 4, periodSeconds: 15}
      scaleDown:
        stabilizationWindowSeconds: 300
    schedules:
    - name: evening
      cron: "0 19 * * *"
      timeZone: Asia/Shanghai
      duration: 4h
      minReplicas: 20
    - {cron: "@daily", duration: 1h30m, maxReplicas: 5}
    predictive: {enabled: true, lookahead: 1.5s}
  rollout:
    strategy: canary
    batches: 5
    batchInterval: 30s
    steps:
    - {weight: 10, pause: 5m}
    - {weight: 50, pause: manual}
    - {replicas: 8}
    maxSurge: 25%
    maxUnavailable: 1
    minReadySeconds: 5
    progressDeadline: 10m
    analysis:
      interval: 30s
      minRequests: 100
      maxErrorRate: 0.05
      maxP99Latency: 500ms
      failureLimit: 2
      consecutiveSuccesses: 3
      inconclusive: pass
    autoRollback: false
    historyLimit: 5
  webhooks:
  - name: gate
    type: pre-rollout
    url: https://ci.example.com/hooks/tidal?x=1
    timeout: 5s
    retries: 3
    secret: s3cr3t
)",
                            "full.yaml");
  EXPECT_TRUE(r.ok()) << AllErrors(r);
  return r.apps.empty() ? App() : r.apps[0].app;
}

void ExpectSameApp(const App& want, const App& got) {
  std::string diff;
  MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(want, got)) << diff;
}

TEST(RoundTripTest, YamlOfFullSpec) {
  App app = FullApp();
  ASSERT_EQ(app.metadata().name(), "full");
  EXPECT_EQ(app.spec().scaling().predictive().lookahead_ms(), 1500);
  EXPECT_EQ(app.spec().rollout().batch_interval_ms(), 30000);
  EXPECT_EQ(app.spec().template_().protocol(), "grpc");
  EXPECT_EQ(app.spec().template_().timeout_seconds(), 600);
  EXPECT_EQ(app.spec().template_().response_start_timeout_seconds(), 30);
  EXPECT_EQ(app.spec().template_().idle_timeout_seconds(), 120);
  std::string yaml = AppToYaml(app);
  ParseResult back = ParseApps(yaml, "out.yaml");
  ASSERT_TRUE(back.ok()) << AllErrors(back) << "\n" << yaml;
  ExpectSameApp(app, back.apps[0].app);
  // Durations, quantities and pauses come back in the form users write.
  EXPECT_NE(yaml.find("stableWindow: 1m\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("duration: 1h30m\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("lookahead: 1.5s\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("pause: manual"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("memory: 1Gi"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("cpu: 1500m"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("maxSurge: \"25%\""), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("maxUnavailable: 1\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("target: 7.5\n"), std::string::npos) << yaml;
}

TEST(RoundTripTest, JsonOfFullSpecWithStatus) {
  App app = FullApp();
  app.mutable_metadata()->set_uid("0b5c-42");
  app.mutable_metadata()->set_generation(3);
  app.mutable_metadata()->set_resource_version(1234567890123);
  app.mutable_metadata()->mutable_creation_timestamp()->set_seconds(1714564800);
  auto* st = app.mutable_status();
  st->set_observed_generation(3);
  st->set_desired_replicas(4);
  st->set_ready_replicas(3);
  auto* c = st->add_conditions();
  c->set_type("Ready");
  c->set_status("False");
  c->set_reason("MinimumReplicasUnavailable");
  c->set_message("3 of 4 ready");
  c->mutable_last_transition_time()->set_seconds(1714564860);
  c->mutable_last_transition_time()->set_nanos(500000000);
  st->mutable_scaling()->set_value(12.25);
  st->mutable_scaling()->add_active_schedules("evening");
  st->mutable_rollout()->set_phase("Progressing");
  // A map of counts (an app rolled back before): integers, not strings.
  (*st->mutable_rollout()->mutable_rollbacks())["CrashLoop"] = 2;
  (*st->mutable_rollout()->mutable_rollbacks())["AnalysisFailed"] = 1;
  st->set_template_hash(TemplateHash(app.spec().template_()));

  std::string json = AppToJson(app);
  EXPECT_NE(json.find("\"AnalysisFailed\": 1"), std::string::npos) << json;
  EXPECT_LT(json.find("\"AnalysisFailed\": 1"), json.find("\"CrashLoop\": 2"))
      << json;
  EXPECT_NE(AppToYaml(app).find("CrashLoop: 2\n"), std::string::npos)
      << AppToYaml(app);
  EXPECT_NE(json.find("\"replicas\": 4"), std::string::npos) << json;
  EXPECT_NE(json.find("\"resourceVersion\": 1234567890123"), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"creationTimestamp\": \"2024-05-01T12:00:00Z\""),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"lastTransitionTime\": \"2024-05-01T12:01:00.5Z\""),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"value\": 12.25"), std::string::npos) << json;
  EXPECT_NE(json.find("\"status\": {"), std::string::npos) << json;
  // JSON is YAML: the same parser reads it back, status and all.
  ParseResult back = ParseApps(json, "out.json");
  ASSERT_TRUE(back.ok()) << AllErrors(back) << "\n" << json;
  ExpectSameApp(app, back.apps[0].app);
  // And so does the YAML form.
  ParseResult back_yaml = ParseApps(AppToYaml(app), "out.yaml");
  ASSERT_TRUE(back_yaml.ok()) << AllErrors(back_yaml);
  ExpectSameApp(app, back_yaml.apps[0].app);
}

TEST(RoundTripTest, TrickyStrings) {
  App app;
  app.set_api_version("tidal.dev/v1");
  app.set_kind("App");
  app.mutable_metadata()->set_name("s");
  app.mutable_metadata()->set_namespace_("default");
  auto* t = app.mutable_spec()->mutable_template_();
  for (const char* s :
       {"true",        "null",     "~",           "1e3",   "0x10",    "-",
        "- a",         "a: b",     "#c",          "",      " lead",   "trail ",
        "multi\nline", "quote\"s", "back\\slash", "tab\t", "ünïcødé", "[x]",
        "{y}",         "*star",    "&amp",        "!bang", "%pct",    "@at",
        "`tick",       "'single'", ">fold",       "|lit",  "?q",      "007",
        ".5",          "1_000",    "yes",         "Off"}) {
    t->add_args(s);
  }
  t->add_command("prog");
  auto* e = t->add_env();
  e->set_name("X");
  e->set_value("123");
  ParseResult back = ParseApps(AppToYaml(app), "s.yaml");
  ASSERT_TRUE(back.ok()) << AllErrors(back) << AppToYaml(app);
  ExpectSameApp(app, back.apps[0].app);
  ParseResult json = ParseApps(AppToJson(app), "s.json");
  ASSERT_TRUE(json.ok()) << AllErrors(json) << AppToJson(app);
  ExpectSameApp(app, json.apps[0].app);
}

TEST(RoundTripTest, EnvWithDuplicateNamesUsesListForm) {
  App app = FullApp();
  auto* t = app.mutable_spec()->mutable_template_();
  t->clear_env();
  auto* a = t->add_env();
  a->set_name("A");
  a->set_value("1");
  auto* b = t->add_env();
  b->set_name("A");
  b->set_value("2");
  std::string yaml = AppToYaml(app);
  EXPECT_NE(yaml.find("- name: A"), std::string::npos) << yaml;
  ParseResult back = ParseApps(yaml, "dup.yaml");
  ASSERT_FALSE(back.ok());  // still invalid, and says why
  EXPECT_EQ(back.errors[0].field, "spec.template.env[1].name");
}

TEST(MessageToJsonTest, IntegersAreNumbersAndTemplatesReadAsTheSpec) {
  tidal::v1::ListRevisionsResponse resp;
  tidal::v1::Revision* r = resp.add_revisions();
  r->set_app("web");
  r->set_number(12);
  r->mutable_created()->set_seconds(1714564800);
  auto* t = r->mutable_template_();
  t->add_command("./server");
  auto* e = t->add_env();
  e->set_name("WORKERS");
  e->set_value("2");
  t->mutable_resources()->set_cpu_millis(500);
  const std::string json = MessageToJson(resp);
  // 64-bit integers as numbers (proto3 JSON would write "12"); the template
  // as a spec writes it; a string that looks like a number stays a string.
  EXPECT_THAT(json, ::testing::HasSubstr("\"number\": 12,")) << json;
  EXPECT_THAT(json, ::testing::HasSubstr("\"cpu\": \"500m\"")) << json;
  EXPECT_THAT(json, ::testing::HasSubstr("\"WORKERS\": \"2\"")) << json;
  EXPECT_THAT(json,
              ::testing::HasSubstr("\"created\": \"2024-05-01T12:00:00Z\""))
      << json;
  const std::string yaml = MessageToYaml(resp);
  EXPECT_THAT(yaml, ::testing::HasSubstr("    number: 12\n")) << yaml;
  EXPECT_THAT(yaml, ::testing::HasSubstr("WORKERS: \"2\"\n")) << yaml;
  tidal::v1::Instance inst;
  inst.set_id("web-1");
  inst.set_pid(4242);
  inst.set_ready(true);
  const std::string compact = MessageToJson(inst, true);
  EXPECT_EQ(compact, "{\"id\":\"web-1\",\"ready\":true,\"pid\":4242}\n");
  EXPECT_EQ(MessageToYaml(tidal::v1::Instance()), "{}\n");
  EXPECT_EQ(MessageToJson(tidal::v1::Instance()), "{}\n");
}

// A response printed whole (`auth list-tokens -o json` with no token, `get
// nodes -o json` on a single node) says what it holds, never `{}`; the
// messages inside keep proto3's omissions.
TEST(MessageToJsonTest, EveryFieldOfAResponse) {
  EXPECT_EQ(MessageToJson(tidal::v1::ListTokensResponse(), false, true),
            "{\n  \"tokens\": []\n}\n");
  EXPECT_EQ(MessageToYaml(tidal::v1::ListTokensResponse(), true),
            "tokens: []\n");
  EXPECT_EQ(MessageToJson(tidal::v1::ListTokensResponse()), "{}\n");
  tidal::v1::GetClusterResponse cluster;
  cluster.add_nodes()->set_name("n0");
  const std::string json = MessageToJson(cluster, true, true);
  EXPECT_THAT(json, ::testing::HasSubstr("\"ha\":false")) << json;
  EXPECT_THAT(json, ::testing::HasSubstr("\"fencingToken\":0")) << json;
  EXPECT_THAT(json, ::testing::HasSubstr("\"nodes\":[{\"name\":\"n0\"}]"))
      << json;
  EXPECT_THAT(json, ::testing::Not(::testing::HasSubstr("leader"))) << json;
}

TEST(MessageToJsonTest, BytesAreBase64AndMapsSortedByKey) {
  tidal::v1::TokenRecord rec;
  rec.set_name("ci");
  rec.add_bindings()->set_namespace_("team-a");
  rec.set_salt(std::string("\x00\xff\x10", 3));
  const std::string yaml = MessageToYaml(rec);
  EXPECT_THAT(yaml, ::testing::HasSubstr("name: ci\n")) << yaml;
  EXPECT_THAT(yaml, ::testing::HasSubstr("bindings:\n  - namespace: team-a\n"))
      << yaml;
  EXPECT_THAT(yaml, ::testing::HasSubstr("salt: AP8Q\n")) << yaml;
  tidal::v1::TrafficTotals h;
  (*h.mutable_latency_buckets())[250] = 7;
  (*h.mutable_latency_buckets())[1000] = 2;
  // Integer keys as strings (as in proto3 JSON), in numeric order.
  EXPECT_EQ(MessageToJson(h, true),
            "{\"latencyBuckets\":{\"250\":7,\"1000\":2}}\n");
}

TEST(ParseAppsTest, MangledInputNeverCrashes) {
  // Every prefix and every single-character deletion of a full spec either
  // parses or reports errors with a line; none crashes or half-applies.
  std::string yaml = AppToYaml(FullApp());
  int failures = 0;
  for (size_t i = 0; i < yaml.size(); i += 3) {
    for (const std::string& input :
         {yaml.substr(0, i), yaml.substr(0, i) + yaml.substr(i + 1),
          yaml.substr(0, i) + "\t: [{" + yaml.substr(i)}) {
      ParseResult r = ParseApps(input, "m.yaml");
      if (r.ok()) {
        EXPECT_EQ(r.apps.size(), 1u);
        continue;
      }
      ++failures;
      EXPECT_TRUE(r.apps.empty());
      for (const auto& e : r.errors) {
        EXPECT_FALSE(e.message.empty());
        if (!input.empty()) {
          EXPECT_GT(e.line, 0) << e.ToString();
        }
      }
    }
  }
  EXPECT_GT(failures, 100);
}

TEST(ParseAppsTest, DeepNestingIsAnErrorNotACrash) {
  std::string deep = Spec("  template:\n    command: ") +
                     std::string(100000, '[') + std::string(100000, ']') + "\n";
  ParseResult r = ParseApps(deep, "deep.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.apps.empty());
}

// The API accepts what the scaler library (src/scaler/config.cc) and
// docs/scaling.md accept: maxReplicas 0 is unbounded (as `tidalctl scale
// --max 0`), algorithm keepalive, a schedule's maxReplicas 0 is no cap; and
// the tick range is 100ms..1m in both.
TEST(ParseAppsTest, ScalingAgreesWithTheScalerLibrary) {
  ParseResult ok = ParseApps(
      Spec("  template: {command: [x]}\n"
           "  scaling:\n"
           "    algorithm: keepalive\n"
           "    minReplicas: 5\n"
           "    maxReplicas: 0\n"
           "    initialScale: 8\n"
           "    tick: 1m\n"
           "    schedules:\n"
           "    - {cron: \"0 19 * * *\", duration: 1h, minReplicas: 9, "
           "maxReplicas: 0}\n"),
      "ok.yaml");
  EXPECT_TRUE(ok.errors.empty()) << AllErrors(ok);
  ASSERT_EQ(ok.apps.size(), 1u);
  EXPECT_EQ(ok.apps[0].app.spec().scaling().max_replicas(), 0);

  ParseResult fixed =
      ParseApps(Spec("  replicas: 40\n  template: {command: [x]}\n"
                     "  scaling: {maxReplicas: 0}\n"),
                "fixed.yaml");
  EXPECT_TRUE(fixed.errors.empty()) << AllErrors(fixed);

  ParseResult tick =
      ParseApps(Spec("  template: {command: [x]}\n  scaling:\n    tick: 2m\n"),
                "tick.yaml");
  ASSERT_EQ(tick.errors.size(), 1u) << AllErrors(tick);
  EXPECT_EQ(tick.errors[0].field, "spec.scaling.tick");
}

TEST(ValidateAppTest, SameRulesWithoutLines) {
  App app = FullApp();
  EXPECT_TRUE(ValidateApp(app).empty());
  app.mutable_spec()->mutable_scaling()->set_stable_window_ms(-5);
  app.mutable_spec()->mutable_template_()->clear_command();
  app.mutable_metadata()->set_namespace_("");
  app.mutable_spec()->mutable_scaling()->mutable_schedules(0)->set_cron(
      "* * *");
  std::vector<SpecError> errors = ValidateApp(app);
  std::vector<std::string> got;
  for (const auto& e : errors) {
    EXPECT_EQ(e.line, 0);
    EXPECT_EQ(e.source, "");
    got.push_back(e.ToString());
  }
  EXPECT_EQ(got,
            (std::vector<std::string>{
                "metadata.namespace: required",
                "spec.template.command: required: the program to run and its "
                "fixed arguments, e.g. [\"tidal-sample-app\"]",
                "spec.scaling.stableWindow: must be between 6s and 1h, got "
                "-5ms",
                "spec.scaling.schedules[0].cron: invalid cron expression \"* * "
                "*\": must have 5 fields (minute hour day-of-month month "
                "day-of-week), got 3",
            }));
}

TEST(TemplateHashTest, StableAndSensitive) {
  App app = FullApp();
  const auto& t = app.spec().template_();
  std::string h = TemplateHash(t);
  EXPECT_EQ(h.size(), 10u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(TemplateHash(t), h);
  // Map insertion order does not matter.
  tidal::v1::Template a, b;
  a.add_command("x");
  b.add_command("x");
  (*a.mutable_labels())["one"] = "1";
  (*a.mutable_labels())["two"] = "2";
  (*b.mutable_labels())["two"] = "2";
  (*b.mutable_labels())["one"] = "1";
  EXPECT_EQ(TemplateHash(a), TemplateHash(b));
  b.add_args("--v2");
  EXPECT_NE(TemplateHash(a), TemplateHash(b));
  // A fixed value: the hash names revisions in the store, so it must not
  // change between builds.
  tidal::v1::Template fixed;
  fixed.add_command("tidal-sample-app");
  EXPECT_EQ(TemplateHash(fixed), TemplateHash(fixed));
  EXPECT_EQ(TemplateHash(fixed), "6f959f11c7");
}

TEST(BaseReplicasTest, ReplicasThenMinThenOne) {
  tidal::v1::AppSpec s;
  EXPECT_EQ(BaseReplicas(s), 1);
  s.mutable_scaling()->set_max_replicas(10);
  EXPECT_EQ(BaseReplicas(s), 1);
  s.mutable_scaling()->set_min_replicas(0);
  EXPECT_EQ(BaseReplicas(s), 0);
  s.set_replicas(3);
  EXPECT_EQ(BaseReplicas(s), 3);
}

TEST(ExamplesTest, AllExampleSpecsParse) {
  std::filesystem::path dir = SourceDir() / "examples";
  int count = 0;
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    ParseResult r = ParseApps(ss.str(), entry.path().filename().string());
    EXPECT_TRUE(r.ok()) << entry.path() << "\n" << AllErrors(r);
    for (const auto& a : r.apps) {
      names.insert(a.app.metadata().name());
      // Each example survives the round trip too.
      ParseResult back = ParseApps(AppToYaml(a.app), "back.yaml");
      ASSERT_TRUE(back.ok()) << AllErrors(back);
      ExpectSameApp(a.app, back.apps[0].app);
    }
    ++count;
  }
  EXPECT_GE(count, 3);
  EXPECT_TRUE(names.count("hello"));
}

TEST(ExamplesTest, HelloRunsTheSampleApp) {
  std::ifstream in(SourceDir() / "examples" / "hello.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  ParseResult r = ParseApps(ss.str(), "hello.yaml");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_EQ(r.apps.size(), 1u);
  const App& app = r.apps[0].app;
  EXPECT_EQ(app.metadata().namespace_(), "default");
  EXPECT_EQ(app.spec().replicas(), 3);
  EXPECT_EQ(app.spec().template_().command(0), "tidal-sample-app");
  EXPECT_EQ(app.spec().template_().readiness_probe().http_get().path(),
            "/healthz");
  EXPECT_EQ(app.spec().template_().liveness_probe().http_get().path(),
            "/healthz");
  EXPECT_EQ(BaseReplicas(app.spec()), 3);
}

// The runtime tidald runs with decides between command and image.
TEST(ParseAppsTest, TheRuntimeDecidesWhatATemplateNeeds) {
  const std::string no_image = R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  template:
    command: ["/bin/web"]
)";
  const std::string image_only = R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  template:
    image: registry.example.com/web:1.4
)";
  ValidationOptions kube = DefaultServerOptions();
  kube.runtime = "kubernetes";
  ParseResult r = ParseApps(no_image, "app.yaml", "default", kube);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 5);
  EXPECT_THAT(r.errors[0].ToString(),
              ::testing::HasSubstr("spec.template.image: required"));
  EXPECT_TRUE(ParseApps(image_only, "app.yaml", "default", kube).ok());
  // Local processes need a command; the image alone is not enough.
  r = ParseApps(image_only, "app.yaml", "default", DefaultServerOptions());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].ToString(),
              ::testing::HasSubstr("spec.template.command: required: tidald "
                                   "runs instances as local processes"));
  EXPECT_TRUE(
      ParseApps(no_image, "app.yaml", "default", DefaultServerOptions()).ok());
  // A client (tidalctl) does not know tidald's runtime: either will do.
  EXPECT_TRUE(ParseApps(image_only, "app.yaml").ok());
  EXPECT_TRUE(ParseApps(no_image, "app.yaml").ok());
  // The image round-trips through YAML.
  ParseResult ok = ParseApps(image_only, "app.yaml", "default", kube);
  ASSERT_TRUE(ok.ok());
  EXPECT_THAT(AppToYaml(ok.apps[0].app),
              ::testing::HasSubstr("image: \"registry.example.com/web:1.4\""));
}

}  // namespace
}  // namespace tidal::spec
