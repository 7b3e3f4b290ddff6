#include "deployer/revisions.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "store/keys.h"

namespace tidal::deployer {

using tidal::v1::Revision;

std::string RevisionKey(const std::string& ns, const std::string& app,
                        int64_t number) {
  return absl::StrCat(keys::RevisionPrefix(ns, app),
                      absl::StrFormat("%012d", number));
}

absl::StatusOr<std::vector<Revision>> RevisionHistory::List(
    const std::string& ns, const std::string& app) {
  auto list = store_->List(keys::RevisionPrefix(ns, app));
  if (!list.ok()) return list.status();
  std::vector<Revision> out;
  for (const auto& kv : list->items) {
    Revision r;
    if (!r.ParseFromString(kv.value)) {
      return absl::DataLossError(absl::StrCat(kv.key, " does not parse"));
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const Revision& a, const Revision& b) {
    return a.number() < b.number();
  });
  return out;
}

absl::StatusOr<Revision> RevisionHistory::Get(const std::string& ns,
                                              const std::string& app,
                                              int64_t number) {
  auto kv = store_->Get(RevisionKey(ns, app, number));
  if (!kv.ok()) {
    if (absl::IsNotFound(kv.status())) {
      return absl::NotFoundError(
          absl::StrCat("app ", ns, "/", app, " has no revision ", number));
    }
    return kv.status();
  }
  Revision r;
  if (!r.ParseFromString(kv->value))
    return absl::DataLossError(absl::StrCat(kv->key, " does not parse"));
  return r;
}

absl::StatusOr<Revision> RevisionHistory::Ensure(const tidal::v1::App& app,
                                                 bool* created,
                                                 std::vector<Op>* deferred) {
  *created = false;
  const std::string& ns = app.metadata().namespace_();
  const std::string& name = app.metadata().name();
  const std::string hash = spec::TemplateHash(app.spec().template_());
  auto list = List(ns, name);
  if (!list.ok()) return list.status();
  int64_t max = 0;
  for (const auto& r : *list) {
    if (r.template_hash() == hash) return r;
    max = std::max(max, r.number());
  }
  Revision r;
  r.set_namespace_(ns);
  r.set_app(name);
  r.set_number(max + 1);
  r.set_template_hash(hash);
  *r.mutable_template_() = app.spec().template_();
  auto cause = app.metadata().annotations().find(kChangeCauseAnnotation);
  if (cause != app.metadata().annotations().end())
    r.set_change_cause(cause->second);
  *r.mutable_created() = ToProtoTime(clock_->Now());
  if (deferred != nullptr) {
    deferred->push_back(
        Op::Put(RevisionKey(ns, name, r.number()), r.SerializeAsString(), 0));
    *created = true;
    return r;
  }
  auto st =
      store_->Create(RevisionKey(ns, name, r.number()), r.SerializeAsString());
  if (!st.ok()) {
    if (absl::IsFailedPrecondition(st.status())) {
      return absl::AbortedError(absl::StrCat("revision ", r.number(), " of ",
                                             ns, "/", name,
                                             " was made concurrently"));
    }
    return st.status();
  }
  *created = true;
  return r;
}

absl::Status RevisionHistory::Prune(const std::string& ns,
                                    const std::string& app, int32_t limit,
                                    const std::set<int64_t>& keep) {
  auto list = List(ns, app);
  if (!list.ok()) return list.status();
  int64_t excess = static_cast<int64_t>(list->size()) - std::max(limit, 1);
  for (const auto& r : *list) {
    if (excess <= 0) break;
    if (keep.count(r.number())) continue;
    auto st = store_->Delete(RevisionKey(ns, app, r.number()));
    if (!st.ok() && !absl::IsNotFound(st.status())) return st.status();
    --excess;
  }
  return absl::OkStatus();
}

absl::Status RevisionHistory::DeleteAll(const std::string& ns,
                                        const std::string& app) {
  auto list = store_->List(keys::RevisionPrefix(ns, app));
  if (!list.ok()) return list.status();
  for (const auto& kv : list->items) {
    auto st = store_->Delete(kv.key);
    if (!st.ok() && !absl::IsNotFound(st.status())) return st.status();
  }
  return absl::OkStatus();
}

}  // namespace tidal::deployer
