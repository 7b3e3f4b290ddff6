// The hostile-input suite, short form (the long form with figures is
// bench/hostile/run.sh): a real tidald attacked through its API and its
// gateway — spec mutations (unknown fields by the hundred thousand, alias
// bombs, deep nesting, cycles, huge scalars, NUL bytes, too many
// documents, oversized messages), too many streams, a client that stops
// reading its watch, request smuggling and odd Host forms, slowloris,
// idle connections by the dozen, an instance that answers without end —
// each refused or cut with the documented error while tidald stays up and
// keeps serving another app. Behaviour only: the timing and memory bars are
// the bench's.

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"
#include "gtest/gtest.h"
#include "hostile/hostile_inputs.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal::e2e {
namespace {

using namespace std::string_literals;  // NOLINT: requests with NUL bytes

// One raw TCP connection to the gateway, from `source` (a 127/8 address).
class Raw {
 public:
  explicit Raw(int port, const std::string& source = "127.0.0.1") {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &a.sin_addr);
    // The port is picked at connect() (bench/hostile/hostile_bench.cc says
    // why); a failed bind is a failed connection, not one from elsewhere.
    int one = 1;
    setsockopt(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    const bool bound =
        bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    connected_ =
        bound && connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    timeval tv{30, 0};  // a bound on a broken test, not a measurement
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Raw() { close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const std::string& s) {
    return send(fd_, s.data(), s.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(s.size());
  }
  // Reads until the server closes (or `max` bytes); *eof says which.
  std::string ReadAll(bool* eof, size_t max = 64 << 20) {
    std::string out = std::move(early_);
    early_.clear();
    char buf[65536];
    *eof = closed_;
    if (closed_) return out;
    while (out.size() < max) {
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n == 0) {
        *eof = true;
        break;
      }
      if (n < 0) break;  // timeout or reset
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // Reads one response whose end the server marks by closing, or the first
  // `n` bytes of it.
  std::string ReadSome() {
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  // Whether the server has closed the connection (EOF or reset by now);
  // what it sent before is kept for ReadAll.
  bool ClosedByServer() {
    char buf[4096];
    while (!closed_) {
      ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        early_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      closed_ = true;
    }
    return closed_;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string early_;  // read by ClosedByServer
};

constexpr char kProbeHost[] = "probe.default.tidal.localhost";

class HostileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    daemon_ = new Daemon(
        dir_->path(),
        {"--auth=none", "--stop-instances-on-exit", "--gateway-threads=2",
         "--api-max-streams-per-client=3", "--api-stream-stall-timeout=2s",
         "--gateway-header-timeout=1s",
         "--gateway-max-connections-per-client=10",
         "--gateway-max-idle-connections=20",
         "--gateway-max-response-body=1Mi"});
    ASSERT_TRUE(daemon_->Start()) << daemon_->log_path();
    const std::string path = dir_->path() + "/probe.yaml";
    WriteFile(path,
              "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: probe\n"
              "spec:\n  replicas: 1\n  template:\n"
              "    command: [\"tidal-sample-app\"]\n"
              "    readinessProbe:\n      httpGet:\n        path: /healthz\n"
              "      periodSeconds: 1\n");
    auto r = daemon_->Ctl({"apply", "-f", path});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(Eventually(
        [] {
          return HttpGet(daemon_->gateway_port(), kProbeHost, "/healthz")
                     .status == 200;
        },
        absl::Seconds(60)))
        << daemon_->log_path();
  }
  static void TearDownTestSuite() {
    delete daemon_;
    delete dir_;
    daemon_ = nullptr;
    dir_ = nullptr;
  }
  void TearDown() override {
    // After every attack: tidald is up and serves the other app.
    ASSERT_TRUE(daemon_->Running()) << daemon_->log_path();
    EXPECT_EQ(HttpGet(daemon_->gateway_port(), kProbeHost, "/healthz").status,
              200);
    EXPECT_EQ(daemon_->Ctl({"version"}).exit_code, 0);
  }

  static std::unique_ptr<v1::Tidal::Stub> Stub() {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    args.SetMaxReceiveMessageSize(64 << 20);
    return v1::Tidal::NewStub(grpc::CreateCustomChannel(
        daemon_->api(), grpc::InsecureChannelCredentials(), args));
  }
  static grpc::Status Apply(const std::string& yaml) {
    v1::ApplyRequest req;
    req.set_yaml(yaml);
    req.set_source("hostile.yaml");
    v1::ApplyResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(60));
    return Stub()->Apply(&ctx, req, &resp);
  }
  static std::vector<std::string> Lines(const grpc::Status& s) {
    return absl::StrSplit(s.error_message(), '\n');
  }
  int gw() const { return daemon_->gateway_port(); }
  // The value of one series on tidald's /metrics ("name" or
  // "name{labels}", exactly as written there); -1 when absent.
  static double Metric(const std::string& series) {
    auto r = HttpGet(daemon_->admin_port(), "127.0.0.1", "/metrics");
    for (absl::string_view line : absl::StrSplit(r.body, '\n')) {
      if (absl::ConsumePrefix(&line, series) &&
          absl::ConsumePrefix(&line, " ")) {
        double v = 0;
        if (absl::SimpleAtod(line, &v)) return v;
      }
    }
    return -1;
  }

  static TempDir* dir_;
  static Daemon* daemon_;
};

TempDir* HostileTest::dir_ = nullptr;
Daemon* HostileTest::daemon_ = nullptr;

using hostile::AliasBomb;
using hostile::DeepNesting;
using hostile::kHead;
using hostile::UnknownFields;

TEST_F(HostileTest, TwoHundredThousandUnknownFieldsAreRefusedWhole) {
  const std::string yaml = UnknownFields(200000);
  ASSERT_GT(yaml.size(), 2u << 20);
  grpc::Status s = Apply(yaml);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Lines(s).size(), 1u) << s.error_message().substr(0, 500);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "--api-max-spec-size"))
      << s.error_message();

  // Twelve at once: each refused (InvalidArgument, or ResourceExhausted by
  // the per-client limit of applies in flight), none with a long answer.
  std::vector<grpc::Status> got(12);
  std::vector<std::thread> threads;
  for (int i = 0; i < 12; ++i) {
    threads.emplace_back([&, i] { got[i] = Apply(yaml); });
  }
  for (auto& t : threads) t.join();
  for (const grpc::Status& g : got) {
    EXPECT_TRUE(g.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                g.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
        << g.error_code() << " " << g.error_message();
    EXPECT_LT(g.error_message().size(), 1000u);
  }
}

// A client that sends large applies back to back is paced to
// --api-apply-bytes-per-second (4 MiB/s after an 8 MiB burst by default):
// its calls wait before they are refused, so the loop runs at the rate.
TEST_F(HostileTest, LargeAppliesBackToBackArePacedToTheRate) {
  const std::string yaml = UnknownFields(200000);  // about 2.9 MB
  const double before = Metric("tidal_api_paced_calls_total");
  ASSERT_GE(before, 0);
  const absl::Time start = absl::Now();
  constexpr int kApplies = 6;
  for (int i = 0; i < kApplies; ++i) {
    EXPECT_EQ(Apply(yaml).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // 6 x 2.9 MB = 17.3 MB: 8 MiB of burst, the rest (about 9 MB) at
  // 4 MiB/s, so at least 2 s however fast tidald is (a lower bound).
  const double bytes = static_cast<double>(kApplies * yaml.size());
  const absl::Duration floor =
      absl::Seconds((bytes - (8 << 20)) / (4 << 20)) - absl::Milliseconds(200);
  EXPECT_GE(absl::Now() - start, floor);
  EXPECT_GE(Metric("tidal_api_paced_calls_total") - before, 2);
  EXPECT_GT(Metric("tidal_api_paced_seconds_total"), 0);
}

TEST_F(HostileTest, CostlyRefusalsBackToBackArePaced) {
  // 5,000 unknown fields: 100 kB, well within the byte rate, but tens of ms
  // of CPU to parse and refuse. Past 200 ms of refused CPU (the burst of
  // --api-refused-apply-cpu-per-second) the client's next apply waits.
  const std::string yaml = UnknownFields(5000);
  const double before = Metric("tidal_api_paced_calls_total");
  ASSERT_GE(before, 0);
  int applies = 0;
  for (; applies < 60; ++applies) {
    ASSERT_EQ(Apply(yaml).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    if (Metric("tidal_api_paced_calls_total") > before) break;
  }
  EXPECT_LT(applies, 60) << "never paced";
  EXPECT_GE(applies, 1) << "paced before the burst was spent";
  EXPECT_GT(Metric("tidal_api_paced_seconds_total"), 0);
}

TEST_F(HostileTest, ManyErrorsAreListedUpToTheCap) {
  grpc::Status s = Apply(UnknownFields(5000));
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << s.error_message().substr(0, 300);
  EXPECT_LE(s.error_message().size(), 6000u);
  std::vector<std::string> lines = Lines(s);
  ASSERT_GE(lines.size(), 2u);
  ASSERT_LE(lines.size(), 51u);
  EXPECT_TRUE(absl::StrContains(lines[0], "hostile.yaml:8:3: spec.unk0:"))
      << lines[0];
  const int listed = static_cast<int>(lines.size()) - 1;
  EXPECT_EQ(lines.back(), absl::StrCat("... and ", 5000 - listed,
                                       " more errors (only the first ", listed,
                                       " are listed)"));
}

TEST_F(HostileTest, TooManyNodesAreRefusedBeforeLoading) {
  grpc::Status s = Apply(UnknownFields(15000));  // 30,000 nodes
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Lines(s).size(), 1u);
  EXPECT_TRUE(absl::StrContains(
      s.error_message(),
      "refused before loading: more than 20000 YAML nodes in one document"))
      << s.error_message();
}

TEST_F(HostileTest, AliasBombIsRefusedBeforeItExpands) {
  // Nine levels of nine aliases: 9^9 nodes once expanded.
  grpc::Status s = Apply(AliasBomb());
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(s.error_message(),
                               "hostile.yaml:7:15: refused before loading: "
                               "more than 20000 YAML nodes in one document"))
      << s.error_message();

  // More aliases than the cap, each small.
  std::string many = "apiVersion: tidal.dev/v1\nkind: App\nx: &a 1\ny: [";
  for (int i = 0; i < 150; ++i) absl::StrAppend(&many, i ? ", " : "", "*a");
  absl::StrAppend(&many, "]\n");
  s = Apply(many);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "more than 100 aliases"))
      << s.error_message();

  // An alias inside the node it names would be a cycle once loaded.
  s = Apply(
      "apiVersion: tidal.dev/v1\nkind: App\nmetadata: &m\n  name: c\n"
      "  labels: *m\n");
  EXPECT_TRUE(absl::StrContains(s.error_message(), "(a cycle)"))
      << s.error_message();
}

TEST_F(HostileTest, DeepNestingIsRefused) {
  grpc::Status s = Apply(DeepNesting(100000));
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(
      absl::StrContains(s.error_message(), "nested deeper than 32 levels"))
      << s.error_message().substr(0, 300);
}

TEST_F(HostileTest, HugeScalarsNulBytesAndDocumentFloods) {
  // One scalar larger than a spec may be.
  grpc::Status s = Apply(std::string(kHead) + "    args: [\"" +
                         std::string(3 << 20, 'a') + "\"]\n");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "--api-max-spec-size"));
  // Within the spec size, beyond a string's bound.
  s = Apply(std::string(kHead) + "    args: [\"" + std::string(1 << 20, 'a') +
            "\"]\n");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(s.error_message().size(), 1000u);
  // A raw NUL byte, and an escaped one.
  s = Apply(std::string(kHead) + "    args: [a\0b]\n"s);
  EXPECT_TRUE(absl::StrContains(s.error_message(),
                                "hostile.yaml:8:13: the text holds a NUL byte"))
      << s.error_message();
  s = Apply(std::string(kHead) + "    args: [\"a\\0b\"]\n");
  EXPECT_TRUE(absl::StrContains(s.error_message(), "must not contain a NUL"))
      << s.error_message();
  // More documents than an apply may hold.
  std::string flood;
  for (int i = 0; i < 600; ++i) flood += "x: 1\n---\n";
  s = Apply(flood);
  EXPECT_TRUE(absl::StrContains(s.error_message(),
                                "more than 500 documents in one apply"))
      << s.error_message();
  // A message over the API's size: gRPC refuses it before the service.
  s = Apply(std::string(5 << 20, '#'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  // Apps built in code: many labels are one bounded error each app.
  v1::ApplyRequest req;
  for (int a = 0; a < 3; ++a) {
    v1::App* app = req.add_apps();
    app->set_api_version("tidal.dev/v1");
    app->set_kind("App");
    app->mutable_metadata()->set_name(absl::StrCat("labels", a));
    for (int i = 0; i < 50000; ++i) {
      (*app->mutable_metadata()->mutable_labels())[absl::StrCat("k", i)] = "v";
    }
  }
  v1::ApplyResponse resp;
  grpc::ClientContext ctx;
  s = Stub()->Apply(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LE(Lines(s).size(), 101u);
}

// Under a flood of API calls the gateway keeps the CPU: the threads that
// served API calls run at --api-thread-nice (10 by default), the gateway's
// (named tidal-gw-N) at tidald's own 0.
TEST_F(HostileTest, ApiThreadsYieldTheCpuToTheGateway) {
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(daemon_->Ctl({"get", "apps"}).exit_code, 0);
  int api_niced = 0, gateway = 0;
  const std::string tasks = absl::StrCat("/proc/", daemon_->pid(), "/task");
  for (const auto& entry : std::filesystem::directory_iterator(tasks)) {
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string comm = stat.substr(open + 1, close - open - 1);
    // After "(comm) ": state is field 3, nice field 19.
    std::vector<std::string> fields =
        absl::StrSplit(stat.substr(close + 2), ' ');
    ASSERT_GT(fields.size(), 16u) << stat;
    const std::string& nice = fields[16];
    if (absl::StartsWith(comm, "tidal-gw-")) {
      ++gateway;
      EXPECT_EQ(nice, "0") << comm;
    } else if (nice == "10") {
      ++api_niced;
    }
  }
  EXPECT_EQ(gateway, 2);  // --gateway-threads=2
  EXPECT_GE(api_niced, 1);
}

TEST_F(HostileTest, StreamsBeyondThePerClientLimitAreRefusedWithARetryHint) {
  auto stub = Stub();
  v1::WatchRequest req;  // the default namespace: the probe app at once
  struct Open {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader;
  };
  std::vector<std::unique_ptr<Open>> open;
  for (int i = 0; i < 3; ++i) {
    auto o = std::make_unique<Open>();
    o->reader = stub->Watch(&o->ctx, req);
    v1::WatchEvent ev;
    ASSERT_TRUE(o->reader->Read(&ev));  // the stream holds its slot
    open.push_back(std::move(o));
  }
  {
    grpc::ClientContext ctx;
    auto reader = stub->Watch(&ctx, req);
    v1::WatchEvent ev;
    EXPECT_FALSE(reader->Read(&ev));
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_TRUE(absl::StrContains(s.error_message(),
                                  "--api-max-streams-per-client); retry in 1s"))
        << s.error_message();
    auto hint = ctx.GetServerTrailingMetadata().find("retry-after-ms");
    ASSERT_NE(hint, ctx.GetServerTrailingMetadata().end());
    EXPECT_EQ(std::string(hint->second.data(), hint->second.size()), "1000");
  }
  // The refusal and the streams held are on /metrics.
  EXPECT_GE(Metric("tidal_api_calls_refused_total{kind=\"stream\"}"), 1);
  EXPECT_GE(Metric("tidal_api_calls_in_flight{kind=\"stream\"}"), 3);
  // One closed: its slot is free again.
  open[0]->ctx.TryCancel();
  (void)open[0]->reader->Finish();
  open.erase(open.begin());
  EXPECT_TRUE(Eventually([&] {
    grpc::ClientContext ctx;
    auto reader = stub->Watch(&ctx, req);
    v1::WatchEvent ev;
    bool ok = reader->Read(&ev);
    ctx.TryCancel();
    (void)reader->Finish();
    return ok;
  }));
  for (auto& o : open) {
    o->ctx.TryCancel();
    (void)o->reader->Finish();
  }
}

TEST_F(HostileTest, AWatchThatIsNotReadIsCut) {
  auto stub = Stub();
  grpc::ClientContext ctx;
  v1::WatchRequest req;
  req.set_namespace_("stall");
  auto reader = stub->Watch(&ctx, req);  // read once, then not until the end
  // Apps of about 900 KB each, until the stream stalls and is cut.
  std::string env;
  for (int i = 0; i < 7; ++i) {
    absl::StrAppend(&env, "      V", i, ": \"", std::string(120000, 'v'),
                    "\"\n");
  }
  // 30 apps of about 900 KB each: far more than the stream's buffers.
  const int applied = 30;
  for (int i = 0; i < applied; ++i) {
    if (i == 1) {
      // The stream is up (not refused: earlier tests' streams are gone).
      v1::WatchEvent first;
      ASSERT_TRUE(reader->Read(&first)) << reader->Finish().error_message();
    }
    const std::string yaml = absl::StrCat(
        "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: big", i,
        "\n  namespace: stall\nspec:\n  replicas: 0\n  template:\n"
        "    command: [x]\n    env:\n",
        env);
    grpc::Status s = Apply(yaml);
    ASSERT_TRUE(s.ok()) << s.error_message().substr(0, 300);
  }
  bool cut = Eventually(
      [&] {
        return absl::StrContains(ReadFile(daemon_->log_path()),
                                 "watch stream cut: the client read nothing");
      },
      absl::Seconds(60));
  EXPECT_TRUE(cut) << applied << " apps applied; " << daemon_->log_path();
  // What was sent before the cut can still be read; then the call ends.
  v1::WatchEvent ev;
  while (reader->Read(&ev)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
  for (int i = 0; i < applied; ++i) {
    daemon_->Ctl({"delete", "app", absl::StrCat("big", i), "-n", "stall"});
  }
}

// Sends `request` on a fresh connection; the whole answer up to the close.
std::string Exchange(int port, const std::string& request, bool* eof) {
  Raw c(port);
  EXPECT_TRUE(c.connected());
  c.Send(request);
  return c.ReadAll(eof);
}

TEST_F(HostileTest, SmugglingAndBadHostsGet400AndAClosedConnection) {
  const std::string host = absl::StrCat("Host: ", kProbeHost, "\r\n");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"Content-Length and Transfer-Encoding",
       "POST / HTTP/1.1\r\n" + host +
           "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {"Transfer-Encoding and Content-Length",
       "POST / HTTP/1.1\r\n" + host +
           "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
      {"two differing Content-Length",
       "POST / HTTP/1.1\r\n" + host +
           "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
      {"a Content-Length list that differs",
       "POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 6\r\n\r\nhello!"},
      {"a signed Content-Length",
       "POST / HTTP/1.1\r\n" + host + "Content-Length: +5\r\n\r\nhello"},
      {"a coding other than chunked last",
       "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\nabc"},
      {"Transfer-Encoding twice",
       "POST / HTTP/1.1\r\n" + host +
           "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
           "0\r\n\r\n"},
      {"no Host", "GET / HTTP/1.1\r\n\r\n"},
      {"two Hosts", "GET / HTTP/1.1\r\n" + host + host + "\r\n"},
      {"userinfo in Host",
       absl::StrCat("GET / HTTP/1.1\r\nHost: evil@", kProbeHost, "\r\n\r\n")},
      {"a space before the colon",
       absl::StrCat("GET / HTTP/1.1\r\nHost : ", kProbeHost, "\r\n\r\n")},
      {"a NUL in a field", "GET / HTTP/1.1\r\n" + host + "X-A: a\0b\r\n\r\n"s},
      {"an absolute-form target with userinfo",
       absl::StrCat("GET http://u@", kProbeHost, "/ HTTP/1.1\r\n", host,
                    "\r\n")},
  };
  for (const auto& [what, request] : bad) {
    bool eof = false;
    std::string got = Exchange(gw(), request, &eof);
    EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 400 ")) << what << ": " << got;
    EXPECT_TRUE(absl::StrContains(got, "Connection: close")) << what;
    EXPECT_TRUE(eof) << what << ": the connection was not closed";
  }
}

TEST_F(HostileTest, AbsoluteFormAndOddHostFormsAreRoutedAsDocumented) {
  bool eof = false;
  // The target's authority wins over Host (RFC 9112 3.2.2).
  std::string got =
      Exchange(gw(),
               absl::StrCat("GET http://", kProbeHost,
                            "/healthz HTTP/1.1\r\nHost: elsewhere.example\r\n"
                            "Connection: close\r\n\r\n"),
               &eof);
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 200 ")) << got;
  // A trailing dot, upper case and a port name the same app.
  got = Exchange(gw(),
                 "GET /healthz HTTP/1.1\r\nHost: PROBE.Default.tidal.localhost."
                 ":8080\r\nConnection: close\r\n\r\n",
                 &eof);
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 200 ")) << got;
  // An IP literal names no app.
  got = Exchange(gw(),
                 "GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n"
                 "\r\n",
                 &eof);
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 404 ")) << got;
  EXPECT_TRUE(absl::StrContains(got, "no app for host \"[::1]\"")) << got;
  // Folded header lines are joined by a space (RFC 9112 5.2).
  got = Exchange(gw(),
                 absl::StrCat("GET /healthz HTTP/1.1\r\nHost: ", kProbeHost,
                              "\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n"),
                 &eof);
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 200 ")) << got;
}

// Sends one more byte of a header every 100 ms; true once the server has
// closed the connection.
bool Trickle(Raw* c) {
  static absl::Time last;
  if (c->ClosedByServer()) return true;
  if (absl::Now() - last >= absl::Milliseconds(100)) {
    last = absl::Now();
    if (!c->Send("a")) return true;
  }
  return false;
}

TEST_F(HostileTest, SlowlorisIsCutAtTheHeaderTimeout) {
  // A new connection that sends its header a byte at a time.
  Raw slow(gw());
  ASSERT_TRUE(slow.connected());
  const std::string header =
      absl::StrCat("GET / HTTP/1.1\r\nHost: ", kProbeHost, "\r\nX-Slow: ");
  ASSERT_TRUE(slow.Send(header));
  EXPECT_TRUE(Eventually([&] { return Trickle(&slow); }, absl::Seconds(30)));
  bool eof = false;
  EXPECT_EQ(slow.ReadAll(&eof), "");  // no answer: closed

  // A kept-alive connection whose second header trickles.
  Raw kept(gw());
  ASSERT_TRUE(kept.Send(
      absl::StrCat("GET /healthz HTTP/1.1\r\nHost: ", kProbeHost, "\r\n\r\n")));
  EXPECT_TRUE(absl::StartsWith(kept.ReadSome(), "HTTP/1.1 200 "));
  ASSERT_TRUE(kept.Send(header));
  EXPECT_TRUE(Eventually([&] { return Trickle(&kept); }, absl::Seconds(30)));

  // A second header pipelined behind the first request (its first bytes
  // came with it): the header timeout as well, not the idle timeout.
  Raw piped(gw());
  ASSERT_TRUE(piped.Send(absl::StrCat(
      "GET /healthz HTTP/1.1\r\nHost: ", kProbeHost, "\r\n\r\n", header)));
  EXPECT_TRUE(absl::StartsWith(piped.ReadSome(), "HTTP/1.1 200 "));
  EXPECT_TRUE(Eventually([&] { return Trickle(&piped); }, absl::Seconds(30)));

  // A connection that sends nothing at all.
  Raw silent(gw());
  EXPECT_TRUE(
      Eventually([&] { return silent.ClosedByServer(); }, absl::Seconds(30)));
}

TEST_F(HostileTest, ConnectionsPerAddressAndIdleConnectionsAreCapped) {
  // One address holds at most 10: the rest get 503 at once. (Connections
  // from 127.0.0.2; the probe from 127.0.0.1 is not affected.)
  std::vector<std::unique_ptr<Raw>> held;
  int refused = 0;
  for (int i = 0; i < 15; ++i) {
    auto c = std::make_unique<Raw>(gw(), "127.0.0.2");
    ASSERT_TRUE(c->connected());
    held.push_back(std::move(c));
  }
  // Each is refused at once or, silent, closed at the header timeout.
  ASSERT_TRUE(Eventually([&] {
    for (auto& c : held) {
      if (!c->ClosedByServer()) return false;
    }
    return true;
  }));
  for (auto& c : held) {
    bool eof = false;
    std::string got = c->ReadAll(&eof);
    if (got.empty()) continue;
    EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 503 ")) << got;
    EXPECT_TRUE(absl::StrContains(got,
                                  "too many connections from this "
                                  "address"))
        << got;
    ++refused;
  }
  EXPECT_GE(refused, 1);
  EXPECT_GE(Metric("tidal_gateway_client_connections_refused_total"), refused);
  EXPECT_EQ(HttpGet(gw(), kProbeHost, "/healthz").status, 200);
  held.clear();

  // Idle kept-alive connections beyond 20: the longest idle are closed to
  // make room for new ones (from 30 addresses, within the limit of each).
  std::vector<std::unique_ptr<Raw>> idle;
  for (int i = 0; i < 30; ++i) {
    auto c = std::make_unique<Raw>(gw(), absl::StrCat("127.0.1.", 1 + i));
    ASSERT_TRUE(c->Send(absl::StrCat(
        "GET /healthz HTTP/1.1\r\nHost: ", kProbeHost, "\r\n\r\n")));
    ASSERT_TRUE(absl::StartsWith(c->ReadSome(), "HTTP/1.1 200 "));
    idle.push_back(std::move(c));
  }
  EXPECT_TRUE(Eventually([&] {
    int closed = 0;
    for (auto& c : idle) closed += c->ClosedByServer() ? 1 : 0;
    return closed >= 9;
  })) << daemon_->log_path();
  // The oldest went first.
  EXPECT_TRUE(idle.front()->ClosedByServer());
  EXPECT_FALSE(idle.back()->ClosedByServer());
  EXPECT_GE(Metric("tidal_gateway_idle_connections_closed_total"), 9);
}

TEST_F(HostileTest, EndlessAndHugeResponsesAreCutAtTheLimit) {
  // A declared body over --gateway-max-response-body: 502 before a byte.
  HttpResponse r = HttpGet(gw(), kProbeHost, "/bytes?n=5000000");
  EXPECT_EQ(r.status, 502) << r.error;
  // An endless body: relayed up to the limit, then the connection is cut.
  Raw c(gw());
  ASSERT_TRUE(c.Send(absl::StrCat(
      "GET /events?n=1000000000&interval=1us HTTP/1.1\r\nHost: ", kProbeHost,
      "\r\n\r\n")));
  bool eof = false;
  std::string got = c.ReadAll(&eof, 16 << 20);
  EXPECT_TRUE(eof) << got.size() << " bytes and no end";
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 200 ")) << got.substr(0, 200);
  EXPECT_LT(got.size(), 2u << 20);
  EXPECT_GT(got.size(), 512u << 10);
}

}  // namespace
}  // namespace tidal::e2e
