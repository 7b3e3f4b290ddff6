// tidald: the Tidal daemon. One process runs the API, the store, the
// controller, the runtime supervisor, the gateway and the admin endpoint.
// This file holds the command line (CLI11 options), signal handling and the
// store maintenance commands; the flags are checked by MakeDaemonConfig
// (daemon/config.h) and the components are owned by the Server
// (daemon/server.h).

#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "daemon/config.h"
#include "daemon/server.h"
#include "daemon/store_commands.h"

namespace tidal {
namespace {

// --store-check, --store-backup, --store-restore: work on the SQLite file
// and exit.
int StoreCommand(const DaemonFlags& flags) {
  const std::string data_dir = DataDir(flags);
  const std::string spec = StoreSpec(flags);
  if (!absl::StartsWith(spec, "sqlite:")) {
    std::cerr
        << "error: --store-check, --store-backup and --store-restore "
           "work on SQLite stores; for etcd use etcdctl (docs/store.md)\n";
    return kStoreUsage;
  }
  const std::string path = spec.substr(strlen("sqlite:"));
  if (flags.store_check) return StoreCheckCommand(path, std::cout);
  if (!flags.store_backup.empty())
    return StoreBackupCommand(path, flags.store_backup, std::cout);
  return StoreRestoreCommand(path, data_dir, flags.store_restore, std::cout);
}

int Run(const DaemonFlags& flags) {
  InitLogging(flags.log_level, flags.log_format);
  auto log = GetLogger("tidald");
  const int64_t fd_limit = RaiseFdLimit();

  // Signals are taken by sigwait in this thread only.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Whatever tidald makes is its own: the data directory, the store, the
  // logs and records of every namespace's instances, backups (instances get
  // the usual 022 back: runtime/spawner.cc).
  umask(077);

  if (flags.store_check || !flags.store_backup.empty() ||
      !flags.store_restore.empty()) {
    return StoreCommand(flags);
  }
  auto config = MakeDaemonConfig(flags, fd_limit);
  if (!config.ok()) {
    log->error("{}", std::string(config.status().message()));
    return 2;
  }
  for (const auto& warning : config->warnings) log->warn("{}", warning);
  const std::string store_flags = config->store_flags;
  auto server = Server::Create(std::move(config).value());
  if (!server.ok()) {
    log->error("{}", std::string(server.status().message()));
    if (absl::IsDataLoss(server.status()))
      log->error("{}", StoreRecoveryHint(store_flags));
    return 1;
  }
  if (auto st = (*server)->Start(); !st.ok()) {
    log->error("{}", std::string(st.message()));
    return 1;
  }

  int sig = 0;
  sigwait(&sigs, &sig);
  log->info("received {}, shutting down",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Stop();
  return 0;
}

}  // namespace
}  // namespace tidal

int main(int argc, char** argv) {
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles
  // (a debug aid that costs more than the locking itself); the clang
  // -Wthread-safety build checks lock discipline at compile time instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  tidal::DaemonFlags flags;
  CLI::App app{
      "tidald: the Tidal daemon (API, controller, scaler, deployer, runtime, "
      "gateway)"};
  app.add_option("--data-dir", flags.data_dir,
                 "State directory: store, instance records, logs (default "
                 "~/.local/share/tidal)");
  app.add_option("--secrets-key-file", flags.secrets_key_file,
                 "the 32-byte key that encrypts Secrets at rest (AES-256-GCM; "
                 "docs/secrets.md): created with mode 0600 when missing; "
                 "refused when group/world-readable or of another size; "
                 "every node of an etcd cluster needs the same file "
                 "(default: <data-dir>/secrets.key)");
  app.add_option("--listen", flags.listen, "gRPC API address")
      ->capture_default_str();
  app.add_option("--gateway-listen", flags.gateway_listen,
                 "HTTP gateway address")
      ->capture_default_str();
  app.add_option("--admin-listen", flags.admin_listen,
                 "Admin address (/metrics, /healthz, /readyz)")
      ->capture_default_str();
  app.add_option("--dashboard-listen", flags.dashboard_listen,
                 "Web dashboard address (default: the admin address, under "
                 "/ui/; \"off\": none)");
  app.add_option("--domain", flags.domain,
                 "Apps are served at <app>.<namespace>.<domain>")
      ->capture_default_str();
  app.add_option("--store", flags.store,
                 "sqlite:PATH (default: DATA_DIR/tidal.db) or "
                 "etcd:HOST:PORT[,HOST:PORT...]");
  app.add_option("--log-level", flags.log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--log-format", flags.log_format, "text|json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--port-range", flags.port_range, "Ports for local instances")
      ->capture_default_str();
  app.add_option(
      "--instance-path", flags.instance_path,
      "Directories put first on instances' PATH (repeatable, or a:b)");
  app.add_flag("--stop-instances-on-exit", flags.stop_instances_on_exit,
               "Stop every instance on SIGTERM (default: leave them for the "
               "next start)");
  app.add_option("--startup-timeout", flags.startup_timeout,
                 "An instance whose port still refuses connections this long "
                 "after its readinessProbe.initialDelaySeconds is marked "
                 "StartupTimeout (a rollout of it fails fast)")
      ->capture_default_str();
  app.add_option("--instance-cgroup", flags.instance_cgroup,
                 "auto: each instance in its own cgroup v2 under "
                 "<tidald's cgroup>/tidal when cgroup v2 is writable, else a "
                 "child subreaper; off: always the subreaper; or a cgroup v2 "
                 "directory to use as the root")
      ->capture_default_str();
  app.add_option("--instance-user", flags.instance_user,
                 "User (name or uid) instances run as, or per-namespace: a "
                 "uid of --instance-uid-range for each namespace (default: "
                 "per-namespace when tidald runs as root, else tidald's own "
                 "user)");
  app.add_option("--instance-uid-range", flags.instance_uid_range,
                 "Uids given to namespaces with --instance-user=per-namespace "
                 "(FIRST-LAST; must be mapped in tidald's user namespace)")
      ->capture_default_str();
  app.add_option("--instance-limits", flags.instance_limits,
                 "auto: resources.memory/cpu enforced with cgroup v2 "
                 "controllers, else cgroup v1, else RLIMIT_AS for memory; "
                 "rlimit: RLIMIT_AS only; off: not enforced")
      ->check(CLI::IsMember({"auto", "rlimit", "off"}))
      ->capture_default_str();
  app.add_option("--max-instances", flags.max_instances,
                 "Instances this tidald runs at most (more fail to start, "
                 "with an event saying so; 0 = no limit)")
      ->capture_default_str();
  app.add_option("--log-dir", flags.log_dir,
                 "Instance logs (default DATA_DIR/logs; may be on another "
                 "filesystem than the store)");
  app.add_option("--log-max-size", flags.log_max_size,
                 "Largest instance log file; then it is rotated (0 = no cap)")
      ->capture_default_str();
  app.add_option("--log-max-files", flags.log_max_files,
                 "Rotated log files kept per instance (<log>.1 ... .N)")
      ->capture_default_str();
  app.add_option("--stopped-log-retention", flags.stopped_log_retention,
                 "How long the log of a stopped instance (crashed, replaced, "
                 "scaled away) is kept after its last write, for `tidalctl "
                 "logs --previous`")
      ->capture_default_str();
  app.add_option("--log-rate-limit", flags.log_rate_limit,
                 "Instance output kept per second (burst: 4 seconds' worth); "
                 "the rest is dropped and counted (0 = no limit)")
      ->capture_default_str();
  app.add_option("--log-min-free", flags.log_min_free,
                 "Drop instance output while the log filesystem has less free "
                 "space than this (bytes such as 512Mi, or a percentage such "
                 "as 5%)")
      ->capture_default_str();
  app.add_option("--workers", flags.workers, "Reconcile workers")
      ->capture_default_str();
  app.add_option("--resync", flags.resync, "Periodic full reconcile")
      ->capture_default_str();
  app.add_option("--gateway-threads", flags.gateway_threads, "0 = one per core")
      ->capture_default_str();
  app.add_option("--gateway-queue-size", flags.gateway_queue_size,
                 "Requests held per app while it has no ready instance (or "
                 "every instance is at its concurrency limit); more get 503")
      ->capture_default_str();
  app.add_option("--gateway-max-body", flags.gateway_max_body,
                 "Largest request body (413 beyond; 0 = unlimited)")
      ->capture_default_str();
  app.add_option("--gateway-connect-timeout", flags.gateway_connect_timeout,
                 "Connecting to an instance (then another instance for "
                 "idempotent requests, else 502)")
      ->capture_default_str();
  app.add_option("--gateway-response-timeout", flags.gateway_response_timeout,
                 "Waiting for an instance's response headers (then 504)")
      ->capture_default_str();
  app.add_option("--gateway-idle-timeout", flags.gateway_idle_timeout,
                 "A client connection idle (keep-alive, or a gap in a body)")
      ->capture_default_str();
  app.add_option("--gateway-tunnel-idle-timeout",
                 flags.gateway_tunnel_idle_timeout,
                 "An upgraded connection (WebSocket) with no byte either way "
                 "this long is closed")
      ->capture_default_str();
  app.add_option("--gateway-max-connections", flags.gateway_max_connections,
                 "Sockets the gateway may hold: two per client connection, "
                 "one per idle pooled upstream connection; beyond it new "
                 "connections get 503 (0 = the file descriptor limit less a "
                 "reserve of a quarter, at least 128)")
      ->capture_default_str();
  app.add_option("--gateway-max-connections-per-client",
                 flags.gateway_max_connections_per_client,
                 "Client connections one address may hold at once; beyond "
                 "it new ones get 503 (0 = no limit)")
      ->capture_default_str();
  app.add_option("--gateway-max-idle-connections",
                 flags.gateway_max_idle_connections,
                 "Client connections waiting for a request (kept alive, or "
                 "new and silent); beyond it the longest idle is closed (0 = "
                 "no limit)")
      ->capture_default_str();
  app.add_option("--gateway-header-timeout", flags.gateway_header_timeout,
                 "A request header must arrive whole within this of its "
                 "connection (or of its first byte on a kept-alive one); "
                 "then the connection is closed (slowloris)")
      ->capture_default_str();
  app.add_option("--gateway-max-response-body", flags.gateway_max_response_body,
                 "Largest response body relayed from an instance; beyond it "
                 "the response is cut (0 = unlimited)")
      ->capture_default_str();
  app.add_option("--api-max-message-size", flags.api_max_message_size,
                 "Largest request the API receives (RESOURCE_EXHAUSTED "
                 "beyond it)")
      ->capture_default_str();
  app.add_option("--api-max-documents", flags.api_max_documents,
                 "Documents (apps and secrets) of one apply")
      ->capture_default_str();
  app.add_option("--api-max-spec-size", flags.api_max_spec_size,
                 "Largest document (one app's or secret's YAML) of an apply")
      ->capture_default_str();
  app.add_option("--api-max-errors", flags.api_max_errors,
                 "Errors one refused apply lists (then \"and K more\")")
      ->capture_default_str();
  app.add_option("--api-max-applies", flags.api_max_applies,
                 "Apply, Scale, Delete and Rollout calls in flight (0 = no "
                 "limit); more get RESOURCE_EXHAUSTED with a retry hint")
      ->capture_default_str();
  app.add_option("--api-max-applies-per-client",
                 flags.api_max_applies_per_client,
                 "The same, per client (token, else address)")
      ->capture_default_str();
  app.add_option("--api-max-reads", flags.api_max_reads,
                 "Get and List calls in flight (0 = no limit)")
      ->capture_default_str();
  app.add_option("--api-max-reads-per-client", flags.api_max_reads_per_client,
                 "The same, per client")
      ->capture_default_str();
  app.add_option("--api-max-streams", flags.api_max_streams,
                 "Watch and Logs streams open (0 = no limit)")
      ->capture_default_str();
  app.add_option("--api-max-streams-per-client",
                 flags.api_max_streams_per_client, "The same, per client")
      ->capture_default_str();
  app.add_option("--api-stream-stall-timeout", flags.api_stream_stall_timeout,
                 "A Watch or Logs stream whose client reads nothing this long "
                 "is cut (0 = never)")
      ->capture_default_str();
  app.add_option("--api-apply-bytes-per-second",
                 flags.api_apply_bytes_per_second,
                 "Apply bytes a client may send per second, after a burst of "
                 "twice --api-max-message-size; past it its applies wait "
                 "(0 = no pacing)")
      ->capture_default_str();
  app.add_option("--api-refused-apply-cpu-per-second",
                 flags.api_refused_apply_cpu_per_second,
                 "CPU time tidald may spend per second on a client's applies "
                 "that are refused, after a burst of 20 times as much; past "
                 "it its applies wait (0 = no pacing by CPU)")
      ->capture_default_str();
  app.add_option("--api-thread-nice", flags.api_thread_nice,
                 "Nice value of the API's threads (0-19; 0 = as tidald): "
                 "under a flood of API calls the gateway keeps the CPU")
      ->capture_default_str();
  app.add_option("--gateway-queue-timeout", flags.gateway_queue_timeout,
                 "How long a held request waits before 504")
      ->capture_default_str();
  app.add_flag("--store-check", flags.store_check,
               "Check the SQLite store (integrity, schema, identity, every "
               "value), print a report and exit 0 (healthy) or 1 (damaged); "
               "safe while tidald runs");
  app.add_option("--store-backup", flags.store_backup,
                 "Write a verified copy of the SQLite store to FILE and exit; "
                 "safe while tidald runs");
  app.add_option("--store-restore", flags.store_restore,
                 "Replace the SQLite store with the backup FILE once it "
                 "verifies (the old one is kept aside) and exit; tidald must "
                 "be stopped");
  app.add_option("--max-instances-per-app", flags.max_instances_per_app,
                 "Most instances one app may ask for (replicas, minReplicas, "
                 "maxReplicas, schedules, scale); more is refused at apply")
      ->capture_default_str();
  app.add_option("--max-instances-per-namespace",
                 flags.max_instances_per_namespace,
                 "Most instances the apps of a namespace may run together by "
                 "their specs (0 = no limit); more is refused at apply")
      ->capture_default_str();
  app.add_flag("--allow-private-webhooks{true}", flags.allow_private_webhooks,
               "Let webhooks reach private, loopback and link-local addresses "
               "(auto: only when --listen is a loopback address)")
      ->check(CLI::IsMember({"auto", "true", "false"}))
      ->capture_default_str();
  // Highly available mode (docs/ha.md): with --store=etcd:...
  app.add_option("--node-name", flags.node_name,
                 "This node's name in a highly available cluster (etcd "
                 "store; default: the host name)");
  app.add_option("--advertise-address", flags.advertise_address,
                 "The address other nodes reach this node's gateway and "
                 "instances at (default: the --gateway-listen host)");
  app.add_option("--instance-host", flags.instance_host,
                 "The IPv4 address instances listen on and are reached at "
                 "(their HOST; default 127.0.0.1, or --advertise-address "
                 "with the etcd store)");
  app.add_option("--election-ttl", flags.election_ttl,
                 "Lease of the leader (etcd store): a standby takes over "
                 "within about this long after the leader dies")
      ->capture_default_str();
  app.add_option("--node-lost-timeout", flags.node_lost_timeout,
                 "A node silent this long is lost: its instances are "
                 "replaced on other nodes")
      ->capture_default_str();
  app.add_option("--etcd-compact-keep", flags.etcd_compact_keep,
                 "The leader compacts etcd's history to this many newest "
                 "revisions (0 = never)")
      ->capture_default_str();
  app.add_option("--etcd-compact-interval", flags.etcd_compact_interval,
                 "How often the leader compacts etcd's history")
      ->capture_default_str();
  app.add_option("--etcd-cacert", flags.etcd_cacert,
                 "CA file etcd's certificates are checked against; turns TLS "
                 "to etcd on (so do https:// endpoints in --store)");
  app.add_option("--etcd-cert", flags.etcd_cert,
                 "Client certificate for etcd (its --client-cert-auth; with "
                 "etcd auth on, its common name is the etcd user)");
  app.add_option("--etcd-key", flags.etcd_key,
                 "The private key of --etcd-cert");
  app.add_option("--etcd-server-name", flags.etcd_server_name,
                 "One name every etcd member's certificate must carry "
                 "(default: each names one of the endpoints' hosts)");
  // Instances on Kubernetes (docs/kubernetes.md).
  app.add_option("--runtime", flags.runtime,
                 "Where instances run: process (local child processes) or "
                 "kubernetes (Pods of Deployments)")
      ->check(CLI::IsMember({"process", "kubernetes"}))
      ->capture_default_str();
  app.add_option("--kube-config", flags.kube_config,
                 "A kubeconfig file (--runtime=kubernetes; default: the "
                 "in-cluster service account)");
  app.add_option("--kube-context", flags.kube_context,
                 "The kubeconfig's context to use (default: its current one)");
  app.add_option("--kube-namespace", flags.kube_namespace,
                 "The Kubernetes namespace instances go to (default: the "
                 "service account's or the context's namespace)");
  app.add_option("--kube-namespace-map", flags.kube_namespace_map,
                 "TIDAL_NS=KUBE_NS: the instances of a Tidal namespace go to "
                 "their own Kubernetes namespace (repeatable)");
  app.add_option("--auth", flags.auth,
                 "token: every API call needs a token (docs/auth.md); none: "
                 "anyone may do anything (loopback --listen only)")
      ->capture_default_str()
      ->check(CLI::IsMember({"token", "none"}));
  app.add_option("--auth-token-file", flags.auth_token_file,
                 "The bootstrap admin token: made in this file (0600) when "
                 "the store has no token yet, or read from it (the same "
                 "file on every node of an HA cluster); default "
                 "<data dir>/admin.token");
  app.add_option("--audit-log", flags.audit_log,
                 "Where the audit log goes (one JSON line per mutating or "
                 "denied call; default <data dir>/audit.log; - for none)");
  app.add_option("--audit-level", flags.audit_level,
                 "None, Metadata or Request (Request also records what was "
                 "asked, secret values never)")
      ->capture_default_str();
  app.add_option("--audit-max-size", flags.audit_max_size,
                 "The audit log rotates at this size")
      ->capture_default_str();
  app.add_option("--audit-max-files", flags.audit_max_files,
                 "Rotated audit files kept")
      ->capture_default_str();
  // TLS (docs/tls.md).
  app.add_option("--tls-cert", flags.tls_cert,
                 "PEM certificate (chain) of the gRPC API: the API speaks TLS "
                 "(with --tls-key)");
  app.add_option("--tls-key", flags.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", flags.tls_client_ca,
                 "PEM CA certificate(s): the API requires a client "
                 "certificate signed by one of them (mutual TLS)");
  app.add_option("--tls-peer-ca", flags.tls_peer_ca,
                 "PEM CA certificate(s) other nodes' API certificates are "
                 "checked against when this node relays their logs (HA); "
                 "default --tls-client-ca, else the system's roots");
  app.add_option("--tls-reload-interval", flags.tls_reload_interval,
                 "How often the certificate files (API and gateway) are "
                 "checked for changes; changed ones are served to new "
                 "connections without a restart")
      ->capture_default_str();
  app.add_option("--gateway-tls-listen", flags.gateway_tls_listen,
                 "HTTPS gateway address (e.g. 0.0.0.0:8443); needs "
                 "--gateway-tls-cert");
  app.add_option("--gateway-tls-cert", flags.gateway_tls_cert,
                 "[DOMAIN=]CERT,KEY: a certificate of the HTTPS gateway for "
                 "the server names DOMAIN (and under it; *.DOMAIN: only under "
                 "it) by SNI; without DOMAIN the default (else the first "
                 "one). Repeatable");
  app.add_flag("--gateway-https-redirect", flags.gateway_https_redirect,
               "The plain HTTP gateway answers every request with 308 to "
               "the same URL on https:// (needs --gateway-tls-listen)");
  app.set_version_flag("--version", TIDAL_VERSION);
  CLI11_PARSE(app, argc, argv);
  return tidal::Run(flags);
}
