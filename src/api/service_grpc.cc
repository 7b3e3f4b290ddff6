// TidalService over gRPC: the generated service's adapter, ApiServer and
// StartServer.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "api/api_auth.h"
#include "api/call_limiter.h"
#include "api/client_pacer.h"
#include "api/grpc_status.h"
#include "api/service.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/tls_files.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal {

namespace {

using auth::ApiAuth;
using auth::Principal;

std::string NsOr(const std::string& ns) { return ns.empty() ? "default" : ns; }

// ApiLimits::thread_nice of the running server (one API server per process).
std::atomic<int> api_thread_nice{0};

// Gives the calling thread (a gRPC server thread: it also receives and
// parses the next calls' messages) the API's nice value, once per thread.
void NiceApiThread() {
  thread_local int applied = 0;
  const int want = api_thread_nice.load(std::memory_order_relaxed);
  if (want <= applied) return;
  applied = want;  // tried once, whatever the outcome
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), want) !=
      0) {
    GetLogger("api")->debug("setpriority({}) failed: errno {}", want, errno);
  }
}

// One API call as the guard sees it: who makes it (the bearer token in the
// `authorization` metadata), what it does (verb and resource), on which
// objects, and how it ended, for the authorization checks and the audit
// log. Not thread-safe (one per call).
class Call {
 public:
  Call(const ApiAuth* auth, grpc::ServerContext* ctx, const char* method,
       std::string verb, std::string resource, bool mutating)
      : auth_(auth),
        ctx_(ctx),
        method_(method),
        verb_(std::move(verb)),
        resource_(std::move(resource)),
        mutating_(mutating),
        received_(absl::Now()) {
    NiceApiThread();
    request_id_ = RequestId();
    ctx_->AddInitialMetadata("x-request-id", request_id_);
    if (!auth_) {
      principal_ = Principal::Unrestricted();
      return;
    }
    auto p = auth_->Authenticate(Bearer());
    if (p.ok()) {
      principal_ = std::move(*p);
    } else {
      denied_ = p.status();
    }
  }

  // The caller may `verb` `resource` in `ns` (recorded as an object of the
  // call). After a denial, the call's status says why.
  bool Admit(const std::string& ns, const std::string& name = "") {
    Object(resource_, ns, name);
    if (!denied_.ok()) return false;
    absl::Status s = auth::Authorize(principal_, verb_, resource_, ns);
    if (!s.ok()) denied_ = s;
    return s.ok();
  }
  // For calls on no namespace (Version-like, whoami, cluster objects).
  bool AdmitCluster(const std::string& name = "") { return Admit("", name); }
  // Authenticated at all (the checks are the callee's: tokens, can-i).
  bool Authenticated() const { return denied_.ok(); }
  absl::Status Admission(const std::string& resource, const std::string& ns,
                         const std::string& name) {
    Object(resource, ns, name);
    absl::Status s = auth::Authorize(principal_, verb_, resource, ns);
    if (!s.ok() && denied_.ok()) denied_ = s;
    return s;
  }
  // For lists across namespaces: whether the caller may see `ns`.
  bool CanSee(const std::string& ns) const {
    return auth::Allowed(principal_, verb_, resource_, ns);
  }

  const Principal& principal() const { return principal_; }
  // Who the call counts against for the limits of calls in flight: its
  // token, else (no token: --auth=none, or the open Version) its address.
  std::string Client() const {
    if (!principal_.token_id.empty()) return "token " + principal_.token_id;
    return "address " + Peer();
  }
  void Object(const std::string& resource, const std::string& ns,
              const std::string& name) {
    if (!Auditing()) return;
    auto* ref = event_.add_object_refs();
    ref->set_resource(resource);
    ref->set_namespace_(ns);
    ref->set_name(name);
  }
  // What was asked, for the Request audit level.
  void Request(const google::protobuf::Message& m) {
    if (!auth_ || !auth_->audit() ||
        auth_->audit()->level() != auth::AuditLevel::kRequest) {
      return;
    }
    std::string json;
    if (google::protobuf::util::MessageToJsonString(m, &json).ok()) {
      (void)google::protobuf::util::JsonStringToMessage(
          json, event_.mutable_request_object());
    }
  }

  // Ends the call: audits it (mutating calls and denials) and returns
  // its status.
  grpc::Status Finish(const absl::Status& status) {
    const absl::Status& s = denied_.ok() ? status : denied_;
    // A denial the callee decides (the token calls check roles themselves)
    // is one too.
    const bool denied = !denied_.ok() || absl::IsPermissionDenied(s) ||
                        absl::IsUnauthenticated(s);
    if (Auditing() && (mutating_ || denied)) {
      event_.set_audit_id(request_id_);
      event_.set_stage("ResponseComplete");
      *event_.mutable_request_received_timestamp() = ToProtoTime(received_);
      *event_.mutable_stage_timestamp() = ToProtoTime(absl::Now());
      event_.mutable_user()->set_username(principal_.name);
      event_.mutable_user()->set_token_id(principal_.token_id);
      event_.set_verb(verb_);
      event_.set_method(method_);
      auto* rs = event_.mutable_response_status();
      rs->set_code(static_cast<int>(s.code()));
      rs->set_status(absl::StatusCodeToString(s.code()));
      rs->set_message(std::string(s.message()));
      event_.set_outcome(denied ? "denied" : s.ok() ? "allowed" : "error");
      event_.add_source_ips(Peer());
      auth_->audit()->Write(event_);
    }
    return ToGrpc(s);
  }
  grpc::Status Denied() { return Finish(absl::OkStatus()); }

 private:
  bool Auditing() const {
    return auth_ && auth_->audit() &&
           auth_->audit()->level() != auth::AuditLevel::kNone;
  }
  std::string Bearer() const {
    const auto& md = ctx_->client_metadata();
    auto it = md.find("authorization");
    if (it == md.end()) return "";
    std::string v(it->second.data(), it->second.size());
    if (absl::StartsWithIgnoreCase(v, "bearer ")) v = v.substr(7);
    return std::string(absl::StripAsciiWhitespace(v));
  }
  std::string RequestId() const {
    const auto& md = ctx_->client_metadata();
    auto it = md.find("x-request-id");
    if (it != md.end() && it->second.size() > 0 && it->second.size() <= 64) {
      return std::string(it->second.data(), it->second.size());
    }
    static const uint64_t prefix = absl::Uniform<uint64_t>(absl::BitGen());
    static std::atomic<uint64_t> next{1};
    return absl::StrCat(absl::Hex(prefix, absl::kZeroPad16), "-",
                        next.fetch_add(1));
  }
  std::string Peer() const {
    // A call from inside the process (the dashboard's, through
    // ApiServer::InProcessChannel) carries its client's address; no call
    // over the network or a unix socket can be in-process, so none can
    // pretend to be one.
    // gRPC names the in-process peer "unknown" (1.51) or "inproc..."; TCP
    // peers are "ipv4:"/"ipv6:", unix sockets "unix:" (AuthzMatrixTest.
    // OnlyInProcessCallsNameTheirClientsAddress pins this).
    const std::string& from = ctx_->peer();
    if (from == "unknown" || absl::StartsWith(from, "inproc")) {
      const auto& md = ctx_->client_metadata();
      auto it = md.find("x-tidal-client-address");
      if (it != md.end() && it->second.size() <= 64) {
        return std::string(it->second.data(), it->second.size());
      }
    }
    // "ipv4:127.0.0.1:5555", "ipv6:%5B::1%5D:5555": the address alone.
    std::string peer =
        absl::StrReplaceAll(ctx_->peer(), {{"%5B", "["}, {"%5D", "]"}});
    size_t colon = peer.find(':');
    if (colon != std::string::npos) peer = peer.substr(colon + 1);
    const size_t port = peer.rfind(':');
    const size_t bracket = peer.rfind(']');
    if (port != std::string::npos &&
        (bracket == std::string::npos || port > bracket)) {
      peer = peer.substr(0, port);
    }
    if (peer.size() > 2 && peer.front() == '[') {
      peer = peer.substr(1, peer.size() - 2);
    }
    return peer;
  }

  const ApiAuth* const auth_;
  grpc::ServerContext* const ctx_;
  const char* const method_;
  const std::string verb_;
  const std::string resource_;
  const bool mutating_;
  const absl::Time received_;
  std::string request_id_;
  Principal principal_;
  absl::Status denied_;
  v1::AuditEvent event_;
};

// Gives memory that freed blocks left in glibc's arenas back to the system
// (a refused multi-megabyte request would otherwise keep the process's
// resident size up). Calls that overlap run one trim, which goes again for
// those that came meanwhile.
void ReleaseFreeMemory() {
  static std::atomic<int> pending{0};
  if (pending.fetch_add(1) != 0) return;
  int seen = 0;
  do {
    seen = pending.load();
    malloc_trim(0);
  } while (pending.fetch_sub(seen) != seen);
}

// The CPU time the calling thread has used.
absl::Duration ThreadCpu() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::DurationFromTimespec(ts);
}

// A request this large (bytes) that is refused releases its memory at once.
constexpr size_t kTrimAfterRefusing = 1 << 20;

// Cuts streams (Watch, Logs) whose client reads nothing: a write that has
// waited on the client longer than `stall_timeout` cancels the call (which
// ends the blocked write), so a stuck client holds no thread or buffer for
// good. One thread checks every registered stream four times a second.
class StallGuard {
 public:
  explicit StallGuard(absl::Duration stall_timeout)
      : stall_timeout_(stall_timeout) {}
  ~StallGuard() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  // One stream's writes (register for the life of the stream).
  struct Stream {
    grpc::ServerContext* ctx = nullptr;
    std::atomic<int64_t> write_since_ms{0};  // 0: no write waiting
    std::atomic<bool> cut{false};
  };
  using Handle = std::list<Stream>::iterator;

  Handle Add(grpc::ServerContext* ctx) {
    absl::MutexLock lock(&mu_);
    if (!thread_.joinable() && stall_timeout_ > absl::ZeroDuration()) {
      thread_ = std::thread([this] { Run(); });
    }
    streams_.emplace_back();
    streams_.back().ctx = ctx;
    return std::prev(streams_.end());
  }
  void Remove(Handle h) {
    absl::MutexLock lock(&mu_);
    streams_.erase(h);
  }
  absl::Duration stall_timeout() const { return stall_timeout_; }

 private:
  void Run() {
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(&stop_),
                                 absl::Milliseconds(250))) {
      const int64_t now = absl::ToUnixMillis(absl::Now());
      for (Stream& s : streams_) {
        const int64_t since = s.write_since_ms.load();
        if (since != 0 && !s.cut.load() &&
            now - since > absl::ToInt64Milliseconds(stall_timeout_)) {
          s.cut.store(true);
          s.ctx->TryCancel();
        }
      }
    }
  }

  const absl::Duration stall_timeout_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::list<Stream> streams_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Adapts TidalService to the generated gRPC service, behind the guard:
// every call is authenticated and authorized (auth: null means everything
// is allowed), mutating and denied calls are audited. Thread-safe.
class GrpcTidal final : public v1::Tidal::Service {
 public:
  GrpcTidal(TidalService* s, const ApiAuth* auth, const ApiLimits& limits)
      : s_(s),
        auth_(auth),
        limiter_(limits),
        pacer_(PacerOptions(limits)),
        stalls_(limits.stream_stall_timeout) {}

  const CallLimiter& limiter() const { return limiter_; }
  const ClientPacer& pacer() const { return pacer_; }

  template <typename T>
  static absl::Status Reply(absl::StatusOr<T> r, T* out) {
    if (!r.ok()) return r.status();
    *out = std::move(*r);
    return absl::OkStatus();
  }

  grpc::Status Apply(grpc::ServerContext* ctx, const v1::ApplyRequest* req,
                     v1::ApplyResponse* resp) override {
    Call c(auth_, ctx, "Apply", "apply", "apps", true);
    if (!c.Authenticated()) return c.Denied();
    // A client past its apply byte rate waits here, before its call is
    // served or refused (a closed loop of large applies is slowed to the
    // rate instead of taking the CPU from the gateway).
    if (absl::Status s = Pace(c, ctx, req->ByteSizeLong()); !s.ok())
      return c.Finish(s);
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kApply, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    const absl::Duration cpu0 = ThreadCpu();
    absl::Status r =
        Reply(s_->Apply(*req,
                        [&](const std::string& resource, const std::string& ns,
                            const std::string& name) {
                          return c.Admission(resource, ns, name);
                        }),
              resp);
    // The CPU a refused apply took is paced too: specs that are costly to
    // parse and refuse, sent in a loop, wait like large ones.
    if (!r.ok())
      pacer_.ChargeRefusedCpu(c.Client(), ThreadCpu() - cpu0, absl::Now());
    // Level Request: what was applied, as applied (the answer carries no
    // secret value; the request's YAML and secrets would).
    if (r.ok()) c.Request(*resp);
    grpc::Status out = c.Finish(r);
    if (!r.ok() && req->ByteSizeLong() >= kTrimAfterRefusing) {
      ReleaseFreeMemory();
    }
    return out;
  }
  grpc::Status Get(grpc::ServerContext* ctx, const v1::GetRequest* req,
                   v1::App* resp) override {
    Call c(auth_, ctx, "Get", "get", "apps", false);
    if (!c.Admit(NsOr(req->namespace_()), req->name())) return c.Denied();
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    return c.Finish(Reply(s_->Get(*req), resp));
  }
  grpc::Status List(grpc::ServerContext* ctx, const v1::ListRequest* req,
                    v1::ListResponse* resp) override {
    Call c(auth_, ctx, "List", "list", "apps", false);
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    if (!req->all_namespaces()) {
      if (!c.Admit(NsOr(req->namespace_()))) return c.Denied();
      return c.Finish(Reply(s_->List(*req), resp));
    }
    if (!c.Authenticated()) return c.Denied();
    absl::Status r = Reply(s_->List(*req), resp);
    Keep(resp->mutable_apps(),
         [&](const v1::App& a) { return c.CanSee(a.metadata().namespace_()); });
    return c.Finish(r);
  }
  grpc::Status Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* req,
                      v1::DeleteResponse* resp) override {
    Call c(auth_, ctx, "Delete", "delete", "apps", true);
    if (!c.Admit(NsOr(req->namespace_()), req->name())) return c.Denied();
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kApply, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    return c.Finish(Reply(s_->Delete(*req), resp));
  }
  grpc::Status ListInstances(grpc::ServerContext* ctx,
                             const v1::ListInstancesRequest* req,
                             v1::ListInstancesResponse* resp) override {
    Call c(auth_, ctx, "ListInstances", "list", "instances", false);
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    if (!req->all_namespaces()) {
      if (!c.Admit(NsOr(req->namespace_()), req->app())) return c.Denied();
      return c.Finish(Reply(s_->ListInstances(*req), resp));
    }
    if (!c.Authenticated()) return c.Denied();
    absl::Status r = Reply(s_->ListInstances(*req), resp);
    Keep(resp->mutable_instances(),
         [&](const v1::Instance& i) { return c.CanSee(i.namespace_()); });
    return c.Finish(r);
  }
  grpc::Status ListEvents(grpc::ServerContext* ctx,
                          const v1::ListEventsRequest* req,
                          v1::ListEventsResponse* resp) override {
    Call c(auth_, ctx, "ListEvents", "list", "events", false);
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    if (!req->all_namespaces()) {
      if (!c.Admit(NsOr(req->namespace_()), req->app())) return c.Denied();
      return c.Finish(Reply(s_->ListEvents(*req), resp));
    }
    if (!c.Authenticated()) return c.Denied();
    absl::Status r = Reply(s_->ListEvents(*req), resp);
    Keep(resp->mutable_events(), [&](const v1::Event& e) {
      return c.CanSee(e.involved().namespace_());
    });
    return c.Finish(r);
  }
  grpc::Status Version(grpc::ServerContext*, const v1::VersionRequest*,
                       v1::VersionResponse* resp) override {
    // Open to all, like Kubernetes' /version: health probes use it.
    *resp = s_->Version();
    return grpc::Status::OK;
  }
  grpc::Status DeleteNode(grpc::ServerContext* ctx,
                          const v1::DeleteNodeRequest* req,
                          v1::DeleteNodeResponse* resp) override {
    Call c(auth_, ctx, "DeleteNode", "delete", "nodes", !req->dry_run());
    if (!c.AdmitCluster(req->name())) return c.Denied();
    absl::StatusOr<v1::DeleteNodeResponse> deleted = s_->DeleteNode(*req);
    if (deleted.ok() && !req->dry_run() && auth_ != nullptr) {
      // The node's own token (node:NAME, made at each of its starts) goes
      // with it; none without tokens (--auth=none).
      v1::RevokeTokenRequest revoke;
      revoke.set_name(absl::StrCat("node:", req->name()));
      (void)auth_->RevokeToken(c.principal(), revoke);
    }
    return c.Finish(Reply(std::move(deleted), resp));
  }
  grpc::Status GetCluster(grpc::ServerContext* ctx,
                          const v1::GetClusterRequest* req,
                          v1::GetClusterResponse* resp) override {
    Call c(auth_, ctx, "GetCluster", "list", "nodes", false);
    if (!c.AdmitCluster()) return c.Denied();
    return c.Finish(Reply(s_->GetCluster(*req), resp));
  }
  grpc::Status Scale(grpc::ServerContext* ctx, const v1::ScaleRequest* req,
                     v1::App* resp) override {
    Call c(auth_, ctx, "Scale", "scale", "apps", true);
    if (!c.Admit(NsOr(req->namespace_()), req->name())) return c.Denied();
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kApply, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    c.Request(*req);
    return c.Finish(Reply(s_->Scale(*req), resp));
  }
  grpc::Status Top(grpc::ServerContext* ctx, const v1::TopRequest* req,
                   v1::TopResponse* resp) override {
    Call c(auth_, ctx, "Top", "get", "metrics", false);
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    if (!req->all_namespaces()) {
      if (!c.Admit(NsOr(req->namespace_()), req->app())) return c.Denied();
      return c.Finish(Reply(s_->Top(*req), resp));
    }
    if (!c.Authenticated()) return c.Denied();
    absl::Status r = Reply(s_->Top(*req), resp);
    Keep(resp->mutable_apps(),
         [&](const v1::AppMetrics& m) { return c.CanSee(m.namespace_()); });
    return c.Finish(r);
  }
  grpc::Status History(grpc::ServerContext* ctx, const v1::HistoryRequest* req,
                       v1::HistoryResponse* resp) override {
    Call c(auth_, ctx, "History", "get", "metrics", false);
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    if (!req->all_namespaces()) {
      if (!c.Admit(NsOr(req->namespace_()), req->app())) return c.Denied();
      return c.Finish(Reply(s_->History(*req), resp));
    }
    if (!c.Authenticated()) return c.Denied();
    // Namespaces the caller may not see are never read.
    return c.Finish(Reply(
        s_->History(*req, [&](const std::string& ns) { return c.CanSee(ns); }),
        resp));
  }
  grpc::Status Rollout(grpc::ServerContext* ctx, const v1::RolloutRequest* req,
                       v1::App* resp) override {
    const bool status = req->action() == "status" || req->action().empty();
    Call c(auth_, ctx, "Rollout", status ? "get" : "rollout", "apps", !status);
    if (!c.Admit(NsOr(req->namespace_()), req->name())) return c.Denied();
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kApply, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    c.Request(*req);
    return c.Finish(Reply(s_->Rollout(*req), resp));
  }
  grpc::Status ListRevisions(grpc::ServerContext* ctx,
                             const v1::ListRevisionsRequest* req,
                             v1::ListRevisionsResponse* resp) override {
    Call c(auth_, ctx, "ListRevisions", "list", "revisions", false);
    if (!c.Admit(NsOr(req->namespace_()), req->app())) return c.Denied();
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    return c.Finish(Reply(s_->ListRevisions(*req), resp));
  }
  grpc::Status GetSecret(grpc::ServerContext* ctx, const v1::GetRequest* req,
                         v1::Secret* resp) override {
    Call c(auth_, ctx, "GetSecret", "get", "secrets", false);
    if (!c.Admit(NsOr(req->namespace_()), req->name())) return c.Denied();
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    return c.Finish(Reply(s_->GetSecret(*req), resp));
  }
  grpc::Status ListSecrets(grpc::ServerContext* ctx,
                           const v1::ListSecretsRequest* req,
                           v1::ListSecretsResponse* resp) override {
    Call c(auth_, ctx, "ListSecrets", "list", "secrets", false);
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kRead, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    if (!req->all_namespaces()) {
      if (!c.Admit(NsOr(req->namespace_()))) return c.Denied();
      return c.Finish(Reply(s_->ListSecrets(*req), resp));
    }
    if (!c.Authenticated()) return c.Denied();
    absl::Status r = Reply(s_->ListSecrets(*req), resp);
    Keep(resp->mutable_secrets(), [&](const v1::Secret& x) {
      return c.CanSee(x.metadata().namespace_());
    });
    return c.Finish(r);
  }
  grpc::Status DeleteSecret(grpc::ServerContext* ctx,
                            const v1::DeleteRequest* req,
                            v1::Secret* resp) override {
    Call c(auth_, ctx, "DeleteSecret", "delete", "secrets", !req->dry_run());
    if (!c.Admit(NsOr(req->namespace_()), req->name())) return c.Denied();
    return c.Finish(Reply(s_->DeleteSecret(*req), resp));
  }
  grpc::Status Watch(grpc::ServerContext* ctx, const v1::WatchRequest* req,
                     grpc::ServerWriter<v1::WatchEvent>* writer) override {
    Call c(auth_, ctx, "Watch", "watch", "apps", false);
    if (req->all_namespaces() ? !c.Authenticated()
                              : !c.Admit(NsOr(req->namespace_()))) {
      return c.Denied();
    }
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kStream, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    auto stream = stalls_.Add(ctx);
    absl::Status r = s_->Watch(
        *req,
        [&](const v1::WatchEvent& e) {
          // Across namespaces, only what the caller may watch.
          if (!c.CanSee(e.app().metadata().namespace_())) return true;
          return GuardedWrite(&*stream, writer, e);
        },
        [ctx] { return ctx->IsCancelled(); });
    if (stream->cut.load()) r = StalledStream("watch", c);
    stalls_.Remove(stream);
    return c.Finish(r);
  }
  grpc::Status Logs(grpc::ServerContext* ctx, const v1::LogsRequest* req,
                    grpc::ServerWriter<v1::LogChunk>* writer) override {
    Call c(auth_, ctx, "Logs", "get", "logs", false);
    if (!c.Admit(NsOr(req->namespace_()), req->app())) return c.Denied();
    CallLimiter::Slot slot;
    if (absl::Status s = Limit(CallLimiter::kStream, c, ctx, &slot); !s.ok())
      return c.Finish(s);
    auto stream = stalls_.Add(ctx);
    absl::Status r = s_->Logs(
        *req,
        [&](const v1::LogChunk& ch) {
          return GuardedWrite(&*stream, writer, ch);
        },
        [ctx] { return ctx->IsCancelled(); });
    if (stream->cut.load()) r = StalledStream("logs", c);
    stalls_.Remove(stream);
    return c.Finish(r);
  }

  // Tokens and the caller's own access.
  grpc::Status CreateToken(grpc::ServerContext* ctx,
                           const v1::CreateTokenRequest* req,
                           v1::CreateTokenResponse* resp) override {
    Call c(auth_, ctx, "CreateToken", "create", "tokens", true);
    c.Object("tokens", req->namespace_(), req->name());
    if (!c.Authenticated()) return c.Denied();
    c.Request(*req);
    if (!auth_) return c.Finish(NoAuth());
    return c.Finish(Reply(auth_->CreateToken(c.principal(), *req), resp));
  }
  grpc::Status ListTokens(grpc::ServerContext* ctx,
                          const v1::ListTokensRequest* req,
                          v1::ListTokensResponse* resp) override {
    Call c(auth_, ctx, "ListTokens", "list", "tokens", false);
    if (!c.Authenticated()) return c.Denied();
    if (!auth_) return c.Finish(NoAuth());
    return c.Finish(Reply(auth_->ListTokens(c.principal(), *req), resp));
  }
  grpc::Status RevokeToken(grpc::ServerContext* ctx,
                           const v1::RevokeTokenRequest* req,
                           v1::RevokeTokenResponse* resp) override {
    Call c(auth_, ctx, "RevokeToken", "delete", "tokens", true);
    c.Object("tokens", "", req->name());
    if (!c.Authenticated()) return c.Denied();
    if (!auth_) return c.Finish(NoAuth());
    return c.Finish(Reply(auth_->RevokeToken(c.principal(), *req), resp));
  }
  grpc::Status WhoAmI(grpc::ServerContext* ctx, const v1::WhoAmIRequest*,
                      v1::WhoAmIResponse* resp) override {
    Call c(auth_, ctx, "WhoAmI", "get", "self", false);
    if (!c.Authenticated()) return c.Denied();
    if (auth_) {
      *resp = auth_->WhoAmI(c.principal());
    } else {
      resp->set_name(c.principal().name);
      resp->set_auth_mode("none");
    }
    return c.Finish(absl::OkStatus());
  }
  grpc::Status CanI(grpc::ServerContext* ctx, const v1::CanIRequest* req,
                    v1::CanIResponse* resp) override {
    Call c(auth_, ctx, "CanI", "get", "self", false);
    if (!c.Authenticated()) return c.Denied();
    auto r = auth::Authorize(c.principal(), req->verb(), req->resource(),
                             NsOr(req->namespace_()));
    resp->set_allowed(r.ok());
    resp->set_reason(r.ok() ? "yes" : std::string(r.message()));
    return c.Finish(absl::OkStatus());
  }

 private:
  template <typename Field, typename Pred>
  static void Keep(Field* items, Pred keep) {
    int out = 0;
    for (int i = 0; i < items->size(); ++i) {
      if (keep(items->Get(i))) {
        if (out != i) items->SwapElements(out, i);
        ++out;
      }
    }
    while (items->size() > out) items->RemoveLast();
  }
  // Takes a slot of `kind` for the call, or says why not (and when to try
  // again, also as trailing metadata retry-after-ms).
  static ClientPacer::Options PacerOptions(const ApiLimits& limits) {
    ClientPacer::Options o;
    o.bytes_per_second = limits.apply_bytes_per_second;
    o.burst = limits.apply_burst_bytes;
    o.refused_cpu_per_second =
        absl::ToDoubleSeconds(limits.refused_apply_cpu_per_second);
    o.refused_cpu_burst = 20 * o.refused_cpu_per_second;
    return o;
  }
  // Waits as long as the pacer says for `bytes` of `c`'s client (unless
  // too many calls wait already); Cancelled if the call ends meanwhile.
  absl::Status Pace(const Call& c, grpc::ServerContext* ctx, size_t bytes) {
    const absl::Duration wait =
        pacer_.Charge(c.Client(), static_cast<int64_t>(bytes), absl::Now());
    if (wait <= absl::ZeroDuration()) return absl::OkStatus();
    ClientPacer::Waiter waiter(&pacer_, wait);
    if (!waiter.admitted()) return absl::OkStatus();
    GetLogger("api")->debug(
        "{} paced for {} (--api-apply-bytes-per-second, "
        "--api-refused-apply-cpu-per-second)",
        c.Client(), absl::FormatDuration(wait));
    const absl::Time end = absl::Now() + wait;
    for (absl::Time now = absl::Now(); now < end; now = absl::Now()) {
      if (ctx->IsCancelled()) {
        return absl::CancelledError("the call ended while it was paced");
      }
      absl::SleepFor(std::min(absl::Milliseconds(50), end - now));
    }
    return absl::OkStatus();
  }
  absl::Status Limit(CallLimiter::Kind kind, const Call& c,
                     grpc::ServerContext* ctx, CallLimiter::Slot* slot) {
    absl::Status s = limiter_.Acquire(kind, c.Client(), slot);
    if (!s.ok()) {
      ctx->AddTrailingMetadata("retry-after-ms",
                               std::to_string(absl::ToInt64Milliseconds(
                                   limiter_.limits().retry_after)));
      GetLogger("api")->debug("{} refused: {}", c.Client(),
                              std::string(s.message()));
    }
    return s;
  }
  // A stream's write, timed by the stall guard.
  template <typename W, typename M>
  static bool GuardedWrite(StallGuard::Stream* stream, W* writer, const M& m) {
    stream->write_since_ms.store(absl::ToUnixMillis(absl::Now()));
    const bool ok = writer->Write(m);
    stream->write_since_ms.store(0);
    return ok && !stream->cut.load();
  }
  absl::Status StalledStream(const char* what, const Call& c) {
    std::string msg = absl::StrCat(
        what, " stream cut: the client read nothing for ",
        absl::FormatDuration(stalls_.stall_timeout()),
        " (tidald --api-stream-stall-timeout); watch again from a fresh list");
    GetLogger("api")->warn("{} of {}", msg, c.Client());
    return absl::ResourceExhaustedError(msg);
  }
  static absl::Status NoAuth() {
    return absl::FailedPreconditionError(
        "this API server has no token store (tidald --auth=none)");
  }

  TidalService* const s_;
  const ApiAuth* const auth_;
  CallLimiter limiter_;
  ClientPacer pacer_;
  StallGuard stalls_;
};

// Credentials that read the files now and re-read them every
// reload_interval (gRPC's file watcher): rotated certificates reach new
// connections without a restart; a bad file keeps the last good ones.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsServerCredentials(
    const ApiTlsOptions& tls) {
  if (tls.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-key: needed with --tls-cert");
  }
  RETURN_IF_ERROR(CheckKeyPairFiles(tls.cert_file, "--tls-cert", tls.key_file,
                                    "--tls-key"));
  if (!tls.client_ca_file.empty()) {
    RETURN_IF_ERROR(CheckCaFile(tls.client_ca_file, "--tls-client-ca"));
  }
  unsigned refresh = static_cast<unsigned>(
      std::max<int64_t>(1, absl::ToInt64Seconds(tls.reload_interval)));
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          tls.key_file, tls.cert_file, tls.client_ca_file, refresh);
  grpc::experimental::TlsServerCredentialsOptions opts(provider);
  opts.watch_identity_key_cert_pairs();
  if (tls.client_ca_file.empty()) {
    opts.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    opts.watch_root_certs();
    opts.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  auto creds = grpc::experimental::TlsServerCredentials(opts);
  if (!creds)
    return absl::InternalError("cannot make the API's TLS credentials");
  return creds;
}

}  // namespace

struct ApiServer::Impl {
  TidalService* service = nullptr;
  std::unique_ptr<GrpcTidal> grpc_service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() { Shutdown(); }

int ApiServer::port() const { return impl_->port; }

void ApiServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  impl_->service->Stop();
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

void ApiServer::Wait() { impl_->server->Wait(); }

std::string ApiServer::MetricsText() const {
  const CallLimiter& l = impl_->grpc_service->limiter();
  static constexpr std::pair<CallLimiter::Kind, const char*> kKinds[] = {
      {CallLimiter::kApply, "apply"},
      {CallLimiter::kRead, "read"},
      {CallLimiter::kStream, "stream"}};
  std::string text =
      "# HELP tidal_api_calls_in_flight API calls being served, by kind "
      "(apply: Apply, Delete and other writes; read: Get, List and the like; "
      "stream: Watch and Logs)\n"
      "# TYPE tidal_api_calls_in_flight gauge\n";
  for (const auto& [kind, name] : kKinds) {
    absl::StrAppend(&text, "tidal_api_calls_in_flight{kind=\"", name, "\"} ",
                    l.in_flight(kind), "\n");
  }
  absl::StrAppend(&text,
                  "# HELP tidal_api_calls_refused_total API calls refused "
                  "with RESOURCE_EXHAUSTED at a limit of calls in flight "
                  "(per client or in total, --api-max-*)\n"
                  "# TYPE tidal_api_calls_refused_total counter\n");
  for (const auto& [kind, name] : kKinds) {
    absl::StrAppend(&text, "tidal_api_calls_refused_total{kind=\"", name,
                    "\"} ", l.refused(kind), "\n");
  }
  const ClientPacer& p = impl_->grpc_service->pacer();
  absl::StrAppend(
      &text,
      "# HELP tidal_api_paced_calls_total Apply calls held because their "
      "client was past --api-apply-bytes-per-second or "
      "--api-refused-apply-cpu-per-second\n"
      "# TYPE tidal_api_paced_calls_total counter\n"
      "tidal_api_paced_calls_total ",
      p.paced_total(), "\n",
      "# HELP tidal_api_paced_seconds_total Seconds those calls were held\n"
      "# TYPE tidal_api_paced_seconds_total counter\n"
      "tidal_api_paced_seconds_total ",
      absl::StrFormat("%.3f", p.paced_seconds_total()), "\n",
      "# HELP tidal_api_pace_not_held_total Apply calls past their client's "
      "rate served without waiting, because 32 calls were held already\n"
      "# TYPE tidal_api_pace_not_held_total counter\n"
      "tidal_api_pace_not_held_total ",
      p.not_held_total(), "\n");
  return text;
}

std::shared_ptr<grpc::Channel> ApiServer::InProcessChannel() {
  return impl_->server->InProcessChannel(grpc::ChannelArguments());
}

absl::StatusOr<std::unique_ptr<ApiServer>> StartServer(
    const std::string& address, TidalService* service, const ApiTlsOptions& tls,
    const auth::ApiAuth* auth, const ApiLimits& limits) {
  auto impl = std::make_unique<ApiServer::Impl>();
  impl->service = service;
  impl->grpc_service = std::make_unique<GrpcTidal>(service, auth, limits);
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (tls.enabled()) {
    auto c = TlsServerCredentials(tls);
    if (!c.ok()) return c.status();
    creds = std::move(*c);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  builder.AddListeningPort(address, creds, &impl->port);
  builder.RegisterService(impl->grpc_service.get());
  api_thread_nice.store(std::clamp(limits.thread_nice, 0, 19));
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<size_t>(limits.max_message_bytes, INT32_MAX)));
  builder.SetMaxSendMessageSize(64 << 20);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT,
                             0);  // a busy port is an error
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    if (impl->server) impl->server->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", address, " (address in use or not valid)"));
  }
  GetLogger("api")->info(
      "tidal API listening on {} (port {}){}", address, impl->port,
      !tls.enabled() ? ""
      : tls.client_ca_file.empty()
          ? absl::StrCat(", TLS with ", tls.cert_file)
          : absl::StrCat(", mutual TLS with ", tls.cert_file,
                         ", client certificates of ", tls.client_ca_file));
  return std::make_unique<ApiServer>(std::move(impl));
}

}  // namespace tidal
