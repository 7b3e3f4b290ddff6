#pragma once

// SecretBox: authenticated encryption of small values at rest (Secrets,
// docs/secrets.md) with AES-256-GCM under one 32-byte key. Every Seal draws a
// new random 12-byte nonce; `aad` (additional authenticated data, e.g. the
// store key a value is written under) is bound to the ciphertext, so a
// ciphertext opened with another aad, another key or after any change to a
// byte fails with DataLoss instead of returning garbage. Each key has a key
// id (a fingerprint of the key, not secret) stored next to the ciphertext, so
// that a later rotation can keep old keys to open what they sealed.
//
// Immutable after construction; thread-safe. OpenSSL stays in the .cc.

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tidal {

struct Sealed {
  std::string key_id;
  std::string nonce;       // 12 bytes
  std::string ciphertext;  // the GCM tag (16 bytes) appended
};

class SecretBox {
 public:
  static constexpr size_t kKeySize = 32;
  static constexpr size_t kNonceSize = 12;
  static constexpr size_t kTagSize = 16;

  // InvalidArgument unless `key` is kKeySize bytes.
  static absl::StatusOr<SecretBox> FromKey(std::string key);

  // Reads the key file at `path`, or creates it (mode 0600, kKeySize random
  // bytes) when it does not exist. Refuses (FailedPrecondition, naming
  // `flag` and the file) a file of another size or one that the group or
  // others may read or write.
  static absl::StatusOr<SecretBox> LoadOrCreateKeyFile(const std::string& path,
                                                       absl::string_view flag);

  absl::StatusOr<Sealed> Seal(absl::string_view plaintext,
                              absl::string_view aad) const;
  // DataLoss when the key id is not this key's or authentication fails
  // (wrong key, wrong aad, changed nonce, ciphertext or tag).
  absl::StatusOr<std::string> Open(const Sealed& sealed,
                                   absl::string_view aad) const;

  // "k1-" and 16 hex digits of SHA-256 over a fixed label and the key.
  const std::string& key_id() const { return key_id_; }

  SecretBox(const SecretBox&) = default;
  SecretBox& operator=(const SecretBox&) = default;
  ~SecretBox();

 private:
  SecretBox(std::string key, std::string key_id)
      : key_(std::move(key)), key_id_(std::move(key_id)) {}
  std::string key_;
  std::string key_id_;
};

}  // namespace tidal
