// rollout status|pause|resume|promote|abort|undo|retry|restart|history,
// get revisions, and the wait behind `apply --wait` (the CI gate).

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "api/grpc_status.h"
#include "api/spec.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/proto_time.h"

namespace tidal::cli {
namespace {

absl::StatusOr<tidal::v1::App> GetApp(Context& ctx, const std::string& name) {
  tidal::v1::GetRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_name(name);
  tidal::v1::App app;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().Get(call.get(), req, &app));
  if (!s.ok()) return s;
  return app;
}

const tidal::v1::Condition* FindCondition(const tidal::v1::AppStatus& s,
                                          const std::string& type) {
  for (const auto& c : s.conditions())
    if (c.type() == type) return &c;
  return nullptr;
}

// Errors a restart of tidald gives while it is down (connection refused, a
// request that times out, or cancelled by a server shutting down: tidalctl
// never cancels its own requests): the wait goes on.
bool Transient(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) ||
         absl::IsCancelled(s);
}

std::string ShortReason(const absl::Status& s) {
  std::string lower = absl::AsciiStrToLower(s.message());
  if (absl::StrContains(lower, "connection refused"))
    return "connection refused";
  if (absl::IsCancelled(s)) return "it is shutting down";
  if (absl::IsDeadlineExceeded(s) || absl::StrContains(lower, "deadline") ||
      absl::StrContains(lower, "timed out"))
    return "no answer in time";
  return std::string(s.message());
}

enum class Outcome { kPending, kDone, kFailed };

Outcome OutcomeOf(const tidal::v1::App& app, int64_t generation) {
  const auto& st = app.status();
  if (st.observed_generation() < generation) return Outcome::kPending;
  const std::string& phase = st.rollout().phase();
  if (phase == "RolledBack" || phase == "Failed") return Outcome::kFailed;
  const auto* prog = FindCondition(st, "Progressing");
  if (phase == "Succeeded" && prog != nullptr && prog->reason() == "Complete" &&
      st.ready_replicas() >= st.desired_replicas())
    return Outcome::kDone;
  return Outcome::kPending;
}

// "R/T ready", or "T/T ready, N stopping" while more than the target are
// still up (instances on their way out are not more than wanted).
std::string ReadyOf(int32_t ready, int32_t target) {
  if (ready <= target) return absl::StrCat(ready, "/", target, " ready");
  return absl::StrCat(target, "/", target, " ready, ", ready - target,
                      " stopping");
}

}  // namespace

std::string ProgressLine(const tidal::v1::App& app) {
  const auto& st = app.status();
  const auto& r = st.rollout();
  std::string line = absl::StrCat(app.metadata().name(), ": ");
  if (st.observed_generation() < app.metadata().generation() ||
      (r.phase().empty() && r.stable_revision() == 0)) {
    // The status is of an earlier generation (or of none yet).
    absl::StrAppend(&line, "generation ", app.metadata().generation(),
                    " waiting for the controller");
    return line;
  }
  if (r.update_revision() != 0) {
    absl::StrAppend(&line, "revision ", r.update_revision(), " ", r.phase(),
                    " step ", r.step(), "/", r.total_steps(), ": new ",
                    ReadyOf(r.update_ready(), r.update_target()), ", revision ",
                    r.stable_revision(), " ",
                    ReadyOf(r.stable_ready(), r.stable_target()));
    if (r.weight() > 0) absl::StrAppend(&line, ", ", r.weight(), "% traffic");
  } else if (r.phase() == "RolledBack" && r.failed_revision() != 0) {
    // Name the revision that rolled back, then the one that serves.
    absl::StrAppend(&line, "revision ", r.failed_revision(),
                    " RolledBack; revision ", r.stable_revision(), " serves: ",
                    ReadyOf(st.ready_replicas(), st.desired_replicas()));
  } else {
    absl::StrAppend(&line, "revision ", r.stable_revision(), " ", r.phase(),
                    ": ", ReadyOf(st.ready_replicas(), st.desired_replicas()));
  }
  if (!r.analysis().empty())
    absl::StrAppend(&line, "; analysis ", r.analysis());
  return line;
}

namespace {

std::string StatusJson(const tidal::v1::App& app, const std::string& result) {
  std::string rollout = spec::MessageToJson(app.status().rollout(), true);
  while (!rollout.empty() && rollout.back() == '\n') rollout.pop_back();
  return absl::StrCat("{\"app\":\"", app.metadata().name(),
                      "\",\"namespace\":\"", app.metadata().namespace_(),
                      "\",\"result\":\"", result,
                      "\",\"generation\":", app.metadata().generation(),
                      ",\"readyReplicas\":", app.status().ready_replicas(),
                      ",\"desiredReplicas\":", app.status().desired_replicas(),
                      ",\"rollout\":", rollout, "}\n");
}

struct SimpleFlags {
  std::string app;
  bool full = false;
  int64_t to_revision = 0;
  int64_t revision = 0;
  std::string output;
};

int DoAction(Context& ctx, const std::string& action, const SimpleFlags& f) {
  tidal::v1::RolloutRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_name(f.app);
  req.set_action(action);
  req.set_full(f.full);
  req.set_to_revision(f.to_revision);
  tidal::v1::App app;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().Rollout(call.get(), req, &app));
  if (!s.ok()) return ctx.FailWrite(s);
  static const std::map<std::string, std::string> done = {
      {"pause", "paused"},      {"resume", "resumed"},
      {"promote", "promoted"},  {"abort", "aborted"},
      {"undo", "rolled back"},  {"retry", "retrying"},
      {"restart", "restarting"}};
  ctx.out() << "app.tidal.dev/" << f.app << " " << done.at(action)
            << (action == "promote" && f.full ? " (full)" : "")
            << InNamespace(ctx.Namespace()) << "\n";
  return kExitOk;
}

absl::StatusOr<std::vector<tidal::v1::Revision>> Revisions(
    Context& ctx, const std::string& app) {
  tidal::v1::ListRevisionsRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_app(app);
  tidal::v1::ListRevisionsResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().ListRevisions(call.get(), req, &resp));
  if (!s.ok()) return s;
  return std::vector<tidal::v1::Revision>(resp.revisions().begin(),
                                          resp.revisions().end());
}

std::string RevisionState(const tidal::v1::App& app,
                          const tidal::v1::Revision& rev) {
  const auto& r = app.status().rollout();
  if (rev.number() == r.update_revision()) return "rolling out";
  if (rev.number() == r.stable_revision()) return "stable";
  // Every revision whose template rolled back (tidald says so); an older
  // tidald only names the latest.
  if (rev.rolled_back() || rev.number() == r.failed_revision())
    return "rolled back";
  return "";
}

int DoHistory(Context& ctx, const SimpleFlags& f, bool as_get) {
  auto app = GetApp(ctx, f.app);
  if (!app.ok()) return ctx.Fail(app.status());
  auto revs = Revisions(ctx, f.app);
  if (!revs.ok()) return ctx.Fail(revs.status());
  if (f.output == "json" || f.output == "yaml") {
    tidal::v1::ListRevisionsResponse resp;
    for (const auto& r : *revs) *resp.add_revisions() = r;
    ctx.out() << (f.output == "json" ? spec::MessageToJson(resp)
                                     : spec::MessageToYaml(resp));
    return kExitOk;
  }
  if (f.revision != 0) {
    for (const auto& r : *revs) {
      if (r.number() != f.revision) continue;
      tidal::v1::App shown;
      shown.set_api_version("tidal.dev/v1");
      shown.set_kind("App");
      *shown.mutable_metadata() = app->metadata();
      shown.mutable_metadata()->clear_resource_version();
      *shown.mutable_spec()->mutable_template_() = r.template_();
      ctx.out() << "revision: " << r.number() << "\n"
                << "templateHash: " << r.template_hash() << "\n"
                << "created: "
                << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                    FromProtoTime(r.created()),
                                    absl::UTCTimeZone())
                << "\n"
                << "changeCause: " << r.change_cause() << "\n"
                << "state: " << RevisionState(*app, r) << "\n"
                << "---\n"
                << spec::AppToYaml(shown);
      return kExitOk;
    }
    return ctx.Error(absl::StrCat("app ", f.app, " has no revision ",
                                  f.revision, " (pruned or never made)"));
  }
  Table t(as_get ? std::vector<std::string>{"REVISION", "TEMPLATE", "STATE",
                                            "AGE", "CHANGE-CAUSE"}
                 : std::vector<std::string>{"REVISION", "CHANGE-CAUSE", "STATE",
                                            "AGE"});
  const absl::Time now = absl::Now();
  for (const auto& r : *revs) {
    std::string cause = r.change_cause().empty() ? "<none>" : r.change_cause();
    if (as_get) {
      t.AddRow({absl::StrCat(r.number()), r.template_hash(),
                RevisionState(*app, r), AgeOf(r.created(), now), cause});
    } else {
      t.AddRow({absl::StrCat(r.number()), cause, RevisionState(*app, r),
                AgeOf(r.created(), now)});
    }
  }
  ctx.out() << t.Render();
  return kExitOk;
}

}  // namespace

int WaitForRollout(Context& ctx, const std::string& name, int64_t generation,
                   absl::Time deadline, bool json) {
  const bool tty = &ctx.out() == &std::cout && isatty(STDOUT_FILENO);
  std::string last;
  tidal::v1::App app;
  bool have = false;
  // While tidald is unreachable (it restarts): back-off between attempts.
  absl::Duration backoff = absl::ZeroDuration();
  while (true) {
    auto got = GetApp(ctx, name);
    if (!got.ok()) {
      if (Transient(got.status()) && absl::Now() < deadline) {
        if (backoff == absl::ZeroDuration()) {
          if (tty && !last.empty()) ctx.out() << "\n";
          ctx.err() << name << ": tidald at " << ctx.server()
                    << " is unreachable (" << ShortReason(got.status())
                    << "); still waiting until the --timeout\n"
                    << std::flush;
          last.clear();
          backoff = absl::Milliseconds(250);
        } else {
          backoff = std::min(backoff * 2, absl::Seconds(5));
        }
        absl::SleepFor(std::min(backoff, deadline - absl::Now()));
        continue;
      }
      if (tty && !last.empty()) ctx.out() << "\n";
      if (Transient(got.status()) && have) break;  // timed out while down
      return ctx.Fail(got.status());
    }
    if (backoff != absl::ZeroDuration()) {
      ctx.err() << name << ": tidald answers again\n" << std::flush;
      backoff = absl::ZeroDuration();
    }
    app = *got;
    have = true;
    Outcome o = OutcomeOf(app, generation);
    std::string line = ProgressLine(app);
    if (!json && line != last) {
      if (tty) {
        ctx.out() << "\r\033[K" << line << std::flush;
      } else {
        ctx.out() << line << "\n" << std::flush;
      }
      last = line;
    }
    if (o != Outcome::kPending) {
      if (tty && !json) ctx.out() << "\n";
      const auto& r = app.status().rollout();
      if (o == Outcome::kDone) {
        if (json) {
          ctx.out() << StatusJson(app, "succeeded");
        } else {
          ctx.out() << "app.tidal.dev/" << name << " revision "
                    << r.stable_revision() << " is rolled out ("
                    << app.status().ready_replicas() << "/"
                    << app.status().desired_replicas() << " ready)\n";
        }
        return kExitOk;
      }
      if (json) {
        ctx.out() << StatusJson(
            app, r.phase() == "RolledBack" ? "rolledBack" : "failed");
      } else {
        ctx.err() << "error: app " << name << ": revision "
                  << (r.failed_revision() != 0   ? r.failed_revision()
                      : r.update_revision() != 0 ? r.update_revision()
                                                 : r.stable_revision())
                  << " "
                  << (r.phase() == "RolledBack" ? "was rolled back" : "failed")
                  << " (" << r.reason() << "): " << r.message() << "\n";
        if (!r.analysis().empty())
          ctx.err() << "  analysis: " << r.analysis() << "\n";
      }
      return kExitFailure;
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  if (tty && !json) ctx.out() << "\n";
  if (json && have) ctx.out() << StatusJson(app, "timeout");
  ctx.err() << "error: timed out after "
            << absl::FormatDuration(ctx.wait_timeout()) << " waiting for app "
            << name
            << " to roll out (raise it with --timeout); the rollout goes on: "
               "see `tidalctl rollout status "
            << name << "`\n";
  return kExitTimeout;
}

int GetRevisions(Context& ctx, const std::vector<std::string>& args,
                 const std::string& output) {
  if (args.size() != 2)
    return ctx.Error("usage: tidalctl get revisions APP", kExitUsage);
  SimpleFlags f;
  f.app = args[1];
  f.output = output;
  return DoHistory(ctx, f, /*as_get=*/true);
}

void AddRolloutCommands(CLI::App& root, Context& ctx) {
  CLI::App* rollout = root.add_subcommand(
      "rollout", "Watch and steer releases (docs/rollouts.md)");
  rollout->require_subcommand(1);

  auto add = [&](const std::string& action, const std::string& help) {
    auto f = std::make_shared<SimpleFlags>();
    CLI::App* c = rollout->add_subcommand(action, help);
    c->add_option("app", f->app, "APP")->required();
    return std::make_pair(c, f);
  };

  {
    auto [c, f] = add("status",
                      "Wait for the app's release and show its progress; exit "
                      "0 rolled out, 1 rolled back or failed, 4 timeout");
    c->add_option("-o,--output", f->output, "json")
        ->check(CLI::IsMember({"json"}));
    c->callback([&ctx, f = f] {
      Run(ctx, [&] {
        auto app = GetApp(ctx, f->app);
        if (!app.ok()) return ctx.Fail(app.status());
        return WaitForRollout(ctx, f->app, app->metadata().generation(),
                              absl::Now() + ctx.wait_timeout(),
                              f->output == "json");
      });
    });
  }
  for (const auto& [action, help] :
       std::vector<std::pair<std::string, std::string>>{
           {"pause", "Hold the release at its current step"},
           {"resume", "Continue a paused release"},
           {"abort", "Stop the release and roll back to the stable revision"},
           {"retry",
            "Release again a template that was rolled back (or a failed step)"},
           {"restart",
            "Replace every instance (a new revision of the same "
            "template), through the rollout strategy"}}) {
    auto [c, f] = add(action, help);
    std::string a = action;
    c->callback(
        [&ctx, f = f, a] { Run(ctx, [&] { return DoAction(ctx, a, *f); }); });
  }
  {
    auto [c, f] = add("promote",
                      "Skip the current pause (or analysis wait); --full: go "
                      "straight to 100%");
    c->add_flag("--full", f->full, "skip every remaining step");
    c->callback([&ctx, f = f] {
      Run(ctx, [&] { return DoAction(ctx, "promote", *f); });
    });
  }
  {
    auto [c, f] = add("undo",
                      "Set the template back to an earlier revision (default: "
                      "the stable one, or the one before it)");
    c->add_option("--to-revision", f->to_revision, "revision number");
    c->callback(
        [&ctx, f = f] { Run(ctx, [&] { return DoAction(ctx, "undo", *f); }); });
  }
  {
    auto [c, f] = add("history", "List revisions with their change cause");
    c->add_option("--revision", f->revision, "show one revision's template");
    c->add_option("-o,--output", f->output, "json")
        ->check(CLI::IsMember({"json", "yaml"}));
    c->callback([&ctx, f = f] {
      Run(ctx, [&] { return DoHistory(ctx, *f, /*as_get=*/false); });
    });
  }
}

}  // namespace tidal::cli
