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
    if (op.type == Op::Type::kCheck) {
      if (op.create_version <= 0 || op.expected_version != Op::kAny ||
          !op.value.empty() || op.lease != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "key \"", op.key,
            "\": a check needs a create version > 0 and nothing else (got ",
            op.create_version, ")"));
      }
      continue;
    }
    if (op.create_version != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "key \"", op.key, "\": create_version is for checks only"));
    }
    if (op.lease < 0 || (op.lease != 0 && op.type != Op::Type::kPut)) {
      return absl::InvalidArgumentError(
          absl::StrCat("key \"", op.key, "\": invalid lease ", op.lease,
                       " (only puts take a lease)"));
    }
    if (!keys.insert(op.key).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "key \"", op.key, "\" appears twice in one transaction"));
    }
  }
  return absl::OkStatus();
}

absl::Status RejectLeases(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    if (op.lease != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("key \"", op.key, "\": leases need the etcd store"));
    }
  }
  return absl::OkStatus();
}

bool ChecksOnly(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    if (op.type != Op::Type::kCheck) return false;
  }
  return true;
}

absl::Status CheckPrecondition(const Op& op, const KeyState& cur) {
  if (op.type == Op::Type::kCheck) {
    if (!cur.exists) {
      return absl::FailedPreconditionError(
          absl::StrCat("key \"", op.key, "\": expected create version ",
                       op.create_version, ", but it does not exist"));
    }
    if (cur.create_version != op.create_version) {
      return absl::FailedPreconditionError(absl::StrCat(
          "key \"", op.key, "\": expected create version ", op.create_version,
          ", found create version ", cur.create_version));
    }
    return absl::OkStatus();
  }
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
