// apply, diff and delete: the commands that take specs (-f).

#include <google/protobuf/util/message_differencer.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "api/grpc_status.h"
#include "api/service.h"
#include "api/spec.h"
#include "cli/cli.h"
#include "cli/diff.h"
#include "cli/output.h"
#include "common/status_macros.h"

namespace tidal::cli {

namespace fs = std::filesystem;

absl::StatusOr<std::vector<Input>> ReadInputs(
    const std::vector<std::string>& paths) {
  std::vector<Input> out;
  auto read_file = [&](const std::string& path) -> absl::Status {
    std::ifstream in(path, std::ios::binary);
    if (!in)
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    out.push_back({path, std::move(text)});
    return absl::OkStatus();
  };
  for (const std::string& p : paths) {
    if (p == "-") {
      std::string text((std::istreambuf_iterator<char>(std::cin)),
                       std::istreambuf_iterator<char>());
      out.push_back({"<stdin>", std::move(text)});
      continue;
    }
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> files;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        std::string ext = entry.path().extension().string();
        if (ext != ".yaml" && ext != ".yml") continue;
        std::error_code link_ec;
        if (entry.is_symlink(link_ec) && !fs::exists(entry.path(), link_ec)) {
          // kubectl: a part of the config that cannot be read is an error,
          // never silently left out.
          return absl::InvalidArgumentError(
              absl::StrCat(entry.path().string(), " is a symbolic link to \"",
                           fs::read_symlink(entry.path(), link_ec).string(),
                           "\", which does not exist"));
        }
        if (entry.is_regular_file()) files.push_back(entry.path().string());
      }
      if (ec)
        return absl::InvalidArgumentError(
            absl::StrCat("cannot list ", p, ": ", ec.message()));
      std::sort(files.begin(), files.end());
      if (files.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("no *.yaml or *.yml files in ", p));
      }
      for (const auto& f : files) {
        if (absl::Status s = read_file(f); !s.ok()) return s;
      }
      continue;
    }
    if (!fs::exists(p, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the path \"", p, "\" does not exist"));
    }
    if (absl::Status s = read_file(p); !s.ok()) return s;
  }
  return out;
}

absl::StatusOr<std::vector<tidal::v1::App>> ParseInputs(
    Context& ctx, const std::vector<Input>& inputs,
    std::vector<tidal::v1::Secret>* secrets) {
  std::vector<tidal::v1::App> apps;
  int errors = 0;
  std::vector<std::string> empty_inputs;  // of several: skipped (as tidald)
  for (const Input& in : inputs) {
    spec::ParseResult r = spec::ParseApps(in.text, in.source, ctx.Namespace());
    if (r.no_documents && inputs.size() > 1) {
      for (const auto& e : r.errors) empty_inputs.push_back(e.ToString());
      continue;
    }
    for (const auto& e : r.errors) {
      ctx.err() << e.ToString() << "\n";
      ++errors;
    }
    if (r.more_errors > 0) {
      ctx.err() << spec::MoreErrors(r.more_errors,
                                    static_cast<int>(r.errors.size()))
                << "\n";
      errors += static_cast<int>(r.more_errors);
    }
    for (auto& p : r.apps) apps.push_back(std::move(p.app));
    for (auto& p : r.secrets) {
      if (secrets == nullptr) {
        ctx.err() << p.source << ":" << p.line
                  << ": kind: Secret is not supported by this command\n";
        ++errors;
        continue;
      }
      secrets->push_back(std::move(p.secret));
    }
  }
  if (errors == 0 && apps.empty() && (secrets == nullptr || secrets->empty())) {
    for (const std::string& e : empty_inputs) {
      ctx.err() << e << "\n";
      ++errors;
    }
  }
  if (errors > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(errors, errors == 1 ? " problem" : " problems",
                     " in the specs; nothing was changed"));
  }
  return apps;
}

namespace {

using google::protobuf::util::MessageDifferencer;

// kubectl's rule: with -n, a document that sets another
// metadata.namespace is an error (exit 2, nothing changed), never applied
// silently elsewhere. Documents without one take -n.
int CheckNamespaces(Context& ctx, const std::vector<Input>& inputs) {
  if (!ctx.NamespaceGiven()) return kExitOk;
  int problems = 0;
  for (const Input& in : inputs) {
    spec::ParseResult r = spec::ParseApps(in.text, in.source, ctx.Namespace());
    auto check = [&](const std::string& kind, const std::string& name,
                     const std::string& ns, int line) {
      if (ns == ctx.Namespace()) return;
      ctx.err() << in.source << ":" << line << ": " << kind << " \"" << name
                << "\" sets metadata.namespace \"" << ns
                << "\", which does not match -n \"" << ctx.Namespace()
                << "\": drop -n or make them agree\n";
      ++problems;
    };
    for (const auto& p : r.apps)
      check("app", p.app.metadata().name(), p.app.metadata().namespace_(),
            p.line);
    for (const auto& p : r.secrets)
      check("secret", p.secret.metadata().name(),
            p.secret.metadata().namespace_(), p.line);
  }
  if (problems == 0) return kExitOk;
  return ctx.Error(
      "the namespace of the files and -n disagree; nothing was "
      "changed",
      kExitUsage);
}

struct ApplyFlags {
  std::vector<std::string> files;
  std::string dry_run = "none";
  std::string message;
  bool wait = false;
  std::string output;
};

// ParseInputs with its errors dropped (the caller decides what to say).
absl::StatusOr<std::vector<tidal::v1::App>> ParseQuietly(
    const std::vector<Input>& inputs, const std::string& ns,
    std::vector<tidal::v1::Secret>* secrets) {
  std::ostringstream quiet;
  Context local(quiet, quiet);
  local.ns = ns;
  return ParseInputs(local, inputs, secrets);
}

// A tidald older than ApplyRequest.files reads none of them and answers
// "nothing to apply": told apart from files that hold no document by
// parsing them here. `dry_run`: nothing could have been changed.
int FailApply(Context& ctx, const absl::Status& s,
              const std::vector<Input>& inputs, bool dry_run) {
  if (absl::IsInvalidArgument(s) &&
      s.message() == "nothing to apply: no App or Secret documents") {
    std::vector<tidal::v1::Secret> secrets;
    auto apps = ParseQuietly(inputs, ctx.Namespace(), &secrets);
    if (!apps.ok()) {
      // What the old tidald could not say: the files' own errors, with
      // their lines (a file without a document among them).
      apps = ParseInputs(ctx, inputs, &secrets);
      return ctx.Error(std::string(apps.status().message()), kExitUsage);
    }
    if (!apps->empty() || !secrets.empty()) {
      return ctx.Error(
          absl::StrCat("tidald at ", ctx.server(),
                       " read none of the documents: it is older than this "
                       "tidalctl (",
                       TIDAL_VERSION,
                       "), which sends files it does not know. Use the "
                       "tidalctl of tidald's version, or upgrade tidald"),
          kExitFailure);
    }
  }
  return dry_run ? ctx.Fail(s) : ctx.FailWrite(s);
}

void AddFiles(const std::vector<Input>& inputs, tidal::v1::ApplyRequest* req) {
  for (const Input& in : inputs) {
    tidal::v1::SourceFile* f = req->add_files();
    f->set_source(in.source);
    f->set_yaml(in.text);
  }
}

absl::StatusOr<tidal::v1::App> GetLive(Context& ctx, const std::string& ns,
                                       const std::string& name) {
  tidal::v1::GetRequest req;
  req.set_namespace_(ns);
  req.set_name(name);
  tidal::v1::App app;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().Get(call.get(), req, &app));
  if (!s.ok()) return s;
  return app;
}

// Local (client) dry run: validate here; compare with the server when it
// answers.
int ClientDryRun(Context& ctx, const std::vector<Input>& inputs,
                 const ApplyFlags& f) {
  std::vector<tidal::v1::Secret> secrets;
  auto apps = ParseInputs(ctx, inputs, &secrets);
  if (!apps.ok())
    return ctx.Error(std::string(apps.status().message()), kExitUsage);
  for (const auto& s : secrets) {
    ctx.out() << "secret/" << s.metadata().name()
              << InNamespace(s.metadata().namespace_()) << " valid (dry run)\n";
  }
  bool reachable = true;
  std::string why_not;  // why the live apps could not be read
  for (tidal::v1::App& app : *apps) {
    if (!f.message.empty()) {
      (*app.mutable_metadata()
            ->mutable_annotations())[TidalService::kChangeCauseAnnotation] =
          f.message;
    }
    std::string action = "created";
    if (reachable) {
      auto live =
          GetLive(ctx, app.metadata().namespace_(), app.metadata().name());
      if (live.ok()) {
        spec::KeepLiveFields(*live, &app);
        action = MessageDifferencer::Equals(DiffView(*live), DiffView(app))
                     ? "unchanged"
                     : "configured";
      } else if (absl::IsUnavailable(live.status()) ||
                 absl::IsDeadlineExceeded(live.status())) {
        reachable = false;
        why_not = absl::IsDeadlineExceeded(live.status())
                      ? "did not answer in time"
                      : "not reachable";
      } else if (!absl::IsNotFound(live.status())) {
        return ctx.Fail(live.status());
      }
    }
    const std::string where = InNamespace(app.metadata().namespace_());
    if (reachable) {
      ctx.out() << AppName(app) << " " << action << where << " (dry run)\n";
    } else {
      ctx.out() << AppName(app) << " valid" << where << " (dry run; tidald at "
                << ctx.server() << " " << why_not << " to compare)\n";
    }
  }
  return kExitOk;
}

int DoApply(Context& ctx, const ApplyFlags& f) {
  auto inputs = ReadInputs(f.files);
  if (!inputs.ok())
    return ctx.Error(std::string(inputs.status().message()), kExitUsage);
  if (int rc = CheckNamespaces(ctx, *inputs); rc != kExitOk) return rc;
  if (f.dry_run == "client") return ClientDryRun(ctx, *inputs, f);

  tidal::v1::ApplyRequest req;
  req.set_dry_run(f.dry_run == "server");
  req.set_change_cause(f.message);
  req.set_default_namespace(ctx.Namespace());
  // Every file's text under its name: tidald validates them all (every
  // error of every file, with its rules and its limits, naming file and
  // line) and applies every document in one transaction, all or nothing.
  AddFiles(*inputs, &req);
  tidal::v1::ApplyResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().Apply(call.get(), req, &resp));
  if (!s.ok()) return FailApply(ctx, s, *inputs, req.dry_run());
  const bool json = f.output == "json";
  for (const auto& r : resp.results()) {
    (json && f.wait ? ctx.err() : ctx.out())
        << (r.kind() == "Secret" ? "secret/" : "app.tidal.dev/") << r.name()
        << " " << r.action() << InNamespace(r.namespace_())
        << (req.dry_run() ? " (server dry run)" : "") << "\n";
  }
  if (!f.wait || req.dry_run()) return kExitOk;
  // --wait: until every applied app's release is fully out (the CI gate).
  const absl::Time deadline = absl::Now() + ctx.wait_timeout();
  int rc = kExitOk;
  for (const auto& r : resp.results()) {
    if (r.kind() == "Secret") continue;
    Context* c = &ctx;
    std::string saved_ns = ctx.ns;
    c->ns = r.namespace_();
    int one = WaitForRollout(ctx, r.name(), r.app().metadata().generation(),
                             deadline, json);
    c->ns = saved_ns;
    rc = std::max(rc, one);
    if (one == kExitTimeout) break;
  }
  return rc;
}

struct DiffFlags {
  std::vector<std::string> files;
};

int DoDiff(Context& ctx, const DiffFlags& f) {
  auto inputs = ReadInputs(f.files);
  if (!inputs.ok())
    return ctx.Error(std::string(inputs.status().message()), kExitUsage);
  if (int rc = CheckNamespaces(ctx, *inputs); rc != kExitOk) return rc;
  std::vector<tidal::v1::Secret> secrets;
  auto apps = ParseInputs(ctx, *inputs, &secrets);
  if (!apps.ok())
    return ctx.Error(std::string(apps.status().message()), kExitUsage);
  // As kubectl diff, tidald's own checks (its limits, quotas) by a server dry
  // run: a file apply would refuse is an error (exit 2), not a difference
  // that lets a CI gate pass. A token that may not apply only reads.
  {
    tidal::v1::ApplyRequest req;
    req.set_dry_run(true);
    req.set_default_namespace(ctx.Namespace());
    AddFiles(*inputs, &req);
    tidal::v1::ApplyResponse resp;
    auto call = ctx.Call();
    absl::Status s = FromGrpc(ctx.Stub().Apply(call.get(), req, &resp));
    if (!s.ok() && !absl::IsPermissionDenied(s))
      return std::max<int>(kExitUsage,
                           FailApply(ctx, s, *inputs, /*dry_run=*/true));
  }
  bool different = false;
  // Secrets: names, labels, type and keys; values are never read back, so
  // a changed value does not show (every value reads <redacted>).
  auto secret_view = [](const tidal::v1::Secret& s) {
    tidal::v1::Secret v = spec::RedactSecret(s);
    tidal::v1::Secret out;
    *out.mutable_metadata()->mutable_labels() = v.metadata().labels();
    *out.mutable_metadata()->mutable_annotations() = v.metadata().annotations();
    out.mutable_metadata()->set_name(v.metadata().name());
    out.mutable_metadata()->set_namespace_(v.metadata().namespace_());
    out.set_type(v.type().empty() ? "Opaque" : v.type());
    for (const auto& k : v.keys()) out.add_keys()->set_name(k.name());
    return spec::SecretToYaml(out);
  };
  for (const tidal::v1::Secret& secret : secrets) {
    const std::string& ns = secret.metadata().namespace_();
    const std::string& name = secret.metadata().name();
    std::string live_yaml;
    auto live = GetSecret(ctx, ns, name);
    if (live.ok()) {
      live_yaml = secret_view(*live);
    } else if (!absl::IsNotFound(live.status())) {
      return std::max<int>(kExitUsage, ctx.Fail(live.status()));
    }
    std::string d = UnifiedDiff(live_yaml, secret_view(secret),
                                absl::StrCat("live/secret/", ns, "/", name),
                                absl::StrCat("desired/secret/", ns, "/", name));
    if (!d.empty()) {
      different = true;
      ctx.out() << d;
    }
  }
  for (const tidal::v1::App& app : *apps) {
    const std::string& ns = app.metadata().namespace_();
    const std::string& name = app.metadata().name();
    std::string live_yaml;
    tidal::v1::App desired = app;
    auto live = GetLive(ctx, ns, name);
    if (live.ok()) {
      live_yaml = spec::AppToYaml(DiffView(*live));
      // What apply would write: replicas set by `scale`, and a restart,
      // stay.
      spec::KeepLiveFields(*live, &desired);
    } else if (!absl::IsNotFound(live.status())) {
      return std::max<int>(kExitUsage, ctx.Fail(live.status()));
    }
    std::string d = UnifiedDiff(live_yaml, spec::AppToYaml(DiffView(desired)),
                                absl::StrCat("live/", ns, "/", name),
                                absl::StrCat("desired/", ns, "/", name));
    if (!d.empty()) {
      different = true;
      ctx.out() << d;
    }
    // The spec may equal the file while another revision runs: the file's
    // template was rolled back. What runs differs from the file.
    const auto& ro = live.ok() ? live->status().rollout()
                               : tidal::v1::RolloutStatus::default_instance();
    if (ro.phase() == "RolledBack" && !ro.failed_hash().empty() &&
        spec::TemplateHash(desired.spec().template_()) == ro.failed_hash()) {
      different = true;
      ctx.out() << "# app " << ns << "/" << name << ": this template (revision "
                << ro.failed_revision() << ") was rolled back (" << ro.reason()
                << "); revision " << ro.stable_revision()
                << " runs. Applying the file again does not release it; "
                   "`tidalctl rollout retry "
                << name << "` does\n";
    }
  }
  return different ? kExitFailure : kExitOk;
}

// What `delete -f` needs of each document, as kubectl: its kind (App or
// Secret, or a List of them), metadata.name and metadata.namespace.
struct Named {
  std::string kind, ns, name;
};
absl::StatusOr<std::vector<Named>> KindsAndNames(
    const std::vector<Input>& inputs, const std::string& default_ns) {
  std::vector<Named> out;
  for (const Input& in : inputs) {
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(in.text);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(in.source, ": ", e.msg));
    }
    std::function<absl::Status(const YAML::Node&)> add =
        [&](const YAML::Node& d) -> absl::Status {
      if (!d.IsDefined() || d.IsNull()) return absl::OkStatus();
      const std::string where = absl::StrCat(in.source, ":", d.Mark().line + 1);
      if (!d.IsMap()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": a document is not a map"));
      }
      // A scalar under `key` of map `n`, else "" (yaml-cpp throws on
      // reading a key that is missing, so IsDefined first).
      auto scalar = [](const YAML::Node& n, const char* key) -> std::string {
        if (!n.IsMap()) return "";
        const YAML::Node v = n[key];
        return v.IsDefined() && v.IsScalar() ? v.Scalar() : "";
      };
      const std::string k = scalar(d, "kind");
      const YAML::Node items = d["items"];
      if (k == "List" && items.IsDefined() && items.IsSequence()) {
        for (const YAML::Node& item : items) RETURN_IF_ERROR(add(item));
        return absl::OkStatus();
      }
      const YAML::Node md = d["metadata"];
      const std::string name = md.IsDefined() ? scalar(md, "name") : "";
      const std::string ns = md.IsDefined() ? scalar(md, "namespace") : "";
      if ((k != "App" && k != "Secret") || name.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": no kind App or Secret with a metadata.name"));
      }
      out.push_back({k, ns.empty() ? default_ns : ns, name});
      return absl::OkStatus();
    };
    for (const YAML::Node& d : docs) RETURN_IF_ERROR(add(d));
  }
  if (out.empty()) return absl::InvalidArgumentError("no documents");
  return out;
}

struct DeleteFlags {
  std::vector<std::string> args;
  std::vector<std::string> files;
  bool wait = false;
  std::string dry_run = "none";
  int64_t grace_period = -1;  // -1: the template's
  bool force = false;
  bool ignore_not_found = false;
};

int DoDelete(Context& ctx, const DeleteFlags& f) {
  // kubectl's rules: a negative grace period is the template's;
  // --grace-period=0 without --force becomes 1; --force alone is 0.
  std::optional<int64_t> grace;
  if (f.grace_period >= 0) grace = f.grace_period;
  if (grace == 0 && !f.force) grace = 1;
  if (!grace.has_value() && f.force) grace = 0;
  if (grace == 0) {
    ctx.err() << "warning: immediate deletion: the instances are killed "
                 "(SIGKILL) at once, without draining or waiting for them to "
                 "finish\n";
  }
  std::vector<std::pair<std::string, std::string>> targets;  // (ns, name)
  std::vector<std::pair<std::string, std::string>> secret_targets;
  if (!f.files.empty()) {
    if (!f.args.empty())
      return ctx.Error("give either -f FILE or `app NAME`, not both",
                       kExitUsage);
    auto inputs = ReadInputs(f.files);
    if (!inputs.ok())
      return ctx.Error(std::string(inputs.status().message()), kExitUsage);
    if (int rc = CheckNamespaces(ctx, *inputs); rc != kExitOk) return rc;
    std::vector<tidal::v1::Secret> secrets;
    auto apps = ParseQuietly(*inputs, ctx.Namespace(), &secrets);
    if (apps.ok()) {
      for (const auto& a : *apps)
        targets.emplace_back(a.metadata().namespace_(), a.metadata().name());
      for (const auto& sec : secrets)
        secret_targets.emplace_back(sec.metadata().namespace_(),
                                    sec.metadata().name());
    } else if (auto named = KindsAndNames(*inputs, ctx.Namespace());
               named.ok()) {
      // As kubectl: a file that no longer validates (a field renamed since)
      // still deletes what it names.
      ctx.err() << "warning: the files do not validate as specs (see `tidalctl "
                   "diff -f`); deleting the apps and secrets they name\n";
      for (const Named& n : *named)
        (n.kind == "Secret" ? secret_targets : targets)
            .emplace_back(n.ns, n.name);
    } else {
      // Not even a kind and a name: the validator's errors say why.
      apps = ParseInputs(ctx, *inputs, &secrets);
      return ctx.Error(std::string(apps.status().message()), kExitUsage);
    }
  } else {
    if (!f.args.empty() && (f.args[0] == "node" || f.args[0] == "nodes")) {
      return DeleteNodes(ctx, f.args, f.dry_run);  // cluster_commands.cc
    }
    if (!f.args.empty() && (f.args[0] == "secret" || f.args[0] == "secrets")) {
      return DeleteSecrets(ctx, f.args, f.dry_run,
                           f.ignore_not_found);  // secret_commands.cc
    }
    if (f.args.empty() || (f.args[0] != "app" && f.args[0] != "apps")) {
      return ctx.Error(
          "usage: tidalctl delete app NAME... | delete -f FILE | delete "
          "secret NAME... | delete node NAME...",
          kExitUsage);
    }
    if (f.args.size() < 2)
      return ctx.Error("delete app: give at least one NAME", kExitUsage);
    for (size_t i = 1; i < f.args.size(); ++i)
      targets.emplace_back(ctx.Namespace(), f.args[i]);
  }
  const bool dry = f.dry_run != "none";
  // The secrets of the files go at once (nothing waits on them).
  for (const auto& [ns, name] : secret_targets) {
    std::string saved_ns = ctx.ns;
    ctx.ns = ns;
    int rc =
        DeleteSecrets(ctx, {"secret", name}, f.dry_run, f.ignore_not_found);
    ctx.ns = saved_ns;
    if (rc != kExitOk) return rc;
  }
  if (f.dry_run == "client") {
    // kubectl's client dry run: nothing is sent but reads; each app must
    // exist (a missing one is the same error a real delete gives).
    for (const auto& [ns, name] : targets) {
      auto live = GetLive(ctx, ns, name);
      if (f.ignore_not_found && absl::IsNotFound(live.status())) continue;
      if (!live.ok()) return ctx.Fail(live.status());
      ctx.out() << "app.tidal.dev \"" << name << "\" deleted" << InNamespace(ns)
                << " (dry run)\n"
                << std::flush;
    }
    return kExitOk;
  }
  for (const auto& [ns, name] : targets) {
    tidal::v1::DeleteRequest req;
    req.set_namespace_(ns);
    req.set_name(name);
    req.set_dry_run(dry);
    if (grace.has_value()) req.set_grace_period_seconds(*grace);
    req.set_force(f.force);
    tidal::v1::DeleteResponse resp;
    auto call = ctx.Call();
    absl::Status s = FromGrpc(ctx.Stub().Delete(call.get(), req, &resp));
    if (f.ignore_not_found && absl::IsNotFound(s)) continue;
    if (!s.ok()) return ctx.FailWrite(s);
    ctx.out() << "app.tidal.dev \"" << name << "\" deleted" << InNamespace(ns)
              << (dry ? " (server dry run)" : "") << "\n"
              << std::flush;
  }
  if (!f.wait || dry) return kExitOk;
  // --wait: until the controller has stopped the instances and removed the
  // apps.
  const absl::Time deadline = absl::Now() + ctx.wait_timeout();
  for (const auto& [ns, name] : targets) {
    while (true) {
      auto live = GetLive(ctx, ns, name);
      if (absl::IsNotFound(live.status())) break;
      if (!live.ok()) return ctx.Fail(live.status());
      if (absl::Now() >= deadline) {
        return ctx.Error(
            absl::StrCat("timed out after ",
                         absl::FormatDuration(ctx.wait_timeout()),
                         " waiting for app \"", name,
                         "\" to be removed (is the controller running?)"),
            kExitTimeout);
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
  return kExitOk;
}

struct EditFlags {
  std::vector<std::string> args;  // app NAME
};

// Runs the user's editor on `path`: $TIDAL_EDITOR, $KUBE_EDITOR, $EDITOR,
// else vi, through the shell (so "code -w" works). The exit code.
int RunEditor(const std::string& path) {
  std::string editor = "vi";
  for (const char* var : {"TIDAL_EDITOR", "KUBE_EDITOR", "EDITOR"}) {
    if (const char* e = std::getenv(var); e != nullptr && *e) {
      editor = e;
      break;
    }
  }
  const std::string script = editor + " \"$1\"";
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", script.c_str(), "sh", path.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The text without comment lines and surrounding blank space.
std::string Significant(const std::string& text) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "#"))
      continue;
    absl::StrAppend(&out, line, "\n");
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

// kubectl edit: the app as apply controls it, in $EDITOR; saved, it is
// validated and applied; invalid, the editor opens again with the errors
// on top; unchanged (or emptied), nothing happens.
int DoEdit(Context& ctx, const EditFlags& f) {
  if (f.args.size() != 2 || (f.args[0] != "app" && f.args[0] != "apps"))
    return ctx.Error("usage: tidalctl edit app NAME", kExitUsage);
  const std::string ns = ctx.Namespace();
  const std::string& name = f.args[1];
  auto live = GetLive(ctx, ns, name);
  if (!live.ok()) return ctx.Fail(live.status());
  const std::string header =
      "# Please edit the app below. Lines beginning with '#' are ignored;\n"
      "# an empty file, or no change, cancels the edit. Saved, it is\n"
      "# validated and applied as `tidalctl apply -f` does.\n#\n";
  const std::string original = spec::AppToYaml(DiffView(*live));
  const char* tmpdir = std::getenv("TMPDIR");
  std::string path = absl::StrCat(tmpdir && *tmpdir ? tmpdir : "/tmp",
                                  "/tidalctl-edit-XXXXXX.yaml");
  int fd = mkstemps(path.data(), 5);
  if (fd < 0)
    return ctx.Error(
        absl::StrCat("cannot create a file for the editor: ", strerror(errno)));
  close(fd);
  std::string text = header + original;
  std::string last;  // what the previous invalid attempt saved
  while (true) {
    {
      std::ofstream out(path, std::ios::trunc);
      out << text;
    }
    if (int rc = RunEditor(path); rc != 0) {
      return ctx.Error(absl::StrCat("the editor exited with ", rc,
                                    "; nothing was changed (the file is ", path,
                                    ")"));
    }
    std::ifstream in(path);
    std::string edited((std::istreambuf_iterator<char>(in)),
                       std::istreambuf_iterator<char>());
    const std::string kept = Significant(edited);
    if (kept.empty() || kept == Significant(original)) {
      unlink(path.c_str());
      ctx.out() << "Edit cancelled, no changes made.\n";
      return kExitOk;
    }
    std::vector<std::string> errors;
    if (kept == last) {
      ctx.err() << "error: edit cancelled, no valid changes were saved; "
                   "your changes are in "
                << path << "\n";
      return kExitFailure;
    }
    spec::ParseResult parsed = spec::ParseApps(edited, path, ns);
    for (const auto& e : parsed.errors) errors.push_back(e.ToString());
    if (errors.empty() &&
        (parsed.apps.size() != 1 || !parsed.secrets.empty())) {
      errors.push_back("the file must hold the one app being edited");
    } else if (errors.empty() &&
               (parsed.apps[0].app.metadata().name() != name ||
                parsed.apps[0].app.metadata().namespace_() != ns)) {
      errors.push_back(absl::StrCat(
          "metadata.name and metadata.namespace cannot change (", ns, "/", name,
          "); apply a new file to make another app"));
    }
    if (errors.empty()) {
      tidal::v1::ApplyRequest req;
      req.set_yaml(edited);
      req.set_source(path);
      req.set_default_namespace(ns);
      tidal::v1::ApplyResponse resp;
      auto call = ctx.Call();
      absl::Status s = FromGrpc(ctx.Stub().Apply(call.get(), req, &resp));
      if (s.ok()) {
        unlink(path.c_str());
        ctx.out() << "app.tidal.dev/" << name << " "
                  << (resp.results_size() > 0 &&
                              resp.results(0).action() == "unchanged"
                          ? "unchanged"
                          : "edited")
                  << InNamespace(ns) << "\n";
        return kExitOk;
      }
      if (!absl::IsInvalidArgument(s)) return ctx.FailWrite(s);
      for (absl::string_view e : absl::StrSplit(s.message(), '\n'))
        errors.emplace_back(e);
    }
    for (const auto& e : errors) ctx.err() << e << "\n";
    last = kept;
    std::string again = header;
    absl::StrAppend(&again, "# The edit could not be applied:\n");
    for (const auto& e : errors) absl::StrAppend(&again, "#   ", e, "\n");
    absl::StrAppend(&again, "#\n");
    text = again + kept + "\n";
  }
}

}  // namespace

void AddApplyCommands(CLI::App& root, Context& ctx) {
  auto apply_flags = std::make_shared<ApplyFlags>();
  CLI::App* apply =
      root.add_subcommand("apply",
                          "Create or update apps from YAML files, directories "
                          "or stdin (all or nothing)");
  apply
      ->add_option(
          "-f,--filename", apply_flags->files,
          "file, directory (every *.yaml/*.yml) or - for stdin; repeatable")
      ->required();
  apply
      ->add_option("--dry-run", apply_flags->dry_run,
                   "none | client (validate here) | server (validate on "
                   "tidald, write nothing)")
      ->check(CLI::IsMember({"none", "client", "server"}))
      ->capture_default_str();
  apply->add_option(
      "--message", apply_flags->message,
      "change cause, recorded in the annotation tidal.dev/change-cause");
  apply->add_flag("--wait", apply_flags->wait,
                  "wait until the release is fully out, up to --timeout: exit "
                  "0 rolled out, 1 rolled back or failed, 4 timeout");
  apply
      ->add_option("-o,--output", apply_flags->output,
                   "json: with --wait, one JSON object per app at the end")
      ->check(CLI::IsMember({"json"}));
  apply->callback([&ctx, apply_flags] {
    Run(ctx, [&] { return DoApply(ctx, *apply_flags); });
  });

  auto diff_flags = std::make_shared<DiffFlags>();
  CLI::App* diff =
      root.add_subcommand("diff",
                          "Show how the live apps differ from the files (exit "
                          "0 same, 1 different, >1 error)");
  diff->add_option("-f,--filename", diff_flags->files,
                   "file, directory or -; repeatable")
      ->required();
  diff->callback([&ctx, diff_flags] {
    Run(ctx, [&] { return DoDiff(ctx, *diff_flags); });
  });

  auto delete_flags = std::make_shared<DeleteFlags>();
  CLI::App* del =
      root.add_subcommand("delete",
                          "Delete apps: `delete app NAME...` or `delete -f "
                          "FILE` (instances stop first); `delete secret "
                          "NAME...`; `delete node NAME` (HA: a node gone for "
                          "good)");
  del->add_option("args", delete_flags->args, "app NAME...");
  del->add_option("-f,--filename", delete_flags->files,
                  "delete the apps named in these files");
  del->add_flag(
      "--wait", delete_flags->wait,
      "wait until the apps are gone (instances stopped), up to --timeout");
  del->add_option("--dry-run", delete_flags->dry_run,
                  "none | server (validated and not written) | client "
                  "(only checks that the apps exist)")
      ->check(CLI::IsMember({"none", "server", "client"}))
      ->capture_default_str();
  del->add_option("--grace-period", delete_flags->grace_period,
                  "seconds each instance gets between SIGTERM and SIGKILL, "
                  "instead of its terminationGracePeriodSeconds (0-3600; "
                  "negative: the template's; 0 needs --force, else it is 1); "
                  "shortens the wait of an app already being deleted")
      ->capture_default_str();
  del->add_flag("--ignore-not-found", delete_flags->ignore_not_found,
                "an app or secret that does not exist is not an error "
                "(nothing is printed for it)");
  del->add_flag("--force", delete_flags->force,
                "with no --grace-period (or 0): kill the instances at once "
                "(SIGKILL, no draining), so the name is free again at once");
  del->callback([&ctx, delete_flags] {
    RunOnResources(ctx, &delete_flags->args,
                   [&] { return DoDelete(ctx, *delete_flags); });
  });

  auto edit_flags = std::make_shared<EditFlags>();
  CLI::App* edit = root.add_subcommand(
      "edit",
      "Edit an app in $EDITOR (TIDAL_EDITOR, KUBE_EDITOR, EDITOR, else vi); "
      "saved, it is validated and applied");
  edit->add_option("args", edit_flags->args, "app NAME")->required();
  edit->callback([&ctx, edit_flags] {
    Run(ctx, [&] { return DoEdit(ctx, *edit_flags); });
  });
}

}  // namespace tidal::cli
