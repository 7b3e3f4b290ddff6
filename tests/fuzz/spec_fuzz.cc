// Fuzz target: the spec parser (YAML -> validated App protos). Any input must
// give either apps or errors, never a crash, a hang or both; every error names
// a line within the input; an accepted app serialized back to YAML parses
// again to the same proto (the round trip `get -o yaml | apply -f -` relies
// on).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/spec.h"
#include "fuzz_check.h"
#include "google/protobuf/util/message_differencer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tidal::fuzz::Check;
  if (size > 64 * 1024) return 0;  // the API bounds specs; keep runs fast
  std::string_view yaml(reinterpret_cast<const char*>(data), size);
  tidal::spec::ParseResult r = tidal::spec::ParseApps(yaml, "fuzz.yaml");
  Check(r.ok() || r.apps.empty(), "errors and apps at once");
  // Lines as YAML (libyaml's marks) counts them: a CR, an LF, a CR LF, NEL,
  // LS and PS each end one (a file of lone CRs has as many lines).
  int lines = 1;
  for (size_t i = 0; i < yaml.size(); ++i) {
    if (yaml[i] == '\n') {
      ++lines;
    } else if (yaml[i] == '\r') {
      ++lines;
      if (i + 1 < yaml.size() && yaml[i + 1] == '\n') ++i;
    } else if (yaml.compare(i, 2, "\xC2\x85") == 0 ||
               yaml.compare(i, 3, "\xE2\x80\xA8") == 0 ||
               yaml.compare(i, 3, "\xE2\x80\xA9") == 0) {
      ++lines;
    }
  }
  for (const auto& e : r.errors) {
    Check(e.line >= 0 && e.line <= lines + 1,
          "error line out of the input: " + e.ToString());
    Check(!e.message.empty(), "an error without a message");
  }
  for (const auto& parsed : r.apps) {
    const std::string again = tidal::spec::AppToYaml(parsed.app);
    tidal::spec::ParseResult r2 = tidal::spec::ParseApps(
        again, "again.yaml", parsed.app.metadata().namespace_());
    Check(r2.ok() && r2.apps.size() == 1,
          "an accepted app does not parse back: " +
              (r2.errors.empty() ? std::string("no app")
                                 : r2.errors[0].ToString()) +
              "\n" + again);
    Check(google::protobuf::util::MessageDifferencer::Equals(parsed.app,
                                                             r2.apps[0].app),
          "round trip changed the app:\n" + again);
  }
  return 0;
}
