#pragma once

// Hostile specs shared by the hostile-input suite's short form
// (tests/hostile/hostile_test.cc) and its long form
// (bench/hostile/hostile_bench.cc).

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tidal::hostile {

// A valid app's head (7 lines); fields appended to it land under spec.
inline constexpr char kHead[] =
    "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: x\n"
    "spec:\n  template:\n    command: [x]\n";

// kHead and `n` unknown fields under spec: 200,000 make the 2.9 MB spec of
// issue 15.
inline std::string UnknownFields(int n) {
  std::string y = kHead;
  for (int i = 0; i < n; ++i) absl::StrAppend(&y, "  unk", i, ": 1\n");
  return y;
}

// `levels` levels of nine aliases of the level below: 9^levels nodes once
// expanded, a few hundred bytes written.
inline std::string AliasBomb(int levels = 9) {
  std::string y =
      "apiVersion: tidal.dev/v1\nkind: App\n"
      "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int i = 1; i <= levels; ++i) {
    std::vector<std::string> refs(9, absl::StrCat("*a", i - 1));
    absl::StrAppend(&y, "x", i, ": &a", i, " [", absl::StrJoin(refs, ", "),
                    "]\n");
  }
  absl::StrAppend(&y, "metadata:\n  name: bomb\n");
  return y;
}

// metadata nested `depth` lists deep.
inline std::string DeepNesting(int depth) {
  return "apiVersion: tidal.dev/v1\nkind: App\nmetadata: " +
         std::string(depth, '[') + std::string(depth, ']') + "\n";
}

}  // namespace tidal::hostile
