#include "daemon/api_health.h"

#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/fd_io.h"
#include "common/logging.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal {

int FreeDescriptors() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return 1 << 20;
  std::error_code ec;
  int open = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++open;
  }
  if (ec) return 0;  // could not even list them: none to spare
  return static_cast<int>(rl.rlim_cur) - open;
}

namespace {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};

// Connects to `target` ("host:port", "[::1]:port"), sends a TLS ClientHello
// and waits for the server's answer, all within `deadline`. The handshake is
// left unfinished (no certificate is checked or sent): the server sees a
// client that went away, nothing it logs as a failed handshake.
absl::Status ProbeTls(const std::string& target, absl::Duration deadline) {
  const absl::Time end = absl::Now() + deadline;
  auto fail = [&](absl::string_view why) {
    return absl::UnavailableError(absl::StrCat(
        "the API on ", target, " did not answer a TLS handshake within ",
        absl::FormatDuration(deadline), ": ", why));
  };
  auto colon = target.rfind(':');
  if (colon == std::string::npos) return fail("not host:port");
  std::string host = target.substr(0, colon);
  if (host.size() > 1 && host.front() == '[')
    host = host.substr(1, host.size() - 2);
  std::string port = target.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res) {
    return fail("the address does not resolve");
  }
  int fd =
      socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return fail(strerror(errno));
  }
  auto close_fd = absl::MakeCleanup([fd] { close(fd); });
  int rc = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  auto wait = [&](short events) { return common::WaitReady(fd, events, end); };
  if (rc != 0) {
    if (errno != EINPROGRESS) return fail(strerror(errno));
    if (!wait(POLLOUT)) return fail("connect timed out");
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail(strerror(err));
  }
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return fail("no TLS context");
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // owned by ssl now
  SSL_set_connect_state(ssl.get());
  SSL_do_handshake(ssl.get());  // writes the ClientHello to `out`
  ERR_clear_error();
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  if (int e = common::SendAll(fd, absl::string_view(data, n), end); e != 0) {
    return fail(e == ETIMEDOUT ? "sending timed out" : strerror(e));
  }
  for (;;) {
    if (!wait(POLLIN)) return fail("no answer");
    char buf[1];
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r > 0) return absl::OkStatus();
    if (r == 0) return fail("the connection was closed");
    if (errno != EAGAIN && errno != EINTR) return fail(strerror(errno));
  }
}

}  // namespace

class ApiHealth::Impl {
 public:
  Impl(Options o, std::function<absl::Status()> restart)
      : opts(std::move(o)),
        restart(std::move(restart)),
        log(GetLogger("api-health")) {}

  absl::Status Probe() const {
    if (opts.tls) return ProbeTls(opts.target, opts.deadline);
    grpc::ChannelArguments args;
    // A connection of its own (not one shared with an earlier probe): an
    // open connection keeps working after the listener has stopped.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    auto channel = grpc::CreateCustomChannel(
        opts.target, grpc::InsecureChannelCredentials(), args);
    auto stub = v1::Tidal::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + opts.deadline));
    ctx.set_wait_for_ready(true);  // wait for the connection within deadline
    v1::VersionRequest req;
    v1::VersionResponse resp;
    grpc::Status st = stub->Version(&ctx, req, &resp);
    if (st.ok()) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat(
        "the API on ", opts.target, " did not answer Version within ",
        absl::FormatDuration(opts.deadline), ": ", st.error_message()));
  }

  void ProbeAndAct() {
    bool spare = FreeDescriptors() >= opts.min_free_fds;
    absl::Status st = Probe();
    bool restart_now = false;
    {
      absl::MutexLock lock(&mu);
      last_probe = absl::Now();
      healthy = st.ok();
      if (st.ok()) {
        if (failures > 0) log->info("the API answers again");
        failures = 0;
      } else if (spare) {
        ++failures;
        restart_now = failures >= opts.failures_before_restart;
      }
    }
    if (!st.ok()) {
      log->warn("{}{}", std::string(st.message()),
                spare ? "" : " (the process is out of file descriptors)");
    }
    if (!restart_now) return;
    log->error(
        "the API has not answered {} probes in a row although descriptors "
        "are free (its listener stops after a failed accept, e.g. EMFILE): "
        "restarting the API server",
        opts.failures_before_restart);
    absl::Status rs = restart();
    if (!rs.ok()) {
      log->error("restarting the API server failed: {}", rs.ToString());
    }
    absl::MutexLock lock(&mu);
    failures = 0;
  }

  void Loop() {
    for (;;) {
      {
        absl::MutexLock lock(&mu);
        if (mu.AwaitWithTimeout(absl::Condition(&stopping), opts.period))
          return;
      }
      ProbeAndAct();
    }
  }

  const Options opts;
  const std::function<absl::Status()> restart;
  std::shared_ptr<spdlog::logger> log;
  std::thread thread;

  mutable absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool healthy ABSL_GUARDED_BY(mu) = false;
  int failures ABSL_GUARDED_BY(mu) = 0;
  absl::Time last_probe ABSL_GUARDED_BY(mu) = absl::InfinitePast();
};

ApiHealth::ApiHealth(Options options, std::function<absl::Status()> restart)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(restart))) {}

ApiHealth::~ApiHealth() { Stop(); }

void ApiHealth::Start() {
  impl_->ProbeAndAct();
  impl_->thread = std::thread([this] { impl_->Loop(); });
}

void ApiHealth::Stop() {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stopping = true;
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool ApiHealth::Healthy() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->healthy && absl::Now() - impl_->last_probe <=
                               3 * impl_->opts.period + impl_->opts.deadline;
}

absl::Status ApiHealth::Probe() const { return impl_->Probe(); }

std::string ApiHealth::DialTarget(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return listen;
  std::string host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  if (host.empty() || host == "0.0.0.0" || host == "*") host = "127.0.0.1";
  if (host == "[::]" || host == "::") host = "[::1]";
  return absl::StrCat(host, ":", port);
}

}  // namespace tidal
