#include "store/txn_check.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tidal::store_internal {

absl::Status ValidateOps(const std::vector<Op>& ops) {
  if (ops.empty()) return absl::InvalidArgumentError("empty transaction");
  std::set<absl::string_view> keys;
  for (const Op& op : ops) {
    if (op.key.empty())
      return absl::InvalidArgumentError("empty key in transaction");
    if (op.expected_version < Op::kAny) {
      return absl::InvalidArgumentError(
          absl::StrCat("key \"", op.key, "\": invalid expected version ",
                       op.expected_version));
    }
    if (!keys.insert(op.key).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "key \"", op.key, "\" appears twice in one transaction"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPrecondition(const Op& op, const KeyState& cur) {
  if (op.expected_version == Op::kAny) {
    if (op.type == Op::Type::kDelete && !cur.exists) {
      return absl::NotFoundError(
          absl::StrCat("key \"", op.key, "\" not found"));
    }
    return absl::OkStatus();
  }
  if (op.expected_version == 0) {
    if (cur.exists) {
      return absl::FailedPreconditionError(
          absl::StrCat("key \"", op.key,
                       "\" already exists (expected no key, found version ",
                       cur.resource_version, ")"));
    }
    if (op.type == Op::Type::kDelete) {
      return absl::NotFoundError(
          absl::StrCat("key \"", op.key, "\" not found"));
    }
    return absl::OkStatus();
  }
  if (!cur.exists) {
    return absl::FailedPreconditionError(
        absl::StrCat("key \"", op.key, "\": expected version ",
                     op.expected_version, ", but it does not exist"));
  }
  if (cur.resource_version != op.expected_version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key \"", op.key, "\": expected version ", op.expected_version,
        ", found version ", cur.resource_version));
  }
  return absl::OkStatus();
}

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char c = static_cast<unsigned char>(end.back());
    if (c != 0xff) {
      end.back() = static_cast<char>(c + 1);
      return end;
    }
    end.pop_back();
  }
  return end;
}

std::string WatchTooOld(int64_t from, int64_t oldest_retained) {
  return absl::StrCat(
      "watch from revision ", from,
      " is too old (oldest retained revision: ", oldest_retained, "); re-list");
}

}  // namespace tidal::store_internal
