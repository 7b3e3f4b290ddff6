#include "cli/diff.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tidal::cli {
namespace {

struct Line {
  char op;  // ' ', '-', '+'
  int a;    // index in a (for ' ' and '-')
  int b;    // index in b (for ' ' and '+')
};

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out = absl::StrSplit(s, '\n');
  if (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

// Edit script by longest common subsequence (specs are small).
std::vector<Line> Script(const std::vector<std::string>& a,
                         const std::vector<std::string>& b) {
  const int n = a.size(), m = b.size();
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (int i = n - 1; i >= 0; --i) {
    for (int j = m - 1; j >= 0; --j) {
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1
                               : std::max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  std::vector<Line> out;
  int i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] == b[j]) {
      out.push_back({' ', i++, j++});
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      out.push_back({'-', i++, j});
    } else {
      out.push_back({'+', i, j++});
    }
  }
  return out;
}

}  // namespace

std::string UnifiedDiff(const std::string& a_text, const std::string& b_text,
                        const std::string& a_name, const std::string& b_name,
                        int context) {
  if (a_text == b_text) return "";
  const std::vector<std::string> a = Lines(a_text), b = Lines(b_text);
  const std::vector<Line> script = Script(a, b);
  std::string out = absl::StrCat("--- ", a_name, "\n+++ ", b_name, "\n");
  const int total = script.size();
  int k = 0;
  while (k < total) {
    // Find the next change.
    while (k < total && script[k].op == ' ') ++k;
    if (k >= total) break;
    int start = std::max(0, k - context);
    // Extend the hunk while changes are within 2*context of each other.
    int end = k;
    int last_change = k;
    while (end < total) {
      if (script[end].op != ' ') last_change = end;
      if (end - last_change > 2 * context) break;
      ++end;
    }
    end = std::min(total, last_change + context + 1);
    int a_start = -1, b_start = -1, a_len = 0, b_len = 0;
    std::string body;
    for (int x = start; x < end; ++x) {
      const Line& l = script[x];
      if (l.op != '+') {
        if (a_start < 0) a_start = l.a;
        ++a_len;
      }
      if (l.op != '-') {
        if (b_start < 0) b_start = l.b;
        ++b_len;
      }
      const std::string& text = l.op == '+' ? b[l.b] : a[l.a];
      absl::StrAppend(&body, std::string(1, l.op), text, "\n");
    }
    // Line numbers are 1-based; an empty range starts at the line before it.
    if (a_start < 0) a_start = script[start].a;
    if (b_start < 0) b_start = script[start].b;
    auto range = [](int s, int len) {
      int first = len == 0 ? s : s + 1;
      return len == 1 ? absl::StrCat(first) : absl::StrCat(first, ",", len);
    };
    absl::StrAppend(&out, "@@ -", range(a_start, a_len), " +",
                    range(b_start, b_len), " @@\n", body);
    k = end;
  }
  return out;
}

}  // namespace tidal::cli
