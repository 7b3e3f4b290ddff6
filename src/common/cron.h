#pragma once

// Five-field cron expressions ("0 19 * * MON-FRI") evaluated in an IANA time
// zone, for scheduled scaling.

#include <bitset>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace tidal {

// A parsed cron expression: minute hour day-of-month month day-of-week. Each
// field is "*", a number, a range "a-b", a list "a,b", and any of these with a
// step "/n"; months and weekdays also take names (JAN, MON). Day of week 0 and
// 7 are Sunday. As in Vixie cron, when both day fields are restricted a day
// matches if either matches. Macros: @yearly, @annually, @monthly, @weekly,
// @daily, @midnight, @hourly. Immutable after parsing; thread-safe.
struct CronSchedule {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<32> days_of_month;  // bit 0 unused
  std::bitset<13> months;         // bit 0 unused
  std::bitset<7> days_of_week;    // 0 = Sunday
  bool dom_restricted = false;    // the day-of-month field was not "*"
  bool dow_restricted = false;    // the day-of-week field was not "*"
  std::string expression;

  // Whether the civil minute `t` (local time) matches.
  bool Matches(absl::CivilMinute t) const;

  // The first matching time strictly after `after`, evaluated in `tz`.
  // Around daylight-saving changes: a local time that does not exist (the
  // clocks skip it) fires at the moment of the change; a local time that
  // occurs twice fires once, at its first occurrence. Returns
  // absl::InfiniteFuture() when nothing matches within five years (an
  // expression such as "0 0 30 2 *", which ParseCron rejects).
  absl::Time Next(absl::Time after, absl::TimeZone tz) const;
};

// Parses a cron expression. InvalidArgument names the bad field, e.g.
// `hour field "25": 25 is out of range 0-23`.
absl::StatusOr<CronSchedule> ParseCron(std::string_view expression);

// Loads an IANA time zone ("Asia/Shanghai"); "" and "UTC" are UTC.
// InvalidArgument for unknown or malformed names.
absl::StatusOr<absl::TimeZone> LoadZone(std::string_view name);

}  // namespace tidal
