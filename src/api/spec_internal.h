#pragma once

// Internals shared by the spec files (not part of the API; include only from
// src/api/spec*.cc): the YAML shape of each message (field names and how
// values are written), small path and quoting helpers, name suggestions,
// and the semantic checks. spec_validate.cc checks, spec_decode.cc reads
// YAML into protos, spec_encode.cc writes protos as YAML and JSON.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "api/limits.h"
#include "google/protobuf/descriptor.h"
#include "tidal/v1/app.pb.h"
#include "tidal/v1/secret.pb.h"

namespace tidal::spec::internal {

namespace pb = google::protobuf;

inline constexpr char kApiVersion[] = "tidal.dev/v1";
inline constexpr char kKind[] = "App";

inline absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

// s in double quotes, C-escaped, cut after 60 characters.
std::string Quote(absl::string_view s);
// "parent.child" ("child" at the top).
std::string JoinPath(const std::string& parent, absl::string_view child);
// "parent[i]"
std::string IndexPath(const std::string& parent, int i);

// ---------------------------------------------------------------------------
// The YAML shape of each message: field names and how values are written.

enum class Kind {
  kGeneric,       // by the proto type
  kDuration,      // int64 *_ms written as "30s"
  kCpu,           // Resources.cpu_millis as "500m"
  kBytes,         // Resources.memory_bytes as "256Mi"
  kEnv,           // Template.env: a map, or a list of {name, value}
  kErrorRate,     // Analysis.max_error_rate: 0.05 or "5%"
  kIntOrPercent,  // RolloutSpec.max_surge / max_unavailable: 1 or "25%"
  kStepPause,     // CanaryStep.pause_ms (+ pause_manual): duration | manual
  kRolloutPause,  // RolloutSpec.pause_manual: manual | a duration
  kTimestamp,     // google.protobuf.Timestamp as RFC 3339
};

struct FieldInfo {
  std::string name;  // YAML name
  const pb::FieldDescriptor* field;
  Kind kind;
};

struct MessageInfo {
  std::vector<FieldInfo> fields;  // declaration order
  const FieldInfo* Find(absl::string_view name) const {
    for (const FieldInfo& f : fields) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }
};

// The YAML shape of every message reachable from App.
struct Schema {
  std::map<const pb::Descriptor*, MessageInfo> messages;
  // YAML name -> the paths (under metadata and spec) where it is a field.
  std::map<std::string, std::vector<std::string>> where;

  const MessageInfo& Get(const pb::Descriptor* d) const {
    return messages.at(d);
  }

  void Add(const pb::Descriptor* d, const std::string& path, bool index);
};

const Schema& GetSchema();

// The candidate nearest to `word` (ignoring case, '_' and '-'), or "" when
// none is near enough to be a likely typo.
std::string Suggest(absl::string_view word,
                    const std::vector<std::string>& candidates);

// Every semantic check of an App (spec_validate.cc): reports each problem
// with its field path.
void CheckApp(const tidal::v1::App& app, const ValidationOptions& opts,
              const Reporter& report);

inline constexpr char kSecretKind[] = "Secret";
// Every check of a Secret (spec_validate.cc); messages never quote a value.
void CheckSecret(const tidal::v1::Secret& secret, const Reporter& report);
// Letters, digits, '-', '_' and '.', at most 253 (a Kubernetes Secret key).
bool IsSecretKey(absl::string_view s);

// Why one document's YAML text may not be loaded: more nodes than
// limits::kMaxYamlNodes (an alias counting as the nodes it stands for, so an
// alias bomb is refused before YAML::Load or a walk over its nodes expands
// it), nested deeper than kMaxYamlDepth, more aliases than kMaxYamlAliases,
// or an alias inside the node it names (a cycle). Measured with yaml-cpp's
// event parser, which builds nothing. nullopt: load it (a syntax error is
// left to YAML::Load, which reports where).
struct ScanProblem {
  int line = 0;  // 1-based within `text`; 0 when unknown
  int column = 0;
  std::string message;
};
std::optional<ScanProblem> ScanDocument(const std::string& text);

}  // namespace tidal::spec::internal
