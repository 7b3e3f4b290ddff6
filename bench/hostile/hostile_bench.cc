// bench/hostile: the hostile-input suite's long form (docs/benchmarks.md,
// "Hostile input and overload"). Starts a tidald with one app, measures a
// steady probe of that app while nothing else happens (quiet), then under
// each attack in turn: 12 concurrent applies of the 200,000-unknown-field
// spec (2.9 MB), spec mutations (alias bomb, deep nesting, huge scalars, NUL
// bytes, 5,000 errors), hostile HTTP (smuggling, bad Host), 2,000 idle
// connections, slowloris. Prints, per phase, the probe's success rate and
// p99 next to the quiet p99, tidald's peak and final resident memory, and
// whether each bar of issue 15 holds.
//
// Usage: hostile_bench [--seconds N] [--only TEXT] [--tidald-flag FLAG]...
// --seconds: each attack's length (60 is the long form, the default 10);
// --only: the quiet phase and the attacks whose name holds TEXT; --tidald-flag:
// one more flag for tidald (--tidald-flag=--api-thread-nice=19).
// TIDAL_BUILD_DIR names the build tree (tidald, tidal-sample-app).

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"
#include "hostile/hostile_inputs.h"
#include "tidal/v1/api.grpc.pb.h"

namespace {

using tidal::e2e::Daemon;
using tidal::e2e::HttpClient;
using tidal::e2e::TempDir;

constexpr char kProbeHost[] = "probe.default.tidal.localhost";
constexpr int64_t kRssBoundMb = 512;

int64_t RssKb(pid_t pid, const char* field = "VmRSS:") {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0)
      return std::atoll(line.c_str() + strlen(field));
  }
  return -1;
}

// CPU seconds (user + system) of process `pid` so far.
double CpuSeconds(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(f)),
                   std::istreambuf_iterator<char>());
  // After the command's closing parenthesis: utime and stime are the 12th
  // and 13th fields.
  size_t p = stat.rfind(')');
  if (p == std::string::npos) return 0;
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(p + 2), ' ', absl::SkipEmpty());
  if (fields.size() < 13) return 0;
  return (std::atof(fields[11].c_str()) + std::atof(fields[12].c_str())) /
         sysconf(_SC_CLK_TCK);
}

// A socket to the gateway from `source` (127/8), non-blocking after connect.
int Connect(int port, const std::string& source) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &a.sin_addr);
  // The local port is chosen at connect(), by the whole address pair: a
  // bind() to port 0 would reserve it for every peer, and the hostile-HTTP
  // phase's tens of thousands of connections would leave the machine's
  // ephemeral ports reserved (in TIME-WAIT) for everyone else, the probe
  // included. A failed bind is a failed attack connection, never one from
  // another address.
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool PeerClosed(int fd) {
  char buf[4096];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) continue;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

// The steady probe: one GET of the probe app every 10 ms on a kept-alive
// connection, from 127.0.0.1.
class Probe {
 public:
  explicit Probe(int port) : port_(port) {}
  void Start() {
    stop_ = false;
    thread_ = std::thread([this] {
      HttpClient c(port_, kProbeHost, absl::Seconds(10));
      absl::Time next = absl::Now();
      while (!stop_) {
        auto r = c.Get("/healthz");
        {
          std::lock_guard<std::mutex> l(mu_);
          ++total_;
          if (r.status == 200) {
            latencies_.push_back(absl::ToDoubleMilliseconds(r.latency));
          } else {
            // Why it failed: the status, or the client's error for none.
            ++failures_[r.status != 0 ? absl::StrCat("HTTP ", r.status)
                                      : r.error];
          }
        }
        next += absl::Milliseconds(10);
        absl::Duration wait = next - absl::Now();
        if (wait > absl::ZeroDuration())
          absl::SleepFor(wait);
        else
          next = absl::Now();
      }
    });
  }
  struct Figures {
    int64_t total = 0;
    double success = 0;  // fraction
    double p50 = 0, p99 = 0;
    std::map<std::string, int64_t> failures;  // reason -> count
  };
  Figures Stop() {
    stop_ = true;
    thread_.join();
    std::lock_guard<std::mutex> l(mu_);
    Figures f;
    f.total = total_;
    f.success = total_ ? static_cast<double>(latencies_.size()) / total_ : 0;
    std::sort(latencies_.begin(), latencies_.end());
    auto q = [&](double p) {
      if (latencies_.empty()) return 0.0;
      return latencies_[std::min(latencies_.size() - 1,
                                 static_cast<size_t>(p * latencies_.size()))];
    };
    f.p50 = q(0.50);
    f.p99 = q(0.99);
    f.failures.swap(failures_);
    total_ = 0;
    latencies_.clear();
    return f;
  }

 private:
  const int port_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  int64_t total_ = 0;
  std::vector<double> latencies_;
  std::map<std::string, int64_t> failures_;
};

// tidald's resident memory, sampled every 50 ms while a phase runs.
class RssWatch {
 public:
  explicit RssWatch(pid_t pid) : pid_(pid) {}
  void Start() {
    stop_ = false;
    peak_ = RssKb(pid_);
    thread_ = std::thread([this] {
      while (!stop_) {
        peak_ = std::max<int64_t>(peak_, RssKb(pid_));
        absl::SleepFor(absl::Milliseconds(50));
      }
    });
  }
  int64_t StopPeakKb() {
    stop_ = true;
    thread_.join();
    return peak_;
  }

 private:
  const pid_t pid_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> peak_{0};
  std::thread thread_;
};

std::unique_ptr<tidal::v1::Tidal::Stub> Stub(const std::string& api) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  return tidal::v1::Tidal::NewStub(
      grpc::CreateCustomChannel(api, grpc::InsecureChannelCredentials(), args));
}

grpc::Status Apply(tidal::v1::Tidal::Stub* stub, const std::string& yaml) {
  tidal::v1::ApplyRequest req;
  req.set_yaml(yaml);
  req.set_source("hostile.yaml");
  tidal::v1::ApplyResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return stub->Apply(&ctx, req, &resp);
}

using tidal::hostile::kHead;
using tidal::hostile::UnknownFields;

struct Row {
  std::string attack;
  Probe::Figures probe;
  int64_t peak_kb = 0;
  int64_t after_kb = 0;
  double tidald_cpu = 0;  // seconds during the phase
  double bench_cpu = 0;   // this process (attacker and probe)
  std::string note;
};

}  // namespace

int main(int argc, char** argv) {
  int seconds = 10;
  std::string only;  // --only TEXT: the quiet phase and the attacks named so
  std::vector<std::string> flags = {"--auth=none", "--stop-instances-on-exit",
                                    "--api-max-applies-per-client=12"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atoi(argv[++i]);
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a.rfind("--tidald-flag=", 0) == 0) {
      flags.push_back(a.substr(14));  // --tidald-flag=--api-thread-nice=19
    } else if (a == "--tidald-flag" && i + 1 < argc) {
      flags.push_back(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: hostile_bench [--seconds N] [--only TEXT] "
                   "[--tidald-flag FLAG]...\n");
      return 2;
    }
  }
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);
  const absl::Duration phase = absl::Seconds(seconds);

  TempDir dir;
  // Every apply of the 12 reaches validation (the heaviest path): the
  // per-client limit of applies in flight is raised to 12.
  Daemon daemon(dir.path(), flags);
  if (!daemon.Start()) {
    std::fprintf(stderr, "tidald did not start: %s\n",
                 daemon.log_path().c_str());
    return 1;
  }
  const int gw = daemon.gateway_port();
  auto stub = Stub(daemon.api());
  grpc::Status s = Apply(
      stub.get(),
      "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: probe\n"
      "spec:\n  replicas: 1\n  template:\n    command: [\"tidal-sample-app\"]\n"
      "    readinessProbe:\n      httpGet:\n        path: /healthz\n"
      "      periodSeconds: 1\n");
  if (!s.ok() ||
      !tidal::testing::Eventually(
          [&] {
            return tidal::e2e::HttpGet(gw, kProbeHost, "/healthz").status ==
                   200;
          },
          absl::Seconds(60))) {
    std::fprintf(stderr, "the probe app did not come up: %s\n",
                 s.error_message().c_str());
    return 1;
  }
  const pid_t pid = daemon.pid();
  Probe probe(gw);
  RssWatch rss(pid);
  std::vector<Row> rows;

  // Runs `attack` (until `stop`) for one phase while the probe measures.
  auto run = [&](const std::string& name,
                 const std::function<void(std::atomic<bool> * stop, Row * row)>&
                     attack) {
    if (name != "quiet" && !only.empty() &&
        name.find(only) == std::string::npos) {
      return;
    }
    Row row;
    row.attack = name;
    std::atomic<bool> stop{false};
    const double tidald0 = CpuSeconds(pid), bench0 = CpuSeconds(getpid());
    rss.Start();
    probe.Start();
    std::thread t;
    if (attack) t = std::thread([&] { attack(&stop, &row); });
    absl::SleepFor(phase);
    stop = true;
    if (t.joinable()) t.join();
    row.probe = probe.Stop();
    row.peak_kb = rss.StopPeakKb();
    row.tidald_cpu = CpuSeconds(pid) - tidald0;
    row.bench_cpu = CpuSeconds(getpid()) - bench0;
    absl::SleepFor(absl::Seconds(2));  // let refused requests' memory go
    row.after_kb = RssKb(pid);
    std::fprintf(stderr, "%s: done (%s)\n", name.c_str(), row.note.c_str());
    rows.push_back(row);
  };

  const int64_t start_kb = RssKb(pid);
  run("quiet", nullptr);

  const std::string big = UnknownFields(200000);
  run(absl::StrCat("200,000 unknown fields (", big.size() / 1000,
                   " kB) x12 at once"),
      [&](std::atomic<bool>* stop, Row* row) {
        int rounds = 0, refused = 0, bounded = 0, total = 0;
        size_t longest = 0;
        while (!*stop) {
          std::vector<grpc::Status> got(12);
          std::vector<std::thread> ts;
          for (int i = 0; i < 12; ++i) {
            ts.emplace_back([&, i] {
              auto st = Stub(daemon.api());
              got[i] = Apply(st.get(), big);
            });
          }
          for (auto& th : ts) th.join();
          for (auto& g : got) {
            ++total;
            refused += !g.ok();
            bounded += g.error_message().size() <= 6200;
            longest = std::max(longest, g.error_message().size());
          }
          ++rounds;
        }
        row->note = absl::StrCat(
            rounds, " rounds: ", refused, "/", total, " refused, ", bounded,
            " with a bounded answer (longest ", longest, " bytes)");
      });

  run("spec mutations", [&](std::atomic<bool>* stop, Row* row) {
    const std::vector<std::string> specs = {
        tidal::hostile::AliasBomb(),
        tidal::hostile::DeepNesting(100000),
        std::string(kHead) + "    args: [\"" + std::string(3 << 20, 'a') +
            "\"]\n",
        std::string(kHead) + "    args: [a" + std::string(1, '\0') + "b]\n",
        UnknownFields(5000),
        std::string(kHead) + "    env:\n" +
            [] {
              std::string e;
              for (int i = 0; i < 3000; ++i)
                absl::StrAppend(&e, "      E", i, ": v\n");
              return e;
            }(),
    };
    int n = 0, refused = 0;
    while (!*stop) {
      for (const auto& y : specs) {
        refused += !Apply(stub.get(), y).ok();
        ++n;
      }
    }
    row->note = absl::StrCat(refused, "/", n, " refused");
  });

  run("hostile HTTP (smuggling, bad Host)", [&](std::atomic<bool>* stop,
                                                Row* row) {
    const std::string host = absl::StrCat("Host: ", kProbeHost, "\r\n");
    const std::vector<std::string> reqs = {
        "POST / HTTP/1.1\r\n" + host +
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\n" + host +
            "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\nabc",
        "GET / HTTP/1.1\r\n" + host + host + "\r\n",
        "GET / HTTP/1.1\r\nHost: a@" + std::string(kProbeHost) + "\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    };
    int n = 0, got400 = 0;
    while (!*stop) {
      for (const auto& r : reqs) {
        int fd = Connect(gw, "127.0.0.2");
        if (fd < 0) continue;
        (void)!send(fd, r.data(), r.size(), MSG_NOSIGNAL);
        char buf[256];
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        got400 += k > 12 && std::memcmp(buf, "HTTP/1.1 400", 12) == 0;
        close(fd);
        ++n;
      }
    }
    row->note = absl::StrCat(got400, "/", n, " answered 400");
  });

  run("2,000 idle connections", [&](std::atomic<bool>* stop, Row* row) {
    // From two addresses (1,000 each, within the per-address limit); a
    // connection the gateway closes (header timeout) is opened again.
    std::vector<int> fds;
    int opened = 0, closed = 0;
    for (int i = 0; i < 2000; ++i) {
      fds.push_back(Connect(gw, i % 2 ? "127.0.0.2" : "127.0.0.3"));
      ++opened;
    }
    while (!*stop) {
      for (size_t i = 0; i < fds.size() && !*stop; ++i) {
        if (fds[i] >= 0 && !PeerClosed(fds[i])) continue;
        if (fds[i] >= 0) close(fds[i]);
        ++closed;
        fds[i] = Connect(gw, i % 2 ? "127.0.0.2" : "127.0.0.3");
        ++opened;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
    row->note = absl::StrCat(opened, " opened, ", closed,
                             " closed by the gateway (header timeout)");
  });

  run("slowloris (500 connections, a byte a second)",
      [&](std::atomic<bool>* stop, Row* row) {
        const std::string start =
            absl::StrCat("GET / HTTP/1.1\r\nHost: ", kProbeHost, "\r\nX-A: ");
        std::vector<int> fds;
        int opened = 0, cut = 0;
        auto open_one = [&] {
          int fd = Connect(gw, "127.0.0.4");
          if (fd >= 0)
            (void)!send(fd, start.data(), start.size(), MSG_NOSIGNAL);
          ++opened;
          return fd;
        };
        for (int i = 0; i < 500; ++i) fds.push_back(open_one());
        while (!*stop) {
          for (int& fd : fds) {
            if (fd >= 0 && !PeerClosed(fd) &&
                send(fd, "a", 1, MSG_NOSIGNAL) == 1) {
              continue;
            }
            if (fd >= 0) close(fd);
            ++cut;
            fd = open_one();
          }
          absl::SleepFor(absl::Seconds(1));
        }
        for (int fd : fds) {
          if (fd >= 0) close(fd);
        }
        row->note = absl::StrCat(opened, " opened, ", cut,
                                 " cut by the gateway (header timeout)");
      });

  const int64_t hwm_kb = RssKb(pid, "VmHWM:");
  const Probe::Figures quiet = rows[0].probe;
  std::printf(
      "hostile-input suite: %d s per phase; tidald RSS at start %.0f MB\n",
      seconds, start_kb / 1024.0);
  std::printf("%-52s %9s %8s %8s %7s %9s %9s %8s %8s\n", "phase", "requests",
              "success", "p99 ms", "p99/q", "peak MB", "after MB", "tidald s",
              "bench s");
  bool ok = true;
  for (const Row& r : rows) {
    const double ratio = quiet.p99 > 0 ? r.probe.p99 / quiet.p99 : 0;
    std::printf("%-52s %9lld %7.3f%% %8.2f %7.2f %9.0f %9.0f %8.1f %8.1f\n",
                r.attack.c_str(), static_cast<long long>(r.probe.total),
                100 * r.probe.success, r.probe.p99, ratio, r.peak_kb / 1024.0,
                r.after_kb / 1024.0, r.tidald_cpu, r.bench_cpu);
    if (!r.note.empty()) std::printf("    %s\n", r.note.c_str());
    for (const auto& [why, n] : r.probe.failures)
      std::printf("    probe failed %lld times: %s\n",
                  static_cast<long long>(n), why.c_str());
    ok = ok && r.probe.success >= 0.999 && ratio <= 2.0 &&
         r.peak_kb / 1024 < kRssBoundMb;
  }
  double back_mb = 0;  // 0 when --only left the twelve applies out
  for (const Row& r : rows) {
    if (r.attack.rfind("200,000", 0) != 0) continue;
    back_mb = (r.after_kb - start_kb) / 1024.0;
    std::printf(
        "200,000 unknown fields x12: RSS after - start = %.1f MB (bar < 50 "
        "MB)\n",
        back_mb);
  }
  std::printf("tidald peak RSS (VmHWM) %.0f MB (bound %lld MB); tidald %s\n",
              hwm_kb / 1024.0, static_cast<long long>(kRssBoundMb),
              daemon.Running() ? "alive" : "DEAD");
  ok = ok && back_mb < 50 && daemon.Running() && hwm_kb / 1024 < kRssBoundMb;
  std::printf(
      "bars (success >= 99.9%%, p99 <= 2x quiet, peak < %lld MB, RSS back "
      "within 50 MB): %s\n",
      static_cast<long long>(kRssBoundMb), ok ? "PASS" : "FAIL");
  return ok ? 0 : 2;
}
