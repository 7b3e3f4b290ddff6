// TidalService's secrets over gRPC: Apply (with apps, in one transaction),
// GetSecret, ListSecrets, DeleteSecret; no answer and no stored byte holds
// a value.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/grpc_status.h"
#include "api/secret_store.h"
#include "api/service.h"
#include "common/secret_box.h"
#include "fakes/fake_clock.h"
#include "fakes/memory_store.h"
#include "store/keys.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal {
namespace {

using testing::FakeClock;
using testing::MemoryStore;

constexpr char kPlain[] = "Pl41n-S3cr3t-v4lue-zz9";

class ServiceSecretsTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(true); }
  void Start(bool with_key) {
    server_.reset();
    ServiceOptions opts;
    opts.secret_box = with_key ? &box_ : nullptr;
    service_ = std::make_unique<TidalService>(&store_, nullptr, &clock_, opts);
    auto server = StartServer("127.0.0.1:0", service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::Tidal::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                            grpc::InsecureChannelCredentials()));
  }

  absl::StatusOr<v1::ApplyResponse> ApplyYaml(const std::string& yaml,
                                              bool dry_run = false) {
    v1::ApplyRequest req;
    req.set_yaml(yaml);
    req.set_source("s.yaml");
    req.set_dry_run(dry_run);
    return Call(req);
  }
  absl::StatusOr<v1::ApplyResponse> Call(const v1::ApplyRequest& req) {
    grpc::ClientContext ctx;
    v1::ApplyResponse resp;
    absl::Status s = FromGrpc(stub_->Apply(&ctx, req, &resp));
    if (!s.ok()) return s;
    Seen(resp.SerializeAsString());
    return resp;
  }
  absl::StatusOr<v1::Secret> GetSecret(const std::string& name) {
    v1::GetRequest req;
    req.set_name(name);
    grpc::ClientContext ctx;
    v1::Secret out;
    absl::Status s = FromGrpc(stub_->GetSecret(&ctx, req, &out));
    if (!s.ok()) return s;
    Seen(out.SerializeAsString());
    return out;
  }
  // Every answer must be free of the value and of its base64.
  void Seen(const std::string& bytes) {
    EXPECT_FALSE(absl::StrContains(bytes, kPlain));
    EXPECT_FALSE(absl::StrContains(bytes, absl::Base64Escape(kPlain)));
  }
  void StoreHoldsNoPlaintext() {
    auto list = store_.List("/");
    ASSERT_TRUE(list.ok());
    for (const auto& kv : list->items) {
      EXPECT_FALSE(absl::StrContains(kv.value, kPlain)) << kv.key;
      EXPECT_FALSE(absl::StrContains(kv.value, absl::Base64Escape(kPlain)))
          << kv.key;
    }
  }

  static std::string SecretYaml(const std::string& value) {
    return absl::StrCat(
        "apiVersion: tidal.dev/v1\nkind: Secret\nmetadata:\n  name: db\n"
        "stringData:\n  password: ",
        value, "\ndata:\n  user: YWRtaW4=\n");
  }
  static constexpr char kApp[] = R"(---
apiVersion: tidal.dev/v1
kind: App
metadata: {name: web}
spec:
  template:
    command: [app]
    env:
      - name: DB_PASSWORD
        valueFrom:
          secretKeyRef: {name: db, key: password}
)";

  SecretBox box_ = *SecretBox::FromKey(std::string(32, 'k'));
  FakeClock clock_;
  MemoryStore store_;
  std::unique_ptr<TidalService> service_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<v1::Tidal::Stub> stub_;
};

TEST_F(ServiceSecretsTest, ApplyStoresSealedAndAnswersWithoutValues) {
  auto r = ApplyYaml(SecretYaml(kPlain) + kApp);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 2);
  const v1::ApplyResult& sr = r->results(1);
  EXPECT_EQ(sr.kind(), "Secret");
  EXPECT_EQ(sr.action(), "created");
  EXPECT_TRUE(sr.secret().data().empty());
  ASSERT_EQ(sr.secret().keys_size(), 2);
  EXPECT_EQ(sr.secret().keys(0).name(), "password");
  EXPECT_EQ(sr.secret().keys(0).size(), sizeof(kPlain) - 1);
  EXPECT_GT(sr.secret().metadata().resource_version(), 0);
  StoreHoldsNoPlaintext();

  // The sealed value opens with the key, under its own store key only.
  auto kv = store_.Get(keys::Secret("default", "db"));
  ASSERT_TRUE(kv.ok());
  auto opened = secrets::Unseal(box_, kv->key, kv->value);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->data().at("password"), kPlain);
  EXPECT_TRUE(absl::IsDataLoss(
      secrets::Unseal(box_, keys::Secret("default", "other"), kv->value)
          .status()));
  // The resolver the runtime uses.
  SecretResolver resolve =
      secrets::MakeResolver(&store_, std::make_shared<const SecretBox>(box_));
  EXPECT_EQ(*resolve("default", "db", "password"), kPlain);
  auto missing = resolve("default", "db", "nope");
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_EQ(missing.status().message(),
            "key \"nope\" not found in secret \"default/db\"");
  EXPECT_EQ(resolve("default", "gone", "k").status().message(),
            "secret \"default/gone\" not found");

  // Unchanged, then configured with a new value (a fresh nonce each write).
  r = ApplyYaml(SecretYaml(kPlain));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->results(0).action(), "unchanged");
  r = ApplyYaml(SecretYaml("other-value"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->results(0).action(), "configured");
  EXPECT_EQ(r->results(0).secret().metadata().generation(), 2);
  EXPECT_EQ(*resolve("default", "db", "password"), "other-value");
}

TEST_F(ServiceSecretsTest, GetListDeleteNeverCarryValues) {
  ASSERT_TRUE(ApplyYaml(SecretYaml(kPlain)).ok());
  auto got = GetSecret("db");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->metadata().name(), "db");
  EXPECT_EQ(got->type(), "Opaque");
  EXPECT_TRUE(got->data().empty());
  EXPECT_EQ(got->keys_size(), 2);

  v1::ListSecretsRequest lreq;
  grpc::ClientContext lctx;
  v1::ListSecretsResponse list;
  ASSERT_TRUE(FromGrpc(stub_->ListSecrets(&lctx, lreq, &list)).ok());
  Seen(list.SerializeAsString());
  ASSERT_EQ(list.secrets_size(), 1);
  EXPECT_EQ(list.secrets(0).keys_size(), 2);

  v1::DeleteRequest dreq;
  dreq.set_name("db");
  dreq.set_dry_run(true);
  {
    grpc::ClientContext ctx;
    v1::Secret out;
    ASSERT_TRUE(FromGrpc(stub_->DeleteSecret(&ctx, dreq, &out)).ok());
    Seen(out.SerializeAsString());
  }
  EXPECT_TRUE(GetSecret("db").ok());
  dreq.set_dry_run(false);
  {
    grpc::ClientContext ctx;
    v1::Secret out;
    ASSERT_TRUE(FromGrpc(stub_->DeleteSecret(&ctx, dreq, &out)).ok());
  }
  EXPECT_TRUE(absl::IsNotFound(GetSecret("db").status()));
  grpc::ClientContext ctx;
  v1::Secret out;
  EXPECT_TRUE(
      absl::IsNotFound(FromGrpc(stub_->DeleteSecret(&ctx, dreq, &out))));
}

TEST_F(ServiceSecretsTest, AnInvalidDocumentAppliesNothing) {
  auto r = ApplyYaml(SecretYaml(kPlain) + kApp +
                     "---\napiVersion: tidal.dev/v1\nkind: Secret\nmetadata: "
                     "{name: x}\ndata: {k: \"" +
                     std::string(kPlain) + "\"}\n");
  ASSERT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "s.yaml:")) << r.status();
  EXPECT_FALSE(absl::StrContains(r.status().message(), kPlain));
  auto list = store_.List("/");
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->items.empty());
}

TEST_F(ServiceSecretsTest, DryRunWritesNothing) {
  auto r = ApplyYaml(SecretYaml(kPlain), /*dry_run=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).action(), "created");
  EXPECT_TRUE(absl::IsNotFound(GetSecret("db").status()));
}

TEST_F(ServiceSecretsTest, ProgrammaticSecretsAreValidated) {
  v1::ApplyRequest req;
  v1::Secret* s = req.add_secrets();
  s->mutable_metadata()->set_name("Bad");
  (*s->mutable_data())["k"] = kPlain;
  auto r = Call(req);
  ASSERT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_TRUE(absl::StrContains(r.status().message(),
                                "secret default/Bad: metadata.name"))
      << r.status();
  EXPECT_FALSE(absl::StrContains(r.status().message(), kPlain));
  s->mutable_metadata()->set_name("ok");
  r = Call(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results(0).secret().keys(0).size(), sizeof(kPlain) - 1);
  StoreHoldsNoPlaintext();
}

TEST_F(ServiceSecretsTest, WithoutAKeySecretsAreRefused) {
  Start(false);
  auto r = ApplyYaml(SecretYaml(kPlain));
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "--secrets-key-file"));
}

}  // namespace
}  // namespace tidal
