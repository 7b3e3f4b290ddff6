#pragma once

// Gates of a rollout: each looks at one kind of evidence about the new
// revision and returns a Verdict (pass, fail or inconclusive, with a reason
// and a message for the rollout's status and events). Gates decide nothing
// about the rollout itself: the deployer feeds their verdicts to the state
// machine (transitions.h), which moves, holds or rolls back.
//
//  health:     crash loops and instances that never get ready (fail fast)
//  error rate: the revision's share of 5xx answers over an analysis window
//  latency:    the revision's p99 over an analysis window
//  webhook:    the answers of the app's gating webhooks (pre-rollout,
//              confirm-promotion)
//
// Pure functions over their inputs (HealthGate accumulates instances);
// thread-compatible.

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "deployer/webhooks.h"
#include "scaler/metrics_source.h"
#include "tidal/v1/app.pb.h"

namespace tidal::deployer {

// What a gate says.
struct Verdict {
  enum class Kind { kPass, kFail, kInconclusive };
  Kind kind = Kind::kPass;
  // Machine-readable cause of a failure ("CrashLoop", "ErrorRate", the
  // webhook gate's reason...), empty on a pass.
  std::string reason;
  // For humans: why it failed or was inconclusive.
  std::string message;

  static Verdict Pass() { return {}; }
  static Verdict Fail(std::string reason, std::string message) {
    return {Kind::kFail, std::move(reason), std::move(message)};
  }
  static Verdict Inconclusive(std::string message) {
    return {Kind::kInconclusive, "", std::move(message)};
  }
  bool passed() const { return kind == Kind::kPass; }
  bool failed() const { return kind == Kind::kFail; }
  bool inconclusive() const { return kind == Kind::kInconclusive; }
};

// How far back a crash still counts towards a crash loop (docs/rollouts.md,
// "Fail fast"): the process runtime's own horizon, a run this long resets
// its restart back-off (ProcessRuntime::Options::backoff_reset).
inline constexpr absl::Duration kCrashWindow = absl::Minutes(10);

// The health gate (docs/rollouts.md, "Fail fast"): the instances of one
// revision fail it at once when two of them are failing, when the only one
// is, or when one crashed twice within kCrashWindow. A single crash among
// several (a port taken for a moment) is left to the runtime's restart.
//
// Failing means: down after a crash right now (CrashLoopBackOff) before it
// ever got ready, or given up on by the runtime (Failed), or never ready
// (its readiness probe failed failureThreshold times in a row, or it never
// opened its port: ReadinessProbeFailed / StartupTimeout).
class HealthGate {
 public:
  explicit HealthGate(absl::Time now) : now_(now) {}

  // Adds one live instance of the revision.
  void Add(const tidal::v1::Instance& inst);

  // Fail with reason "CrashLoop" (a crashed instance) or "NeverReady", and a
  // message naming the instance; else Pass.
  Verdict Check(int64_t revision) const;

 private:
  const absl::Time now_;
  int32_t live_ = 0;
  int32_t crashed_ = 0;
  int32_t never_ready_ = 0;
  bool loop_ = false;
  // Copies, so the gate does not depend on the caller's container.
  bool has_crash_ = false;
  tidal::v1::Instance crash_;
  bool has_stuck_ = false;
  tidal::v1::Instance stuck_;
};

// True when the spec asks for analysis of the new revision's metrics.
bool AnalysisConfigured(const tidal::v1::Analysis& analysis);

// The error-rate gate: Fail (reason "ErrorRate", message "5xx rate 12.0% >
// 5.0%") when maxErrorRate is set and the window's 5xx share is over it.
// Pass otherwise, including with no requests. The window's size is the
// caller's business (AnalyzeWindow checks minRequests).
Verdict ErrorRateGate(const tidal::v1::Analysis& analysis,
                      const RequestStats& stats);

// The latency gate: Fail (reason "Latency", message "p99 900ms > 500ms") when
// maxP99LatencyMs is set and the window's p99 is over it; else Pass.
Verdict LatencyGate(const tidal::v1::Analysis& analysis,
                    const RequestStats& stats);

// One analysis window through both metric gates.
struct WindowAnalysis {
  // "requests=40 5xx=2.5% p99=120ms over 30s".
  std::string figures;
  // Inconclusive ("inconclusive: fewer than N requests") when the window has
  // fewer than max(1, minRequests) requests; Fail (reason "AnalysisFailed",
  // message: every gate's message joined by ", ") when a gate fails; else
  // Pass.
  Verdict verdict;
};
WindowAnalysis AnalyzeWindow(const tidal::v1::Analysis& analysis,
                             const RequestStats& stats,
                             absl::Duration interval);

// The webhook gate: calls every hook of `type` among `hooks` with `payload`
// (in spec order); the first that refuses fails the gate with `reason` and
// the sender's error message. Pass when all accept, when there are none, or
// when `sender` is null.
Verdict WebhookGate(
    WebhookSender* sender,
    const google::protobuf::RepeatedPtrField<tidal::v1::Webhook>& hooks,
    const std::string& type, const std::string& reason,
    const std::string& payload);

}  // namespace tidal::deployer
