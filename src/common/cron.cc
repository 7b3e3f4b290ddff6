#include "common/cron.h"

#include <cstdint>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tidal {
namespace {

struct FieldDef {
  const char* name;
  int min;
  int max;
  const char* const* names;  // names[i] is value min+i, or nullptr
  int names_base;
};

constexpr const char* kMonthNames[] = {"JAN", "FEB", "MAR", "APR",
                                       "MAY", "JUN", "JUL", "AUG",
                                       "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kDayNames[] = {"SUN", "MON", "TUE", "WED",
                                     "THU", "FRI", "SAT"};

constexpr FieldDef kFields[] = {
    {"minute", 0, 59, nullptr, 0},       {"hour", 0, 23, nullptr, 0},
    {"day-of-month", 1, 31, nullptr, 0}, {"month", 1, 12, kMonthNames, 1},
    {"day-of-week", 0, 7, kDayNames, 0},  // 7 is Sunday too
};

absl::Status FieldError(const FieldDef& f, absl::string_view text,
                        absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(f.name, " field \"", text, "\": ", why));
}

absl::StatusOr<int> ParseValue(const FieldDef& f, absl::string_view field_text,
                               absl::string_view v) {
  int n;
  if (!v.empty() && absl::ascii_isdigit(v[0])) {
    for (char c : v) {
      if (!absl::ascii_isdigit(c)) {
        return FieldError(f, field_text,
                          absl::StrCat("\"", v, "\" is not a number"));
      }
    }
    if (v.size() > 4 || !absl::SimpleAtoi(v, &n)) {
      return FieldError(f, field_text, absl::StrCat(v, " is out of range"));
    }
  } else {
    std::string upper = absl::AsciiStrToUpper(v);
    n = -1;
    if (f.names != nullptr) {
      int count = f.max - f.min + (f.names == kDayNames ? 0 : 1);
      for (int i = 0; i < count; ++i) {
        if (upper == f.names[i]) n = f.names_base + i;
      }
    }
    if (n < 0) {
      std::string allowed =
          f.names == nullptr
              ? std::string("a number")
              : absl::StrCat("a number or a name (",
                             f.names == kMonthNames ? "JAN-DEC" : "SUN-SAT",
                             ")");
      return FieldError(f, field_text,
                        absl::StrCat("\"", v, "\" is not ", allowed));
    }
    return n;
  }
  if (n < f.min || n > f.max) {
    return FieldError(f, field_text,
                      absl::StrCat(n, " is out of range ", f.min, "-", f.max));
  }
  return n;
}

// Parses one field into `bits` (indexed by value). Returns whether it is "*"
// (unrestricted).
absl::StatusOr<bool> ParseField(const FieldDef& f, absl::string_view text,
                                std::vector<bool>* bits) {
  bits->assign(f.max + 1, false);
  if (text.empty()) return FieldError(f, text, "empty");
  bool star = false;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    if (part.empty()) return FieldError(f, text, "empty list element");
    int step = 1;
    absl::string_view range = part;
    size_t slash = part.find('/');
    if (slash != absl::string_view::npos) {
      absl::string_view step_text = part.substr(slash + 1);
      range = part.substr(0, slash);
      if (step_text.empty() || step_text.size() > 4 ||
          !absl::SimpleAtoi(step_text, &step) ||
          !absl::ascii_isdigit(step_text[0])) {
        return FieldError(
            f, text,
            absl::StrCat("step \"", step_text, "\" is not a positive number"));
      }
      if (step <= 0) return FieldError(f, text, "step must be at least 1");
      if (step > f.max) {
        return FieldError(
            f, text, absl::StrCat("step ", step, " is larger than ", f.max));
      }
    }
    int lo, hi;
    if (range == "*") {
      lo = f.min;
      hi = f.max;
      if (f.names == kDayNames) hi = 6;
      if (part == "*") star = true;
    } else {
      size_t dash = range.find('-');
      if (dash == absl::string_view::npos) {
        auto v = ParseValue(f, text, range);
        if (!v.ok()) return v.status();
        lo = *v;
        // "n/step" means n through the end of the range.
        hi = slash != absl::string_view::npos ? f.max : *v;
      } else {
        auto a = ParseValue(f, text, range.substr(0, dash));
        if (!a.ok()) return a.status();
        auto b = ParseValue(f, text, range.substr(dash + 1));
        if (!b.ok()) return b.status();
        lo = *a;
        hi = *b;
        if (lo > hi) {
          return FieldError(
              f, text, absl::StrCat("range ", lo, "-", hi, " is backwards"));
        }
      }
    }
    for (int v = lo; v <= hi; v += step) (*bits)[v] = true;
  }
  return star;
}

int CronWeekday(absl::CivilDay d) {
  // absl: Monday = 0 ... Sunday = 6; cron: Sunday = 0.
  int w = static_cast<int>(absl::GetWeekday(d));
  return w == 6 ? 0 : w + 1;
}

constexpr int kDaysInMonth[] = {0,  31, 29, 31, 30, 31, 30,
                                31, 31, 30, 31, 30, 31};

}  // namespace

absl::StatusOr<CronSchedule> ParseCron(std::string_view expression_in) {
  absl::string_view expr = absl::StripAsciiWhitespace(
      absl::string_view(expression_in.data(), expression_in.size()));
  static constexpr struct {
    const char* macro;
    const char* fields;
  } kMacros[] = {
      {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
      {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
      {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"},
  };
  std::string expanded(expr);
  if (!expr.empty() && expr[0] == '@') {
    bool found = false;
    for (const auto& m : kMacros) {
      if (expr == m.macro) {
        expanded = m.fields;
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown macro \"", expr,
          "\" (use @yearly, @monthly, @weekly, @daily or @hourly)"));
    }
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(expanded, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "must have 5 fields (minute hour day-of-month month day-of-week), "
        "got ",
        fields.size()));
  }
  CronSchedule out;
  out.expression = std::string(expr);
  std::vector<bool> bits;
  for (int i = 0; i < 5; ++i) {
    auto star = ParseField(kFields[i], fields[i], &bits);
    if (!star.ok()) return star.status();
    for (int v = 0; v < static_cast<int>(bits.size()); ++v) {
      if (!bits[v]) continue;
      switch (i) {
        case 0:
          out.minutes.set(v);
          break;
        case 1:
          out.hours.set(v);
          break;
        case 2:
          out.days_of_month.set(v);
          break;
        case 3:
          out.months.set(v);
          break;
        case 4:
          out.days_of_week.set(v % 7);
          break;
      }
    }
    if (i == 2) out.dom_restricted = !*star;
    if (i == 4) out.dow_restricted = !*star;
  }
  // A day-of-month list that no selected month has ("30 2") never fires.
  if (out.dom_restricted && !out.dow_restricted) {
    bool possible = false;
    for (int m = 1; m <= 12 && !possible; ++m) {
      if (!out.months[m]) continue;
      for (int d = 1; d <= kDaysInMonth[m]; ++d) {
        if (out.days_of_month[d]) possible = true;
      }
    }
    if (!possible) {
      return absl::InvalidArgumentError(
          "day-of-month field: no selected day exists in the selected months");
    }
  }
  return out;
}

bool CronSchedule::Matches(absl::CivilMinute t) const {
  if (!minutes[t.minute()] || !hours[t.hour()] || !months[t.month()]) {
    return false;
  }
  bool dom = days_of_month[t.day()];
  bool dow = days_of_week[CronWeekday(absl::CivilDay(t))];
  if (dom_restricted && dow_restricted) return dom || dow;
  return dom && dow;
}

absl::Time CronSchedule::Next(absl::Time after, absl::TimeZone tz) const {
  absl::CivilMinute c = absl::ToCivilMinute(after, tz) + 1;
  const absl::CivilYear limit = absl::CivilYear(c) + 5;
  while (absl::CivilYear(c) <= limit) {
    if (!months[c.month()]) {
      c = absl::CivilMinute(absl::CivilMonth(c) + 1);
      continue;
    }
    absl::CivilDay day(c);
    bool dom = days_of_month[c.day()];
    bool dow = days_of_week[CronWeekday(day)];
    bool day_ok =
        (dom_restricted && dow_restricted) ? (dom || dow) : (dom && dow);
    if (!day_ok) {
      c = absl::CivilMinute(day + 1);
      continue;
    }
    if (!hours[c.hour()]) {
      c = absl::CivilMinute(absl::CivilHour(c) + 1);
      continue;
    }
    if (!minutes[c.minute()]) {
      c = c + 1;
      continue;
    }
    absl::TimeZone::TimeInfo info = tz.At(c);
    absl::Time t =
        info.kind == absl::TimeZone::TimeInfo::SKIPPED ? info.trans : info.pre;
    if (t > after) return t;
    c = c + 1;
  }
  return absl::InfiniteFuture();
}

absl::StatusOr<absl::TimeZone> LoadZone(std::string_view name_in) {
  absl::string_view name(name_in.data(), name_in.size());
  if (name.empty() || name == "UTC") return absl::UTCTimeZone();
  bool valid = name.size() <= 64 && name[0] != '/' &&
               name.find("..") == absl::string_view::npos;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '/' && c != '_' && c != '-' &&
        c != '+') {
      valid = false;
    }
  }
  absl::TimeZone tz;
  if (!valid || !absl::LoadTimeZone(std::string(name), &tz)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown time zone \"", name,
                     "\" (use an IANA name like \"UTC\", \"Europe/Berlin\" or "
                     "\"Asia/Shanghai\")"));
  }
  return tz;
}

}  // namespace tidal
