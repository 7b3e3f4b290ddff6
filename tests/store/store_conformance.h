#pragma once

// A conformance suite for Store implementations: every implementation runs
// the same tests of CAS semantics, atomicity, durability and watches.
//
// To run it against an implementation, add store_conformance.cc to the test
// binary and instantiate the suite with an environment factory:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformanceTest,
//       ::testing::Values(StoreImpl{"sqlite", [] { return MakeMyEnv(); }}),
//       StoreImplName);

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace tidal::testing {

// The backing data of one test: a store that can be opened, closed and
// reopened over the same persistent state, plus hooks for the ways an
// implementation loses watch history. Used from the test thread only.
class StoreTestEnv {
 public:
  virtual ~StoreTestEnv() = default;

  // Opens a store over this environment's data. After the previous store was
  // destroyed, opening again must see everything it committed.
  virtual absl::StatusOr<std::unique_ptr<Store>> Open() = 0;

  // Writes (under `prefix`) enough changes that a watch which does not read
  // in the meantime falls too far behind and gets OutOfRange.
  virtual absl::Status OverflowWatchers(Store* store,
                                        const std::string& prefix) = 0;

  // Makes every revision up to the current one unavailable to new watches,
  // which then get OutOfRange (a compaction, or an overflowing history ring;
  // it may write under `prefix`).
  virtual absl::Status DiscardHistory(Store* store,
                                      const std::string& prefix) = 0;

  // Whether watches can start from revisions committed before a reopen.
  virtual bool KeepsWatchHistoryAcrossReopen() const = 0;
};

struct StoreImpl {
  std::string name;
  // Returns nullptr when the backend cannot run here (the tests then skip).
  std::function<std::unique_ptr<StoreTestEnv>()> make_env;
};

inline void PrintTo(const StoreImpl& impl, std::ostream* os) {
  *os << impl.name;
}

inline std::string StoreImplName(
    const ::testing::TestParamInfo<StoreImpl>& info) {
  return info.param.name;
}

class StoreConformanceTest : public ::testing::TestWithParam<StoreImpl> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Destroys the current store and opens a new one over the same data.
  void Reopen();

  std::unique_ptr<StoreTestEnv> env_;
  std::unique_ptr<Store> store_;
};

// Reads from `watch` until `n` events arrived, an error, or `deadline`.
absl::StatusOr<std::vector<WatchEvent>> CollectEvents(Watch* watch, size_t n,
                                                      absl::Duration deadline);

// Starts a watch and reads until it fails or `deadline`; returns the error
// (OK if none came). The error may come from WatchPrefix or from Next.
absl::Status WatchError(Store* store, const std::string& prefix, int64_t from,
                        absl::Duration deadline);

}  // namespace tidal::testing
