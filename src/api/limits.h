#pragma once

// Bounds on what an app spec may hold (docs/spec.md, "Limits"), and the
// server's own limits that validation needs (tidald's flags). The static
// bounds hold everywhere (tidalctl's client-side validation too); the
// ValidationOptions ones only where a tidald sets them.
//
// CheckLimits walks an App and reports every value out of its bound and
// every string that holds a NUL byte (exec and the C library would cut it
// there: the spec would show one command and another would run). Pure
// functions; thread-safe.

#include <cstdint>
#include <functional>
#include <string>

#include "tidal/v1/app.pb.h"

namespace tidal::spec {

// Bounds on the input of one apply (YAML text or apps built in code), checked
// before a document is loaded, and on what a refusal reports. The defaults
// hold everywhere (tidalctl's client-side validation too); tidald's flags
// set them (docs/operations.md, "Limits of the API").
struct InputLimits {
  // Documents of one apply (every "---" starts one, empty ones too);
  // tidald --api-max-documents.
  int max_documents = 500;
  // Bytes of one document's YAML text, and of one app built in code
  // (encoded); tidald --api-max-spec-size.
  size_t max_document_bytes = 2 << 20;
  // Errors one refusal lists (then "... and K more errors"), fewer when
  // they pass spec::kMaxRefusalBytes; tidald --api-max-errors.
  int max_errors = 50;
};

// What tidald enforces beyond the static bounds. The defaults check none of
// it (tidalctl validates with them: it does not know the server's flags),
// but `input`, whose defaults hold everywhere.
struct ValidationOptions {
  InputLimits input;
  // Largest number of instances one app may ask for (spec.replicas,
  // scaling.minReplicas/maxReplicas/initialScale, schedules' min/max,
  // canary steps' replicas); 0: not checked. tidald
  // --max-instances-per-app.
  int32_t max_instances_per_app = 0;
  // Ports in tidald --port-range (each local instance needs one); 0: not
  // checked. `port_range` is the flag's text, for messages.
  int32_t ports = 0;
  std::string port_range;
  // When false, a webhook URL whose host is a literal private, loopback,
  // link-local, unique-local, multicast or unspecified address is refused
  // (tidald --allow-private-webhooks). Host names are checked when sent.
  bool allow_private_webhooks = true;
  // Where instances run (tidald --runtime): "process" (local processes:
  // spec.template.command is required) or "kubernetes" (Pods:
  // spec.template.image is required, docs/kubernetes.md); "" (a client,
  // which does not know tidald's runtime): either will do.
  std::string runtime;
};

// The defaults tidald runs with (tests validate with these).
ValidationOptions DefaultServerOptions();

namespace limits {

// Integers.
inline constexpr int32_t kDefaultMaxInstancesPerApp = 1000;
inline constexpr int64_t kMaxTerminationGracePeriodSeconds = 3600;
inline constexpr int32_t kMaxProbeSeconds = 3600;  // initialDelay, period
inline constexpr int32_t kMaxProbeTimeoutSeconds = 600;
inline constexpr int32_t kMaxProbeThreshold = 1000;
inline constexpr int32_t kMaxConcurrency = 1000000;
// timeoutSeconds, responseStartTimeoutSeconds, idleTimeoutSeconds: a day.
inline constexpr int32_t kMaxRequestTimeoutSeconds = 86400;
inline constexpr int64_t kMaxCpuMillis = 1024 * 1000;          // 1024 cores
inline constexpr int64_t kMaxMemoryBytes = int64_t{16} << 40;  // 16 TiB
inline constexpr double kMaxTarget = 1e6;
inline constexpr double kMaxScaleRate = 1e6;
inline constexpr int32_t kMaxPolicyValue = 1000000;
// A Secret's keys and values together, Kubernetes' 1MiB.
inline constexpr size_t kMaxSecretBytes = 1 << 20;
inline constexpr int32_t kMaxBatches = 1000;
inline constexpr int32_t kMaxBatchSize = 100000;
inline constexpr int64_t kMaxIntOrPercent = 100000;  // maxSurge, maxUnavailable
inline constexpr int32_t kMaxMinReadySeconds = 3600;
inline constexpr int64_t kMaxMinRequests = 1000000000;
inline constexpr int32_t kMaxAnalysisCount = 1000;  // failureLimit, successes
inline constexpr int32_t kMaxHistoryLimit = 1000;

// Durations (milliseconds).
inline constexpr int64_t kHour = 3600 * 1000;
inline constexpr int64_t kDay = 24 * kHour;
inline constexpr int64_t kMaxScaleToZeroGracePeriodMs = kDay;
inline constexpr int64_t kMaxLookaheadMs = kHour;
inline constexpr int64_t kMaxScheduleDurationMs = 31 * kDay;
inline constexpr int64_t kMaxBatchIntervalMs = kDay;  // and steps[].pause
inline constexpr int64_t kMaxProgressDeadlineMs = kDay;
inline constexpr int64_t kMaxAnalysisIntervalMs = kHour;
inline constexpr int64_t kMaxP99LatencyMs = kHour;
inline constexpr int64_t kMaxWebhookTimeoutMs = 5 * 60 * 1000;

// Lists and maps (entries).
inline constexpr int kMaxLabels = 64;  // metadata.labels, template.labels
inline constexpr int kMaxAnnotations = 256;
inline constexpr int kMaxArgv = 1024;  // command + args
inline constexpr int kMaxEnv = 1024;
inline constexpr int kMaxPolicies = 16;
inline constexpr int kMaxSchedules = 100;
inline constexpr int kMaxSteps = 100;
inline constexpr int kMaxWebhooks = 20;

// The YAML of one document, checked by an event scan before it is loaded:
// nodes (keys, values and list items; an alias counts as the nodes it stands
// for, so an alias bomb is refused before anything expands it), nesting
// depth and aliases. The largest spec within the other bounds has about
// 10,000 nodes and a depth of 8.
inline constexpr int kMaxYamlNodes = 20000;
inline constexpr int kMaxYamlDepth = 32;
inline constexpr int kMaxYamlAliases = 100;

// Strings (bytes).
inline constexpr size_t kMaxExecString = 128 * 1024 - 1;  // MAX_ARG_STRLEN
inline constexpr size_t kMaxExecTotal = 1024 * 1024;      // argv + environ
inline constexpr size_t kMaxPath = 4096;                  // workingDir
inline constexpr size_t kMaxUrl = 2048;  // httpGet.path, webhook url
inline constexpr size_t kMaxName = 253;  // schedule and webhook names
inline constexpr size_t kMaxCron = 256;
inline constexpr size_t kMaxSecret = 4096;

}  // namespace limits

using Reporter = std::function<void(const std::string& path, std::string msg)>;

// Reports every bound of docs/spec.md's "Limits" that `app` exceeds, every
// string with a NUL byte, and, with `opts`, instance counts above the
// server's maximum and literal private webhook addresses.
void CheckLimits(const tidal::v1::App& app, const ValidationOptions& opts,
                 const Reporter& report);

// The most instances an app may ever run by its spec, for the per-namespace
// limit: spec.replicas when set, else the largest of the scaling maximum
// (maxReplicas, the schedules' min/max and initialScale), where an unbounded
// maxReplicas (unset or 0) counts as `unbounded` (the per-app maximum).
int64_t MaxInstances(const tidal::v1::AppSpec& spec, int64_t unbounded);
// The field that sets MaxInstances, for errors: spec.replicas or
// spec.scaling.maxReplicas.
std::string MaxInstancesField(const tidal::v1::AppSpec& spec);

}  // namespace tidal::spec
