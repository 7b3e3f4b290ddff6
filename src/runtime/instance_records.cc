#include "runtime/instance_records.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/proc_stat.h"

namespace tidal {

using runtime::InstanceRecord;

std::string InstanceRecords::PathOf(const std::string& id) const {
  return dir_ + "/" + id + ".pb";
}

std::string InstanceRecords::FifoPathOf(const std::string& id) const {
  return dir_ + "/" + id + ".fifo";
}

bool InstanceRecords::Exists(const std::string& id) const {
  struct stat st;
  return stat(PathOf(id).c_str(), &st) == 0;
}

absl::Status InstanceRecords::Write(const InstanceRecord& rec) const {
  std::string data;
  rec.SerializeToString(&data);
  return WriteFileAtomic(PathOf(rec.id()), data, sync_);
}

void InstanceRecords::Remove(const std::string& id) const {
  unlink(PathOf(id).c_str());
}

absl::StatusOr<InstanceRecords::Loaded> InstanceRecords::LoadAll() const {
  DIR* dir = opendir(dir_.c_str());
  if (dir == nullptr) {
    return absl::InternalError(
        absl::StrCat("opendir ", dir_, ": ", strerror(errno)));
  }
  std::vector<std::string> files;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (absl::EndsWith(name, ".pb")) files.push_back(dir_ + "/" + name);
    if (absl::EndsWith(name, ".pb.tmp")) unlink((dir_ + "/" + name).c_str());
  }
  closedir(dir);
  std::sort(files.begin(), files.end());
  Loaded out;
  for (const auto& file : files) {
    InstanceRecord rec;
    std::ifstream in(file, std::ios::binary);
    if (!in || !rec.ParseFromIstream(&in) || rec.id().empty()) {
      unlink(file.c_str());
      out.unreadable.push_back(file);
      continue;
    }
    out.records.push_back({file, std::move(rec)});
  }
  return out;
}

bool RecordedProcessRuns(const InstanceRecord& rec,
                         const std::string& boot_id) {
  if (!rec.boot_id().empty() && rec.boot_id() != boot_id) return false;
  return ProcessMatches(static_cast<pid_t>(rec.pid()), rec.start_ticks());
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& data,
                             bool sync) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return absl::InternalError(
        absl::StrCat("open ", tmp, ": ", strerror(errno)));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::InternalError(
          absl::StrCat("write ", tmp, ": ", strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  if (sync && fdatasync(fd) != 0) {
    int err = errno;
    close(fd);
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("fsync ", tmp, ": ", strerror(err)));
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("rename ", tmp, ": ", strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (cur.empty() && path[0] == '/') cur = "/";
    if (part.empty()) continue;
    if (!cur.empty() && cur.back() != '/') cur += '/';
    cur.append(part.data(), part.size());
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("mkdir ", cur, ": ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace tidal
