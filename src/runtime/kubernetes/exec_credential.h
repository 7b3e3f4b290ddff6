#pragma once

// client-go's exec credential plugins (client.authentication.k8s.io v1 and
// v1beta1), as a kubeconfig's `users[].user.exec` names them: tidald runs
// the command with the user's args and env, KUBERNETES_EXEC_INFO set and no
// terminal, and reads an ExecCredential from its stdout: a bearer token or a
// client certificate and key, with an optional expiry (docs/kubernetes.md).

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/kubernetes/kube_config.h"

namespace tidal::kube {

struct ExecResult {
  Credential credential;
  // status.expirationTimestamp; InfiniteFuture without one.
  absl::Time expiry = absl::InfiniteFuture();
};

// The KUBERNETES_EXEC_INFO given to the plugin of `config`: an
// ExecCredential with spec.interactive false and, with provideClusterInfo,
// spec.cluster (server, certificate-authority-data,
// insecure-skip-tls-verify).
std::string ExecInfo(const KubeConfig& config);

// What a plugin printed: InvalidArgument, saying what is wrong, unless it
// is an ExecCredential of `api_version` with a token or a certificate and a
// key.
absl::StatusOr<ExecResult> ParseExecCredential(std::string_view out,
                                               const std::string& api_version);

// Runs the plugin of `config` (stdin /dev/null) and parses its output.
// NotFound when the command is not found (with the installHint),
// Unavailable when it fails (its exit status and the end of its stderr) or
// runs past `timeout` (it is killed).
absl::StatusOr<ExecResult> RunExecPlugin(
    const KubeConfig& config, absl::Duration timeout = absl::Minutes(1));

}  // namespace tidal::kube
