// Fuzz target: durations, CPU and byte quantities, and cron expressions as
// written in specs. Each parses or is refused with a message; what parses
// formats to a shortest form that parses back to the same value.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "common/cron.h"
#include "common/units.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tidal::fuzz::Check;
  if (size > 256) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto ms = tidal::ParseDurationMs(text); ms.ok()) {
    const std::string f = tidal::FormatDurationMs(*ms);
    auto back = tidal::ParseDurationMs(f);
    Check(back.ok() && *back == *ms,
          "duration round trip: " + std::string(text) + " -> " + f);
  } else {
    Check(!ms.status().message().empty(), "duration refusal without message");
  }
  if (auto cpu = tidal::ParseCpuMillis(text); cpu.ok()) {
    const std::string f = tidal::FormatCpuMillis(*cpu);
    auto back = tidal::ParseCpuMillis(f);
    Check(back.ok() && *back == *cpu,
          "cpu round trip: " + std::string(text) + " -> " + f);
  }
  if (auto bytes = tidal::ParseBytes(text); bytes.ok()) {
    const std::string f = tidal::FormatBytes(*bytes);
    auto back = tidal::ParseBytes(f);
    Check(back.ok() && *back == *bytes,
          "bytes round trip: " + std::string(text) + " -> " + f);
  }
  auto cron = tidal::ParseCron(text);
  if (!cron.ok()) {
    Check(!cron.status().message().empty(), "cron refusal without message");
  } else {
    // An accepted schedule fires again, later than the time asked about.
    const absl::Time t0 = absl::FromUnixSeconds(1700000000);
    const absl::Time next = cron->Next(t0, absl::UTCTimeZone());
    Check(next > t0, "cron Next is not after its start: " + std::string(text));
  }
  return 0;
}
