#include "runtime/kubernetes/kube_config.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "runtime/kubernetes/exec_credential.h"

namespace tidal::kube {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", what, " ", path,
                                            ": no such file or not "
                                            "readable"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string Dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string Resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  return absl::StrCat(base_dir, "/", p);
}

// The entry named `name` of a kubeconfig list ("clusters", "users",
// "contexts": [{name: x, cluster|user|context: {...}}]).
absl::StatusOr<YAML::Node> FindNamed(const YAML::Node& root,
                                     const std::string& list,
                                     const std::string& item,
                                     const std::string& name,
                                     const std::string& path) {
  const YAML::Node entries = root[list];
  if (entries && !entries.IsSequence()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": field ", list, ": must be a list"));
  }
  if (entries) {
    for (size_t i = 0; i < entries.size(); ++i) {
      const YAML::Node e = entries[i];
      if (e["name"] && e["name"].as<std::string>() == name) {
        if (!e[item] || !e[item].IsMap()) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": field ", list, "[", i, "].", item, " (",
                           name, "): missing or not a map"));
        }
        return e[item];
      }
    }
  }
  return absl::NotFoundError(absl::StrCat(path, ": field ", list, ": no ", item,
                                          " named \"", name, "\""));
}

std::string Str(const YAML::Node& n, const char* key) {
  const YAML::Node v = n[key];
  if (!v || !v.IsScalar()) return "";
  return v.as<std::string>();
}

absl::StatusOr<std::string> Base64Field(const YAML::Node& n, const char* key,
                                        const std::string& where) {
  std::string encoded = Str(n, key);
  if (encoded.empty()) return std::string();
  std::string decoded;
  if (!absl::Base64Unescape(encoded, &decoded)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", key, ": not valid base64"));
  }
  return decoded;
}

}  // namespace

absl::StatusOr<KubeConfig> LoadInClusterConfig(
    const InClusterOptions& options) {
  std::string host = options.host;
  std::string port = options.port;
  if (host.empty()) {
    const char* h = std::getenv("KUBERNETES_SERVICE_HOST");
    if (h != nullptr) host = h;
  }
  if (port.empty()) {
    const char* p = std::getenv("KUBERNETES_SERVICE_PORT");
    if (p != nullptr) port = p;
  }
  if (host.empty() || port.empty()) {
    return absl::FailedPreconditionError(
        "not running in a Kubernetes cluster: KUBERNETES_SERVICE_HOST and "
        "KUBERNETES_SERVICE_PORT must be set");
  }
  KubeConfig config;
  config.source = "in-cluster";
  // An IPv6 address goes in brackets.
  if (absl::StrContains(host, ':') && host[0] != '[') {
    host = absl::StrCat("[", host, "]");
  }
  config.server = absl::StrCat(options.scheme, "://", host, ":", port);
  config.token_file = options.token_file;
  // Read the token once now, so a missing one is an error at start-up.
  ASSIGN_OR_RETURN(std::string token,
                   ReadFile(options.token_file, "service account token"));
  if (absl::StripAsciiWhitespace(token).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "service account token ", options.token_file, " is empty"));
  }
  if (FileExists(options.ca_file)) config.ca_file = options.ca_file;
  if (FileExists(options.namespace_file)) {
    ASSIGN_OR_RETURN(std::string ns, ReadFile(options.namespace_file,
                                              "service account namespace"));
    ns = std::string(absl::StripAsciiWhitespace(ns));
    if (!ns.empty()) config.namespace_ = ns;
  }
  return config;
}

// users[].user.exec, as client-go reads it (api/v1 ExecConfig).
absl::StatusOr<ExecConfig> ParseExec(const YAML::Node& n,
                                     const std::string& dir,
                                     const std::string& where) {
  if (!n.IsMap())
    return absl::InvalidArgumentError(absl::StrCat(where, ": must be a map"));
  ExecConfig e;
  e.api_version = Str(n, "apiVersion");
  if (e.api_version != "client.authentication.k8s.io/v1" &&
      e.api_version != "client.authentication.k8s.io/v1beta1") {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ".apiVersion: \"", e.api_version,
        "\" is not client.authentication.k8s.io/v1 or v1beta1 (v1alpha1 "
        "left client-go in 1.24)"));
  }
  e.command = Str(n, "command");
  if (e.command.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".command: not set"));
  }
  // A relative path with a directory in it is relative to the kubeconfig
  // (client-go's resolvePaths); a bare name is looked up in PATH.
  if (e.command.find('/') != std::string::npos)
    e.command = Resolve(dir, e.command);
  if (const YAML::Node args = n["args"]) {
    if (!args.IsSequence()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".args: must be a list"));
    }
    for (const YAML::Node& a : args) e.args.push_back(a.as<std::string>());
  }
  if (const YAML::Node env = n["env"]) {
    if (!env.IsSequence()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".env: must be a list"));
    }
    for (size_t i = 0; i < env.size(); ++i) {
      const std::string name = Str(env[i], "name");
      if (name.empty() || name.find('=') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ".env[", i, "].name: must be set, without '='"));
      }
      e.env.emplace_back(name, Str(env[i], "value"));
    }
  }
  e.install_hint = Str(n, "installHint");
  e.provide_cluster_info =
      n["provideClusterInfo"] && n["provideClusterInfo"].as<bool>();
  e.interactive_mode = Str(n, "interactiveMode");
  if (e.interactive_mode.empty()) {
    if (e.api_version == "client.authentication.k8s.io/v1") {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          ".interactiveMode: must be set with apiVersion "
          "client.authentication.k8s.io/v1 (Never or IfAvailable)"));
    }
    e.interactive_mode = "IfAvailable";
  }
  if (e.interactive_mode == "Always") {
    return absl::InvalidArgumentError(absl::StrCat(
        where,
        ".interactiveMode: Always needs a terminal, and tidald "
        "runs without one: use a plugin that can run with Never or "
        "IfAvailable"));
  }
  if (e.interactive_mode != "Never" && e.interactive_mode != "IfAvailable") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".interactiveMode: \"", e.interactive_mode,
                     "\" is not Never, IfAvailable or Always"));
  }
  return e;
}

absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path,
                                          const std::string& context) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, "kubeconfig"));
  return ParseKubeconfig(text, path, context);
}

absl::StatusOr<KubeConfig> ParseKubeconfig(const std::string& yaml,
                                           const std::string& path,
                                           const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a kubeconfig (expected a map)"));
  }
  try {
    std::string context_name = context;
    if (context_name.empty()) context_name = Str(root, "current-context");
    if (context_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": field current-context: not set and no context given"));
    }
    ASSIGN_OR_RETURN(YAML::Node ctx, FindNamed(root, "contexts", "context",
                                               context_name, path));
    const std::string cluster_name = Str(ctx, "cluster");
    const std::string user_name = Str(ctx, "user");
    if (cluster_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": field contexts[", context_name,
                       "].context.cluster: not set"));
    }
    ASSIGN_OR_RETURN(YAML::Node cluster, FindNamed(root, "clusters", "cluster",
                                                   cluster_name, path));
    const std::string dir = Dir(path);
    KubeConfig config;
    config.source = absl::StrCat(path, " (context ", context_name, ")");
    std::string where =
        absl::StrCat(path, ": field clusters[", cluster_name, "].cluster");
    config.server = Str(cluster, "server");
    if (config.server.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".server: not set"));
    }
    if (!absl::StartsWith(config.server, "https://") &&
        !absl::StartsWith(config.server, "http://")) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".server: \"", config.server, "\" is not an http(s) URL"));
    }
    while (absl::EndsWith(config.server, "/")) config.server.pop_back();
    config.ca_file = Resolve(dir, Str(cluster, "certificate-authority"));
    ASSIGN_OR_RETURN(config.ca_data,
                     Base64Field(cluster, "certificate-authority-data", where));
    config.insecure_skip_tls_verify =
        cluster["insecure-skip-tls-verify"] &&
        cluster["insecure-skip-tls-verify"].as<bool>();
    if (!config.ca_file.empty() && !FileExists(config.ca_file)) {
      return absl::NotFoundError(absl::StrCat(where,
                                              ".certificate-authority: file ",
                                              config.ca_file, " not found"));
    }
    if (!user_name.empty()) {
      ASSIGN_OR_RETURN(YAML::Node user,
                       FindNamed(root, "users", "user", user_name, path));
      where = absl::StrCat(path, ": field users[", user_name, "].user");
      config.token = Str(user, "token");
      config.token_file = Resolve(dir, Str(user, "tokenFile"));
      config.client_cert_file = Resolve(dir, Str(user, "client-certificate"));
      ASSIGN_OR_RETURN(config.client_cert_data,
                       Base64Field(user, "client-certificate-data", where));
      config.client_key_file = Resolve(dir, Str(user, "client-key"));
      ASSIGN_OR_RETURN(config.client_key_data,
                       Base64Field(user, "client-key-data", where));
      const bool has_cert =
          !config.client_cert_file.empty() || !config.client_cert_data.empty();
      const bool has_key =
          !config.client_key_file.empty() || !config.client_key_data.empty();
      if (has_cert != has_key) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": client-certificate",
                         has_cert ? "" : "(-data)", " and client-key",
                         has_key ? "" : "(-data)", " must be given together"));
      }
      for (const auto& [file, field] :
           {std::pair{config.client_cert_file, "client-certificate"},
            std::pair{config.client_key_file, "client-key"},
            std::pair{config.token_file, "tokenFile"}}) {
        if (!file.empty() && !FileExists(file)) {
          return absl::NotFoundError(
              absl::StrCat(where, ".", field, ": file ", file, " not found"));
        }
      }
      if (user["auth-provider"]) {
        return absl::UnimplementedError(absl::StrCat(
            where,
            ".auth-provider: not supported (client-go dropped its gcp and "
            "azure providers in 1.26); use their exec plugins "
            "(gke-gcloud-auth-plugin, kubelogin), a token or a client "
            "certificate"));
      }
      if (user["exec"]) {
        config.has_exec = true;
        ASSIGN_OR_RETURN(config.exec, ParseExec(user["exec"], dir,
                                                absl::StrCat(where, ".exec")));
      }
    }
    std::string ns = Str(ctx, "namespace");
    if (!ns.empty()) config.namespace_ = ns;
    return config;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
}

absl::StatusOr<KubeConfig> LoadDefaultConfig(const std::string& kubeconfig) {
  if (!kubeconfig.empty()) return LoadKubeconfig(kubeconfig);
  const char* env = std::getenv("KUBECONFIG");
  if (env != nullptr && *env != '\0') {
    std::vector<std::string> paths = absl::StrSplit(env, ':');
    return LoadKubeconfig(paths[0]);
  }
  const char* home = std::getenv("HOME");
  if (home != nullptr) {
    std::string path = absl::StrCat(home, "/.kube/config");
    if (FileExists(path)) return LoadKubeconfig(path);
  }
  return LoadInClusterConfig();
}

TokenSource::TokenSource(const KubeConfig& config)
    : fixed_token_(config.token),
      token_file_(config.token_file),
      exec_config_(config.has_exec && config.token.empty() &&
                           config.token_file.empty()
                       ? config
                       : KubeConfig{}) {}

absl::Status TokenSource::ExecLocked() {
  static auto logger = GetLogger("kube");
  ASSIGN_OR_RETURN(ExecResult r, RunExecPlugin(exec_config_));
  exec_cred_ = std::move(r.credential);
  exec_expiry_ = r.expiry;
  logger->info("exec plugin {}: {}{}", exec_config_.exec.command,
               exec_cred_.token.empty() ? "a client certificate" : "a token",
               r.expiry == absl::InfiniteFuture()
                   ? ""
                   : absl::StrCat(" until ", absl::FormatTime(r.expiry)));
  return absl::OkStatus();
}

absl::StatusOr<Credential> TokenSource::Get() {
  if (exec_config_.has_exec) {
    absl::MutexLock lock(&mu_);
    if (absl::Now() >= exec_expiry_) RETURN_IF_ERROR(ExecLocked());
    return exec_cred_;
  }
  Credential c;
  ASSIGN_OR_RETURN(c.token, Token());
  return c;
}

absl::Status TokenSource::ReadLocked() {
  struct stat st;
  if (::stat(token_file_.c_str(), &st) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot read token file ", token_file_));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFile(token_file_, "token file"));
  std::string token(absl::StripAsciiWhitespace(text));
  if (token.empty()) {
    return absl::UnavailableError(
        absl::StrCat("token file ", token_file_, " is empty"));
  }
  token_ = std::move(token);
  read_ = true;
  mtime_ns_ =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  size_ = st.st_size;
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenSource::Token() {
  if (exec_config_.has_exec) {
    ASSIGN_OR_RETURN(Credential c, Get());
    return c.token;
  }
  if (token_file_.empty()) return fixed_token_;
  absl::MutexLock lock(&mu_);
  struct stat st;
  bool changed = !read_;
  if (!changed && ::stat(token_file_.c_str(), &st) == 0) {
    int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                    st.st_mtim.tv_nsec;
    changed = mtime != mtime_ns_ || st.st_size != size_;
  }
  if (changed) {
    absl::Status s = ReadLocked();
    // Keep using the last good token when a rotation is half-written.
    if (!s.ok() && !read_) return s;
  }
  return token_;
}

bool TokenSource::Refresh() {
  if (exec_config_.has_exec) {
    absl::MutexLock lock(&mu_);
    const Credential before = exec_cred_;
    if (absl::Status s = ExecLocked(); !s.ok()) {
      GetLogger("kube")->warn("{}", std::string(s.message()));
      return false;
    }
    return exec_cred_.token != before.token ||
           exec_cred_.client_cert_pem != before.client_cert_pem ||
           exec_cred_.client_key_pem != before.client_key_pem;
  }
  if (token_file_.empty()) return false;
  absl::MutexLock lock(&mu_);
  std::string before = token_;
  if (!ReadLocked().ok()) return false;
  return token_ != before;
}

}  // namespace tidal::kube
