// TidalService over gRPC: the generated service's adapter, ApiServer and
// StartServer.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "api/grpc_status.h"
#include "api/service.h"
#include "common/logging.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal {

namespace {

// Adapts TidalService to the generated gRPC service. Thread-safe.
class GrpcTidal final : public v1::Tidal::Service {
 public:
  explicit GrpcTidal(TidalService* s) : s_(s) {}

  template <typename T>
  static grpc::Status Reply(absl::StatusOr<T> r, T* out) {
    if (!r.ok()) return ToGrpc(r.status());
    *out = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Apply(grpc::ServerContext*, const v1::ApplyRequest* req,
                     v1::ApplyResponse* resp) override {
    return Reply(s_->Apply(*req), resp);
  }
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* req,
                   v1::App* resp) override {
    return Reply(s_->Get(*req), resp);
  }
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* req,
                    v1::ListResponse* resp) override {
    return Reply(s_->List(*req), resp);
  }
  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest* req,
                      v1::DeleteResponse* resp) override {
    return Reply(s_->Delete(*req), resp);
  }
  grpc::Status ListInstances(grpc::ServerContext*,
                             const v1::ListInstancesRequest* req,
                             v1::ListInstancesResponse* resp) override {
    return Reply(s_->ListInstances(*req), resp);
  }
  grpc::Status ListEvents(grpc::ServerContext*,
                          const v1::ListEventsRequest* req,
                          v1::ListEventsResponse* resp) override {
    return Reply(s_->ListEvents(*req), resp);
  }
  grpc::Status Version(grpc::ServerContext*, const v1::VersionRequest*,
                       v1::VersionResponse* resp) override {
    *resp = s_->Version();
    return grpc::Status::OK;
  }
  grpc::Status DeleteNode(grpc::ServerContext*,
                          const v1::DeleteNodeRequest* req,
                          v1::DeleteNodeResponse* resp) override {
    return Reply(s_->DeleteNode(*req), resp);
  }
  grpc::Status GetCluster(grpc::ServerContext*,
                          const v1::GetClusterRequest* req,
                          v1::GetClusterResponse* resp) override {
    return Reply(s_->GetCluster(*req), resp);
  }
  grpc::Status Scale(grpc::ServerContext*, const v1::ScaleRequest* req,
                     v1::App* resp) override {
    return Reply(s_->Scale(*req), resp);
  }
  grpc::Status Top(grpc::ServerContext*, const v1::TopRequest* req,
                   v1::TopResponse* resp) override {
    return Reply(s_->Top(*req), resp);
  }
  grpc::Status Rollout(grpc::ServerContext*, const v1::RolloutRequest* req,
                       v1::App* resp) override {
    return Reply(s_->Rollout(*req), resp);
  }
  grpc::Status ListRevisions(grpc::ServerContext*,
                             const v1::ListRevisionsRequest* req,
                             v1::ListRevisionsResponse* resp) override {
    return Reply(s_->ListRevisions(*req), resp);
  }
  grpc::Status GetSecret(grpc::ServerContext*, const v1::GetRequest* req,
                         v1::Secret* resp) override {
    return Reply(s_->GetSecret(*req), resp);
  }
  grpc::Status ListSecrets(grpc::ServerContext*,
                           const v1::ListSecretsRequest* req,
                           v1::ListSecretsResponse* resp) override {
    return Reply(s_->ListSecrets(*req), resp);
  }
  grpc::Status DeleteSecret(grpc::ServerContext*, const v1::DeleteRequest* req,
                            v1::Secret* resp) override {
    return Reply(s_->DeleteSecret(*req), resp);
  }
  grpc::Status Watch(grpc::ServerContext* ctx, const v1::WatchRequest* req,
                     grpc::ServerWriter<v1::WatchEvent>* writer) override {
    return ToGrpc(s_->Watch(
        *req, [&](const v1::WatchEvent& e) { return writer->Write(e); },
        [ctx] { return ctx->IsCancelled(); }));
  }
  grpc::Status Logs(grpc::ServerContext* ctx, const v1::LogsRequest* req,
                    grpc::ServerWriter<v1::LogChunk>* writer) override {
    return ToGrpc(s_->Logs(
        *req, [&](const v1::LogChunk& c) { return writer->Write(c); },
        [ctx] { return ctx->IsCancelled(); }));
  }

 private:
  TidalService* const s_;
};

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

absl::StatusOr<std::unique_ptr<ApiServer>> StartServer(
    const std::string& address, TidalService* service) {
  auto impl = std::make_unique<ApiServer::Impl>();
  impl->service = service;
  impl->grpc_service = std::make_unique<GrpcTidal>(service);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(),
                           &impl->port);
  builder.RegisterService(impl->grpc_service.get());
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT,
                             0);  // a busy port is an error
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    if (impl->server) impl->server->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", address, " (address in use or not valid)"));
  }
  GetLogger("api")->info("tidal API listening on {} (port {})", address,
                         impl->port);
  return std::make_unique<ApiServer>(std::move(impl));
}

}  // namespace tidal
