// Trace readers for shared/data/traces (see its README.md).

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <tuple>

#include "absl/strings/ascii.h"
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

namespace {

// "2023-11-16 18:15:46.6805900" (the 2023 traces, UTC) or
// "2024-05-10 00:00:00.009930+00:00" (the 2024 traces): a date, ' ' or 'T',
// a time with any number of fraction digits, and an optional zone offset
// ("Z", "+HH:MM", "-HHMM"; none means UTC).
bool ParseTraceTimestamp(absl::string_view text, absl::Time* out) {
  text = absl::StripAsciiWhitespace(text);
  if (text.size() < 19 || (text[10] != ' ' && text[10] != 'T')) return false;
  absl::string_view date = text.substr(0, 10), rest = text.substr(11);
  int64_t offset_s = 0;
  const size_t zone = rest.find_first_of("Z+-");
  if (zone != absl::string_view::npos) {
    absl::string_view z = rest.substr(zone);
    rest = rest.substr(0, zone);
    if (z != "Z") {
      std::string digits;
      for (char c : z.substr(1))
        if (c != ':') digits += c;
      int hh = 0, mm = 0;
      if (digits.size() != 4 || !absl::SimpleAtoi(digits.substr(0, 2), &hh) ||
          !absl::SimpleAtoi(digits.substr(2), &mm) || hh > 23 || mm > 59) {
        return false;
      }
      offset_s = (z[0] == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
    }
  }
  std::vector<absl::string_view> d = absl::StrSplit(date, '-');
  std::vector<absl::string_view> tm = absl::StrSplit(rest, ':');
  int y, mo, da, h, mi;
  double sec;
  if (d.size() != 3 || tm.size() != 3 || !absl::SimpleAtoi(d[0], &y) ||
      !absl::SimpleAtoi(d[1], &mo) || !absl::SimpleAtoi(d[2], &da) ||
      !absl::SimpleAtoi(tm[0], &h) || !absl::SimpleAtoi(tm[1], &mi) ||
      !absl::SimpleAtod(tm[2], &sec) || mo < 1 || mo > 12 || da < 1 ||
      da > 31 || h > 23 || mi > 59 || !(sec >= 0 && sec < 61)) {
    return false;
  }
  *out = absl::FromCivil(absl::CivilSecond(y, mo, da, h, mi, 0),
                         absl::UTCTimeZone()) +
         absl::Microseconds(std::llround(sec * 1e6)) - absl::Seconds(offset_s);
  return true;
}

}  // namespace

bool IsLlmTraceHeader(const std::string& header) {
  bool ts = false, gen = false;
  for (absl::string_view c : absl::StrSplit(header, ',')) {
    c = absl::StripAsciiWhitespace(c);
    ts = ts || absl::EqualsIgnoreCase(c, "TIMESTAMP");
    gen = gen || absl::EqualsIgnoreCase(c, "GeneratedTokens");
  }
  return ts && gen;
}

absl::StatusOr<Trace> ReadLlmTrace(const std::string& path,
                                   const TraceOptions& opts) {
  auto lines = ReadLines(path);
  if (!lines.ok()) return lines.status();
  // Columns by name (the Azure LLM traces of 2023 and 2024 both have
  // TIMESTAMP,ContextTokens,GeneratedTokens; any order, more columns ignored).
  int ts_col = -1, gen_col = -1;
  {
    std::vector<absl::string_view> h = absl::StrSplit((*lines)[0], ',');
    for (size_t c = 0; c < h.size(); ++c) {
      absl::string_view name = absl::StripAsciiWhitespace(h[c]);
      if (absl::EqualsIgnoreCase(name, "TIMESTAMP")) ts_col = c;
      if (absl::EqualsIgnoreCase(name, "GeneratedTokens")) gen_col = c;
    }
  }
  if (ts_col < 0 || gen_col < 0) {
    return LineError(path, 0,
                     "expected a header with TIMESTAMP and GeneratedTokens "
                     "(e.g. TIMESTAMP,ContextTokens,GeneratedTokens)");
  }
  const size_t need = std::max(ts_col, gen_col) + 1;
  AppTrace app;
  app.name = "llm";
  std::vector<std::pair<absl::Time, double>> reqs;
  for (size_t i = 1; i < lines->size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit((*lines)[i], ',');
    if (f.size() < need)
      return LineError(path, i,
                       "expected TIMESTAMP,ContextTokens,GeneratedTokens");
    absl::Time at;
    if (!ParseTraceTimestamp(f[ts_col], &at)) {
      return LineError(path, i,
                       absl::StrCat("bad TIMESTAMP \"", f[ts_col],
                                    "\" (expected YYYY-MM-DD HH:MM:SS.ffff, "
                                    "optionally with a zone offset)"));
    }
    int64_t tokens = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(f[gen_col]), &tokens) ||
        tokens < 0) {
      return LineError(path, i, "bad GeneratedTokens");
    }
    reqs.push_back(
        {at, std::min(opts.max_service_s, tokens * opts.ms_per_token / 1000.0) +
                 opts.llm_overhead_ms / 1000.0});
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
  if (!header.empty() && header.back() == '\r') header.pop_back();
  if (IsLlmTraceHeader(header)) return ReadLlmTrace(path, opts);
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
