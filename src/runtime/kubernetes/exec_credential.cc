#include "runtime/kubernetes/exec_credential.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "runtime/kubernetes/kube_json.h"

extern char** environ;

namespace tidal::kube {
namespace {

constexpr size_t kMaxStdout = 1 << 20;  // an ExecCredential is a few KB
constexpr size_t kMaxStderr = 4096;     // the end of it, for the message

std::string Name(const KubeConfig& config) {
  return absl::StrCat("exec plugin ", config.exec.command, " (", config.source,
                      ")");
}

// The last lines of a plugin's stderr, on one line.
std::string Tail(const std::string& err) {
  std::string t(absl::StripAsciiWhitespace(err));
  if (t.size() > 512) t = absl::StrCat("...", t.substr(t.size() - 512));
  return absl::StrJoin(absl::StrSplit(t, '\n', absl::SkipEmpty()), " / ");
}

}  // namespace

std::string ExecInfo(const KubeConfig& config) {
  json::object spec;
  spec["interactive"] = false;
  if (config.exec.provide_cluster_info) {
    json::object cluster;
    cluster["server"] = config.server;
    std::string ca = config.ca_data;
    if (ca.empty() && !config.ca_file.empty()) {
      std::ifstream in(config.ca_file, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      ca = ss.str();
    }
    if (!ca.empty())
      cluster["certificate-authority-data"] = absl::Base64Escape(ca);
    if (config.insecure_skip_tls_verify)
      cluster["insecure-skip-tls-verify"] = true;
    spec["cluster"] = std::move(cluster);
  }
  json::object info;
  info["apiVersion"] = config.exec.api_version;
  info["kind"] = "ExecCredential";
  info["spec"] = std::move(spec);
  return json::serialize(info);
}

absl::StatusOr<ExecResult> ParseExecCredential(std::string_view out,
                                               const std::string& api_version) {
  absl::StatusOr<json::value> v = ParseJson(out);
  if (!v.ok() || !v->is_object()) {
    return absl::InvalidArgumentError(
        "its output is not an ExecCredential (JSON)");
  }
  const std::string kind = GetString(*v, {"kind"});
  const std::string version = GetString(*v, {"apiVersion"});
  if (kind != "ExecCredential") {
    return absl::InvalidArgumentError(absl::StrCat(
        "its output is of kind \"", kind, "\", not ExecCredential"));
  }
  if (version != api_version) {
    return absl::InvalidArgumentError(
        absl::StrCat("it returned apiVersion \"", version,
                     "\", the kubeconfig asks for ", api_version));
  }
  const json::value* status = Find(*v, {"status"});
  if (status == nullptr || !status->is_object()) {
    return absl::InvalidArgumentError("it returned no status");
  }
  ExecResult r;
  r.credential.token = GetString(*status, {"token"});
  r.credential.client_cert_pem = GetString(*status, {"clientCertificateData"});
  r.credential.client_key_pem = GetString(*status, {"clientKeyData"});
  if (r.credential.client_cert_pem.empty() !=
      r.credential.client_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "it returned a client certificate or a key, not both");
  }
  if (r.credential.token.empty() && r.credential.client_cert_pem.empty()) {
    return absl::InvalidArgumentError(
        "it returned neither a token nor a client certificate and key");
  }
  const std::string expiry = GetString(*status, {"expirationTimestamp"});
  if (!expiry.empty()) {
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, expiry, &r.expiry, &err)) {
      return absl::InvalidArgumentError(
          absl::StrCat("status.expirationTimestamp \"", expiry,
                       "\" is not an RFC 3339 time: ", err));
    }
  }
  return r;
}

absl::StatusOr<ExecResult> RunExecPlugin(const KubeConfig& config,
                                         absl::Duration timeout) {
  const ExecConfig& exec = config.exec;
  // argv, and the environment: tidald's, the user's env over it, and the
  // exec info.
  std::vector<std::string> args = {exec.command};
  args.insert(args.end(), exec.args.begin(), exec.args.end());
  std::vector<std::string> env;
  absl::flat_hash_set<std::string> set;
  for (const auto& [name, value] : exec.env) set.insert(name);
  set.insert("KUBERNETES_EXEC_INFO");
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view kv(*e);
    if (!set.contains(kv.substr(0, kv.find('=')))) env.emplace_back(kv);
  }
  for (const auto& [name, value] : exec.env)
    env.push_back(absl::StrCat(name, "=", value));
  env.push_back(absl::StrCat("KUBERNETES_EXEC_INFO=", ExecInfo(config)));
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe");
  if (pipe2(err, O_CLOEXEC) != 0) {
    const int e = errno;
    close(out[0]);
    close(out[1]);
    return absl::ErrnoToStatus(e, "pipe");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  pid_t pid = -1;
  const int rc =
      posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    if (rc == ENOENT) {
      return absl::NotFoundError(absl::StrCat(
          Name(config), ": executable not found",
          exec.install_hint.empty()
              ? ""
              : absl::StrCat(
                    " (", absl::StripAsciiWhitespace(exec.install_hint), ")")));
    }
    return absl::UnavailableError(
        absl::StrCat(Name(config), ": cannot run it: ", std::strerror(rc)));
  }
  // Both pipes to their end, within the timeout.
  std::string stdout_text, stderr_text;
  const absl::Time deadline = absl::Now() + timeout;
  bool out_open = true, err_open = true, timed_out = false;
  while (out_open || err_open) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    pollfd fds[2] = {{out_open ? out[0] : -1, POLLIN, 0},
                     {err_open ? err[0] : -1, POLLIN, 0}};
    const int n =
        poll(fds, 2, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (n < 0 && errno != EINTR) break;
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t got = read(fds[i].fd, buf, sizeof(buf));
      if (got <= 0) {
        (i == 0 ? out_open : err_open) = false;
        continue;
      }
      std::string& into = i == 0 ? stdout_text : stderr_text;
      into.append(buf, static_cast<size_t>(got));
      if (i == 1 && into.size() > kMaxStderr)
        into.erase(0, into.size() - kMaxStderr);
    }
    if (stdout_text.size() > kMaxStdout) break;
  }
  close(out[0]);
  close(err[0]);
  // Its exit, within the same deadline: a plugin may close its output and
  // linger.
  int wstatus = 0;
  bool exited = false;
  while (!timed_out && stdout_text.size() <= kMaxStdout) {
    const pid_t w = waitpid(pid, &wstatus, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR)) {
      exited = true;
      break;
    }
    if (absl::Now() >= deadline) {
      timed_out = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
  }
  if (timed_out) {
    return absl::UnavailableError(
        absl::StrCat(Name(config), ": no answer within ",
                     absl::FormatDuration(timeout), "; killed"));
  }
  if (stdout_text.size() > kMaxStdout) {
    return absl::UnavailableError(
        absl::StrCat(Name(config), ": more than 1 MiB of output; killed"));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    const std::string how =
        WIFEXITED(wstatus) ? absl::StrCat("exit status ", WEXITSTATUS(wstatus))
                           : absl::StrCat("signal ", WTERMSIG(wstatus));
    const std::string tail = Tail(stderr_text);
    return absl::UnavailableError(absl::StrCat(
        Name(config), ": failed with ", how, tail.empty() ? "" : ": ", tail));
  }
  absl::StatusOr<ExecResult> r =
      ParseExecCredential(stdout_text, exec.api_version);
  if (!r.ok()) {
    return absl::UnavailableError(
        absl::StrCat(Name(config), ": ", r.status().message()));
  }
  return r;
}

}  // namespace tidal::kube
