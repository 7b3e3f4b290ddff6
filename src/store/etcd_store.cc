#include "store/etcd_store.h"

#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <deque>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "etcdpb/rpc.grpc.pb.h"
#include "store/etcd_tls.h"
#include "store/txn_check.h"

namespace tidal {
namespace etcd_internal {
namespace {

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("etcd ", what, ": ", s.error_message());
  switch (s.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(msg);
    default:
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), msg);
  }
}

// A refused Txn. etcd's limits (--max-txn-ops, --max-request-bytes,
// --quota-backend-bytes) come back as InvalidArgument, which reads as a bad
// spec (tidalctl exit 2): they are ResourceExhausted, saying which limit and
// what to do.
absl::Status TxnError(const grpc::Status& s,
                      const etcdserverpb::TxnRequest& req) {
  const std::string& m = s.error_message();
  if (absl::StrContains(m, "too many operations in txn request")) {
    const int ops =
        std::max({req.compare_size(), req.success_size(), req.failure_size()});
    return absl::ResourceExhaustedError(absl::StrCat(
        "the change needs ", ops,
        " operations in one etcd transaction, more than etcd's "
        "--max-txn-ops (128 unless raised; a document takes one): apply "
        "fewer documents at a time, or raise --max-txn-ops on every etcd "
        "member (docs/ha.md, \"etcd settings\") [",
        m, "]"));
  }
  // Over etcd's gRPC limit (--max-request-bytes + 512 KiB), gRPC refuses
  // it before etcd sees it.
  if (absl::StrContains(m, "request is too large") ||
      absl::StrContains(m, "received message larger than max")) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the change is ", req.ByteSizeLong(),
        " bytes in one etcd transaction, more than etcd's "
        "--max-request-bytes (1.5 MiB unless raised): apply fewer documents "
        "at a time, or raise --max-request-bytes on every etcd member "
        "(docs/ha.md, \"etcd settings\") [",
        m, "]"));
  }
  if (absl::StrContains(m, "database space exceeded")) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "etcd is full (its --quota-backend-bytes): compact and defragment "
        "it, or raise the quota, then `etcdctl alarm disarm` (docs/ha.md, "
        "\"etcd settings\") [",
        m, "]"));
  }
  return FromGrpc(s, "txn");
}

// The etcd key range covering every key that starts with `prefix`.
void PrefixRange(const std::string& prefix, std::string* key,
                 std::string* range_end) {
  if (prefix.empty()) {
    *key = std::string(1, '\0');
    *range_end = std::string(1, '\0');
    return;
  }
  *key = prefix;
  *range_end = store_internal::PrefixEnd(prefix);
  if (range_end->empty()) *range_end = std::string(1, '\0');
}

}  // namespace

absl::StatusOr<Endpoints> ParseEndpoints(const std::string& endpoints) {
  Endpoints out;
  int https = 0, all = 0;
  for (absl::string_view ep :
       absl::StrSplit(endpoints, ',', absl::SkipWhitespace())) {
    ep = absl::StripAsciiWhitespace(ep);
    if (ep.empty()) continue;
    ++all;
    if (absl::ConsumePrefix(&ep, "https://")) {
      ++https;
    } else {
      absl::ConsumePrefix(&ep, "http://");
    }
    ep = absl::StripSuffix(ep, "/");
    out.hosts.push_back(std::string(ep));
  }
  if (https > 0 && https != all) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd endpoints \"", endpoints,
                     "\" mix https:// with plain ones: name them all alike"));
  }
  out.tls = https > 0;
  if (out.hosts.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no etcd endpoints in \"", endpoints, "\""));
  }
  return out;
}

namespace {

// The host of "HOST:PORT" or "[V6]:PORT".
std::string EndpointHost(absl::string_view ep) {
  if (absl::ConsumePrefix(&ep, "[")) {
    return std::string(ep.substr(0, ep.find(']')));
  }
  return std::string(ep.substr(0, ep.rfind(':')));
}

// Resolves "HOST:PORT[,HOST:PORT]" into a gRPC target listing every address.
absl::StatusOr<std::string> ResolveEndpoints(
    const std::vector<std::string>& endpoints) {
  std::vector<std::string> v4, v6;
  for (absl::string_view ep : endpoints) {
    std::string host, port;
    if (absl::ConsumePrefix(&ep, "[")) {
      size_t close = ep.find("]:");
      if (close == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad etcd endpoint \"", ep, "\""));
      }
      host = std::string(ep.substr(0, close));
      port = std::string(ep.substr(close + 2));
    } else {
      size_t colon = ep.rfind(':');
      if (colon == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad etcd endpoint \"", ep, "\": want HOST:PORT"));
      }
      host = std::string(ep.substr(0, colon));
      port = std::string(ep.substr(colon + 1));
    }
    int port_num;
    if (host.empty() || !absl::SimpleAtoi(port, &port_num) || port_num <= 0 ||
        port_num > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad etcd endpoint \"", ep, "\": want HOST:PORT"));
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot resolve etcd endpoint ", host, ": ", gai_strerror(rc)));
    }
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      char buf[NI_MAXHOST];
      if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof(buf), nullptr, 0,
                      NI_NUMERICHOST) != 0) {
        continue;
      }
      if (ai->ai_family == AF_INET) v4.push_back(absl::StrCat(buf, ":", port));
      if (ai->ai_family == AF_INET6)
        v6.push_back(absl::StrCat("[", buf, "]:", port));
    }
    freeaddrinfo(res);
  }
  auto dedup = [](std::vector<std::string>* v) {
    std::set<std::string> seen;
    std::vector<std::string> out;
    for (auto& s : *v) {
      if (seen.insert(s).second) out.push_back(s);
    }
    *v = out;
  };
  dedup(&v4);
  dedup(&v6);
  if (!v4.empty()) return absl::StrCat("ipv4:", absl::StrJoin(v4, ","));
  if (!v6.empty()) return absl::StrCat("ipv6:", absl::StrJoin(v6, ","));
  return absl::InvalidArgumentError(absl::StrCat(
      "no etcd endpoints in \"", absl::StrJoin(endpoints, ","), "\""));
}

WatchEvent ToWatchEvent(const mvccpb::Event& e) {
  WatchEvent ev;
  ev.kv.key = e.kv().key();
  ev.kv.resource_version = e.kv().mod_revision();
  if (e.type() == mvccpb::Event::PUT) {
    ev.type = WatchEvent::Type::kPut;
    ev.kv.value = e.kv().value();
    ev.kv.create_version = e.kv().create_revision();
    ev.prev_version = (e.kv().version() > 1 && e.has_prev_kv())
                          ? e.prev_kv().mod_revision()
                          : 0;
  } else {
    ev.type = WatchEvent::Type::kDelete;
    if (e.has_prev_kv()) {
      ev.kv.value = e.prev_kv().value();
      ev.kv.create_version = e.prev_kv().create_revision();
      ev.prev_version = e.prev_kv().mod_revision();
    }
  }
  return ev;
}

}  // namespace

// The gRPC channel and stubs. Thread-safe (gRPC stubs are).
class Client {
 public:
  Client(std::shared_ptr<grpc::Channel> channel, absl::Duration rpc_timeout)
      : channel_(std::move(channel)),
        kv_(etcdserverpb::KV::NewStub(channel_)),
        watch_(etcdserverpb::Watch::NewStub(channel_)),
        lease_(etcdserverpb::Lease::NewStub(channel_)),
        rpc_timeout_(rpc_timeout) {}

  etcdserverpb::KV::Stub* kv() { return kv_.get(); }
  etcdserverpb::Watch::Stub* watch() { return watch_.get(); }
  etcdserverpb::Lease::Stub* lease() { return lease_.get(); }

  void SetDeadline(grpc::ClientContext* ctx, absl::Duration timeout) const {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  absl::Duration rpc_timeout() const { return rpc_timeout_; }

 private:
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  const std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  const std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  const absl::Duration rpc_timeout_;
};

class EtcdWatch;

// The store's open watches, so closing the store cancels them. Thread-safe.
class WatchRegistry {
 public:
  void Add(EtcdWatch* w) {
    absl::MutexLock lock(&mu_);
    live_.insert(w);
  }
  void Remove(EtcdWatch* w) {
    absl::MutexLock lock(&mu_);
    live_.erase(w);
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  void CloseAll();

 private:
  absl::Mutex mu_;
  std::set<EtcdWatch*> live_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// One etcd watch on its own gRPC stream. A reader thread moves events into a
// bounded buffer; Next() drains it. One reader of Next() at a time; Cancel()
// from any thread.
class EtcdWatch : public Watch {
 public:
  EtcdWatch(std::shared_ptr<Client> client,
            std::shared_ptr<WatchRegistry> registry, std::string prefix,
            int64_t from, int64_t max_buffer)
      : client_(std::move(client)),
        registry_(std::move(registry)),
        prefix_(std::move(prefix)),
        from_(from),
        max_buffer_(std::max<int64_t>(1, max_buffer)) {}

  ~EtcdWatch() override {
    registry_->Remove(this);
    Cancel();
    if (reader_.joinable()) reader_.join();
  }

  // Opens the stream and waits up to `timeout` for etcd to confirm the
  // watch.
  absl::Status Start(absl::Duration timeout) {
    stream_ = client_->watch()->Watch(&ctx_);
    etcdserverpb::WatchRequest req;
    auto* create = req.mutable_create_request();
    PrefixRange(prefix_, create->mutable_key(), create->mutable_range_end());
    create->set_start_revision(from_ + 1);
    create->set_prev_kv(true);
    if (!stream_->Write(req)) {
      ctx_.TryCancel();
      grpc::Status s = stream_->Finish();
      return absl::UnavailableError(
          absl::StrCat("etcd watch: cannot open stream: ", s.error_message()));
    }
    reader_ = std::thread([this] { ReadLoop(); });
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + timeout;
    while (!created_ && error_.ok() && !cancelled_) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) break;
    }
    if (created_) return absl::OkStatus();
    if (!error_.ok()) return error_;
    if (cancelled_) return absl::CancelledError("watch cancelled");
    return absl::UnavailableError(
        "etcd watch: no confirmation from etcd in time");
  }

  absl::StatusOr<std::vector<WatchEvent>> Next(
      absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    while (buffer_.empty() && error_.ok() && !cancelled_) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) break;
    }
    if (cancelled_) return absl::CancelledError("watch cancelled");
    if (!buffer_.empty()) {
      std::vector<WatchEvent> out(std::make_move_iterator(buffer_.begin()),
                                  std::make_move_iterator(buffer_.end()));
      buffer_.clear();
      return out;
    }
    if (!error_.ok()) return error_;
    return std::vector<WatchEvent>();
  }

  void Cancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      cv_.SignalAll();
    }
    ctx_.TryCancel();
  }

 private:
  void ReadLoop() {
    etcdserverpb::WatchResponse resp;
    bool failed = false;
    while (stream_->Read(&resp)) {
      if (failed) continue;  // draining after TryCancel
      absl::MutexLock lock(&mu_);
      if (resp.created()) created_ = true;
      for (const auto& e : resp.events()) buffer_.push_back(ToWatchEvent(e));
      if (resp.compact_revision() != 0) {
        error_ = absl::OutOfRangeError(
            store_internal::WatchTooOld(last_rev_, resp.compact_revision()));
        failed = true;
      } else if (resp.canceled()) {
        error_ = absl::UnavailableError(
            absl::StrCat("etcd cancelled the watch: ", resp.cancel_reason()));
        failed = true;
      } else if (static_cast<int64_t>(buffer_.size()) > max_buffer_) {
        error_ = absl::OutOfRangeError(absl::StrCat(
            "watch on \"", prefix_, "\" fell behind (more than ", max_buffer_,
            " unread events after revision ", last_rev_, "); re-list"));
        buffer_.clear();
        failed = true;
      }
      if (!resp.events().empty()) {
        last_rev_ = resp.events(resp.events_size() - 1).kv().mod_revision();
      }
      cv_.SignalAll();
      if (failed) ctx_.TryCancel();
    }
    grpc::Status s = stream_->Finish();
    absl::MutexLock lock(&mu_);
    if (error_.ok() && !cancelled_) {
      error_ = absl::UnavailableError(absl::StrCat(
          "etcd watch stream ended: ", s.error_message(), "; re-list"));
    }
    cv_.SignalAll();
  }

  const std::shared_ptr<Client> client_;
  const std::shared_ptr<WatchRegistry> registry_;
  const std::string prefix_;
  const int64_t from_;
  const int64_t max_buffer_;

  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest,
                                           etcdserverpb::WatchResponse>>
      stream_;
  std::thread reader_;

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<WatchEvent> buffer_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool created_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t last_rev_ ABSL_GUARDED_BY(mu_) = from_;
};

void WatchRegistry::CloseAll() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  for (EtcdWatch* w : live_) w->Cancel();
}

}  // namespace etcd_internal

using etcd_internal::Client;
using etcd_internal::EtcdWatch;
using etcd_internal::WatchRegistry;

absl::StatusOr<std::unique_ptr<EtcdStore>> EtcdStore::Open(
    const std::string& endpoints, Options options) {
  ASSIGN_OR_RETURN(etcd_internal::Endpoints parsed,
                   etcd_internal::ParseEndpoints(endpoints));
  ASSIGN_OR_RETURN(std::string target,
                   etcd_internal::ResolveEndpoints(parsed.hosts));
  const bool tls = options.tls.enabled || parsed.tls;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // gRPC's retry filter (Debian's 1.51) aborts the process when a stream
  // ends without a grpc-status, as one to a member being stopped can
  // (grpc/grpc#34683): seen as tidald dying on an
  // assertion in absl::optional<grpc_status_code> when an etcd member
  // stopped. tidald retries its etcd calls itself (watches re-list, callers
  // of a Txn re-read), so the channel does without.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::InsecureChannelCredentials();
  std::string server_name;  // the names a member's certificate may carry
  if (tls) {
    // One channel over every address: it cannot tell which member it
    // reached, so each member's certificate must name one of the endpoints
    // (as a member's names itself), or the one name the user gave.
    std::vector<std::string> names;
    if (options.tls.server_name.empty()) {
      for (const std::string& h : parsed.hosts) {
        std::string host = etcd_internal::EndpointHost(h);
        if (std::find(names.begin(), names.end(), host) == names.end())
          names.push_back(std::move(host));
      }
    } else {
      names.push_back(options.tls.server_name);
    }
    server_name = absl::StrJoin(names, ", ");
    // The name sent in the handshake (SNI).
    args.SetSslTargetNameOverride(names.front());
    credentials = etcd_internal::EtcdTlsCredentials(
        options.tls.root_certs, options.tls.cert_chain, options.tls.private_key,
        std::move(names));
  }
  auto channel = grpc::CreateCustomChannel(target, credentials, args);
  auto client =
      std::make_shared<Client>(std::move(channel), options.rpc_timeout);

  // A first call proves an endpoint answers. It reads the key "/" (every
  // key of Tidal's starts with it), so an etcd role on `--prefix /` does.
  etcdserverpb::RangeRequest req;
  req.set_key("/");
  req.set_keys_only(true);
  req.set_limit(1);
  etcdserverpb::RangeResponse resp;
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  client->SetDeadline(&ctx, options.connect_timeout);
  grpc::Status s = client->kv()->Range(&ctx, req, &resp);
  if (!s.ok()) {
    // gRPC says little about a failed handshake: say what to check.
    std::string hint =
        tls ? absl::StrCat(
                  " (over TLS: check that etcd serves https on these "
                  "endpoints, that its certificate is signed by "
                  "--etcd-cacert and names ",
                  options.tls.server_name.empty()
                      ? absl::StrCat("its own endpoint (one of ", server_name,
                                     ") or --etcd-server-name")
                      : absl::StrCat("\"", server_name,
                                     "\" (--etcd-server-name)"),
                  ", and, when etcd runs with "
                  "--client-cert-auth, --etcd-cert and --etcd-key)")
            : " (if etcd serves TLS, name https:// endpoints and "
              "--etcd-cacert)";
    if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
        s.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      hint =
          " (etcd refused this client: with etcd auth on, the client "
          "certificate's common name must be an etcd user with "
          "read-write access to the keyspace)";
    }
    return absl::UnavailableError(absl::StrCat(
        "cannot reach etcd at ", endpoints, ": ", s.error_message(), hint));
  }
  GetLogger("store")->info(
      "connected to etcd at {} ({}{}), revision {}", endpoints, target,
      tls ? absl::StrCat(", TLS, certificates naming ", server_name) : "",
      resp.header().revision());
  return std::unique_ptr<EtcdStore>(new EtcdStore(options, std::move(client)));
}

EtcdStore::EtcdStore(Options options, std::shared_ptr<Client> client)
    : options_(options),
      client_(std::move(client)),
      watches_(std::make_shared<WatchRegistry>()) {}

EtcdStore::~EtcdStore() { watches_->CloseAll(); }

absl::StatusOr<int64_t> EtcdStore::Txn(const std::vector<Op>& ops) {
  RETURN_IF_ERROR(store_internal::ValidateOps(ops));
  etcdserverpb::TxnRequest req;
  using etcdserverpb::Compare;
  for (const Op& op : ops) {
    auto add_compare = [&](Compare::CompareTarget target,
                           Compare::CompareResult result, int64_t value) {
      Compare* c = req.add_compare();
      c->set_key(op.key);
      c->set_target(target);
      c->set_result(result);
      if (target == Compare::MOD) {
        c->set_mod_revision(value);
      } else {
        c->set_version(value);
      }
    };
    if (op.type == Op::Type::kCheck) {
      // A missing key has create revision 0, never equal to N > 0.
      Compare* c = req.add_compare();
      c->set_key(op.key);
      c->set_target(Compare::CREATE);
      c->set_result(Compare::EQUAL);
      c->set_create_revision(op.create_version);
    } else if (op.expected_version > 0) {
      add_compare(Compare::MOD, Compare::EQUAL, op.expected_version);
    } else if (op.expected_version == 0) {
      add_compare(Compare::VERSION, Compare::EQUAL, 0);
    }
    if (op.type == Op::Type::kDelete && op.expected_version <= 0) {
      // A delete needs the key to exist (with expected 0 this cannot hold:
      // the txn fails and is reported as for the SQLite store).
      add_compare(Compare::VERSION, Compare::GREATER, 0);
    }
    if (op.type == Op::Type::kPut) {
      auto* put = req.add_success()->mutable_request_put();
      put->set_key(op.key);
      put->set_value(op.value);
      put->set_lease(op.lease);
    } else if (op.type == Op::Type::kDelete) {
      req.add_success()->mutable_request_delete_range()->set_key(op.key);
    }
    // On failure, read every key to say which precondition failed.
    auto* range = req.add_failure()->mutable_request_range();
    range->set_key(op.key);
    range->set_keys_only(true);
  }
  etcdserverpb::TxnResponse resp;
  grpc::ClientContext ctx;
  client_->SetDeadline(&ctx, options_.rpc_timeout);
  // A put on a lease that is gone fails with NotFound.
  const grpc::Status sent = client_->kv()->Txn(&ctx, req, &resp);
  if (!sent.ok()) return etcd_internal::TxnError(sent, req);
  if (resp.succeeded()) return resp.header().revision();
  for (size_t i = 0;
       i < ops.size() && static_cast<int>(i) < resp.responses_size(); ++i) {
    const auto& range = resp.responses(i).response_range();
    store_internal::KeyState cur;
    if (range.kvs_size() > 0) {
      cur.exists = true;
      cur.resource_version = range.kvs(0).mod_revision();
      cur.create_version = range.kvs(0).create_revision();
    }
    RETURN_IF_ERROR(store_internal::CheckPrecondition(ops[i], cur));
  }
  return absl::AbortedError(
      "etcd txn compare failed without a failing precondition");
}

absl::StatusOr<KeyValue> EtcdStore::Get(const std::string& key) {
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  etcdserverpb::RangeResponse resp;
  grpc::ClientContext ctx;
  client_->SetDeadline(&ctx, options_.rpc_timeout);
  RETURN_IF_ERROR(
      etcd_internal::FromGrpc(client_->kv()->Range(&ctx, req, &resp), "get"));
  if (resp.kvs_size() == 0)
    return absl::NotFoundError(absl::StrCat("key \"", key, "\" not found"));
  const auto& kv = resp.kvs(0);
  return KeyValue{kv.key(), kv.value(), kv.mod_revision(),
                  kv.create_revision()};
}

absl::StatusOr<ListResult> EtcdStore::List(const std::string& prefix,
                                           int64_t limit) {
  return ListAfter(prefix, "", limit);
}

absl::StatusOr<ListResult> EtcdStore::ListAfter(const std::string& prefix,
                                                const std::string& after,
                                                int64_t limit) {
  if (limit < 0) return absl::InvalidArgumentError("negative list limit");
  etcdserverpb::RangeRequest req;
  etcd_internal::PrefixRange(prefix, req.mutable_key(),
                             req.mutable_range_end());
  // The smallest key after `after` is `after` with a NUL appended.
  if (!after.empty() && after >= req.key()) {
    req.set_key(after + std::string(1, '\0'));
  }
  req.set_limit(limit);
  req.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  req.set_sort_target(etcdserverpb::RangeRequest::KEY);
  etcdserverpb::RangeResponse resp;
  grpc::ClientContext ctx;
  client_->SetDeadline(&ctx, options_.rpc_timeout);
  RETURN_IF_ERROR(
      etcd_internal::FromGrpc(client_->kv()->Range(&ctx, req, &resp), "list"));
  ListResult out;
  out.resource_version = resp.header().revision();
  out.items.reserve(resp.kvs_size());
  for (auto& kv : *resp.mutable_kvs()) {
    out.items.push_back(KeyValue{std::move(*kv.mutable_key()),
                                 std::move(*kv.mutable_value()),
                                 kv.mod_revision(), kv.create_revision()});
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Watch>> EtcdStore::WatchPrefix(
    const std::string& prefix, int64_t from_version) {
  return WatchPrefixWithin(prefix, from_version, options_.rpc_timeout);
}

absl::StatusOr<std::unique_ptr<Watch>> EtcdStore::WatchPrefixWithin(
    const std::string& prefix, int64_t from_version, absl::Duration timeout) {
  if (from_version < 0)
    return absl::InvalidArgumentError("negative watch revision");
  if (watches_->closed()) return absl::CancelledError("store closed");
  auto watch = std::make_unique<EtcdWatch>(
      client_, watches_, prefix, from_version, options_.watch_buffer_events);
  watches_->Add(watch.get());
  RETURN_IF_ERROR(watch->Start(timeout));
  return std::unique_ptr<Watch>(std::move(watch));
}

absl::StatusOr<int64_t> EtcdStore::CurrentVersion() {
  etcdserverpb::RangeRequest req;
  req.set_key("/");  // any key gives the revision; this one a role allows
  req.set_keys_only(true);
  req.set_limit(1);
  etcdserverpb::RangeResponse resp;
  grpc::ClientContext ctx;
  client_->SetDeadline(&ctx, options_.rpc_timeout);
  RETURN_IF_ERROR(etcd_internal::FromGrpc(
      client_->kv()->Range(&ctx, req, &resp), "current revision"));
  return resp.header().revision();
}

absl::Status EtcdStore::Compact(int64_t revision) {
  etcdserverpb::CompactionRequest req;
  req.set_revision(revision);
  req.set_physical(true);
  etcdserverpb::CompactionResponse resp;
  grpc::ClientContext ctx;
  client_->SetDeadline(&ctx, options_.rpc_timeout);
  return etcd_internal::FromGrpc(client_->kv()->Compact(&ctx, req, &resp),
                                 "compact");
}

absl::StatusOr<int64_t> EtcdStore::GrantLease(absl::Duration ttl) {
  if (ttl <= absl::ZeroDuration())
    return absl::InvalidArgumentError("lease TTL must be positive");
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(std::max<int64_t>(
      1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  etcdserverpb::LeaseGrantResponse resp;
  grpc::ClientContext ctx;
  client_->SetDeadline(&ctx, options_.rpc_timeout);
  RETURN_IF_ERROR(etcd_internal::FromGrpc(
      client_->lease()->LeaseGrant(&ctx, req, &resp), "lease grant"));
  if (!resp.error().empty()) {
    return absl::UnavailableError(
        absl::StrCat("etcd lease grant: ", resp.error()));
  }
  return resp.id();
}

absl::StatusOr<absl::Duration> EtcdStore::KeepAliveOnce(
    int64_t id, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) timeout = options_.rpc_timeout;
  grpc::ClientContext ctx;
  client_->SetDeadline(&ctx, timeout);
  auto stream = client_->lease()->LeaseKeepAlive(&ctx);
  etcdserverpb::LeaseKeepAliveRequest req;
  req.set_id(id);
  etcdserverpb::LeaseKeepAliveResponse resp;
  bool got = false;
  if (stream->Write(req)) {
    stream->WritesDone();
    got = stream->Read(&resp);
  }
  if (!got) ctx.TryCancel();
  grpc::Status s = stream->Finish();
  if (!got) {
    RETURN_IF_ERROR(etcd_internal::FromGrpc(s, "lease keepalive"));
    return absl::UnavailableError("etcd lease keepalive: no answer");
  }
  if (resp.ttl() <= 0) {
    return absl::NotFoundError(absl::StrCat("etcd lease ", id, " not found"));
  }
  return absl::Seconds(resp.ttl());
}

absl::Status EtcdStore::RevokeLease(int64_t id, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) timeout = options_.rpc_timeout;
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(id);
  etcdserverpb::LeaseRevokeResponse resp;
  grpc::ClientContext ctx;
  client_->SetDeadline(&ctx, timeout);
  return etcd_internal::FromGrpc(
      client_->lease()->LeaseRevoke(&ctx, req, &resp), "lease revoke");
}

}  // namespace tidal
