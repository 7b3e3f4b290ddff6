#include "common/cron.h"

#include <gtest/gtest.h>

#include "absl/time/civil_time.h"

namespace tidal {
namespace {

absl::Time At(absl::CivilMinute c, absl::TimeZone tz) {
  return absl::FromCivil(c, tz);
}

TEST(ParseCronTest, FieldsRangesStepsNames) {
  auto c = ParseCron("*/15 9-17 * JAN,jul-sep MON-FRI");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->minutes.count(), 4u);
  EXPECT_TRUE(c->minutes[0] && c->minutes[15] && c->minutes[30] &&
              c->minutes[45]);
  EXPECT_EQ(c->hours.count(), 9u);
  EXPECT_EQ(c->months.count(), 4u);
  EXPECT_TRUE(c->months[1] && c->months[7] && c->months[9]);
  EXPECT_EQ(c->days_of_week.count(), 5u);
  EXPECT_FALSE(c->days_of_week[0]);
  EXPECT_FALSE(c->dom_restricted);
  EXPECT_TRUE(c->dow_restricted);

  auto sunday = ParseCron("0 0 * * 7");
  ASSERT_TRUE(sunday.ok());
  EXPECT_TRUE(sunday->days_of_week[0]);
  auto from = ParseCron("10/20 * * * *");
  ASSERT_TRUE(from.ok());
  EXPECT_EQ(from->minutes.count(), 3u);  // 10, 30, 50
  auto daily = ParseCron("@daily");
  ASSERT_TRUE(daily.ok());
  EXPECT_EQ(daily->minutes.count(), 1u);
  EXPECT_EQ(daily->hours.count(), 1u);
}

TEST(ParseCronTest, Errors) {
  struct Row {
    const char* expr;
    const char* want;
  } rows[] = {
      {"* * * *", "must have 5 fields"},
      {"* * * * * *", "must have 5 fields"},
      {"60 * * * *", "minute field \"60\": 60 is out of range 0-59"},
      {"* 25 * * *", "hour field \"25\": 25 is out of range 0-23"},
      {"* * 0 * *", "day-of-month field \"0\": 0 is out of range 1-31"},
      {"* * * 13 *", "month field \"13\": 13 is out of range 1-12"},
      {"* * * * 8", "day-of-week field \"8\": 8 is out of range 0-7"},
      {"5-1 * * * *", "range 5-1 is backwards"},
      {"*/0 * * * *", "step must be at least 1"},
      {"*/x * * * *", "step \"x\" is not a positive number"},
      {"* * * FOO *", "\"FOO\" is not a number or a name (JAN-DEC)"},
      {"* * * * FUN", "\"FUN\" is not a number or a name (SUN-SAT)"},
      {"1,,2 * * * *", "empty list element"},
      {"0 0 30 2 *", "no selected day exists"},
      {"@sometimes", "unknown macro"},
      {"a * * * *", "minute field \"a\": \"a\" is not a number"},
  };
  for (const Row& r : rows) {
    auto c = ParseCron(r.expr);
    ASSERT_FALSE(c.ok()) << r.expr;
    EXPECT_NE(c.status().message().find(r.want), std::string::npos)
        << r.expr << " -> " << c.status().message();
  }
}

TEST(CronNextTest, EveryEvening) {
  absl::TimeZone tz = *LoadZone("Asia/Shanghai");
  auto c = *ParseCron("0 19 * * *");
  absl::Time t = At(absl::CivilMinute(2024, 3, 1, 12, 0), tz);
  EXPECT_EQ(c.Next(t, tz), At(absl::CivilMinute(2024, 3, 1, 19, 0), tz));
  // Strictly after: from 19:00 exactly the next is tomorrow.
  t = At(absl::CivilMinute(2024, 3, 1, 19, 0), tz);
  EXPECT_EQ(c.Next(t, tz), At(absl::CivilMinute(2024, 3, 2, 19, 0), tz));
}

TEST(CronNextTest, AcrossMidnightMonthAndYear) {
  absl::TimeZone utc = absl::UTCTimeZone();
  auto c = *ParseCron("30 0 * * *");
  EXPECT_EQ(c.Next(At(absl::CivilMinute(2023, 12, 31, 23, 50), utc), utc),
            At(absl::CivilMinute(2024, 1, 1, 0, 30), utc));
  auto leap = *ParseCron("0 12 29 2 *");
  EXPECT_EQ(leap.Next(At(absl::CivilMinute(2024, 3, 1, 0, 0), utc), utc),
            At(absl::CivilMinute(2028, 2, 29, 12, 0), utc));
  // Either day field matches when both are restricted: the 13th or Fridays.
  auto either = *ParseCron("0 0 13 * FRI");
  // 2024-09-01 is a Sunday; the next Friday is the 6th, before the 13th.
  EXPECT_EQ(either.Next(At(absl::CivilMinute(2024, 9, 1, 0, 0), utc), utc),
            At(absl::CivilMinute(2024, 9, 6, 0, 0), utc));
  auto weekdays = *ParseCron("0 9 * * MON-FRI");
  // Friday 2024-09-06 10:00 -> Monday 9th 09:00.
  EXPECT_EQ(weekdays.Next(At(absl::CivilMinute(2024, 9, 6, 10, 0), utc), utc),
            At(absl::CivilMinute(2024, 9, 9, 9, 0), utc));
}

TEST(CronNextTest, InZoneDiffersFromUtc) {
  absl::TimeZone shanghai = *LoadZone("Asia/Shanghai");  // UTC+8, no DST
  auto c = *ParseCron("0 19 * * *");
  absl::Time start =
      absl::FromCivil(absl::CivilMinute(2024, 6, 1, 0, 0), absl::UTCTimeZone());
  EXPECT_EQ(c.Next(start, shanghai),
            absl::FromCivil(absl::CivilMinute(2024, 6, 1, 11, 0),
                            absl::UTCTimeZone()));
}

TEST(CronNextTest, SpringForwardSkippedTimeFiresAtTheChange) {
  // America/New_York: 2024-03-10 02:00 EST jumps to 03:00 EDT.
  absl::TimeZone ny = *LoadZone("America/New_York");
  auto c = *ParseCron("30 2 * * *");
  absl::Time before = At(absl::CivilMinute(2024, 3, 10, 1, 0), ny);
  absl::Time got = c.Next(before, ny);
  EXPECT_EQ(got, absl::FromCivil(absl::CivilMinute(2024, 3, 10, 7, 0),
                                 absl::UTCTimeZone()));  // 03:00 EDT
  EXPECT_EQ(c.Next(got, ny), At(absl::CivilMinute(2024, 3, 11, 2, 30), ny));
  // Hourly: 01:00, then 03:00 (once), then 04:00.
  auto hourly = *ParseCron("0 * * * *");
  absl::Time t = At(absl::CivilMinute(2024, 3, 10, 0, 30), ny);
  t = hourly.Next(t, ny);
  EXPECT_EQ(absl::ToCivilMinute(t, ny), absl::CivilMinute(2024, 3, 10, 1, 0));
  t = hourly.Next(t, ny);
  EXPECT_EQ(absl::ToCivilMinute(t, ny), absl::CivilMinute(2024, 3, 10, 3, 0));
  t = hourly.Next(t, ny);
  EXPECT_EQ(absl::ToCivilMinute(t, ny), absl::CivilMinute(2024, 3, 10, 4, 0));
  EXPECT_EQ(t - At(absl::CivilMinute(2024, 3, 10, 1, 0), ny), absl::Hours(2));
}

TEST(CronNextTest, FallBackRepeatedTimeFiresOnce) {
  // America/New_York: 2024-11-03 02:00 EDT falls back to 01:00 EST.
  absl::TimeZone ny = *LoadZone("America/New_York");
  auto c = *ParseCron("30 1 * * *");
  absl::Time first = c.Next(At(absl::CivilMinute(2024, 11, 3, 0, 0), ny), ny);
  EXPECT_EQ(first, absl::FromCivil(absl::CivilMinute(2024, 11, 3, 5, 30),
                                   absl::UTCTimeZone()));  // 01:30 EDT
  absl::Time second = c.Next(first, ny);
  EXPECT_EQ(second, At(absl::CivilMinute(2024, 11, 4, 1, 30), ny));
  // From inside the repeated hour (01:15 EST) the next is not in the past.
  absl::Time in_repeat = absl::FromCivil(absl::CivilMinute(2024, 11, 3, 6, 15),
                                         absl::UTCTimeZone());
  auto every10 = *ParseCron("*/10 * * * *");
  absl::Time n = every10.Next(in_repeat, ny);
  EXPECT_GT(n, in_repeat);
  EXPECT_LE(n - in_repeat, absl::Hours(1));
}

TEST(CronNextTest, MatchesAgreesWithNext) {
  absl::TimeZone utc = absl::UTCTimeZone();
  auto c = *ParseCron("*/7 */5 1-10 * *");
  absl::Time t =
      At(absl::CivilMinute(2024, 1, 1, 0, 0), utc) - absl::Minutes(1);
  for (int i = 0; i < 500; ++i) {
    absl::Time n = c.Next(t, utc);
    ASSERT_TRUE(c.Matches(absl::ToCivilMinute(n, utc)));
    for (absl::Time m = t + absl::Minutes(1); m < n; m += absl::Minutes(1)) {
      ASSERT_FALSE(c.Matches(absl::ToCivilMinute(m, utc)));
    }
    t = n;
  }
}

TEST(LoadZoneTest, KnownAndUnknown) {
  EXPECT_TRUE(LoadZone("").ok());
  EXPECT_TRUE(LoadZone("UTC").ok());
  EXPECT_TRUE(LoadZone("Europe/Berlin").ok());
  auto bad = LoadZone("Mars/Olympus");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown time zone \"Mars/Olympus\""),
            std::string::npos);
  EXPECT_FALSE(LoadZone("/etc/passwd").ok());
  EXPECT_FALSE(LoadZone("../../etc/passwd").ok());
}

}  // namespace
}  // namespace tidal
