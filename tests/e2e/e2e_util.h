#pragma once

// Helpers for end-to-end tests: real tidald and tidalctl processes, real app
// processes, free loopback ports, temp dirs, and polling with deadlines.

#include <sys/types.h>

#include <functional>
#include <iosfwd>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "fakes/eventually.h"

namespace tidal::e2e {

using ::tidal::testing::Eventually;

int FreePort();

// A fresh directory under $TMPDIR, removed at the end, unless the test has
// failed: then it stays, and the end of every *.log in it (the daemons' logs)
// is printed to stderr.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// LogTail(path, 100, 60) of every *.log file in `dir` and its direct
// subdirectories (a daemon's data directory; not the instances' logs).
void PrintLogTails(const std::string& dir, std::ostream& out);
// The last `lines` lines of a log, after its last `warnings` warning and
// error lines (tidald's format) that came before them.
std::string LogTail(const std::string& path, size_t lines, size_t warnings = 0);

std::string BuildDir();   // $TIDAL_BUILD_DIR
std::string SourceDir();  // $TIDAL_SOURCE_DIR

// A child process with stdout+stderr to a file.
class Child {
 public:
  Child() = default;
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // Starts argv[0] (a path) with the extra environment.
  bool Start(const std::vector<std::string>& argv, const std::string& log_path,
             const std::map<std::string, std::string>& env = {});
  void Signal(int sig);
  // Waits up to `timeout` for exit; returns the wait status or -1.
  int Wait(absl::Duration timeout);
  bool Running();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a command to completion (with stdin from `input`), capturing output.
CommandResult Run(const std::vector<std::string>& argv,
                  const std::string& input = "",
                  absl::Duration timeout = absl::Seconds(60));

// Pids of live processes (not zombies) whose command line contains `needle`.
std::vector<pid_t> FindProcesses(const std::string& needle);

// Where a Daemon runs: its listen host, and a command prefix that puts it
// (and the tidalctl calls against it) on a test host, e.g. {"ip", "netns",
// "exec", NS} (tests/e2e/netns.h).
struct DaemonPlace {
  std::string host = "127.0.0.1";
  std::vector<std::string> exec_prefix;
};

// A running tidald on free ports in a temp data dir.
class Daemon {
 public:
  explicit Daemon(std::string data_dir,
                  std::vector<std::string> extra_flags = {},
                  DaemonPlace place = {});
  ~Daemon();
  bool Start();  // waits until the API answers
  void Kill9();
  bool Stop();  // SIGTERM and wait
  std::string api() const {
    return place_.host + ":" + std::to_string(api_port_);
  }
  const std::string& host() const { return place_.host; }
  bool Running() { return child_.Running(); }
  pid_t pid() const { return child_.pid(); }
  int gateway_port() const { return gateway_port_; }
  int admin_port() const { return admin_port_; }
  const std::string& log_path() const { return log_path_; }
  const std::string& data_dir() const { return data_dir_; }
  // Runs tidalctl against this daemon (with the bootstrap admin token).
  CommandResult Ctl(const std::vector<std::string>& args,
                    const std::string& input = "");
  // The bootstrap admin token's file (tidald --auth-token-file; default
  // <data dir>/admin.token; the same for every node of an HA cluster), and
  // "--token=<it>" for a tidalctl of a test's own ("" with --auth=none).
  void set_token_file(std::string path) { token_file_ = std::move(path); }
  const std::string& token_file() const { return token_file_; }
  std::string TokenFlag() const;
  // Flags every Ctl call (Start's readiness check included) passes before
  // its arguments, e.g. --certificate-authority for a daemon with TLS.
  void set_ctl_flags(std::vector<std::string> flags) {
    ctl_flags_ = std::move(flags);
  }

 private:
  std::string data_dir_;
  std::vector<std::string> extra_flags_;
  std::vector<std::string> ctl_flags_;
  DaemonPlace place_;
  int api_port_, gateway_port_, admin_port_;
  std::string log_path_;
  std::string token_file_;
  Child child_;
  int starts_ = 0;
};

// Writes `text` to `path`.
void WriteFile(const std::string& path, const std::string& text);
// The contents of `path` (empty if it cannot be read).
std::string ReadFile(const std::string& path);
// The value of an unlabelled metric in Prometheus text (-1 if absent).
double MetricValue(const std::string& text, const std::string& name);

}  // namespace tidal::e2e
