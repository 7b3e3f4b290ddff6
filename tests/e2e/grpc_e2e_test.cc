// gRPC apps through the gateway (issue 12; docs/gateway.md, "Protocols"):
// a real tidald, real instances of tidal-grpc-echo (examples/grpc_echo) with
// `template.protocol: grpc`, and a real gRPC C++ client speaking h2c with
// prior knowledge to the gateway's plain port, routed by :authority.
// Unary, server streaming, bidi streaming, scale from zero, grpc-timeout,
// and gRPC statuses in the request metrics.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "e2e/daemon_test.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"
#include "grpc_echo/echo.grpc.pb.h"

namespace tidal::e2e {
namespace {

using ::tidal::examples::Echo;
using ::tidal::examples::EchoReply;
using ::tidal::examples::EchoRequest;
using ::tidal::examples::FailRequest;
using ::tidal::examples::StreamRequest;

// An app running tidal-grpc-echo; `version` (the test's marker) is in every
// reply and on the instances' command lines. `scaling`: YAML under spec.
std::string AppYaml(const std::string& name, const std::string& version,
                    const std::string& scaling) {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata: {name: )",
                      name, R"(}
spec:
)",
                      scaling, R"(  template:
    protocol: grpc
    command: [")",
                      BuildDir(), R"(/examples/tidal-grpc-echo"]
    args: ["--version", ")",
                      version, R"("]
    readinessProbe:
      tcpSocket: {}
      periodSeconds: 1
    terminationGracePeriodSeconds: 5
)");
}

std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

// The value of `tidal_gateway_app_requests_total` for the app and status
// class ("2xx".."5xx") on the admin port's /metrics; 0 when absent, -1 when
// /metrics does not answer.
int64_t AppRequests(int admin_port, const std::string& app,
                    const std::string& code_class) {
  HttpResponse m = HttpGet(admin_port, "127.0.0.1", "/metrics");
  if (m.status != 200) return -1;
  const std::string key = absl::StrCat(
      "tidal_gateway_app_requests_total{namespace=\"default\",app=\"", app,
      "\",code_class=\"", code_class, "\"} ");
  size_t at = m.body.find(key);
  if (at == std::string::npos) return 0;
  return std::atoll(m.body.c_str() + at + key.size());
}

class GrpcE2ETest : public DaemonTest {
 protected:
  // Applies the app and, with `wait`, waits until its instances are ready.
  void ApplyApp(const std::string& name, const std::string& scaling,
                bool wait) {
    std::string path = dir_.path() + "/" + name + ".yaml";
    WriteFile(path, AppYaml(name, marker_, scaling));
    std::vector<std::string> args = {"apply", "-f", path};
    if (wait) args.insert(args.end(), {"--wait", "--timeout", "90s"});
    CommandResult r = daemon_->Ctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  // A stub on a channel to the gateway's plain port with the app's
  // authority (h2c with prior knowledge, as an insecure gRPC channel is).
  std::unique_ptr<Echo::Stub> Stub(const std::string& app) {
    grpc::ChannelArguments args;
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, AppHost(app));
    channel_ = grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", daemon_->gateway_port()),
        grpc::InsecureChannelCredentials(), args);
    return Echo::NewStub(channel_);
  }
  std::string Describe(const std::string& app) {
    return absl::StrCat(daemon_->Ctl({"get", "app", app, "-o", "json"}).out,
                        daemon_->Ctl({"get", "instances"}).out, "see ",
                        daemon_->log_path());
  }

  std::shared_ptr<grpc::Channel> channel_;
};

// (a) 100 unary calls through the gateway succeed, each answered by the
// app's instance.
TEST_F(GrpcE2ETest, UnaryCallsSucceed) {
  ApplyApp("echo", "  replicas: 1\n", /*wait=*/true);
  auto stub = Stub("echo");
  for (int i = 0; i < 100; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    EchoRequest req;
    req.set_message(absl::StrCat("hello ", i));
    EchoReply reply;
    grpc::Status st = stub->Unary(&ctx, req, &reply);
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_code() << " "
                         << st.error_message() << "\n"
                         << Describe("echo");
    EXPECT_EQ(reply.message(), req.message());
    EXPECT_EQ(reply.version(), marker_);
    EXPECT_GT(reply.pid(), 0);
  }
  EXPECT_EQ(Count(), 1);
  // Each call is one request of the app.
  EXPECT_TRUE(Eventually([&] {
    return AppRequests(daemon_->admin_port(), "echo", "2xx") == 100;
  })) << AppRequests(daemon_->admin_port(), "echo", "2xx");
}

// (b) A server stream delivers all its messages, in order.
TEST_F(GrpcE2ETest, ServerStreamDeliversEveryMessageInOrder) {
  ApplyApp("echo", "  replicas: 1\n", /*wait=*/true);
  auto stub = Stub("echo");
  constexpr int kCount = 50;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(30)));
  StreamRequest req;
  req.set_message("tick");
  req.set_count(kCount);
  req.set_interval_ms(10);
  auto reader = stub->ServerStream(&ctx, req);
  EchoReply reply;
  int n = 0;
  while (reader->Read(&reply)) {
    EXPECT_EQ(reply.seq(), n) << "out of order";
    EXPECT_EQ(reply.message(), "tick");
    ++n;
  }
  grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_EQ(n, kCount);
}

// (c) Bidi: 1,000 messages on one stream, written while replies are read,
// each echoed once and in order.
TEST_F(GrpcE2ETest, BidiEchoesAThousandMessagesInOrder) {
  ApplyApp("echo", "  replicas: 1\n", /*wait=*/true);
  auto stub = Stub("echo");
  constexpr int kMessages = 1000;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(60)));
  auto stream = stub->Bidi(&ctx);
  std::thread writer([&] {
    EchoRequest req;
    for (int i = 0; i < kMessages; ++i) {
      req.set_message(absl::StrCat("message ", i));
      if (!stream->Write(req)) return;
    }
    stream->WritesDone();
  });
  EchoReply reply;
  int n = 0;
  while (stream->Read(&reply)) {
    if (reply.seq() != n || reply.message() != absl::StrCat("message ", n)) {
      ADD_FAILURE() << "reply " << n << " is " << reply.ShortDebugString();
      ctx.TryCancel();
      break;
    }
    ++n;
  }
  writer.join();
  grpc::Status st = stream->Finish();
  EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_EQ(n, kMessages);
}

// (d) Scale from zero: the app (minReplicas 0) serves a call, goes back to
// zero instances after its grace, and a unary call then waits in the
// activator for a new instance and succeeds within its 30 s deadline.
TEST_F(GrpcE2ETest, UnaryCallFromZeroSucceeds) {
  ApplyApp("zero", R"(  scaling:
    minReplicas: 0
    maxReplicas: 1
    metric: concurrency
    target: 100
    scaleToZeroGracePeriod: 3s
)",
           /*wait=*/false);
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(
        daemon_->Ctl({"get", "app", "zero", "-o", "json"}).out,
        "\"lastReason\"");
  })) << Describe("zero");
  auto stub = Stub("zero");
  auto call = [&](const std::string& message) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(30)));
    EchoRequest req;
    req.set_message(message);
    EchoReply reply;
    const absl::Time start = absl::Now();
    grpc::Status st = stub->Unary(&ctx, req, &reply);
    std::cout << "[ figures  ] unary call from zero (" << message
              << "): " << absl::FormatDuration(absl::Now() - start) << "\n";
    EXPECT_TRUE(st.ok()) << message << ": " << st.error_code() << " "
                         << st.error_message() << "\n"
                         << Describe("zero");
    EXPECT_EQ(reply.message(), message);
    EXPECT_EQ(reply.version(), marker_);
  };
  // Applied at zero: the first call starts the first instance.
  EXPECT_EQ(Count(), 0);
  call("first");
  EXPECT_EQ(Count(), 1);
  // Idle past its grace: back to zero instances.
  ASSERT_TRUE(Eventually([&] { return Count() == 0; }, absl::Seconds(60)))
      << Describe("zero");
  call("again");
  EXPECT_EQ(Count(), 1);
}

// (e) A grpc-timeout shorter than a slow server stream: the call ends with
// DEADLINE_EXCEEDED at about its deadline, after the messages sent before
// it; the channel works afterwards.
TEST_F(GrpcE2ETest, GrpcTimeoutEndsASlowStream) {
  ApplyApp("echo", "  replicas: 1\n", /*wait=*/true);
  auto stub = Stub("echo");
  grpc::ClientContext ctx;
  const absl::Time start = absl::Now();
  ctx.set_deadline(In(absl::Milliseconds(1500)));
  StreamRequest req;
  req.set_message("slow");
  req.set_count(100);  // 10 s of stream
  req.set_interval_ms(100);
  auto reader = stub->ServerStream(&ctx, req);
  EchoReply reply;
  int n = 0;
  while (reader->Read(&reply)) ++n;
  grpc::Status st = reader->Finish();
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << st.error_code() << " " << st.error_message();
  EXPECT_GE(n, 3) << "messages before the deadline were held back";
  EXPECT_LT(n, 100);
  EXPECT_LT(took, absl::Seconds(5));

  grpc::ClientContext after;
  after.set_deadline(In(absl::Seconds(10)));
  EchoRequest hello;
  hello.set_message("after");
  EXPECT_TRUE(stub->Unary(&after, hello, &reply).ok());
}

// (f) gRPC statuses in the app's metrics: INTERNAL is a 5xx (an error for
// the canary analysis), NOT_FOUND a 4xx, not a 5xx.
TEST_F(GrpcE2ETest, GrpcStatusesAreCountedByClass) {
  ApplyApp("echo", "  replicas: 1\n", /*wait=*/true);
  auto stub = Stub("echo");
  auto fail = [&](grpc::StatusCode code) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    FailRequest req;
    req.set_code(code);
    req.set_message("asked to fail");
    EchoReply reply;
    grpc::Status st = stub->Fail(&ctx, req, &reply);
    EXPECT_EQ(st.error_code(), code) << st.error_message();
    EXPECT_EQ(st.error_message(), "asked to fail");
  };
  for (int i = 0; i < 3; ++i) fail(grpc::StatusCode::INTERNAL);
  for (int i = 0; i < 2; ++i) fail(grpc::StatusCode::NOT_FOUND);
  const int port = daemon_->admin_port();
  EXPECT_TRUE(Eventually([&] {
    return AppRequests(port, "echo", "5xx") == 3 &&
           AppRequests(port, "echo", "4xx") == 2;
  })) << "5xx "
      << AppRequests(port, "echo", "5xx") << ", 4xx "
      << AppRequests(port, "echo", "4xx") << ", 2xx "
      << AppRequests(port, "echo", "2xx");
  // The trailers-only responses are HTTP 200: none is counted as a success.
  EXPECT_EQ(AppRequests(port, "echo", "2xx"), 0);
}

}  // namespace
}  // namespace tidal::e2e
