#pragma once

// The table of invalid specs shared by the parser's tests (each row's error
// names its line, column and field) and the service's (each row changes
// nothing in the store).

#include <string>
#include <vector>

namespace tidal::spec::testing {

struct InvalidRow {
  const char* name;
  std::string yaml;
  int line;
  int column;  // 0: not checked
  std::string field;
  std::string message;  // the whole message
};

// A spec whose lines 1-5 are the head (apiVersion, kind, metadata.name:
// hello, spec:) and whose body starts on line 6.
std::string Spec(const std::string& body);

// At least 40 rows, each with its own specific error.
std::vector<InvalidRow> InvalidRows();

}  // namespace tidal::spec::testing
