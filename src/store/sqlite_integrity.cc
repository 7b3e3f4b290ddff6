#include "store/sqlite_integrity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tidal::sqlite_internal {
namespace {

constexpr int kWalHeaderBytes = 32;
constexpr int kFrameHeaderBytes = 24;
constexpr uint32_t kWalMagic = 0x377f0682;  // low bit: big-endian checksums
constexpr uint32_t kWalVersion = 3007000;

uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

uint32_t Le32(const unsigned char* p) {
  return (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) |
         (uint32_t{p[1]} << 8) | uint32_t{p[0]};
}

// SQLite's WAL checksum (walChecksumBytes): pairs of 32-bit words in the
// byte order the log's magic number names, folded into (s1, s2).
void WalChecksum(bool big_endian, const unsigned char* data, size_t n,
                 uint32_t* s1, uint32_t* s2) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint32_t a = big_endian ? Be32(data + i) : Le32(data + i);
    uint32_t b = big_endian ? Be32(data + i + 4) : Le32(data + i + 4);
    *s1 += a + *s2;
    *s2 += b + *s1;
  }
}

// Runs `sql` and collects the first column of every row as text.
absl::StatusOr<std::vector<std::string>> Rows(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return absl::DataLossError(sqlite3_errmsg(db));
  }
  std::vector<std::string> out;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    out.push_back(text ? reinterpret_cast<const char*>(text) : "");
  }
  std::string err = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  if (!err.empty()) return absl::DataLossError(err);
  return out;
}

}  // namespace

absl::StatusOr<WalScan> ScanWal(const std::string& wal_path) {
  WalScan scan;
  std::ifstream in(wal_path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return scan;
    return absl::UnavailableError(
        absl::StrCat("cannot read ", wal_path, ": ", std::strerror(errno)));
  }
  in.seekg(0, std::ios::end);
  scan.bytes = static_cast<int64_t>(in.tellg());
  in.seekg(0);
  if (scan.bytes < kWalHeaderBytes) return scan;
  unsigned char hdr[kWalHeaderBytes];
  in.read(reinterpret_cast<char*>(hdr), kWalHeaderBytes);
  const uint32_t magic = Be32(hdr);
  const uint32_t page_size = Be32(hdr + 8);
  const bool big_endian = (magic & 1) != 0;
  const bool page_size_ok = page_size >= 512 && page_size <= 65536 &&
                            (page_size & (page_size - 1)) == 0;
  uint32_t s1 = 0, s2 = 0;
  WalChecksum(big_endian, hdr, 24, &s1, &s2);
  const bool header_ok = (magic & ~1u) == kWalMagic &&
                         Be32(hdr + 4) == kWalVersion && page_size_ok &&
                         s1 == Be32(hdr + 24) && s2 == Be32(hdr + 28);
  if (!header_ok) {
    // SQLite ignores a log whose header does not verify. Frames after it
    // can only have been written under a sound header.
    if (scan.bytes >= kWalHeaderBytes + kFrameHeaderBytes + 512) {
      scan.problem = absl::StrCat(
          "the header of the write-ahead log ", wal_path,
          " does not verify, so SQLite would ignore all ", scan.bytes,
          " bytes of it: every change since the last checkpoint would be "
          "lost");
    }
    return scan;
  }
  const int64_t frame_bytes = kFrameHeaderBytes + page_size;
  scan.frames = (scan.bytes - kWalHeaderBytes) / frame_bytes;
  std::string frame(static_cast<size_t>(frame_bytes), '\0');
  auto* f = reinterpret_cast<unsigned char*>(frame.data());
  int64_t i = 0;
  int64_t last_commit = 0;  // frames up to and including the last commit
  for (; i < scan.frames; ++i) {
    in.read(frame.data(), frame_bytes);
    if (!in) break;
    if (std::memcmp(f + 8, hdr + 16, 8) != 0) break;  // salts
    WalChecksum(big_endian, f, 8, &s1, &s2);
    WalChecksum(big_endian, f + kFrameHeaderBytes, page_size, &s1, &s2);
    if (s1 != Be32(f + 16) || s2 != Be32(f + 20)) break;
    if (Be32(f + 4) != 0) last_commit = i + 1;
  }
  scan.valid_frames = last_commit;
  const int64_t break_at = i;
  // Commits of this log's generation (same salts) written after the break.
  for (; i < scan.frames; ++i) {
    if (i > break_at) {
      in.read(frame.data(), frame_bytes);
      if (!in) break;
    } else if (!in) {
      break;
    }
    if (std::memcmp(f + 8, hdr + 16, 8) == 0 && Be32(f + 4) != 0)
      ++scan.commits_after_break;
  }
  if (scan.commits_after_break >= 2) {
    scan.problem = absl::StrCat(
        "the write-ahead log ", wal_path, " is damaged at frame ", break_at + 1,
        " of ", scan.frames, " (offset ",
        kWalHeaderBytes + break_at * frame_bytes,
        "): SQLite would silently "
        "drop the ",
        scan.commits_after_break, " committed transactions written after it");
  }
  return scan;
}

DbFacts InspectDb(sqlite3* db, bool full) {
  DbFacts f;
  auto version = Rows(db, "PRAGMA user_version");
  if (!version.ok()) {
    f.problems.push_back(absl::StrCat("cannot be read as an SQLite database (",
                                      version.status().message(), ")"));
    return f;
  }
  f.user_version = version->empty() ? 0 : std::atoi((*version)[0].c_str());
  auto check =
      Rows(db, full ? "PRAGMA integrity_check(20)" : "PRAGMA quick_check(20)");
  if (!check.ok()) {
    f.problems.push_back(absl::StrCat(full ? "integrity_check" : "quick_check",
                                      " failed: ", check.status().message()));
    return f;
  }
  if (!(check->size() == 1 && (*check)[0] == "ok")) {
    f.problems.push_back(absl::StrCat("SQLite's ",
                                      full ? "integrity_check" : "quick_check",
                                      " found: ", absl::StrJoin(*check, "; ")));
  }
  auto tables = Rows(db, "SELECT name FROM sqlite_schema WHERE type = 'table'");
  if (!tables.ok()) {
    f.problems.push_back(absl::StrCat("the schema cannot be read (",
                                      tables.status().message(), ")"));
    return f;
  }
  std::set<std::string> have(tables->begin(), tables->end());
  if (f.user_version > kSchemaVersion) {
    f.newer_schema = true;
    return f;
  }
  if (f.user_version == 0) {
    f.problems.push_back(
        absl::StrCat("it holds no Tidal schema (user_version 0; tables: ",
                     have.empty() ? "none" : absl::StrJoin(have, ", "), ")"));
    return f;
  }
  std::vector<std::string> want = {"kv", "meta"};
  if (f.user_version >= 2) want.push_back("identity");
  bool missing = false;
  for (const auto& t : want) {
    if (!have.count(t)) {
      f.problems.push_back(absl::StrCat("table ", t, " is missing"));
      missing = true;
    }
  }
  if (missing) return f;
  auto rev = Rows(db, "SELECT revision FROM meta WHERE id = 1");
  if (!rev.ok() || rev->empty()) {
    f.problems.push_back("the meta row (the store revision) is missing");
  } else {
    f.revision = std::atoll((*rev)[0].c_str());
  }
  if (f.user_version >= 2) {
    auto id = Rows(db, "SELECT store_id FROM identity WHERE id = 1");
    auto at = Rows(db, "SELECT created_at FROM identity WHERE id = 1");
    if (!id.ok() || id->empty() || (*id)[0].empty()) {
      f.problems.push_back("the store identity record is missing");
    } else {
      f.store_id = (*id)[0];
      if (at.ok() && !at->empty()) f.created_at = (*at)[0];
    }
  }
  auto keys = Rows(db, "SELECT count(*) FROM kv");
  auto max_rv = Rows(db, "SELECT coalesce(max(resource_version), 0) FROM kv");
  if (!keys.ok() || !max_rv.ok() || keys->empty() || max_rv->empty()) {
    f.problems.push_back(absl::StrCat(
        "table kv cannot be read (",
        (!keys.ok() ? keys.status() : max_rv.status()).message(), ")"));
    return f;
  }
  f.keys = std::atoll((*keys)[0].c_str());
  int64_t max = std::atoll((*max_rv)[0].c_str());
  if (rev.ok() && !rev->empty() && max > f.revision) {
    f.problems.push_back(absl::StrCat("a key was written at revision ", max,
                                      ", after the store's revision ",
                                      f.revision));
  }
  return f;
}

std::string NewStoreId() {
  absl::BitGen gen;
  return absl::StrCat(
      absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16),
      absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16));
}

std::string NowRfc3339() {
  return absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone());
}

absl::Status Damaged(const std::string& path, const std::string& what) {
  return absl::DataLossError(
      absl::StrCat("store ", path, " is damaged: ", what));
}

absl::StatusOr<bool> FileExists(const std::string& path, int64_t* size) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (size) *size = st.st_size;
    return true;
  }
  if (errno == ENOENT) return false;
  return absl::UnavailableError(
      absl::StrCat("cannot stat ", path, ": ", std::strerror(errno)));
}

absl::Status SyncParentDir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot sync directory ", dir, ": ", std::strerror(err)));
  }
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace tidal::sqlite_internal
