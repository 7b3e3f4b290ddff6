#pragma once

// Connection settings for a Kubernetes API server: where it is, how to trust
// it and who we are. Two sources, as client-go has them:
//  - in-cluster: KUBERNETES_SERVICE_HOST/PORT and the pod's service account
//    (token, ca.crt, namespace under /var/run/secrets/kubernetes.io/
//    serviceaccount); the token file is rotated by the kubelet, so it is
//    re-read when it changes (TokenSource);
//  - a kubeconfig file (YAML): its current context (or a named one) gives the
//    cluster (server, certificate-authority[-data],
//    insecure-skip-tls-verify) and the user (token, tokenFile,
//    client-certificate[-data], client-key[-data], or an exec credential
//    plugin: aws eks get-token, gke-gcloud-auth-plugin, kubelogin).
// Errors name the file and the field.

#include <cstdint>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tidal::kube {

// A kubeconfig user's `exec`: a client-go credential plugin, run to get a
// token or a client certificate (client.authentication.k8s.io ExecCredential).
struct ExecConfig {
  std::string api_version;  // client.authentication.k8s.io/v1 or v1beta1
  std::string command;      // a relative path with a '/' is resolved
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;  // added to tidald's
  std::string install_hint;           // printed when the command is not found
  bool provide_cluster_info = false;  // spec.cluster in KUBERNETES_EXEC_INFO
  std::string interactive_mode;       // Never or IfAvailable (no terminal)
};

struct KubeConfig {
  // "https://10.0.0.1:443"; no trailing '/'.
  std::string server;
  // Trust: a CA bundle file, or PEM data (certificate-authority-data,
  // decoded); both empty: the system's trust store.
  std::string ca_file;
  std::string ca_data;
  bool insecure_skip_tls_verify = false;
  // Client certificate authentication: a file or PEM data each.
  std::string client_cert_file;
  std::string client_cert_data;
  std::string client_key_file;
  std::string client_key_data;
  // Bearer token: fixed, or read from a file (re-read when it changes;
  // wins over `token` when set).
  std::string token;
  std::string token_file;
  // A credential plugin (used when neither token nor token_file is set, as
  // client-go's exec transport defers to a bearer token).
  bool has_exec = false;
  ExecConfig exec;
  // The namespace to use when none is given ("default" unless the source
  // says otherwise).
  std::string namespace_ = "default";
  // Where this came from, for messages: "in-cluster" or the kubeconfig path
  // and context.
  std::string source;
};

// The service account paths and the environment of an in-cluster config;
// tests point them elsewhere.
struct InClusterOptions {
  std::string token_file =
      "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::string namespace_file =
      "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
  // Empty: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT.
  std::string host;
  std::string port;
  // "https" in a cluster; tests may say "http".
  std::string scheme = "https";
};

// The in-cluster config: FailedPrecondition when not in a cluster (no
// KUBERNETES_SERVICE_HOST/PORT), NotFound/InvalidArgument naming the file
// when the token is missing or empty. The CA file is used only if it exists.
absl::StatusOr<KubeConfig> LoadInClusterConfig(
    const InClusterOptions& options = {});

// A kubeconfig file: the context `context` (empty: current-context).
// Relative file paths in it are relative to the file's directory.
absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path,
                                          const std::string& context = "");

// The same from text; `path` names it in errors and anchors relative paths.
absl::StatusOr<KubeConfig> ParseKubeconfig(const std::string& yaml,
                                           const std::string& path,
                                           const std::string& context = "");

// The default choice: $KUBECONFIG (first path) or ~/.kube/config when
// `kubeconfig` is empty and the file exists, else in-cluster.
absl::StatusOr<KubeConfig> LoadDefaultConfig(const std::string& kubeconfig);

// What a request authenticates with beyond the config's own files: a
// bearer token, or (from an exec plugin) a client certificate and key (PEM).
struct Credential {
  std::string token;
  std::string client_cert_pem;
  std::string client_key_pem;
};

// The credential of a config, kept current: a token file is re-read when
// its modification time or size changes (checked on every Get() call, a
// stat), and on Refresh() (the client calls it after a 401). An exec plugin
// is run at the first Get(), again once what it gave expires (its
// expirationTimestamp; never without one), and on Refresh(). A fixed token
// never changes. Thread-safe; a plugin runs under the lock, so concurrent
// requests wait for one run.
class TokenSource {
 public:
  explicit TokenSource(const KubeConfig& config);

  absl::StatusOr<Credential> Get();
  // Get()'s token; "" when the config has none (client certificates).
  // An error when the token file cannot be read or is empty, or the plugin
  // fails.
  absl::StatusOr<std::string> Token();

  // Reads the token file again whatever its mtime says, or runs the plugin
  // again; returns true when the credential changed (worth retrying the
  // request).
  bool Refresh();

 private:
  absl::Status ReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ExecLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::string fixed_token_;
  const std::string token_file_;
  const KubeConfig exec_config_;  // has_exec: the plugin and the cluster

  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  bool read_ ABSL_GUARDED_BY(mu_) = false;
  int64_t mtime_ns_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t size_ ABSL_GUARDED_BY(mu_) = -1;
  Credential exec_cred_ ABSL_GUARDED_BY(mu_);
  absl::Time exec_expiry_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace tidal::kube
