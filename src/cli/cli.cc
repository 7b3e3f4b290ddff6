#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "absl/strings/numbers.h"

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

int Main(int argc, char** argv) {
  Context ctx(std::cout, std::cerr);
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
  app.add_option("--token", ctx.token_flag,
                 "API token (default: $TIDAL_TOKEN, then the context's, then "
                 "a local tidald's bootstrap token if readable)");
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
