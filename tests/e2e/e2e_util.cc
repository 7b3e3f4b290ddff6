#include "e2e/e2e_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fakes/free_port.h"
#include "gtest/gtest.h"

namespace tidal::e2e {

int FreePort() { return ::tidal::testing::FreeLoopbackPort(); }

TempDir::TempDir() {
  const char* tmp = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(tmp ? tmp : "/tmp", "/tidal-e2e-XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  path_ = mkdtemp(buf.data());
}

TempDir::~TempDir() {
  std::error_code ec;
  if (::testing::Test::HasFailure()) {
    // The daemons' logs are what explains a failure that shows only in CI:
    // their ends go to the test's output, and the directory stays.
    PrintLogTails(path_, std::cerr);
    std::cerr << "test failed: kept " << path_ << "\n";
    return;
  }
  std::filesystem::remove_all(path_, ec);
}

std::string LogTail(const std::string& path, size_t lines, size_t warnings) {
  std::ifstream in(path);
  std::deque<std::string> tail, warned;
  size_t seen = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++seen;
    // tidald's text format: "<time> W [component] ..." (W and E levels).
    const size_t sp = line.find(' ');
    if (warnings > 0 && sp != std::string::npos && sp + 2 < line.size() &&
        (line[sp + 1] == 'W' || line[sp + 1] == 'E') && line[sp + 2] == ' ') {
      warned.push_back(line);
      if (warned.size() > warnings) warned.pop_front();
    }
    tail.push_back(std::move(line));
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  // Warnings the tail already shows are not repeated.
  if (seen > tail.size()) {
    for (const auto& w : warned) {
      if (std::find(tail.begin(), tail.end(), w) == tail.end()) {
        absl::StrAppend(&out, w, "\n");
      }
    }
    if (!out.empty()) out = "(warnings and errors before the end:)\n" + out;
    absl::StrAppend(&out, "(last ", tail.size(), " of ", seen, " lines:)\n");
  }
  for (const auto& l : tail) absl::StrAppend(&out, l, "\n");
  return out;
}

void PrintLogTails(const std::string& dir, std::ostream& out) {
  std::error_code ec;
  std::vector<std::string> logs;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (it.depth() >= 1) it.disable_recursion_pending();
    if (it->is_regular_file(ec) && it->path().extension() == ".log") {
      logs.push_back(it->path().string());
    }
  }
  std::sort(logs.begin(), logs.end());
  for (const auto& path : logs) {
    out << "----- " << path << "\n" << LogTail(path, 100, 60);
  }
}

std::string BuildDir() {
  const char* d = getenv("TIDAL_BUILD_DIR");
  return d ? d : TIDAL_BUILD_DIR_DEFAULT;
}

std::string SourceDir() {
  const char* d = getenv("TIDAL_SOURCE_DIR");
  return d ? d : TIDAL_SOURCE_DIR_DEFAULT;
}

Child::~Child() {
  if (pid_ > 0 && Running()) {
    Signal(SIGKILL);
    Wait(absl::Seconds(5));
  }
}

bool Child::Start(const std::vector<std::string>& argv,
                  const std::string& log_path,
                  const std::map<std::string, std::string>& env) {
  pid_ = fork();
  if (pid_ < 0) return false;
  if (pid_ == 0) {
    setpgid(0, 0);
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return true;
}

void Child::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int Child::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return status;
    }
    if (absl::Now() >= deadline) return -1;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

bool Child::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

CommandResult Run(const std::vector<std::string>& argv,
                  const std::string& input, absl::Duration timeout) {
  CommandResult result;
  int in[2], out[2], err[2];
  if (pipe(in) || pipe(out) || pipe(err)) return result;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(in[1]);
    close(out[0]);
    close(err[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (!input.empty()) {
    size_t off = 0;
    while (off < input.size()) {
      ssize_t n = write(in[1], input.data() + off, input.size() - off);
      if (n <= 0) break;
      off += n;
    }
  }
  close(in[1]);
  absl::Time deadline = absl::Now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0 && absl::Now() < deadline) {
    if (poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? result.out : result.err).append(buf, n);
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  if (open_fds > 0) kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  result.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::vector<pid_t> FindProcesses(const std::string& needle) {
  std::vector<pid_t> pids;
  DIR* dir = opendir("/proc");
  if (!dir) return pids;
  while (dirent* e = readdir(dir)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string line;
    std::getline(stat, line);
    auto rp = line.rfind(')');
    if (rp == std::string::npos || rp + 2 >= line.size() || line[rp + 2] == 'Z')
      continue;
    std::ifstream f(absl::StrCat("/proc/", pid, "/cmdline"));
    std::stringstream ss;
    ss << f.rdbuf();
    std::string cmd = ss.str();
    for (char& c : cmd) {
      if (c == '\0') c = ' ';
    }
    if (cmd.find(needle) != std::string::npos) pids.push_back(pid);
  }
  closedir(dir);
  return pids;
}

Daemon::Daemon(std::string data_dir, std::vector<std::string> extra_flags,
               DaemonPlace place)
    : data_dir_(std::move(data_dir)),
      extra_flags_(std::move(extra_flags)),
      place_(std::move(place)),
      api_port_(FreePort()),
      gateway_port_(FreePort()),
      admin_port_(FreePort()),
      log_path_(data_dir_ + "/tidald.log"),
      token_file_(data_dir_ + "/admin.token") {}

Daemon::~Daemon() {
  if (child_.Running()) {
    child_.Signal(SIGTERM);
    if (child_.Wait(absl::Seconds(10)) == -1) {
      child_.Signal(SIGKILL);
      child_.Wait(absl::Seconds(5));
    }
  }
}

bool Daemon::Start() {
  std::vector<std::string> argv = place_.exec_prefix;
  for (const std::string& a :
       {BuildDir() + "/src/daemon/tidald", "--data-dir=" + data_dir_,
        "--listen=" + api(),
        "--gateway-listen=" + place_.host + ":" + std::to_string(gateway_port_),
        "--admin-listen=" + place_.host + ":" + std::to_string(admin_port_),
        std::string("--log-level=debug")}) {
    argv.push_back(a);
  }
  argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
  if (std::find(extra_flags_.begin(), extra_flags_.end(), "--auth=none") ==
      extra_flags_.end()) {
    argv.push_back("--auth-token-file=" + token_file_);
  }
  ++starts_;
  if (!child_.Start(argv, log_path_)) return false;
  bool up = Eventually(
      [&] { return child_.Running() && Ctl({"version"}).exit_code == 0; },
      absl::Seconds(30));
  if (!up) {
    // Say why: the end of tidald's log and what tidalctl saw.
    const std::string tail = LogTail(log_path_, 40);
    auto v = Ctl({"version"});
    fprintf(stderr,
            "tidald did not come up (running=%d); tidalctl version: %d %s\n"
            "--- %s ---\n%s",
            child_.Running() ? 1 : 0, v.exit_code, v.err.c_str(),
            log_path_.c_str(), tail.c_str());
  }
  return up;
}

void Daemon::Kill9() {
  child_.Signal(SIGKILL);
  child_.Wait(absl::Seconds(10));
}

bool Daemon::Stop() {
  child_.Signal(SIGTERM);
  return child_.Wait(absl::Seconds(30)) != -1;
}

CommandResult Daemon::Ctl(const std::vector<std::string>& args,
                          const std::string& input) {
  std::vector<std::string> argv = place_.exec_prefix;
  argv.push_back(BuildDir() + "/src/cli/tidalctl");
  argv.push_back("--server=" + api());
  if (std::string token = TokenFlag(); !token.empty()) argv.push_back(token);
  argv.insert(argv.end(), ctl_flags_.begin(), ctl_flags_.end());
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv, input);
}

std::string Daemon::TokenFlag() const {
  std::ifstream f(token_file_);
  std::string token;
  if (!std::getline(f, token) || token.empty()) return "";
  return "--token=" + token;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

double MetricValue(const std::string& text, const std::string& name) {
  size_t pos = text.find("\n" + name + " ");
  if (pos == std::string::npos) return -1;
  return std::strtod(text.c_str() + pos + name.size() + 2, nullptr);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace tidal::e2e
