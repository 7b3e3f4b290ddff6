#pragma once

// Waiting on and writing to a non-blocking socket with a deadline.

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tidal::common {

// Waits until `fd` is ready for `events` (POLLIN, POLLOUT); false once
// `deadline` passes or poll fails.
bool WaitReady(int fd, short events, absl::Time deadline);

// Sends all of `data` on the non-blocking socket `fd` (no SIGPIPE), waiting
// for room until `deadline`. 0 when sent, ETIMEDOUT past the deadline, else
// the send's errno.
int SendAll(int fd, absl::string_view data, absl::Time deadline);

}  // namespace tidal::common
