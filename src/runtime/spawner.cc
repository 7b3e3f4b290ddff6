#include "runtime/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/cgroup.h"
#include "runtime/proc_stat.h"

namespace tidal {

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

absl::StatusOr<InstanceUser> LookupUser(const std::string& name_or_uid) {
  std::vector<char> buf(16384);
  struct passwd pw, *found = nullptr;
  uint32_t uid = 0;
  int rc = absl::SimpleAtoi(name_or_uid, &uid)
               ? getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)
               : getpwnam_r(name_or_uid.c_str(), &pw, buf.data(), buf.size(),
                            &found);
  if (found == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no user \"", name_or_uid, "\" in the passwd database",
                     rc != 0 ? absl::StrCat(" (", strerror(rc), ")") : ""));
  }
  InstanceUser u;
  u.name = pw.pw_name;
  u.uid = pw.pw_uid;
  u.gid = pw.pw_gid;
  u.home = pw.pw_dir != nullptr ? pw.pw_dir : "/";
  int n = 64;
  for (int round = 0; round < 4; ++round) {
    u.groups.assign(static_cast<size_t>(n), 0);
    int got = n;
    if (getgrouplist(u.name.c_str(), u.gid, u.groups.data(), &got) >= 0) {
      u.groups.resize(static_cast<size_t>(got));
      break;
    }
    n = std::max(got, n * 2);
    u.groups.assign(1, u.gid);
  }
  return u;
}

absl::StatusOr<std::map<std::string, std::string>> ResolveSecretEnv(
    const tidal::v1::Template& tmpl, const std::string& ns,
    const SecretResolver& resolver) {
  std::map<std::string, std::string> out;
  for (const auto& e : tmpl.env()) {
    if (!e.value_from().has_secret_key_ref()) continue;
    const auto& ref = e.value_from().secret_key_ref();
    absl::StatusOr<std::string> v =
        resolver ? resolver(ns, ref.name(), ref.key())
                 : absl::FailedPreconditionError(
                       "this tidald resolves no secrets (no secrets key)");
    if (v.ok()) {
      out[e.name()] = std::move(*v);
    } else if (!(absl::IsNotFound(v.status()) && ref.optional())) {
      return absl::FailedPreconditionError(
          absl::StrCat("CreateContainerConfigError: env ", e.name(), ": ",
                       v.status().message()));
    }
  }
  return out;
}

std::vector<std::string> BuildInstanceEnv(
    const tidal::v1::Instance& instance, const tidal::v1::Template& tmpl,
    const std::vector<std::string>& extra_path,
    const std::map<std::string, std::string>& secret_env,
    const InstanceUser* user) {
  static const char* kInherit[] = {"PATH",     "HOME", "USER",
                                   "LOGNAME",  "LANG", "LC_ALL",
                                   "LC_CTYPE", "TZ",   "TMPDIR"};
  std::map<std::string, std::string> env;
  for (const char* name : kInherit) {
    if (const char* v = getenv(name)) env[name] = v;
  }
  if (user != nullptr && user->uid != geteuid()) {
    env["HOME"] = user->home;
    env["USER"] = user->name;
    env["LOGNAME"] = user->name;
  }
  if (!instance.host().empty()) env["HOST"] = instance.host();
  for (const auto& e : tmpl.env()) {
    if (!e.has_value_from()) {
      env[e.name()] = e.value();
    } else if (auto it = secret_env.find(e.name()); it != secret_env.end()) {
      env[e.name()] = it->second;
    }
  }
  env["PORT"] = std::to_string(instance.port());
  env["TIDAL_APP"] = instance.app();
  env["TIDAL_NAMESPACE"] = instance.namespace_();
  env["TIDAL_INSTANCE"] = instance.id();
  env["TIDAL_REVISION"] = std::to_string(instance.revision());
  if (env.count("PATH") == 0) env["PATH"] = "/usr/local/bin:/usr/bin:/bin";
  if (!extra_path.empty()) {
    env["PATH"] =
        absl::StrCat(absl::StrJoin(extra_path, ":"), ":", env["PATH"]);
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::vector<std::string> CommandCandidates(
    const std::string& cmd, const std::vector<std::string>& env) {
  if (cmd.find('/') != std::string::npos) return {cmd};
  std::string path;
  for (const auto& e : env) {
    if (absl::StartsWith(e, "PATH=")) path = e.substr(5);
  }
  std::vector<std::string> out;
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", cmd);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      out.push_back(std::move(candidate));
    }
  }
  return out;
}

std::string ResolveCommand(const std::string& cmd,
                           const std::vector<std::string>& env) {
  std::vector<std::string> all = CommandCandidates(cmd, env);
  return all.empty() ? "" : all.front();
}

bool PortFree(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

int AboveStdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return moved;
}

absl::StatusOr<Spawned> Spawn(
    SpawnSpec spec,
    const std::function<absl::Status(pid_t pid, uint64_t start_ticks)>&
        record) {
  Spawned out;
  int logfd = AboveStdio(spec.output_fd);
  if (logfd < 0) return absl::InternalError("spawn: no output descriptor");
  if (spec.argv.empty()) {
    close(logfd);
    return absl::InvalidArgumentError("spawn: empty command");
  }
  std::vector<std::string> exes = CommandCandidates(spec.argv[0], spec.env);
  if (exes.empty()) {
    out.error =
        absl::StrCat("executable \"", spec.argv[0], "\" not found in PATH");
    exes.push_back(spec.argv[0]);
  }
  const std::string& exe = exes.front();
  std::vector<const char*> exe_list;
  for (const auto& e : exes) exe_list.push_back(e.c_str());
  const bool switch_user = spec.user.has_value();
  const uid_t uid = switch_user ? spec.user->uid : 0;
  const gid_t gid = switch_user ? spec.user->gid : 0;
  const std::vector<gid_t> groups =
      switch_user ? spec.user->groups : std::vector<gid_t>();
  struct rlimit as_limit;
  as_limit.rlim_cur = as_limit.rlim_max = static_cast<rlim_t>(spec.rlimit_as);
  std::vector<char*> argv, envp;
  for (auto& a : spec.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : spec.env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string& workdir = spec.working_dir;

  int nullfd = AboveStdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
  int go[2] = {-1, -1}, err[2] = {-1, -1};
  if (nullfd < 0 || pipe2(go, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    int e = errno;
    for (int fd : {logfd, nullfd, go[0], go[1], err[0], err[1]}) {
      if (fd >= 0) close(fd);
    }
    return absl::InternalError(absl::StrCat("spawn: ", strerror(e)));
  }
  for (int* fd : {&go[0], &go[1], &err[0], &err[1]}) *fd = AboveStdio(*fd);
  const bool spawn_failed = !out.error.empty();

  pid_t pid = fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    setsid();
    dup2(nullfd, 0);
    dup2(logfd, 1);
    dup2(logfd, 2);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      for (int fd = 3; fd < 4096; ++fd) {
        if (fd != go[0] && fd != err[1]) fcntl(fd, F_SETFD, FD_CLOEXEC);
      }
    }
    // Only the parent may hold the write end: if tidald dies before it
    // recorded us, the read sees EOF and we exit (and drop every
    // descriptor we inherited, its locks among them) instead of waiting
    // forever.
    close(go[1]);
    close(err[0]);
    char c;
    ssize_t n;
    do {
      n = read(go[0], &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(127);  // tidald died before recording us
    auto fail = [&](char tag) {
      int e = errno;
      (void)!write(err[1], &tag, 1);
      (void)!write(err[1], &e, sizeof(e));
      _exit(127);
    };
    if (!spawn_failed) {
      // tidald's own files are private (umask 077 in tidald); an instance's
      // are as usual.
      umask(022);
      if (as_limit.rlim_cur > 0 && setrlimit(RLIMIT_AS, &as_limit) != 0)
        fail('r');
      // Drop privileges: groups first, the uid last (after it nothing
      // else could be changed).
      if (switch_user) {
        if (setgroups(groups.size(), groups.data()) != 0) fail('u');
        if (setgid(gid) != 0 || setuid(uid) != 0) fail('u');
      }
      // As the instance's user: its working directory and command must be
      // open to it.
      if (!workdir.empty() && chdir(workdir.c_str()) != 0) fail('c');
      // Like execvp: a candidate the user may not run gives way to the
      // next one on PATH; the first error is reported.
      int first = 0;
      for (const char* path : exe_list) {
        execve(path, argv.data(), envp.data());
        if (first == 0) first = errno;
      }
      errno = first;
      fail('e');
    }
    _exit(127);
  }
  int fork_errno = errno;
  close(logfd);
  close(nullfd);
  close(go[0]);
  close(err[1]);
  if (pid < 0) {
    close(go[1]);
    close(err[0]);
    return absl::InternalError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  // The child exits without exec when it sees EOF on `go`.
  auto abandon = [&](absl::Status why) {
    close(go[1]);
    close(err[0]);
    waitpid(pid, nullptr, 0);
    return why;
  };
  if (!spec.cgroup.empty()) {
    // Before the child may exec: everything it starts stays in the cgroup.
    absl::Status cs = InstanceCgroups::AddProcess(spec.cgroup, pid);
    if (!cs.ok()) return abandon(cs);
  }
  for (const auto& cg : spec.extra_cgroups) {
    absl::Status cs = InstanceCgroups::AddProcess(cg, pid);
    if (!cs.ok()) return abandon(cs);
  }
  out.pid = pid;
  ProcStat st;
  if (ReadProcStat(pid, &st)) out.start_ticks = st.start_ticks;
  absl::Status rs = record(pid, out.start_ticks);
  if (!rs.ok()) return abandon(rs);
  char go_byte = 'g';
  (void)!write(go[1], &go_byte, 1);
  close(go[1]);
  // Wait for exec (EOF through O_CLOEXEC) or the child's error report.
  char buf[1 + sizeof(int)];
  size_t got = 0;
  while (got < sizeof(buf)) {
    ssize_t n = read(err[0], buf + got, sizeof(buf) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(err[0]);
  if (got == sizeof(buf)) {
    int e;
    memcpy(&e, buf + 1, sizeof(e));
    const std::string as =
        switch_user
            ? absl::StrCat(" as user ", spec.user->name, " (uid ", uid, ")")
            : "";
    switch (buf[0]) {
      case 'c':
        out.error = absl::StrCat("chdir ", workdir, as, ": ", strerror(e));
        break;
      case 'u':
        out.error =
            absl::StrCat("switching to user ", spec.user->name, " (uid ", uid,
                         ", gid ", gid, "): ", strerror(e));
        break;
      case 'r':
        out.error = absl::StrCat("setrlimit(RLIMIT_AS, ", spec.rlimit_as,
                                 "): ", strerror(e));
        break;
      default:
        out.error = absl::StrCat(
            "exec ", exe, as, ": ", strerror(e),
            exes.size() > 1
                ? absl::StrCat(" (tried ", absl::StrJoin(exes, ", "), ")")
                : "");
    }
  }
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    out.pidfd = pidfd;
  }
  return out;
}

}  // namespace tidal
