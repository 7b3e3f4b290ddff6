#include "deployer/control.h"

#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "deployer/deployer.h"
#include "store/keys.h"

namespace tidal::deployer {
namespace {

absl::StatusOr<std::pair<v1::App, int64_t>> GetApp(Store* store,
                                                   const std::string& ns,
                                                   const std::string& name) {
  auto kv = store->Get(keys::App(ns, name));
  if (absl::IsNotFound(kv.status())) {
    return absl::NotFoundError(
        absl::StrCat("app \"", name, "\" not found in namespace \"", ns, "\""));
  }
  if (!kv.ok()) return kv.status();
  v1::App app;
  if (!app.ParseFromString(kv->value))
    return absl::DataLossError(
        absl::StrCat("app ", ns, "/", name, " in the store does not parse"));
  app.mutable_metadata()->set_resource_version(kv->resource_version);
  return std::make_pair(app, kv->resource_version);
}

}  // namespace

DeployerControl::DeployerControl(
    Store* store, Clock* clock,
    std::function<void(const std::string&)> on_change)
    : store_(store),
      clock_(clock),
      on_change_(std::move(on_change)),
      history_(store, clock) {}

absl::Status DeployerControl::ChangeState(const std::string& ns,
                                          const std::string& name,
                                          const v1::RolloutRequest& req) {
  const std::string& action = req.action();
  for (int attempt = 0; attempt < 10; ++attempt) {
    int64_t version = 0;
    auto loaded = LoadRolloutState(store_, ns, name, &version);
    if (!loaded.ok()) return loaded.status();
    v1::RolloutState st = *loaded;
    if (version == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "app ", name, " has not been reconciled yet; try again"));
    }
    const bool in_progress = st.update_revision() != 0;
    if (action == "pause" || action == "resume" || action == "promote" ||
        action == "abort") {
      if (!in_progress) {
        return absl::FailedPreconditionError(
            absl::StrCat("app ", name, " has no rollout in progress (phase ",
                         st.phase(), ", revision ", st.stable_revision(), ")"));
      }
    }
    if (action == "pause") {
      st.set_paused(true);
    } else if (action == "resume") {
      if (!st.paused()) {
        // Nothing `pause` held. A manual step (pause: manual) waits for
        // promote, which is what the user wants here.
        return absl::FailedPreconditionError(
            st.phase() == "Paused"
                ? absl::StrCat("app ", name,
                               " was not paused by `rollout pause`: its "
                               "release waits at a manual step (pause: "
                               "manual); `tidalctl rollout promote ",
                               name, "` goes on to the next step")
                : absl::StrCat("app ", name, " is not paused (phase ",
                               st.phase(), ")"));
      }
      st.set_paused(false);
      // The progress deadline counts again from now.
      *st.mutable_step_started() = ToProtoTime(clock_->Now());
    } else if (action == "promote") {
      if (st.phase() == "Failed") {
        // Nothing would move (the release is held), and a remembered
        // promote would skip the retried step's pause and analysis.
        return absl::FailedPreconditionError(absl::StrCat(
            "app ", name, "'s release failed (", st.reason(),
            "): `tidalctl rollout retry ", name,
            "` tries the step again, `tidalctl rollout abort ", name,
            "` goes back to revision ", st.stable_revision()));
      }
      // Out of a `rollout pause`, as `resume`: the deadline counts again
      // from now (the pause did not run it).
      if (st.paused()) *st.mutable_step_started() = ToProtoTime(clock_->Now());
      st.set_paused(false);
      st.set_promote(true);
      if (req.full()) st.set_promote_full(true);
    } else if (action == "abort") {
      st.set_abort(true);
    } else if (action == "retry") {
      // A failed step (autoRollback off), or an app's first revision that
      // failed (nothing to roll back to): the same template again.
      if (st.phase() == "Failed") {
        st.set_phase("Progressing");
        st.clear_reason();
        // A new attempt: its analysis judges its own requests only (the
        // window starts here), and no promote from before carries over.
        *st.mutable_started() = ToProtoTime(clock_->Now());
        *st.mutable_step_started() = ToProtoTime(clock_->Now());
        st.set_promote(false);
        st.set_promote_full(false);
        st.clear_step_ready();
        st.clear_next_analysis();
        st.set_successes(0);
        st.set_failures(0);
      } else if (!st.failed_hash().empty() && st.phase() == "RolledBack") {
        // Only while the spec still names the template that rolled back
        // (after `rollout undo`, or a spec put back by hand, there is
        // nothing to retry).
        auto got = GetApp(store_, ns, name);
        if (!got.ok()) return got.status();
        if (spec::TemplateHash(got->first.spec().template_()) !=
            st.failed_hash()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "app ", name,
              "'s spec no longer names the template that "
              "rolled back (revision ",
              st.failed_revision(),
              "): nothing to retry; apply it again to release it"));
        }
        st.clear_failed_hash();
      } else {
        return absl::FailedPreconditionError(absl::StrCat(
            "app ", name, " has no failed rollout to retry (phase ", st.phase(),
            ")"));
      }
    }
    std::vector<Op> ops = {
        Op::Put(keys::RolloutKey(ns, name), st.SerializeAsString(), version)};
    if (action == "retry") {
      // The app's status says so in the same transaction, so a `rollout
      // status` right after the retry does not read the old RolledBack or
      // Failed verdict before the controller has run.
      auto got = GetApp(store_, ns, name);
      if (!got.ok()) return got.status();
      auto [app, app_version] = *got;
      auto* rs = app.mutable_status()->mutable_rollout();
      rs->set_phase("Progressing");
      rs->clear_reason();
      rs->set_message("retry requested; waiting for the controller");
      app.mutable_metadata()->set_resource_version(0);
      ops.push_back(
          Op::Put(keys::App(ns, name), app.SerializeAsString(), app_version));
    }
    auto w = store_->Txn(ops);
    if (w.ok()) return absl::OkStatus();
    if (!absl::IsFailedPrecondition(w.status())) return w.status();
  }
  return absl::AbortedError("the rollout state kept changing; try again");
}

absl::Status DeployerControl::ChangeSpec(const std::string& ns,
                                         const std::string& name,
                                         const v1::RolloutRequest& req) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    auto got = GetApp(store_, ns, name);
    if (!got.ok()) return got.status();
    auto [app, version] = *got;
    std::string cause;
    std::optional<Op> revision_op;  // undo: the revision's change cause
    if (req.action() == "undo") {
      int64_t version_unused = 0;
      auto st = LoadRolloutState(store_, ns, name, &version_unused);
      if (!st.ok()) return st.status();
      auto list = history_.List(ns, name);
      if (!list.ok()) return list.status();
      const std::string hash = spec::TemplateHash(app.spec().template_());
      int64_t target = req.to_revision();
      if (target == 0) {
        if (st->stable_revision() != 0 && st->stable_hash() != hash) {
          target = st->stable_revision();
        } else {
          // The newest earlier revision with another template that did not
          // roll back (after `rollout restart` the one before the stable
          // revision may be the build that failed).
          for (const auto& r : *list)
            if (r.number() < st->stable_revision() &&
                r.template_hash() != hash &&
                !RolledBack(*st, r.template_hash()))
              target = r.number();
        }
        if (target == 0)
          return absl::FailedPreconditionError(absl::StrCat(
              "app ", name, " has no earlier revision to undo to"));
      }
      const v1::Revision* found = nullptr;
      for (const auto& r : *list)
        if (r.number() == target) found = &r;
      if (found == nullptr) {
        return absl::NotFoundError(
            absl::StrCat("app ", name, " has no revision ", target,
                         " (see `tidalctl rollout history ", name, "`)"));
      }
      *app.mutable_spec()->mutable_template_() = found->template_();
      cause = absl::StrCat("undo to revision ", target);
      // The template is that revision's again, so no new revision records
      // the change cause: the revision does (kubectl shows the undo on the
      // revision it brings back), keeping what it said before.
      v1::Revision rev = *found;
      std::string before = rev.change_cause();
      if (absl::StartsWith(before, "undo to revision ")) {
        const size_t was = before.find(" (was: ");
        before = was == std::string::npos
                     ? ""
                     : before.substr(was + 7, before.size() - was - 8);
      }
      rev.set_change_cause(
          before.empty() ? cause : absl::StrCat(cause, " (was: ", before, ")"));
      auto rev_kv = store_->Get(RevisionKey(ns, name, target));
      if (!rev_kv.ok()) return rev_kv.status();
      revision_op = Op::Put(RevisionKey(ns, name, target),
                            rev.SerializeAsString(), rev_kv->resource_version);
    } else {  // restart
      cause = "rollout restart";
      // After a rollback the spec still names the build that rolled back,
      // while the stable revision runs: restart what runs (as Argo's
      // restart does), not a re-release of the failed build.
      int64_t version_unused = 0;
      auto st = LoadRolloutState(store_, ns, name, &version_unused);
      if (!st.ok()) return st.status();
      if (st->stable_revision() != 0 &&
          RolledBack(*st, spec::TemplateHash(app.spec().template_()))) {
        auto list = history_.List(ns, name);
        if (!list.ok()) return list.status();
        for (const auto& r : *list) {
          if (r.number() != st->stable_revision()) continue;
          *app.mutable_spec()->mutable_template_() = r.template_();
          cause = absl::StrCat("rollout restart of revision ", r.number(),
                               " (the spec's template had rolled back)");
        }
      }
      auto* tmpl = app.mutable_spec()->mutable_template_();
      tmpl->mutable_labels()->erase(kRestartedAtAnnotation);
      (*tmpl->mutable_annotations())[kRestartedAtAnnotation] = absl::FormatTime(
          "%Y-%m-%dT%H:%M:%SZ", clock_->Now(), absl::UTCTimeZone());
    }
    (*app.mutable_metadata()->mutable_annotations())[kChangeCauseAnnotation] =
        cause;
    app.mutable_metadata()->set_generation(app.metadata().generation() + 1);
    app.mutable_metadata()->set_resource_version(0);
    std::vector<Op> ops = {
        Op::Put(keys::App(ns, name), app.SerializeAsString(), version)};
    if (revision_op) ops.push_back(*std::move(revision_op));
    auto w = store_->Txn(ops);
    if (w.ok()) return absl::OkStatus();
    if (!absl::IsFailedPrecondition(w.status())) return w.status();
  }
  return absl::AbortedError("the app kept changing; try again");
}

absl::StatusOr<v1::App> DeployerControl::Rollout(
    const v1::RolloutRequest& req) {
  const std::string ns =
      req.namespace_().empty() ? "default" : req.namespace_();
  const std::string& name = req.name();
  const std::string& action = req.action();
  if (name.empty()) return absl::InvalidArgumentError("rollout: give an APP");
  auto got = GetApp(store_, ns, name);
  if (!got.ok()) return got.status();
  if (action == "status" || action.empty()) return got->first;
  absl::Status s;
  if (action == "pause" || action == "resume" || action == "promote" ||
      action == "abort" || action == "retry") {
    s = ChangeState(ns, name, req);
  } else if (action == "undo" || action == "restart") {
    s = ChangeSpec(ns, name, req);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "rollout: unknown action \"", action,
        "\" (status, pause, resume, promote, abort, undo, retry, restart)"));
  }
  if (!s.ok()) return s;
  if (on_change_) on_change_(absl::StrCat(ns, "/", name));
  got = GetApp(store_, ns, name);
  if (!got.ok()) return got.status();
  return got->first;
}

absl::StatusOr<v1::ListRevisionsResponse> DeployerControl::ListRevisions(
    const v1::ListRevisionsRequest& req) {
  const std::string ns =
      req.namespace_().empty() ? "default" : req.namespace_();
  auto got = GetApp(store_, ns, req.app());
  if (!got.ok()) return got.status();
  auto list = history_.List(ns, req.app());
  if (!list.ok()) return list.status();
  int64_t version_unused = 0;
  auto st = LoadRolloutState(store_, ns, req.app(), &version_unused);
  if (!st.ok()) return st.status();
  v1::ListRevisionsResponse resp;
  for (auto& r : *list) {
    // Every template that rolled back and has not rolled out since, not
    // only the latest (status.rollout.failedRevision).
    r.set_rolled_back(RolledBack(*st, r.template_hash()) &&
                      r.number() != st->stable_revision() &&
                      r.number() != st->update_revision());
    *resp.add_revisions() = std::move(r);
  }
  return resp;
}

}  // namespace tidal::deployer
