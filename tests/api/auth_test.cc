// Roles and rules, tokens (hashed at rest, unique names, revocation,
// expiry), the bootstrap token file, and the audit log's levels and
// rotation (docs/auth.md).

#include "api/auth.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/api_auth.h"
#include "api/audit.h"
#include "api/tokens.h"
#include "fakes/fake_clock.h"
#include "store/keys.h"
#include "store/sqlite_store.h"
#include "tidal/v1/auth.pb.h"

namespace tidal::auth {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/auth-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST(RulesTest, RolesAreSupersetsAndBindingsAreNamespaced) {
  Principal p;
  p.name = "ci";
  p.bindings = {{"a", Role::kDeveloper}, {"b", Role::kViewer}};
  EXPECT_TRUE(Allowed(p, "apply", "apps", "a"));
  EXPECT_TRUE(Allowed(p, "get", "apps", "a"));
  EXPECT_FALSE(Allowed(p, "create", "tokens", "a"));
  EXPECT_TRUE(Allowed(p, "list", "apps", "b"));
  EXPECT_FALSE(Allowed(p, "delete", "apps", "b"));
  EXPECT_FALSE(Allowed(p, "get", "apps", "c"));
  EXPECT_FALSE(Allowed(p, "list", "secrets", "b"));  // viewers see no secrets
  EXPECT_TRUE(Allowed(p, "list", "nodes", ""));      // any authenticated
  EXPECT_FALSE(Allowed(p, "delete", "nodes", ""));   // cluster admin only
  // kubectl's verbs.
  EXPECT_TRUE(Allowed(p, "create", "apps", "a"));
  EXPECT_TRUE(Allowed(p, "patch", "apps", "a"));
  absl::Status s = Authorize(p, "delete", "apps", "b");
  EXPECT_TRUE(absl::IsPermissionDenied(s));
  EXPECT_EQ(s.message(),
            "token \"ci\" (developer in \"a\", viewer in \"b\") cannot delete "
            "apps in namespace \"b\": it needs the developer role there");
  EXPECT_TRUE(absl::StrContains(Authorize(p, "get", "widgets", "a").message(),
                                "doesn't have a resource type \"widgets\""));

  Principal admin;
  admin.bindings = {{kAllNamespaces, Role::kAdmin}};
  EXPECT_TRUE(Allowed(admin, "delete", "nodes", ""));
  EXPECT_TRUE(Allowed(admin, "create", "tokens", "anything"));
  EXPECT_EQ(admin.RoleIn("x"), Role::kAdmin);
  Principal nobody;
  EXPECT_FALSE(Allowed(nobody, "list", "nodes", ""));
  EXPECT_FALSE(ParseRole("root").ok());
}

class TokenStoreTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    auto s = SqliteStore::Open(dir_ + "/tidal.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    tokens_ = std::make_unique<TokenStore>(store_.get(), &clock_);
  }
  testing::FakeClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<TokenStore> tokens_;
};

TEST_F(TokenStoreTest, OnlyASaltedHashIsStored) {
  auto a = tokens_->Create("ci", {{"a", Role::kDeveloper}}, absl::Hours(24),
                           "alice");
  ASSERT_TRUE(a.ok()) << a.status();
  std::string id, secret;
  ASSERT_TRUE(TokenStore::Parse(a->token, &id, &secret).ok());
  EXPECT_EQ(a->info.id(), id);
  EXPECT_EQ(a->info.created_by(), "alice");
  auto kv = store_->Get(keys::Token(id));
  ASSERT_TRUE(kv.ok());
  v1::TokenRecord r;
  ASSERT_TRUE(r.ParseFromString(kv->value));
  EXPECT_EQ(r.salt().size(), 16u);
  EXPECT_EQ(r.hash().size(), 32u);
  EXPECT_FALSE(absl::StrContains(kv->value, secret));
  store_.reset();  // the file on disk holds no secret either
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    EXPECT_FALSE(absl::StrContains(ReadAll(f.path()), secret)) << f.path();
  }
}

TEST_F(TokenStoreTest, VerifyRevokeExpireAndUniqueNames) {
  auto a = tokens_->Create("ci", {{"a", Role::kAdmin}}, absl::Hours(1), "t");
  ASSERT_TRUE(a.ok());
  auto p = tokens_->Verify(a->token);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name, "ci");
  EXPECT_EQ(p->RoleIn("a"), Role::kAdmin);
  EXPECT_EQ(p->RoleIn("b"), Role::kNone);
  EXPECT_TRUE(absl::IsAlreadyExists(
      tokens_->Create("ci", {{"b", Role::kViewer}}, absl::ZeroDuration(), "t")
          .status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(tokens_
                                  ->Create("Bad Name", {{"b", Role::kViewer}},
                                           absl::ZeroDuration(), "t")
                                  .status()));
  // A wrong secret, a malformed token.
  std::string tampered = a->token;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  EXPECT_TRUE(absl::IsUnauthenticated(tokens_->Verify(tampered).status()));
  EXPECT_TRUE(absl::IsUnauthenticated(tokens_->Verify("hello").status()));
  // Expiry.
  clock_.Advance(absl::Minutes(59));
  EXPECT_TRUE(tokens_->Verify(a->token).ok());
  clock_.Advance(absl::Minutes(1));
  EXPECT_TRUE(absl::IsUnauthenticated(tokens_->Verify(a->token).status()));
  // Revocation, by name or by id; the name is free again.
  auto b = tokens_->Create("deploy", {{"a", Role::kViewer}},
                           absl::ZeroDuration(), "t");
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(tokens_->Revoke(b->info.id()).ok());
  EXPECT_TRUE(absl::IsUnauthenticated(tokens_->Verify(b->token).status()));
  EXPECT_TRUE(absl::IsNotFound(tokens_->Revoke("deploy").status()));
  EXPECT_TRUE(
      tokens_
          ->Create("deploy", {{"a", Role::kViewer}}, absl::ZeroDuration(), "t")
          .ok());
}

TEST_F(TokenStoreTest, BootstrapTokenIsMadeOnceInAPrivateFile) {
  const std::string file = dir_ + "/admin.token";
  std::string warning;
  auto made = EnsureBootstrapToken(tokens_.get(), "", file, &warning);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(*made, file);
  struct stat st {};
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string token = ReadAll(file);
  while (!token.empty() && token.back() == '\n') token.pop_back();
  auto p = tokens_->Verify(token);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->ClusterRole(), Role::kAdmin);
  // Tokens exist: nothing more is made (a revoked bootstrap stays revoked).
  ASSERT_TRUE(tokens_->Revoke("bootstrap-admin").ok());
  ASSERT_TRUE(
      tokens_->Create("x", {{"a", Role::kViewer}}, absl::ZeroDuration(), "t")
          .ok());
  auto again = EnsureBootstrapToken(tokens_.get(), "", file, &warning);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, "");
  EXPECT_TRUE(absl::IsUnauthenticated(tokens_->Verify(token).status()));
}

TEST_F(TokenStoreTest, BootstrapTokenFileIsSharedAndMustBePrivate) {
  const std::string shared = dir_ + "/cluster.token";
  std::string warning;
  auto first =
      EnsureBootstrapToken(tokens_.get(), shared, dir_ + "/n1", &warning);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, shared);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/n1"));
  // A second node with the same file: the token exists, nothing changes.
  auto second =
      EnsureBootstrapToken(tokens_.get(), shared, dir_ + "/n2", &warning);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, "");
  EXPECT_EQ(warning, "");
  std::string token = ReadAll(shared);
  while (!token.empty() && token.back() == '\n') token.pop_back();
  EXPECT_TRUE(tokens_->Verify(token).ok());
  // An operator's file open to others is refused, naming it.
  chmod(shared.c_str(), 0644);
  auto open =
      EnsureBootstrapToken(tokens_.get(), shared, dir_ + "/n3", &warning);
  EXPECT_TRUE(absl::IsPermissionDenied(open.status()));
  EXPECT_TRUE(absl::StrContains(open.status().message(), shared));
}

// A node started without the cluster's file, once tokens exist, makes no
// file (its token would open nothing) and says what to do; a file whose
// token the store does not know is named.
TEST_F(TokenStoreTest, ALateNodeWithoutTheSharedFileMakesNone) {
  const std::string shared = dir_ + "/cluster.token";
  std::string warning;
  ASSERT_TRUE(
      EnsureBootstrapToken(tokens_.get(), shared, dir_ + "/n1", &warning).ok());
  const std::string late = dir_ + "/late.token";
  auto second =
      EnsureBootstrapToken(tokens_.get(), late, dir_ + "/n2", &warning);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, "");
  EXPECT_FALSE(std::filesystem::exists(late));
  EXPECT_TRUE(absl::StrContains(warning, late + " does not exist")) << warning;
  EXPECT_TRUE(absl::StrContains(warning, "copy that node's file")) << warning;
  // A file of another cluster's token.
  {
    std::ofstream out(late);
    out << TokenStore::NewToken() << "\n";
  }
  chmod(late.c_str(), 0600);
  ASSERT_TRUE(
      EnsureBootstrapToken(tokens_.get(), late, dir_ + "/n3", &warning).ok());
  EXPECT_TRUE(absl::StrContains(warning, "is not one the store knows"))
      << warning;
}

TEST_F(TokenStoreTest, TokenAdminsManageOnlyTheirNamespaces) {
  ApiAuth api(AuthMode::kToken, tokens_.get(), nullptr);
  Principal a_admin;
  a_admin.name = "a-admin";
  a_admin.bindings = {{"a", Role::kAdmin}};
  v1::CreateTokenRequest req;
  req.set_name("a-dev");
  req.set_namespace_("a");
  req.set_role("developer");
  ASSERT_TRUE(api.CreateToken(a_admin, req).ok());
  req.set_name("b-dev");
  req.set_namespace_("b");
  EXPECT_TRUE(absl::IsPermissionDenied(api.CreateToken(a_admin, req).status()));
  req.set_name("everywhere");
  req.set_namespace_("*");
  req.set_role("viewer");
  EXPECT_TRUE(absl::IsPermissionDenied(api.CreateToken(a_admin, req).status()));
  EXPECT_TRUE(absl::IsNotFound(api.RevokeToken(a_admin,
                                               [] {
                                                 v1::RevokeTokenRequest r;
                                                 r.set_name("no-such");
                                                 return r;
                                               }())
                                   .status()));
  auto who = api.WhoAmI(a_admin);
  EXPECT_EQ(who.name(), "a-admin");
  ASSERT_EQ(who.bindings_size(), 1);
  EXPECT_EQ(who.bindings(0).role(), "admin");
  v1::CanIRequest can;
  can.set_verb("delete");
  can.set_resource("apps");
  can.set_namespace_("b");
  auto answer = api.CanI(a_admin, can);
  ASSERT_TRUE(answer.ok());
  EXPECT_FALSE(answer->allowed());
  // --auth=none: everyone is an unrestricted anonymous caller.
  ApiAuth none(AuthMode::kNone, nullptr, nullptr);
  auto anon = none.Authenticate("");
  ASSERT_TRUE(anon.ok());
  EXPECT_EQ(anon->ClusterRole(), Role::kAdmin);
  EXPECT_TRUE(absl::IsUnauthenticated(api.Authenticate("").status()));
}

TEST_F(TempDirTest, AuditLogLevelsAndRotation) {
  v1::AuditEvent e;
  e.set_verb("apply");
  e.mutable_user()->set_username("ci");
  (*e.mutable_request_object()->mutable_fields())["replicas"].set_number_value(
      3);

  AuditOptions none;
  none.path = dir_ + "/none.log";
  none.level = AuditLevel::kNone;
  auto n = AuditLog::Open(none);
  ASSERT_TRUE(n.ok());
  (*n)->Write(e);
  EXPECT_FALSE(std::filesystem::exists(none.path));

  AuditOptions meta;
  meta.path = dir_ + "/meta.log";
  auto m = AuditLog::Open(meta);
  ASSERT_TRUE(m.ok());
  (*m)->Write(e);
  (*m)->Flush();
  std::string line = ReadAll(meta.path);
  EXPECT_TRUE(absl::StrContains(line, "\"level\":\"Metadata\""));
  EXPECT_TRUE(absl::StrContains(line, "\"username\":\"ci\""));
  EXPECT_FALSE(absl::StrContains(line, "requestObject"));
  struct stat st {};
  ASSERT_EQ(stat(meta.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);

  AuditOptions req;
  req.path = dir_ + "/req.log";
  req.level = AuditLevel::kRequest;
  req.max_size = 4096;
  req.max_files = 2;
  auto r = AuditLog::Open(req);
  ASSERT_TRUE(r.ok());
  for (int i = 0; i < 200; ++i) (*r)->Write(e);
  (*r)->Flush();
  EXPECT_TRUE(absl::StrContains(ReadAll(req.path),
                                "\"requestObject\":{\"replicas\":3}"));
  EXPECT_TRUE(std::filesystem::exists(req.path + ".1") ||
              std::filesystem::exists(dir_ + "/req.1.log"));
  // At most max_files rotated files are kept, each under the cap.
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    if (!absl::StartsWith(f.path().filename().string(), "req")) continue;
    ++files;
    EXPECT_LE(std::filesystem::file_size(f.path()), 4096u + 1024u);
  }
  EXPECT_EQ(files, 3);
  EXPECT_FALSE(ParseAuditLevel("Verbose").ok());
  EXPECT_EQ(*ParseAuditLevel("request"), AuditLevel::kRequest);
}

}  // namespace
}  // namespace tidal::auth
