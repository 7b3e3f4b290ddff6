#include "e2e/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "e2e/e2e_util.h"

namespace tidal::e2e {
namespace {

constexpr char kIp[] = "/bin/ip";

bool Ip(const std::vector<std::string>& args, std::string* why) {
  std::vector<std::string> argv = {kIp};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = Run(argv, "", absl::Seconds(20));
  if (r.exit_code != 0) {
    if (why != nullptr) {
      *why = absl::StrCat("ip ", absl::StrJoin(args, " "), ": exit ",
                          r.exit_code, ": ", r.err);
    }
    return false;
  }
  return true;
}

// Kills every process left in the namespace.
void KillAll(const std::string& ns) {
  CommandResult r = Run({kIp, "netns", "pids", ns}, "", absl::Seconds(10));
  for (absl::string_view line :
       absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 1) kill(pid, SIGKILL);
  }
}

}  // namespace

std::unique_ptr<TestNetwork> TestNetwork::Create(int hosts, std::string* why) {
  if (access(kIp, X_OK) != 0) {
    *why = "iproute2 (/bin/ip) is not installed";
    return nullptr;
  }
  // Namespaces left by a test process that died without cleaning up (a
  // crash): theirs are named after a pid that no longer runs.
  CommandResult list = Run({kIp, "netns", "list"}, "", absl::Seconds(10));
  for (absl::string_view line :
       absl::StrSplit(list.out, '\n', absl::SkipEmpty())) {
    std::string name(line.substr(0, line.find(' ')));
    std::vector<std::string> parts = absl::StrSplit(name, '-');
    int pid = 0;
    if (parts.size() == 3 && parts[0] == "tidal" &&
        absl::SimpleAtoi(parts[1], &pid) && pid > 0 && kill(pid, 0) != 0 &&
        errno == ESRCH) {
      KillAll(name);
      Ip({"netns", "del", name}, nullptr);
    }
  }
  std::unique_ptr<TestNetwork> net(new TestNetwork());
  const std::string base = absl::StrCat("tidal-", getpid(), "-");
  net->switch_ns_ = base + "sw";
  if (!Ip({"netns", "add", net->switch_ns_}, why)) {
    net->switch_ns_.clear();
    return nullptr;
  }
  const std::string& sw = net->switch_ns_;
  if (!Ip({"-n", sw, "link", "add", "br0", "type", "bridge"}, why) ||
      !Ip({"-n", sw, "link", "set", "br0", "up"}, why)) {
    return nullptr;
  }
  for (int i = 0; i < hosts; ++i) {
    const std::string ns = absl::StrCat(base, "h", i);
    if (!Ip({"netns", "add", ns}, why)) return nullptr;
    net->names_.push_back(ns);
    const std::string port = absl::StrCat("h", i);
    if (!Ip({"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
             port, "netns", sw},
            why) ||
        !Ip({"-n", ns, "addr", "add", net->address(i) + "/24", "dev", "eth0"},
            why) ||
        !Ip({"-n", ns, "link", "set", "eth0", "up"}, why) ||
        !Ip({"-n", ns, "link", "set", "lo", "up"}, why) ||
        !Ip({"-n", sw, "link", "set", port, "master", "br0"}, why) ||
        !Ip({"-n", sw, "link", "set", port, "up"}, why)) {
      return nullptr;
    }
  }
  // The tests reach the hosts from threads that enter their namespaces.
  if (!net->RunOn(0, [] {})) {
    *why = "a thread cannot enter a network namespace (setns)";
    return nullptr;
  }
  return net;
}

TestNetwork::~TestNetwork() {
  for (const std::string& ns : names_) KillAll(ns);
  for (const std::string& ns : names_) Ip({"netns", "del", ns}, nullptr);
  if (!switch_ns_.empty()) Ip({"netns", "del", switch_ns_}, nullptr);
}

std::string TestNetwork::address(int i) const {
  return absl::StrCat("10.77.0.", i + 1);
}

std::vector<std::string> TestNetwork::Exec(int i) const {
  return {kIp, "netns", "exec", names_[i]};
}

bool TestNetwork::SetLinkUp(int i, bool up) {
  return Ip({"-n", switch_ns_, "link", "set", absl::StrCat("h", i),
             up ? "up" : "down"},
            nullptr);
}

bool TestNetwork::RunOn(int i, const std::function<void()>& fn) const {
  const std::string path = "/var/run/netns/" + names_[i];
  bool ran = false;
  std::thread t([&] {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      if (fd >= 0) close(fd);
      return;  // fn does not run: its checks then fail
    }
    close(fd);
    fn();
    ran = true;
  });
  t.join();
  return ran;
}

}  // namespace tidal::e2e
