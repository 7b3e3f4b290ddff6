#pragma once

// Checks of the PEM files TLS is configured with (tidald's --tls-* and
// --gateway-tls-cert flags, tidalctl's --certificate-authority and
// --client-*), before a listener or a channel uses them: an error names the
// flag and the file and says what is wrong (missing, unreadable, not PEM, a
// key that does not match its certificate). OpenSSL stays in the .cc file.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tidal {

// The whole file, or InvalidArgument "FLAG: FILE: <why>".
absl::StatusOr<std::string> ReadFlagFile(const std::string& path,
                                         absl::string_view flag);

// A certificate chain (PEM, the leaf first) and its private key (PEM) that
// belong together. InvalidArgument naming the flag of the bad file.
absl::Status CheckKeyPairFiles(const std::string& cert_file,
                               absl::string_view cert_flag,
                               const std::string& key_file,
                               absl::string_view key_flag);

// The same check on PEM contents (a chain, the leaf first, and a key), for
// files already read: InvalidArgument saying what is wrong, no file names.
absl::Status CheckKeyPairPem(const std::string& cert_pem,
                             const std::string& key_pem);

// A file of one or more PEM certificates (a CA bundle).
absl::Status CheckCaFile(const std::string& path, absl::string_view flag);

// The subject of the first certificate in a PEM file ("CN=api, O=x"), for
// logs; empty if it cannot be read.
std::string CertificateSubject(const std::string& pem);

}  // namespace tidal
