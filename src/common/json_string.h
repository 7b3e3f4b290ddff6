#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace tidal::common {

// Appends `s` to `out` as a JSON string literal: quotes, backslashes and
// control bytes (and DEL) escaped; other bytes, UTF-8 included, as they are.
void AppendJsonString(std::string* out, absl::string_view s);

// `s` as a JSON string literal (quotes and escapes included).
std::string JsonQuoted(absl::string_view s);

}  // namespace tidal::common
