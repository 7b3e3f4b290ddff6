#include "runtime/namespace_users.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/private_file.h"

namespace tidal {

bool UidRangeMapped(uid_t first, uid_t last) {
  std::ifstream in("/proc/self/uid_map");
  if (!in) return true;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    uint64_t inside = 0, outside = 0, count = 0;
    if (!(fields >> inside >> outside >> count)) continue;
    if (first >= inside && static_cast<uint64_t>(last) < inside + count) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::unique_ptr<NamespaceUsers>> NamespaceUsers::Open(
    const std::string& path, uid_t first, uid_t last) {
  if (first == 0 || first > last) {
    return absl::InvalidArgumentError(absl::StrCat(
        "uid range ", first, "-", last, " is empty, reversed or holds root"));
  }
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a user per namespace needs tidald to run as root (it runs as uid ",
        geteuid(), ")"));
  }
  if (!UidRangeMapped(first, last)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "uid range ", first, "-", last,
        " is not mapped in this user namespace (/proc/self/uid_map): a "
        "container that maps fewer uids needs a range inside its map"));
  }
  std::unique_ptr<NamespaceUsers> users(new NamespaceUsers(path, first, last));
  std::ifstream in(path);
  if (!in) return users;  // no namespace has a uid yet
  std::string line;
  int number = 0;
  absl::MutexLock lock(&users->mu_);
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    uint32_t uid = 0;
    if (f.size() != 2 || !absl::SimpleAtoi(f[0], &uid) || f[1].empty()) {
      return absl::DataLossError(
          absl::StrCat(path, ":", number, ": not \"UID NAMESPACE\""));
    }
    users->uids_[f[1]] = uid;
  }
  return users;
}

absl::StatusOr<InstanceUser> NamespaceUsers::For(const std::string& ns) {
  absl::MutexLock lock(&mu_);
  auto it = uids_.find(ns);
  if (it == uids_.end()) {
    std::set<uid_t> taken;
    for (const auto& [name, uid] : uids_) taken.insert(uid);
    uid_t pick = 0;
    for (uid_t u = first_; u != 0 && u <= last_; ++u) {
      // Never one the machine's users or groups have.
      if (taken.count(u) == 0 && getpwuid(u) == nullptr &&
          getgrgid(u) == nullptr) {
        pick = u;
        break;
      }
    }
    if (pick == 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("every uid of --instance-uid-range ", first_, "-", last_,
                       " is taken: no user for namespace ", ns));
    }
    std::map<std::string, uid_t> next = uids_;
    next[ns] = pick;
    std::string text;
    for (const auto& [name, uid] : next)
      absl::StrAppend(&text, uid, " ", name, "\n");
    // Remembered before any process runs as it.
    if (absl::Status st = WritePrivateFile(path_, text); !st.ok()) return st;
    it = uids_.emplace(ns, pick).first;
  }
  InstanceUser user;
  user.name = absl::StrCat("tidal-", ns);
  user.uid = it->second;
  user.gid = static_cast<gid_t>(it->second);
  user.home = "/nonexistent";
  return user;
}

std::map<std::string, uid_t> NamespaceUsers::Assigned() const {
  absl::MutexLock lock(&mu_);
  return uids_;
}

}  // namespace tidal
