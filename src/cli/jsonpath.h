#pragma once

// kubectl's JSONPath, the part its users write, for `get -o jsonpath=`,
// `-o custom-columns=` and `--sort-by` (docs/cli.md, "get"):
//   paths   .a.b  ['a']  [0]  [*]  .*  (a leading $ or @ is the root /
//           the current item)
//   template  literal text, {PATH}, {"quoted text with \n \t"},
//           {range PATH}...{end}
// Documents are JSON text (as `get -o json` prints them). Pure functions.

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tidal::cli {

// Evaluates a template ("{.items[*].metadata.name}") against `json`. Several
// values of one {PATH} are separated by a space, as in kubectl; a path that
// matches nothing prints nothing. InvalidArgument when the template does not
// parse (an unclosed brace, a range without end, ...).
absl::StatusOr<std::string> JsonPathTemplate(const std::string& json,
                                             const std::string& tmpl);

// The values `path` (".metadata.name" or "{.metadata.name}") selects in
// `json`: scalars as written, maps and lists as compact JSON.
absl::StatusOr<std::vector<std::string>> JsonPathValues(
    const std::string& json, const std::string& path);

// `-o custom-columns=NAME:.metadata.name,READY:.status.readyReplicas`: a
// table with one row per item (each a JSON document); a cell with no value
// reads <none>, several values are joined by commas.
absl::StatusOr<std::string> CustomColumns(const std::vector<std::string>& items,
                                          const std::string& spec);

// `--sort-by`: the indices of `items` (JSON documents) ordered by the value
// `path` selects in each (numbers by value, anything else as text; items
// without one first; ties keep their order).
absl::StatusOr<std::vector<size_t>> SortOrder(
    const std::vector<std::string>& items, const std::string& path);

}  // namespace tidal::cli
