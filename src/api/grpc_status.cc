#include "api/grpc_status.h"

#include <string>

#include "absl/strings/cord.h"

namespace tidal {

namespace {
// grpc-status-details-bin of an Unavailable that tidald itself answered (its
// store does not answer, no live node), so that a client tells it from a
// connection that failed.
constexpr char kFromTidald[] = "tidal.dev/from-tidald";
}  // namespace

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   status.error_message());
  if (status.error_details() == kFromTidald) {
    out.SetPayload(kFromTidaldPayload, absl::Cord("1"));
  }
  return out;
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  if (status.code() == absl::StatusCode::kUnavailable) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        std::string(status.message()), kFromTidald);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

bool AnsweredByTidald(const absl::Status& status) {
  return status.GetPayload(kFromTidaldPayload).has_value();
}

}  // namespace tidal
