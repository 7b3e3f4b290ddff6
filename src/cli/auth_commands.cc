// auth create-token | list-tokens | revoke | whoami | can-i, and config
// view | get-contexts | current-context | use-context | set-context |
// delete-context (docs/auth.md).

#include <CLI/CLI.hpp>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "api/grpc_status.h"
#include "cli/cli.h"
#include "cli/config_file.h"
#include "cli/output.h"
#include "common/proto_time.h"
#include "common/units.h"

namespace tidal::cli {
namespace {

std::string Bindings(
    const google::protobuf::RepeatedPtrField<v1::RoleBinding>& bindings) {
  return absl::StrJoin(bindings, ",",
                       [](std::string* out, const v1::RoleBinding& b) {
                         absl::StrAppend(out, b.role(), "@", b.namespace_());
                       });
}

std::string Expires(const google::protobuf::Timestamp& t, absl::Time now) {
  if (t.seconds() == 0 && t.nanos() == 0) return "never";
  const absl::Duration left = FromProtoTime(t) - now;
  if (left <= absl::ZeroDuration()) return "expired";
  // Up to the second: a token made for 90d reads "in 90d" right after, not
  // "in 89d" for the milliseconds the answer took.
  return absl::StrCat("in ", FormatAge(absl::Ceil(left, absl::Seconds(1))));
}

int PrintMessage(Context& ctx, const google::protobuf::Message& m,
                 const std::string& output) {
  if (output == "json") {
    ctx.out() << ResponseJson(m);
    return kExitOk;
  }
  if (output == "yaml") {
    ctx.out() << ResponseYaml(m);
    return kExitOk;
  }
  return -1;
}

struct CreateFlags {
  std::string name;
  std::string role;
  std::string ttl;
  bool all_namespaces = false;
  std::string output;
};

int CreateToken(Context& ctx, const CreateFlags& f) {
  v1::CreateTokenRequest req;
  req.set_name(f.name);
  req.set_namespace_(f.all_namespaces ? "*" : ctx.Namespace());
  req.set_role(f.role);
  if (!f.ttl.empty()) {
    // Days too ("30d"), which a token's life is usually counted in.
    int64_t days = 0;
    absl::StatusOr<int64_t> ms =
        absl::EndsWith(f.ttl, "d") &&
                absl::SimpleAtoi(f.ttl.substr(0, f.ttl.size() - 1), &days)
            ? absl::StatusOr<int64_t>(days * 86400000)
            : ParseDurationMs(f.ttl);
    if (!ms.ok() || *ms <= 0) {
      return ctx.Error(absl::StrCat("--ttl: ", ms.ok() ? "must be positive"
                                                       : ms.status().message()),
                       kExitUsage);
    }
    req.set_ttl_seconds(std::max<int64_t>(1, *ms / 1000));
  }
  v1::CreateTokenResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().CreateToken(call.get(), req, &resp));
  if (!s.ok()) return ctx.FailWrite(s);
  if (PrintMessage(ctx, resp, f.output) == kExitOk) return kExitOk;
  // The token alone on stdout (for $(...)); the rest on stderr.
  ctx.out() << resp.token() << "\n";
  ctx.err() << "token \"" << resp.info().name() << "\" created ("
            << Bindings(resp.info().bindings()) << ", expires "
            << Expires(resp.info().expires(), absl::Now())
            << "); it is shown only this once\n";
  return kExitOk;
}

int ListTokens(Context& ctx, bool all, const std::string& output) {
  v1::ListTokensRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_all_namespaces(all);
  v1::ListTokensResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().ListTokens(call.get(), req, &resp));
  if (!s.ok()) return ctx.Fail(s);
  if (PrintMessage(ctx, resp, output) == kExitOk) return kExitOk;
  if (resp.tokens().empty()) {
    ctx.err() << "No tokens found"
              << (all ? ""
                      : absl::StrCat(" in ", ctx.Namespace(), " namespace"))
              << ".\n";
    return kExitOk;
  }
  const absl::Time now = absl::Now();
  Table t({"NAME", "ID", "ROLES", "EXPIRES", "AGE", "CREATED-BY"});
  for (const auto& tok : resp.tokens()) {
    t.AddRow({tok.name(), tok.id(), Bindings(tok.bindings()),
              Expires(tok.expires(), now), AgeOf(tok.created(), now),
              tok.created_by()});
  }
  ctx.out() << t.Render();
  return kExitOk;
}

int Revoke(Context& ctx, const std::vector<std::string>& names) {
  int rc = kExitOk;
  for (const auto& name : names) {
    v1::RevokeTokenRequest req;
    req.set_name(name);
    v1::RevokeTokenResponse resp;
    auto call = ctx.Call();
    absl::Status s = FromGrpc(ctx.Stub().RevokeToken(call.get(), req, &resp));
    if (!s.ok()) {
      rc = std::max(rc, ctx.FailWrite(s));
      continue;
    }
    ctx.out() << "token \"" << resp.info().name() << "\" revoked\n";
  }
  return rc;
}

int WhoAmI(Context& ctx, const std::string& output) {
  v1::WhoAmIResponse resp;
  auto call = ctx.Call();
  absl::Status s =
      FromGrpc(ctx.Stub().WhoAmI(call.get(), v1::WhoAmIRequest(), &resp));
  if (!s.ok()) return ctx.Fail(s);
  if (PrintMessage(ctx, resp, output) == kExitOk) return kExitOk;
  Table t({"NAME", "ID", "ROLES", "EXPIRES", "AUTH"});
  t.AddRow({resp.name(), resp.token_id().empty() ? "-" : resp.token_id(),
            resp.bindings().empty() ? "-" : Bindings(resp.bindings()),
            Expires(resp.expires(), absl::Now()), resp.auth_mode()});
  ctx.out() << t.Render();
  return kExitOk;
}

// kubectl's can-i: "yes" and exit 0, or "no" (with the reason on stderr)
// and exit 1.
int CanI(Context& ctx, const std::string& verb, const std::string& resource) {
  v1::CanIRequest req;
  req.set_verb(verb);
  req.set_resource(resource);
  req.set_namespace_(ctx.Namespace());
  v1::CanIResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().CanI(call.get(), req, &resp));
  if (!s.ok()) return ctx.Fail(s);
  if (resp.allowed()) {
    ctx.out() << "yes\n";
    return kExitOk;
  }
  ctx.out() << "no\n";
  ctx.err() << resp.reason() << "\n";
  return kExitFailure;
}

// config: local, no server needed.
int ConfigRun(Context& ctx, const std::function<int(ClientConfig&)>& body,
              bool save) {
  auto config = LoadClientConfig(ConfigPath());
  if (!config.ok())
    return ctx.Error(std::string(config.status().message()), kExitUsage);
  int rc = body(*config);
  if (rc == kExitOk && save) {
    absl::Status s = SaveClientConfig(ConfigPath(), *config);
    if (!s.ok()) return ctx.Error(std::string(s.message()));
  }
  return rc;
}

}  // namespace

void AddAuthCommands(CLI::App& root, Context& ctx) {
  CLI::App* a = root.add_subcommand(
      "auth", "Tokens and what the caller may do (docs/auth.md)");
  a->require_subcommand(1);

  auto cf = std::make_shared<CreateFlags>();
  CLI::App* create = a->add_subcommand(
      "create-token",
      "Create a token with a role in a namespace (-n) or every namespace "
      "(-A); it is printed once");
  create->add_option("NAME", cf->name, "the token's name (unique)")->required();
  create->add_option("--role", cf->role, "viewer, developer or admin")
      ->required()
      ->check(CLI::IsMember({"viewer", "developer", "admin"}));
  create->add_option("--ttl", cf->ttl,
                     "expire after this long (30d, 12h; default never)");
  create->add_flag("-A,--all-namespaces", cf->all_namespaces,
                   "the role in every namespace (cluster-wide)");
  create->add_option("-o,--output", cf->output, "json|yaml")
      ->check(CLI::IsMember({"json", "yaml"}));
  create->callback(
      [&ctx, cf] { Run(ctx, [&] { return CreateToken(ctx, *cf); }); });

  auto list_all = std::make_shared<bool>(false);
  auto list_out = std::make_shared<std::string>();
  CLI::App* list = a->add_subcommand(
      "list-tokens",
      "List the tokens of a namespace (-n) or all you administer (-A)");
  list->add_flag("-A,--all-namespaces", *list_all, "every namespace");
  list->add_option("-o,--output", *list_out, "json|yaml")
      ->check(CLI::IsMember({"json", "yaml"}));
  list->callback([&ctx, list_all, list_out] {
    Run(ctx, [&] { return ListTokens(ctx, *list_all, *list_out); });
  });

  auto names = std::make_shared<std::vector<std::string>>();
  CLI::App* revoke =
      a->add_subcommand("revoke", "Revoke tokens (by name or id) at once");
  revoke->add_option("NAME", *names, "token names or ids")->required();
  revoke->callback(
      [&ctx, names] { Run(ctx, [&] { return Revoke(ctx, *names); }); });

  auto who_out = std::make_shared<std::string>();
  CLI::App* who = a->add_subcommand("whoami", "Who this token is");
  who->add_option("-o,--output", *who_out, "json|yaml")
      ->check(CLI::IsMember({"json", "yaml"}));
  who->callback(
      [&ctx, who_out] { Run(ctx, [&] { return WhoAmI(ctx, *who_out); }); });

  auto verb = std::make_shared<std::string>();
  auto resource = std::make_shared<std::string>();
  CLI::App* can = a->add_subcommand(
      "can-i",
      "Whether you may VERB RESOURCE in the namespace (-n): exit 0 "
      "yes, 1 no");
  can->add_option("VERB", *verb, "get, list, watch, apply, delete, scale, ...")
      ->required();
  can->add_option("RESOURCE", *resource,
                  "apps, instances, logs, events, secrets, tokens, nodes, ...")
      ->required();
  can->callback([&ctx, verb, resource] {
    Run(ctx, [&] { return CanI(ctx, *verb, *resource); });
  });

  // config
  CLI::App* c = root.add_subcommand(
      "config", "Contexts in ~/.config/tidal/config.yaml (docs/auth.md)");
  c->require_subcommand(1);
  c->add_subcommand("view", "Print the config (tokens redacted)")
      ->callback([&ctx] {
        ctx.exit_code = ConfigRun(
            ctx,
            [&](ClientConfig& cfg) -> int {
              for (auto& x : cfg.contexts) {
                if (!x.token.empty()) x.token = "<redacted>";
              }
              ctx.out() << "current-context: " << cfg.current_context << "\n";
              if (!cfg.server.empty()) {
                ctx.out() << "server: " << cfg.server << "\n";
              }
              ctx.out() << "contexts:\n";
              for (const auto& x : cfg.contexts) {
                ctx.out() << "- name: " << x.name << "\n";
                if (!x.server.empty())
                  ctx.out() << "  server: " << x.server << "\n";
                if (!x.ns.empty()) ctx.out() << "  namespace: " << x.ns << "\n";
                if (!x.token.empty())
                  ctx.out() << "  token: " << x.token << "\n";
                if (!x.token_file.empty()) {
                  ctx.out() << "  token-file: " << x.token_file << "\n";
                }
                if (!x.certificate_authority.empty()) {
                  ctx.out()
                      << "  certificate-authority: " << x.certificate_authority
                      << "\n";
                }
                if (!x.client_certificate.empty()) {
                  ctx.out() << "  client-certificate: " << x.client_certificate
                            << "\n";
                }
                if (!x.client_key.empty()) {
                  ctx.out() << "  client-key: " << x.client_key << "\n";
                }
              }
              return kExitOk;
            },
            false);
      });
  c->add_subcommand("get-contexts", "List the contexts")->callback([&ctx] {
    ctx.exit_code = ConfigRun(
        ctx,
        [&](ClientConfig& cfg) -> int {
          Table t({"CURRENT", "NAME", "SERVER", "NAMESPACE"});
          for (const auto& x : cfg.contexts) {
            t.AddRow({x.name == cfg.current_context ? "*" : "", x.name,
                      x.server, x.ns});
          }
          ctx.out() << t.Render();
          return kExitOk;
        },
        false);
  });
  c->add_subcommand("current-context", "Print the current context")
      ->callback([&ctx] {
        ctx.exit_code = ConfigRun(
            ctx,
            [&](ClientConfig& cfg) -> int {
              if (cfg.current_context.empty()) {
                return ctx.Error("current-context is not set");
              }
              ctx.out() << cfg.current_context << "\n";
              return kExitOk;
            },
            false);
      });
  auto use_name = std::make_shared<std::string>();
  CLI::App* use =
      c->add_subcommand("use-context", "Make NAME the current context");
  use->add_option("NAME", *use_name)->required();
  use->callback([&ctx, use_name] {
    ctx.exit_code = ConfigRun(
        ctx,
        [&](ClientConfig& cfg) -> int {
          if (cfg.Find(*use_name) == nullptr) {
            return ctx.Error(absl::StrCat("no context exists with the name: \"",
                                          *use_name, "\""));
          }
          cfg.current_context = *use_name;
          ctx.out() << "Switched to context \"" << *use_name << "\".\n";
          return kExitOk;
        },
        true);
  });
  auto set = std::make_shared<ClientContext>();
  auto set_current = std::make_shared<bool>(false);
  CLI::App* setc = c->add_subcommand(
      "set-context", "Create or change a context (only the flags given)");
  setc->add_option("NAME", set->name)->required();
  setc->add_option("--server", set->server, "host:port");
  setc->add_option("--token", set->token,
                   "the token (stored in the file, 0600)");
  setc->add_option("--token-file", set->token_file, "a file holding the token");
  setc->add_option("--namespace", set->ns, "the default namespace");
  setc->add_option("--certificate-authority", set->certificate_authority,
                   "CA certificate (PEM) to verify tidald's");
  setc->add_option("--client-certificate", set->client_certificate,
                   "client certificate (PEM, mTLS)");
  setc->add_option("--client-key", set->client_key, "client key (PEM, mTLS)");
  setc->add_flag("--current", *set_current, "also make it the current context");
  setc->callback([&ctx, set, set_current] {
    ctx.exit_code = ConfigRun(
        ctx,
        [&](ClientConfig& cfg) -> int {
          const bool existed = cfg.Find(set->name) != nullptr;
          ClientContext* x = cfg.FindOrAdd(set->name);
          for (auto m : {&ClientContext::server, &ClientContext::token,
                         &ClientContext::token_file, &ClientContext::ns,
                         &ClientContext::certificate_authority,
                         &ClientContext::client_certificate,
                         &ClientContext::client_key}) {
            if (!((*set).*m).empty()) (*x).*m = (*set).*m;
          }
          if (*set_current || cfg.current_context.empty()) {
            cfg.current_context = set->name;
          }
          ctx.out() << "Context \"" << set->name << "\" "
                    << (existed ? "modified" : "created") << ".\n";
          return kExitOk;
        },
        true);
  });
  auto del_name = std::make_shared<std::string>();
  CLI::App* del = c->add_subcommand("delete-context", "Delete a context");
  del->add_option("NAME", *del_name)->required();
  del->callback([&ctx, del_name] {
    ctx.exit_code = ConfigRun(
        ctx,
        [&](ClientConfig& cfg) -> int {
          auto& v = cfg.contexts;
          auto it = std::find_if(
              v.begin(), v.end(),
              [&](const ClientContext& x) { return x.name == *del_name; });
          if (it == v.end()) {
            return ctx.Error(absl::StrCat("no context exists with the name: \"",
                                          *del_name, "\""));
          }
          v.erase(it);
          if (cfg.current_context == *del_name) cfg.current_context.clear();
          ctx.out() << "deleted context " << *del_name << "\n";
          return kExitOk;
        },
        true);
  });
}

}  // namespace tidal::cli
