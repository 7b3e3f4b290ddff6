// tidal-grpc-echo: a small gRPC server (the Echo service of echo.proto) for
// the gateway's gRPC tests and benchmarks. Every reply carries the serving
// instance's version and pid.
//
//   tidal-grpc-echo [--port N] [--host ADDR] [--version S]
//   env: PORT (8080), HOST (127.0.0.1), VERSION (else TIDAL_REVISION, else v1)
//
// Insecure (plaintext HTTP/2) on HOST:PORT. SIGTERM/SIGINT: stop accepting,
// let running calls finish for up to 3 s, cancel the rest, exit 0.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "grpc_echo/echo.grpc.pb.h"

namespace {

using tidal::examples::Echo;
using tidal::examples::EchoReply;
using tidal::examples::EchoRequest;
using tidal::examples::FailRequest;
using tidal::examples::StreamRequest;

struct Config {
  std::string host = "127.0.0.1";
  std::string port = "8080";
  std::string version = "v1";
};

Config ParseConfig(int argc, char** argv) {
  Config c;
  if (const char* v = std::getenv("HOST")) c.host = v;
  if (const char* v = std::getenv("PORT")) c.port = v;
  if (const char* v = std::getenv("TIDAL_REVISION")) c.version = v;
  if (const char* v = std::getenv("VERSION")) c.version = v;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc ||
        (flag != "--host" && flag != "--port" && flag != "--version")) {
      std::fprintf(stderr,
                   "usage: tidal-grpc-echo [--port N] [--host ADDR] "
                   "[--version S]\n");
      std::exit(2);
    }
    std::string value = argv[++i];
    if (flag == "--host") c.host = value;
    if (flag == "--port") c.port = value;
    if (flag == "--version") c.version = value;
  }
  return c;
}

// The service. Thread-safe: handlers share only constant fields.
class EchoService final : public Echo::Service {
 public:
  explicit EchoService(std::string version)
      : version_(std::move(version)),
        instance_(std::getenv("TIDAL_INSTANCE") ? std::getenv("TIDAL_INSTANCE")
                                                : ""),
        pid_(static_cast<int>(getpid())) {}

  grpc::Status Unary(grpc::ServerContext*, const EchoRequest* req,
                     EchoReply* reply) override {
    Fill(req->message(), 0, reply);
    return grpc::Status::OK;
  }

  grpc::Status ServerStream(grpc::ServerContext* ctx, const StreamRequest* req,
                            grpc::ServerWriter<EchoReply>* writer) override {
    const auto interval = std::chrono::milliseconds(req->interval_ms());
    auto next = std::chrono::steady_clock::now();
    for (int i = 0; i < req->count(); ++i) {
      if (i > 0) {
        next += interval;
        // Sleep in slices so a cancelled call (deadline, client gone,
        // shutdown) ends promptly.
        while (std::chrono::steady_clock::now() < next) {
          if (ctx->IsCancelled()) return {grpc::StatusCode::CANCELLED, ""};
          std::this_thread::sleep_for(
              std::min<std::chrono::steady_clock::duration>(
                  next - std::chrono::steady_clock::now(),
                  std::chrono::milliseconds(20)));
        }
      }
      EchoReply reply;
      Fill(req->message(), i, &reply);
      if (!writer->Write(reply)) return {grpc::StatusCode::CANCELLED, ""};
    }
    return grpc::Status::OK;
  }

  grpc::Status Bidi(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<EchoReply, EchoRequest>* stream) override {
    EchoRequest req;
    for (int64_t i = 0; stream->Read(&req); ++i) {
      EchoReply reply;
      Fill(req.message(), i, &reply);
      if (!stream->Write(reply)) return {grpc::StatusCode::CANCELLED, ""};
    }
    return grpc::Status::OK;
  }

  grpc::Status Fail(grpc::ServerContext*, const FailRequest* req,
                    EchoReply* reply) override {
    if (req->code() <= 0 || req->code() > 16) {  // OK or not a code
      Fill(req->message(), 0, reply);
      return grpc::Status::OK;
    }
    return {static_cast<grpc::StatusCode>(req->code()), req->message()};
  }

 private:
  void Fill(const std::string& message, int64_t seq, EchoReply* reply) const {
    reply->set_message(message);
    reply->set_seq(seq);
    reply->set_version(version_);
    reply->set_instance(instance_);
    reply->set_pid(pid_);
  }

  const std::string version_;
  const std::string instance_;
  const int pid_;
};

}  // namespace

int main(int argc, char** argv) {
  const Config config = ParseConfig(argc, argv);
  // Block the stop signals before gRPC starts its threads; main waits for
  // them with sigwait.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  EchoService service(config.version);
  grpc::ServerBuilder builder;
  const std::string address = config.host + ":" + config.port;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "tidal-grpc-echo: cannot listen on %s\n",
                 address.c_str());
    return 1;
  }
  std::fprintf(stderr, "tidal-grpc-echo %s listening on %s (pid %d)\n",
               config.version.c_str(), address.c_str(),
               static_cast<int>(getpid()));

  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "tidal-grpc-echo: signal %d, stopping\n", sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
  server->Wait();
  return 0;
}
