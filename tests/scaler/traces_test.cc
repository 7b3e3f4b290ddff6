// Trace readers (src/scaler/traces.cc) on small files written here, in the
// formats of shared/data/traces (README.md there): the Azure Functions
// per-minute counts with the run file's average durations, the Azure LLM
// per-request trace, the plain arrival_s,service_ms[,app] CSV, and the
// format detection of ReadTrace.

#include <fstream>
#include <string>

#include "absl/time/civil_time.h"
#include "gtest/gtest.h"
#include "scaler/simulator.h"

namespace tidal::scaler {
namespace {

std::string Write(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

constexpr char kInv[] =
    "HashFunction,HashApp,HashOwner,minute_1,minute_2,minute_3\n"
    "f1aaaaaaaaaa,a1,o1,2,0,3\n"
    "f2bbbbbbbbbb,a2,o2,0,1,0\r\n";  // CRLF is accepted
constexpr char kRun[] =
    "HashFunction,HashApp,HashOwner,Count,Average,Minimum,Maximum\n"
    "f1aaaaaaaaaa,a1,o1,5,250,100,400\n";

TEST(TracesTest, AzureFunctionsCountsSpreadWithinTheirMinute) {
  const std::string inv = Write("t1-inv.csv", kInv);
  const std::string run = Write("t1-run.csv", kRun);
  TraceOptions o;
  o.default_service_ms = 1500;
  auto t = ReadAzureFunctionsTrace(inv, run, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->duration_s, 180);  // three minutes
  EXPECT_EQ(t->start, absl::FromCivil(absl::CivilSecond(2019, 7, 15, 0, 0, 0),
                                      absl::UTCTimeZone()));
  ASSERT_EQ(t->apps.size(), 2u);
  const AppTrace& f1 = t->apps[0];
  EXPECT_EQ(f1.name, "f1aaaaaa");  // the hash's first 8 characters
  ASSERT_EQ(f1.requests.size(), 5u);
  // 2 in minute 1, none in minute 2, 3 in minute 3; sorted; the run file's
  // average as the service time.
  for (int i = 0; i < 2; ++i) {
    EXPECT_GE(f1.requests[i].arrival_s, 0);
    EXPECT_LT(f1.requests[i].arrival_s, 60);
  }
  for (int i = 2; i < 5; ++i) {
    EXPECT_GE(f1.requests[i].arrival_s, 120);
    EXPECT_LT(f1.requests[i].arrival_s, 180);
  }
  for (int i = 1; i < 5; ++i)
    EXPECT_LE(f1.requests[i - 1].arrival_s, f1.requests[i].arrival_s);
  for (const auto& r : f1.requests) EXPECT_DOUBLE_EQ(r.service_s, 0.25);
  // No run-file row: the default service time.
  ASSERT_EQ(t->apps[1].requests.size(), 1u);
  EXPECT_GE(t->apps[1].requests[0].arrival_s, 60);
  EXPECT_LT(t->apps[1].requests[0].arrival_s, 120);
  EXPECT_DOUBLE_EQ(t->apps[1].requests[0].service_s, 1.5);

  // Seeded: the same seed gives the same arrivals, another seed others.
  auto again = ReadAzureFunctionsTrace(inv, run, o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->apps[0].requests[3].arrival_s, f1.requests[3].arrival_s);
  o.seed = 2;
  auto other = ReadAzureFunctionsTrace(inv, run, o);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->apps[0].requests[3].arrival_s, f1.requests[3].arrival_s);

  // max_apps.
  o.max_apps = 1;
  auto one = ReadAzureFunctionsTrace(inv, "", o);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->apps.size(), 1u);
}

TEST(TracesTest, AzureFunctionsErrorsNameFileAndLine) {
  TraceOptions o;
  auto bad_count = ReadAzureFunctionsTrace(
      Write("bad1-inv.csv",
            "HashFunction,HashApp,HashOwner,minute_1\nf,a,o,-1\n"),
      "", o);
  EXPECT_EQ(bad_count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_count.status().message().find("bad1-inv.csv:2: bad count"),
            std::string::npos)
      << bad_count.status();
  auto columns = ReadAzureFunctionsTrace(
      Write("bad2-inv.csv",
            "HashFunction,HashApp,HashOwner,minute_1,minute_2\nf,a,o,1\n"),
      "", o);
  EXPECT_NE(columns.status().message().find("wrong number of columns"),
            std::string::npos);
  auto header = ReadAzureFunctionsTrace(Write("bad3-inv.csv", "x,y\n"), "", o);
  EXPECT_FALSE(header.ok());
  auto missing = ReadAzureFunctionsTrace("/nonexistent/x-inv.csv", "", o);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(TracesTest, LlmRequestsWithTokenServiceTimes) {
  const std::string path =
      Write("llm.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2023-11-16 18:15:50.5000000,396,100\n"  // out of order
            "2023-11-16 18:15:46.2500000,374,10\n"
            "2023-11-16 18:17:01.0000000,10,100000\n");  // capped
  TraceOptions o;
  o.ms_per_token = 20;
  o.max_service_s = 60;
  auto t = ReadLlmTrace(path, o);
  ASSERT_TRUE(t.ok()) << t.status();
  // Starts at the minute of the first request; ends on a whole minute.
  EXPECT_EQ(t->start,
            absl::FromCivil(absl::CivilSecond(2023, 11, 16, 18, 15, 0),
                            absl::UTCTimeZone()));
  EXPECT_EQ(t->duration_s, 180);
  ASSERT_EQ(t->apps.size(), 1u);
  const auto& r = t->apps[0].requests;
  ASSERT_EQ(r.size(), 3u);
  EXPECT_NEAR(r[0].arrival_s, 46.25, 1e-6);
  // 10 tokens x 20 ms, plus the 50 ms every request costs.
  EXPECT_NEAR(r[0].service_s, 0.25, 1e-9);
  EXPECT_NEAR(r[1].arrival_s, 50.5, 1e-6);
  EXPECT_NEAR(r[1].service_s, 2.05, 1e-9);
  EXPECT_NEAR(r[2].arrival_s, 121, 1e-6);
  EXPECT_NEAR(r[2].service_s, 60.05, 1e-9);  // capped, then the 50 ms

  auto bad = ReadLlmTrace(
      Write("llm-bad.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16,1,2\n"),
      o);
  EXPECT_NE(bad.status().message().find("llm-bad.csv:2: bad TIMESTAMP"),
            std::string::npos)
      << bad.status();
  auto empty = ReadLlmTrace(
      Write("llm-empty.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"), o);
  EXPECT_FALSE(empty.ok());
}

// The 2024 traces' timestamps (six fraction digits and a zone offset), the
// columns found by name in any order, and the defaults: 20 ms per token
// capped at 10 s, plus 50 ms.
TEST(TracesTest, LlmSecondFormatAnyColumnOrder) {
  const std::string path =
      Write("llm-2024.csv",
            "GeneratedTokens,ContextTokens,TIMESTAMP\n"
            "100,5,2024-05-10 00:00:01.500000+00:00\n"
            "1000,5,2024-05-10 02:00:03.000000+02:00\n"  // 00:00:03 UTC
            "7,5,2024-05-10T00:00:02Z\n");
  auto t = ReadTrace(path, TraceOptions{});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->start, absl::FromCivil(absl::CivilSecond(2024, 5, 10, 0, 0, 0),
                                      absl::UTCTimeZone()));
  ASSERT_EQ(t->apps.size(), 1u);
  const auto& r = t->apps[0].requests;
  ASSERT_EQ(r.size(), 3u);
  EXPECT_NEAR(r[0].arrival_s, 1.5, 1e-6);
  EXPECT_NEAR(r[0].service_s, 2.05, 1e-9);
  EXPECT_NEAR(r[1].arrival_s, 2, 1e-6);
  EXPECT_NEAR(r[1].service_s, 0.19, 1e-9);
  EXPECT_NEAR(r[2].arrival_s, 3, 1e-6);
  EXPECT_NEAR(r[2].service_s, 10.05, 1e-9);  // 20 s capped at 10 s
  auto bad = ReadTrace(Write("llm-2024-bad.csv",
                             "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                             "2024-05-10 00:00:01+25:00,1,1\n"),
                       TraceOptions{});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("llm-2024-bad.csv:2: bad TIMESTAMP"),
            std::string::npos)
      << bad.status();
}

TEST(TracesTest, ReadTraceDetectsTheFormat) {
  TraceOptions o;
  // Functions: the sibling -run.csv is found from the -inv.csv name.
  const std::string inv = Write("detect-inv.csv", kInv);
  Write("detect-run.csv", kRun);
  auto fn = ReadTrace(inv, o);
  ASSERT_TRUE(fn.ok()) << fn.status();
  ASSERT_EQ(fn->apps.size(), 2u);
  EXPECT_DOUBLE_EQ(fn->apps[0].requests[0].service_s, 0.25);
  // Without a sibling run file: the default service time.
  const std::string lone = Write("lone-inv.csv", kInv);
  auto fn2 = ReadTrace(lone, o);
  ASSERT_TRUE(fn2.ok());
  EXPECT_DOUBLE_EQ(fn2->apps[0].requests[0].service_s, 1.0);

  auto llm = ReadTrace(Write("detect-llm.csv",
                             "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                             "2023-11-16 18:15:46.0,1,5\n"),
                       o);
  ASSERT_TRUE(llm.ok()) << llm.status();
  EXPECT_EQ(llm->apps[0].name, "llm");

  auto plain = ReadTrace(Write("plain.csv",
                               "arrival_s,service_ms,app\n"
                               "2.5,100,b\n0.5,200,a\n1.0,300,b\n"),
                         o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_EQ(plain->apps.size(), 2u);
  EXPECT_EQ(plain->apps[0].name, "a");
  EXPECT_EQ(plain->apps[1].name, "b");
  ASSERT_EQ(plain->apps[1].requests.size(), 2u);
  EXPECT_DOUBLE_EQ(plain->apps[1].requests[0].arrival_s, 1.0);  // sorted
  EXPECT_DOUBLE_EQ(plain->apps[1].requests[0].service_s, 0.3);
  EXPECT_EQ(plain->duration_s, 60);

  // Issue 16: without the header line (as docs/scaling.md shows it), the
  // first line is a request, not refused as an unknown format.
  auto headerless =
      ReadTrace(Write("headerless.csv", "0.5,200\n1.0,300\n75,10\n"), o);
  ASSERT_TRUE(headerless.ok()) << headerless.status();
  ASSERT_EQ(headerless->apps.size(), 1u);
  ASSERT_EQ(headerless->apps[0].requests.size(), 3u);
  EXPECT_DOUBLE_EQ(headerless->apps[0].requests[0].arrival_s, 0.5);
  EXPECT_DOUBLE_EQ(headerless->apps[0].requests[0].service_s, 0.2);
  EXPECT_EQ(headerless->duration_s, 120);

  auto unknown = ReadTrace(Write("unknown.csv", "time,count\n1,2\n"), o);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("unknown trace format"),
            std::string::npos);
  EXPECT_EQ(ReadTrace("/nonexistent/trace.csv", o).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tidal::scaler
