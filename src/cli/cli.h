#pragma once

// tidalctl's entry point and its command groups. Each group registers its
// subcommands on the root CLI::App; later groups (scale, top, rollout,
// simulate) follow the same shape:
//
//   void AddRolloutCommands(CLI::App& root, Context& ctx);
//
// A command's callback does its work through `ctx` (stub, streams) and sets
// ctx.exit_code; use Run() below so flags are resolved and exceptions never
// escape.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/context.h"
#include "tidal/v1/app.pb.h"

namespace CLI {
class App;
}  // namespace CLI

namespace tidal::cli {

// Parses argv, runs the chosen command and returns the process exit code.
int Main(int argc, char** argv);

// apply, diff, delete.
void AddApplyCommands(CLI::App& root, Context& ctx);
// get, describe.
void AddGetCommands(CLI::App& root, Context& ctx);
// logs, version.
void AddMiscCommands(CLI::App& root, Context& ctx);
// scale, top, simulate.
void AddScaleCommands(CLI::App& root, Context& ctx);

// Resolves global flags (ctx.Prepare()), runs `body` and stores its exit
// code in ctx.exit_code; a failing Prepare is a usage error.
void Run(Context& ctx, const std::function<int()>& body);

// One input of -f: a file's text and the name errors use.
struct Input {
  std::string source;  // the path, or "<stdin>"
  std::string text;
};
// Reads -f arguments: files, directories (every *.yaml / *.yml in it, sorted)
// and "-" (stdin). InvalidArgument naming the path on failure.
absl::StatusOr<std::vector<Input>> ReadInputs(
    const std::vector<std::string>& paths);

// Parses every input locally with spec::ParseApps. On errors prints each one
// (one per line) to ctx.err() and returns InvalidArgument.
absl::StatusOr<std::vector<tidal::v1::App>> ParseInputs(
    Context& ctx, const std::vector<Input>& inputs);

}  // namespace tidal::cli
