#include "daemon/store_identity.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/private_file.h"
#include "common/status_macros.h"
#include "store/keys.h"
#include "store/sqlite_store.h"
#include "tidal/v1/ha.pb.h"

namespace tidal {
namespace {

std::string NewId() {
  absl::BitGen gen;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

// What the data directory remembers ("" when nothing).
std::string Remembered(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(text.str()));
}

}  // namespace

absl::StatusOr<std::string> CheckStoreIdentity(Store* store,
                                               const std::string& data_dir,
                                               const std::string& store_name) {
  auto log = GetLogger("store");
  const std::string path = data_dir + "/store-id";
  const std::string remembered = Remembered(path);
  const std::string fix = absl::StrCat(
      "; if this is the store to use from now on, remove ", path,
      " and start again (instances this store does not list are then "
      "stopped)");
  std::string id;
  absl::StatusOr<KeyValue> kv = store->Get(keys::StoreId());
  if (kv.ok()) {
    id = kv->value;
  } else if (!absl::IsNotFound(kv.status())) {
    return kv.status();
  } else if (!remembered.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the store ", store_name,
        " has no id, but this data directory last ran "
        "against the store with id ",
        remembered,
        ": it was wiped, or it is another cluster; refusing to start, since "
        "every instance it does not list would be stopped",
        fix));
  } else {
    // The keyspace's first use (or its first by a tidald that keeps ids):
    // made once, whoever comes first.
    const std::string made = NewId();
    absl::StatusOr<int64_t> put =
        store->Txn({Op::Put(keys::StoreId(), made, /*expected=*/0)});
    if (put.ok()) {
      id = made;
      log->info("store {}: new id {}", store_name, id);
    } else if (absl::IsFailedPrecondition(put.status())) {
      kv = store->Get(keys::StoreId());  // another node made it first
      if (!kv.ok()) return kv.status();
      id = kv->value;
    } else {
      return put.status();
    }
  }
  if (!remembered.empty() && remembered != id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the store ", store_name, " has id ", id,
        ", but this data directory last ran against the store with id ",
        remembered,
        ": it is another cluster (or a restore of another one); refusing to "
        "start, since every instance it does not list would be stopped",
        fix));
  }
  if (remembered != id) {
    if (absl::Status st = WritePrivateFile(path, id + "\n"); !st.ok()) {
      return st;
    }
  }
  return id;
}

absl::StatusOr<std::string> CheckNodeIdentity(Store* store,
                                              const std::string& data_dir,
                                              const std::string& node,
                                              absl::Duration watch) {
  const std::string path = data_dir + "/node-uid";
  std::string uid = Remembered(path);
  if (uid.empty()) {
    uid = NewId();
    if (absl::Status st = WritePrivateFile(path, uid + "\n"); !st.ok()) {
      return st;
    }
  }
  absl::StatusOr<KeyValue> kv = store->Get(keys::Node(node));
  if (absl::IsNotFound(kv.status())) return uid;
  if (!kv.ok()) return kv.status();
  tidal::v1::NodeRecord rec;
  if (!rec.ParseFromString(kv->value) || rec.uid() == uid) return uid;
  // Another data directory's: live when its record still changes.
  const absl::Time until = absl::Now() + watch;
  while (absl::Now() < until) {
    absl::SleepFor(std::min(absl::Milliseconds(250), until - absl::Now()));
    absl::StatusOr<KeyValue> now = store->Get(keys::Node(node));
    if (absl::IsNotFound(now.status())) return uid;
    if (!now.ok()) return now.status();
    if (now->resource_version != kv->resource_version) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--node-name ", node, ": a live tidald runs under this name (API ",
          rec.api_address().empty() ? "unknown" : rec.api_address(),
          ", another data directory; it heartbeats): every node needs a name "
          "of its own. Give this one another --node-name (the default is the "
          "host name: cloned machines share it); if it replaces that node, "
          "stop the other tidald first"));
    }
  }
  GetLogger("tidald")->warn(
      "node {}: taking over the name from another data directory (its node, "
      "API {}, has not heartbeat for {})",
      node, rec.api_address(), absl::FormatDuration(watch));
  return uid;
}

absl::Status CheckNotMovedFromEmbedded(Store* etcd,
                                       const std::string& sqlite_path,
                                       const std::string& store_name) {
  std::error_code ec;
  if (!std::filesystem::exists(sqlite_path, ec)) return absl::OkStatus();
  ASSIGN_OR_RETURN(ListResult in_etcd, etcd->List(keys::AppPrefix()));
  if (!in_etcd.items.empty()) return absl::OkStatus();
  // Read without changing it (a check counts the apps).
  int64_t apps = 0;
  auto report = SqliteStore::Check(sqlite_path, [&](const KeyValue& kv) {
    if (absl::StartsWith(kv.key, keys::AppPrefix())) ++apps;
    return absl::OkStatus();
  });
  if (!report.ok() || apps == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "this data directory ran the embedded store (", sqlite_path, ", ", apps,
      " app(s)) and the store ", store_name,
      " has no app: started on it, tidald would stop every instance the "
      "embedded store runs. To move this machine to etcd, see docs/ha.md "
      "(\"From one machine to etcd\"); to start on etcd all the same, move ",
      sqlite_path, " away"));
}

}  // namespace tidal
