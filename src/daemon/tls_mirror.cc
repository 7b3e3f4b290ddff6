#include "daemon/tls_mirror.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/private_file.h"
#include "common/tls_files.h"

namespace tidal {

TlsPairMirror::TlsPairMirror(std::string cert_file, std::string key_file,
                             std::string dir, absl::Duration period)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      dir_(std::move(dir)),
      period_(period) {}

TlsPairMirror::~TlsPairMirror() { Stop(); }

absl::Status TlsPairMirror::Start() {
  if (auto st =
          CheckKeyPairFiles(cert_file_, "--tls-cert", key_file_, "--tls-key");
      !st.ok()) {
    return st;
  }
  if (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", dir_, ": ", strerror(errno)));
  }
  if (!SyncOnce()) {
    // Changed between the check and the read: say what is wrong now.
    if (auto st =
            CheckKeyPairFiles(cert_file_, "--tls-cert", key_file_, "--tls-key");
        !st.ok()) {
      return st;
    }
    if (!SyncOnce()) {
      return absl::UnavailableError(
          absl::StrCat("cannot copy the API's certificate to ", dir_));
    }
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void TlsPairMirror::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool TlsPairMirror::SyncOnce() {
  auto log = GetLogger("api");
  absl::StatusOr<std::string> cert = ReadFlagFile(cert_file_, "--tls-cert");
  absl::StatusOr<std::string> key = ReadFlagFile(key_file_, "--tls-key");
  if (!cert.ok() || !key.ok()) {
    log->warn("API TLS: {}; serving the previous certificate",
              std::string((cert.ok() ? key : cert).status().message()));
    return false;
  }
  const std::string both = *cert + *key;
  {
    absl::MutexLock lock(&mu_);
    if (both == copied_) return false;
  }
  if (absl::Status pair = CheckKeyPairPem(*cert, *key); !pair.ok()) {
    absl::MutexLock lock(&mu_);
    if (both != refused_) {
      refused_ = both;
      log->warn(
          "API TLS: --tls-cert {} and --tls-key {} do not match ({}; a "
          "rotation half done?): serving the previous certificate until "
          "they do",
          cert_file_, key_file_, std::string(pair.message()));
    }
    return false;
  }
  // Key first: the µs between the two renames is the only moment gRPC could
  // read a pair that does not match, and its next read mends it.
  absl::Status wrote = WritePrivateFile(key_path(), *key);
  if (wrote.ok()) wrote = WritePrivateFile(cert_path(), *cert);
  if (!wrote.ok()) {
    log->warn("API TLS: {}", std::string(wrote.message()));
    return false;
  }
  absl::MutexLock lock(&mu_);
  const bool first = copied_.empty();
  copied_ = both;
  if (!first) {
    log->info("API TLS: new certificate {} from {}", CertificateSubject(*cert),
              cert_file_);
  }
  return true;
}

void TlsPairMirror::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), period_);
      if (stop_) return;
    }
    SyncOnce();
  }
}

}  // namespace tidal
