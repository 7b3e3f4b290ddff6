#pragma once

// RevisionHistory: the immutable Revisions of each app's template, stored
// under keys::RevisionPrefix(ns, app) as one key per number. A revision is
// made the first time a template hash is seen (scaling changes keep the
// hash, so they make none); a template seen before reuses its revision.
// Thread-safe (the store is; creation uses CAS on a new key).

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "store/store.h"
#include "tidal/v1/app.pb.h"

namespace tidal::deployer {

constexpr const char* kChangeCauseAnnotation = "tidal.dev/change-cause";

std::string RevisionKey(const std::string& ns, const std::string& app,
                        int64_t number);

class RevisionHistory {
 public:
  RevisionHistory(Store* store, Clock* clock) : store_(store), clock_(clock) {}

  // Every stored revision of the app, by number.
  absl::StatusOr<std::vector<tidal::v1::Revision>> List(const std::string& ns,
                                                        const std::string& app);
  // The revision `number`; NotFound when it was never made or was pruned.
  absl::StatusOr<tidal::v1::Revision> Get(const std::string& ns,
                                          const std::string& app,
                                          int64_t number);
  // The revision of the app's current template, made when new (`created`).
  // Aborted when another writer made the same number first (retry).
  // With `deferred`, a new revision is not written but its create op is
  // appended there, for the caller to commit with its own writes (one
  // durable transaction instead of two).
  absl::StatusOr<tidal::v1::Revision> Ensure(
      const tidal::v1::App& app, bool* created,
      std::vector<Op>* deferred = nullptr);
  // Deletes the oldest revisions beyond `limit`, never one in `keep`.
  absl::Status Prune(const std::string& ns, const std::string& app,
                     int32_t limit, const std::set<int64_t>& keep);
  // Deletes every revision of the app (the app is gone).
  absl::Status DeleteAll(const std::string& ns, const std::string& app);

 private:
  Store* const store_;
  Clock* const clock_;
};

}  // namespace tidal::deployer
