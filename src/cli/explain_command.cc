// explain: the fields of the App schema (the one the validator checks
// against), as kubectl explain shows a resource's.

#include <CLI/CLI.hpp>

#include "api/spec.h"
#include "cli/cli.h"

namespace tidal::cli {

void AddExplainCommand(CLI::App& root, Context& ctx) {
  auto path = std::make_shared<std::string>();
  CLI::App* c = root.add_subcommand(
      "explain",
      "Describe the fields of an app spec: explain app, explain "
      "app.spec.scaling, explain app.spec.template.readinessProbe");
  c->add_option("field", *path, "app[.FIELD...] (YAML names, as in a spec)")
      ->required();
  c->callback([&ctx, path] {
    auto text = spec::Explain(*path);
    if (!text.ok()) {
      ctx.exit_code =
          ctx.Error(std::string(text.status().message()), kExitUsage);
      return;
    }
    ctx.out() << *text;
    ctx.exit_code = kExitOk;
  });
}

}  // namespace tidal::cli
