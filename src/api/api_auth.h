#pragma once

// ApiAuth: the API's authentication mode and the token RPCs (CreateToken,
// ListTokens, RevokeToken, WhoAmI, CanI) for an authenticated caller. The
// gRPC layer (service_grpc.cc) takes the bearer token from the request's
// metadata, asks Authenticate for the Principal, checks each call with
// auth::Authorize and writes the audit log. No gRPC types here. Thread-safe.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "api/audit.h"
#include "api/auth.h"
#include "api/tokens.h"
#include "tidal/v1/auth.pb.h"

namespace tidal::auth {

enum class AuthMode { kNone, kToken };

class ApiAuth {
 public:
  // kToken needs `tokens` (not owned). `audit` may be null (no audit log).
  ApiAuth(AuthMode mode, TokenStore* tokens, AuditLog* audit)
      : mode_(mode), tokens_(tokens), audit_(audit) {}

  AuthMode mode() const { return mode_; }
  AuditLog* audit() const { return audit_; }

  // The caller behind `bearer` (the token, without "Bearer "): with
  // kNone, Principal::Unrestricted() whatever is sent; with kToken,
  // Unauthenticated when it is missing or not valid.
  absl::StatusOr<Principal> Authenticate(const std::string& bearer) const;

  // Tokens: an admin of a namespace manages the tokens bound to it (up to
  // admin there); cluster-wide tokens take a cluster-wide admin.
  absl::StatusOr<v1::CreateTokenResponse> CreateToken(
      const Principal& caller, const v1::CreateTokenRequest& req) const;
  absl::StatusOr<v1::ListTokensResponse> ListTokens(
      const Principal& caller, const v1::ListTokensRequest& req) const;
  absl::StatusOr<v1::RevokeTokenResponse> RevokeToken(
      const Principal& caller, const v1::RevokeTokenRequest& req) const;
  v1::WhoAmIResponse WhoAmI(const Principal& caller) const;
  absl::StatusOr<v1::CanIResponse> CanI(const Principal& caller,
                                        const v1::CanIRequest& req) const;

 private:
  // Whether `caller` administers every namespace `info` is bound to.
  bool Administers(const Principal& caller, const v1::TokenInfo& info) const;

  const AuthMode mode_;
  TokenStore* const tokens_;
  AuditLog* const audit_;
};

}  // namespace tidal::auth
