// Trace readers for shared/data/traces (see its README.md).

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "scaler/simulator.h"

namespace tidal::scaler {

namespace {

absl::StatusOr<std::vector<std::string>> ReadLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open trace ", path));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
  }
  if (lines.empty())
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty trace"));
  return lines;
}

absl::Status LineError(const std::string& path, size_t line,
                       const std::string& msg) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ":", line + 1, ": ", msg));
}

// A uniform double in [0, 1) from a 64-bit generator, the same everywhere.
double Uniform(std::mt19937_64& rng) {
  return (rng() >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

absl::StatusOr<Trace> ReadAzureFunctionsTrace(const std::string& inv_path,
                                              const std::string& run_path,
                                              const TraceOptions& opts) {
  auto inv = ReadLines(inv_path);
  if (!inv.ok()) return inv.status();
  // HashOwner/HashApp/HashFunction -> average duration in ms.
  std::map<std::string, double> avg_ms;
  if (!run_path.empty()) {
    auto run = ReadLines(run_path);
    if (!run.ok()) return run.status();
    for (size_t i = 1; i < run->size(); ++i) {
      std::vector<absl::string_view> f = absl::StrSplit((*run)[i], ',');
      double avg = 0;
      if (f.size() < 5 || !absl::SimpleAtod(f[4], &avg)) {
        return LineError(
            run_path, i,
            "expected HashFunction,HashApp,HashOwner,Count,Average,...");
      }
      avg_ms[absl::StrCat(f[0], "/", f[1], "/", f[2])] = avg;
    }
  }
  Trace t;
  t.start = absl::FromCivil(absl::CivilSecond(2019, 7, 15, 0, 0, 0),
                            absl::UTCTimeZone());
  std::vector<absl::string_view> header = absl::StrSplit((*inv)[0], ',');
  if (header.size() < 4 || header[0] != "HashFunction") {
    return LineError(inv_path, 0,
                     "expected HashFunction,HashApp,HashOwner,minute_1,...");
  }
  const size_t minutes = header.size() - 3;
  t.duration_s = minutes * 60.0;
  for (size_t i = 1; i < inv->size(); ++i) {
    if (opts.max_apps > 0 &&
        t.apps.size() >= static_cast<size_t>(opts.max_apps))
      break;
    std::vector<absl::string_view> f = absl::StrSplit((*inv)[i], ',');
    if (f.size() != header.size())
      return LineError(inv_path, i, "wrong number of columns");
    AppTrace app;
    app.name = std::string(f[0].substr(0, 8));
    auto it = avg_ms.find(absl::StrCat(f[0], "/", f[1], "/", f[2]));
    const double service_s =
        (it != avg_ms.end() ? it->second : opts.default_service_ms) / 1000.0;
    // Arrivals within a minute: a Poisson process conditioned on the count,
    // i.e. the count's arrival times uniform over the minute (seeded per app).
    std::mt19937_64 rng(opts.seed * 1000003 + i);
    std::vector<double> offs;
    for (size_t m = 0; m < minutes; ++m) {
      int64_t n = 0;
      if (!absl::SimpleAtoi(f[3 + m], &n) || n < 0) {
        return LineError(inv_path, i,
                         absl::StrCat("bad count in minute_", m + 1));
      }
      offs.clear();
      for (int64_t k = 0; k < n; ++k) offs.push_back(Uniform(rng) * 60.0);
      std::sort(offs.begin(), offs.end());
      for (double o : offs) app.requests.push_back({m * 60.0 + o, service_s});
    }
    t.apps.push_back(std::move(app));
  }
  return t;
}

absl::StatusOr<Trace> ReadLlmTrace(const std::string& path,
                                   const TraceOptions& opts) {
  auto lines = ReadLines(path);
  if (!lines.ok()) return lines.status();
  AppTrace app;
  app.name = "llm";
  std::vector<std::pair<absl::Time, double>> reqs;
  for (size_t i = 1; i < lines->size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit((*lines)[i], ',');
    if (f.size() < 3)
      return LineError(path, i,
                       "expected TIMESTAMP,ContextTokens,GeneratedTokens");
    // "2023-11-16 18:15:46.6805900" (UTC).
    std::vector<absl::string_view> dt = absl::StrSplit(f[0], ' ');
    if (dt.size() != 2) return LineError(path, i, "bad TIMESTAMP");
    std::vector<absl::string_view> d = absl::StrSplit(dt[0], '-');
    std::vector<absl::string_view> tm = absl::StrSplit(dt[1], ':');
    int y, mo, da, h, mi;
    double s;
    if (d.size() != 3 || tm.size() != 3 || !absl::SimpleAtoi(d[0], &y) ||
        !absl::SimpleAtoi(d[1], &mo) || !absl::SimpleAtoi(d[2], &da) ||
        !absl::SimpleAtoi(tm[0], &h) || !absl::SimpleAtoi(tm[1], &mi) ||
        !absl::SimpleAtod(tm[2], &s)) {
      return LineError(path, i, "bad TIMESTAMP");
    }
    absl::Time at = absl::FromCivil(absl::CivilSecond(y, mo, da, h, mi, 0),
                                    absl::UTCTimeZone()) +
                    absl::Microseconds(std::llround(s * 1e6));
    int64_t tokens = 0;
    if (!absl::SimpleAtoi(f[2], &tokens) || tokens < 0) {
      return LineError(path, i, "bad GeneratedTokens");
    }
    reqs.push_back({at, std::min(opts.max_service_s,
                                 tokens * opts.ms_per_token / 1000.0)});
  }
  if (reqs.empty())
    return absl::InvalidArgumentError(absl::StrCat(path, ": no requests"));
  std::sort(reqs.begin(), reqs.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  Trace t;
  t.start =
      absl::FromUnixSeconds(absl::ToUnixSeconds(reqs.front().first) / 60 * 60);
  for (const auto& [at, service] : reqs) {
    app.requests.push_back({absl::ToDoubleSeconds(at - t.start), service});
  }
  t.duration_s = std::ceil(app.requests.back().arrival_s / 60.0) * 60.0;
  t.apps.push_back(std::move(app));
  return t;
}

namespace {

// "arrival_s,service_ms[,app]", with that header line or without one.
absl::StatusOr<Trace> ReadPlainTrace(const std::string& path, bool header) {
  auto lines = ReadLines(path);
  if (!lines.ok()) return lines.status();
  std::map<std::string, AppTrace> apps;
  double last = 0;
  for (size_t i = header ? 1 : 0; i < lines->size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit((*lines)[i], ',');
    double at = 0, ms = 0;
    if (f.size() < 2 || !absl::SimpleAtod(f[0], &at) ||
        !absl::SimpleAtod(f[1], &ms) || at < 0 || ms < 0) {
      return LineError(path, i, "expected arrival_s,service_ms[,app]");
    }
    std::string name = f.size() > 2 ? std::string(f[2]) : "app";
    AppTrace& a = apps[name];
    a.name = name;
    a.requests.push_back({at, ms / 1000.0});
    last = std::max(last, at);
  }
  Trace t;
  t.duration_s = std::ceil(last / 60.0 + 1e-9) * 60.0;
  for (auto& [name, a] : apps) {
    std::sort(a.requests.begin(), a.requests.end(),
              [](const TraceRequest& x, const TraceRequest& y) {
                return x.arrival_s < y.arrival_s;
              });
    t.apps.push_back(std::move(a));
  }
  return t;
}

}  // namespace

absl::StatusOr<Trace> ReadTrace(const std::string& path,
                                const TraceOptions& opts) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open trace ", path));
  std::string header;
  std::getline(in, header);
  if (absl::StartsWith(header, "HashFunction,HashApp,HashOwner,minute_")) {
    std::string run;
    if (absl::EndsWith(path, "-inv.csv")) {
      run = absl::StrCat(absl::StripSuffix(path, "-inv.csv"), "-run.csv");
      if (!std::ifstream(run)) run.clear();
    }
    return ReadAzureFunctionsTrace(path, run, opts);
  }
  if (absl::StartsWith(header, "TIMESTAMP,")) return ReadLlmTrace(path, opts);
  if (absl::StartsWith(header, "arrival_s,"))
    return ReadPlainTrace(path, /*header=*/true);
  // Headerless: the first line is already a request ("0.5,12").
  std::vector<absl::string_view> first = absl::StrSplit(header, ',');
  double at = 0, ms = 0;
  if (first.size() >= 2 && absl::SimpleAtod(first[0], &at) &&
      absl::SimpleAtod(first[1], &ms))
    return ReadPlainTrace(path, /*header=*/false);
  return absl::InvalidArgumentError(
      absl::StrCat(path,
                   ": unknown trace format (expected the Azure Functions "
                   "per-minute counts, the Azure "
                   "LLM trace, or arrival_s,service_ms[,app])"));
}

}  // namespace tidal::scaler
