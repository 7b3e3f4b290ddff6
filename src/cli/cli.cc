#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tidal::cli {

CLI::Validator NonNegativeCount() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        int64_t n = 0;
        if (absl::SimpleAtoi(value, &n) && n >= 0) return "";
        return "must be a whole number >= 0, got " + value;
      },
      "N>=0", "NonNegativeCount");
}

namespace {

// Global options that take a value (the next argument unless written
// --flag=value).
bool TakesValue(const std::string& arg) {
  static const char* const kWithValue[] = {"--server",
                                           "--timeout",
                                           "-n",
                                           "--namespace",
                                           "--token",
                                           "--context",
                                           "--certificate-authority",
                                           "--client-certificate",
                                           "--client-key",
                                           "--tls-server-name"};
  for (const char* f : kWithValue)
    if (arg == f) return true;
  return false;
}

// The closest names to `word` (kubectl's "Did you mean this?").
std::vector<std::string> Suggest(const std::string& word,
                                 const std::vector<std::string>& names) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1,
                           prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      }
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (distance(word, n) <= 2 ||
        (word.size() >= 3 && n.compare(0, word.size(), word) == 0))
      out.push_back(n);
  }
  return out;
}

// kubectl's answer to a command it does not have:
//   error: unknown command "scael" for "tidalctl"
//
//   Did you mean this?
//           scale
// Looks at the first word that is not an option (and, for a command with
// subcommands, at the word after it). Returns true when it printed one.
bool UnknownCommand(const CLI::App& app, int argc, char** argv,
                    std::ostream& err) {
  const CLI::App* at = &app;
  std::string path = "tidalctl";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") return false;
    if (!arg.empty() && arg[0] == '-') {
      if (TakesValue(arg)) ++i;
      continue;
    }
    auto subs = at->get_subcommands([](const CLI::App*) { return true; });
    if (subs.empty()) return false;
    const CLI::App* next = nullptr;
    std::vector<std::string> names;
    for (const CLI::App* s : subs) {
      names.push_back(s->get_name());
      if (s->check_name(arg)) next = s;
    }
    if (next == nullptr) {
      err << "error: unknown command \"" << arg << "\" for \"" << path
          << "\"\n";
      auto close = Suggest(arg, names);
      if (!close.empty()) {
        err << "\nDid you mean this?\n";
        for (const auto& c : close) err << "        " << c << "\n";
      }
      err << "\nRun '" << path << " --help' for usage.\n";
      return true;
    }
    at = next;
    path += " " + arg;
  }
  return false;
}

// Two habits of kubectl (pflag) that CLI11 reads otherwise, rewritten
// before parsing (not after "--"):
// - a short option's value after '=': -n=prod, -f=app.yaml (CLI11 would
//   keep the '=' in the value), split in two;
// - a bare --dry-run, which kubectl takes as --dry-run=client (deprecated,
//   with a warning) and never as taking the next word (CLI11 would read
//   `delete --dry-run app web` as --dry-run=app). *bare_dry_run is set.
std::vector<std::string> NormalizeArgs(int argc, char** argv,
                                       bool* bare_dry_run) {
  std::vector<std::string> out;
  bool options = true;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") options = false;
    if (options && arg == "--dry-run") {
      *bare_dry_run = true;
      out.push_back("--dry-run=client");
      continue;
    }
    if (options && i > 0 && arg.size() >= 3 && arg[0] == '-' &&
        absl::ascii_isalpha(static_cast<unsigned char>(arg[1])) &&
        arg[2] == '=') {
      out.push_back(arg.substr(0, 2));
      out.push_back(arg.substr(3));
      continue;
    }
    out.push_back(std::move(arg));
  }
  return out;
}

}  // namespace

absl::Status NormalizeResourceArgs(std::vector<std::string>* args) {
  if (args->empty()) return absl::OkStatus();
  auto type_of = [](absl::string_view t) {
    absl::ConsumeSuffix(&t, ".tidal.dev");
    return std::string(t);
  };
  if ((*args)[0].find('/') == std::string::npos) {
    (*args)[0] = type_of((*args)[0]);
    return absl::OkStatus();
  }
  std::vector<std::string> out(1);
  for (const std::string& a : *args) {
    const size_t slash = a.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == a.size() ||
        a.find('/', slash + 1) != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", a,
          "\": give every resource as TYPE/NAME (as -o name prints it), or "
          "as TYPE NAME..."));
    }
    const std::string type = type_of(absl::string_view(a).substr(0, slash));
    if (out[0].empty()) {
      out[0] = type;
    } else if (type != out[0]) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", a, "\": one type at a time (", out[0],
                       " first, then ", type, ")"));
    }
    out.push_back(a.substr(slash + 1));
  }
  *args = std::move(out);
  return absl::OkStatus();
}

void RunOnResources(Context& ctx, std::vector<std::string>* args,
                    const std::function<int()>& body) {
  if (absl::Status s = NormalizeResourceArgs(args); !s.ok()) {
    ctx.exit_code = ctx.Error(std::string(s.message()), kExitUsage);
    return;
  }
  Run(ctx, body);
}

void Run(Context& ctx, const std::function<int()>& body) {
  if (absl::Status s = ctx.Prepare(); !s.ok()) {
    ctx.exit_code = ctx.Error(std::string(s.message()), kExitUsage);
    return;
  }
  try {
    ctx.exit_code = body();
  } catch (const std::exception& e) {
    ctx.exit_code = ctx.Error(e.what(), kExitFailure);
  }
}

int Main(int argc_in, char** argv_in) {
  bool bare_dry_run = false;
  std::vector<std::string> args =
      NormalizeArgs(argc_in, argv_in, &bare_dry_run);
  std::vector<char*> argv_split;
  for (std::string& a : args) argv_split.push_back(a.data());
  argv_split.push_back(nullptr);
  const int argc = static_cast<int>(args.size());
  char** argv = argv_split.data();
  Context ctx(std::cout, std::cerr);
  if (bare_dry_run) {
    ctx.err() << "warning: --dry-run is deprecated and can be replaced with "
                 "--dry-run=client.\n";
  }
  CLI::App app{
      "tidalctl controls Tidal, the serverless application engine (see "
      "docs/cli.md)",
      "tidalctl"};
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("--client-version",
                       std::string("tidalctl ") + TIDAL_VERSION);
  app.add_option(
      "--server", ctx.server_flag,
      "tidald API address host:port (default: $TIDAL_SERVER, then `server:` in "
      "~/.config/tidal/config.yaml, then 127.0.0.1:7070)");
  app.add_option(
      "--timeout", ctx.timeout_flag,
      "deadline of each request (default 30s), and of the whole wait of "
      "apply --wait, rollout status and delete --wait (default 10m)");
  app.add_option("-n,--namespace", ctx.ns,
                 "namespace (default: the context's, else default)");
  CLI::Option* token = app.add_option(
      "--token", ctx.token_flag,
      "API token (default: $TIDAL_TOKEN, then the context's, then "
      "a local tidald's bootstrap token if readable)");
  ctx.token_given = [token] { return token->count() > 0; };
  app.add_option("--context", ctx.context_flag,
                 "the context of ~/.config/tidal/config.yaml to use (default: "
                 "its current-context)");
  // TLS (docs/tls.md): any of these, or --server https://..., means TLS.
  app.add_option("--certificate-authority", ctx.ca_file,
                 "PEM CA certificate(s) that signed tidald's API certificate "
                 "(default: $TIDAL_CA, else the system's roots)");
  app.add_option("--client-certificate", ctx.cert_file,
                 "PEM client certificate for mutual TLS (default: "
                 "$TIDAL_CLIENT_CERT)");
  app.add_option("--client-key", ctx.key_file,
                 "PEM private key of --client-certificate (default: "
                 "$TIDAL_CLIENT_KEY)");
  app.add_option("--tls-server-name", ctx.tls_server_name,
                 "The name tidald's certificate must carry, when it is not the "
                 "host of --server (default: $TIDAL_TLS_SERVER_NAME)");

  AddApplyCommands(app, ctx);
  AddAuthCommands(app, ctx);
  AddGetCommands(app, ctx);
  AddMiscCommands(app, ctx);
  AddRolloutCommands(app, ctx);
  AddScaleCommands(app, ctx);
  AddSecretCommands(app, ctx);
  AddExplainCommand(app, ctx);
  AddCompletionCommand(app, ctx);

  if (UnknownCommand(app, argc, argv, std::cerr)) return kExitUsage;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitFailure;
  }
  return ctx.exit_code;
}

}  // namespace tidal::cli
