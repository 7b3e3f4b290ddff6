#pragma once

// A highly available Tidal cluster of real processes for tests and
// benchmarks (docs/ha.md): one etcd member and one tidald node per place
// (loopback addresses, or test hosts from tests/e2e/netns.h), started as one
// new etcd cluster. Everything is stopped on destruction.

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "e2e/e2e_util.h"

namespace tidal::e2e {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";

// One etcd member per place, started together as one new cluster.
class EtcdCluster {
 public:
  EtcdCluster(std::string dir, std::vector<DaemonPlace> places);
  bool Start();
  // "host:port,..." for tidald --store=etcd:...
  std::string Endpoints() const;

 private:
  std::string ClientUrl(size_t i) const;
  std::string PeerUrl(size_t i) const;
  std::string dir_;
  std::vector<DaemonPlace> places_;
  std::vector<int> client_, peer_;
  std::vector<std::unique_ptr<Child>> members_;
};

// tidald nodes "n0".."nN-1" on one etcd cluster.
class HaCluster {
 public:
  // `extra_flags` go to every tidald (after the cluster's own).
  HaCluster(const std::string& dir, std::vector<DaemonPlace> places,
            absl::Duration election_ttl,
            std::vector<std::string> extra_flags = {});
  bool Start();
  // tidalctl flags for every node (TLS: Daemon::set_ctl_flags); before Start.
  void set_ctl_flags(std::vector<std::string> flags) {
    ctl_flags_ = std::move(flags);
  }
  int size() const { return static_cast<int>(nodes_.size()); }
  Daemon& node(int i) { return *nodes_[i]; }
  // The leader as node i sees it ("" when none or on error).
  std::string LeaderSeenBy(int i);
  // The index of the leader every running node agrees on, or -1.
  int AgreedLeader();

 private:
  std::string dir_;
  std::vector<DaemonPlace> places_;
  absl::Duration ttl_;
  std::vector<std::string> extra_flags_;
  std::vector<std::string> ctl_flags_;
  EtcdCluster etcd_;
  std::vector<std::unique_ptr<Daemon>> nodes_;
};

}  // namespace tidal::e2e
