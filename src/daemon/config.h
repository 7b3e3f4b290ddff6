#pragma once

// DaemonFlags and DaemonConfig: tidald's command line, raw and checked.
// main() binds CLI11 options to a DaemonFlags; MakeDaemonConfig checks every
// value and turns them into the options of each component (the Server's
// input). An error names its flag ("--port-range: ..."); tidald prints it
// and exits 2.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/api_limits.h"
#include "api/api_tls.h"
#include "api/audit.h"
#include "api/limits.h"
#include "gateway/gateway.h"
#include "runtime/process_runtime.h"

namespace tidal {

class SecretBox;

// The flags as typed (defaults are tidald's).
struct DaemonFlags {
  std::string data_dir;
  std::string secrets_key_file;  // default: <data_dir>/secrets.key
  std::string listen = "127.0.0.1:7070";
  std::string gateway_listen = "127.0.0.1:8080";
  std::string admin_listen = "127.0.0.1:9090";
  // The web dashboard: "" (the admin address, under /ui/), "off", or an
  // address of its own.
  std::string dashboard_listen;
  std::string domain = "tidal.localhost";
  std::string store;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string port_range = "20000-29999";
  std::vector<std::string> instance_path;
  bool stop_instances_on_exit = false;
  int workers = 16;
  std::string resync = "5m";
  int gateway_threads = 0;
  int gateway_queue_size = 1000;
  std::string gateway_queue_timeout = "30s";
  std::string gateway_max_body = "4Gi";
  std::string gateway_connect_timeout = "2s";
  std::string gateway_response_timeout = "60s";
  std::string gateway_idle_timeout = "60s";
  std::string gateway_tunnel_idle_timeout = "1h";
  int64_t gateway_max_connections = 0;  // 0: derived from the fd limit
  int64_t gateway_max_connections_per_client = 1024;
  int64_t gateway_max_idle_connections = 4096;
  std::string gateway_header_timeout = "10s";
  std::string gateway_max_response_body = "0";
  // The API's limits (api/api_limits.h, spec::InputLimits).
  std::string api_max_message_size = "4Mi";
  int api_max_documents = 500;
  std::string api_max_spec_size = "2Mi";
  int api_max_errors = 50;
  int api_max_applies = 16;
  int api_max_applies_per_client = 4;
  int api_max_reads = 64;
  int api_max_reads_per_client = 16;
  int api_max_streams = 256;
  int api_max_streams_per_client = 32;
  std::string api_stream_stall_timeout = "30s";
  int api_thread_nice = 10;
  std::string api_apply_bytes_per_second = "4Mi";
  std::string api_refused_apply_cpu_per_second = "10ms";
  std::string startup_timeout = "2m";
  bool store_check = false;
  std::string store_backup;
  std::string store_restore;
  int max_instances_per_app = spec::limits::kDefaultMaxInstancesPerApp;
  int64_t max_instances_per_namespace = 0;
  std::string allow_private_webhooks = "auto";
  // Runtime: containment and logs (docs/runtime.md).
  std::string instance_cgroup = "auto";
  // The user instances run as; "" = a user per namespace when tidald runs
  // as root (nobody when --instance-uid-range is not mapped), else tidald's
  // own user.
  std::string instance_user;
  std::string instance_uid_range = "1879048192-1879113727";
  // auto | rlimit | off (runtime/limits.h).
  std::string instance_limits = "auto";
  int max_instances = 1000;
  std::string log_dir;
  std::string log_max_size = "10Mi";
  int log_max_files = 1;
  std::string log_rate_limit = "4Mi";
  std::string log_min_free = "512Mi";
  // How long the log of a stopped instance stays (`tidalctl logs
  // --previous`) after its last write.
  std::string stopped_log_retention = "1h";
  // The IPv4 address instances listen on (their HOST), are probed on and are
  // reached at (Instance.host): on several hosts, one the other nodes reach.
  std::string instance_host = "127.0.0.1";
  // Highly available mode (etcd store; docs/ha.md).
  std::string node_name;  // default: the host name
  std::string advertise_address;
  std::string election_ttl = "10s";
  std::string node_lost_timeout = "30s";
  int64_t etcd_compact_keep = 10000;
  std::string etcd_compact_interval = "5m";
  // TLS to etcd (docs/ha.md, "Securing etcd").
  std::string etcd_cacert;
  std::string etcd_cert;
  std::string etcd_key;
  std::string etcd_server_name;
  // Where instances run (docs/kubernetes.md): "process" or "kubernetes".
  std::string runtime = "process";
  std::string kube_config;     // a kubeconfig; empty: in-cluster
  std::string kube_context;    // the kubeconfig's context; empty: current
  std::string kube_namespace;  // default: the config's namespace
  std::vector<std::string> kube_namespace_map;  // "tidal-ns=kube-ns"
  // Authentication, authorization and audit (docs/auth.md).
  std::string auth = "token";   // token | none (none: loopback API only)
  std::string auth_token_file;  // the bootstrap admin token's file
  std::string audit_log;        // default: <data dir>/audit.log; "-": off
  std::string audit_level = "Metadata";
  std::string audit_max_size = "100Mi";
  int audit_max_files = 5;
  // TLS (docs/tls.md): the API, and the gateway's HTTPS listener.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string tls_peer_ca;
  std::string tls_reload_interval = "10s";
  std::string gateway_tls_listen;
  std::vector<std::string> gateway_tls_cert;  // [DOMAIN=]CERT,KEY
  bool gateway_https_redirect = false;
};

// The API's authentication and audit settings.
struct AuthConfig {
  bool tokens = true;  // false: --auth=none
  // The bootstrap admin token: read from (made in, when missing) this file
  // when the store has no token yet; default <data dir>/admin.token.
  std::string token_file;
  std::string default_token_file;
  auth::AuditOptions audit;
};

// The Kubernetes runtime's settings (--runtime=kubernetes).
struct KubeRuntimeFlags {
  bool enabled = false;
  std::string kubeconfig;  // empty: in-cluster
  std::string context;
  std::string default_namespace;  // empty: the config's namespace
  std::map<std::string, std::string> namespace_map;
};

// A highly available control plane: several tidald nodes on one etcd
// cluster, one leader (docs/ha.md). On with the etcd store.
struct HaOptions {
  bool enabled = false;
  std::string node;  // this node's name, unique in the cluster
  // The data directory's node uid (NodeRecord.uid), set by Server::Create
  // once the name is known to be this node's (CheckNodeIdentity).
  std::string node_uid;
  // The host other nodes reach this node's gateway, API and instances at.
  std::string advertise_address;
  // The API's address as other nodes and tidalctl reach it (host:port).
  std::string api_address;
  absl::Duration election_ttl = absl::Seconds(10);
  absl::Duration node_lost_timeout = absl::Seconds(30);
  // Leader only: compact etcd's history to the newest `compact_keep`
  // revisions every `compact_interval` (0 keep: never).
  int64_t compact_keep = 10000;
  absl::Duration compact_interval = absl::Minutes(5);
};

// Everything the Server is built from.
struct DaemonConfig {
  std::string data_dir;
  // The key of Secrets at rest (--secrets-key-file, docs/secrets.md),
  // loaded or created by Server::Create.
  std::string secrets_key_file;
  // Set by Server::Create from secrets_key_file.
  std::shared_ptr<const SecretBox> secret_box;
  // "sqlite:PATH" or "etcd:HOST:PORT[,...]"; store_name is "sqlite" or
  // "etcd"; store_flags is how the user named it ("--data-dir D" or
  // "--store S"), for recovery hints.
  std::string store_spec;
  std::string store_name;
  std::string store_flags;
  // TLS to etcd: PEM files checked by MakeDaemonConfig, read by OpenStore.
  // TLS is on with https:// endpoints or a CA file.
  struct EtcdTls {
    bool enabled = false;
    std::string ca_file, cert_file, key_file, server_name;
  };
  EtcdTls etcd_tls;

  ProcessRuntimeOptions runtime;
  // Without on_demand: the Server wires it.
  gateway::GatewayOptions gateway;
  std::string api_listen;
  ApiTlsOptions api_tls;
  ApiLimits api_limits;
  // CA file other nodes' API certificates are checked against (HA log
  // relay); empty: api_tls.client_ca_file, else the system's roots.
  std::string tls_peer_ca;
  std::string admin_listen;
  // --dashboard-listen: "" serves the dashboard on the admin address under
  // /ui/; "off" serves none; else HOST:PORT of its own (docs/dashboard.md).
  std::string dashboard_listen;
  std::string domain;

  // Limits on specs (Apply, Scale) and on what the reconciler starts.
  spec::ValidationOptions validation;
  int64_t max_instances_per_namespace = 0;
  int32_t max_instances_per_app = 0;  // bounded by the port range

  // Controller.
  int workers = 16;
  absl::Duration resync = absl::Minutes(5);

  HaOptions ha;
  KubeRuntimeFlags kube;
  AuthConfig auth;

  bool stop_instances_on_exit = false;
  // The soft descriptor limit the gateway's budget was derived from.
  int64_t fd_limit = 0;
  // Said once at startup (a flag that works but is odd).
  std::vector<std::string> warnings;
};

// Raises the process's soft RLIMIT_NOFILE to the hard limit (every
// connection, pipe, log and store file is a descriptor) and returns the soft
// limit in force.
int64_t RaiseFdLimit();

// $XDG_DATA_HOME/tidal, /var/lib/tidal for root, else
// ~/.local/share/tidal.
std::string DefaultDataDir();
// --data-dir, or the default.
std::string DataDir(const DaemonFlags& flags);
// --store, or the SQLite file in the data directory.
std::string StoreSpec(const DaemonFlags& flags);

// The gateway's default connection budget: the descriptor limit less a
// reserve for the API, the store, instances' pipes and logs, probes and
// webhooks (a quarter of the limit, at least 128).
int64_t DefaultGatewayMaxConnections(int64_t fd_limit);

// Checks the flags (the first bad one is the error, InvalidArgument, its
// message starting with the flag's name) and builds the config. `fd_limit`:
// the process's soft RLIMIT_NOFILE.
absl::StatusOr<DaemonConfig> MakeDaemonConfig(const DaemonFlags& flags,
                                              int64_t fd_limit);

}  // namespace tidal
