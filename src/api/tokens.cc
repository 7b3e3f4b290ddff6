#include "api/tokens.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/private_file.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "store/keys.h"

namespace tidal::auth {
namespace {

constexpr char kPrefix[] = "tidal_";
constexpr size_t kIdHexLen = 16;
constexpr size_t kSecretBytes = 32;
constexpr size_t kSaltBytes = 16;

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                 static_cast<int>(n)) != 1) {
    // The kernel's RNG does not fail on Linux once seeded; better to stop
    // than to mint a guessable token.
    std::abort();
  }
  return out;
}

std::string Sha256(const std::string& salt, const std::string& secret) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, salt.data(), salt.size());
  EVP_DigestUpdate(ctx, secret.data(), secret.size());
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<char*>(md), len);
}

bool IsHex(const std::string& s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

absl::Status CheckName(const std::string& name) {
  if (name.empty() || name.size() > 63) {
    return absl::InvalidArgumentError(
        "name: a token's name is 1 to 63 characters");
  }
  for (char c : name) {
    if (!(absl::ascii_isalnum(c) && !absl::ascii_isupper(c)) && c != '-' &&
        c != '.' && c != '_' && c != ':') {
      return absl::InvalidArgumentError(absl::StrCat(
          "name: \"", name,
          "\" may hold only lower-case letters, digits, '-', '.', '_' and "
          "':'"));
    }
  }
  return absl::OkStatus();
}

absl::Status Unauthenticated() {
  return absl::UnauthenticatedError(
      "the token is not valid: unknown, revoked or expired");
}

}  // namespace

v1::TokenInfo InfoOf(const v1::TokenRecord& r) {
  v1::TokenInfo info;
  info.set_id(r.id());
  info.set_name(r.name());
  *info.mutable_bindings() = r.bindings();
  if (r.has_created()) *info.mutable_created() = r.created();
  if (r.has_expires()) *info.mutable_expires() = r.expires();
  info.set_created_by(r.created_by());
  return info;
}

std::vector<Binding> BindingsOf(const v1::TokenRecord& r) {
  std::vector<Binding> out;
  for (const auto& b : r.bindings()) {
    auto role = ParseRole(b.role());
    if (role.ok()) out.push_back({b.namespace_(), *role});
  }
  return out;
}

std::string TokenStore::NewToken() {
  std::string id = absl::BytesToHexString(RandomBytes(kIdHexLen / 2));
  std::string secret;
  absl::WebSafeBase64Escape(RandomBytes(kSecretBytes), &secret);
  return absl::StrCat(kPrefix, id, "_", secret);
}

absl::Status TokenStore::Parse(const std::string& token, std::string* id,
                               std::string* secret) {
  const size_t p = sizeof(kPrefix) - 1;
  if (!absl::StartsWith(token, kPrefix) || token.size() < p + kIdHexLen + 2 ||
      token[p + kIdHexLen] != '_') {
    return absl::InvalidArgumentError(
        "a token reads tidal_<16 hex digits>_<secret>");
  }
  *id = token.substr(p, kIdHexLen);
  *secret = token.substr(p + kIdHexLen + 1);
  if (!IsHex(*id) || secret->size() < 20) {
    return absl::InvalidArgumentError(
        "a token reads tidal_<16 hex digits>_<secret>");
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenStore::Created> TokenStore::Create(
    const std::string& name, std::vector<Binding> bindings, absl::Duration ttl,
    const std::string& created_by, const std::string& token) {
  RETURN_IF_ERROR(CheckName(name));
  if (bindings.empty()) {
    return absl::InvalidArgumentError("a token needs a role");
  }
  for (const Binding& b : bindings) {
    if (b.ns.empty()) {
      return absl::InvalidArgumentError(
          "namespace: empty (use \"*\" for every namespace)");
    }
    if (b.role == Role::kNone) {
      return absl::InvalidArgumentError("role: none is not a role");
    }
  }
  if (ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ttl: must not be negative");
  }
  Created out;
  out.token = token.empty() ? NewToken() : token;
  std::string id, secret;
  RETURN_IF_ERROR(Parse(out.token, &id, &secret));

  v1::TokenRecord r;
  r.set_id(id);
  r.set_name(name);
  for (const Binding& b : bindings) {
    auto* rb = r.add_bindings();
    rb->set_namespace_(b.ns);
    rb->set_role(RoleName(b.role));
  }
  r.set_salt(RandomBytes(kSaltBytes));
  r.set_hash(Sha256(r.salt(), secret));
  const absl::Time now = clock_->Now();
  *r.mutable_created() = ToProtoTime(now);
  if (ttl > absl::ZeroDuration()) *r.mutable_expires() = ToProtoTime(now + ttl);
  r.set_created_by(created_by);

  auto rev = store_->Txn({Op::Put(keys::Token(id), r.SerializeAsString(), 0),
                          Op::Put(keys::TokenName(name), id, 0)});
  if (absl::IsFailedPrecondition(rev.status())) {
    return absl::AlreadyExistsError(
        absl::StrCat("token \"", name, "\" already exists"));
  }
  RETURN_IF_ERROR(rev.status());
  out.info = InfoOf(r);
  return out;
}

absl::StatusOr<Principal> TokenStore::Verify(const std::string& token) {
  std::string id, secret;
  if (!Parse(token, &id, &secret).ok()) return Unauthenticated();
  const absl::Time now = clock_->Now();
  v1::TokenRecord r;
  bool cached = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(id);
    if (it != cache_.end() && now - it->second.read_at < kRecordCacheTtl &&
        now >= it->second.read_at) {
      r = it->second.record;
      cached = true;
    }
  }
  if (!cached) {
    auto kv = store_->Get(keys::Token(id));
    if (absl::IsNotFound(kv.status())) {
      absl::MutexLock lock(&mu_);
      cache_.erase(id);
      return Unauthenticated();
    }
    RETURN_IF_ERROR(kv.status());
    if (!r.ParseFromString(kv->value)) {
      return absl::DataLossError(
          absl::StrCat("token record ", id, " cannot be decoded"));
    }
    absl::MutexLock lock(&mu_);
    // Bounded: forged ids never get here (no record), and tokens are few.
    if (cache_.size() > 10000) cache_.clear();
    cache_[id] = Cached{r, now};
  }
  const std::string hash = Sha256(r.salt(), secret);
  if (hash.size() != r.hash().size() ||
      CRYPTO_memcmp(hash.data(), r.hash().data(), hash.size()) != 0) {
    return Unauthenticated();
  }
  Principal p;
  p.name = r.name();
  p.token_id = r.id();
  p.bindings = BindingsOf(r);
  if (r.has_expires()) {
    p.expires = FromProtoTime(r.expires());
    if (now >= p.expires) return Unauthenticated();
  }
  return p;
}

absl::StatusOr<std::vector<v1::TokenInfo>> TokenStore::List() {
  ASSIGN_OR_RETURN(ListResult list, store_->List(keys::TokenPrefix()));
  std::vector<v1::TokenInfo> out;
  for (const KeyValue& kv : list.items) {
    v1::TokenRecord r;
    if (r.ParseFromString(kv.value)) out.push_back(InfoOf(r));
  }
  std::sort(out.begin(), out.end(),
            [](const v1::TokenInfo& a, const v1::TokenInfo& b) {
              return a.name() < b.name();
            });
  return out;
}

absl::StatusOr<v1::TokenRecord> TokenStore::Find(const std::string& name_or_id,
                                                 int64_t* version) {
  std::string id = name_or_id;
  auto by_name = store_->Get(keys::TokenName(name_or_id));
  if (by_name.ok()) {
    id = by_name->value;
  } else if (!absl::IsNotFound(by_name.status())) {
    return by_name.status();
  }
  auto kv = store_->Get(keys::Token(id));
  if (absl::IsNotFound(kv.status()) || id.empty()) {
    return absl::NotFoundError(
        absl::StrCat("token \"", name_or_id, "\" not found"));
  }
  RETURN_IF_ERROR(kv.status());
  v1::TokenRecord r;
  if (!r.ParseFromString(kv->value)) {
    return absl::DataLossError(
        absl::StrCat("token record ", id, " cannot be decoded"));
  }
  if (version) *version = kv->resource_version;
  return r;
}

absl::StatusOr<v1::TokenInfo> TokenStore::Get(const std::string& name_or_id) {
  ASSIGN_OR_RETURN(v1::TokenRecord r, Find(name_or_id, nullptr));
  return InfoOf(r);
}

absl::StatusOr<v1::TokenInfo> TokenStore::Revoke(
    const std::string& name_or_id) {
  int64_t version = 0;
  ASSIGN_OR_RETURN(v1::TokenRecord r, Find(name_or_id, &version));
  auto rev = store_->Txn({Op::Delete(keys::Token(r.id()), version),
                          Op::Delete(keys::TokenName(r.name()))});
  {
    absl::MutexLock lock(&mu_);
    cache_.erase(r.id());
  }
  if (absl::IsFailedPrecondition(rev.status())) {
    return absl::AbortedError(absl::StrCat(
        "token \"", r.name(), "\" changed while revoking it; try again"));
  }
  RETURN_IF_ERROR(rev.status());
  return InfoOf(r);
}

absl::StatusOr<bool> TokenStore::Empty() {
  ASSIGN_OR_RETURN(ListResult list, store_->List(keys::TokenPrefix(), 1));
  return list.items.empty();
}

namespace {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        path, " is open to other users (mode 0", (st.st_mode >> 6) & 7,
        (st.st_mode >> 3) & 7, st.st_mode & 7, "); chmod 600 it"));
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(ss.str()));
  std::string id, secret;
  absl::Status parsed = TokenStore::Parse(token, &id, &secret);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", parsed.message()));
  }
  return token;
}

}  // namespace

absl::StatusOr<std::string> EnsureBootstrapToken(
    TokenStore* tokens, const std::string& token_file,
    const std::string& default_file, std::string* warning) {
  warning->clear();
  std::string token;  // the operator's file's, when it has one
  if (!token_file.empty()) {
    auto read = ReadTokenFile(token_file);
    if (!absl::IsNotFound(read.status())) {
      RETURN_IF_ERROR(read.status());
      token = *read;
    }
  }
  ASSIGN_OR_RETURN(bool empty, tokens->Empty());
  if (!empty) {
    if (token_file.empty()) return std::string();
    if (token.empty()) {
      *warning = absl::StrCat(
          "--auth-token-file ", token_file,
          " does not exist and the store has tokens already (another node "
          "made the bootstrap admin token): copy that node's file here; "
          "none was made");
    } else if (absl::IsUnauthenticated(tokens->Verify(token).status())) {
      *warning = absl::StrCat(
          "the token in --auth-token-file ", token_file,
          " is not one the store knows (revoked, expired, or another "
          "cluster's): tidalctl cannot use it");
    }
    return std::string();
  }
  // The file first: a token in the store that no file holds would lock
  // everyone out.
  const std::string file = token_file.empty() ? default_file : token_file;
  const bool made_file = token.empty();
  if (made_file) {
    token = TokenStore::NewToken();
    RETURN_IF_ERROR(WritePrivateFile(file, token + "\n"));
  }
  auto made =
      tokens->Create("bootstrap-admin", {{kAllNamespaces, Role::kAdmin}},
                     absl::ZeroDuration(), "tidald", token);
  if (made.ok()) return file;
  if (made_file) ::unlink(file.c_str());
  // AlreadyExists: another node of an HA cluster made it first (with a
  // shared file, this very token; without, the file is on that node).
  if (absl::IsAlreadyExists(made.status())) {
    if (made_file && !token_file.empty()) {
      *warning = absl::StrCat(
          "another node made the bootstrap admin token at the same moment: "
          "copy its --auth-token-file to ",
          token_file, " (none was made here)");
    }
    return std::string();
  }
  return made.status();
}

}  // namespace tidal::auth
