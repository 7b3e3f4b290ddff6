#pragma once

// A line-based unified diff (like `diff -u`), for `tidalctl diff`. Pure
// function; thread-safe.

#include <string>

namespace tidal::cli {

// Empty when `a` and `b` are equal; else "--- a_name\n+++ b_name\n@@ ...".
// `context` lines around each change.
std::string UnifiedDiff(const std::string& a, const std::string& b,
                        const std::string& a_name, const std::string& b_name,
                        int context = 3);

}  // namespace tidal::cli
