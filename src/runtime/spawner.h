#pragma once

// Starting an instance's process: its environment, finding its executable,
// and fork/exec into its own session and process group (and cgroup), with
// stdout and stderr on a given descriptor. Used by ProcessRuntime
// (process_runtime.h); every function is thread-safe.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/runtime.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

// The user an instance's process runs as (tidald --instance-user).
struct InstanceUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (getgrouplist)
  std::string home;
};

// Looks a user up by name or numeric uid (the passwd database).
absl::StatusOr<InstanceUser> LookupUser(const std::string& name_or_uid);

// The environment of an instance ("NAME=value", sorted by name): a few
// variables of tidald's own (PATH, HOME, USER, LOGNAME, LANG, LC_ALL,
// LC_CTYPE, TZ, TMPDIR), then HOST (instance.host(): the address the instance
// is reached at, so it listens there; the template may set another, e.g.
// 0.0.0.0), then the template's env, then PORT, TIDAL_APP, TIDAL_NAMESPACE,
// TIDAL_INSTANCE and TIDAL_REVISION from `instance`. PATH gets `extra_path`
// in front (and a default when tidald has none).
// Variables with valueFrom (secretKeyRef) take their value from
// `secret_env` (ResolveSecretEnv) and are left out when it has none. With a
// `user` other than tidald's own, HOME, USER and LOGNAME are that user's
// (before the template's env, which may set others).
std::vector<std::string> BuildInstanceEnv(
    const tidal::v1::Instance& instance, const tidal::v1::Template& tmpl,
    const std::vector<std::string>& extra_path,
    const std::map<std::string, std::string>& secret_env = {},
    const InstanceUser* user = nullptr);

// The values of the template's secret references (env[].valueFrom.
// secretKeyRef in namespace `ns`) by variable name. An optional reference to
// a missing secret or key is left out; a required one fails with
// FailedPrecondition "CreateContainerConfigError: secret \"ns/db\" not
// found" (no value is ever in a message). Without a resolver any reference
// fails. Nothing is looked up for a template without references.
absl::StatusOr<std::map<std::string, std::string>> ResolveSecretEnv(
    const tidal::v1::Template& tmpl, const std::string& ns,
    const SecretResolver& resolver);

// `cmd` itself when it holds a '/', else the first executable regular file
// named `cmd` in the PATH of `env` ("NAME=value" entries); "" if none.
std::string ResolveCommand(const std::string& cmd,
                           const std::vector<std::string>& env);

// Every candidate for `cmd`: itself when it holds a '/', else each
// executable regular file named `cmd` in the PATH of `env`, in PATH order
// (as this process sees them; the instance's user may be refused some, so
// the child tries them in turn, as execvp does).
std::vector<std::string> CommandCandidates(const std::string& cmd,
                                           const std::vector<std::string>& env);

// Whether `port` can be bound on every address (SO_REUSEADDR) right now.
bool PortFree(int port);

// Moves fd to a descriptor >= 3 (stdio slots may be closed in a daemon);
// closes the original. Returns fd unchanged when it is < 0 or > 2.
int AboveStdio(int fd);

struct SpawnSpec {
  // command and args; argv[0] is looked up in env's PATH (ResolveCommand).
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "NAME=value"
  std::string working_dir;       // "" = tidald's
  // Becomes the child's stdout and stderr; Spawn closes it (always).
  int output_fd = -1;
  // A cgroup directory the child joins before it may exec ("" = none).
  std::string cgroup;
  // More cgroups it joins (cgroup v1 memory/cpu for its limits, limits.h).
  std::vector<std::string> extra_cgroups;
  // RLIMIT_AS of the child (0: inherited).
  int64_t rlimit_as = 0;
  // Drops to this user (setgroups, setgid, setuid) before chdir and exec.
  std::optional<InstanceUser> user;
};

struct Spawned {
  pid_t pid = 0;
  uint64_t start_ticks = 0;  // /proc/<pid>/stat field 22
  // A pidfd for the process (close-on-exec), -1 without pidfd support; the
  // caller owns it.
  int pidfd = -1;
  // Why the process exits 127 without running the command: executable not
  // found, or the user switch, chdir or exec failed. Empty when it runs.
  std::string error;
};

// Forks the instance's process: a new session and process group, stdin from
// /dev/null, default signal dispositions, every other descriptor closed on
// exec. The child waits until `record(pid, start_ticks)` has returned: on an
// error from it, the child exits without exec (and is reaped) and Spawn
// returns that error, so a crash of tidald in between never leaves an
// unrecorded process (the child sees EOF and exits). Returns once the child
// has exec'd or failed to (Spawned::error).
absl::StatusOr<Spawned> Spawn(
    SpawnSpec spec,
    const std::function<absl::Status(pid_t pid, uint64_t start_ticks)>& record);

}  // namespace tidal
