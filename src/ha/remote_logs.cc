#include "ha/remote_logs.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/tls_files.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal::ha {
namespace {

class GrpcLogStream : public LogStream {
 public:
  GrpcLogStream(RemoteLogTarget target, const LogOptions& options,
                const std::string& token,
                std::shared_ptr<grpc::ChannelCredentials> credentials)
      : target_(std::move(target)) {
    if (!token.empty()) ctx_.AddMetadata("authorization", "Bearer " + token);
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 16 << 20);
    // Without gRPC's retry filter, which aborts the process on a stream
    // ended without a status, as a node being stopped can end this one
    // (grpc/grpc#34683; src/store/etcd_store.cc).
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    auto channel = grpc::CreateCustomChannel(target_.api_address,
                                             std::move(credentials), args);
    stub_ = v1::Tidal::NewStub(channel);
    v1::LogsRequest req;
    req.set_namespace_(target_.namespace_);
    req.set_app(target_.app);
    req.set_instance(target_.instance_id);
    req.set_follow(options.follow);
    req.set_tail_lines(options.tail_lines);
    req.set_from_node(true);
    req.set_previous(options.previous);
    reader_ = stub_->Logs(&ctx_, req);
    thread_ = std::thread([this] { Read(); });
  }

  ~GrpcLogStream() override {
    Cancel();
    thread_.join();
  }

  absl::StatusOr<std::string> Next(absl::Duration wait) override {
    absl::MutexLock l(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return cancelled_ || !chunks_.empty() || done_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
    if (cancelled_) return absl::CancelledError("log stream cancelled");
    if (!chunks_.empty()) {
      std::string out = std::move(chunks_.front());
      chunks_.pop_front();
      queued_ -= out.size();
      return out;
    }
    if (done_) return end_;
    return std::string();
  }

  void Cancel() override {
    {
      absl::MutexLock l(&mu_);
      cancelled_ = true;
    }
    ctx_.TryCancel();
  }

 private:
  void Read() {
    v1::LogChunk chunk;
    std::string warning;
    while (reader_->Read(&chunk)) {
      if (!chunk.warning().empty()) {
        // The node asked could not read it to its end: so it ends here.
        absl::string_view why = chunk.warning();
        absl::ConsumePrefix(
            &why, absl::StrCat("the log of instance ", target_.instance_id,
                               " cannot be read: "));
        warning = std::string(why);
        continue;
      }
      if (chunk.data().empty()) continue;
      absl::MutexLock l(&mu_);
      // Bounded: a slow reader holds the remote node back (flow control).
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return cancelled_ || queued_ < kMaxQueued;
      };
      mu_.Await(absl::Condition(&room));
      if (cancelled_) break;
      queued_ += chunk.data().size();
      chunks_.push_back(std::move(*chunk.mutable_data()));
    }
    grpc::Status s = reader_->Finish();
    absl::MutexLock l(&mu_);
    done_ = true;
    if (s.ok() && !warning.empty()) {
      end_ = absl::UnavailableError(
          absl::StrCat("on node ", target_.node, ": ", warning));
    } else if (s.ok()) {
      end_ = absl::OutOfRangeError("end of the log");
    } else {
      end_ = absl::Status(
          static_cast<absl::StatusCode>(s.error_code()),
          absl::StrCat("logs of instance ", target_.instance_id, " from node ",
                       target_.node, " (", target_.api_address,
                       "): ", s.error_message()));
    }
  }

  const RemoteLogTarget target_;
  grpc::ClientContext ctx_;
  std::unique_ptr<v1::Tidal::Stub> stub_;
  std::unique_ptr<grpc::ClientReader<v1::LogChunk>> reader_;
  std::thread thread_;

  absl::Mutex mu_;
  static constexpr size_t kMaxQueued = 4 << 20;
  std::deque<std::string> chunks_ ABSL_GUARDED_BY(mu_);
  size_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const PeerTls& tls) {
  if (!tls.enabled) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions opts;
  if (!tls.ca_file.empty()) {
    ASSIGN_OR_RETURN(opts.pem_root_certs,
                     ReadFlagFile(tls.ca_file, "--tls-peer-ca"));
  }
  if (!tls.cert_file.empty() && !tls.key_file.empty()) {
    ASSIGN_OR_RETURN(opts.pem_cert_chain,
                     ReadFlagFile(tls.cert_file, "--tls-cert"));
    ASSIGN_OR_RETURN(opts.pem_private_key,
                     ReadFlagFile(tls.key_file, "--tls-key"));
  }
  return grpc::SslCredentials(opts);
}

}  // namespace

RemoteLogOpener GrpcRemoteLogOpener(std::function<std::string()> token,
                                    PeerTls tls) {
  return [token, tls](const RemoteLogTarget& target, const LogOptions& options)
             -> absl::StatusOr<std::unique_ptr<LogStream>> {
    if (target.api_address.empty()) {
      return absl::UnavailableError(
          absl::StrCat("instance ", target.instance_id, " runs on node ",
                       target.node, ", whose API address is not known"));
    }
    ASSIGN_OR_RETURN(auto credentials, Credentials(tls));
    return std::make_unique<GrpcLogStream>(target, options,
                                           token ? token() : std::string(),
                                           std::move(credentials));
  };
}

}  // namespace tidal::ha
