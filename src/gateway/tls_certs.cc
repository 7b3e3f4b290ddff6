#include "gateway/tls_certs.h"

#include <openssl/ssl.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/asio/buffer.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/tls_files.h"

namespace tidal::gateway {
namespace {

namespace ssl = boost::asio::ssl;

// The SSL ex_data slot holding a connection's CertSet.
int CertSetIndex() {
  static const int index =
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// SNI: switches the connection to the certificate of its server name.
int OnServerName(SSL* ssl, int* /*alert*/, void* /*arg*/) {
  const auto* set =
      static_cast<const CertSet*>(SSL_get_ex_data(ssl, CertSetIndex()));
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (set != nullptr && name != nullptr) {
    SSL_CTX* ctx = set->ForName(name).native_handle();
    if (ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  }
  return SSL_TLSEXT_ERR_OK;
}

// ALPN: h2 when the client offers it (every app is reached over HTTP/2:
// h2_relay.h), else HTTP/1.1 when the client offers it (no protocol
// otherwise: such a client speaks HTTP/1.1 or fails).
int OnAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
           const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  static const unsigned char kHttp11[] = {8,   'h', 't', 't', 'p',
                                          '/', '1', '.', '1'};
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof(kH2), in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof(kHttp11), in,
                            inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

bool AlpnChoseH2(const SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &data, &len);
  return len == 2 && data[0] == 'h' && data[1] == '2';
}

int MatchServerName(const std::vector<std::string>& domains,
                    absl::string_view server_name) {
  const std::string lower_name = absl::AsciiStrToLower(server_name);
  absl::string_view name = absl::StripSuffix(lower_name, ".");
  int best = -1;
  size_t best_len = 0;
  bool best_exact = false;
  for (size_t i = 0; i < domains.size(); ++i) {
    const std::string lower = absl::AsciiStrToLower(domains[i]);
    absl::string_view domain = absl::StripSuffix(lower, ".");
    const bool wildcard = absl::ConsumePrefix(&domain, "*.");
    if (domain.empty()) continue;
    const bool under = name.size() > domain.size() &&
                       absl::EndsWith(name, domain) &&
                       name[name.size() - domain.size() - 1] == '.';
    const bool matches = under || (!wildcard && name == domain);
    if (!matches) continue;
    if (best < 0 || domain.size() > best_len ||
        (domain.size() == best_len && !wildcard && !best_exact)) {
      best = static_cast<int>(i);
      best_len = domain.size();
      best_exact = !wildcard;
    }
  }
  return best;
}

CertSet::CertSet(std::vector<std::string> domains,
                 std::vector<std::shared_ptr<ssl::context>> contexts)
    : domains_(std::move(domains)), contexts_(std::move(contexts)) {
  for (size_t i = 0; i < domains_.size(); ++i) {
    if (domains_[i].empty()) {
      default_ = i;
      break;
    }
  }
}

void CertSet::Attach(SSL* ssl) const {
  SSL_set_ex_data(ssl, CertSetIndex(), const_cast<CertSet*>(this));
}

ssl::context& CertSet::ForName(absl::string_view server_name) const {
  int i = MatchServerName(domains_, server_name);
  return *contexts_[i < 0 ? default_ : static_cast<size_t>(i)];
}

absl::StatusOr<std::shared_ptr<ssl::context>> TlsCerts::MakeContext(
    const GatewayTlsCert& cert) {
  // Read whole first: a file being rewritten is read again at the next
  // check, not half-way by OpenSSL.
  auto chain = ReadFlagFile(cert.cert_file, "--gateway-tls-cert");
  if (!chain.ok()) return chain.status();
  auto key = ReadFlagFile(cert.key_file, "--gateway-tls-cert");
  if (!key.ok()) return key.status();
  absl::Status pair = CheckKeyPairFiles(cert.cert_file, "--gateway-tls-cert",
                                        cert.key_file, "--gateway-tls-cert");
  if (!pair.ok()) return pair;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                       ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                   ec);
  if (!ec) {
    ctx->use_certificate_chain(boost::asio::buffer(*chain), ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gateway-tls-cert: ", cert.cert_file, ": ", ec.message()));
    }
  }
  if (!ec) {
    ctx->use_private_key(boost::asio::buffer(*key), ssl::context::pem, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gateway-tls-cert: ", cert.key_file, ": ", ec.message()));
    }
  }
  if (ec || SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gateway-tls-cert: ", cert.key_file,
                     ": does not match the certificate ", cert.cert_file));
  }
  SSL_CTX_set_tlsext_servername_callback(ctx->native_handle(), OnServerName);
  SSL_CTX_set_alpn_select_cb(ctx->native_handle(), OnAlpn, nullptr);
  return ctx;
}

TlsCerts::Stamp TlsCerts::StampOf(const std::string& path) {
  struct stat st;
  Stamp s;
  if (stat(path.c_str(), &st) != 0) return s;
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  s.size = st.st_size;
  s.inode = st.st_ino;
  return s;
}

absl::StatusOr<std::unique_ptr<TlsCerts>> TlsCerts::Load(
    const std::vector<GatewayTlsCert>& certs,
    std::shared_ptr<spdlog::logger> log) {
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        "--gateway-tls-listen: needs at least one --gateway-tls-cert");
  }
  auto out = std::unique_ptr<TlsCerts>(new TlsCerts());
  out->log_ = std::move(log);
  absl::MutexLock lock(&out->mu_);
  for (const GatewayTlsCert& cert : certs) {
    Entry e;
    e.cert = cert;
    e.cert_stamp = StampOf(cert.cert_file);
    e.key_stamp = StampOf(cert.key_file);
    auto ctx = MakeContext(cert);
    if (!ctx.ok()) return ctx.status();
    e.context = std::move(*ctx);
    out->entries_.push_back(std::move(e));
  }
  out->PublishLocked();
  return out;
}

int TlsCerts::Reload() {
  absl::MutexLock lock(&mu_);
  int replaced = 0;
  for (Entry& e : entries_) {
    const Stamp cert = StampOf(e.cert.cert_file);
    const Stamp key = StampOf(e.cert.key_file);
    if (cert == e.cert_stamp && key == e.key_stamp) continue;
    if (cert == e.failed_cert && key == e.failed_key) continue;  // logged
    auto ctx = MakeContext(e.cert);
    if (!ctx.ok()) {
      e.failed_cert = cert;
      e.failed_key = key;
      log_->error(
          "gateway: the changed TLS certificate {} does not load, the "
          "previous one is served: {}",
          e.cert.cert_file, std::string(ctx.status().message()));
      continue;
    }
    e.context = std::move(*ctx);
    e.cert_stamp = cert;
    e.key_stamp = key;
    e.failed_cert = e.failed_key = Stamp();
    ++replaced;
    auto pem = ReadFlagFile(e.cert.cert_file, "");
    log_->info("gateway: reloaded the TLS certificate {}{} ({})",
               e.cert.cert_file,
               e.cert.domain.empty() ? "" : " for " + e.cert.domain,
               pem.ok() ? CertificateSubject(*pem) : "");
  }
  if (replaced > 0) PublishLocked();
  return replaced;
}

void TlsCerts::PublishLocked() {
  std::vector<std::string> domains;
  std::vector<std::shared_ptr<ssl::context>> contexts;
  for (const Entry& e : entries_) {
    domains.push_back(e.cert.domain);
    contexts.push_back(e.context);
  }
  std::atomic_store(&current_,
                    std::shared_ptr<const CertSet>(std::make_shared<CertSet>(
                        std::move(domains), std::move(contexts))));
}

}  // namespace tidal::gateway
