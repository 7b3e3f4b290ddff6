// TidalService: apps (Apply, Get, List, Scale, Delete).
#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "api/label_selector.h"
#include "api/limits.h"
#include "api/secret_store.h"
#include "api/service.h"
#include "api/service_internal.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "store/keys.h"

namespace tidal {

using namespace service_internal;  // NOLINT: the service's own helpers

absl::StatusOr<v1::ApplyResponse> TidalService::Apply(
    const v1::ApplyRequest& req, const Admit& admit) {
  const std::string default_ns = NamespaceOr(req.default_namespace());
  const spec::ValidationOptions& vopts = impl_->options.validation;
  std::vector<v1::App> apps;
  // Where each app was written, for errors found after parsing:
  // "file:line: field: " of a field path.
  std::vector<std::function<std::string(const std::string&)>> where;
  // The first vopts.input.max_errors errors; `more_errors` counts the rest.
  std::vector<std::string> errors;
  int64_t more_errors = 0;
  const size_t max_errors =
      static_cast<size_t>(std::max(1, vopts.input.max_errors));
  auto add_error = [&](std::string e) {
    if (errors.size() < max_errors) {
      errors.push_back(std::move(e));
    } else {
      ++more_errors;
    }
  };
  // The errors that fit in spec::kMaxRefusalBytes, then how many more.
  auto refusal = [&] {
    std::string msg;
    int listed = 0;
    for (const std::string& e : errors) {
      if (listed > 0 && msg.size() + 1 + e.size() > spec::kMaxRefusalBytes) {
        break;
      }
      absl::StrAppend(&msg, listed > 0 ? "\n" : "", e);
      ++listed;
    }
    const int64_t more =
        more_errors + static_cast<int64_t>(errors.size()) - listed;
    if (more > 0) absl::StrAppend(&msg, "\n", spec::MoreErrors(more, listed));
    return absl::InvalidArgumentError(msg);
  };
  std::vector<v1::Secret> secrets;  // values in data (NormalizeSecret)
  if (req.apps_size() + req.secrets_size() > vopts.input.max_documents) {
    return absl::InvalidArgumentError(absl::StrCat(
        req.apps_size() + req.secrets_size(),
        " apps and secrets in one apply, more than ", vopts.input.max_documents,
        " (tidald --api-max-documents); apply them in parts"));
  }
  // Files of several without a document (a -f directory's placeholder):
  // skipped, as kubectl does, unless no file has one.
  std::vector<std::string> empty_files;
  auto parse_text = [&](const std::string& text, const std::string& source) {
    spec::ParseResult parsed = spec::ParseApps(
        text, source.empty() ? "<request>" : source, default_ns, vopts);
    if (parsed.no_documents && req.files_size() > 1) {
      for (const auto& e : parsed.errors) empty_files.push_back(e.ToString());
      return;
    }
    for (const auto& e : parsed.errors) add_error(e.ToString());
    more_errors += parsed.more_errors;
    for (auto& p : parsed.secrets) secrets.push_back(std::move(p.secret));
    for (auto& p : parsed.apps) {
      apps.push_back(std::move(p.app));
      where.push_back([p = std::make_shared<spec::ParsedApp>(std::move(p))](
                          const std::string& path) {
        return absl::StrCat(p->source, ":", p->LineOf(path), ": ", path, ": ");
      });
    }
  };
  if (!req.yaml().empty()) parse_text(req.yaml(), req.source());
  for (const v1::SourceFile& file : req.files()) {
    parse_text(file.yaml(), file.source());
  }
  if (apps.empty() && secrets.empty() && errors.empty() &&
      req.apps_size() + req.secrets_size() == 0) {
    for (std::string& e : empty_files) add_error(std::move(e));
  }
  // Several files, or a List's items, count together.
  if (const size_t parsed = apps.size() + secrets.size();
      errors.empty() &&
      parsed > static_cast<size_t>(vopts.input.max_documents)) {
    return absl::InvalidArgumentError(
        absl::StrCat(parsed, " apps and secrets in one apply, more than ",
                     vopts.input.max_documents,
                     " (tidald --api-max-documents); apply them in parts"));
  }
  for (int i = 0; i < req.apps_size(); ++i) {
    v1::App app = req.apps(i);
    if (app.metadata().namespace_().empty())
      app.mutable_metadata()->set_namespace_(default_ns);
    std::string name = app.metadata().name().empty()
                           ? absl::StrCat("apps[", i, "]")
                           : absl::StrCat("app ", app.metadata().namespace_(),
                                          "/", app.metadata().name());
    if (const size_t size = app.ByteSizeLong();
        size > vopts.input.max_document_bytes) {
      add_error(absl::StrCat(name, ": the app is ", size,
                             " bytes encoded, more than the ",
                             vopts.input.max_document_bytes,
                             " a spec may have (tidald --api-max-spec-size)"));
    } else {
      for (const auto& e : spec::ValidateApp(app, vopts)) {
        add_error(absl::StrCat(name, ": ", e.ToString()));
      }
    }
    apps.push_back(std::move(app));
    where.push_back([name](const std::string& path) {
      return absl::StrCat(name, ": ", path, ": ");
    });
  }
  for (int i = 0; i < req.secrets_size(); ++i) {
    v1::Secret secret = req.secrets(i);
    auto* md = secret.mutable_metadata();
    if (md->namespace_().empty()) md->set_namespace_(default_ns);
    if (secret.api_version().empty()) secret.set_api_version("tidal.dev/v1");
    if (secret.kind().empty()) secret.set_kind("Secret");
    std::string name =
        md->name().empty()
            ? absl::StrCat("secrets[", i, "]")
            : absl::StrCat("secret ", md->namespace_(), "/", md->name());
    for (const auto& e : spec::ValidateSecret(secret)) {
      add_error(absl::StrCat(name, ": ", e.ToString()));
    }
    spec::NormalizeSecret(&secret);
    secrets.push_back(std::move(secret));
  }
  if (req.change_cause().find('\0') != std::string::npos ||
      req.change_cause().size() > 64 * 1024) {
    add_error(
        "--message (change cause): must be at most 65536 bytes, without NUL "
        "bytes");
  }
  if (errors.empty()) {
    std::set<std::string> seen;
    for (const auto& app : apps) {
      std::string key =
          keys::App(app.metadata().namespace_(), app.metadata().name());
      if (!seen.insert(key).second) {
        add_error(absl::StrCat("app \"", app.metadata().name(),
                               "\" in namespace \"",
                               app.metadata().namespace_(),
                               "\" appears more than once in this apply"));
      }
    }
  }
  if (errors.empty()) {
    std::set<std::string> seen;
    for (const auto& secret : secrets) {
      const auto& md = secret.metadata();
      if (!seen.insert(keys::Secret(md.namespace_(), md.name())).second) {
        add_error(absl::StrCat("secret \"", md.name(), "\" in namespace \"",
                               md.namespace_(),
                               "\" appears more than once in this "
                               "apply"));
      }
    }
  }
  if (!errors.empty()) return refusal();
  if (apps.empty() && secrets.empty())
    return absl::InvalidArgumentError(
        "nothing to apply: no App or Secret documents");
  if (admit) {
    for (const v1::App& app : apps) {
      RETURN_IF_ERROR(
          admit("apps", app.metadata().namespace_(), app.metadata().name()));
    }
    for (const v1::Secret& secret : secrets) {
      RETURN_IF_ERROR(admit("secrets", secret.metadata().namespace_(),
                            secret.metadata().name()));
    }
  }
  if (!secrets.empty() && impl_->options.secret_box == nullptr)
    return absl::FailedPreconditionError(
        "this tidald cannot store secrets: it has no secrets key "
        "(--secrets-key-file)");

  std::optional<absl::MutexLock> quota_lock;
  if (impl_->options.max_instances_per_namespace > 0)
    quota_lock.emplace(&impl_->quota_mu);
  absl::Status last;
  for (int attempt = 0; attempt < std::max(1, impl_->options.apply_attempts);
       ++attempt) {
    ASSIGN_OR_RETURN(std::vector<std::string> over,
                     impl_->OverNamespaceLimit(apps));
    for (size_t i = 0; i < over.size(); ++i) {
      if (over[i].empty()) continue;
      add_error(absl::StrCat(where[i](spec::MaxInstancesField(apps[i].spec())),
                             over[i]));
    }
    if (!errors.empty()) return refusal();
    v1::ApplyResponse resp;
    std::vector<Op> ops;
    std::vector<int> written;  // result index of each op
    const absl::Time now = impl_->clock->Now();
    for (const v1::App& in : apps) {
      const std::string& ns = in.metadata().namespace_();
      const std::string& name = in.metadata().name();
      const std::string key = keys::App(ns, name);
      v1::App out;
      std::string action;
      bool rewrite = false;  // written although "unchanged"
      int64_t expected = 0;
      auto cur = impl_->store->Get(key);
      if (cur.ok()) {
        ASSIGN_OR_RETURN(v1::App existing, DecodeApp(*cur));
        if (existing.metadata().has_deletion_timestamp()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "app \"", name, "\" in namespace \"", ns,
              "\" is being deleted; apply it again once it is gone"));
        }
        expected = cur->resource_version;
        out = existing;
        *out.mutable_spec() = in.spec();
        *out.mutable_metadata()->mutable_labels() = in.metadata().labels();
        *out.mutable_metadata()->mutable_annotations() =
            in.metadata().annotations();
        // A replica count set by `tidalctl scale` stays until the file
        // sets the replica fields to something else, and so does a
        // restart's annotation (kubectl's merge).
        spec::KeepLiveFields(existing, &out);
        if (!req.change_cause().empty()) {
          (*out.mutable_metadata()
                ->mutable_annotations())[kChangeCauseAnnotation] =
              req.change_cause();
        }
        // Only the bookkeeping of who owns the replica fields changed (the
        // file now says what runs, so it owns them again): written, but
        // nothing the user declared changed.
        v1::App a = existing, b = out;
        a.mutable_metadata()->mutable_annotations()->erase(
            spec::kAppliedReplicasAnnotation);
        b.mutable_metadata()->mutable_annotations()->erase(
            spec::kAppliedReplicasAnnotation);
        if (SameMetaAndSpec(existing, out)) {
          action = "unchanged";
        } else if (SameMetaAndSpec(a, b)) {
          action = "unchanged";
          rewrite = true;
        } else {
          action = "configured";
          out.mutable_metadata()->set_generation(
              existing.metadata().generation() + 1);
        }
      } else if (absl::IsNotFound(cur.status())) {
        action = "created";
        out = in;
        out.clear_status();
        auto* md = out.mutable_metadata();
        md->set_uid(impl_->NewUid());
        md->set_generation(1);
        md->set_resource_version(0);
        *md->mutable_creation_timestamp() = ToProtoTime(now);
        md->clear_deletion_timestamp();
        md->clear_deletion_grace_period_seconds();
        md->mutable_annotations()->erase(spec::kAppliedReplicasAnnotation);
        if (!req.change_cause().empty()) {
          (*md->mutable_annotations())[kChangeCauseAnnotation] =
              req.change_cause();
        }
      } else {
        return cur.status();
      }
      if (out.api_version().empty()) out.set_api_version("tidal.dev/v1");
      if (out.kind().empty()) out.set_kind("App");
      v1::ApplyResult* r = resp.add_results();
      r->set_namespace_(ns);
      r->set_name(name);
      r->set_action(action);
      if (action != "unchanged" || rewrite) {
        ops.push_back(Op::Put(key, EncodeApp(out), expected));
        written.push_back(resp.results_size() - 1);
      }
      *r->mutable_app() = std::move(out);
    }
    for (const v1::Secret& in : secrets) {
      ASSIGN_OR_RETURN(Impl::SecretWrite w, impl_->PrepareSecret(in, now));
      v1::ApplyResult* r = resp.add_results();
      r->set_kind("Secret");
      r->set_namespace_(in.metadata().namespace_());
      r->set_name(in.metadata().name());
      r->set_action(w.action);
      *r->mutable_secret() = std::move(w.shown);
      if (w.action != "unchanged") {
        ops.push_back(std::move(w.op));
        written.push_back(resp.results_size() - 1);
      }
    }
    if (req.dry_run() || ops.empty()) return resp;
    auto rev = impl_->store->Txn(ops);
    if (rev.ok()) {
      for (int i : written) {
        v1::ApplyResult* r = resp.mutable_results(i);
        (r->kind() == "Secret" ? r->mutable_secret()->mutable_metadata()
                               : r->mutable_app()->mutable_metadata())
            ->set_resource_version(*rev);
      }
      for (const auto& r : resp.results()) {
        if (r.kind() == "Secret") {
          // Names and key counts only, never a value.
          impl_->log->info("apply secret={}/{} action={} keys={}",
                           r.namespace_(), r.name(), r.action(),
                           r.secret().keys_size());
          continue;
        }
        impl_->log->info("apply app={}/{} action={} generation={}",
                         r.namespace_(), r.name(), r.action(),
                         r.app().metadata().generation());
      }
      return resp;
    }
    if (!absl::IsFailedPrecondition(rev.status())) return rev.status();
    last = rev.status();
    impl_->log->debug("apply conflict (attempt {}): {}", attempt + 1,
                      last.ToString());
  }
  return absl::AbortedError(absl::StrCat(
      "apply kept conflicting with concurrent writers: ", last.message()));
}

absl::StatusOr<TidalService::Impl::SecretWrite>
TidalService::Impl::PrepareSecret(const v1::Secret& in, absl::Time now) {
  const std::string& ns = in.metadata().namespace_();
  const std::string& name = in.metadata().name();
  const std::string key = keys::Secret(ns, name);
  SecretWrite w;
  v1::Secret out;
  int64_t expected = 0;
  auto cur = store->Get(key);
  if (cur.ok()) {
    expected = cur->resource_version;
    absl::StatusOr<v1::Secret> existing =
        secrets::Unseal(*options.secret_box, key, cur->value);
    if (!existing.ok()) {
      // Sealed with another key or damaged: the apply replaces it.
      log->warn("apply secret={}/{}: the stored secret is replaced: {}", ns,
                name, existing.status().ToString());
      ASSIGN_OR_RETURN(existing, secrets::Redacted(*cur));
      w.action = "configured";  // never "unchanged"
    }
    out = *existing;
    out.set_type(in.type());
    *out.mutable_data() = in.data();
    *out.mutable_metadata()->mutable_labels() = in.metadata().labels();
    *out.mutable_metadata()->mutable_annotations() =
        in.metadata().annotations();
    spec::NormalizeSecret(&out);
    const bool same =
        w.action.empty() &&
        (existing->type().empty() ? "Opaque" : existing->type()) ==
            (in.type().empty() ? "Opaque" : in.type()) &&
        ToStdMap(existing->data()) == ToStdMap(in.data()) &&
        ToStdMap(existing->metadata().labels()) ==
            ToStdMap(in.metadata().labels()) &&
        ToStdMap(existing->metadata().annotations()) ==
            ToStdMap(in.metadata().annotations());
    w.action = same ? "unchanged" : "configured";
    if (!same) {
      out.mutable_metadata()->set_generation(existing->metadata().generation() +
                                             1);
    }
  } else if (absl::IsNotFound(cur.status())) {
    w.action = "created";
    out = in;
    auto* md = out.mutable_metadata();
    md->set_uid(NewUid());
    md->set_generation(1);
    md->set_resource_version(0);
    *md->mutable_creation_timestamp() = ToProtoTime(now);
    md->clear_deletion_timestamp();
    md->clear_deletion_grace_period_seconds();
  } else {
    return cur.status();
  }
  out.set_api_version("tidal.dev/v1");
  out.set_kind("Secret");
  if (out.type().empty()) out.set_type("Opaque");
  if (w.action != "unchanged") {
    ASSIGN_OR_RETURN(std::string sealed,
                     secrets::Seal(*options.secret_box, key, out));
    w.op = Op::Put(key, std::move(sealed), expected);
  }
  w.shown = spec::RedactSecret(std::move(out));
  if (cur.ok()) w.shown.mutable_metadata()->set_resource_version(expected);
  return w;
}

absl::StatusOr<v1::App> TidalService::Get(const v1::GetRequest& req) {
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.name().empty())
    return absl::InvalidArgumentError("app name is required");
  auto kv = impl_->store->Get(keys::App(ns, req.name()));
  if (absl::IsNotFound(kv.status())) return AppNotFound(ns, req.name());
  if (!kv.ok()) return kv.status();
  return DecodeApp(*kv);
}

absl::StatusOr<v1::ListResponse> TidalService::List(
    const v1::ListRequest& req) {
  ASSIGN_OR_RETURN(LabelSelector sel,
                   LabelSelector::Parse(req.label_selector()));
  std::string prefix = req.all_namespaces()
                           ? keys::AppPrefix()
                           : keys::AppPrefix(NamespaceOr(req.namespace_()));
  if (req.limit() < 0)
    return absl::InvalidArgumentError("limit must not be negative");
  if (req.limit() == 0 && !req.continue_().empty())
    return absl::InvalidArgumentError("continue needs a limit");
  v1::ListResponse resp;
  // Adds the app stored in `kv` when the selector takes it.
  auto add = [&](const KeyValue& kv) {
    v1::App app = DecodeOrDamaged(kv, *impl_->log);
    if (sel.Matches(ToStdMap(app.metadata().labels())))
      *resp.add_apps() = std::move(app);
  };
  if (req.limit() == 0) {
    ASSIGN_OR_RETURN(ListResult list, impl_->store->List(prefix));
    resp.set_resource_version(list.resource_version);
    for (const KeyValue& kv : list.items) add(kv);
    return resp;
  }
  // A page: the token is the store key of the last app the page before
  // looked at (web-safe base64), so the next page starts after it.
  std::string cursor;
  if (!req.continue_().empty() &&
      (!absl::WebSafeBase64Unescape(req.continue_(), &cursor) ||
       !absl::StartsWith(cursor, prefix))) {
    return absl::InvalidArgumentError(
        "continue is not a token of this list (pass the continue of the "
        "page before, with the same namespace)");
  }
  // Reads chunks until the page is full or the prefix is exhausted (a
  // selector may leave apps out). An app found after the page is full tells
  // that there are more.
  bool more = false;
  while (true) {
    const int64_t ask =
        std::max<int64_t>(req.limit() - resp.apps_size(), 64) + 1;
    ASSIGN_OR_RETURN(ListResult chunk,
                     impl_->store->ListAfter(prefix, cursor, ask));
    if (resp.resource_version() == 0)
      resp.set_resource_version(chunk.resource_version);
    for (const KeyValue& kv : chunk.items) {
      if (resp.apps_size() >= req.limit()) {
        more = true;
        break;
      }
      cursor = kv.key;
      add(kv);
    }
    if (more || static_cast<int64_t>(chunk.items.size()) < ask) break;
  }
  if (more) resp.set_continue_(absl::WebSafeBase64Escape(cursor));
  return resp;
}

absl::StatusOr<v1::App> TidalService::Scale(const v1::ScaleRequest& req) {
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.name().empty())
    return absl::InvalidArgumentError("app name is required");
  if (!req.has_replicas() && !req.has_min_replicas() &&
      !req.has_max_replicas()) {
    return absl::InvalidArgumentError("scale needs --replicas, --min or --max");
  }
  std::optional<absl::MutexLock> quota_lock;
  if (impl_->options.max_instances_per_namespace > 0)
    quota_lock.emplace(&impl_->quota_mu);
  ASSIGN_OR_RETURN(
      v1::App app,
      impl_->UpdateApp(
          ns, req.name(), "scale", [&](v1::App* app) -> absl::StatusOr<bool> {
            spec::MarkScaled(app);
            auto* spec = app->mutable_spec();
            if (req.has_replicas()) spec->set_replicas(req.replicas());
            if (req.has_min_replicas() || req.has_max_replicas()) {
              // Scaling bounds replace a fixed replica count.
              spec->clear_replicas();
              if (req.has_min_replicas())
                spec->mutable_scaling()->set_min_replicas(req.min_replicas());
              if (req.has_max_replicas())
                spec->mutable_scaling()->set_max_replicas(req.max_replicas());
            }
            std::vector<spec::SpecError> errors =
                spec::ValidateApp(*app, impl_->options.validation);
            ASSIGN_OR_RETURN(std::vector<std::string> over,
                             impl_->OverNamespaceLimit({*app}));
            if (!over[0].empty()) {
              errors.push_back(
                  {"", 0, 0, spec::MaxInstancesField(app->spec()), over[0]});
            }
            if (!errors.empty()) {
              std::string msg;
              for (const auto& e : errors)
                absl::StrAppend(&msg, msg.empty() ? "" : "\n", e.ToString());
              return absl::InvalidArgumentError(msg);
            }
            app->mutable_metadata()->set_generation(
                app->metadata().generation() + 1);
            return true;
          }));
  impl_->log->info("scale app={}/{}: {}", ns, req.name(),
                   req.ShortDebugString());
  return app;
}

absl::StatusOr<v1::DeleteResponse> TidalService::Delete(
    const v1::DeleteRequest& req) {
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.name().empty())
    return absl::InvalidArgumentError("app name is required");
  // kubectl's rules: --force alone is a grace period of 0, and 0 needs
  // --force.
  std::optional<int64_t> grace;
  if (req.has_grace_period_seconds()) {
    grace = req.grace_period_seconds();
    if (*grace < 0 || *grace > spec::limits::kMaxTerminationGracePeriodSeconds)
      return absl::InvalidArgumentError(
          absl::StrCat("grace period: must be between 0 and ",
                       spec::limits::kMaxTerminationGracePeriodSeconds,
                       " seconds, got ", *grace));
    if (*grace == 0 && !req.force())
      return absl::InvalidArgumentError(
          "grace period 0 (kill at once) needs force (tidalctl delete "
          "--grace-period=0 --force)");
  } else if (req.force()) {
    grace = 0;
  }
  bool marked_now = false, shortened = false;
  v1::DeleteResponse resp;
  auto damaged = impl_->RemoveDamagedApp(ns, req.name(), req.dry_run());
  if (!damaged.ok() || damaged->has_value()) {
    RETURN_IF_ERROR(damaged.status());
    *resp.mutable_app() = **damaged;
    return resp;
  }
  ASSIGN_OR_RETURN(
      *resp.mutable_app(),
      impl_->UpdateApp(
          ns, req.name(), "delete", [&](v1::App* app) -> absl::StatusOr<bool> {
            marked_now = shortened = false;
            auto* md = app->mutable_metadata();
            if (md->has_deletion_timestamp()) {
              // Already being deleted: a shorter grace period cuts the
              // wait of the instances still stopping; a longer one is
              // ignored.
              const auto& t = app->spec().template_();
              int64_t current = md->has_deletion_grace_period_seconds()
                                    ? md->deletion_grace_period_seconds()
                                : t.has_termination_grace_period_seconds()
                                    ? t.termination_grace_period_seconds()
                                    : 30;
              if (!grace.has_value() || *grace >= current) return false;
              md->set_deletion_grace_period_seconds(*grace);
              shortened = !req.dry_run();
              return shortened;
            }
            *md->mutable_deletion_timestamp() =
                ToProtoTime(impl_->clock->Now());
            if (grace.has_value())
              md->set_deletion_grace_period_seconds(*grace);
            marked_now = !req.dry_run();
            return marked_now;
          }));
  if (marked_now) {
    impl_->log->info(
        "delete app={}/{}: marked for deletion{}", ns, req.name(),
        grace.has_value() ? absl::StrCat(" (grace period ", *grace, "s)") : "");
  } else if (shortened) {
    impl_->log->info("delete app={}/{}: grace period shortened to {}s", ns,
                     req.name(), *grace);
  }
  return resp;
}

}  // namespace tidal
