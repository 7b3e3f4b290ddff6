// deploy/kubernetes against what tidald and the Kubernetes runtime really
// are: every YAML document parses and names itself; the Role grants exactly
// tidal::kube::RequiredRbacRules(); the RoleBinding gives it to the service
// account the Deployment runs as; the Deployment passes only flags the built
// tidald accepts, with ports and probes that match them; the PDB and the
// Services select the Deployment's pods; each kustomization.yaml lists every
// file of its directory.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "runtime/kubernetes/kube_rbac.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;

fs::path SourceDir() {
  const char* d = std::getenv("TIDAL_SOURCE_DIR");
  return d != nullptr ? fs::path(d) : fs::path(TIDAL_SOURCE_DIR_DEFAULT);
}

fs::path ManifestDir() { return SourceDir() / "deploy" / "kubernetes"; }

bool IsYaml(const fs::path& p) {
  return p.extension() == ".yaml" || p.extension() == ".yml";
}

bool IsKustomization(const fs::path& p) {
  return p.filename() == "kustomization.yaml" ||
         p.filename() == "kustomization.yml";
}

// One YAML document of one file.
struct Doc {
  fs::path file;
  int index = 0;  // its position in the file
  YAML::Node node;

  std::string Where() const {
    return fs::relative(file, SourceDir()).string() + " document " +
           std::to_string(index);
  }
  std::string Str(const char* key) const {
    return node[key] && node[key].IsScalar() ? node[key].as<std::string>() : "";
  }
  std::string Kind() const { return Str("kind"); }
  std::string Name() const {
    YAML::Node meta = node["metadata"];
    return meta && meta.IsMap() && meta["name"] && meta["name"].IsScalar()
               ? meta["name"].as<std::string>()
               : "";
  }
};

std::string Scalar(const YAML::Node& n) {
  return n && n.IsScalar() ? n.as<std::string>() : "";
}

std::vector<std::string> Strings(const YAML::Node& seq) {
  std::vector<std::string> out;
  if (!seq || !seq.IsSequence()) return out;
  for (const YAML::Node& n : seq) out.push_back(Scalar(n));
  return out;
}

std::map<std::string, std::string> StringMap(const YAML::Node& map) {
  std::map<std::string, std::string> out;
  if (!map || !map.IsMap()) return out;
  for (const auto& kv : map) out[Scalar(kv.first)] = Scalar(kv.second);
  return out;
}

// Every YAML file under dir (recursively), sorted.
std::vector<fs::path> YamlFiles(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && IsYaml(e.path())) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every non-empty document under dir; a file that does not parse is a test
// failure naming it.
std::vector<Doc> LoadAll(const fs::path& dir) {
  std::vector<Doc> docs;
  for (const fs::path& file : YamlFiles(dir)) {
    std::vector<YAML::Node> nodes;
    try {
      nodes = YAML::LoadAllFromFile(file.string());
    } catch (const YAML::Exception& e) {
      ADD_FAILURE() << file << ": " << e.what();
      continue;
    }
    int index = 0;
    for (const YAML::Node& n : nodes) {
      ++index;
      if (n.IsNull()) continue;  // a trailing "---"
      docs.push_back(Doc{file, index, n});
    }
  }
  return docs;
}

// The documents of the directory's own files (not its subdirectories'):
// what its kustomization.yaml applies.
std::vector<Doc> TopLevel(const std::vector<Doc>& docs) {
  std::vector<Doc> out;
  for (const Doc& d : docs) {
    if (d.file.parent_path() == ManifestDir()) out.push_back(d);
  }
  return out;
}

std::vector<Doc> OfKind(const std::vector<Doc>& docs, const std::string& kind) {
  std::vector<Doc> out;
  for (const Doc& d : docs) {
    if (d.Kind() == kind) out.push_back(d);
  }
  return out;
}

// The documents every test below reads: the HA setup in deploy/kubernetes
// itself (subdirectories are variants with kustomizations of their own).
class ManifestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::is_directory(ManifestDir())) << ManifestDir();
    all_ = LoadAll(ManifestDir());
    top_ = TopLevel(all_);
    for (const Doc& d : top_) {
      if (IsKustomization(d.file)) kustomization_ = d.node;
    }
    ASSERT_TRUE(kustomization_.IsDefined() && kustomization_.IsMap())
        << "no kustomization.yaml in " << ManifestDir();
  }

  // The one document of this kind in the top directory.
  Doc One(const std::string& kind) {
    std::vector<Doc> docs = OfKind(top_, kind);
    EXPECT_EQ(docs.size(), 1u)
        << "want exactly one " << kind << " in " << ManifestDir();
    return docs.empty() ? Doc{} : docs[0];
  }

  // Where a document lands: kustomization.yaml's namespace wins over the
  // document's own.
  std::string NamespaceOf(const Doc& d) {
    std::string ns = Scalar(kustomization_["namespace"]);
    if (!ns.empty()) return ns;
    return Scalar(d.node["metadata"]["namespace"]);
  }

  YAML::Node Container(const Doc& deployment, const std::string& name) {
    for (const YAML::Node& c :
         deployment.node["spec"]["template"]["spec"]["containers"]) {
      if (Scalar(c["name"]) == name) return c;
    }
    ADD_FAILURE() << deployment.Where() << ": no container " << name;
    return YAML::Node();
  }

  std::vector<Doc> all_;
  std::vector<Doc> top_;
  YAML::Node kustomization_;
};

TEST_F(ManifestsTest, EveryDocumentHasApiVersionKindAndName) {
  // namespace, service account, role, role binding, deployment, 2 services,
  // PDB, kustomization: an empty or misplaced directory fails here.
  EXPECT_GE(top_.size(), 9u);
  for (const Doc& d : all_) {
    ASSERT_TRUE(d.node.IsMap()) << d.Where() << ": not a mapping";
    EXPECT_FALSE(d.Str("apiVersion").empty()) << d.Where() << ": apiVersion";
    EXPECT_FALSE(d.Kind().empty()) << d.Where() << ": kind";
    if (IsKustomization(d.file)) {
      EXPECT_EQ(d.Str("apiVersion"), "kustomize.config.k8s.io/v1beta1")
          << d.Where();
      EXPECT_EQ(d.Kind(), "Kustomization") << d.Where();
      continue;
    }
    EXPECT_FALSE(d.Name().empty()) << d.Where() << ": metadata.name";
  }
}

// Every file of a directory with a kustomization.yaml is one of its
// resources or generator inputs, and everything it lists exists.
TEST_F(ManifestsTest, KustomizationListsEveryFile) {
  int checked = 0;
  for (const Doc& k : all_) {
    if (!IsKustomization(k.file)) continue;
    ++checked;
    const fs::path dir = k.file.parent_path();
    std::set<std::string> listed;
    for (const std::string& r : Strings(k.node["resources"])) listed.insert(r);
    for (const char* gen : {"configMapGenerator", "secretGenerator"}) {
      for (const YAML::Node& g : k.node[gen]) {
        for (const std::string& f : Strings(g["files"])) {
          // files: [KEY=]PATH
          std::vector<std::string> parts = absl::StrSplit(f, '=');
          listed.insert(parts.back());
        }
        for (const std::string& f : Strings(g["envs"])) listed.insert(f);
      }
    }
    for (const YAML::Node& p : k.node["patches"]) {
      if (!Scalar(p["path"]).empty()) listed.insert(Scalar(p["path"]));
    }
    std::set<std::string> present;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file() || IsKustomization(e.path())) continue;
      present.insert(e.path().filename().string());
    }
    for (const std::string& f : present) {
      EXPECT_TRUE(listed.count(f))
          << k.Where() << " does not list " << (dir / f);
    }
    for (const std::string& f : listed) {
      EXPECT_TRUE(fs::exists(dir / f))
          << k.Where() << " lists " << f << ", which does not exist";
    }
  }
  EXPECT_GE(checked, 1);
}

TEST_F(ManifestsTest, RoleIsExactlyRequiredRbacRules) {
  Doc role = One("Role");
  EXPECT_EQ(role.Str("apiVersion"), "rbac.authorization.k8s.io/v1");
  const std::vector<kube::RbacRule>& want = kube::RequiredRbacRules();
  YAML::Node rules = role.node["rules"];
  ASSERT_TRUE(rules && rules.IsSequence()) << role.Where() << ": no rules";
  ASSERT_EQ(rules.size(), want.size())
      << role.Where() << ": want one rule per RequiredRbacRules() entry";
  for (size_t i = 0; i < want.size(); ++i) {
    const YAML::Node r = rules[i];
    const std::string at = role.Where() + " rules[" + std::to_string(i) + "]: ";
    EXPECT_EQ(Strings(r["apiGroups"]),
              std::vector<std::string>{want[i].api_group})
        << at << "apiGroups";
    EXPECT_EQ(Strings(r["resources"]),
              std::vector<std::string>{want[i].resource})
        << at << "resources";
    EXPECT_EQ(Strings(r["verbs"]), want[i].verbs)
        << at << "verbs of " << want[i].resource;
    // Nothing else: no resourceNames, no nonResourceURLs.
    for (const auto& kv : r) {
      const std::string key = Scalar(kv.first);
      EXPECT_TRUE(key == "apiGroups" || key == "resources" || key == "verbs")
          << at << "unexpected field " << key;
    }
  }
}

TEST_F(ManifestsTest, RoleBindingGivesTheRoleToTheDeploymentsServiceAccount) {
  Doc deployment = One("Deployment");
  Doc role = One("Role");
  Doc binding = One("RoleBinding");
  Doc sa = One("ServiceAccount");
  const std::string account =
      Scalar(deployment.node["spec"]["template"]["spec"]["serviceAccountName"]);
  ASSERT_FALSE(account.empty())
      << deployment.Where() << ": no serviceAccountName (it would run as "
      << "'default', which the RoleBinding does not name)";
  EXPECT_EQ(sa.Name(), account);

  EXPECT_EQ(binding.Str("apiVersion"), "rbac.authorization.k8s.io/v1");
  YAML::Node ref = binding.node["roleRef"];
  EXPECT_EQ(Scalar(ref["apiGroup"]), "rbac.authorization.k8s.io");
  EXPECT_EQ(Scalar(ref["kind"]), "Role");
  EXPECT_EQ(Scalar(ref["name"]), role.Name());

  const std::string ns = NamespaceOf(deployment);
  ASSERT_FALSE(ns.empty()) << "no namespace for " << deployment.Where();
  EXPECT_EQ(NamespaceOf(role), ns);
  EXPECT_EQ(NamespaceOf(binding), ns);
  EXPECT_EQ(NamespaceOf(sa), ns);
  bool found = false;
  for (const YAML::Node& s : binding.node["subjects"]) {
    if (Scalar(s["kind"]) == "ServiceAccount" && Scalar(s["name"]) == account) {
      found = true;
      // Required for a ServiceAccount subject; kustomize's namespace
      // rewrites it along with the rest.
      EXPECT_EQ(Scalar(s["namespace"]),
                Scalar(sa.node["metadata"]["namespace"]))
          << binding.Where() << ": subject namespace";
    }
  }
  EXPECT_TRUE(found) << binding.Where() << ": no subject ServiceAccount "
                     << account;
}

// The built tidald's --help, and the --flags in it.
std::set<std::string> TidaldFlags() {
  std::set<std::string> flags;
  const std::string cmd = std::string("'") + TIDALD_PATH + "' --help 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "cannot run " << cmd;
    return flags;
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << cmd << ":\n" << out;
  static const std::regex flag("--[a-z0-9][a-z0-9-]*");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), flag);
       it != std::sregex_iterator(); ++it) {
    flags.insert(it->str());
  }
  EXPECT_TRUE(flags.count("--store")) << cmd << " printed:\n" << out;
  return flags;
}

// "--flag=value" → "--flag".
std::string FlagName(const std::string& arg) {
  return arg.substr(0, arg.find('='));
}

// The value of --flag among args, if given.
std::optional<std::string> FlagValue(const std::vector<std::string>& args,
                                     const std::string& flag) {
  for (const std::string& a : args) {
    if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
  }
  return std::nullopt;
}

// The port of HOST:PORT.
int PortOf(const std::string& address) {
  return std::atoi(address.substr(address.rfind(':') + 1).c_str());
}

TEST_F(ManifestsTest, TidaldArgsAreFlagsTidaldAccepts) {
  const std::set<std::string> known = TidaldFlags();
  int containers = 0;
  for (const Doc& d : all_) {
    if (d.Kind() != "Deployment" && d.Kind() != "StatefulSet") continue;
    for (const YAML::Node& c :
         d.node["spec"]["template"]["spec"]["containers"]) {
      std::vector<std::string> command = Strings(c["command"]);
      // No command: the image's entrypoint, which is tidald
      // (deploy/Dockerfile).
      if (!command.empty() && fs::path(command[0]).filename() != "tidald") {
        continue;
      }
      ++containers;
      std::set<std::string> env;
      for (const YAML::Node& e : c["env"]) env.insert(Scalar(e["name"]));
      static const std::regex ref("\\$\\(([A-Za-z_][A-Za-z0-9_]*)\\)");
      for (const std::string& arg : Strings(c["args"])) {
        ASSERT_EQ(arg.rfind("--", 0), 0u)
            << d.Where() << ": argument " << arg << " is not --flag=value";
        const std::string flag = FlagName(arg);
        EXPECT_TRUE(known.count(flag))
            << d.Where() << ": tidald has no flag " << flag;
        // Kubernetes leaves $(VAR) as it is when VAR is not in env.
        for (auto it = std::sregex_iterator(arg.begin(), arg.end(), ref);
             it != std::sregex_iterator(); ++it) {
          EXPECT_TRUE(env.count((*it)[1].str()))
              << d.Where() << ": " << arg << " uses " << (*it)[1]
              << ", which the container's env does not define";
        }
      }
    }
  }
  EXPECT_GE(containers, 1);
}

// The highly available Deployment: the Kubernetes runtime, etcd, a node per
// pod; its ports, probes and namespace agree with its flags.
TEST_F(ManifestsTest, DeploymentRunsHighlyAvailableWithTheKubernetesRuntime) {
  Doc deployment = One("Deployment");
  YAML::Node spec = deployment.node["spec"];
  EXPECT_EQ(spec["replicas"].as<int>(0), 3);
  YAML::Node c = Container(deployment, "tidald");
  ASSERT_TRUE(c.IsDefined());
  const std::vector<std::string> args = Strings(c["args"]);
  EXPECT_EQ(FlagValue(args, "--runtime"), "kubernetes");
  std::optional<std::string> store = FlagValue(args, "--store");
  ASSERT_TRUE(store.has_value());
  EXPECT_EQ(store->rfind("etcd:", 0), 0u) << *store;
  EXPECT_EQ(FlagValue(args, "--node-name"), "$(POD_NAME)");

  // Downward API: each variable from the pod's own fields.
  std::map<std::string, std::string> field_of;
  for (const YAML::Node& e : c["env"]) {
    if (e["valueFrom"]["fieldRef"]) {
      field_of[Scalar(e["name"])] =
          Scalar(e["valueFrom"]["fieldRef"]["fieldPath"]);
    }
  }
  EXPECT_EQ(field_of["POD_NAME"], "metadata.name");
  EXPECT_EQ(field_of["POD_NAMESPACE"], "metadata.namespace");
  if (FlagValue(args, "--advertise-address") == "$(POD_IP)") {
    EXPECT_EQ(field_of["POD_IP"], "status.podIP");
  }

  // Instances go where the Role is: the pod's own namespace by default.
  std::optional<std::string> kube_ns = FlagValue(args, "--kube-namespace");
  if (kube_ns.has_value() && *kube_ns != "$(POD_NAMESPACE)") {
    EXPECT_EQ(*kube_ns, NamespaceOf(One("Role")))
        << "--kube-namespace is not the namespace the Role is in";
  }

  // Every named container port is what the matching flag listens on, on a
  // wildcard address (the kubelet and Services reach the pod's IP).
  std::map<std::string, int> ports;
  for (const YAML::Node& p : c["ports"]) {
    ports[Scalar(p["name"])] = p["containerPort"].as<int>(0);
  }
  const std::map<std::string, std::string> flag_of_port = {
      {"api", "--listen"},
      {"gateway", "--gateway-listen"},
      {"admin", "--admin-listen"}};
  for (const auto& [name, flag] : flag_of_port) {
    ASSERT_TRUE(ports.count(name)) << "no container port " << name;
    std::optional<std::string> listen = FlagValue(args, flag);
    ASSERT_TRUE(listen.has_value()) << flag << " not given";
    EXPECT_EQ(PortOf(*listen), ports[name]) << flag << "=" << *listen;
    EXPECT_EQ(listen->rfind("0.0.0.0:", 0), 0u) << flag << "=" << *listen;
  }

  // Probes on the admin endpoint's paths.
  auto probe = [&](const char* kind) {
    YAML::Node get = c[kind]["httpGet"];
    EXPECT_TRUE(get.IsDefined()) << kind;
    return std::make_pair(Scalar(get["path"]), Scalar(get["port"]));
  };
  EXPECT_EQ(
      probe("readinessProbe"),
      std::make_pair(std::string("/readyz/gateway"), std::string("admin")));
  EXPECT_EQ(probe("livenessProbe"),
            std::make_pair(std::string("/healthz"), std::string("admin")));

  // Non-root; a read-only root filesystem needs --data-dir on a volume.
  YAML::Node pod_sc = spec["template"]["spec"]["securityContext"];
  EXPECT_TRUE(pod_sc["runAsNonRoot"].as<bool>(false));
  YAML::Node sc = c["securityContext"];
  EXPECT_FALSE(sc["allowPrivilegeEscalation"].as<bool>(true));
  if (sc["readOnlyRootFilesystem"].as<bool>(false)) {
    std::optional<std::string> data_dir = FlagValue(args, "--data-dir");
    ASSERT_TRUE(data_dir.has_value());
    bool mounted = false;
    for (const YAML::Node& m : c["volumeMounts"]) {
      if (Scalar(m["mountPath"]) == *data_dir) mounted = true;
    }
    EXPECT_TRUE(mounted) << "--data-dir=" << *data_dir
                         << " is on the read-only root filesystem";
  }

  // The etcd endpoints come from a ConfigMap this kustomization makes.
  for (const YAML::Node& e : c["env"]) {
    YAML::Node ref = e["valueFrom"]["configMapKeyRef"];
    if (!ref) continue;
    const std::string name = Scalar(ref["name"]);
    const std::string key = Scalar(ref["key"]);
    bool found = false;
    for (const YAML::Node& g : kustomization_["configMapGenerator"]) {
      if (Scalar(g["name"]) != name) continue;
      for (const std::string& l : Strings(g["literals"])) {
        if (l.rfind(key + "=", 0) == 0) found = true;
      }
    }
    for (const Doc& cm : OfKind(top_, "ConfigMap")) {
      if (cm.Name() == name && cm.node["data"][key]) found = true;
    }
    EXPECT_TRUE(found) << "env " << Scalar(e["name"]) << ": no ConfigMap "
                       << name << " with key " << key;
  }
}

// selector ⊆ labels.
void ExpectSelects(const std::map<std::string, std::string>& selector,
                   const std::map<std::string, std::string>& labels,
                   const std::string& what) {
  EXPECT_FALSE(selector.empty()) << what << ": empty selector";
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    EXPECT_TRUE(it != labels.end() && it->second == v)
        << what << ": selects " << k << "=" << v
        << ", which the Deployment's pods do not carry";
  }
}

TEST_F(ManifestsTest, PdbAndServicesSelectTheDeploymentsPods) {
  Doc deployment = One("Deployment");
  const auto labels =
      StringMap(deployment.node["spec"]["template"]["metadata"]["labels"]);
  ExpectSelects(StringMap(deployment.node["spec"]["selector"]["matchLabels"]),
                labels, deployment.Where());

  Doc pdb = One("PodDisruptionBudget");
  EXPECT_EQ(pdb.Str("apiVersion"), "policy/v1");
  YAML::Node selector = pdb.node["spec"]["selector"];
  EXPECT_FALSE(selector["matchExpressions"])
      << pdb.Where() << ": matchExpressions are not checked here";
  ExpectSelects(StringMap(selector["matchLabels"]), labels, pdb.Where());
  EXPECT_NE(!pdb.node["spec"]["minAvailable"],
            !pdb.node["spec"]["maxUnavailable"])
      << pdb.Where() << ": one of minAvailable and maxUnavailable";
  EXPECT_EQ(NamespaceOf(pdb), NamespaceOf(deployment));

  // Each Service port reaches a container port; together they expose the
  // gateway (8080) and the API (7070).
  YAML::Node c = Container(deployment, "tidald");
  std::map<std::string, int> ports;
  for (const YAML::Node& p : c["ports"]) {
    ports[Scalar(p["name"])] = p["containerPort"].as<int>(0);
  }
  std::set<int> exposed;
  std::vector<Doc> services = OfKind(top_, "Service");
  EXPECT_GE(services.size(), 2u);
  for (const Doc& s : services) {
    ExpectSelects(StringMap(s.node["spec"]["selector"]), labels, s.Where());
    EXPECT_EQ(NamespaceOf(s), NamespaceOf(deployment));
    for (const YAML::Node& p : s.node["spec"]["ports"]) {
      const std::string target = Scalar(p["targetPort"]);
      int container_port = 0;
      if (ports.count(target)) {
        container_port = ports[target];
      } else {
        container_port =
            std::atoi((target.empty() ? Scalar(p["port"]) : target).c_str());
      }
      bool declared = false;
      for (const auto& [name, port] : ports) {
        if (port == container_port) declared = true;
      }
      EXPECT_TRUE(declared)
          << s.Where() << ": port " << Scalar(p["port"]) << " targets "
          << target << ", not a port of the container";
      exposed.insert(container_port);
    }
  }
  EXPECT_TRUE(exposed.count(8080)) << "no Service for the gateway";
  EXPECT_TRUE(exposed.count(7070)) << "no Service for the API";
}

}  // namespace
}  // namespace tidal
