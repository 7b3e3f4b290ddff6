#pragma once

// The audit log (docs/auth.md): one JSON line per mutating API call and per
// denied call (tidal.v1.AuditEvent, shaped like a Kubernetes audit event),
// at Kubernetes' levels: None (nothing), Metadata (who, what, on which
// objects, the outcome) or Request (also what was asked, secret values
// never). Written to a file rotated at a size cap, keeping a number of old
// files. Thread-safe.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace spdlog {
class logger;
}

namespace tidal::v1 {
class AuditEvent;
}

namespace tidal::auth {

enum class AuditLevel { kNone, kMetadata, kRequest };

// "None" | "Metadata" | "Request" (any case).
absl::StatusOr<AuditLevel> ParseAuditLevel(const std::string& s);
const char* AuditLevelName(AuditLevel level);

struct AuditOptions {
  std::string path;  // empty: no audit log
  AuditLevel level = AuditLevel::kMetadata;
  int64_t max_size = 100 << 20;  // bytes before the file rotates
  int max_files = 5;             // rotated files kept (path.1 ... path.N)
};

class AuditLog {
 public:
  // InvalidArgument/Internal naming the file when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(AuditOptions options);
  ~AuditLog();

  AuditLevel level() const { return options_.level; }
  // Writes one line (the event's level is set from the log's).
  void Write(const v1::AuditEvent& event);
  void Flush();

 private:
  explicit AuditLog(AuditOptions options) : options_(std::move(options)) {}
  const AuditOptions options_;
  std::shared_ptr<spdlog::logger> sink_;
};

}  // namespace tidal::auth
