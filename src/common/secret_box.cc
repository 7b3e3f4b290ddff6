#include "common/secret_box.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tidal {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* U(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::string KeyId(absl::string_view key) {
  std::string in = absl::StrCat("tidal secrets key id\n", key);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(U(in), in.size(), digest);
  OPENSSL_cleanse(in.data(), in.size());
  return absl::StrCat("k1-", absl::BytesToHexString(absl::string_view(
                                 reinterpret_cast<const char*>(digest), 8)));
}

absl::Status Errno(const std::string& what, const std::string& path,
                   absl::string_view flag) {
  return absl::FailedPreconditionError(absl::StrCat(
      flag, ": cannot ", what, " the key file ", path, ": ", strerror(errno)));
}

}  // namespace

SecretBox::~SecretBox() { OPENSSL_cleanse(key_.data(), key_.size()); }

absl::StatusOr<SecretBox> SecretBox::FromKey(std::string key) {
  if (key.size() != kKeySize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a secrets key must be ", kKeySize, " bytes, got ", key.size()));
  }
  std::string id = KeyId(key);
  return SecretBox(std::move(key), std::move(id));
}

absl::StatusOr<SecretBox> SecretBox::LoadOrCreateKeyFile(
    const std::string& path, absl::string_view flag) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) {
    std::string key(kKeySize, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()),
                   static_cast<int>(key.size())) != 1) {
      return absl::InternalError("no random bytes for a new secrets key");
    }
    int w = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w < 0) return Errno("create", path, flag);
    bool ok =
        write(w, key.data(), key.size()) == static_cast<ssize_t>(key.size()) &&
        fsync(w) == 0;
    int saved = errno;
    close(w);
    if (!ok) {
      errno = saved;
      unlink(path.c_str());
      return Errno("write", path, flag);
    }
    return FromKey(std::move(key));
  }
  if (fd < 0) return Errno("open", path, flag);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return Errno("stat", path, flag);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": the key file ", path, " is not a regular file"));
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: the key file %s may be read or written by its group or others "
        "(mode %04o): chmod 600 it (and consider the key leaked if others "
        "could read it)",
        flag, path, st.st_mode & 07777));
  }
  if (st.st_size != static_cast<off_t>(kKeySize)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(flag, ": the key file ", path, " must hold exactly ",
                     kKeySize, " bytes, it has ", st.st_size));
  }
  std::string key(kKeySize, '\0');
  ssize_t n = read(fd, key.data(), key.size());
  int saved = errno;
  close(fd);
  if (n != static_cast<ssize_t>(kKeySize)) {
    errno = n < 0 ? saved : EIO;
    return Errno("read", path, flag);
  }
  return FromKey(std::move(key));
}

absl::StatusOr<Sealed> SecretBox::Seal(absl::string_view plaintext,
                                       absl::string_view aad) const {
  Sealed out;
  out.key_id = key_id_;
  out.nonce.assign(kNonceSize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.nonce.data()),
                 kNonceSize) != 1) {
    return absl::InternalError("no random bytes for a nonce");
  }
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return absl::InternalError("EVP_CIPHER_CTX_new failed");
  out.ciphertext.assign(plaintext.size() + kTagSize, '\0');
  auto* ct = reinterpret_cast<unsigned char*>(out.ciphertext.data());
  int len = 0, total = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr,
                         nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize,
                          nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, U(key_), U(out.nonce)) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(aad),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, U(plaintext),
                        static_cast<int>(plaintext.size())) != 1) {
    return absl::InternalError("AES-256-GCM encryption failed");
  }
  total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), ct + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize,
                          ct + plaintext.size()) != 1) {
    return absl::InternalError("AES-256-GCM encryption failed");
  }
  return out;
}

absl::StatusOr<std::string> SecretBox::Open(const Sealed& sealed,
                                            absl::string_view aad) const {
  if (sealed.key_id != key_id_) {
    return absl::DataLossError(absl::StrCat(
        "sealed with the key ", sealed.key_id, ", not with this tidald's key ",
        key_id_, " (--secrets-key-file differs)"));
  }
  if (sealed.nonce.size() != kNonceSize ||
      sealed.ciphertext.size() < kTagSize) {
    return absl::DataLossError("sealed value is malformed");
  }
  const size_t n = sealed.ciphertext.size() - kTagSize;
  std::string plain(n, '\0');
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return absl::InternalError("EVP_CIPHER_CTX_new failed");
  auto* pt = reinterpret_cast<unsigned char*>(plain.data());
  std::string tag = sealed.ciphertext.substr(n);
  int len = 0;
  bool ok = EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr,
                               nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize,
                                nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, U(key_),
                               U(sealed.nonce)) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(aad),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), pt, &len, U(sealed.ciphertext),
                              static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize,
                                tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), pt + len, &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return absl::DataLossError(
        "sealed value failed authentication (changed, moved to another key, "
        "or sealed with another key)");
  }
  return plain;
}

}  // namespace tidal
