#include "deployer/gates.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/proto_time.h"
#include "runtime/runtime.h"

namespace tidal::deployer {
namespace {

using tidal::v1::Instance;

// What an instance's recent behaviour says (docs/rollouts.md, "Fail fast").
// Only an instance that is down after a crash right now (CrashLoopBackOff)
// or that the runtime gave up on (Failed) can count: a restart long ago, an
// instance that restarted and is starting or running again, says nothing by
// itself. start_time is the start of the run that crashed (the runtime sets
// it on every (re)start), so when that run was itself a restart
// (restarts >= 1) and began within kCrashWindow, the instance crashed twice
// within the window.
enum class CrashState {
  kNone,
  kCrashed,  // failing: it crashed before it got ready (or the runtime gave up)
  kLoop,     // crashed twice within kCrashWindow: fails the revision alone
};
CrashState Crash(const Instance& i, absl::Time now) {
  if (i.phase() == "Failed") return CrashState::kCrashed;
  if (i.phase() != "CrashLoopBackOff") return CrashState::kNone;
  // A run that began long ago (e.g. adopted after a restart of tidald, or
  // ready for hours) and then crashed once is left to the runtime.
  const bool recent =
      !i.has_start_time() || now - FromProtoTime(i.start_time()) < kCrashWindow;
  if (!recent) return CrashState::kNone;
  if (i.restarts() >= 1) return CrashState::kLoop;
  // The first run crashed: failing when it never got ready (a crash at
  // start-up); one crash after being ready is the runtime's to restart.
  return i.has_ready_time() ? CrashState::kNone : CrashState::kCrashed;
}

// An instance the runtime gave up waiting for: its process runs, but its
// readiness probe answered "not ready" failureThreshold times in a row after
// it started listening (ReadinessProbeFailed), or it never opened its port
// within the startup bound (StartupTimeout). Only before it was first ready.
bool NeverReady(const Instance& i) {
  return !i.ready() && (i.reason() == kReasonReadinessProbeFailed ||
                        i.reason() == kReasonStartupTimeout);
}

}  // namespace

void HealthGate::Add(const Instance& inst) {
  ++live_;
  const CrashState c = Crash(inst, now_);
  if (c != CrashState::kNone) {
    ++crashed_;
    // The message names a looping instance first, then the one with the
    // most restarts.
    const bool is_loop = c == CrashState::kLoop;
    if (!has_crash_ || (is_loop && !loop_) ||
        (is_loop == loop_ && inst.restarts() > crash_.restarts())) {
      crash_ = inst;
      has_crash_ = true;
    }
    loop_ = loop_ || is_loop;
  } else if (NeverReady(inst)) {
    ++never_ready_;
    if (!has_stuck_) {
      stuck_ = inst;
      has_stuck_ = true;
    }
  }
}

Verdict HealthGate::Check(int64_t revision) const {
  const int32_t failing = crashed_ + never_ready_;
  if (failing == 0) return Verdict::Pass();
  if (!(failing >= 2 || live_ == 1 || loop_)) return Verdict::Pass();
  if (has_crash_) {
    return Verdict::Fail(
        "CrashLoop",
        absl::StrCat(
            "revision ", revision, " does not start: instance ", crash_.id(),
            " is ", crash_.phase(), " after ", crash_.restarts(), " restart(s)",
            crash_.message().empty() ? ""
                                     : absl::StrCat(": ", crash_.message())));
  }
  return Verdict::Fail(
      "NeverReady",
      absl::StrCat("revision ", revision, " never gets ready: instance ",
                   stuck_.id(), " (", stuck_.reason(), ")",
                   stuck_.message().empty()
                       ? ""
                       : absl::StrCat(": ", stuck_.message())));
}

bool AnalysisConfigured(const tidal::v1::Analysis& a) {
  return a.min_requests() > 0 || a.has_max_error_rate() ||
         a.max_p99_latency_ms() > 0;
}

namespace {
double ErrorRate(const RequestStats& s) {
  return s.requests > 0 ? static_cast<double>(s.responses_5xx) / s.requests : 0;
}
}  // namespace

Verdict ErrorRateGate(const tidal::v1::Analysis& an, const RequestStats& s) {
  const double rate = ErrorRate(s);
  if (!an.has_max_error_rate() || !(rate > an.max_error_rate()))
    return Verdict::Pass();
  return Verdict::Fail("ErrorRate",
                       absl::StrFormat("5xx rate %.1f%% > %.1f%%", rate * 100,
                                       an.max_error_rate() * 100));
}

Verdict LatencyGate(const tidal::v1::Analysis& an, const RequestStats& s) {
  if (an.max_p99_latency_ms() <= 0 || !(s.p99_ms > an.max_p99_latency_ms()))
    return Verdict::Pass();
  return Verdict::Fail("Latency", absl::StrFormat("p99 %.0fms > %dms", s.p99_ms,
                                                  an.max_p99_latency_ms()));
}

WindowAnalysis AnalyzeWindow(const tidal::v1::Analysis& an,
                             const RequestStats& s, absl::Duration interval) {
  WindowAnalysis out;
  out.figures = absl::StrFormat("requests=%d 5xx=%.1f%% p99=%.0fms over %s",
                                s.requests, ErrorRate(s) * 100, s.p99_ms,
                                absl::FormatDuration(interval));
  const int64_t min_requests = std::max<int64_t>(1, an.min_requests());
  if (s.requests < min_requests) {
    out.verdict = Verdict::Inconclusive(
        absl::StrCat("inconclusive: fewer than ", min_requests, " requests"));
    return out;
  }
  std::vector<std::string> over;
  for (const Verdict& v : {ErrorRateGate(an, s), LatencyGate(an, s)})
    if (v.failed()) over.push_back(v.message);
  if (!over.empty())
    out.verdict = Verdict::Fail("AnalysisFailed", absl::StrJoin(over, ", "));
  return out;
}

Verdict WebhookGate(
    WebhookSender* sender,
    const google::protobuf::RepeatedPtrField<tidal::v1::Webhook>& hooks,
    const std::string& type, const std::string& reason,
    const std::string& payload) {
  if (sender == nullptr) return Verdict::Pass();
  for (const auto& h : hooks) {
    if (h.type() != type) continue;
    absl::Status s = sender->Call(h, payload);
    if (!s.ok()) return Verdict::Fail(reason, std::string(s.message()));
  }
  return Verdict::Pass();
}

}  // namespace tidal::deployer
