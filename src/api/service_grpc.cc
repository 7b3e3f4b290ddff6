// TidalService over gRPC: the generated service's adapter, ApiServer and
// StartServer.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "api/grpc_status.h"
#include "api/service.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tls_files.h"
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

absl::StatusOr<std::unique_ptr<ApiServer>> StartServer(
    const std::string& address, TidalService* service,
    const ApiTlsOptions& tls) {
  auto impl = std::make_unique<ApiServer::Impl>();
  impl->service = service;
  impl->grpc_service = std::make_unique<GrpcTidal>(service);
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
