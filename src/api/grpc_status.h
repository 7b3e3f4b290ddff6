#pragma once

// The one place where grpc::Status and absl::Status meet. The codes have the
// same numbers and meanings; messages pass through unchanged. An Unavailable
// that tidald answers itself (rather than a connection that failed) carries
// a mark across, so that tidalctl can tell "cannot reach tidald" from
// "tidald cannot reach its store".

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace tidal {

// The absl::Status payload (type URL) of an answer from tidald.
inline constexpr char kFromTidaldPayload[] = "tidal.dev/from-tidald";

absl::Status FromGrpc(const grpc::Status& status);
grpc::Status ToGrpc(const absl::Status& status);

// Whether `status` (from FromGrpc) is tidald's own answer.
bool AnsweredByTidald(const absl::Status& status);

}  // namespace tidal
