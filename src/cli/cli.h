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
#include "absl/time/time.h"
#include "cli/context.h"
#include "tidal/v1/app.pb.h"
#include "tidal/v1/secret.pb.h"

namespace CLI {
class App;
class Validator;
}  // namespace CLI

namespace tidal::cli {

// Parses argv, runs the chosen command and returns the process exit code.
int Main(int argc, char** argv);

// apply, diff, delete.
void AddApplyCommands(CLI::App& root, Context& ctx);
// auth (tokens, whoami, can-i) and config (contexts).
void AddAuthCommands(CLI::App& root, Context& ctx);
// get, describe.
void AddGetCommands(CLI::App& root, Context& ctx);
// logs, version.
void AddMiscCommands(CLI::App& root, Context& ctx);
// scale, top, simulate.
void AddScaleCommands(CLI::App& root, Context& ctx);

// completion bash|zsh|fish (completion_command.cc): register it last, as
// its scripts list every command registered on `root`.
void AddCompletionCommand(CLI::App& root, Context& ctx);
// explain TYPE[.FIELD...]: the fields of the spec schema.
void AddExplainCommand(CLI::App& root, Context& ctx);

// rollout status|pause|resume|promote|abort|undo|retry|restart|history.
void AddRolloutCommands(CLI::App& root, Context& ctx);
// Polls the app until the release of `generation` is fully out (0), rolled
// back or failed (1), or `deadline` passes (4), printing progress (a live
// line on a terminal, plain lines otherwise; one JSON object with `json`).
int WaitForRollout(Context& ctx, const std::string& name, int64_t generation,
                   absl::Time deadline, bool json);
// One line of the progress WaitForRollout prints: "web: revision 2
// Progressing step 3/5: new 6/6 ready, revision 1 4/4 ready, 60% traffic",
// "web: revision 2 Succeeded: 3/3 ready", or "web: generation 4 waiting for
// the controller" while the status is of an earlier generation.
std::string ProgressLine(const tidal::v1::App& app);
// `get revisions APP`: args = {"revisions", APP}.
int GetRevisions(Context& ctx, const std::vector<std::string>& args,
                 const std::string& output);
// `get leader` and `get nodes` (cluster_commands.cc): args = {"leader"} or
// {"nodes"}.
// delete node NAME...: args[0] is "node"; dry_run none | server | client.
int DeleteNodes(Context& ctx, const std::vector<std::string>& args,
                const std::string& dry_run);
int GetCluster(Context& ctx, const std::vector<std::string>& args,
               const std::string& output);

// Secrets (secret_commands.cc): `create secret generic`, and what get,
// describe and delete do for secrets (args = {"secrets", NAME...}).
void AddSecretCommands(CLI::App& root, Context& ctx);
int GetSecrets(Context& ctx, const std::vector<std::string>& args, bool all,
               const std::string& selector, const std::string& output);
int DescribeSecret(Context& ctx, const std::string& name);
// `ignore_not_found`: a secret that does not exist is skipped silently.
int DeleteSecrets(Context& ctx, const std::vector<std::string>& args,
                  const std::string& dry_run, bool ignore_not_found = false);
// The secret ns/name without its values (keys and sizes).
absl::StatusOr<tidal::v1::Secret> GetSecret(Context& ctx, const std::string& ns,
                                            const std::string& name);

// Checks a count flag (--replicas, --tail): a whole number >= 0, else
// "--replicas: must be a whole number >= 0, got -1" (exit 2).
CLI::Validator NonNegativeCount();

// kubectl's resource arguments: TYPE/NAME (what `-o name` prints:
// app.tidal.dev/web, secret/db), several of one type, and group-qualified
// types (apps.tidal.dev). Rewrites `args` to TYPE NAME...; InvalidArgument
// for a mix of forms or of types.
absl::Status NormalizeResourceArgs(std::vector<std::string>* args);

// Resolves global flags (ctx.Prepare()), runs `body` and stores its exit
// code in ctx.exit_code; a failing Prepare is a usage error.
void Run(Context& ctx, const std::function<int()>& body);
// Run for a command whose positional `args` name resources: they are
// normalized first (NormalizeResourceArgs; a bad form is a usage error).
void RunOnResources(Context& ctx, std::vector<std::string>* args,
                    const std::function<int()>& body);

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
// (one per line) to ctx.err() and returns InvalidArgument. The Secret
// documents go to `secrets` (values included) when given, else they are
// an error.
absl::StatusOr<std::vector<tidal::v1::App>> ParseInputs(
    Context& ctx, const std::vector<Input>& inputs,
    std::vector<tidal::v1::Secret>* secrets = nullptr);

}  // namespace tidal::cli
