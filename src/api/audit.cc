#include "api/audit.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tidal/v1/auth.pb.h"

namespace tidal::auth {

absl::StatusOr<AuditLevel> ParseAuditLevel(const std::string& s) {
  const std::string l = absl::AsciiStrToLower(s);
  if (l == "none") return AuditLevel::kNone;
  if (l == "metadata") return AuditLevel::kMetadata;
  if (l == "request") return AuditLevel::kRequest;
  return absl::InvalidArgumentError(absl::StrCat(
      "\"", s, "\" is not an audit level (None, Metadata or Request)"));
}

const char* AuditLevelName(AuditLevel level) {
  switch (level) {
    case AuditLevel::kNone:
      return "None";
    case AuditLevel::kMetadata:
      return "Metadata";
    case AuditLevel::kRequest:
      return "Request";
  }
  return "None";
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(AuditOptions options) {
  if (options.max_size < 4096) {
    return absl::InvalidArgumentError("the audit log's size cap is under 4Ki");
  }
  if (options.max_files < 1) {
    return absl::InvalidArgumentError("the audit log keeps at least 1 file");
  }
  std::unique_ptr<AuditLog> log(new AuditLog(options));
  if (options.path.empty() || options.level == AuditLevel::kNone) return log;
  // Only tidald's user reads who did what (rotated files follow the umask;
  // keep the data directory private: docs/auth.md).
  int fd = ::open(options.path.c_str(),
                  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open the audit log ",
                                            options.path, ": ",
                                            std::strerror(errno)));
  }
  ::close(fd);
  try {
    auto sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
        options.path, static_cast<size_t>(options.max_size),
        static_cast<size_t>(options.max_files));
    log->sink_ = std::make_shared<spdlog::logger>("audit", std::move(sink));
    log->sink_->set_pattern("%v");
    log->sink_->set_level(spdlog::level::info);
    log->sink_->flush_on(spdlog::level::info);
  } catch (const spdlog::spdlog_ex& e) {
    return absl::InternalError(absl::StrCat("cannot open the audit log ",
                                            options.path, ": ", e.what()));
  }
  return log;
}

AuditLog::~AuditLog() {
  if (sink_) sink_->flush();
}

void AuditLog::Write(const v1::AuditEvent& event) {
  if (!sink_) return;
  v1::AuditEvent e = event;
  e.set_level(AuditLevelName(options_.level));
  if (options_.level != AuditLevel::kRequest) e.clear_request_object();
  std::string line;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = false;  // lowerCamel, as Kubernetes
  if (!google::protobuf::util::MessageToJsonString(e, &line, opts).ok()) return;
  sink_->info(line);
}

void AuditLog::Flush() {
  if (sink_) sink_->flush();
}

}  // namespace tidal::auth
