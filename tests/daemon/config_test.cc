// MakeDaemonConfig: good flags become the components' options; each bad
// value is refused with a message that starts with its flag (tidald prints
// it and exits 2).

#include "daemon/config.h"

#include <gtest/gtest.h>

#include <functional>

#include "absl/strings/match.h"

namespace tidal {
namespace {

constexpr int64_t kFdLimit = 4096;

DaemonFlags Defaults() {
  DaemonFlags f;
  f.data_dir = "/tmp/tidal-config-test";
  return f;
}

TEST(DaemonConfigTest, DefaultsBecomeTheComponentsOptions) {
  auto c = MakeDaemonConfig(Defaults(), kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->data_dir, "/tmp/tidal-config-test");
  EXPECT_EQ(c->store_spec, "sqlite:/tmp/tidal-config-test/tidal.db");
  EXPECT_EQ(c->store_name, "sqlite");
  EXPECT_EQ(c->store_flags, "--data-dir /tmp/tidal-config-test");
  EXPECT_EQ(c->secrets_key_file, "/tmp/tidal-config-test/secrets.key");
  EXPECT_EQ(c->api_listen, "127.0.0.1:7070");
  EXPECT_EQ(c->admin_listen, "127.0.0.1:9090");
  EXPECT_EQ(c->domain, "tidal.localhost");
  // Runtime.
  EXPECT_EQ(c->runtime.data_dir, "/tmp/tidal-config-test");
  EXPECT_EQ(c->runtime.port_min, 20000);
  EXPECT_EQ(c->runtime.port_max, 29999);
  EXPECT_EQ(c->runtime.startup_timeout, absl::Minutes(2));
  EXPECT_EQ(c->runtime.host, "127.0.0.1");
  EXPECT_EQ(c->runtime.cgroup_root, "");
  EXPECT_EQ(c->runtime.max_instances, 1000);
  EXPECT_EQ(c->runtime.log_max_bytes, 10 << 20);
  EXPECT_EQ(c->runtime.log_rate_bytes, 4 << 20);
  EXPECT_EQ(c->runtime.log_rotated_files, 1);
  EXPECT_EQ(c->runtime.stopped_log_retention, absl::Hours(1));
  EXPECT_EQ(c->api_limits.thread_nice, 10);
  EXPECT_EQ(c->api_limits.apply_bytes_per_second, 4 << 20);
  EXPECT_EQ(c->api_limits.apply_burst_bytes, 8 << 20);
  EXPECT_EQ(c->runtime.log_min_free_bytes, int64_t{512} << 20);
  EXPECT_FALSE(c->runtime.extra_path.empty());  // this binary's directory
  // Gateway.
  EXPECT_EQ(c->gateway.listen_address, "127.0.0.1");
  EXPECT_EQ(c->gateway.port, 8080);
  EXPECT_EQ(c->gateway.domain, "tidal.localhost");
  EXPECT_EQ(c->gateway.queue_size, 1000);
  EXPECT_EQ(c->gateway.queue_timeout, absl::Seconds(30));
  EXPECT_EQ(c->gateway.max_body_bytes, uint64_t{4} << 30);
  EXPECT_EQ(c->gateway.connect_timeout, absl::Seconds(2));
  EXPECT_EQ(c->gateway.response_header_timeout, absl::Seconds(60));
  EXPECT_EQ(c->gateway.client_idle_timeout, absl::Seconds(60));
  EXPECT_EQ(c->gateway.max_connections, DefaultGatewayMaxConnections(kFdLimit));
  EXPECT_EQ(DefaultGatewayMaxConnections(kFdLimit), 4096 - 1024);
  EXPECT_EQ(DefaultGatewayMaxConnections(256), 128);
  EXPECT_FALSE(c->gateway.on_demand);  // the Server wires it
  // Limits.
  EXPECT_EQ(c->validation.max_instances_per_app, 1000);
  EXPECT_EQ(c->validation.ports, 10000);
  EXPECT_EQ(c->validation.port_range, "20000-29999");
  EXPECT_TRUE(c->validation.allow_private_webhooks);  // loopback API
  EXPECT_EQ(c->max_instances_per_app, 1000);
  EXPECT_EQ(c->max_instances_per_namespace, 0);
  // Controller.
  EXPECT_EQ(c->workers, 16);
  EXPECT_EQ(c->resync, absl::Minutes(5));
  EXPECT_FALSE(c->stop_instances_on_exit);
  EXPECT_TRUE(c->warnings.empty());
}

TEST(DaemonConfigTest, GoodValues) {
  DaemonFlags f = Defaults();
  f.store = "etcd:127.0.0.1:2379,127.0.0.1:2380";
  f.listen = "0.0.0.0:0";
  f.gateway_listen = "0.0.0.0:0";
  f.advertise_address = "10.0.0.5";  // needed with etcd and a wildcard
  f.port_range = "30000-30009";
  f.max_instances_per_app = 50;  // more than the ports: a warning
  f.max_instances_per_namespace = 7;
  f.startup_timeout = "10s";
  f.instance_host = "10.1.2.3";
  f.instance_cgroup = "/sys/fs/cgroup/tidal";
  f.max_instances = 0;
  f.log_max_size = "0";
  f.log_rate_limit = "1Mi";
  f.log_max_files = 3;
  f.stopped_log_retention = "15m";
  f.api_thread_nice = 0;
  f.api_apply_bytes_per_second = "0";
  f.log_min_free = "5%";
  f.instance_path = {"/opt/a:/opt/b", "/opt/c"};
  f.gateway_queue_size = 0;
  f.gateway_queue_timeout = "1s";
  f.gateway_max_body = "0";
  f.gateway_max_connections = 10;
  f.gateway_connect_timeout = "100ms";
  f.workers = 2;
  f.resync = "30s";
  f.stop_instances_on_exit = true;
  auto c = MakeDaemonConfig(f, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->store_spec, "etcd:127.0.0.1:2379,127.0.0.1:2380");
  EXPECT_EQ(c->store_name, "etcd");
  EXPECT_EQ(c->store_flags, "--store etcd:127.0.0.1:2379,127.0.0.1:2380");
  EXPECT_EQ(c->runtime.port_min, 30000);
  EXPECT_EQ(c->runtime.port_max, 30009);
  EXPECT_EQ(c->validation.ports, 10);
  EXPECT_EQ(c->max_instances_per_app, 10);
  EXPECT_EQ(c->max_instances_per_namespace, 7);
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_EQ(c->warnings[0],
            "--max-instances-per-app 50 exceeds the 10 ports of --port-range "
            "30000-30009: an app may ask for at most 10 instances");
  // auto: the API is not on loopback, so private webhooks are refused.
  EXPECT_FALSE(c->validation.allow_private_webhooks);
  EXPECT_EQ(c->runtime.startup_timeout, absl::Seconds(10));
  EXPECT_EQ(c->runtime.host, "10.1.2.3");
  EXPECT_EQ(c->runtime.cgroup_root, "/sys/fs/cgroup/tidal");
  EXPECT_EQ(c->runtime.max_instances, 0);
  EXPECT_EQ(c->runtime.log_max_bytes, 0);
  EXPECT_EQ(c->runtime.log_rate_bytes, 1 << 20);
  EXPECT_EQ(c->runtime.log_rotated_files, 3);
  EXPECT_EQ(c->runtime.stopped_log_retention, absl::Minutes(15));
  EXPECT_EQ(c->api_limits.thread_nice, 0);
  EXPECT_EQ(c->api_limits.apply_bytes_per_second, 0);  // no pacing
  EXPECT_DOUBLE_EQ(c->runtime.log_min_free_ratio, 0.05);
  const auto& path = c->runtime.extra_path;
  ASSERT_GE(path.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(path.end() - 3, path.end()),
            (std::vector<std::string>{"/opt/a", "/opt/b", "/opt/c"}));
  EXPECT_EQ(c->gateway.listen_address, "0.0.0.0");
  EXPECT_EQ(c->gateway.port, 0);
  EXPECT_EQ(c->gateway.queue_size, 0);
  EXPECT_EQ(c->gateway.queue_timeout, absl::Seconds(1));
  EXPECT_EQ(c->gateway.max_body_bytes, 0u);
  EXPECT_EQ(c->gateway.max_connections, 10);
  EXPECT_EQ(c->gateway.connect_timeout, absl::Milliseconds(100));
  EXPECT_EQ(c->workers, 2);
  EXPECT_EQ(c->resync, absl::Seconds(30));
  EXPECT_TRUE(c->stop_instances_on_exit);

  f.allow_private_webhooks = "true";
  c = MakeDaemonConfig(f, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->validation.allow_private_webhooks);
  f.allow_private_webhooks = "false";
  f.listen = "127.0.0.1:7070";
  c = MakeDaemonConfig(f, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->validation.allow_private_webhooks);
}

struct BadCase {
  std::string name;
  std::function<void(DaemonFlags*)> set;
  std::string message;  // the whole message, or its start when `prefix`
  bool prefix = false;
};

TEST(DaemonConfigTest, TheKubernetesRuntimeTakesItsFlags) {
  DaemonFlags f = Defaults();
  f.runtime = "kubernetes";
  f.kube_config = "/etc/tidal/kubeconfig";
  f.kube_namespace = "apps";
  f.kube_namespace_map = {"team-a=a-apps", "team-b=b-apps"};
  auto c = MakeDaemonConfig(f, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->kube.enabled);
  EXPECT_EQ(c->kube.kubeconfig, "/etc/tidal/kubeconfig");
  EXPECT_EQ(c->kube.default_namespace, "apps");
  EXPECT_EQ(c->kube.namespace_map.at("team-b"), "b-apps");
  EXPECT_EQ(c->validation.runtime, "kubernetes");
  EXPECT_EQ(c->validation.ports, 0) << "Pods need no port of this machine";
  auto p = MakeDaemonConfig(Defaults(), kFdLimit);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->kube.enabled);
  EXPECT_EQ(p->validation.runtime, "process");
}

TEST(DaemonConfigTest, EachBadValueNamesItsFlag) {
  const std::vector<BadCase> cases = {
      {"store", [](DaemonFlags* f) { f->store = "redis:1"; },
       "--store: \"redis:1\" is neither sqlite:PATH nor "
       "etcd:HOST:PORT[,HOST:PORT]"},
      {"port-range", [](DaemonFlags* f) { f->port_range = "3000"; },
       "--port-range: \"3000\" is not MIN-MAX (e.g. 20000-29999)"},
      {"port-range reversed", [](DaemonFlags* f) { f->port_range = "9-1"; },
       "--port-range: \"9-1\" is not MIN-MAX (e.g. 20000-29999)"},
      {"startup-timeout zero",
       [](DaemonFlags* f) { f->startup_timeout = "0s"; },
       "--startup-timeout: must be > 0"},
      {"startup-timeout garbage",
       [](DaemonFlags* f) { f->startup_timeout = "soon"; },
       "--startup-timeout: ", true},
      {"instance-host name",
       [](DaemonFlags* f) { f->instance_host = "node-a"; },
       "--instance-host: \"node-a\" is not an IPv4 address (e.g. the address "
       "other nodes reach this host at)"},
      {"instance-host wildcard",
       [](DaemonFlags* f) { f->instance_host = "0.0.0.0"; },
       "--instance-host: 0.0.0.0 is no address to reach instances at: give "
       "this host's address (instances listen on it)"},
      {"max-instances-per-app",
       [](DaemonFlags* f) { f->max_instances_per_app = 0; },
       "--max-instances-per-app: must be at least 1, got 0"},
      {"max-instances-per-namespace",
       [](DaemonFlags* f) { f->max_instances_per_namespace = -1; },
       "--max-instances-per-namespace: must be >= 0 (0: no limit), got -1"},
      {"max-instances", [](DaemonFlags* f) { f->max_instances = -1; },
       "--max-instances: must be >= 0 (0 = no limit)"},
      {"log-max-size negative", [](DaemonFlags* f) { f->log_max_size = "-1"; },
       "--log-max-size: ", true},
      {"log-max-size garbage", [](DaemonFlags* f) { f->log_max_size = "big"; },
       "--log-max-size: ", true},
      {"runtime", [](DaemonFlags* f) { f->runtime = "docker"; },
       "--runtime: \"docker\" is not process or kubernetes"},
      {"kube-namespace-map",
       [](DaemonFlags* f) {
         f->runtime = "kubernetes";
         f->kube_namespace_map = {"team-a"};
       },
       "--kube-namespace-map: \"team-a\" is not TIDAL_NS=KUBE_NS"},
      {"kube flags without the runtime",
       [](DaemonFlags* f) { f->kube_namespace = "apps"; },
       "--kube-config: the --kube-* flags need --runtime=kubernetes"},
      {"log-rate-limit", [](DaemonFlags* f) { f->log_rate_limit = "fast"; },
       "--log-rate-limit: ", true},
      {"log-max-files", [](DaemonFlags* f) { f->log_max_files = 0; },
       "--log-max-files: must be >= 1"},
      {"api-thread-nice below 0",
       [](DaemonFlags* f) { f->api_thread_nice = -1; },
       "--api-thread-nice: must be 0 to 19 (0: as tidald), got -1"},
      {"api-thread-nice above 19",
       [](DaemonFlags* f) { f->api_thread_nice = 20; },
       "--api-thread-nice: must be 0 to 19 (0: as tidald), got 20"},
      {"api-apply-bytes-per-second",
       [](DaemonFlags* f) { f->api_apply_bytes_per_second = "fast"; },
       "--api-apply-bytes-per-second: must be a byte quantity", true},
      {"stopped-log-retention zero",
       [](DaemonFlags* f) { f->stopped_log_retention = "0s"; },
       "--stopped-log-retention: must be > 0"},
      {"stopped-log-retention text",
       [](DaemonFlags* f) { f->stopped_log_retention = "forever"; },
       "--stopped-log-retention: ", true},
      {"log-min-free percent", [](DaemonFlags* f) { f->log_min_free = "100%"; },
       "--log-min-free: \"100%\" is not a percentage in [0, 100)"},
      {"log-min-free bytes", [](DaemonFlags* f) { f->log_min_free = "lots"; },
       "--log-min-free: ", true},
      {"gateway-listen", [](DaemonFlags* f) { f->gateway_listen = "nohost"; },
       "--gateway-listen: \"nohost\" is not host:port (e.g. 127.0.0.1:8080)"},
      {"gateway-listen port",
       [](DaemonFlags* f) { f->gateway_listen = "127.0.0.1:70000"; },
       "--gateway-listen: \"127.0.0.1:70000\" is not host:port (e.g. "
       "127.0.0.1:8080)"},
      {"gateway-queue-size", [](DaemonFlags* f) { f->gateway_queue_size = -1; },
       "--gateway-queue-size/--gateway-queue-timeout: must be >= 0"},
      {"gateway-queue-timeout",
       [](DaemonFlags* f) { f->gateway_queue_timeout = "later"; },
       "--gateway-queue-size/--gateway-queue-timeout: ", true},
      {"gateway-max-connections",
       [](DaemonFlags* f) { f->gateway_max_connections = -1; },
       "--gateway-max-connections: must be >= 0 (0 = derived from the file "
       "descriptor limit)"},
      {"gateway-max-body", [](DaemonFlags* f) { f->gateway_max_body = "-5"; },
       "--gateway-max-body: ", true},
      {"gateway-connect-timeout",
       [](DaemonFlags* f) { f->gateway_connect_timeout = "0ms"; },
       "--gateway-connect-timeout: must be > 0"},
      {"gateway-response-timeout",
       [](DaemonFlags* f) { f->gateway_response_timeout = "0s"; },
       "--gateway-response-timeout: must be > 0"},
      {"gateway-idle-timeout",
       [](DaemonFlags* f) { f->gateway_idle_timeout = "x"; },
       "--gateway-idle-timeout: ", true},
      {"resync", [](DaemonFlags* f) { f->resync = "often"; },
       "--resync: ", true},
      // TLS (docs/tls.md); the files' checks are in tls_e2e_test.
      {"tls-cert alone",
       [](DaemonFlags* f) { f->tls_cert = "/nonexistent/api.crt"; },
       "--tls-key: --tls-cert and --tls-key go together"},
      {"tls-cert missing",
       [](DaemonFlags* f) {
         f->tls_cert = "/nonexistent/api.crt";
         f->tls_key = "/nonexistent/api.key";
       },
       "--tls-cert: /nonexistent/api.crt: No such file or directory"},
      {"tls-peer-ca without a certificate",
       [](DaemonFlags* f) { f->tls_peer_ca = "/nonexistent/ca.crt"; },
       "--tls-peer-ca: needs --tls-cert and --tls-key"},
      {"tls-reload-interval",
       [](DaemonFlags* f) { f->tls_reload_interval = "500ms"; },
       "--tls-reload-interval: must be at least 1s"},
      {"gateway-tls-cert without a listener",
       [](DaemonFlags* f) { f->gateway_tls_cert = {"a.crt,a.key"}; },
       "--gateway-tls-cert: needs --gateway-tls-listen (the HTTPS address)"},
      {"gateway-https-redirect without a listener",
       [](DaemonFlags* f) { f->gateway_https_redirect = true; },
       "--gateway-https-redirect: needs --gateway-tls-listen (the HTTPS "
       "address)"},
      {"gateway-tls-listen without a certificate",
       [](DaemonFlags* f) { f->gateway_tls_listen = "127.0.0.1:8443"; },
       "--gateway-tls-listen: needs at least one --gateway-tls-cert "
       "[DOMAIN=]CERT,KEY"},
      {"gateway-tls-listen not host:port",
       [](DaemonFlags* f) {
         f->gateway_tls_listen = "8443";
         f->gateway_tls_cert = {"a.crt,a.key"};
       },
       "--gateway-tls-listen: \"8443\" is not host:port (e.g. "
       "127.0.0.1:8080)"},
      {"gateway-tls-cert one file",
       [](DaemonFlags* f) {
         f->gateway_tls_listen = "127.0.0.1:8443";
         f->gateway_tls_cert = {"a.example=a.crt"};
       },
       "--gateway-tls-cert: \"a.example=a.crt\" is not [DOMAIN=]CERT,KEY "
       "(e.g. *.apps.example.com=apps.crt,apps.key)"},
      {"gateway-tls-cert bad wildcard",
       [](DaemonFlags* f) {
         f->gateway_tls_listen = "127.0.0.1:8443";
         f->gateway_tls_cert = {"a.*.example=a.crt,a.key"};
       },
       "--gateway-tls-cert: \"a.*.example=a.crt,a.key\" is not "
       "[DOMAIN=]CERT,KEY (e.g. *.apps.example.com=apps.crt,apps.key)"},
      {"gateway-tls-cert missing",
       [](DaemonFlags* f) {
         f->gateway_tls_listen = "127.0.0.1:8443";
         f->gateway_tls_cert = {"/nonexistent/a.crt,/nonexistent/a.key"};
       },
       "--gateway-tls-cert: /nonexistent/a.crt: No such file or directory"},
  };
  for (const auto& tc : cases) {
    DaemonFlags f = Defaults();
    tc.set(&f);
    auto c = MakeDaemonConfig(f, kFdLimit);
    ASSERT_FALSE(c.ok()) << tc.name;
    EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << tc.name;
    const std::string msg(c.status().message());
    if (tc.prefix) {
      EXPECT_TRUE(absl::StartsWith(msg, tc.message)) << tc.name << ": " << msg;
      EXPECT_GT(msg.size(), tc.message.size()) << tc.name << ": " << msg;
    } else {
      EXPECT_EQ(msg, tc.message) << tc.name;
    }
  }
}

TEST(DaemonConfigTest, ParseErrorsKeepTheParsersWords) {
  DaemonFlags f = Defaults();
  f.log_max_size = "-1";
  auto c = MakeDaemonConfig(f, kFdLimit);
  ASSERT_FALSE(c.ok());
  std::string msg(c.status().message());
  EXPECT_TRUE(absl::StartsWith(msg, "--log-max-size: must be a byte quantity"))
      << msg;
  EXPECT_TRUE(absl::StrContains(msg, "not negative")) << msg;

  f = Defaults();
  f.resync = "often";
  c = MakeDaemonConfig(f, kFdLimit);
  ASSERT_FALSE(c.ok());
  msg = std::string(c.status().message());
  EXPECT_TRUE(absl::StrContains(msg, "often")) << msg;
}

TEST(DaemonConfigTest, TheEtcdStoreMakesANodeOfAHighlyAvailableCluster) {
  DaemonFlags f = Defaults();
  auto single = MakeDaemonConfig(f, kFdLimit);
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_FALSE(single->ha.enabled);

  f.store = "etcd:127.0.0.1:2379";
  f.node_name = "n1";
  f.gateway_listen = "10.0.0.1:8080";
  f.listen = "0.0.0.0:7070";
  auto c = MakeDaemonConfig(f, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->ha.enabled);
  EXPECT_EQ(c->ha.node, "n1");
  EXPECT_EQ(c->ha.advertise_address, "10.0.0.1");  // the gateway's host
  EXPECT_EQ(c->ha.api_address, "10.0.0.1:7070");   // wildcard -> advertised
  EXPECT_EQ(c->ha.election_ttl, absl::Seconds(10));
  EXPECT_EQ(c->ha.node_lost_timeout, absl::Seconds(30));
  EXPECT_EQ(c->ha.compact_keep, 10000);
  EXPECT_EQ(c->ha.compact_interval, absl::Minutes(5));
  EXPECT_EQ(c->runtime.host, "10.0.0.1");  // instances other nodes reach

  f.node_name = "";  // the host name
  c = MakeDaemonConfig(f, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->ha.node.empty());

  struct Bad {
    std::function<void(DaemonFlags*)> set;
    std::string prefix;
  };
  for (const Bad& b : std::vector<Bad>{
           {[](DaemonFlags* f) { f->node_name = "a/b"; }, "--node-name: "},
           {[](DaemonFlags* f) { f->gateway_listen = "0.0.0.0:8080"; },
            "--advertise-address: required"},
           {[](DaemonFlags* f) { f->election_ttl = "1s"; },
            "--election-ttl: must be at least 2s"},
           {[](DaemonFlags* f) { f->election_ttl = "soon"; },
            "--election-ttl: "},
           {[](DaemonFlags* f) { f->node_lost_timeout = "0s"; },
            "--node-lost-timeout: "},
           {[](DaemonFlags* f) { f->node_lost_timeout = "100ms"; },
            "--node-lost-timeout: must be at least 3s (three of the nodes' 1s "
            "heartbeats), not 100ms"},
           {[](DaemonFlags* f) { f->etcd_compact_keep = -1; },
            "--etcd-compact-keep: "},
           {[](DaemonFlags* f) { f->etcd_cert = "/c.crt"; },
            "--etcd-key: --etcd-cert and --etcd-key go together"},
           {[](DaemonFlags* f) {
              f->etcd_cert = "/c.crt";
              f->etcd_key = "/c.key";
            },
            "--etcd-cert: is for TLS to etcd: name https:// endpoints"},
           {[](DaemonFlags* f) { f->etcd_server_name = "etcd.lan"; },
            "--etcd-server-name: is for TLS to etcd"},
           {[](DaemonFlags* f) { f->etcd_cacert = "/nonexistent/ca.crt"; },
            "--etcd-cacert: /nonexistent/ca.crt: "},
           {[](DaemonFlags* f) {
              f->store = "etcd:http://127.0.0.1:2379";
              f->etcd_cacert = "/nonexistent/ca.crt";
            },
            "--store: names http:// etcd endpoints, but TLS to etcd is on"},
           {[](DaemonFlags* f) {
              f->store = "etcd:https://127.0.0.1:2379,127.0.0.1:2380";
            },
            "--store: etcd endpoints \"https://127.0.0.1:2379,127.0.0.1:2380\" "
            "mix https:// with plain ones"},
       }) {
    DaemonFlags bad = f;
    bad.node_name = "n1";
    b.set(&bad);
    auto r = MakeDaemonConfig(bad, kFdLimit);
    ASSERT_FALSE(r.ok()) << b.prefix;
    EXPECT_TRUE(absl::StartsWith(r.status().message(), b.prefix)) << r.status();
  }
  // etcd off this machine in plain text: a warning; over TLS, none.
  DaemonFlags remote = f;
  remote.node_name = "n1";
  remote.store = "etcd:10.0.0.2:2379";
  c = MakeDaemonConfig(remote, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->etcd_tls.enabled);
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_TRUE(absl::StrContains(c->warnings[0],
                                "etcd at 10.0.0.2:2379 is reached in plain "
                                "text"))
      << c->warnings[0];
  remote.store = "etcd:https://10.0.0.2:2379";
  c = MakeDaemonConfig(remote, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->etcd_tls.enabled);
  EXPECT_TRUE(c->warnings.empty());
  // Several members over TLS: each certificate names its own member.
  remote.store = "etcd:https://10.0.0.2:2379,https://10.0.0.3:2379";
  c = MakeDaemonConfig(remote, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->warnings.empty());
  DaemonFlags wildcard = f;
  wildcard.node_name = "n1";
  wildcard.gateway_listen = "0.0.0.0:8080";
  wildcard.advertise_address = "10.0.0.9";
  c = MakeDaemonConfig(wildcard, kFdLimit);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ha.api_address, "10.0.0.9:7070");
}

}  // namespace
}  // namespace tidal
