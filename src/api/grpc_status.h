#pragma once

// The one place where grpc::Status and absl::Status meet. The codes have the
// same numbers and meanings; messages pass through unchanged.

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace tidal {

absl::Status FromGrpc(const grpc::Status& status);
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace tidal
