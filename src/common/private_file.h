#pragma once

// Files only their owner may read (tokens, keys, the client config): written
// whole to a temporary file with mode 0600, synced, then renamed into place,
// so a reader never sees half a file and a crash leaves the old one.

#include <string>

#include "absl/status/status.h"

namespace tidal {

// Internal naming the file and the reason when it cannot be written.
absl::Status WritePrivateFile(const std::string& path,
                              const std::string& content);

}  // namespace tidal
