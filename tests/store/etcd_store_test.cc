#include "store/etcd_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "store/store_conformance.h"

namespace tidal {
namespace {

using testing::StoreConformanceTest;
using testing::StoreImpl;
using testing::StoreTestEnv;

constexpr char kEtcdBinary[] = "/usr/bin/etcd";
constexpr int64_t kWatchBuffer = 200;

// A free TCP port on 127.0.0.1 (bound and released; etcd binds it next).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// A single-member etcd running as a child process on loopback ports, with
// its data in a temp dir. Stopped and removed on destruction.
class EtcdProcess {
 public:
  EtcdProcess() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "tidal-etcd-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return;
    dir_ = tmpl;
    client_port_ = FreePort();
    const int peer_port = FreePort();
    const std::string client_url =
        absl::StrCat("http://127.0.0.1:", client_port_);
    const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port);
    std::vector<std::string> args = {
        kEtcdBinary,
        "--name=tidal-test",
        "--data-dir=" + dir_ + "/data",
        "--listen-client-urls=" + client_url,
        "--advertise-client-urls=" + client_url,
        "--listen-peer-urls=" + peer_url,
        "--initial-advertise-peer-urls=" + peer_url,
        "--initial-cluster=tidal-test=" + peer_url,
        "--logger=zap",
        "--log-level=error"};
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

  ~EtcdProcess() {
    if (pid_ > 0) {
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

  std::string endpoint() const {
    return absl::StrCat("127.0.0.1:", client_port_);
  }
  std::string Log() const {
    std::ifstream in(dir_ + "/etcd.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::string dir_;
  int client_port_ = -1;
  pid_t pid_ = -1;
};

class EtcdEnv : public StoreTestEnv {
 public:
  absl::StatusOr<std::unique_ptr<Store>> Open() override {
    auto store = OpenEtcd();
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(std::move(store).value());
  }

  // Retries until etcd has started (first open) or the deadline passes.
  absl::StatusOr<std::unique_ptr<EtcdStore>> OpenEtcd() {
    EtcdStore::Options options;
    options.watch_buffer_events = kWatchBuffer;
    options.connect_timeout = absl::Seconds(2);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (true) {
      auto store = EtcdStore::Open(etcd_.endpoint(), options);
      if (store.ok() || absl::Now() > deadline) {
        if (!store.ok()) {
          return absl::Status(store.status().code(),
                              absl::StrCat(store.status().message(),
                                           "\netcd log:\n", etcd_.Log()));
        }
        return store;
      }
    }
  }

  // Writes ten times more events than a watch buffers, then waits until a
  // probe watch over the same range has received them all, so a watch that
  // did not read in the meantime has overflowed by then.
  absl::Status OverflowWatchers(Store* store,
                                const std::string& prefix) override {
    auto start = store->CurrentVersion();
    if (!start.ok()) return start.status();
    int64_t last = 0;
    for (int batch = 0; batch * 100 < 10 * kWatchBuffer; ++batch) {
      std::vector<Op> ops;
      for (int i = 0; i < 100; ++i) {
        ops.push_back(Op::Put(absl::StrCat(prefix, batch, "/", i), "x"));
      }
      auto r = store->Txn(ops);
      if (!r.ok()) return r.status();
      last = *r;
    }
    // The probe buffers without limit (its own client, default options).
    auto probe_store = EtcdStore::Open(etcd_.endpoint());
    if (!probe_store.ok()) return probe_store.status();
    auto probe = (*probe_store)->WatchPrefix(prefix, *start);
    if (!probe.ok()) return probe.status();
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    int64_t seen = *start;
    while (seen < last && absl::Now() < deadline) {
      auto batch = (*probe)->Next(absl::Milliseconds(200));
      if (!batch.ok()) return batch.status();
      if (!batch->empty()) seen = batch->back().kv.resource_version;
    }
    return seen == last ? absl::OkStatus()
                        : absl::DeadlineExceededError("probe watch lagged");
  }

  // etcd keeps the compaction revision itself watchable: write one more
  // revision and compact at it, so every earlier start is gone.
  absl::Status DiscardHistory(Store* store,
                              const std::string& prefix) override {
    auto rev = store->Txn({Op::Put(prefix + "compact", "x")});
    if (!rev.ok()) return rev.status();
    return static_cast<EtcdStore*>(store)->Compact(*rev);
  }

  bool KeepsWatchHistoryAcrossReopen() const override { return true; }

  std::string endpoint() const { return etcd_.endpoint(); }

 private:
  EtcdProcess etcd_;
};

std::unique_ptr<StoreTestEnv> MakeEtcdEnv() {
  if (access(kEtcdBinary, X_OK) != 0) return nullptr;
  return std::make_unique<EtcdEnv>();
}

INSTANTIATE_TEST_SUITE_P(Etcd, StoreConformanceTest,
                         ::testing::Values(StoreImpl{"etcd", MakeEtcdEnv}),
                         testing::StoreImplName);

TEST(EtcdStoreTest, UnreachableEndpointIsUnavailable) {
  EtcdStore::Options options;
  options.connect_timeout = absl::Milliseconds(500);
  auto store = EtcdStore::Open(absl::StrCat("127.0.0.1:", FreePort()), options);
  EXPECT_TRUE(absl::IsUnavailable(store.status())) << store.status();
}

TEST(EtcdStoreTest, MalformedEndpointsAreInvalid) {
  EXPECT_TRUE(absl::IsInvalidArgument(EtcdStore::Open("nohostport").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(EtcdStore::Open("host:notaport").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(EtcdStore::Open("").status()));
}

TEST(EtcdStoreTest, FailsOverToALiveEndpoint) {
  if (access(kEtcdBinary, X_OK) != 0) GTEST_SKIP() << "no " << kEtcdBinary;
  EtcdEnv env;
  auto first = env.OpenEtcd();  // waits for etcd to be up
  ASSERT_TRUE(first.ok()) << first.status();
  // A dead endpoint first in the list: the client moves on to the live one.
  EtcdStore::Options options;
  options.connect_timeout = absl::Seconds(10);
  auto store = EtcdStore::Open(
      absl::StrCat("127.0.0.1:", FreePort(), ",", env.endpoint()), options);
  ASSERT_TRUE(store.ok()) << store.status();
  auto r = (*store)->Create("/failover", "x");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*first)->Get("/failover")->resource_version, *r);
}

}  // namespace
}  // namespace tidal
