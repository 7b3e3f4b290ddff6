#include "daemon/store_identity.h"

#include <fstream>
#include <sstream>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/private_file.h"
#include "store/keys.h"

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

}  // namespace tidal
