#include "fakes/etcd_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fakes/free_port.h"

namespace tidal::testing {

bool HaveEtcd() { return access(kEtcdBinary, X_OK) == 0; }

EtcdProcess::EtcdProcess() : EtcdProcess(Tls()) {}

EtcdProcess::EtcdProcess(const Tls& tls) {
  tls_ = !tls.cert_file.empty();
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "tidal-etcd-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return;
  dir_ = tmpl;
  client_port_ = FreeLoopbackPort();
  const int peer_port = FreeLoopbackPort();
  const std::string client_url =
      absl::StrCat(tls_ ? "https" : "http", "://127.0.0.1:", client_port_);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port);
  std::vector<std::string> args = {kEtcdBinary,
                                   "--name=tidal-test",
                                   "--data-dir=" + dir_ + "/data",
                                   "--listen-client-urls=" + client_url,
                                   "--advertise-client-urls=" + client_url,
                                   "--listen-peer-urls=" + peer_url,
                                   "--initial-advertise-peer-urls=" + peer_url,
                                   "--initial-cluster=tidal-test=" + peer_url,
                                   "--logger=zap",
                                   "--log-level=error"};
  if (tls_) {
    args.push_back("--cert-file=" + tls.cert_file);
    args.push_back("--key-file=" + tls.key_file);
    if (!tls.client_ca_file.empty()) {
      args.push_back("--client-cert-auth");
      args.push_back("--trusted-ca-file=" + tls.client_ca_file);
    }
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = dir_ + "/etcd.log";
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
}

EtcdProcess::~EtcdProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGCONT);
    kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    int status;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));  // polling the child's exit
    }
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string EtcdProcess::endpoint() const {
  return absl::StrCat(tls_ ? "https://" : "", "127.0.0.1:", client_port_);
}

void EtcdProcess::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void EtcdProcess::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

std::string EtcdProcess::Log() const {
  std::ifstream in(dir_ + "/etcd.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::unique_ptr<EtcdStore>> EtcdProcess::Open(
    EtcdStore::Options options, absl::Duration timeout) const {
  if (options.connect_timeout > absl::Seconds(2))
    options.connect_timeout = absl::Seconds(2);
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto store = EtcdStore::Open(endpoint(), options);
    if (store.ok()) return store;
    if (absl::Now() > deadline) {
      return absl::Status(
          store.status().code(),
          absl::StrCat(store.status().message(), "\netcd log:\n", Log()));
    }
  }
}

}  // namespace tidal::testing
