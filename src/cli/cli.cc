#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

namespace tidal::cli {

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
  app.add_option("-n,--namespace", ctx.ns, "namespace (default: default)");

  AddApplyCommands(app, ctx);
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
