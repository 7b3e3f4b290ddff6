#pragma once

// TLS to etcd: the channel credentials that check each member's
// certificate (docs/ha.md, "Securing etcd").

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>
#include <vector>

namespace tidal::etcd_internal {

// Whether a certificate whose subject alternative names are `dns_names` and
// `ip_names` names one of `hosts`: DNS names compared without case, a
// "*.example.com" name covering one label ("a.example.com", not
// "a.b.example.com" nor "example.com"), IP addresses compared as addresses
// ("::1" and "0:0:0:0:0:0:0:1" alike). The common name is not read (as Go's
// crypto/tls, which etcd's own client uses, no longer does).
bool CertificateNames(const std::vector<std::string>& dns_names,
                      const std::vector<std::string>& ip_names,
                      const std::vector<std::string>& hosts);

// Credentials for one channel over every endpoint. Each member's
// certificate must chain to `root_certs` (PEM; empty: the system's roots)
// and name one of `names`: the endpoints' hosts (a member's certificate
// names itself; the channel cannot tell which address it reached), or the
// single --etcd-server-name. `cert_chain` and `private_key` (PEM, both or
// neither): the client certificate of etcd's --client-cert-auth.
std::shared_ptr<grpc::ChannelCredentials> EtcdTlsCredentials(
    const std::string& root_certs, const std::string& cert_chain,
    const std::string& private_key, std::vector<std::string> names);

}  // namespace tidal::etcd_internal
