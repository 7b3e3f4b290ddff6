#include "api/api_auth.h"

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace tidal::auth {

absl::StatusOr<Principal> ApiAuth::Authenticate(
    const std::string& bearer) const {
  if (mode_ == AuthMode::kNone) return Principal::Unrestricted();
  if (bearer.empty()) {
    return absl::UnauthenticatedError(
        "this tidald requires a token: pass --token, set TIDAL_TOKEN, or use "
        "a context with a token in ~/.config/tidal/config.yaml "
        "(docs/auth.md)");
  }
  return tokens_->Verify(bearer);
}

namespace {

absl::Status NeedsTokens(AuthMode mode) {
  if (mode == AuthMode::kToken) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "this tidald runs with --auth=none: it has no tokens");
}

std::string NamespaceOrDefault(const std::string& ns) {
  return ns.empty() ? "default" : ns;
}

}  // namespace

bool ApiAuth::Administers(const Principal& caller,
                          const v1::TokenInfo& info) const {
  for (const auto& b : info.bindings()) {
    if (b.namespace_() == kAllNamespaces) {
      if (caller.ClusterRole() < Role::kAdmin) return false;
    } else if (caller.RoleIn(b.namespace_()) < Role::kAdmin) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<v1::CreateTokenResponse> ApiAuth::CreateToken(
    const Principal& caller, const v1::CreateTokenRequest& req) const {
  RETURN_IF_ERROR(NeedsTokens(mode_));
  const std::string ns = NamespaceOrDefault(req.namespace_());
  ASSIGN_OR_RETURN(Role role, ParseRole(req.role()));
  if (ns == kAllNamespaces) {
    if (caller.ClusterRole() < Role::kAdmin) {
      return absl::PermissionDeniedError(absl::StrCat(
          "token \"", caller.name, "\" (", caller.Describe(),
          ") cannot create cluster-wide tokens: it needs the admin role in "
          "every namespace"));
    }
  } else {
    RETURN_IF_ERROR(Authorize(caller, "create", "tokens", ns));
  }
  if (req.ttl_seconds() < 0) {
    return absl::InvalidArgumentError("ttl: must not be negative");
  }
  ASSIGN_OR_RETURN(
      TokenStore::Created made,
      tokens_->Create(req.name(), {{ns, role}},
                      absl::Seconds(req.ttl_seconds()), caller.name));
  v1::CreateTokenResponse resp;
  resp.set_token(made.token);
  *resp.mutable_info() = made.info;
  return resp;
}

absl::StatusOr<v1::ListTokensResponse> ApiAuth::ListTokens(
    const Principal& caller, const v1::ListTokensRequest& req) const {
  RETURN_IF_ERROR(NeedsTokens(mode_));
  const std::string ns = NamespaceOrDefault(req.namespace_());
  if (!req.all_namespaces()) {
    RETURN_IF_ERROR(Authorize(caller, "list", "tokens", ns));
  }
  ASSIGN_OR_RETURN(std::vector<v1::TokenInfo> all, tokens_->List());
  v1::ListTokensResponse resp;
  for (auto& info : all) {
    bool in_ns = req.all_namespaces();
    for (const auto& b : info.bindings()) in_ns |= b.namespace_() == ns;
    // Only tokens the caller administers: the others name namespaces and
    // people the caller may not know of.
    if (in_ns && Administers(caller, info)) {
      *resp.add_tokens() = std::move(info);
    }
  }
  return resp;
}

absl::StatusOr<v1::RevokeTokenResponse> ApiAuth::RevokeToken(
    const Principal& caller, const v1::RevokeTokenRequest& req) const {
  RETURN_IF_ERROR(NeedsTokens(mode_));
  auto info = tokens_->Get(req.name());
  // A token the caller does not administer is "not found": whether it
  // exists is none of its business.
  if (absl::IsNotFound(info.status()) ||
      (info.ok() && !Administers(caller, *info))) {
    return absl::NotFoundError(
        absl::StrCat("token \"", req.name(), "\" not found"));
  }
  RETURN_IF_ERROR(info.status());
  ASSIGN_OR_RETURN(v1::TokenInfo revoked, tokens_->Revoke(info->id()));
  v1::RevokeTokenResponse resp;
  *resp.mutable_info() = std::move(revoked);
  return resp;
}

v1::WhoAmIResponse ApiAuth::WhoAmI(const Principal& caller) const {
  v1::WhoAmIResponse resp;
  resp.set_name(caller.name);
  resp.set_token_id(caller.token_id);
  for (const Binding& b : caller.bindings) {
    auto* rb = resp.add_bindings();
    rb->set_namespace_(b.ns);
    rb->set_role(RoleName(b.role));
  }
  if (caller.expires != absl::InfiniteFuture()) {
    *resp.mutable_expires() = ToProtoTime(caller.expires);
  }
  resp.set_auth_mode(mode_ == AuthMode::kNone ? "none" : "token");
  return resp;
}

absl::StatusOr<v1::CanIResponse> ApiAuth::CanI(
    const Principal& caller, const v1::CanIRequest& req) const {
  v1::CanIResponse resp;
  const std::string ns = NamespaceOrDefault(req.namespace_());
  absl::Status s = Authorize(caller, req.verb(), req.resource(), ns);
  resp.set_allowed(s.ok());
  resp.set_reason(s.ok() ? "yes" : std::string(s.message()));
  return resp;
}

}  // namespace tidal::auth
