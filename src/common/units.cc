#include "common/units.h"

#include <cctype>
#include <charconv>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tidal {
namespace {

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

// An unsigned decimal number "12", "1.5", ".5" split into its integer digits
// and fraction digits. Returns the number of characters consumed (0 if none).
struct Decimal {
  absl::string_view whole;
  absl::string_view fraction;
};

size_t ReadDecimal(absl::string_view s, Decimal* out) {
  size_t i = 0;
  while (i < s.size() && absl::ascii_isdigit(s[i])) ++i;
  out->whole = s.substr(0, i);
  out->fraction = {};
  if (i < s.size() && s[i] == '.') {
    size_t j = i + 1;
    while (j < s.size() && absl::ascii_isdigit(s[j])) ++j;
    out->fraction = s.substr(i + 1, j - i - 1);
    if (out->whole.empty() && out->fraction.empty()) return 0;
    i = j;
  }
  return i;
}

// Computes `d` * `unit` exactly. Fails on overflow or when the result is not
// a whole number.
enum class Scale { kOk, kOverflow, kFractional };
Scale ScaleDecimal(const Decimal& d, int64_t unit, int64_t* out) {
  int64_t value = 0;
  for (char c : d.whole) {
    if (value > (kMaxInt64 - (c - '0')) / 10) return Scale::kOverflow;
    value = value * 10 + (c - '0');
  }
  if (unit != 0 && value > kMaxInt64 / unit) return Scale::kOverflow;
  value *= unit;
  // Fraction: sum of digit * unit / 10^k, which must be exact.
  int64_t denom = 1;
  int64_t numer = 0;  // fraction digits as an integer, scaled by denom
  for (char c : d.fraction) {
    if (denom > kMaxInt64 / 10) {
      if (c != '0') return Scale::kFractional;
      continue;
    }
    denom *= 10;
    numer = numer * 10 + (c - '0');
  }
  if (numer != 0) {
    // numer/denom * unit must be an integer.
    __int128 prod = static_cast<__int128>(numer) * unit;
    if (prod % denom != 0) return Scale::kFractional;
    __int128 add = prod / denom;
    if (add > kMaxInt64 - value) return Scale::kOverflow;
    value += static_cast<int64_t>(add);
  }
  *out = value;
  return Scale::kOk;
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

absl::Status DurationError(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "must be a duration like \"30s\", \"5m\", \"250ms\" or \"1h30m\"", why,
      ", got ", Quote(text)));
}

}  // namespace

absl::StatusOr<int64_t> ParseDurationMs(std::string_view text_in) {
  absl::string_view text(text_in.data(), text_in.size());
  absl::string_view s = text;
  if (s.empty()) return DurationError(text, "");
  if (s == "0") return 0;
  if (s[0] == '-') return DurationError(text, " (not negative)");
  if (s[0] == '+') s.remove_prefix(1);
  int64_t total = 0;
  bool any = false;
  while (!s.empty()) {
    Decimal d;
    size_t n = ReadDecimal(s, &d);
    if (n == 0) return DurationError(text, "");
    s.remove_prefix(n);
    size_t u = 0;
    while (u < s.size() && absl::ascii_isalpha(s[u])) ++u;
    absl::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    int64_t mult;
    if (unit == "ms") {
      mult = 1;
    } else if (unit == "s") {
      mult = 1000;
    } else if (unit == "m") {
      mult = 60 * 1000;
    } else if (unit == "h") {
      mult = 3600 * 1000;
    } else if (unit.empty()) {
      return DurationError(text, " (a number needs a unit: ms, s, m or h)");
    } else {
      return DurationError(text, absl::StrCat(" (unknown unit ", Quote(unit),
                                              "; use ms, s, m or h)"));
    }
    int64_t part;
    switch (ScaleDecimal(d, mult, &part)) {
      case Scale::kOverflow:
        return DurationError(text, " (too large)");
      case Scale::kFractional:
        return DurationError(text, " (finer than a millisecond)");
      case Scale::kOk:
        break;
    }
    if (part > kMaxInt64 - total) return DurationError(text, " (too large)");
    total += part;
    any = true;
  }
  if (!any) return DurationError(text, "");
  return total;
}

std::string FormatDurationMs(int64_t ms) {
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    // -INT64_MIN overflows; such values never come from ParseDurationMs.
    ms = ms == std::numeric_limits<int64_t>::min() ? kMaxInt64 : -ms;
  }
  if (ms < 1000) return absl::StrCat(out, ms, "ms");
  int64_t hours = ms / 3600000;
  int64_t minutes = (ms / 60000) % 60;
  int64_t seconds = (ms / 1000) % 60;
  int64_t millis = ms % 1000;
  if (hours) absl::StrAppend(&out, hours, "h");
  if (minutes) absl::StrAppend(&out, minutes, "m");
  if (seconds || millis) {
    absl::StrAppend(&out, seconds);
    if (millis) {
      std::string frac = absl::StrCat(1000 + millis).substr(1);  // 3 digits
      while (!frac.empty() && frac.back() == '0') frac.pop_back();
      absl::StrAppend(&out, ".", frac);
    }
    absl::StrAppend(&out, "s");
  }
  return out;
}

absl::StatusOr<int64_t> ParseCpuMillis(std::string_view text_in) {
  absl::string_view text(text_in.data(), text_in.size());
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("must be a CPU quantity like \"500m\", \"1\" or \"1.5\"",
                     why, ", got ", Quote(text)));
  };
  absl::string_view s = text;
  if (!s.empty() && s[0] == '-') return error(" (not negative)");
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  Decimal d;
  size_t n = ReadDecimal(s, &d);
  if (n == 0) return error("");
  absl::string_view suffix = s.substr(n);
  int64_t mult;
  if (suffix.empty()) {
    mult = 1000;
  } else if (suffix == "m") {
    mult = 1;
  } else {
    return error(" (the only suffix is m, for millicores)");
  }
  int64_t out;
  switch (ScaleDecimal(d, mult, &out)) {
    case Scale::kOverflow:
      return error(" (too large)");
    case Scale::kFractional:
      return error(" (finer than 1m)");
    case Scale::kOk:
      break;
  }
  return out;
}

absl::StatusOr<int64_t> ParseBytes(std::string_view text_in) {
  absl::string_view text(text_in.data(), text_in.size());
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "must be a byte quantity like \"256Mi\", \"1Gi\", \"500M\" "
        "or \"1024\"",
        why, ", got ", Quote(text)));
  };
  absl::string_view s = text;
  if (!s.empty() && s[0] == '-') return error(" (not negative)");
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  Decimal d;
  size_t n = ReadDecimal(s, &d);
  if (n == 0) return error("");
  absl::string_view suffix = s.substr(n);
  static constexpr struct {
    const char* name;
    int64_t mult;
  } kSuffixes[] = {
      {"", 1},
      {"k", 1000},
      {"M", 1000 * 1000},
      {"G", 1000LL * 1000 * 1000},
      {"T", 1000LL * 1000 * 1000 * 1000},
      {"P", 1000LL * 1000 * 1000 * 1000 * 1000},
      {"E", 1000LL * 1000 * 1000 * 1000 * 1000 * 1000},
      {"Ki", 1LL << 10},
      {"Mi", 1LL << 20},
      {"Gi", 1LL << 30},
      {"Ti", 1LL << 40},
      {"Pi", 1LL << 50},
      {"Ei", 1LL << 60},
  };
  int64_t mult = 0;
  for (const auto& sfx : kSuffixes) {
    if (suffix == sfx.name) mult = sfx.mult;
  }
  if (mult == 0) {
    return error(" (suffixes: k, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei)");
  }
  int64_t out;
  switch (ScaleDecimal(d, mult, &out)) {
    case Scale::kOverflow:
      return error(" (too large)");
    case Scale::kFractional:
      return error(" (not a whole number of bytes)");
    case Scale::kOk:
      break;
  }
  return out;
}

std::string FormatCpuMillis(int64_t millis) {
  if (millis % 1000 == 0) return absl::StrCat(millis / 1000);
  return absl::StrCat(millis, "m");
}

std::string FormatBytes(int64_t bytes) {
  if (bytes == 0) return "0";
  static constexpr struct {
    const char* name;
    int64_t mult;
  } kSuffixes[] = {
      {"Ei", 1LL << 60}, {"Pi", 1LL << 50}, {"Ti", 1LL << 40},
      {"Gi", 1LL << 30}, {"Mi", 1LL << 20}, {"Ki", 1LL << 10},
  };
  static constexpr struct {
    const char* name;
    int64_t mult;
  } kDecimal[] = {
      {"E", 1000LL * 1000 * 1000 * 1000 * 1000 * 1000},
      {"P", 1000LL * 1000 * 1000 * 1000 * 1000},
      {"T", 1000LL * 1000 * 1000 * 1000},
      {"G", 1000LL * 1000 * 1000},
      {"M", 1000 * 1000},
      {"k", 1000},
  };
  std::string best = absl::StrCat(bytes);
  for (const auto& s : kSuffixes) {
    if (bytes % s.mult == 0) {
      std::string c = absl::StrCat(bytes / s.mult, s.name);
      if (c.size() < best.size()) best = c;
      break;
    }
  }
  for (const auto& s : kDecimal) {
    if (bytes % s.mult == 0) {
      std::string c = absl::StrCat(bytes / s.mult, s.name);
      if (c.size() < best.size()) best = c;
      break;
    }
  }
  return best;
}

std::string FormatDouble(double d) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d);
  return std::string(buf, res.ptr);
}

}  // namespace tidal
