#pragma once

// Durations ("250ms", "30s", "5m", "1h30m") and quantities ("500m", "2",
// "256Mi", "1G") as written in specs.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tidal {

// Milliseconds. InvalidArgument with a readable message on bad input.
absl::StatusOr<int64_t> ParseDurationMs(std::string_view text);
std::string FormatDurationMs(
    int64_t ms);  // shortest exact form: "1m30s", "250ms"

// CPU in millicores ("500m" -> 500, "2" -> 2000).
absl::StatusOr<int64_t> ParseCpuMillis(std::string_view text);
// Bytes ("256Mi", "1G", "1024").
absl::StatusOr<int64_t> ParseBytes(std::string_view text);

// The shortest exact forms that the parsers above read back: 500 -> "500m",
// 2000 -> "2"; 268435456 -> "256Mi", 1000000000 -> "1G", 1000 -> "1k".
std::string FormatCpuMillis(int64_t millis);
std::string FormatBytes(int64_t bytes);

// The shortest text that reads back as exactly `d` ("0.1", "1234567.125",
// "1e+21"): every digit a double carries, none it does not (absl::StrCat
// keeps 6 significant digits, so 1234567.125 would print "1.23457e+06").
// Prometheus samples and spec values.
std::string FormatDouble(double d);

}  // namespace tidal
