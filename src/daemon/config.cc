#include "daemon/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "api/addresses.h"
#include "common/status_macros.h"
#include "common/tls_files.h"
#include "common/units.h"
#include "runtime/namespace_users.h"
#include "runtime/spawner.h"
#include "store/etcd_store.h"

namespace tidal {
namespace {

absl::Status FlagError(absl::string_view flag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": ", what));
}

// A duration flag that must be positive.
absl::StatusOr<absl::Duration> PositiveDurationFlag(const std::string& flag,
                                                    const std::string& text) {
  auto ms = ParseDurationMs(text);
  if (!ms.ok() || *ms <= 0) {
    return FlagError(
        flag, ms.ok() ? "must be > 0" : std::string(ms.status().message()));
  }
  return absl::Milliseconds(*ms);
}

absl::StatusOr<int64_t> BytesFlag(const std::string& flag,
                                  const std::string& text, const char* zero);

// The API's limits (--api-*): message and spec sizes, documents and errors
// of an apply, calls in flight, stalled streams, apply pacing.
absl::Status MakeApiLimits(const DaemonFlags& flags, DaemonConfig* c) {
  auto bytes = [](const std::string& flag, const std::string& value,
                  int64_t min, int64_t max) -> absl::StatusOr<int64_t> {
    auto v = ParseBytes(value);
    if (!v.ok()) return FlagError(flag, std::string(v.status().message()));
    if (*v < min || *v > max) {
      return FlagError(flag, absl::StrCat("must be between ", min, " and ", max,
                                          " bytes, got ", value));
    }
    return *v;
  };
  ApiLimits& api = c->api_limits;
  ASSIGN_OR_RETURN(int64_t message,
                   bytes("--api-max-message-size", flags.api_max_message_size,
                         64 << 10, int64_t{1} << 30));
  api.max_message_bytes = static_cast<size_t>(message);
  spec::InputLimits& in = c->validation.input;
  ASSIGN_OR_RETURN(int64_t spec_size,
                   bytes("--api-max-spec-size", flags.api_max_spec_size,
                         16 << 10, int64_t{1} << 30));
  in.max_document_bytes = static_cast<size_t>(spec_size);
  struct Count {
    const char* flag;
    int value;
    int min;
  };
  for (const Count& n :
       {Count{"--api-max-documents", flags.api_max_documents, 1},
        Count{"--api-max-errors", flags.api_max_errors, 1},
        Count{"--api-max-applies", flags.api_max_applies, 0},
        Count{"--api-max-applies-per-client", flags.api_max_applies_per_client,
              0},
        Count{"--api-max-reads", flags.api_max_reads, 0},
        Count{"--api-max-reads-per-client", flags.api_max_reads_per_client, 0},
        Count{"--api-max-streams", flags.api_max_streams, 0},
        Count{"--api-max-streams-per-client", flags.api_max_streams_per_client,
              0}}) {
    if (n.value < n.min) {
      return FlagError(n.flag, absl::StrCat("must be at least ", n.min,
                                            n.min == 0 ? " (0: no limit)" : "",
                                            ", got ", n.value));
    }
  }
  in.max_documents = flags.api_max_documents;
  in.max_errors = flags.api_max_errors;
  api.max_applies = flags.api_max_applies;
  api.max_applies_per_client = flags.api_max_applies_per_client;
  api.max_reads = flags.api_max_reads;
  api.max_reads_per_client = flags.api_max_reads_per_client;
  api.max_streams = flags.api_max_streams;
  api.max_streams_per_client = flags.api_max_streams_per_client;
  auto stall = ParseDurationMs(flags.api_stream_stall_timeout);
  if (!stall.ok() || *stall < 0) {
    return FlagError("--api-stream-stall-timeout",
                     stall.ok() ? "must be >= 0 (0: never)"
                                : std::string(stall.status().message()));
  }
  api.stream_stall_timeout = absl::Milliseconds(*stall);
  if (flags.api_thread_nice < 0 || flags.api_thread_nice > 19) {
    return FlagError("--api-thread-nice",
                     absl::StrCat("must be 0 to 19 (0: as tidald), got ",
                                  flags.api_thread_nice));
  }
  api.thread_nice = flags.api_thread_nice;
  ASSIGN_OR_RETURN(api.apply_bytes_per_second,
                   BytesFlag("--api-apply-bytes-per-second",
                             flags.api_apply_bytes_per_second, "no pacing"));
  // A rested client sends two of the largest applies at once.
  api.apply_burst_bytes =
      std::max<int64_t>(2 * static_cast<int64_t>(api.max_message_bytes),
                        api.apply_bytes_per_second);
  auto cpu = ParseDurationMs(flags.api_refused_apply_cpu_per_second);
  if (!cpu.ok() || *cpu < 0 || *cpu > 1000) {
    return FlagError("--api-refused-apply-cpu-per-second",
                     cpu.ok() ? "must be 0 to 1s (0: no pacing by CPU)"
                              : std::string(cpu.status().message()));
  }
  api.refused_apply_cpu_per_second = absl::Milliseconds(*cpu);
  return absl::OkStatus();
}

// A byte quantity flag ("10Mi"), at least 0; `zero` says what 0 means.
absl::StatusOr<int64_t> BytesFlag(const std::string& flag,
                                  const std::string& text, const char* zero) {
  auto n = ParseBytes(text);
  if (!n.ok() || *n < 0) {
    return FlagError(flag, n.ok()
                               ? absl::StrCat("must be >= 0 (0 = ", zero, ")")
                               : std::string(n.status().message()));
  }
  return *n;
}

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    const std::string& addr, const std::string& flag) {
  auto colon = addr.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(addr.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": \"", addr, "\" is not host:port (e.g. 127.0.0.1:8080)"));
  }
  return std::make_pair(addr.substr(0, colon), port);
}

// Instances find Tidal's own binaries (and the sample app) on their PATH:
// the directory of this executable and, in a build tree, the examples.
void AddOwnDirectories(std::vector<std::string>* path) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return;
  self[n] = '\0';
  auto dir = std::filesystem::path(self).parent_path();
  path->push_back(dir.string());
  // In a build tree tidald is build/src/daemon/tidald and the sample app
  // build/examples/tidal-sample-app: examples/hello.yaml runs as written.
  std::error_code ec;
  auto examples = dir.parent_path().parent_path() / "examples";
  if (std::filesystem::exists(examples / "tidal-sample-app", ec)) {
    path->push_back(examples.lexically_normal().string());
  }
}

}  // namespace

int64_t RaiseFdLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return int64_t{1} << 20;
  return static_cast<int64_t>(rl.rlim_cur);
}

std::string DefaultDataDir() {
  const char* xdg = getenv("XDG_DATA_HOME");
  if (xdg && *xdg) return absl::StrCat(xdg, "/tidal");
  const char* home = getenv("HOME");
  if (geteuid() == 0 && (home == nullptr || std::string(home) == "/root"))
    return "/var/lib/tidal";
  return absl::StrCat(home ? home : ".", "/.local/share/tidal");
}

std::string DataDir(const DaemonFlags& flags) {
  return flags.data_dir.empty() ? DefaultDataDir() : flags.data_dir;
}

std::string StoreSpec(const DaemonFlags& flags) {
  return flags.store.empty() ? "sqlite:" + DataDir(flags) + "/tidal.db"
                             : flags.store;
}

int64_t DefaultGatewayMaxConnections(int64_t fd_limit) {
  int64_t reserve = std::max<int64_t>(128, fd_limit / 4);
  return std::max<int64_t>(16, fd_limit - reserve);
}

namespace {

bool IsWildcard(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]";
}

// TLS to etcd: the files are checked here, read when the store opens.
absl::Status MakeEtcdTls(const DaemonFlags& flags, DaemonConfig* c) {
  DaemonConfig::EtcdTls& t = c->etcd_tls;
  t.ca_file = flags.etcd_cacert;
  t.cert_file = flags.etcd_cert;
  t.key_file = flags.etcd_key;
  t.server_name = flags.etcd_server_name;
  const std::string endpoints = c->store_spec.substr(strlen("etcd:"));
  auto eps = etcd_internal::ParseEndpoints(endpoints);
  if (!eps.ok()) return FlagError("--store", eps.status().message());
  t.enabled = eps->tls || !t.ca_file.empty();
  if (t.cert_file.empty() != t.key_file.empty()) {
    return FlagError(t.cert_file.empty() ? "--etcd-cert" : "--etcd-key",
                     "--etcd-cert and --etcd-key go together");
  }
  if (!t.enabled && (!t.cert_file.empty() || !t.server_name.empty())) {
    return FlagError(
        t.cert_file.empty() ? "--etcd-server-name" : "--etcd-cert",
        "is for TLS to etcd: name https:// endpoints in --store (or give "
        "--etcd-cacert)");
  }
  if (absl::StrContains(endpoints, "http://") && t.enabled) {
    return FlagError("--store",
                     "names http:// etcd endpoints, but TLS to etcd is on "
                     "(--etcd-cacert): use https://");
  }
  if (!t.ca_file.empty())
    RETURN_IF_ERROR(CheckCaFile(t.ca_file, "--etcd-cacert"));
  if (!t.cert_file.empty()) {
    RETURN_IF_ERROR(CheckKeyPairFiles(t.cert_file, "--etcd-cert", t.key_file,
                                      "--etcd-key"));
  }
  if (!t.enabled) {
    // Whoever reaches etcd can run commands on every node: say so unless
    // it is this machine's loopback.
    for (absl::string_view ep : eps->hosts) {
      if (!absl::StartsWith(ep, "127.") && !absl::StartsWith(ep, "[::1]") &&
          !absl::StartsWith(ep, "localhost:")) {
        c->warnings.push_back(absl::StrCat(
            "etcd at ", ep,
            " is reached in plain text, without a client certificate: "
            "whoever reaches it can read the store and run commands on "
            "every node (docs/ha.md, \"Securing etcd\": https:// endpoints, "
            "--etcd-cacert, --etcd-cert, --etcd-key)"));
        break;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status MakeHaOptions(const DaemonFlags& flags,
                           const std::pair<std::string, int>& gateway,
                           DaemonConfig* c) {
  HaOptions& ha = c->ha;
  ha.enabled = true;
  ha.node = flags.node_name;
  if (ha.node.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == 0) {
      return FlagError("--node-name", "not given and no host name to use");
    }
    ha.node = host;
  }
  for (char ch : ha.node) {
    if (!(absl::ascii_isalnum(ch) || ch == '-' || ch == '.' || ch == '_')) {
      return FlagError("--node-name",
                       absl::StrCat("\"", ha.node,
                                    "\" may hold only letters, digits, '-', "
                                    "'.' and '_'"));
    }
  }
  ha.advertise_address = flags.advertise_address;
  if (ha.advertise_address.empty()) {
    if (IsWildcard(gateway.first)) {
      return FlagError("--advertise-address",
                       "required with the etcd store when --gateway-listen is "
                       "a wildcard address: the address other nodes reach "
                       "this one at");
    }
    ha.advertise_address = gateway.first;
  }
  auto api = SplitHostPort(flags.listen, "listen");
  if (!api.ok()) return api.status();
  ha.api_address =
      absl::StrCat(IsWildcard(api->first) ? ha.advertise_address : api->first,
                   ":", api->second);
  ASSIGN_OR_RETURN(ha.election_ttl,
                   PositiveDurationFlag("--election-ttl", flags.election_ttl));
  if (ha.election_ttl < absl::Seconds(2)) {
    return FlagError("--election-ttl",
                     "must be at least 2s (etcd's shortest lease)");
  }
  ASSIGN_OR_RETURN(
      ha.node_lost_timeout,
      PositiveDurationFlag("--node-lost-timeout", flags.node_lost_timeout));
  // Nodes heartbeat every second (NodeAgentOptions.heartbeat_period): under
  // three, one slow write would have a live node's instances replaced.
  if (ha.node_lost_timeout < absl::Seconds(3)) {
    return FlagError("--node-lost-timeout",
                     absl::StrCat("must be at least 3s (three of the nodes' "
                                  "1s heartbeats), not ",
                                  absl::FormatDuration(ha.node_lost_timeout)));
  }
  if (ha.node_lost_timeout <= ha.election_ttl) {
    c->warnings.push_back(
        "--node-lost-timeout is not longer than --election-ttl: a node whose "
        "tidald restarts may have its instances replaced before it is back");
  }
  if (flags.etcd_compact_keep < 0) {
    return FlagError("--etcd-compact-keep", "must be >= 0 (0 = no compaction)");
  }
  ha.compact_keep = flags.etcd_compact_keep;
  RETURN_IF_ERROR(MakeEtcdTls(flags, c));
  ASSIGN_OR_RETURN(ha.compact_interval,
                   PositiveDurationFlag("--etcd-compact-interval",
                                        flags.etcd_compact_interval));
  // Instances listen where other nodes reach them: the advertised address,
  // unless --instance-host names another.
  in_addr a{};
  if (flags.instance_host == DaemonFlags().instance_host &&
      inet_pton(AF_INET, ha.advertise_address.c_str(), &a) == 1) {
    c->runtime.host = ha.advertise_address;
  }
  return absl::OkStatus();
}

// --tls-*, --gateway-tls-*: the files are read and checked here, so that a
// missing file or a key of another certificate stops tidald at once.
absl::Status MakeTlsOptions(const DaemonFlags& flags, DaemonConfig* c) {
  absl::Duration reload;
  ASSIGN_OR_RETURN(reload, PositiveDurationFlag("--tls-reload-interval",
                                                flags.tls_reload_interval));
  if (reload < absl::Seconds(1)) {
    return FlagError("--tls-reload-interval", "must be at least 1s");
  }
  ApiTlsOptions& api = c->api_tls;
  if (!flags.tls_cert.empty() || !flags.tls_key.empty() ||
      !flags.tls_client_ca.empty()) {
    if (flags.tls_cert.empty() || flags.tls_key.empty()) {
      return FlagError(flags.tls_cert.empty() ? "--tls-cert" : "--tls-key",
                       "--tls-cert and --tls-key go together");
    }
    RETURN_IF_ERROR(CheckKeyPairFiles(flags.tls_cert, "--tls-cert",
                                      flags.tls_key, "--tls-key"));
    if (!flags.tls_client_ca.empty()) {
      RETURN_IF_ERROR(CheckCaFile(flags.tls_client_ca, "--tls-client-ca"));
    }
    api.cert_file = std::filesystem::absolute(flags.tls_cert).string();
    api.key_file = std::filesystem::absolute(flags.tls_key).string();
    if (!flags.tls_client_ca.empty()) {
      api.client_ca_file =
          std::filesystem::absolute(flags.tls_client_ca).string();
    }
  }
  if (!flags.tls_peer_ca.empty()) {
    if (flags.tls_cert.empty()) {
      return FlagError("--tls-peer-ca", "needs --tls-cert and --tls-key");
    }
    RETURN_IF_ERROR(CheckCaFile(flags.tls_peer_ca, "--tls-peer-ca"));
    c->tls_peer_ca = std::filesystem::absolute(flags.tls_peer_ca).string();
  }
  api.reload_interval = reload;

  gateway::GatewayOptions& g = c->gateway;
  g.tls_reload_interval = reload;
  g.https_redirect = flags.gateway_https_redirect;
  if (flags.gateway_tls_listen.empty()) {
    if (!flags.gateway_tls_cert.empty() || flags.gateway_https_redirect) {
      return FlagError(flags.gateway_https_redirect ? "--gateway-https-redirect"
                                                    : "--gateway-tls-cert",
                       "needs --gateway-tls-listen (the HTTPS address)");
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(
      auto addr, SplitHostPort(flags.gateway_tls_listen, "gateway-tls-listen"));
  g.tls_listen_address = addr.first;
  g.tls_port = addr.second;
  if (flags.gateway_tls_cert.empty()) {
    return FlagError("--gateway-tls-listen",
                     "needs at least one --gateway-tls-cert [DOMAIN=]CERT,KEY");
  }
  for (const std::string& spec : flags.gateway_tls_cert) {
    gateway::GatewayTlsCert cert;
    absl::string_view files = spec;
    if (auto eq = spec.find('='); eq != std::string::npos) {
      cert.domain = absl::AsciiStrToLower(spec.substr(0, eq));
      files = absl::string_view(spec).substr(eq + 1);
    }
    std::vector<std::string> parts = absl::StrSplit(files, ',');
    bool domain_ok =
        cert.domain.empty() ||
        (!absl::StrContains(absl::StripPrefix(cert.domain, "*."), "*") &&
         !absl::StripPrefix(cert.domain, "*.").empty());
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty() ||
        (spec.find('=') != std::string::npos && cert.domain.empty()) ||
        !domain_ok) {
      return FlagError("--gateway-tls-cert",
                       absl::StrCat("\"", spec,
                                    "\" is not [DOMAIN=]CERT,KEY (e.g. "
                                    "*.apps.example.com=apps.crt,apps.key)"));
    }
    RETURN_IF_ERROR(CheckKeyPairFiles(parts[0], "--gateway-tls-cert", parts[1],
                                      "--gateway-tls-cert"));
    cert.cert_file = std::filesystem::absolute(parts[0]).string();
    cert.key_file = std::filesystem::absolute(parts[1]).string();
    g.tls_certs.push_back(std::move(cert));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DaemonConfig> MakeDaemonConfig(const DaemonFlags& flags,
                                              int64_t fd_limit) {
  DaemonConfig c;
  c.fd_limit = fd_limit;
  c.data_dir = DataDir(flags);
  c.secrets_key_file = flags.secrets_key_file.empty()
                           ? absl::StrCat(c.data_dir, "/secrets.key")
                           : flags.secrets_key_file;
  c.store_flags = flags.store.empty() ? absl::StrCat("--data-dir ", c.data_dir)
                                      : absl::StrCat("--store ", flags.store);
  c.api_listen = flags.listen;
  c.admin_listen = flags.admin_listen;
  c.dashboard_listen = flags.dashboard_listen;
  if (!c.dashboard_listen.empty() && c.dashboard_listen != "off") {
    RETURN_IF_ERROR(
        SplitHostPort(c.dashboard_listen, "dashboard-listen").status());
  }
  c.domain = flags.domain;
  c.stop_instances_on_exit = flags.stop_instances_on_exit;

  // Store.
  c.store_spec = StoreSpec(flags);
  if (absl::StartsWith(c.store_spec, "sqlite:")) {
    c.store_name = "sqlite";
  } else if (absl::StartsWith(c.store_spec, "etcd:")) {
    c.store_name = "etcd";
  } else {
    return FlagError("--store", absl::StrCat("\"", c.store_spec,
                                             "\" is neither sqlite:PATH nor "
                                             "etcd:HOST:PORT[,HOST:PORT]"));
  }

  // Runtime.
  ProcessRuntimeOptions& ropts = c.runtime;
  ropts.data_dir = c.data_dir;
  std::vector<std::string> range = absl::StrSplit(flags.port_range, '-');
  if (range.size() != 2 || !absl::SimpleAtoi(range[0], &ropts.port_min) ||
      !absl::SimpleAtoi(range[1], &ropts.port_max) ||
      ropts.port_min > ropts.port_max) {
    return FlagError("--port-range",
                     absl::StrCat("\"", flags.port_range,
                                  "\" is not MIN-MAX (e.g. 20000-29999)"));
  }
  ASSIGN_OR_RETURN(
      ropts.startup_timeout,
      PositiveDurationFlag("--startup-timeout", flags.startup_timeout));

  // Limits on specs, checked at apply and scale.
  spec::ValidationOptions& vopts = c.validation;
  vopts = spec::DefaultServerOptions();
  if (flags.max_instances_per_app < 1) {
    return FlagError(
        "--max-instances-per-app",
        absl::StrCat("must be at least 1, got ", flags.max_instances_per_app));
  }
  if (flags.max_instances_per_namespace < 0) {
    return FlagError("--max-instances-per-namespace",
                     absl::StrCat("must be >= 0 (0: no limit), got ",
                                  flags.max_instances_per_namespace));
  }
  vopts.max_instances_per_app = flags.max_instances_per_app;
  vopts.ports = ropts.port_max - ropts.port_min + 1;
  vopts.port_range = flags.port_range;
  if (vopts.max_instances_per_app > vopts.ports) {
    c.warnings.push_back(
        absl::StrCat("--max-instances-per-app ", vopts.max_instances_per_app,
                     " exceeds the ", vopts.ports, " ports of --port-range ",
                     flags.port_range, ": an app may ask for at most ",
                     vopts.ports, " instances"));
  }
  c.max_instances_per_namespace = flags.max_instances_per_namespace;
  c.max_instances_per_app = std::min(vopts.max_instances_per_app, vopts.ports);
  RETURN_IF_ERROR(MakeApiLimits(flags, &c));
  {
    // auto: allowed only when the API itself is bound to loopback (a
    // single-user machine), refused when it is reachable from elsewhere.
    auto api_addr = SplitHostPort(flags.listen, "listen");
    std::string host = api_addr.ok() ? api_addr->first : "";
    bool loopback =
        host == "localhost" || ClassifyLiteral(host) == AddressClass::kLoopback;
    vopts.allow_private_webhooks =
        flags.allow_private_webhooks == "true" ||
        (flags.allow_private_webhooks == "auto" && loopback);
  }

  {
    // Authentication: --auth=none only while the API is reachable from this
    // machine alone.
    if (flags.auth != "token" && flags.auth != "none") {
      return FlagError(
          "--auth", absl::StrCat("\"", flags.auth, "\" is not token or none"));
    }
    c.auth.tokens = flags.auth == "token";
    auto api_addr = SplitHostPort(flags.listen, "listen");
    std::string host = api_addr.ok() ? api_addr->first : "";
    if (!c.auth.tokens && host != "localhost" &&
        ClassifyLiteral(host) != AddressClass::kLoopback) {
      return FlagError(
          "--auth",
          absl::StrCat("none would let anyone who reaches ", flags.listen,
                       " (--listen) do anything; unauthenticated access is "
                       "for a loopback API only (127.0.0.1, ::1)"));
    }
    c.auth.token_file = flags.auth_token_file;
    c.auth.default_token_file = c.data_dir + "/admin.token";
    auto level = auth::ParseAuditLevel(flags.audit_level);
    if (!level.ok())
      return FlagError("--audit-level", level.status().message());
    c.auth.audit.level = *level;
    c.auth.audit.path = flags.audit_log.empty()  ? c.data_dir + "/audit.log"
                        : flags.audit_log == "-" ? std::string()
                                                 : flags.audit_log;
    auto size = BytesFlag("--audit-max-size", flags.audit_max_size, "");
    if (!size.ok()) return size.status();
    if (*size < 4096) return FlagError("--audit-max-size", "must be >= 4Ki");
    c.auth.audit.max_size = *size;
    if (flags.audit_max_files < 1 || flags.audit_max_files > 1000) {
      return FlagError("--audit-max-files", "must be 1 to 1000");
    }
    c.auth.audit.max_files = flags.audit_max_files;
  }

  {
    in_addr a{};
    if (inet_pton(AF_INET, flags.instance_host.c_str(), &a) != 1) {
      return FlagError("--instance-host",
                       absl::StrCat("\"", flags.instance_host,
                                    "\" is not an IPv4 address (e.g. the "
                                    "address other nodes reach this host at)"));
    }
    if (a.s_addr == htonl(INADDR_ANY)) {
      return FlagError("--instance-host",
                       "0.0.0.0 is no address to reach instances at: give "
                       "this host's address (instances listen on it)");
    }
    ropts.host = flags.instance_host;
  }

  // Runtime: containment and logs.
  ropts.cgroup_root =
      flags.instance_cgroup == "auto" ? "" : flags.instance_cgroup;
  if (flags.instance_limits != "auto" && flags.instance_limits != "rlimit" &&
      flags.instance_limits != "off") {
    return FlagError("--instance-limits",
                     absl::StrCat("\"", flags.instance_limits,
                                  "\" is not one of auto, rlimit, off"));
  }
  ropts.limits = flags.instance_limits;
  {
    // Root runs each namespace's instances as a user of its own unless told;
    // anyone else as itself (only root may switch users).
    std::vector<std::string> range =
        absl::StrSplit(flags.instance_uid_range, '-');
    uint32_t first = 0, last = 0;
    if (range.size() != 2 || !absl::SimpleAtoi(range[0], &first) ||
        !absl::SimpleAtoi(range[1], &last) || first == 0 || first > last) {
      return FlagError("--instance-uid-range",
                       absl::StrCat("\"", flags.instance_uid_range,
                                    "\" is not FIRST-LAST (uids above 0, "
                                    "e.g. 1879048192-1879113727)"));
    }
    ropts.instance_uid_first = first;
    ropts.instance_uid_last = last;
    std::string user = flags.instance_user;
    if (user.empty() && geteuid() == 0) {
      user = kPerNamespace;
      if (!UidRangeMapped(first, last)) {
        // A container that maps fewer uids: as before, one user for all.
        c.warnings.push_back(absl::StrCat(
            "--instance-uid-range ", flags.instance_uid_range,
            " is not mapped in this user namespace (/proc/self/uid_map): "
            "every instance runs as nobody, and namespaces do not isolate "
            "their instances from each other (give a range inside the map, "
            "docs/runtime.md)"));
        user = "nobody";
      }
    }
    if (user == kPerNamespace) {
      if (geteuid() != 0) {
        return FlagError("--instance-user",
                         absl::StrCat("per-namespace needs tidald to run as "
                                      "root (it runs as uid ",
                                      geteuid(), ")"));
      }
      if (!UidRangeMapped(first, last)) {
        return FlagError("--instance-uid-range",
                         absl::StrCat(flags.instance_uid_range,
                                      " is not mapped in this user namespace "
                                      "(/proc/self/uid_map)"));
      }
    } else if (!user.empty()) {
      absl::StatusOr<InstanceUser> u = LookupUser(user);
      if (!u.ok()) return FlagError("--instance-user", u.status().message());
      if (u->uid != geteuid() && geteuid() != 0) {
        return FlagError(
            "--instance-user",
            absl::StrCat("tidald runs as uid ", geteuid(),
                         " and cannot run instances as ", u->name, " (uid ",
                         u->uid, "): only root can switch users"));
      }
    }
    ropts.instance_user = user;
  }
  if (flags.max_instances < 0) {
    return FlagError("--max-instances", "must be >= 0 (0 = no limit)");
  }
  ropts.max_instances = flags.max_instances;
  ropts.log_dir = flags.log_dir;
  ASSIGN_OR_RETURN(ropts.log_max_bytes,
                   BytesFlag("--log-max-size", flags.log_max_size, "no cap"));
  ASSIGN_OR_RETURN(
      ropts.log_rate_bytes,
      BytesFlag("--log-rate-limit", flags.log_rate_limit, "no limit"));
  if (flags.log_max_files < 1) {
    return FlagError("--log-max-files", "must be >= 1");
  }
  ropts.log_rotated_files = flags.log_max_files;
  ASSIGN_OR_RETURN(ropts.stopped_log_retention,
                   PositiveDurationFlag("--stopped-log-retention",
                                        flags.stopped_log_retention));
  if (absl::EndsWith(flags.log_min_free, "%")) {
    double pct = 0;
    if (!absl::SimpleAtod(absl::StripSuffix(flags.log_min_free, "%"), &pct) ||
        pct < 0 || pct >= 100) {
      return FlagError("--log-min-free",
                       absl::StrCat("\"", flags.log_min_free,
                                    "\" is not a percentage in [0, 100)"));
    }
    ropts.log_min_free_ratio = pct / 100;
  } else {
    ASSIGN_OR_RETURN(
        ropts.log_min_free_bytes,
        BytesFlag("--log-min-free", flags.log_min_free, "no reserve"));
  }
  AddOwnDirectories(&ropts.extra_path);
  for (const auto& p : flags.instance_path) {
    for (absl::string_view part : absl::StrSplit(p, ':', absl::SkipEmpty())) {
      ropts.extra_path.push_back(
          std::filesystem::absolute(std::string(part)).string());
    }
  }

  // Gateway.
  auto gw_addr = SplitHostPort(flags.gateway_listen, "gateway-listen");
  if (!gw_addr.ok()) return gw_addr.status();
  gateway::GatewayOptions& gopts = c.gateway;
  gopts.listen_address = gw_addr->first;
  gopts.port = gw_addr->second;
  gopts.domain = flags.domain;
  gopts.threads = flags.gateway_threads;
  gopts.queue_size = flags.gateway_queue_size;
  auto queue_timeout = ParseDurationMs(flags.gateway_queue_timeout);
  if (!queue_timeout.ok() || gopts.queue_size < 0) {
    return FlagError("--gateway-queue-size/--gateway-queue-timeout",
                     queue_timeout.ok()
                         ? "must be >= 0"
                         : std::string(queue_timeout.status().message()));
  }
  gopts.queue_timeout = absl::Milliseconds(*queue_timeout);
  if (flags.gateway_max_connections < 0) {
    return FlagError("--gateway-max-connections",
                     "must be >= 0 (0 = derived from the file descriptor "
                     "limit)");
  }
  gopts.max_connections = flags.gateway_max_connections > 0
                              ? flags.gateway_max_connections
                              : DefaultGatewayMaxConnections(fd_limit);
  auto max_body = ParseBytes(flags.gateway_max_body);
  if (!max_body.ok() || *max_body < 0) {
    return FlagError("--gateway-max-body",
                     max_body.ok() ? "must be >= 0 (0 = unlimited)"
                                   : std::string(max_body.status().message()));
  }
  gopts.max_body_bytes = static_cast<uint64_t>(*max_body);
  ASSIGN_OR_RETURN(gopts.connect_timeout,
                   PositiveDurationFlag("--gateway-connect-timeout",
                                        flags.gateway_connect_timeout));
  ASSIGN_OR_RETURN(gopts.response_header_timeout,
                   PositiveDurationFlag("--gateway-response-timeout",
                                        flags.gateway_response_timeout));
  ASSIGN_OR_RETURN(gopts.client_idle_timeout,
                   PositiveDurationFlag("--gateway-idle-timeout",
                                        flags.gateway_idle_timeout));
  ASSIGN_OR_RETURN(gopts.tunnel_idle_timeout,
                   PositiveDurationFlag("--gateway-tunnel-idle-timeout",
                                        flags.gateway_tunnel_idle_timeout));
  ASSIGN_OR_RETURN(gopts.header_timeout,
                   PositiveDurationFlag("--gateway-header-timeout",
                                        flags.gateway_header_timeout));
  if (flags.gateway_max_connections_per_client < 0 ||
      flags.gateway_max_idle_connections < 0) {
    return FlagError(flags.gateway_max_idle_connections < 0
                         ? "--gateway-max-idle-connections"
                         : "--gateway-max-connections-per-client",
                     "must be >= 0 (0 = no limit)");
  }
  gopts.max_connections_per_client = flags.gateway_max_connections_per_client;
  gopts.max_idle_connections = flags.gateway_max_idle_connections;
  auto max_response = ParseBytes(flags.gateway_max_response_body);
  if (!max_response.ok() || *max_response < 0) {
    return FlagError("--gateway-max-response-body",
                     max_response.ok()
                         ? "must be >= 0 (0 = unlimited)"
                         : std::string(max_response.status().message()));
  }
  gopts.max_response_body_bytes = static_cast<uint64_t>(*max_response);

  RETURN_IF_ERROR(MakeTlsOptions(flags, &c));

  // Controller.
  c.workers = flags.workers;
  auto resync = ParseDurationMs(flags.resync);
  if (!resync.ok()) {
    return FlagError("--resync", std::string(resync.status().message()));
  }
  c.resync = absl::Milliseconds(*resync);

  // Highly available mode.
  if (c.store_name == "etcd") {
    RETURN_IF_ERROR(MakeHaOptions(flags, *gw_addr, &c));
  }

  // Where instances run.
  if (flags.runtime != "process" && flags.runtime != "kubernetes") {
    return FlagError("--runtime", absl::StrCat("\"", flags.runtime,
                                               "\" is not process or "
                                               "kubernetes"));
  }
  vopts.runtime = flags.runtime;
  if (flags.runtime == "kubernetes") {
    KubeRuntimeFlags& k = c.kube;
    k.enabled = true;
    k.kubeconfig = flags.kube_config;
    k.context = flags.kube_context;
    k.default_namespace = flags.kube_namespace;
    for (const std::string& m : flags.kube_namespace_map) {
      std::vector<std::string> kv = absl::StrSplit(m, absl::MaxSplits('=', 1));
      if (kv.size() != 2 || kv[0].empty() || kv[1].empty()) {
        return FlagError("--kube-namespace-map",
                         absl::StrCat("\"", m, "\" is not TIDAL_NS=KUBE_NS"));
      }
      k.namespace_map[kv[0]] = kv[1];
    }
    // Pods need no port of this machine.
    vopts.ports = 0;
    vopts.port_range.clear();
  } else if (!flags.kube_config.empty() || !flags.kube_namespace.empty() ||
             !flags.kube_namespace_map.empty() || !flags.kube_context.empty()) {
    return FlagError("--kube-config",
                     "the --kube-* flags need --runtime=kubernetes");
  }
  return c;
}

}  // namespace tidal
