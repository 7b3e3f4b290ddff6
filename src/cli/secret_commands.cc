// Secrets (docs/secrets.md): get secrets, describe secret, delete secret and
// create secret generic. Nothing here ever prints a value: the API answers
// with keys and sizes only, and `create` sends values without echoing them.

#include <CLI/CLI.hpp>
#include <fstream>
#include <iterator>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "api/grpc_status.h"
#include "api/label_selector.h"
#include "api/spec.h"
#include "cli/cli.h"
#include "cli/output.h"

namespace tidal::cli {
namespace {

absl::StatusOr<std::vector<tidal::v1::Secret>> ListSecrets(
    Context& ctx, bool all, const std::string& selector) {
  tidal::v1::ListSecretsRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_all_namespaces(all);
  req.set_label_selector(selector);
  tidal::v1::ListSecretsResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().ListSecrets(call.get(), req, &resp));
  if (!s.ok()) return s;
  return std::vector<tidal::v1::Secret>(resp.secrets().begin(),
                                        resp.secrets().end());
}

}  // namespace

absl::StatusOr<tidal::v1::Secret> GetSecret(Context& ctx, const std::string& ns,
                                            const std::string& name) {
  tidal::v1::GetRequest req;
  req.set_namespace_(ns);
  req.set_name(name);
  tidal::v1::Secret secret;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().GetSecret(call.get(), req, &secret));
  if (!s.ok()) return s;
  return secret;
}

int GetSecrets(Context& ctx, const std::vector<std::string>& args, bool all,
               const std::string& selector, const std::string& output) {
  if (args.size() > 2)
    return ctx.Error("get secrets: give at most one NAME", kExitUsage);
  std::vector<tidal::v1::Secret> secrets;
  if (args.size() == 2) {
    auto s = GetSecret(ctx, ctx.Namespace(), args[1]);
    if (!s.ok()) return ctx.Fail(s.status());
    secrets.push_back(std::move(*s));
  } else {
    auto list = ListSecrets(ctx, all, selector);
    if (!list.ok()) return ctx.Fail(list.status());
    secrets = std::move(*list);
  }
  if (output == "yaml") {
    for (size_t i = 0; i < secrets.size(); ++i) {
      if (i > 0) ctx.out() << "---\n";
      ctx.out() << spec::SecretToYaml(secrets[i]);
    }
    return kExitOk;
  }
  if (output == "json") {
    if (args.size() == 2) {
      ctx.out() << spec::SecretToJson(secrets[0]);
      return kExitOk;
    }
    ctx.out() << "{\n  \"items\": [\n";
    for (size_t i = 0; i < secrets.size(); ++i) {
      std::string j = spec::SecretToJson(secrets[i]);
      while (!j.empty() && j.back() == '\n') j.pop_back();
      ctx.out() << j << (i + 1 < secrets.size() ? ",\n" : "\n");
    }
    ctx.out() << "  ]\n}\n";
    return kExitOk;
  }
  if (output == "name") {
    for (const auto& s : secrets)
      ctx.out() << "secret/" << s.metadata().name() << "\n";
    return kExitOk;
  }
  if (secrets.empty()) {
    ctx.err() << (all ? std::string("No secrets found.")
                      : absl::StrCat("No secrets found in namespace ",
                                     ctx.Namespace(), "."))
              << "\n";
    return kExitOk;
  }
  std::vector<std::string> header = {"NAME", "TYPE", "KEYS", "AGE"};
  if (all) header.insert(header.begin(), "NAMESPACE");
  Table t(header);
  const absl::Time now = absl::Now();
  for (const auto& s : secrets) {
    std::vector<std::string> row = {
        s.metadata().name(), s.type().empty() ? "Opaque" : s.type(),
        absl::StrCat(s.keys_size()),
        AgeOf(s.metadata().creation_timestamp(), now)};
    if (all) row.insert(row.begin(), s.metadata().namespace_());
    t.AddRow(row);
  }
  ctx.out() << t.Render();
  return kExitOk;
}

int DescribeSecret(Context& ctx, const std::string& name) {
  auto s = GetSecret(ctx, ctx.Namespace(), name);
  if (!s.ok()) return ctx.Fail(s.status());
  const auto& md = s->metadata();
  std::string out = absl::StrCat("Name:         ", md.name(), "\n",
                                 "Namespace:    ", md.namespace_(), "\n");
  std::string labels;
  for (const auto& [k, v] : std::map<std::string, std::string>(
           md.labels().begin(), md.labels().end())) {
    absl::StrAppend(&labels, labels.empty() ? "" : ",", k, "=", v);
  }
  absl::StrAppend(
      &out, "Labels:       ", labels.empty() ? "<none>" : labels, "\n",
      "Type:         ", s->type().empty() ? "Opaque" : s->type(), "\n",
      "Age:          ", AgeOf(md.creation_timestamp(), absl::Now()),
      "\n\nData\n====\n");
  for (const auto& k : s->keys()) {
    absl::StrAppend(&out, k.name(), ":  ", k.size(), " bytes\n");
  }
  ctx.out() << out;
  return kExitOk;
}

int DeleteSecrets(Context& ctx, const std::vector<std::string>& args,
                  const std::string& dry_run, bool ignore_not_found) {
  if (args.size() < 2)
    return ctx.Error("delete secret: give at least one NAME", kExitUsage);
  for (size_t i = 1; i < args.size(); ++i) {
    if (dry_run == "client") {
      auto s = GetSecret(ctx, ctx.Namespace(), args[i]);
      if (ignore_not_found && absl::IsNotFound(s.status())) continue;
      if (!s.ok()) return ctx.Fail(s.status());
      ctx.out() << "secret \"" << args[i] << "\" deleted (dry run)\n";
      continue;
    }
    tidal::v1::DeleteRequest req;
    req.set_namespace_(ctx.Namespace());
    req.set_name(args[i]);
    req.set_dry_run(dry_run == "server");
    tidal::v1::Secret resp;
    auto call = ctx.Call();
    absl::Status s = FromGrpc(ctx.Stub().DeleteSecret(call.get(), req, &resp));
    if (ignore_not_found && absl::IsNotFound(s)) continue;
    if (!s.ok()) return ctx.FailWrite(s);
    ctx.out() << "secret \"" << args[i] << "\" deleted"
              << InNamespace(ctx.Namespace())
              << (dry_run == "server" ? " (server dry run)" : "") << "\n"
              << std::flush;
  }
  return kExitOk;
}

namespace {

struct CreateSecretFlags {
  std::vector<std::string> args;  // generic NAME
  std::vector<std::string> literals;
  std::vector<std::string> files;
  std::string type;
  std::string dry_run = "none";
};

int DoCreateSecret(Context& ctx, const CreateSecretFlags& f) {
  if (f.args.size() != 2 || f.args[0] != "generic") {
    return ctx.Error(
        "usage: tidalctl create secret generic NAME [--from-literal=KEY=VALUE] "
        "[--from-file=[KEY=]PATH]",
        kExitUsage);
  }
  tidal::v1::Secret secret;
  secret.set_api_version("tidal.dev/v1");
  secret.set_kind("Secret");
  secret.set_type(f.type);
  secret.mutable_metadata()->set_name(f.args[1]);
  secret.mutable_metadata()->set_namespace_(ctx.Namespace());
  auto* data = secret.mutable_data();
  for (const std::string& l : f.literals) {
    size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      // The argument may be a value: it is not repeated.
      return ctx.Error("--from-literal: must be KEY=VALUE", kExitUsage);
    }
    std::string key = l.substr(0, eq);
    if (data->count(key)) {
      return ctx.Error(absl::StrCat("--from-literal: key \"", key,
                                    "\" given more than once"),
                       kExitUsage);
    }
    (*data)[key] = l.substr(eq + 1);
  }
  for (const std::string& arg : f.files) {
    size_t eq = arg.find('=');
    std::string path = eq == std::string::npos ? arg : arg.substr(eq + 1);
    std::string key = eq == std::string::npos
                          ? path.substr(path.find_last_of('/') + 1)
                          : arg.substr(0, eq);
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return ctx.Error(absl::StrCat("--from-file: cannot read ", path),
                       kExitUsage);
    }
    if (data->count(key)) {
      return ctx.Error(
          absl::StrCat("--from-file: key \"", key, "\" given more than once"),
          kExitUsage);
    }
    (*data)[key] = std::string((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  }
  tidal::v1::ApplyRequest req;
  req.set_default_namespace(ctx.Namespace());
  req.set_dry_run(f.dry_run == "server");
  *req.add_secrets() = std::move(secret);
  if (f.dry_run == "client") {
    std::vector<spec::SpecError> errors = spec::ValidateSecret(req.secrets(0));
    for (const auto& e : errors) ctx.err() << e.ToString() << "\n";
    if (!errors.empty()) return kExitUsage;
    ctx.out() << "secret/" << f.args[1] << " created (dry run)\n";
    return kExitOk;
  }
  tidal::v1::ApplyResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().Apply(call.get(), req, &resp));
  if (!s.ok()) return ctx.FailWrite(s);
  for (const auto& r : resp.results()) {
    ctx.out() << "secret/" << r.name() << " " << r.action()
              << InNamespace(r.namespace_())
              << (req.dry_run() ? " (server dry run)" : "") << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddSecretCommands(CLI::App& root, Context& ctx) {
  CLI::App* create = root.add_subcommand(
      "create", "Create an object from flags: create secret generic NAME");
  create->require_subcommand(1);
  auto f = std::make_shared<CreateSecretFlags>();
  CLI::App* secret = create->add_subcommand(
      "secret",
      "Create or update a Secret: generic NAME --from-literal=KEY=VALUE "
      "--from-file=[KEY=]PATH (values are sent, never printed)");
  secret->add_option("args", f->args, "generic NAME")->required();
  secret->add_option("--from-literal", f->literals,
                     "KEY=VALUE; repeatable (note: the shell's history and "
                     "the process list may keep it; --from-file does not)");
  secret->add_option("--from-file", f->files,
                     "[KEY=]PATH: the file's bytes (KEY: its base name); "
                     "repeatable");
  secret->add_option("--type", f->type, "the secret's type (default Opaque)");
  secret
      ->add_option("--dry-run", f->dry_run,
                   "none | client (validate here) | server (validate on "
                   "tidald, write nothing)")
      ->check(CLI::IsMember({"none", "client", "server"}))
      ->capture_default_str();
  secret->callback(
      [&ctx, f] { Run(ctx, [&] { return DoCreateSecret(ctx, *f); }); });
}

}  // namespace tidal::cli
