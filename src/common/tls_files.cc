#include "common/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace tidal {
namespace {

absl::Status FileError(absl::string_view flag, const std::string& path,
                       absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, ": ", what));
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

using Bio = std::unique_ptr<BIO, BioFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Bio MemBio(const std::string& data) {
  return Bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

}  // namespace

absl::StatusOr<std::string> ReadFlagFile(const std::string& path,
                                         absl::string_view flag) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": no file given"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return FileError(flag, path, std::strerror(errno));
  std::stringstream s;
  s << in.rdbuf();
  if (in.bad()) return FileError(flag, path, "cannot be read");
  return s.str();
}

namespace {

// The first certificate of a PEM file.
absl::StatusOr<Cert> ReadCert(const std::string& path, absl::string_view flag) {
  auto pem = ReadFlagFile(path, flag);
  if (!pem.ok()) return pem.status();
  ERR_clear_error();
  Bio b = MemBio(*pem);
  Cert cert(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!cert) return FileError(flag, path, "holds no PEM certificate");
  return cert;
}

}  // namespace

namespace {

enum class PairProblem { kNone, kNoKey, kMismatch };

// Whether `key_pem` holds a private key that matches `cert`.
PairProblem CheckPair(X509* cert, const std::string& key_pem) {
  Bio kb = MemBio(key_pem);
  Pkey key(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!key) return PairProblem::kNoKey;
  if (X509_check_private_key(cert, key.get()) != 1) {
    ERR_clear_error();
    return PairProblem::kMismatch;
  }
  return PairProblem::kNone;
}

}  // namespace

absl::Status CheckKeyPairPem(const std::string& cert_pem,
                             const std::string& key_pem) {
  ERR_clear_error();
  Bio cb = MemBio(cert_pem);
  Cert cert(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!cert) return absl::InvalidArgumentError("no PEM certificate");
  switch (CheckPair(cert.get(), key_pem)) {
    case PairProblem::kNone:
      return absl::OkStatus();
    case PairProblem::kNoKey:
      return absl::InvalidArgumentError(
          "no PEM private key (or it is encrypted)");
    case PairProblem::kMismatch:
      break;
  }
  return absl::InvalidArgumentError("the key does not match the certificate");
}

absl::Status CheckKeyPairFiles(const std::string& cert_file,
                               absl::string_view cert_flag,
                               const std::string& key_file,
                               absl::string_view key_flag) {
  auto cert = ReadCert(cert_file, cert_flag);
  if (!cert.ok()) return cert.status();
  auto key_pem = ReadFlagFile(key_file, key_flag);
  if (!key_pem.ok()) return key_pem.status();
  switch (CheckPair(cert->get(), *key_pem)) {
    case PairProblem::kNone:
      return absl::OkStatus();
    case PairProblem::kNoKey:
      return FileError(key_flag, key_file,
                       "holds no PEM private key (or it is encrypted)");
    case PairProblem::kMismatch:
      break;
  }
  return FileError(key_flag, key_file,
                   absl::StrCat("does not match the certificate of ", cert_flag,
                                " ", cert_file));
}

absl::Status CheckCaFile(const std::string& path, absl::string_view flag) {
  return ReadCert(path, flag).status();
}

std::string CertificateSubject(const std::string& pem) {
  Bio b = MemBio(pem);
  Cert cert(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!cert) return "";
  Bio out(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(out.get(), X509_get_subject_name(cert.get()), 0,
                     XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, n > 0 ? n : 0);
}

}  // namespace tidal
