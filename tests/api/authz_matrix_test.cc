// The isolation matrix (docs/auth.md): tokens of each role in namespace A,
// every RPC, in namespaces A and B, over a real gRPC server on a real SQLite
// file, each cell's outcome from the table below. Lists and watches across
// namespaces return only what the caller may see; a denied write changes
// nothing; a missing, revoked or expired token is Unauthenticated.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/api_auth.h"
#include "api/grpc_status.h"
#include "api/service.h"
#include "common/secret_box.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_runtime.h"
#include "scaler/load_history.h"
#include "store/keys.h"
#include "store/sqlite_store.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal {
namespace {

using auth::Binding;
using auth::Role;
using testing::FakeClock;
using testing::FakeRuntime;

constexpr char kA[] = "team-a";
constexpr char kB[] = "team-b";

// One cell: allowed ('Y': the call got past authorization; it may still
// fail for its own reasons, never with PermissionDenied/Unauthenticated),
// denied ('-': PermissionDenied) or not found ('N': NotFound, for tokens the
// caller may not see).
struct Row {
  const char* call;
  // viewer, developer, admin of A; in namespace A then in namespace B.
  const char* a;
  const char* b;
};

// clang-format off
const Row kMatrix[] = {
    //  call                    A: v d a   B: v d a
    {"Get",                     "YYY",     "---"},
    {"List",                    "YYY",     "---"},
    {"Watch",                   "YYY",     "---"},
    {"ListInstances",           "YYY",     "---"},
    {"ListEvents",              "YYY",     "---"},
    {"Logs",                    "YYY",     "---"},
    {"ListRevisions",           "YYY",     "---"},
    {"Top",                     "YYY",     "---"},
    {"History",                 "YYY",     "---"},
    {"RolloutStatus",           "YYY",     "---"},
    {"Apply",                   "-YY",     "---"},
    {"ApplyYaml",               "-YY",     "---"},
    {"Scale",                   "-YY",     "---"},
    {"RolloutPause",            "-YY",     "---"},
    {"DeleteDryRun",            "-YY",     "---"},
    {"GetSecret",               "-YY",     "---"},
    {"ListSecrets",             "-YY",     "---"},
    {"ApplySecret",             "-YY",     "---"},
    {"DeleteSecretDryRun",      "-YY",     "---"},
    {"CreateToken",             "--Y",     "---"},
    {"ListTokens",              "--Y",     "---"},
    {"CanI",                    "YYY",     "YYY"},
    {"WhoAmI",                  "YYY",     "YYY"},
    {"GetCluster",              "YYY",     "YYY"},
    {"DeleteNodeDryRun",        "---",     "---"},
    {"RevokeToken",             "NNY",     "NNN"},
};
// clang-format on

class AuthzMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/authz-" +
           std::to_string(reinterpret_cast<uintptr_t>(this));
    std::system(("rm -rf " + dir_ + " && mkdir -p " + dir_).c_str());
    auto store = SqliteStore::Open(dir_ + "/tidal.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto box = SecretBox::FromKey(std::string(SecretBox::kKeySize, 'k'));
    ASSERT_TRUE(box.ok());
    box_ = std::make_unique<SecretBox>(std::move(*box));
    ServiceOptions opts;
    opts.poll_interval = absl::Milliseconds(20);
    opts.secret_box = box_.get();
    opts.history = &history_;
    service_ =
        std::make_unique<TidalService>(store_.get(), &runtime_, &clock_, opts);
    tokens_ = std::make_unique<auth::TokenStore>(store_.get(), &clock_);
    auth::AuditOptions aopts;
    aopts.path = dir_ + "/audit.log";
    auto audit = auth::AuditLog::Open(aopts);
    ASSERT_TRUE(audit.ok());
    audit_ = std::move(*audit);
    api_auth_ = std::make_unique<auth::ApiAuth>(auth::AuthMode::kToken,
                                                tokens_.get(), audit_.get());
    auto server =
        StartServer("127.0.0.1:0", service_.get(), {}, api_auth_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::Tidal::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                            grpc::InsecureChannelCredentials()));

    // Two namespaces, an app and an instance in each (in-process: no auth).
    for (const char* ns : {kA, kB}) {
      v1::ApplyRequest req;
      auto* app = req.add_apps();
      app->set_api_version("tidal.dev/v1");
      app->set_kind("App");
      app->mutable_metadata()->set_name("web");
      app->mutable_metadata()->set_namespace_(ns);
      app->mutable_spec()->set_replicas(1);
      app->mutable_spec()->mutable_template_()->add_command("sleep");
      ASSERT_TRUE(service_->Apply(req).ok());
      v1::ApplyRequest sreq;
      sreq.set_yaml(absl::StrCat(
          "apiVersion: tidal.dev/v1\nkind: Secret\nmetadata:\n  name: db\n"
          "  namespace: ",
          ns, "\nstringData:\n  password: s3cret\n"));
      ASSERT_TRUE(service_->Apply(sreq).ok());
      InstanceRequest ir;
      ir.namespace_ = ns;
      ir.app = "web";
      ASSERT_TRUE(runtime_.Start(ir).ok());
    }
    for (Role r : {Role::kViewer, Role::kDeveloper, Role::kAdmin}) {
      auto made =
          tokens_->Create(absl::StrCat(auth::RoleName(r), "-a"),
                          {Binding{kA, r}}, absl::ZeroDuration(), "test");
      ASSERT_TRUE(made.ok()) << made.status();
      token_[static_cast<int>(r)] = made->token;
    }
    for (const char* ns : {kA, kB}) {
      ASSERT_TRUE(tokens_
                      ->Create(absl::StrCat("victim-", ns),
                               {Binding{ns, Role::kViewer}},
                               absl::ZeroDuration(), "test")
                      .ok());
    }
  }
  void TearDown() override {
    server_.reset();
    std::system(("rm -rf " + dir_).c_str());
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return ctx;
  }

  // Makes the call named `call` in `ns` with `token`; its status.
  absl::Status Call(const std::string& call, const std::string& ns,
                    const std::string& token, const std::string& tag) {
    auto c = Ctx(token);
    auto* s = stub_.get();
    if (call == "Get") {
      v1::GetRequest r;
      r.set_namespace_(ns);
      r.set_name("web");
      v1::App out;
      return FromGrpc(s->Get(c.get(), r, &out));
    }
    if (call == "List") {
      v1::ListRequest r;
      r.set_namespace_(ns);
      v1::ListResponse out;
      return FromGrpc(s->List(c.get(), r, &out));
    }
    if (call == "Watch") {
      v1::WatchRequest r;
      r.set_namespace_(ns);
      auto reader = s->Watch(c.get(), r);
      v1::WatchEvent ev;
      if (reader->Read(&ev)) {  // the current state comes first
        c->TryCancel();
        while (reader->Read(&ev)) {
        }
        (void)reader->Finish();
        return absl::OkStatus();
      }
      return FromGrpc(reader->Finish());
    }
    if (call == "ListInstances") {
      v1::ListInstancesRequest r;
      r.set_namespace_(ns);
      v1::ListInstancesResponse out;
      return FromGrpc(s->ListInstances(c.get(), r, &out));
    }
    if (call == "ListEvents") {
      v1::ListEventsRequest r;
      r.set_namespace_(ns);
      v1::ListEventsResponse out;
      return FromGrpc(s->ListEvents(c.get(), r, &out));
    }
    if (call == "Logs") {
      v1::LogsRequest r;
      r.set_namespace_(ns);
      r.set_app("web");
      auto reader = s->Logs(c.get(), r);
      v1::LogChunk chunk;
      while (reader->Read(&chunk)) {
      }
      return FromGrpc(reader->Finish());
    }
    if (call == "ListRevisions") {
      v1::ListRevisionsRequest r;
      r.set_namespace_(ns);
      r.set_app("web");
      v1::ListRevisionsResponse out;
      return FromGrpc(s->ListRevisions(c.get(), r, &out));
    }
    if (call == "Top") {
      v1::TopRequest r;
      r.set_namespace_(ns);
      v1::TopResponse out;
      return FromGrpc(s->Top(c.get(), r, &out));
    }
    if (call == "History") {
      v1::HistoryRequest r;
      r.set_namespace_(ns);
      v1::HistoryResponse out;
      return FromGrpc(s->History(c.get(), r, &out));
    }
    if (call == "RolloutStatus" || call == "RolloutPause") {
      v1::RolloutRequest r;
      r.set_namespace_(ns);
      r.set_name("web");
      r.set_action(call == "RolloutStatus" ? "status" : "pause");
      v1::App out;
      return FromGrpc(s->Rollout(c.get(), r, &out));
    }
    if (call == "Apply") {
      v1::ApplyRequest r;
      auto* app = r.add_apps();
      app->set_api_version("tidal.dev/v1");
      app->set_kind("App");
      app->mutable_metadata()->set_name("new-" + tag);
      app->mutable_metadata()->set_namespace_(ns);
      app->mutable_spec()->mutable_template_()->add_command("sleep");
      v1::ApplyResponse out;
      return FromGrpc(s->Apply(c.get(), r, &out));
    }
    if (call == "ApplyYaml") {
      v1::ApplyRequest r;
      r.set_yaml(absl::StrCat(
          "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: yaml-", tag,
          "\n  namespace: ", ns,
          "\nspec:\n  template:\n    command: [sleep]\n"));
      v1::ApplyResponse out;
      return FromGrpc(s->Apply(c.get(), r, &out));
    }
    if (call == "GetSecret") {
      v1::GetRequest r;
      r.set_namespace_(ns);
      r.set_name("db");
      v1::Secret out;
      return FromGrpc(s->GetSecret(c.get(), r, &out));
    }
    if (call == "ListSecrets") {
      v1::ListSecretsRequest r;
      r.set_namespace_(ns);
      v1::ListSecretsResponse out;
      return FromGrpc(s->ListSecrets(c.get(), r, &out));
    }
    if (call == "ApplySecret") {
      v1::ApplyRequest r;
      r.set_yaml(absl::StrCat(
          "apiVersion: tidal.dev/v1\nkind: Secret\n", "metadata:\n  name: s-",
          tag, "\n  namespace: ", ns, "\nstringData:\n  password: hunter2\n"));
      v1::ApplyResponse out;
      return FromGrpc(s->Apply(c.get(), r, &out));
    }
    if (call == "DeleteSecretDryRun") {
      v1::DeleteRequest r;
      r.set_namespace_(ns);
      r.set_name("db");
      r.set_dry_run(true);
      v1::Secret out;
      return FromGrpc(s->DeleteSecret(c.get(), r, &out));
    }
    if (call == "Scale") {
      v1::ScaleRequest r;
      r.set_namespace_(ns);
      r.set_name("web");
      r.set_replicas(2);
      v1::App out;
      return FromGrpc(s->Scale(c.get(), r, &out));
    }
    if (call == "DeleteDryRun") {
      v1::DeleteRequest r;
      r.set_namespace_(ns);
      r.set_name("web");
      r.set_dry_run(true);
      v1::DeleteResponse out;
      return FromGrpc(s->Delete(c.get(), r, &out));
    }
    if (call == "CreateToken") {
      v1::CreateTokenRequest r;
      r.set_name("made-" + tag);
      r.set_namespace_(ns);
      r.set_role("viewer");
      v1::CreateTokenResponse out;
      return FromGrpc(s->CreateToken(c.get(), r, &out));
    }
    if (call == "ListTokens") {
      v1::ListTokensRequest r;
      r.set_namespace_(ns);
      v1::ListTokensResponse out;
      return FromGrpc(s->ListTokens(c.get(), r, &out));
    }
    if (call == "CanI") {
      v1::CanIRequest r;
      r.set_verb("delete");
      r.set_resource("apps");
      r.set_namespace_(ns);
      v1::CanIResponse out;
      return FromGrpc(s->CanI(c.get(), r, &out));
    }
    if (call == "WhoAmI") {
      v1::WhoAmIResponse out;
      return FromGrpc(s->WhoAmI(c.get(), v1::WhoAmIRequest(), &out));
    }
    if (call == "GetCluster") {
      v1::GetClusterResponse out;
      return FromGrpc(s->GetCluster(c.get(), v1::GetClusterRequest(), &out));
    }
    if (call == "DeleteNodeDryRun") {
      v1::DeleteNodeRequest r;
      r.set_name("n1");
      r.set_dry_run(true);
      v1::DeleteNodeResponse out;
      return FromGrpc(s->DeleteNode(c.get(), r, &out));
    }
    if (call == "RevokeToken") {
      v1::RevokeTokenRequest r;
      r.set_name(absl::StrCat("victim-", ns));
      v1::RevokeTokenResponse out;
      return FromGrpc(s->RevokeToken(c.get(), r, &out));
    }
    ADD_FAILURE() << "no call " << call;
    return absl::InternalError("no such call");
  }

  std::string dir_;
  std::unique_ptr<SecretBox> box_;
  FakeClock clock_;
  FakeRuntime runtime_{true};
  std::unique_ptr<SqliteStore> store_;
  LoadHistory history_;  // before service_, which reads it
  std::unique_ptr<TidalService> service_;
  std::unique_ptr<auth::TokenStore> tokens_;
  std::unique_ptr<auth::AuditLog> audit_;
  std::unique_ptr<auth::ApiAuth> api_auth_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<v1::Tidal::Stub> stub_;
  std::string token_[4];
};

TEST_F(AuthzMatrixTest, EveryCellAsSpecified) {
  const Role roles[] = {Role::kViewer, Role::kDeveloper, Role::kAdmin};
  int cells = 0;
  for (const Row& row : kMatrix) {
    for (int col = 0; col < 6; ++col) {
      const bool in_a = col < 3;
      const Role role = roles[col % 3];
      const char want = (in_a ? row.a : row.b)[col % 3];
      const std::string ns = in_a ? kA : kB;
      const std::string tag = absl::StrCat(auth::RoleName(role), "-", ns);
      absl::Status s = Call(row.call, ns, token_[static_cast<int>(role)], tag);
      SCOPED_TRACE(absl::StrCat(row.call, " by ", auth::RoleName(role), " of ",
                                kA, " in ", ns, ": ", s.ToString()));
      ++cells;
      switch (want) {
        case 'Y':
          EXPECT_FALSE(absl::IsPermissionDenied(s) ||
                       absl::IsUnauthenticated(s));
          break;
        case '-':
          EXPECT_TRUE(absl::IsPermissionDenied(s));
          // The denial names the verb's resource and the namespace.
          if (row.call != std::string("DeleteNodeDryRun")) {
            EXPECT_NE(s.message().find(absl::StrCat("\"", ns, "\"")),
                      std::string::npos);
          }
          break;
        case 'N':
          EXPECT_TRUE(absl::IsNotFound(s));
          break;
        default:
          ADD_FAILURE() << "bad cell " << want;
      }
    }
  }
  EXPECT_EQ(cells, 6 * static_cast<int>(std::size(kMatrix)));

  // Denied writes changed nothing in B; allowed ones happened in A.
  auto b = service_->Get([] {
    v1::GetRequest r;
    r.set_namespace_(kB);
    r.set_name("web");
    return r;
  }());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->spec().replicas(), 1);
  EXPECT_FALSE(b->metadata().has_deletion_timestamp());
  v1::ListRequest lb;
  lb.set_namespace_(kB);
  EXPECT_EQ(service_->List(lb)->apps_size(), 1);
  v1::ListRequest la;
  la.set_namespace_(kA);
  EXPECT_EQ(service_->List(la)->apps_size(), 1 + 2 * 2);  // web + 2 roles x 2
  auto tokens = tokens_->List();
  ASSERT_TRUE(tokens.ok());
  std::set<std::string> names;
  for (const auto& t : *tokens) names.insert(t.name());
  EXPECT_TRUE(names.count("made-admin-team-a"));
  EXPECT_FALSE(names.count("made-admin-team-b"));
  EXPECT_FALSE(names.count("victim-team-a"));  // the admin revoked it
  EXPECT_TRUE(names.count("victim-team-b"));
}

TEST_F(AuthzMatrixTest,
       ListsAndWatchesAcrossNamespacesShowOnlyWhatTheCallerMaySee) {
  const std::string viewer = token_[static_cast<int>(Role::kViewer)];
  {
    v1::ListRequest r;
    r.set_all_namespaces(true);
    v1::ListResponse out;
    auto c = Ctx(viewer);
    ASSERT_TRUE(stub_->List(c.get(), r, &out).ok());
    ASSERT_EQ(out.apps_size(), 1);
    EXPECT_EQ(out.apps(0).metadata().namespace_(), kA);
  }
  {
    v1::ListInstancesRequest r;
    r.set_all_namespaces(true);
    v1::ListInstancesResponse out;
    auto c = Ctx(viewer);
    ASSERT_TRUE(stub_->ListInstances(c.get(), r, &out).ok());
    ASSERT_EQ(out.instances_size(), 1);
    EXPECT_EQ(out.instances(0).namespace_(), kA);
  }
  {
    // A watch across namespaces: changes in B never reach the viewer of A;
    // a change in A after one in B does.
    v1::WatchRequest r;
    r.set_all_namespaces(true);
    auto c = Ctx(viewer);
    auto reader = stub_->Watch(c.get(), r);
    std::vector<std::string> seen;
    v1::WatchEvent ev;
    ASSERT_TRUE(reader->Read(&ev));  // the current state: web in A only
    seen.push_back(ev.app().metadata().namespace_());
    for (const char* ns : {kB, kA}) {
      v1::ScaleRequest s;
      s.set_namespace_(ns);
      s.set_name("web");
      s.set_replicas(3);
      ASSERT_TRUE(service_->Scale(s).ok());
    }
    ASSERT_TRUE(reader->Read(&ev));
    seen.push_back(ev.app().metadata().namespace_());
    c->TryCancel();
    while (reader->Read(&ev)) seen.push_back(ev.app().metadata().namespace_());
    (void)reader->Finish();
    for (const auto& ns : seen) EXPECT_EQ(ns, kA);
  }
  {
    // History across namespaces: B's apps are not read, and naming an app
    // only B has answers as for one that does not exist.
    history_.Record(kA, "web", 1000, LoadPoint{}, "");
    history_.Record(kB, "web", 1000, LoadPoint{}, "");
    v1::ApplyRequest only_b;
    only_b.set_yaml(absl::StrCat(
        "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: only-b\n"
        "  namespace: ",
        kB, "\nspec:\n  template:\n    command: [sleep]\n"));
    ASSERT_TRUE(service_->Apply(only_b).ok());
    v1::HistoryRequest r;
    r.set_all_namespaces(true);
    r.set_window_seconds(60);
    v1::HistoryResponse out;
    auto c = Ctx(viewer);
    ASSERT_TRUE(stub_->History(c.get(), r, &out).ok());
    ASSERT_EQ(out.apps_size(), 1);
    EXPECT_EQ(out.apps(0).namespace_(), kA);
    for (const char* app : {"only-b", "ghost"}) {
      r.set_namespace_(kB);
      r.set_app(app);
      v1::HistoryResponse probe;
      auto pc = Ctx(viewer);
      grpc::Status st = stub_->History(pc.get(), r, &probe);
      EXPECT_TRUE(st.ok()) << app << ": " << st.error_message();
      EXPECT_EQ(probe.apps_size(), 0) << app;
    }
  }
  {
    // Tokens: an admin of A lists A's tokens and never B's.
    v1::ListTokensRequest r;
    r.set_all_namespaces(true);
    v1::ListTokensResponse out;
    auto c = Ctx(token_[static_cast<int>(Role::kAdmin)]);
    ASSERT_TRUE(stub_->ListTokens(c.get(), r, &out).ok());
    for (const auto& t : out.tokens()) {
      for (const auto& b : t.bindings()) EXPECT_EQ(b.namespace_(), kA);
    }
    EXPECT_GE(out.tokens_size(), 4);
  }
}

TEST_F(AuthzMatrixTest, MissingRevokedAndExpiredTokensAreUnauthenticated) {
  for (const Row& row : kMatrix) {
    absl::Status s = Call(row.call, kA, "", "anon");
    EXPECT_TRUE(absl::IsUnauthenticated(s)) << row.call << ": " << s;
    s = Call(row.call, kA, "tidal_0123456789abcdef_not-a-real-secret-at-all",
             "forged");
    EXPECT_TRUE(absl::IsUnauthenticated(s)) << row.call << ": " << s;
  }
  // Version is open (health probes).
  {
    v1::VersionResponse out;
    auto c = Ctx("");
    EXPECT_TRUE(stub_->Version(c.get(), v1::VersionRequest(), &out).ok());
  }
  const std::string viewer = token_[static_cast<int>(Role::kViewer)];
  ASSERT_TRUE(Call("Get", kA, viewer, "v").ok());
  // A right secret under another token's id does not pass.
  std::string id, secret;
  ASSERT_TRUE(auth::TokenStore::Parse(viewer, &id, &secret).ok());
  std::string other_id, other_secret;
  ASSERT_TRUE(auth::TokenStore::Parse(token_[static_cast<int>(Role::kAdmin)],
                                      &other_id, &other_secret)
                  .ok());
  EXPECT_TRUE(absl::IsUnauthenticated(
      Call("Get", kA, absl::StrCat("tidal_", other_id, "_", secret), "swap")));
  // Revoked: at once.
  ASSERT_TRUE(tokens_->Revoke("viewer-a").ok());
  EXPECT_TRUE(absl::IsUnauthenticated(Call("Get", kA, viewer, "v")));
  // Expired.
  auto brief = tokens_->Create("brief", {Binding{kA, Role::kAdmin}},
                               absl::Hours(1), "test");
  ASSERT_TRUE(brief.ok());
  EXPECT_TRUE(Call("Get", kA, brief->token, "b").ok());
  clock_.Advance(absl::Hours(1));
  EXPECT_TRUE(absl::IsUnauthenticated(Call("Get", kA, brief->token, "b")));
}

TEST_F(AuthzMatrixTest, MutatingAndDeniedCallsAreAuditedAndReadsAreNot) {
  const std::string dev = token_[static_cast<int>(Role::kDeveloper)];
  ASSERT_TRUE(Call("Scale", kA, dev, "d").ok());
  ASSERT_TRUE(absl::IsPermissionDenied(Call("Scale", kB, dev, "d")));
  ASSERT_TRUE(Call("Get", kA, dev, "d").ok());
  ASSERT_TRUE(absl::IsUnauthenticated(Call("Get", kA, "", "d")));
  // The token calls decide their denials themselves: audited as denials,
  // a read (ListTokens) included.
  ASSERT_TRUE(absl::IsPermissionDenied(Call("ListTokens", kA, dev, "d")));
  ASSERT_TRUE(absl::IsPermissionDenied(Call("CreateToken", kA, dev, "d")));
  audit_->Flush();
  std::ifstream in(dir_ + "/audit.log");
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 5u);
  for (int i : {3, 4}) {
    EXPECT_NE(lines[i].find("\"outcome\":\"denied\""), std::string::npos)
        << lines[i];
  }
  EXPECT_NE(lines[3].find("\"method\":\"ListTokens\""), std::string::npos);
  EXPECT_NE(lines[4].find("\"method\":\"CreateToken\""), std::string::npos);
  EXPECT_NE(lines[0].find("\"username\":\"developer-a\""), std::string::npos);
  EXPECT_NE(lines[0].find("\"verb\":\"scale\""), std::string::npos);
  EXPECT_NE(lines[0].find("\"namespace\":\"team-a\",\"name\":\"web\""),
            std::string::npos);
  EXPECT_NE(lines[0].find("\"outcome\":\"allowed\""), std::string::npos);
  EXPECT_NE(lines[1].find("\"outcome\":\"denied\""), std::string::npos);
  EXPECT_NE(lines[1].find("PERMISSION_DENIED"), std::string::npos);
  EXPECT_NE(lines[2].find("UNAUTHENTICATED"), std::string::npos);
  for (const auto& l : lines) {
    EXPECT_NE(l.find("\"auditId\":\""), std::string::npos);
    EXPECT_EQ(l.find(dev), std::string::npos) << "a token in the audit log";
  }
}

// x-tidal-client-address names the client of a call relayed inside tidald
// (the dashboard's); from anywhere else it is ignored.
TEST_F(AuthzMatrixTest, OnlyInProcessCallsNameTheirClientsAddress) {
  const std::string dev = token_[static_cast<int>(Role::kDeveloper)];
  auto inproc = v1::Tidal::NewStub(server_->InProcessChannel());
  for (v1::Tidal::Stub* stub : {stub_.get(), inproc.get()}) {
    v1::ScaleRequest r;
    r.set_namespace_(kB);  // denied: audited
    r.set_name("web");
    r.set_replicas(2);
    auto c = Ctx(dev);
    c->AddMetadata("x-tidal-client-address", "203.0.113.9");
    v1::App out;
    EXPECT_EQ(stub->Scale(c.get(), r, &out).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  audit_->Flush();
  std::ifstream in(dir_ + "/audit.log");
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].find("203.0.113.9"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("127.0.0.1"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("203.0.113.9"), std::string::npos) << lines[1];
}

// Deleting a node gone for good also revokes its own token (node:NAME, a
// cluster-wide viewer made at each of its starts).
TEST_F(AuthzMatrixTest, DeletingANodeRevokesItsToken) {
  ServiceOptions opts;
  opts.ha = true;
  opts.node_name = "n0";
  opts.node_last_seen = [](const std::string&) {
    return std::optional<absl::Time>();  // never heard from: gone
  };
  TidalService ha(store_.get(), &runtime_, &clock_, opts);
  auto server = StartServer("127.0.0.1:0", &ha, {}, api_auth_.get());
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::Tidal::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                          grpc::InsecureChannelCredentials()));
  v1::NodeRecord rec;
  rec.set_name("n1");
  ASSERT_TRUE(store_->Create(keys::Node("n1"), rec.SerializeAsString()).ok());
  auto node_token = tokens_->Create("node:n1", {Binding{"*", Role::kViewer}},
                                    absl::ZeroDuration(), "tidald");
  ASSERT_TRUE(node_token.ok());
  auto admin = tokens_->Create("root", {Binding{"*", Role::kAdmin}},
                               absl::ZeroDuration(), "test");
  ASSERT_TRUE(admin.ok());
  v1::DeleteNodeRequest req;
  req.set_name("n1");
  v1::DeleteNodeResponse resp;
  // A dry run keeps it.
  req.set_dry_run(true);
  ASSERT_TRUE(stub->DeleteNode(Ctx(admin->token).get(), req, &resp).ok());
  EXPECT_TRUE(tokens_->Verify(node_token->token).ok());
  req.set_dry_run(false);
  grpc::Status st = stub->DeleteNode(Ctx(admin->token).get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(
      absl::IsUnauthenticated(tokens_->Verify(node_token->token).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Get(keys::Node("n1")).status()));
}

}  // namespace
}  // namespace tidal
