#include "e2e/ha_cluster.h"

#include <sys/stat.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tidal::e2e {

EtcdCluster::EtcdCluster(std::string dir, std::vector<DaemonPlace> places)
    : dir_(std::move(dir)), places_(std::move(places)) {
  for (size_t i = 0; i < places_.size(); ++i) {
    client_.push_back(FreePort());
    peer_.push_back(FreePort());
  }
}

bool EtcdCluster::Start() {
  std::vector<std::string> initial;
  for (size_t i = 0; i < places_.size(); ++i) {
    initial.push_back(absl::StrCat("m", i, "=", PeerUrl(i)));
  }
  for (size_t i = 0; i < places_.size(); ++i) {
    members_.push_back(std::make_unique<Child>());
    std::vector<std::string> argv = places_[i].exec_prefix;
    for (const std::string& a : std::vector<std::string>{
             kEtcdBinary, absl::StrCat("--name=m", i),
             absl::StrCat("--data-dir=", dir_, "/etcd", i),
             "--listen-client-urls=" + ClientUrl(i),
             "--advertise-client-urls=" + ClientUrl(i),
             "--listen-peer-urls=" + PeerUrl(i),
             "--initial-advertise-peer-urls=" + PeerUrl(i),
             "--initial-cluster=" + absl::StrJoin(initial, ","),
             "--initial-cluster-state=new", "--initial-cluster-token=tidal",
             "--heartbeat-interval=50", "--election-timeout=500",
             "--log-level=error"}) {
      argv.push_back(a);
    }
    if (!members_.back()->Start(argv, absl::StrCat(dir_, "/etcd", i, ".log"))) {
      return false;
    }
  }
  return true;
}

std::string EtcdCluster::Endpoints() const {
  std::vector<std::string> eps;
  for (size_t i = 0; i < places_.size(); ++i) {
    eps.push_back(absl::StrCat(places_[i].host, ":", client_[i]));
  }
  return absl::StrJoin(eps, ",");
}

std::string EtcdCluster::ClientUrl(size_t i) const {
  return absl::StrCat("http://", places_[i].host, ":", client_[i]);
}

std::string EtcdCluster::PeerUrl(size_t i) const {
  return absl::StrCat("http://", places_[i].host, ":", peer_[i]);
}

HaCluster::HaCluster(const std::string& dir, std::vector<DaemonPlace> places,
                     absl::Duration election_ttl,
                     std::vector<std::string> extra_flags)
    : dir_(dir),
      places_(places),
      ttl_(election_ttl),
      extra_flags_(std::move(extra_flags)),
      etcd_(dir, places) {}

bool HaCluster::Start() {
  if (!etcd_.Start()) return false;
  for (size_t i = 0; i < places_.size(); ++i) {
    const std::string data = absl::StrCat(dir_, "/node", i);
    mkdir(data.c_str(), 0755);
    const int lo = 20000 + 1000 * static_cast<int>(i);
    std::vector<std::string> flags = {
        "--store=etcd:" + etcd_.Endpoints(), absl::StrCat("--node-name=n", i),
        absl::StrCat("--election-ttl=", absl::ToInt64Seconds(ttl_), "s"),
        absl::StrCat("--port-range=", lo, "-", lo + 999)};
    flags.insert(flags.end(), extra_flags_.begin(), extra_flags_.end());
    nodes_.push_back(std::make_unique<Daemon>(data, flags, places_[i]));
    // One bootstrap admin token for the cluster (docs/auth.md).
    nodes_.back()->set_token_file(dir_ + "/admin.token");
    nodes_.back()->set_ctl_flags(ctl_flags_);
  }
  for (auto& n : nodes_) {
    if (!n->Start()) return false;
  }
  return true;
}

std::string HaCluster::LeaderSeenBy(int i) {
  auto r = nodes_[i]->Ctl({"get", "leader", "-o", "name"});
  if (r.exit_code != 0) return "";
  return std::string(absl::StripAsciiWhitespace(r.out));
}

int HaCluster::AgreedLeader() {
  std::string seen;
  for (int i = 0; i < size(); ++i) {
    if (!nodes_[i]->Running()) continue;
    std::string l = LeaderSeenBy(i);
    if (l.empty() || (!seen.empty() && l != seen)) return -1;
    seen = l;
  }
  if (seen.size() < 2 || seen[0] != 'n') return -1;
  int idx = -1;
  if (!absl::SimpleAtoi(seen.substr(1), &idx) || idx >= size()) return -1;
  return idx;
}

}  // namespace tidal::e2e
