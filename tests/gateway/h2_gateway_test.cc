// The gateway's HTTP/2 relay (h2_relay.h) with real gRPC on 127.0.0.1: a
// gRPC C++ client speaking h2c with prior knowledge to a Gateway on port 0,
// in front of in-process gRPC servers (examples/grpc_echo/echo.proto).

#include <grpcpp/grpcpp.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "e2e/e2e_util.h"
#include "e2e/test_ca.h"
#include "fakes/eventually.h"
#include "gateway/gateway.h"
#include "grpc_echo/echo.grpc.pb.h"
#include "gtest/gtest.h"
#include "test_upstream.h"

namespace tidal::gateway {
namespace {

using tidal::examples::Echo;
using tidal::examples::EchoReply;
using tidal::examples::EchoRequest;
using tidal::examples::FailRequest;
using tidal::examples::StreamRequest;
using ::tidal::testing::Eventually;

const char kHost[] = "echo.default.tidal.localhost";

// The echo service, recording what it saw.
class EchoService final : public Echo::Service {
 public:
  explicit EchoService(std::string name) : name_(std::move(name)) {}

  grpc::Status Unary(grpc::ServerContext* ctx, const EchoRequest* req,
                     EchoReply* reply) override {
    calls++;
    auto md = ctx->client_metadata().find("x-forwarded-for");
    if (md != ctx->client_metadata().end()) {
      last_forwarded_for = std::string(md->second.data(), md->second.size());
    }
    reply->set_message(req->message());
    reply->set_instance(name_);
    return grpc::Status::OK;
  }

  grpc::Status ServerStream(grpc::ServerContext* ctx, const StreamRequest* req,
                            grpc::ServerWriter<EchoReply>* writer) override {
    calls++;
    for (int i = 0; i < req->count(); ++i) {
      if (i > 0 && req->interval_ms() > 0) {
        // A slow producer (the server's pace, not a test's wait).
        std::this_thread::sleep_for(
            std::chrono::milliseconds(req->interval_ms()));
      }
      EchoReply r;
      r.set_message(req->message());
      r.set_seq(i);
      r.set_instance(name_);
      if (ctx->IsCancelled() || !writer->Write(r)) {
        cancelled++;
        return grpc::Status::CANCELLED;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Bidi(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<EchoReply, EchoRequest>* stream) override {
    calls++;
    EchoRequest req;
    int64_t seq = 0;
    while (stream->Read(&req)) {
      EchoReply r;
      r.set_message(req.message());
      r.set_seq(seq++);
      if (!stream->Write(r)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status Fail(grpc::ServerContext*, const FailRequest* req,
                    EchoReply*) override {
    calls++;
    return grpc::Status(static_cast<grpc::StatusCode>(req->code()),
                        req->message());
  }

  std::atomic<int> calls{0};
  std::atomic<int> cancelled{0};
  std::string last_forwarded_for;  // written by Unary before it answers

 private:
  std::string name_;
};

// A gRPC server on a free loopback port.
class EchoServer {
 public:
  explicit EchoServer(std::string name) : service(std::move(name)) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    b.SetMaxReceiveMessageSize(16 << 20);
    server = b.BuildAndStart();
  }
  ~EchoServer() { server->Shutdown(std::chrono::system_clock::now()); }
  EchoService service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

Endpoint Ep(const std::string& id, int port) {
  Endpoint e;
  e.instance_id = id;
  e.host = "127.0.0.1";
  e.port = port;
  return e;
}

Route EchoRoute(std::vector<Endpoint> eps, bool h2 = true) {
  Route r;
  r.ns = "default";
  r.app = "echo";
  r.h2 = h2;
  RevisionRoute rev;
  rev.revision = 1;
  rev.weight_percent = 100;
  rev.endpoints = std::move(eps);
  r.revisions.push_back(rev);
  return r;
}

class H2GatewayTest : public ::testing::Test {
 protected:
  void StartGateway(GatewayOptions o = {}) {
    o.port = 0;
    if (o.threads == 0) o.threads = 2;
    gw_ = std::make_unique<Gateway>(std::move(o));
    ASSERT_TRUE(gw_->Start().ok());
  }
  std::unique_ptr<Echo::Stub> Stub(const std::string& host = kHost) {
    grpc::ChannelArguments args;
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, host);
    args.SetMaxReceiveMessageSize(16 << 20);
    auto channel =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", gw_->port()),
                                  grpc::InsecureChannelCredentials(), args);
    return Echo::NewStub(channel);
  }
  static void Deadline(grpc::ClientContext* ctx, int ms) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(ms));
  }
  CumulativeTraffic AppTraffic() {
    for (const auto& t : gw_->Traffic()) {
      if (t.ns == "default" && t.app == "echo" && t.revision == 0) return t;
    }
    return {};
  }
  std::unique_ptr<Gateway> gw_;
  e2e::TempDir testing_dir_;
};

TEST_F(H2GatewayTest, UnaryStreamingAndBidiRpcsAreRelayed) {
  EchoServer a("a");
  StartGateway();
  gw_->SetRoute(EchoRoute({Ep("a", a.port)}));
  auto stub = Stub();

  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext ctx;
    Deadline(&ctx, 10000);
    EchoRequest req;
    req.set_message(absl::StrCat("hello ", i));
    EchoReply reply;
    grpc::Status st = stub->Unary(&ctx, req, &reply);
    ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
    EXPECT_EQ(reply.message(), req.message());
    EXPECT_EQ(reply.instance(), "a");
  }
  EXPECT_EQ(a.service.last_forwarded_for, "127.0.0.1");

  {  // A 4 MiB message: far beyond the gateway's 256 KiB stream window.
    grpc::ClientContext ctx;
    Deadline(&ctx, 20000);
    EchoRequest req;
    req.set_message(std::string(4 << 20, 'x'));
    EchoReply reply;
    grpc::Status st = stub->Unary(&ctx, req, &reply);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(reply.message().size(), size_t{4 << 20});
  }

  {  // Server streaming: every message, in order.
    grpc::ClientContext ctx;
    Deadline(&ctx, 20000);
    StreamRequest req;
    req.set_message("s");
    req.set_count(200);
    auto reader = stub->ServerStream(&ctx, req);
    EchoReply reply;
    int64_t next = 0;
    while (reader->Read(&reply)) {
      ASSERT_EQ(reply.seq(), next);
      ++next;
    }
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(next, 200);
  }

  {  // Bidirectional: 1,000 messages, each answered before the next is sent.
    grpc::ClientContext ctx;
    Deadline(&ctx, 30000);
    auto stream = stub->Bidi(&ctx);
    for (int i = 0; i < 1000; ++i) {
      EchoRequest req;
      req.set_message(absl::StrCat("m", i));
      ASSERT_TRUE(stream->Write(req)) << i;
      EchoReply reply;
      ASSERT_TRUE(stream->Read(&reply)) << i;
      ASSERT_EQ(reply.message(), req.message());
      ASSERT_EQ(reply.seq(), i);
    }
    stream->WritesDone();
    EchoReply extra;
    EXPECT_FALSE(stream->Read(&extra));
    EXPECT_TRUE(stream->Finish().ok());
  }

  // Every stream ended its lease, and each counted as one request.
  EXPECT_TRUE(Eventually([&] { return gw_->InFlight("a") == 0; }));
  EXPECT_TRUE(Eventually([&] { return AppTraffic().requests == 53; }))
      << AppTraffic().requests;
  EXPECT_EQ(AppTraffic().classes[1], 53u);  // 2xx
}

TEST_F(H2GatewayTest, GrpcStatusesCountAsHttpClassesInTheMetrics) {
  EchoServer a("a");
  StartGateway();
  gw_->SetRoute(EchoRoute({Ep("a", a.port)}));
  auto stub = Stub();
  auto fail = [&](grpc::StatusCode code) {
    grpc::ClientContext ctx;
    Deadline(&ctx, 10000);
    FailRequest req;
    req.set_code(code);
    req.set_message("asked to");
    EchoReply reply;
    return stub->Fail(&ctx, req, &reply);
  };
  for (int i = 0; i < 3; ++i) {
    grpc::Status st = fail(grpc::StatusCode::INTERNAL);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INTERNAL);
    EXPECT_EQ(st.error_message(), "asked to");
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(fail(grpc::StatusCode::NOT_FOUND).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_TRUE(fail(grpc::StatusCode::OK).ok());
  ASSERT_TRUE(Eventually([&] { return AppTraffic().requests == 6; }));
  CumulativeTraffic t = AppTraffic();
  EXPECT_EQ(t.classes[4], 3u);  // INTERNAL: 500
  EXPECT_EQ(t.classes[3], 2u);  // NOT_FOUND: 404
  EXPECT_EQ(t.classes[1], 1u);
}

// A unary call that the gateway holds (no instance ready) is answered once
// the app's route gets an instance.
void ExpectHeldThenServed(Gateway* gw, Echo::Stub* stub,
                          const std::string& message) {
  std::atomic<bool> done{false};
  grpc::Status result;
  EchoReply reply;
  std::thread caller([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    EchoRequest req;
    req.set_message(message);
    result = stub->Unary(&ctx, req, &reply);
    done = true;
  });
  EXPECT_TRUE(Eventually([&] { return gw->Queued("default", "echo") == 1; }));
  EXPECT_FALSE(done);
  EchoServer a("a");
  gw->SetRoute(EchoRoute({Ep("a", a.port)}));
  caller.join();
  EXPECT_TRUE(result.ok()) << result.error_message();
  EXPECT_EQ(reply.message(), message);
}

TEST_F(H2GatewayTest, StreamsAreHeldAtZeroAndServedWhenAnInstanceIsReady) {
  StartGateway();
  gw_->SetRoute(EchoRoute({}));  // known app, no ready instance
  ExpectHeldThenServed(gw_.get(), Stub().get(), "from zero");
}

TEST_F(H2GatewayTest, AStreamSentBeforeTheAppsRouteWaitsAndTakesItsProtocol) {
  // The app exists but its route is not set yet: the call waits under a
  // provisional route, then goes out as HTTP/2 (the app's own route says
  // h2), not as the provisional route's HTTP/1.
  GatewayOptions o;
  o.app_exists = [](const std::string& ns, const std::string& app) {
    return ns == "default" && app == "echo";
  };
  StartGateway(o);
  ExpectHeldThenServed(gw_.get(), Stub().get(), "before the route");
}

TEST_F(H2GatewayTest, ErrorsTheGatewayAnswersAreGrpcStatuses) {
  auto demands = std::make_shared<std::atomic<int>>(0);
  GatewayOptions o;
  o.on_demand = [demands](const std::string&, const std::string&) {
    ++*demands;
  };
  StartGateway(o);
  EchoRequest req;
  req.set_message("x");
  EchoReply reply;
  {  // No app for the host: UNIMPLEMENTED, as a 404 would be.
    auto stub = Stub("nothing.default.tidal.localhost");
    grpc::ClientContext ctx;
    Deadline(&ctx, 10000);
    grpc::Status st = stub->Unary(&ctx, req, &reply);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_NE(st.error_message().find("no app for host"), std::string::npos)
        << st.error_message();
  }
  {  // Nothing listens where the instance should: UNAVAILABLE, after the
     // gateway tried it (and the retries found nothing else).
    int dead_port;
    {
      EchoServer gone("gone");
      dead_port = gone.port;
    }
    gw_->SetRoute(EchoRoute({Ep("gone", dead_port)}));
    auto stub = Stub();
    grpc::ClientContext ctx;
    Deadline(&ctx, 10000);
    grpc::Status st = stub->Unary(&ctx, req, &reply);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE)
        << st.error_message();
    EXPECT_TRUE(Eventually([&] { return gw_->InFlight("gone") == 0; }));
  }
  {  // An app of HTTP/1.1: UNIMPLEMENTED saying what to set, the instance
     // not asked (it would answer its own 404, or a 200 without trailers).
    testing::TestUpstream plain("plain-1");
    gw_->SetRoute(EchoRoute({Ep("plain-1", plain.port())}, /*h2=*/false));
    auto stub = Stub();
    grpc::ClientContext ctx;
    Deadline(&ctx, 10000);
    grpc::Status st = stub->Unary(&ctx, req, &reply);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_EQ(st.error_message(),
              "app echo in namespace default speaks HTTP/1.1, not gRPC: set "
              "its spec.template.protocol to grpc (or h2c)");
    EXPECT_EQ(plain.requests(), 0);
    EXPECT_TRUE(Eventually([&] { return gw_->InFlight("plain-1") == 0; }));
  }
  {  // The same at zero: refused at once, without waking the app.
    gw_->SetRoute(EchoRoute({}, /*h2=*/false));
    auto stub = Stub();
    grpc::ClientContext ctx;
    Deadline(&ctx, 10000);
    grpc::Status st = stub->Unary(&ctx, req, &reply);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNIMPLEMENTED)
        << st.error_message();
    EXPECT_EQ(demands->load(), 0);
  }
}

// HTTP/2 clients of an app that speaks HTTP/1.1: each stream is one
// HTTP/1.1 exchange (pooled keep-alive connections), bodies both ways,
// status and fields relayed; reached with prior knowledge, by Upgrade: h2c,
// and over TLS (ALPN h2).
TEST_F(H2GatewayTest, Http2ClientsReachHttp1Apps) {
  testing::TestUpstream up("plain-1");
  StartGateway();
  Route r = EchoRoute({Ep("plain-1", up.port())}, /*h2=*/false);
  gw_->SetRoute(r);
  const std::string base = absl::StrCat("http://127.0.0.1:", gw_->port());
  auto curl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/curl",
                                     "-sS",
                                     "--max-time",
                                     "20",
                                     "-H",
                                     absl::StrCat("Host: ", kHost)};
    argv.insert(argv.end(), args.begin(), args.end());
    return e2e::Run(argv);
  };
  // Three streams at once on one connection (nghttp; curl 7.88 cannot reuse
  // a prior-knowledge connection, against nginx either).
  auto many = e2e::Run({"/usr/bin/nghttp", "-v", "-H",
                        absl::StrCat(":authority: ", kHost), base + "/",
                        base + "/status?code=404", base + "/bytes?n=100000"});
  ASSERT_EQ(many.exit_code, 0) << many.err;
  auto count = [](const std::string& text, const std::string& what) {
    int n = 0;
    for (size_t at = text.find(what); at != std::string::npos;
         at = text.find(what, at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(count(many.out, ":status: 200"), 2) << many.out;
  EXPECT_EQ(count(many.out, ":status: 404"), 1) << many.out;
  // A streamed upload (no length: chunked to the instance) and a large
  // streamed download, beyond every window.
  const std::string file = testing_dir_.path() + "/upload.bin";
  e2e::WriteFile(file, std::string(3 << 20, 'u'));
  auto upload =
      curl({"--http2-prior-knowledge", "-H", "Transfer-Encoding: chunked",
            "--data-binary", "@" + file, base + "/upload"});
  ASSERT_EQ(upload.exit_code, 0) << upload.err;
  EXPECT_TRUE(absl::StartsWith(upload.out, absl::StrCat(3 << 20, " ")))
      << upload.out;
  auto download =
      curl({"--http2-prior-knowledge", "-o", "/dev/null", "-w",
            "%{size_download} %{http_code}", base + "/bytes?n=5000000"});
  EXPECT_EQ(download.out, "5000000 200") << download.err;
  // Headers the instance saw: the gateway's, none of HTTP/2's own.
  auto headers = curl({"--http2-prior-knowledge", base + "/echo-headers"});
  EXPECT_TRUE(absl::StrContains(headers.out, "X-Forwarded-For: 127.0.0.1") ||
              absl::StrContains(headers.out, "x-forwarded-for: 127.0.0.1"))
      << headers.out;
  // Upgrade: h2c from HTTP/1.1 (curl --http2 on http://): the first request
  // is answered as stream 1, the next on the same connection.
  auto upgraded =
      curl({"--http2", "-w", " %{http_version}\n", base + "/", base + "/"});
  ASSERT_EQ(upgraded.exit_code, 0) << upgraded.err;
  EXPECT_EQ(upgraded.out, "plain-1 2\nplain-1 2\n");
  // gRPC-Web is HTTP to the gateway: relayed to an app of HTTP/1.1 (whose
  // server or proxy speaks it), where a gRPC call is refused.
  auto web = curl({"--http2-prior-knowledge", "-H",
                   "content-type: application/grpc-web+proto", "-w",
                   " %{http_code}", "--data-binary", "x", base + "/"});
  EXPECT_EQ(web.out, "plain-1 200") << web.err;
  EXPECT_TRUE(Eventually([&] { return gw_->InFlight("plain-1") == 0; }));
  // Every exchange counted once, by status class.
  ASSERT_TRUE(Eventually([&] { return AppTraffic().requests == 9; }))
      << AppTraffic().requests;
  EXPECT_EQ(AppTraffic().classes[3], 1u);
}

// HTTP/2 clients get HTTP/1.1's limits (413, 431, the response's), and an
// HTTP/1.1 app's event stream as it is written.
TEST_F(H2GatewayTest, Http2ClientsGetTheLimitsAndTheEventsAsTheyCome) {
  testing::TestUpstream up("plain-1");
  GatewayOptions o;
  o.max_body_bytes = 1 << 20;
  o.max_response_body_bytes = 100000;
  StartGateway(std::move(o));
  gw_->SetRoute(EchoRoute({Ep("plain-1", up.port())}, /*h2=*/false));
  const std::string base = absl::StrCat("http://127.0.0.1:", gw_->port());
  auto code = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/curl",
                                     "-sS",
                                     "--http2-prior-knowledge",
                                     "--max-time",
                                     "20",
                                     "-o",
                                     "/dev/null",
                                     "-w",
                                     "%{http_code}",
                                     "-H",
                                     absl::StrCat("Host: ", kHost)};
    argv.insert(argv.end(), args.begin(), args.end());
    return e2e::Run(argv);
  };
  const std::string big = testing_dir_.path() + "/big.bin";
  e2e::WriteFile(big, std::string(2 << 20, 'b'));
  // The body: by its length, and streamed without one.
  EXPECT_EQ(code({"--data-binary", "@" + big, base + "/upload"}).out, "413");
  EXPECT_EQ(code({"-H", "Transfer-Encoding: chunked", "--data-binary",
                  "@" + big, base + "/upload"})
                .out,
            "413");
  // The header.
  EXPECT_EQ(code({"-H", "X-Big: " + std::string(20000, 'x'), base + "/"}).out,
            "431");
  // The response: by its length (502), and cut when chunked.
  EXPECT_EQ(code({base + "/bytes?n=200000"}).out, "502");
  auto cut = code({base + "/chunked?n=200000&chunk=10000"});
  EXPECT_NE(cut.exit_code, 0) << cut.out;
  // Within them, as before.
  EXPECT_EQ(code({base + "/bytes?n=50000"}).out, "200");

  // An event stream: the first event reaches the client while the app still
  // holds the response open.
  const std::string out = testing_dir_.path() + "/events.out";
  e2e::Child curl;
  ASSERT_TRUE(
      curl.Start({"/usr/bin/curl", "-sS", "-N", "--http2-prior-knowledge",
                  "--max-time", "30", "-H", absl::StrCat("Host: ", kHost), "-o",
                  out, base + "/first-then-hold"},
                 testing_dir_.path() + "/curl.log"));
  ASSERT_TRUE(Eventually([&] { return e2e::ReadFile(out) == "first\n"; }))
      << e2e::ReadFile(out);
  EXPECT_EQ(up.holds(), 1);
  EXPECT_TRUE(curl.Running());
  up.ReleaseHolds();
  const int status = curl.Wait(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(e2e::ReadFile(out), "first\nlast\n");
}

TEST_F(H2GatewayTest, TheAppsTimeoutEndsAStreamAndCancelsTheInstancesSide) {
  EchoServer a("a");
  StartGateway();
  Route r = EchoRoute({Ep("a", a.port)});
  r.timeout = absl::Milliseconds(300);
  gw_->SetRoute(r);
  auto stub = Stub();
  grpc::ClientContext ctx;  // no deadline of its own
  StreamRequest req;
  req.set_count(200);
  req.set_interval_ms(50);  // 10 s in all
  auto reader = stub->ServerStream(&ctx, req);
  EchoReply reply;
  int got = 0;
  while (reader->Read(&reply)) ++got;
  grpc::Status st = reader->Finish();
  EXPECT_FALSE(st.ok());
  EXPECT_LT(got, 200);
  EXPECT_TRUE(Eventually([&] { return a.service.cancelled == 1; }));
  EXPECT_TRUE(Eventually([&] { return gw_->InFlight("a") == 0; }));
}

TEST_F(H2GatewayTest, GrpcTimeoutBeforeTheResponseIsDeadlineExceeded) {
  StartGateway();
  gw_->SetRoute(EchoRoute({}));  // held: no instance ever comes
  auto stub = Stub();
  grpc::ClientContext ctx;
  Deadline(&ctx, 300);
  EchoRequest req;
  EchoReply reply;
  grpc::Status st = stub->Unary(&ctx, req, &reply);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The gateway's own deadline ended the held stream too.
  EXPECT_TRUE(Eventually([&] { return gw_->Queued("default", "echo") == 0; }));
}

TEST_F(H2GatewayTest, AClientThatGoesAwayCancelsTheInstancesStream) {
  EchoServer a("a");
  StartGateway();
  gw_->SetRoute(EchoRoute({Ep("a", a.port)}));
  auto stub = Stub();
  {
    grpc::ClientContext ctx;
    StreamRequest req;
    req.set_count(1000);
    req.set_interval_ms(20);
    auto reader = stub->ServerStream(&ctx, req);
    EchoReply reply;
    ASSERT_TRUE(reader->Read(&reply));
    ctx.TryCancel();
    while (reader->Read(&reply)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_TRUE(Eventually([&] { return a.service.cancelled == 1; }));
  EXPECT_TRUE(Eventually([&] { return gw_->InFlight("a") == 0; }));
}

// grpc-timeout bounds a stream in the gateway itself, whatever the client
// does: a client that sends it but never gives up gets 504 at the deadline.
TEST_F(H2GatewayTest, GrpcTimeoutIsEnforcedByTheGateway) {
  testing::TestUpstream up("plain-1");
  StartGateway();
  gw_->SetRoute(EchoRoute({Ep("plain-1", up.port())}, /*h2=*/false));
  const absl::Time start = absl::Now();
  auto r = e2e::Run(
      {"/usr/bin/nghttp", "-v", "-H", absl::StrCat(":authority: ", kHost), "-H",
       "grpc-timeout: 300m",
       absl::StrCat("http://127.0.0.1:", gw_->port(), "/sleep?ms=5000")});
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(absl::StrContains(r.out, ":status: 504")) << r.out << r.err;
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_TRUE(Eventually([&] { return gw_->InFlight("plain-1") == 0; }));
}

// HTTPS: ALPN chooses h2 when the client offers it, whatever the app speaks
// (a gRPC client over TLS; curl to an HTTP/1.1 app).
TEST_F(H2GatewayTest, AlpnChoosesH2) {
  if (!e2e::TestCa::Available()) GTEST_SKIP() << "no openssl command";
  e2e::TempDir dir;
  e2e::TestCa ca(dir.path(), "ca");
  ASSERT_TRUE(ca.ok()) << ca.error();
  ASSERT_TRUE(ca.Issue("site", "site", {"DNS:*.default.tidal.localhost"}));
  EchoServer a("a");
  GatewayOptions o;
  o.tls_port = 0;
  o.tls_certs = {{"", ca.Path("site", ".crt"), ca.Path("site", ".key")}};
  StartGateway(std::move(o));
  gw_->SetRoute(EchoRoute({Ep("a", a.port)}));
  testing::TestUpstream up("plain-1");
  Route plain = EchoRoute({Ep("plain-1", up.port())}, /*h2=*/false);
  plain.app = "plain";
  gw_->SetRoute(plain);

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = e2e::ReadFile(ca.cert());
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(kHost);  // SNI and the name checked
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, kHost);
  auto stub = Echo::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", gw_->tls_port()),
                                grpc::SslCredentials(ssl), args));
  grpc::ClientContext ctx;
  Deadline(&ctx, 10000);
  EchoRequest req;
  req.set_message("over tls");
  EchoReply reply;
  grpc::Status st = stub->Unary(&ctx, req, &reply);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_EQ(reply.message(), "over tls");

  // curl offers h2 and http/1.1, and gets h2; an HTTP/1.1 app answers.
  const std::string host = "plain.default.tidal.localhost";
  const std::string port = std::to_string(gw_->tls_port());
  auto r = e2e::Run({"/usr/bin/curl", "-sS", "--http2", "--max-time", "10",
                     "--cacert", ca.cert(), "--resolve",
                     host + ":" + port + ":127.0.0.1", "-w", " %{http_version}",
                     "https://" + host + ":" + port + "/"});
  EXPECT_EQ(r.out, "plain-1 2") << r.err;
}

// An HTTP/2 connection with no stream open is closed after the idle
// timeout, with GOAWAY.
TEST_F(H2GatewayTest, AnIdleConnectionIsClosed) {
  EchoServer a("a");
  GatewayOptions o;
  o.client_idle_timeout = absl::Milliseconds(300);
  StartGateway(std::move(o));
  gw_->SetRoute(EchoRoute({Ep("a", a.port)}));
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, kHost);
  auto channel =
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", gw_->port()),
                                grpc::InsecureChannelCredentials(), args);
  auto stub = Echo::NewStub(channel);
  grpc::ClientContext ctx;
  Deadline(&ctx, 10000);
  EchoRequest req;
  EchoReply reply;
  ASSERT_TRUE(stub->Unary(&ctx, req, &reply).ok());
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  EXPECT_TRUE(Eventually(
      [&] { return channel->GetState(false) != GRPC_CHANNEL_READY; }));
}

}  // namespace
}  // namespace tidal::gateway
