#pragma once

// App specs: YAML (Kubernetes-style, apiVersion tidal.dev/v1, kind App) to
// proto and back, with whole, strict validation. Every error names the
// source, line, column and field path, e.g.
//   hello.yaml:12:7: spec.scaling.minReplicas: must be <= maxReplicas (5 > 3)
// Pure functions; thread-safe.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/limits.h"
#include "tidal/v1/app.pb.h"
#include "tidal/v1/secret.pb.h"

namespace tidal::spec {

struct SpecError {
  std::string source;  // file name, "<stdin>", or "" for API objects
  int line = 0;        // 1-based; 0 when unknown
  int column = 0;      // 1-based; 0 when unknown
  std::string
      field;  // "spec.scaling.minReplicas"; "" for document-level errors
  std::string message;
  std::string ToString() const;
};

struct ParsedApp {
  tidal::v1::App app;
  std::string source;
  int line = 0;  // where the document starts
  // The line of each field path written in the document.
  std::map<std::string, int> lines;
  // The line of `path` ("spec.scaling.maxReplicas"), else of its nearest
  // written ancestor, else of the document.
  int LineOf(std::string path) const;
};

// A Secret document (kind: Secret, docs/secrets.md). Its values are in
// secret.data (stringData merged in): never print them.
struct ParsedSecret {
  tidal::v1::Secret secret;
  std::string source;
  int line = 0;  // where the document starts
};

// What a Secret's value is shown as, wherever one could be printed.
inline constexpr char kRedacted[] = "<redacted>";

struct ParseResult {
  std::vector<ParsedApp> apps;
  std::vector<ParsedSecret> secrets;
  // The first InputLimits::max_errors errors found; `more_errors` counts
  // the others (not kept).
  std::vector<SpecError> errors;
  int64_t more_errors = 0;
  // The text held no document (only comments, blank lines or empty `---`
  // documents); `errors` then holds the one error that says so. Where a
  // file is one of several (a -f directory), the caller may skip it.
  bool no_documents = false;
  bool ok() const { return errors.empty(); }
  // InvalidArgument listing the errors, one per line, then "... and K more
  // errors" when some were not kept; OK when there is none.
  absl::Status ToStatus() const;
};

// Parses and validates every document in `yaml` (Apps and Secrets). Documents
// without metadata.namespace get `default_namespace` ("default" when empty).
// When any document is invalid, `errors` lists every problem found in every
// document (the caller must then apply nothing). `opts` adds the server's
// limits (api/limits.h); the defaults check only what holds everywhere.
ParseResult ParseApps(std::string_view yaml, std::string_view source,
                      std::string_view default_namespace = "default",
                      const ValidationOptions& opts = {});

// The longest refusal message tidald sends (bytes): the errors that fit,
// then "... and K more errors". gRPC carries a status message in trailing
// metadata, which its clients refuse beyond 8 KiB by default.
inline constexpr size_t kMaxRefusalBytes = 6000;

// "... and K more errors (only the first N are listed)", the last line of a
// refusal that lists N of N + K errors.
std::string MoreErrors(int64_t more, int listed);

// Validates an App built in code (no line numbers): the same rules as
// ParseApps after parsing.
std::vector<SpecError> ValidateApp(const tidal::v1::App& app,
                                   const ValidationOptions& opts = {});

// Validates a Secret built in code: apiVersion, kind, metadata, the keys of
// data and stringData, the total size. Messages never quote a value.
std::vector<SpecError> ValidateSecret(const tidal::v1::Secret& secret);

// Moves stringData into data (a key in both takes the stringData value)
// and sets `keys` (sorted names and sizes).
void NormalizeSecret(tidal::v1::Secret* secret);

// The secret without values: data and stringData cleared, keys kept (set
// from them when empty).
tidal::v1::Secret RedactSecret(tidal::v1::Secret secret);

// A secret as YAML / JSON with every value shown as kRedacted (only its
// keys are written, whatever `secret` holds).
std::string SecretToYaml(const tidal::v1::Secret& secret);
std::string SecretToJson(const tidal::v1::Secret& secret);

// Serializes an App in the YAML form users write (status included when set).
std::string AppToYaml(const tidal::v1::App& app);
// The same document as JSON.
std::string AppToJson(const tidal::v1::App& app);

// Any message (an instance, an event, a revision, a list of tokens) as
// tidalctl prints it: the App's own messages as in the spec, the others by
// proto3 JSON's field names and omissions, but integers of 64 bits as
// numbers (proto3 JSON writes them as strings; Kubernetes as numbers) and
// strings quoted in YAML wherever a reader would take them for something
// else. `compact`: JSON on one line. `every_field`: the message's own
// fields even when they hold their default (`tokens: []`, `ha: false`), as
// a response is printed, so a script reads an empty list rather than a
// missing key; the messages it holds keep proto3's omissions.
std::string MessageToJson(const google::protobuf::Message& m,
                          bool compact = false, bool every_field = false);
std::string MessageToYaml(const google::protobuf::Message& m,
                          bool every_field = false);

// `s` as a JSON string literal (quotes and escapes included).
std::string JsonQuoted(const std::string& s);

// A stable content hash of a template (hex), which names a revision.
std::string TemplateHash(const tidal::v1::Template& tmpl);

// The replica floor the controller keeps before the scaler knows better:
// spec.replicas when set, else scaling.minReplicas, else 1.
int32_t BaseReplicas(const tidal::v1::AppSpec& spec);

// Why `ns` cannot name a namespace ("must be a DNS-1123 label ..., got
// \"X\""), or "" when it can (tidalctl's -n).
std::string NamespaceProblem(absl::string_view ns);

// `tidalctl explain`: the App schema at `path` ("app", "app.spec.scaling",
// "spec.template.env") as the validator knows it: the field's YAML name,
// type and documentation (the comments of proto/tidal/v1/app.proto), and
// its fields. InvalidArgument naming the part that is no field (with the
// nearest name).
absl::StatusOr<std::string> Explain(const std::string& path);

// Who owns the replica fields (spec.replicas, scaling.minReplicas,
// scaling.maxReplicas) when `tidalctl scale` and `apply -f` both set them:
// kubectl's three-way merge. `scale` records in this annotation what those
// fields were before it changed them (what the last apply wrote); an apply
// whose file still says that keeps the scaled values, and one whose file
// says something else sets the file's values and drops the annotation.
inline constexpr char kAppliedReplicasAnnotation[] =
    "tidal.dev/applied-replicas";

// The replica fields of `spec` as one string ("replicas=3",
// "minReplicas=1,maxReplicas=10", "" when none is set).
std::string ReplicaFields(const tidal::v1::AppSpec& spec);

// Marks `app` as scaled by hand (the first scale records the fields it
// replaces; a later one keeps that record). Call before changing them.
void MarkScaled(tidal::v1::App* app);

// Applies the rule above to `desired` (a file's app, about to replace
// `live`): keeps live's scaled replica fields and the annotation when the
// file's fields are those the annotation records; else the file's fields
// win. An annotation written in the file itself is never taken.
void KeepScaledReplicas(const tidal::v1::App& live, tidal::v1::App* desired);

// `tidalctl rollout restart` writes the time into this template annotation
// (kubectl's kubectl.kubernetes.io/restartedAt), so the template gets a new
// hash.
inline constexpr char kRestartedAtAnnotation[] = "tidal.dev/restartedAt";

// What `apply -f` writes over `live` (kubectl's three-way merge for the
// fields others than the file set): the replica fields of
// KeepScaledReplicas, and a restart's template annotation when the file does
// not set it, so applying the file a restart came after does not roll the
// app back to the template before the restart.
void KeepLiveFields(const tidal::v1::App& live, tidal::v1::App* desired);

}  // namespace tidal::spec
