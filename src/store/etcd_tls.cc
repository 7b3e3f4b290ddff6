#include "store/etcd_tls.h"

#include <arpa/inet.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace tidal::etcd_internal {
namespace {

// The 4 or 16 bytes of an IP address, or "" when `text` is none.
std::string IpBytes(absl::string_view text) {
  absl::ConsumePrefix(&text, "[");
  absl::ConsumeSuffix(&text, "]");
  const std::string s(text);
  unsigned char buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) {
    return std::string(reinterpret_cast<char*>(buf), 4);
  }
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    return std::string(reinterpret_cast<char*>(buf), 16);
  }
  return "";
}

bool DnsNameCovers(absl::string_view pattern, absl::string_view host) {
  pattern = absl::StripSuffix(pattern, ".");
  host = absl::StripSuffix(host, ".");
  if (absl::EqualsIgnoreCase(pattern, host)) return true;
  if (!absl::ConsumePrefix(&pattern, "*.")) return false;
  const size_t dot = host.find('.');
  if (dot == absl::string_view::npos || dot == 0) return false;
  return absl::EqualsIgnoreCase(pattern, host.substr(dot + 1));
}

// Runs after the handshake has checked the chain: the name check, against
// the endpoints (no per-address name is known to a channel of several).
class MemberNameVerifier
    : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit MemberNameVerifier(std::vector<std::string> names)
      : names_(std::move(names)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/,
              grpc::Status* sync_status) override {
    std::vector<std::string> dns, ips;
    for (const auto& n : request->dns_names())
      dns.emplace_back(n.data(), n.size());
    for (const auto& n : request->ip_names())
      ips.emplace_back(n.data(), n.size());
    if (CertificateNames(dns, ips, names_)) {
      *sync_status = grpc::Status::OK;
    } else {
      std::vector<std::string> carried;
      for (const auto& d : dns) carried.push_back(absl::StrCat("DNS:", d));
      for (const auto& i : ips) carried.push_back(absl::StrCat("IP:", i));
      *sync_status = grpc::Status(
          grpc::StatusCode::UNAUTHENTICATED,
          absl::StrCat(
              "etcd's certificate names ",
              carried.empty() ? "nothing" : absl::StrJoin(carried, ", "),
              ", none of ", absl::StrJoin(names_, ", ")));
    }
    return true;  // decided here, synchronously
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {
  }

 private:
  const std::vector<std::string> names_;
};

}  // namespace

bool CertificateNames(const std::vector<std::string>& dns_names,
                      const std::vector<std::string>& ip_names,
                      const std::vector<std::string>& hosts) {
  for (const std::string& host : hosts) {
    const std::string ip = IpBytes(host);
    if (!ip.empty()) {
      for (const std::string& n : ip_names) {
        if (IpBytes(n) == ip) return true;
      }
      continue;
    }
    for (const std::string& n : dns_names) {
      if (DnsNameCovers(n, host)) return true;
    }
  }
  return false;
}

std::shared_ptr<grpc::ChannelCredentials> EtcdTlsCredentials(
    const std::string& root_certs, const std::string& cert_chain,
    const std::string& private_key, std::vector<std::string> names) {
  using grpc::experimental::IdentityKeyCertPair;
  std::vector<IdentityKeyCertPair> identity;
  if (!cert_chain.empty()) {
    IdentityKeyCertPair pair;
    pair.private_key = private_key;
    pair.certificate_chain = cert_chain;
    identity.push_back(std::move(pair));
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (!root_certs.empty() || !identity.empty()) {
    options.set_certificate_provider(
        std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
            root_certs, identity));
    // Without roots of its own, gRPC reads the system's.
    if (!root_certs.empty()) options.watch_root_certs();
    if (!identity.empty()) options.watch_identity_key_cert_pairs();
  }
  options.set_verify_server_certs(true);  // the chain, in the handshake
  options.set_check_call_host(false);     // the names: the verifier's
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<
          MemberNameVerifier>(std::move(names)));
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace tidal::etcd_internal
