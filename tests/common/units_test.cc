#include "common/units.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace tidal {
namespace {

TEST(ParseDurationMsTest, AcceptsUnitsAndCompounds) {
  struct Row {
    const char* text;
    int64_t ms;
  } rows[] = {
      {"250ms", 250},
      {"30s", 30000},
      {"5m", 300000},
      {"1h", 3600000},
      {"1h30m", 5400000},
      {"1m30s", 90000},
      {"1.5s", 1500},
      {"0.5m", 30000},
      {"0", 0},
      {"0s", 0},
      {"2h45m30s250ms", 9930250},
      {".25s", 250},
      {"+10s", 10000},
  };
  for (const Row& r : rows) {
    auto got = ParseDurationMs(r.text);
    ASSERT_TRUE(got.ok()) << r.text << ": " << got.status();
    EXPECT_EQ(*got, r.ms) << r.text;
  }
}

TEST(ParseDurationMsTest, RejectsBadInputWithReadableMessage) {
  struct Row {
    const char* text;
    const char* want;
  } rows[] = {
      {"30", "a number needs a unit"},
      {"", "must be a duration like \"30s\""},
      {"5x", "unknown unit \"x\""},
      {"-5s", "not negative"},
      {"1.5ms", "finer than a millisecond"},
      {"s", "must be a duration"},
      {"5 s", "a number needs a unit"},
      {"99999999999999999999h", "too large"},
      {"1h 30m", "must be a duration"},
      {"abc", "must be a duration"},
  };
  for (const Row& r : rows) {
    auto got = ParseDurationMs(r.text);
    ASSERT_FALSE(got.ok()) << r.text;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find(r.want), std::string::npos)
        << r.text << " -> " << got.status().message();
  }
  EXPECT_EQ(ParseDurationMs("30").status().message(),
            "must be a duration like \"30s\", \"5m\", \"250ms\" or \"1h30m\" "
            "(a number needs a unit: ms, s, m or h), got \"30\"");
}

TEST(FormatDurationMsTest, ShortestExactFormRoundTrips) {
  struct Row {
    int64_t ms;
    const char* text;
  } rows[] = {
      {0, "0s"},         {250, "250ms"},     {1000, "1s"},
      {1500, "1.5s"},    {90000, "1m30s"},   {300000, "5m"},
      {3600000, "1h"},   {5400000, "1h30m"}, {3661001, "1h1m1.001s"},
      {86400000, "24h"}, {61250, "1m1.25s"},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(FormatDurationMs(r.ms), r.text);
    auto back = ParseDurationMs(FormatDurationMs(r.ms));
    ASSERT_TRUE(back.ok()) << r.text;
    EXPECT_EQ(*back, r.ms);
  }
  for (int64_t ms = 0; ms < 200000; ms += 37) {
    ASSERT_EQ(*ParseDurationMs(FormatDurationMs(ms)), ms);
  }
}

TEST(ParseCpuMillisTest, Quantities) {
  EXPECT_EQ(*ParseCpuMillis("500m"), 500);
  EXPECT_EQ(*ParseCpuMillis("2"), 2000);
  EXPECT_EQ(*ParseCpuMillis("0.5"), 500);
  EXPECT_EQ(*ParseCpuMillis("1.25"), 1250);
  EXPECT_EQ(*ParseCpuMillis("0"), 0);
  EXPECT_FALSE(ParseCpuMillis("0.0001").ok());
  EXPECT_FALSE(ParseCpuMillis("-1").ok());
  EXPECT_FALSE(ParseCpuMillis("1Gi").ok());
  EXPECT_FALSE(ParseCpuMillis("").ok());
  EXPECT_FALSE(ParseCpuMillis("m").ok());
  EXPECT_NE(ParseCpuMillis("2 cores").status().message().find(
                "must be a CPU quantity like \"500m\""),
            std::string::npos);
  EXPECT_EQ(FormatCpuMillis(500), "500m");
  EXPECT_EQ(FormatCpuMillis(2000), "2");
  EXPECT_EQ(FormatCpuMillis(1500), "1500m");
}

TEST(ParseBytesTest, Quantities) {
  EXPECT_EQ(*ParseBytes("1024"), 1024);
  EXPECT_EQ(*ParseBytes("256Mi"), 256LL << 20);
  EXPECT_EQ(*ParseBytes("1Gi"), 1LL << 30);
  EXPECT_EQ(*ParseBytes("1G"), 1000000000);
  EXPECT_EQ(*ParseBytes("1.5Gi"), 3LL << 29);
  EXPECT_EQ(*ParseBytes("500M"), 500000000);
  EXPECT_EQ(*ParseBytes("2k"), 2000);
  EXPECT_EQ(*ParseBytes("1Ei"), 1LL << 60);
  EXPECT_FALSE(ParseBytes("8Ei").ok());  // overflows int64
  EXPECT_FALSE(ParseBytes("1.5").ok());  // half a byte
  EXPECT_FALSE(ParseBytes("1GB").ok());
  EXPECT_FALSE(ParseBytes("-1Mi").ok());
  EXPECT_FALSE(ParseBytes("Mi").ok());
  EXPECT_NE(ParseBytes("1GB").status().message().find("suffixes"),
            std::string::npos);
}

TEST(FormatBytesTest, ShortestExactFormRoundTrips) {
  EXPECT_EQ(FormatBytes(0), "0");
  EXPECT_EQ(FormatBytes(256LL << 20), "256Mi");
  EXPECT_EQ(FormatBytes(1000000000), "1G");
  EXPECT_EQ(FormatBytes(1000), "1k");
  EXPECT_EQ(FormatBytes(1023), "1023");
  EXPECT_EQ(FormatBytes(1536), "1536");  // "1.5Ki" is not shorter
  for (int64_t b : {int64_t{1}, int64_t{999}, int64_t{1} << 40,
                    int64_t{3} << 29, int64_t{123456789}}) {
    EXPECT_EQ(*ParseBytes(FormatBytes(b)), b) << b;
  }
}

// Every digit a double carries: a latency sum past a million seconds keeps
// its fraction (StrCat's 6 digits would print 1.23457e+06), and what is
// printed reads back exactly.
TEST(FormatDoubleTest, ShortestTextThatReadsBackExactly) {
  EXPECT_EQ(FormatDouble(0.1), "0.1");
  EXPECT_EQ(FormatDouble(3), "3");
  EXPECT_EQ(FormatDouble(1234567.125), "1234567.125");
  EXPECT_EQ(FormatDouble(0.00856593412), "0.00856593412");
  for (double d : {1234567.125, 1.0 / 3, 9876543.21e-9, 1e300}) {
    EXPECT_EQ(std::strtod(FormatDouble(d).c_str(), nullptr), d) << d;
  }
}

}  // namespace
}  // namespace tidal
