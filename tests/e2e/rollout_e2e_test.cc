// End-to-end tests of releases (issue 5): real tidald, tidalctl, sample-app
// processes and HTTP load through the gateway.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

// An app whose processes carry "<version>-<marker>" in their command line.
std::string AppYaml(const std::string& name, int replicas,
                    const std::string& marker, const std::string& version,
                    const std::string& extra_args, const std::string& rollout) {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: )",
                      name, R"(
spec:
  replicas: )",
                      replicas, R"(
  template:
    command: [")",
                      BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", ")",
                      version, "-", marker, "\"", extra_args, R"(]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
    terminationGracePeriodSeconds: 5
  rollout:
)",
                      rollout);
}

// Steady GET load through the gateway on one keep-alive connection,
// counting answers per version and keeping every failure.
class Load {
 public:
  Load(int port, std::string host) : port_(port), host_(std::move(host)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  struct Failure {
    int status;
    std::string version;
    std::string error;
  };
  int64_t Count(const std::string& version_prefix) {
    absl::MutexLock l(&mu_);
    int64_t n = 0;
    for (const auto& [v, c] : by_version_)
      if (absl::StartsWith(v, version_prefix)) n += c;
    return n;
  }
  int64_t total() {
    absl::MutexLock l(&mu_);
    return total_;
  }
  std::vector<Failure> failures() {
    absl::MutexLock l(&mu_);
    return failures_;
  }

 private:
  void Loop() {
    HttpClient client(port_, host_, absl::Seconds(10));
    while (!stop_) {
      HttpResponse r = client.Get("/");
      std::string version;
      auto it = r.headers.find("x-version");
      if (it != r.headers.end()) version = it->second;
      {
        absl::MutexLock l(&mu_);
        ++total_;
        ++by_version_[version];
        if (r.status != 200) failures_.push_back({r.status, version, r.error});
      }
      absl::SleepFor(absl::Milliseconds(4));
    }
  }
  const int port_;
  const std::string host_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::map<std::string, int64_t> by_version_ ABSL_GUARDED_BY(mu_);
  std::vector<Failure> failures_ ABSL_GUARDED_BY(mu_);
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
};

// A number after `"field":` in JSON text (0 when absent).
int64_t JsonInt(const std::string& json, const std::string& field) {
  auto pos = json.find("\"" + field + "\":");
  if (pos == std::string::npos) return 0;
  pos += field.size() + 3;
  while (pos < json.size() && (json[pos] == ' ' || json[pos] == '"')) ++pos;
  return atoll(json.c_str() + pos);
}

// A webhook receiver on 127.0.0.1 (plain sockets, one connection at a time):
// it records every request and answers the status named by its path,
// `/status/<code>` (200 for any other path).
class WebhookReceiver {
 public:
  struct Request {
    std::string method, path;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
  };
  WebhookReceiver() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(fd_, 16) != 0) {
      close(fd_);
      fd_ = -1;
      return;
    }
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~WebhookReceiver() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }
  std::string Url(int status) const {
    return absl::StrCat("http://127.0.0.1:", port_, "/status/", status);
  }
  std::vector<Request> requests() {
    absl::MutexLock l(&mu_);
    return requests_;
  }
  // The requests whose X-Tidal-Event is `type`.
  std::vector<Request> Of(const std::string& type) {
    std::vector<Request> out;
    for (auto& r : requests()) {
      auto it = r.headers.find("x-tidal-event");
      if (it != r.headers.end() && it->second == type) out.push_back(r);
    }
    return out;
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{5, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      Serve(c);
      close(c);
    }
  }
  static bool ReadMore(int c, std::string* buf) {
    char chunk[4096];
    ssize_t n = read(c, chunk, sizeof(chunk));
    if (n <= 0) return false;
    buf->append(chunk, n);
    return true;
  }
  void Serve(int c) {
    std::string buf;
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos)
      if (!ReadMore(c, &buf)) return;
    Request r;
    std::vector<std::string> lines = absl::StrSplit(buf.substr(0, end), "\r\n");
    std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
    if (first.size() >= 2) {
      r.method = first[0];
      r.path = first[1];
    }
    for (size_t i = 1; i < lines.size(); ++i) {
      auto colon = lines[i].find(':');
      if (colon == std::string::npos) continue;
      r.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
    buf.erase(0, end + 4);
    if (absl::AsciiStrToLower(r.headers["expect"]) == "100-continue") {
      const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      (void)!send(c, cont, sizeof(cont) - 1, MSG_NOSIGNAL);
    }
    size_t len = 0;
    (void)absl::SimpleAtoi(r.headers["content-length"], &len);
    while (buf.size() < len)
      if (!ReadMore(c, &buf)) return;
    r.body = buf.substr(0, len);
    int status = 200;
    absl::string_view path = r.path;
    if (absl::ConsumePrefix(&path, "/status/"))
      (void)absl::SimpleAtoi(path, &status);
    {
      absl::MutexLock l(&mu_);
      requests_.push_back(r);
    }
    std::string resp = absl::StrCat("HTTP/1.1 ", status,
                                    " X\r\nContent-Length: 0\r\nConnection: "
                                    "close\r\n\r\n");
    (void)!send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
};

// "sha256=<hex HMAC-SHA256(key, body)>", computed here with OpenSSL.
std::string Signature(const std::string& key, const std::string& body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest,
       &len);
  std::string out = "sha256=";
  char hex[3];
  for (unsigned int i = 0; i < len; ++i) {
    snprintf(hex, sizeof(hex), "%02x", digest[i]);
    out += hex;
  }
  return out;
}

class RolloutE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    marker_ = absl::StrCat(
        "ro-", getpid(), "-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    daemon_ = std::make_unique<Daemon>(dir_.path());
    ASSERT_TRUE(daemon_->Start())
        << "tidald did not start; see " << daemon_->log_path();
  }
  void TearDown() override {
    daemon_.reset();
    for (pid_t pid : FindProcesses(marker_)) kill(pid, SIGKILL);
  }
  // tidalctl with a long enough process timeout for --wait.
  CommandResult Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {BuildDir() + "/src/cli/tidalctl",
                                     "--server=" + daemon_->api(),
                                     daemon_->TokenFlag()};
    argv.insert(argv.end(), args.begin(), args.end());
    return tidal::e2e::Run(argv, "", absl::Seconds(120));
  }
  CommandResult Apply(const std::string& yaml, bool wait,
                      const std::string& timeout = "90s") {
    std::string path = absl::StrCat(dir_.path(), "/app-", ++applies_, ".yaml");
    WriteFile(path, yaml);
    if (!wait) return Ctl({"apply", "-f", path});
    return Ctl({"apply", "-f", path, "--wait", "--timeout", timeout});
  }
  int Count(const std::string& version) {
    return static_cast<int>(
        FindProcesses("--version " + version + "-" + marker_).size());
  }
  std::string AppJson(const std::string& name) {
    return daemon_->Ctl({"get", "app", name, "-o", "json"}).out;
  }
  std::string Describe(const std::string& name) {
    return daemon_->Ctl({"describe", "app", name}).out;
  }

  TempDir dir_;
  std::string marker_;
  std::unique_ptr<Daemon> daemon_;
  int applies_ = 0;
};

constexpr char kBatches[] = R"(    batches: 5
    maxSurge: "2"
    maxUnavailable: "0"
    progressDeadline: 60s
    analysis: {interval: 1s, minRequests: 3, maxErrorRate: "1%"}
)";

TEST_F(RolloutE2ETest, GoodReleaseInFiveBatchesUnderLoad) {
  auto r = Apply(AppYaml("web", 10, marker_, "v1", "", kBatches), true);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(Count("v1"), 10);

  Load load(daemon_->gateway_port(), AppHost("web"));
  ASSERT_TRUE(Eventually([&] { return load.total() > 50; }));
  absl::Time start = absl::Now();
  r = Apply(AppYaml("web", 10, marker_, "v2", "", kBatches), true);
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << Describe("web");
  // Plain progress lines (stdout is not a terminal), batch by batch.
  EXPECT_TRUE(absl::StrContains(r.out, "step 5/5"))
      << r.out << daemon_->Ctl({"get", "events", "web"}).out;
  EXPECT_TRUE(absl::StrContains(r.out, "is rolled out")) << r.out;
  ASSERT_TRUE(
      Eventually([&] { return Count("v2") == 10 && Count("v1") == 0; }));
  // New traffic goes to v2 only.
  int64_t v2_before = load.Count("v2");
  ASSERT_TRUE(Eventually([&] { return load.Count("v2") > v2_before + 50; }));
  load.Stop();
  auto failures = load.failures();
  EXPECT_TRUE(failures.empty())
      << failures.size() << " of " << load.total() << " requests failed, e.g. "
      << failures[0].status << " " << failures[0].error;
  EXPECT_GT(load.Count("v1"), 0);
  std::cout << "good release: " << absl::FormatDuration(took) << ", "
            << load.total() << " requests, 0 failed\n";

  auto hist = daemon_->Ctl({"rollout", "history", "web"});
  EXPECT_EQ(hist.exit_code, 0) << hist.err;
  EXPECT_TRUE(absl::StrContains(hist.out, "stable")) << hist.out;
  auto revs = daemon_->Ctl({"get", "revisions", "web"});
  EXPECT_EQ(revs.exit_code, 0) << revs.err;
  EXPECT_TRUE(absl::StrContains(revs.out, "REVISION")) << revs.out;
}

TEST_F(RolloutE2ETest, BadReleaseRollsBackWithinOneInterval) {
  const std::string canary = R"(    strategy: canary
    steps: [{weight: 20, pause: 30s}]
    maxSurge: "2"
    maxUnavailable: "0"
    progressDeadline: 60s
    analysis: {interval: 2s, minRequests: 20, maxErrorRate: "10%"}
)";
  auto r = Apply(AppYaml("shop", 5, marker_, "v1", "", canary), true);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  Load load(daemon_->gateway_port(), AppHost("shop"));
  ASSERT_TRUE(Eventually([&] { return load.total() > 50; }));

  std::atomic<bool> done{false};
  CommandResult wait_result;
  absl::Time done_at;
  std::thread waiter([&] {
    wait_result = Apply(
        AppYaml("shop", 5, marker_, "v2", R"(, "--error-rate", "0.5")", canary),
        true);
    done_at = absl::Now();
    done = true;
  });
  // When the canary has answered the minimum request count.
  absl::Time min_reached = absl::InfiniteFuture();
  ASSERT_TRUE(Eventually(
      [&] {
        if (min_reached == absl::InfiniteFuture() && load.Count("v2") >= 20)
          min_reached = absl::Now();
        return done.load();
      },
      absl::Seconds(90)));
  waiter.join();
  EXPECT_EQ(wait_result.exit_code, 1) << wait_result.out << wait_result.err;
  EXPECT_TRUE(absl::StrContains(wait_result.err, "rolled back"))
      << wait_result.err;
  EXPECT_TRUE(absl::StrContains(wait_result.err, "5xx")) << wait_result.err;
  ASSERT_NE(min_reached, absl::InfiniteFuture());
  // One analysis interval (2s), plus the CLI's poll and process start.
  EXPECT_LE(done_at - min_reached, absl::Seconds(3))
      << absl::FormatDuration(done_at - min_reached);

  // The old revision serves everything again.
  ASSERT_TRUE(Eventually([&] { return Count("v2") == 0; }));
  EXPECT_EQ(Count("v1"), 5);
  int64_t v1_before = load.Count("v1"), v2_before = load.Count("v2");
  ASSERT_TRUE(Eventually([&] { return load.Count("v1") > v1_before + 100; }));
  EXPECT_EQ(load.Count("v2"), v2_before);
  load.Stop();
  // Only requests that went to the canary failed.
  auto failures = load.failures();
  EXPECT_FALSE(failures.empty());
  for (const auto& f : failures) {
    ASSERT_TRUE(absl::StartsWith(f.version, "v2-"))
        << "a request to " << f.version << " failed: " << f.status << " "
        << f.error;
  }
  std::cout << "bad release: rolled back "
            << absl::FormatDuration(done_at - min_reached)
            << " after the canary's 20th request; " << failures.size()
            << " canary failures of " << load.total() << " requests\n";
  auto status = daemon_->Ctl({"rollout", "status", "shop"});
  EXPECT_EQ(status.exit_code, 1);
  // Not retried by itself; `rollout retry` would.
  EXPECT_EQ(Count("v2"), 0);
}

TEST_F(RolloutE2ETest, CrashLoopFailsFast) {
  const std::string batch = R"(    batches: 2
    progressDeadline: 5m
)";
  auto r = Apply(AppYaml("crash", 4, marker_, "v1", "", batch), true);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  absl::Time start = absl::Now();
  r = Apply(
      AppYaml("crash", 4, marker_, "v2", R"(, "--exit-at-start", "1")", batch),
      true);
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "CrashLoop")) << r.err;
  EXPECT_LT(took, absl::Seconds(30));
  ASSERT_TRUE(Eventually([&] { return Count("v2") == 0; }));
  EXPECT_EQ(Count("v1"), 4);
  std::cout << "crash loop: rolled back in " << absl::FormatDuration(took)
            << "\n";
  // -o json says the same for machines.
  auto j = Ctl({"rollout", "status", "crash", "-o", "json"});
  EXPECT_EQ(j.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(j.out, "\"result\":\"rolledBack\"")) << j.out;
}

// The app's first revision crash-loops: there is nothing to roll back to, so
// it is reported Failed and `apply --wait` exits 1 (not 4 at the timeout).
TEST_F(RolloutE2ETest, FirstDeployThatCrashLoopsFails) {
  const std::string batch = R"(    progressDeadline: 5m
)";
  absl::Time start = absl::Now();
  auto r = Apply(
      AppYaml("first", 2, marker_, "v1", R"(, "--exit-at-start", "1")", batch),
      true, "60s");
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "revision 1 failed (CrashLoop)"))
      << r.err;
  EXPECT_LT(took, absl::Seconds(30));
  std::cout << "first deploy crash loop: failed in "
            << absl::FormatDuration(took) << "\n";
}

TEST_F(RolloutE2ETest, Kill9DuringBatchThreeResumes) {
  const std::string batch = R"(    batches: 5
    batchInterval: 2s
    maxSurge: "2"
    maxUnavailable: "0"
    progressDeadline: 2m
)";
  auto r = Apply(AppYaml("resume", 10, marker_, "v1", "", batch), true);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = Apply(AppYaml("resume", 10, marker_, "v2", "", batch), false);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Asks tidald (a tidalctl process) at most every 100 ms; the process
  // counts below read /proc and cost nothing.
  absl::Time next_ask = absl::InfinitePast();
  ASSERT_TRUE(Eventually(
      [&] {
        if (absl::Now() < next_ask) return false;
        next_ask = absl::Now() + absl::Milliseconds(100);
        std::string j = AppJson("resume");
        return JsonInt(j, "step") == 3 && JsonInt(j, "updateRevision") == 2;
      },
      absl::Seconds(60)))
      << Describe("resume");
  daemon_->Kill9();
  int v2_at_kill = Count("v2");
  EXPECT_GE(v2_at_kill, 4);
  ASSERT_TRUE(daemon_->Start());
  // From now on, until it is done: the release goes on from its step (the
  // new instances never drop below their number at the kill), never more
  // than 10 + maxSurge 2 live processes (+2 that may still be exiting after
  // SIGTERM), never fewer than 10 processes, and the app's status never
  // reports fewer than 10 ready (maxUnavailable 0).
  int max_seen = 0, min_seen = 1000, min_v2 = 1000, min_ready = 1000;
  next_ask = absl::InfinitePast();
  bool done = Eventually(
      [&] {
        const int v1 = Count("v1"), v2 = Count("v2");
        max_seen = std::max(max_seen, v1 + v2);
        min_seen = std::min(min_seen, v1 + v2);
        min_v2 = std::min(min_v2, v2);
        if (absl::Now() >= next_ask) {
          next_ask = absl::Now() + absl::Milliseconds(200);
          std::string j = AppJson("resume");
          if (!j.empty() && JsonInt(j, "observedGeneration") > 0)
            min_ready = std::min(min_ready,
                                 static_cast<int>(JsonInt(j, "readyReplicas")));
        }
        return v2 == 10 && v1 == 0;
      },
      absl::Seconds(60));
  ASSERT_TRUE(done) << Describe("resume");
  EXPECT_LE(max_seen, 14);
  EXPECT_GE(min_seen, 10);
  EXPECT_GE(min_v2, v2_at_kill);
  EXPECT_GE(min_ready, 10);
  auto st = Ctl({"rollout", "status", "resume", "--timeout", "30s"});
  EXPECT_EQ(st.exit_code, 0) << st.out << st.err;
  for (int i = 0; i < 20; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_EQ(Count("v2"), 10);
    ASSERT_EQ(Count("v1"), 0);
  }
  std::cout << "kill -9 at step 3 with " << v2_at_kill
            << " new instances; after restart " << min_seen << ".." << max_seen
            << " processes, new ones never below " << min_v2
            << ", ready never below " << min_ready << "\n";
}

// Webhooks (docs/rollouts.md, "Webhooks") against a real receiver: a
// pre-rollout gate that answers 500 fails the release (after its retries)
// and notifies `rollback`; gates that answer 200 let it out, with a JSON
// payload signed with HMAC-SHA256, and `post-rollout` is notified.
TEST_F(RolloutE2ETest, WebhookGatesAndNotifications) {
  WebhookReceiver rx;
  ASSERT_GT(rx.port(), 0);
  const std::string secret = "s3cret-key";
  const std::string batch = R"(    batches: 2
    maxSurge: "1"
    maxUnavailable: "0"
    progressDeadline: 60s
)";
  auto hook = [&](const std::string& name, const std::string& type, int status,
                  bool signed_) {
    return absl::StrCat("  - {name: ", name, ", type: ", type, ", url: \"",
                        rx.Url(status), "\", timeout: 2s, retries: 1",
                        signed_ ? ", secret: " + secret : std::string(), "}\n");
  };
  auto r = Apply(AppYaml("hooks", 2, marker_, "v1", "", batch), true);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // The app's first revision has nothing to release from: no webhooks.
  EXPECT_TRUE(rx.requests().empty());

  // (a) pre-rollout answers 500: the release fails before any new instance.
  r = Apply(
      AppYaml("hooks", 2, marker_, "v2", "",
              batch + "  webhooks:\n" + hook("gate", "pre-rollout", 500, true) +
                  hook("chat", "rollback", 200, false)),
      true);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "PreRolloutWebhookFailed")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "answered 500")) << r.err;
  // 1 + retries attempts, each signed.
  auto pre = rx.Of("pre-rollout");
  ASSERT_EQ(pre.size(), 2u);
  for (const auto& q : pre) {
    EXPECT_EQ(q.method, "POST");
    EXPECT_EQ(q.headers.at("content-type"), "application/json");
    EXPECT_EQ(q.headers.at("x-tidal-signature"), Signature(secret, q.body));
  }
  ASSERT_TRUE(Eventually([&] { return !rx.Of("rollback").empty(); },
                         absl::Seconds(10)));
  auto rb = rx.Of("rollback")[0];
  EXPECT_TRUE(absl::StrContains(rb.body, "\"type\":\"rollback\"")) << rb.body;
  EXPECT_TRUE(absl::StrContains(rb.body, "\"app\":\"hooks\"")) << rb.body;
  EXPECT_TRUE(absl::StrContains(rb.body, "\"toRevision\":2")) << rb.body;
  EXPECT_TRUE(
      absl::StrContains(rb.body, "\"reason\":\"PreRolloutWebhookFailed\""))
      << rb.body;
  EXPECT_EQ(rb.headers.count("x-tidal-signature"), 0u);  // no secret
  auto status = Ctl({"rollout", "status", "hooks"});
  EXPECT_EQ(status.exit_code, 1);
  EXPECT_TRUE(
      absl::StrContains(status.out + status.err, "PreRolloutWebhookFailed"))
      << status.out << status.err;
  // The old revision keeps serving; no new instance ran.
  EXPECT_EQ(Count("v2"), 0);
  EXPECT_EQ(Count("v1"), 2);
  HttpResponse g = HttpGet(daemon_->gateway_port(), AppHost("hooks"));
  EXPECT_EQ(g.status, 200) << g.error;
  EXPECT_TRUE(absl::StartsWith(g.headers["x-version"], "v1-"))
      << g.headers["x-version"];
  EXPECT_TRUE(rx.Of("post-rollout").empty());

  // (b) the gates answer 200: the release goes out.
  r = Apply(
      AppYaml("hooks", 2, marker_, "v3", "",
              batch + "  webhooks:\n" + hook("gate", "pre-rollout", 200, true) +
                  hook("ci", "confirm-promotion", 200, true) +
                  hook("chat", "rollback", 200, false) +
                  hook("done", "post-rollout", 200, true)),
      true);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << Describe("hooks");
  ASSERT_TRUE(Eventually([&] { return !rx.Of("post-rollout").empty(); },
                         absl::Seconds(10)));
  pre = rx.Of("pre-rollout");
  ASSERT_EQ(pre.size(), 3u);  // two failed attempts of (a), one here
  auto confirm = rx.Of("confirm-promotion");
  ASSERT_EQ(confirm.size(), 1u);
  auto post = rx.Of("post-rollout");
  ASSERT_EQ(post.size(), 1u);
  for (const auto& [type, q] :
       std::vector<std::pair<std::string, WebhookReceiver::Request>>{
           {"pre-rollout", pre[2]},
           {"confirm-promotion", confirm[0]},
           {"post-rollout", post[0]}}) {
    SCOPED_TRACE(type);
    EXPECT_EQ(q.method, "POST");
    EXPECT_EQ(q.headers.at("content-type"), "application/json");
    EXPECT_EQ(q.headers.at("x-tidal-signature"), Signature(secret, q.body));
    EXPECT_NE(q.headers.at("x-tidal-signature"), Signature("wrong", q.body));
    EXPECT_TRUE(absl::StartsWith(q.body, "{") && absl::EndsWith(q.body, "}"))
        << q.body;
    EXPECT_TRUE(absl::StrContains(q.body, "\"type\":\"" + type + "\""))
        << q.body;
    EXPECT_TRUE(absl::StrContains(q.body, "\"namespace\":\"default\""))
        << q.body;
    EXPECT_TRUE(absl::StrContains(q.body, "\"app\":\"hooks\"")) << q.body;
    EXPECT_EQ(JsonInt(q.body, "fromRevision"), 1) << q.body;
    EXPECT_EQ(JsonInt(q.body, "toRevision"), 3) << q.body;
    EXPECT_EQ(JsonInt(q.body, "totalSteps"), 2) << q.body;
  }
  EXPECT_TRUE(absl::StrContains(post[0].body, "\"phase\":\"Succeeded\""))
      << post[0].body;
  EXPECT_EQ(rx.Of("rollback").size(), 1u);  // only (a)'s
  ASSERT_TRUE(Eventually([&] { return Count("v3") == 2 && Count("v1") == 0; }));
  g = HttpGet(daemon_->gateway_port(), AppHost("hooks"));
  EXPECT_TRUE(absl::StartsWith(g.headers["x-version"], "v3-"))
      << g.headers["x-version"];
}

}  // namespace
}  // namespace tidal::e2e
