#pragma once

// Test hosts on one machine: network namespaces made by the test itself,
// each with one interface on a shared bridge (iproute2: `ip netns add`,
// veth pairs), so several etcd members and tidald nodes talk over a real
// network that the test can cut (a partition: a host's link down). The
// namespaces, and every process still running in them, are removed on
// destruction. Needs CAP_NET_ADMIN (root); Create says why not otherwise,
// and tests then skip only what needs it.

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tidal::e2e {

class TestNetwork {
 public:
  // `hosts` namespaces "tidal-<pid>-h<i>" (addresses 10.77.0.<i+1>/24) and a
  // switch namespace "tidal-<pid>-sw" holding the bridge. Null (and `why`
  // says why) when namespaces cannot be made here.
  static std::unique_ptr<TestNetwork> Create(int hosts, std::string* why);
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  int size() const { return static_cast<int>(names_.size()); }
  const std::string& ns(int i) const { return names_[i]; }
  std::string address(int i) const;
  // The argv prefix that runs a command on host i.
  std::vector<std::string> Exec(int i) const;
  // Takes host i's link to the bridge down (a partition) or up again.
  bool SetLinkUp(int i, bool up);
  // Runs `fn` on a thread inside host i's namespace (sockets it opens
  // belong to that host) and waits for it. False (fn not run) when the
  // thread cannot enter the namespace.
  bool RunOn(int i, const std::function<void()>& fn) const;

 private:
  TestNetwork() = default;
  std::string switch_ns_;
  std::vector<std::string> names_;
};

}  // namespace tidal::e2e
