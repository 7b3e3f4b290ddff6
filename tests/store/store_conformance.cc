#include "store/store_conformance.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace tidal::testing {

using ::testing::HasSubstr;

void StoreConformanceTest::SetUp() {
  env_ = GetParam().make_env();
  if (env_ == nullptr)
    GTEST_SKIP() << GetParam().name << " backend is not available here";
  auto store = env_->Open();
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = std::move(store).value();
}

void StoreConformanceTest::TearDown() {
  store_.reset();
  env_.reset();
}

void StoreConformanceTest::Reopen() {
  store_.reset();
  auto store = env_->Open();
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = std::move(store).value();
}

absl::StatusOr<std::vector<WatchEvent>> CollectEvents(Watch* watch, size_t n,
                                                      absl::Duration deadline) {
  std::vector<WatchEvent> out;
  const absl::Time end = absl::Now() + deadline;
  while (out.size() < n && absl::Now() < end) {
    auto batch =
        watch->Next(std::min(end - absl::Now(), absl::Milliseconds(200)));
    if (!batch.ok()) return batch.status();
    for (auto& ev : *batch) out.push_back(std::move(ev));
  }
  return out;
}

absl::Status WatchError(Store* store, const std::string& prefix, int64_t from,
                        absl::Duration deadline) {
  auto watch = store->WatchPrefix(prefix, from);
  if (!watch.ok()) return watch.status();
  const absl::Time end = absl::Now() + deadline;
  while (absl::Now() < end) {
    auto batch = (*watch)->Next(absl::Milliseconds(100));
    if (!batch.ok()) return batch.status();
  }
  return absl::OkStatus();
}

namespace {

constexpr absl::Duration kDeadline = absl::Seconds(20);

// Op::Check: a guard on a key's create_version that writes nothing; the
// txn applies only when the key exists with that create_version.
TEST_P(StoreConformanceTest, CheckGuardsOnCreateVersion) {
  auto fence = store_->Create("/t/fence", "leader-1");
  ASSERT_TRUE(fence.ok()) << fence.status();
  // Rewriting the key keeps its create_version: the check still holds.
  auto rewrite = store_->Txn({Op::Put("/t/fence", "leader-1b")});
  ASSERT_TRUE(rewrite.ok()) << rewrite.status();

  auto ok =
      store_->Txn({Op::Put("/t/data", "a"), Op::Check("/t/fence", *fence)});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_GT(*ok, *rewrite);
  auto kv = store_->Get("/t/data");
  ASSERT_TRUE(kv.ok()) << kv.status();
  EXPECT_EQ(kv->value, "a");
  EXPECT_EQ(kv->resource_version, *ok);
  // The check wrote nothing: the fence key is as it was.
  EXPECT_EQ(store_->Get("/t/fence")->resource_version, *rewrite);

  // A check on another create_version fails the whole txn, naming the key.
  auto wrong = store_->Txn({Op::Put("/t/data", "b"), Op::Put("/t/other", "b"),
                            Op::Check("/t/fence", *fence + 1)});
  ASSERT_TRUE(absl::IsFailedPrecondition(wrong.status())) << wrong.status();
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("/t/fence"));
  EXPECT_EQ(store_->Get("/t/data")->value, "a");
  EXPECT_TRUE(absl::IsNotFound(store_->Get("/t/other").status()));
  EXPECT_EQ(*store_->CurrentVersion(), *ok);

  // The key deleted and created again: a new create_version, the old check
  // fails; so does a check on a key that does not exist.
  ASSERT_TRUE(store_->Delete("/t/fence").ok());
  auto missing =
      store_->Txn({Op::Put("/t/data", "c"), Op::Check("/t/fence", *fence)});
  ASSERT_TRUE(absl::IsFailedPrecondition(missing.status())) << missing.status();
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/t/fence"));
  auto again = store_->Create("/t/fence", "leader-2");
  ASSERT_TRUE(again.ok()) << again.status();
  auto stale =
      store_->Txn({Op::Put("/t/data", "c"), Op::Check("/t/fence", *fence)});
  EXPECT_TRUE(absl::IsFailedPrecondition(stale.status())) << stale.status();
  EXPECT_EQ(store_->Get("/t/data")->value, "a");
  auto fresh =
      store_->Txn({Op::Put("/t/data", "c"), Op::Check("/t/fence", *again)});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(store_->Get("/t/data")->value, "c");

  // A check next to a write of the same key sees the state before the txn.
  auto same = store_->Txn(
      {Op::Put("/t/fence", "leader-2b"), Op::Check("/t/fence", *again)});
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(store_->Get("/t/fence")->create_version, *again);

  // Checks alone write nothing and return the current revision.
  auto before = store_->CurrentVersion();
  ASSERT_TRUE(before.ok());
  auto only = store_->Txn({Op::Check("/t/fence", *again)});
  ASSERT_TRUE(only.ok()) << only.status();
  EXPECT_EQ(*only, *before);
  EXPECT_EQ(*store_->CurrentVersion(), *before);

  // Malformed checks.
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->Txn({Op::Check("/t/fence", 0)}).status()));
  Op with_value = Op::Check("/t/fence", *again);
  with_value.value = "x";
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Txn({with_value}).status()));
}

// Leases belong to etcd: a store without leases refuses a put that sets one
// (InvalidArgument); etcd refuses a lease that does not exist (NotFound).
// Either way nothing is applied.
TEST_P(StoreConformanceTest, PutOnUnknownLeaseIsRefused) {
  Op put = Op::Put("/t/leased", "v");
  put.lease = 0x7eadbeef;
  auto r = store_->Txn({Op::Put("/t/plain", "v"), put});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()) ||
              absl::IsNotFound(r.status()))
      << r.status();
  if (absl::IsInvalidArgument(r.status())) {
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("leases need the etcd store"));
  }
  EXPECT_TRUE(absl::IsNotFound(store_->Get("/t/plain").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->Get("/t/leased").status()));
  Op bad = Op::Delete("/t/plain");
  bad.lease = 5;
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Txn({bad}).status()));
}

TEST_P(StoreConformanceTest, CreateGetUpdateDeleteWithCas) {
  auto r1 = store_->Create("/t/a", "v1");
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_GT(*r1, 0);

  auto kv = store_->Get("/t/a");
  ASSERT_TRUE(kv.ok()) << kv.status();
  EXPECT_EQ(kv->key, "/t/a");
  EXPECT_EQ(kv->value, "v1");
  EXPECT_EQ(kv->resource_version, *r1);
  EXPECT_EQ(kv->create_version, *r1);

  auto dup = store_->Create("/t/a", "other");
  EXPECT_TRUE(absl::IsFailedPrecondition(dup.status())) << dup.status();
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("/t/a"));

  auto stale = store_->Update("/t/a", "v2", *r1 + 1000);
  EXPECT_TRUE(absl::IsFailedPrecondition(stale.status())) << stale.status();
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("/t/a"));
  EXPECT_THAT(std::string(stale.status().message()),
              HasSubstr(absl::StrCat(*r1 + 1000)));
  EXPECT_THAT(std::string(stale.status().message()),
              HasSubstr(absl::StrCat(*r1)));

  auto r2 = store_->Update("/t/a", "v2", *r1);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_GT(*r2, *r1);
  kv = store_->Get("/t/a");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->value, "v2");
  EXPECT_EQ(kv->resource_version, *r2);
  EXPECT_EQ(kv->create_version, *r1);

  // The old version no longer matches.
  EXPECT_TRUE(
      absl::IsFailedPrecondition(store_->Update("/t/a", "v3", *r1).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->Delete("/t/a", *r1).status()));

  // Unconditional put.
  auto r3 = store_->Txn({Op::Put("/t/a", "v3")});
  ASSERT_TRUE(r3.ok()) << r3.status();
  EXPECT_GT(*r3, *r2);

  auto r4 = store_->Delete("/t/a", *r3);
  ASSERT_TRUE(r4.ok()) << r4.status();
  EXPECT_GT(*r4, *r3);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("/t/a").status()));

  // Deleting or updating what is not there.
  EXPECT_TRUE(absl::IsNotFound(store_->Delete("/t/a").status()));
  auto missing = store_->Update("/t/a", "v", *r4);
  EXPECT_TRUE(absl::IsFailedPrecondition(missing.status())) << missing.status();

  // Re-creation starts a new life: create_version is new.
  auto r5 = store_->Create("/t/a", "again");
  ASSERT_TRUE(r5.ok()) << r5.status();
  kv = store_->Get("/t/a");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->create_version, *r5);
}

TEST_P(StoreConformanceTest, BinaryValuesAndEmptyValue) {
  std::string blob("\0\x01\xff\xfe zero", 9);
  ASSERT_TRUE(store_->Create("/bin/a", blob).ok());
  ASSERT_TRUE(store_->Create("/bin/empty", "").ok());
  auto a = store_->Get("/bin/a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->value, blob);
  auto e = store_->Get("/bin/empty");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->value, "");
}

TEST_P(StoreConformanceTest, CurrentVersionFollowsCommits) {
  auto before = store_->CurrentVersion();
  ASSERT_TRUE(before.ok());
  auto r = store_->Create("/cv/a", "x");
  ASSERT_TRUE(r.ok());
  EXPECT_GT(*r, *before);
  auto after = store_->CurrentVersion();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *r);
  // A failed txn does not move the revision.
  EXPECT_FALSE(store_->Create("/cv/a", "y").ok());
  EXPECT_EQ(*store_->CurrentVersion(), *r);
}

TEST_P(StoreConformanceTest, MultiOpTxnIsAtomic) {
  auto ra = store_->Create("/m/a", "a1");
  auto rb = store_->Create("/m/b", "b1");
  ASSERT_TRUE(ra.ok() && rb.ok());
  const int64_t before = *store_->CurrentVersion();

  // The last op's precondition fails: nothing of the txn happens.
  auto bad = store_->Txn({Op::Put("/m/a", "a2", *ra), Op::Put("/m/c", "c1", 0),
                          Op::Delete("/m/b", *rb + 1000)});
  EXPECT_TRUE(absl::IsFailedPrecondition(bad.status())) << bad.status();
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("/m/b"));
  EXPECT_EQ(store_->Get("/m/a")->value, "a1");
  EXPECT_EQ(store_->Get("/m/a")->resource_version, *ra);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("/m/c").status()));
  EXPECT_TRUE(store_->Get("/m/b").ok());
  EXPECT_EQ(*store_->CurrentVersion(), before);

  // A missing key under delete fails the whole txn too.
  auto missing =
      store_->Txn({Op::Put("/m/c", "c1", 0), Op::Delete("/m/nothere")});
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_TRUE(absl::IsNotFound(store_->Get("/m/c").status()));

  // All ops of a successful txn share one new revision.
  auto good = store_->Txn({Op::Put("/m/a", "a2", *ra), Op::Put("/m/c", "c1", 0),
                           Op::Delete("/m/b", *rb)});
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(*good, before + 1);
  EXPECT_EQ(store_->Get("/m/a")->resource_version, *good);
  EXPECT_EQ(store_->Get("/m/c")->resource_version, *good);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("/m/b").status()));
}

TEST_P(StoreConformanceTest, InvalidTxnsAreRejected) {
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Txn({}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->Txn({Op::Put("/d/a", "1"), Op::Put("/d/a", "2")}).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(store_->Txn({Op::Put("", "1")}).status()));
}

TEST_P(StoreConformanceTest, ListByPrefixIsOrderedAndConsistent) {
  for (const char* k : {"/l/b", "/l/a", "/l/c/1", "/lx", "/k/z", "/l/c/0"}) {
    ASSERT_TRUE(store_->Create(k, absl::StrCat("v", k)).ok());
  }
  auto list = store_->List("/l/");
  ASSERT_TRUE(list.ok()) << list.status();
  std::vector<std::string> keys;
  for (const auto& kv : list->items) {
    keys.push_back(kv.key);
    EXPECT_EQ(kv.value, absl::StrCat("v", kv.key));
    EXPECT_GT(kv.resource_version, 0);
  }
  EXPECT_THAT(keys, ::testing::ElementsAre("/l/a", "/l/b", "/l/c/0", "/l/c/1"));
  EXPECT_EQ(list->resource_version, *store_->CurrentVersion());

  auto limited = store_->List("/l/", 2);
  ASSERT_TRUE(limited.ok());
  ASSERT_EQ(limited->items.size(), 2u);
  EXPECT_EQ(limited->items[0].key, "/l/a");
  EXPECT_EQ(limited->items[1].key, "/l/b");

  auto none = store_->List("/nothing/");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->items.empty());
  EXPECT_EQ(none->resource_version, *store_->CurrentVersion());

  auto all = store_->List("");
  ASSERT_TRUE(all.ok());
  EXPECT_GE(all->items.size(), 6u);
  EXPECT_TRUE(std::is_sorted(
      all->items.begin(), all->items.end(),
      [](const KeyValue& a, const KeyValue& b) { return a.key < b.key; }));
}

TEST_P(StoreConformanceTest, CommittedDataSurvivesReopen) {
  auto r1 = store_->Create("/dur/a", "a");
  auto r2 = store_->Txn({Op::Put("/dur/b", "b", 0), Op::Put("/dur/c", "c", 0)});
  auto r3 = store_->Delete("/dur/c");
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());

  Reopen();
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(*store_->CurrentVersion(), *r3);
  auto a = store_->Get("/dur/a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->value, "a");
  EXPECT_EQ(a->resource_version, *r1);
  auto b = store_->Get("/dur/b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->resource_version, *r2);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("/dur/c").status()));

  // Revisions continue from where they were, and CAS keeps working.
  auto r4 = store_->Update("/dur/a", "a2", *r1);
  ASSERT_TRUE(r4.ok()) << r4.status();
  EXPECT_EQ(*r4, *r3 + 1);
}

TEST_P(StoreConformanceTest, WatchDeliversChangesInOrderUnderPrefix) {
  const int64_t start = *store_->CurrentVersion();
  auto watch = store_->WatchPrefix("/w/", start);
  ASSERT_TRUE(watch.ok()) << watch.status();

  auto r1 = store_->Create("/w/a", "1");
  auto rx = store_->Create("/x/a", "ignored");
  auto r2 = store_->Update("/w/a", "2", *r1);
  auto r3 = store_->Create("/w/b", "b");
  auto r4 = store_->Delete("/w/a", *r2);
  ASSERT_TRUE(r1.ok() && rx.ok() && r2.ok() && r3.ok() && r4.ok());

  auto events = CollectEvents(watch->get(), 4, kDeadline);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 4u);
  const auto& e = *events;
  EXPECT_EQ(e[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(e[0].kv.key, "/w/a");
  EXPECT_EQ(e[0].kv.value, "1");
  EXPECT_EQ(e[0].kv.resource_version, *r1);
  EXPECT_EQ(e[0].kv.create_version, *r1);
  EXPECT_EQ(e[0].prev_version, 0);

  EXPECT_EQ(e[1].type, WatchEvent::Type::kPut);
  EXPECT_EQ(e[1].kv.value, "2");
  EXPECT_EQ(e[1].kv.resource_version, *r2);
  EXPECT_EQ(e[1].kv.create_version, *r1);
  EXPECT_EQ(e[1].prev_version, *r1);

  EXPECT_EQ(e[2].kv.key, "/w/b");
  EXPECT_EQ(e[2].kv.resource_version, *r3);

  EXPECT_EQ(e[3].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(e[3].kv.key, "/w/a");
  EXPECT_EQ(e[3].kv.resource_version, *r4);
  EXPECT_EQ(e[3].prev_version, *r2);

  // Nothing else arrives.
  auto more = (*watch)->Next(absl::Milliseconds(100));
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_TRUE(more->empty());
}

TEST_P(StoreConformanceTest, WatchSeesMultiOpTxnAtOneRevision) {
  const int64_t start = *store_->CurrentVersion();
  auto watch = store_->WatchPrefix("/mw/", start);
  ASSERT_TRUE(watch.ok());
  auto rev = store_->Txn(
      {Op::Put("/mw/a", "a"), Op::Put("/mw/b", "b"), Op::Put("/mw/c", "c")});
  ASSERT_TRUE(rev.ok());
  auto events = CollectEvents(watch->get(), 3, kDeadline);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);
  std::set<std::string> keys;
  for (const auto& ev : *events) {
    EXPECT_EQ(ev.kv.resource_version, *rev);
    keys.insert(ev.kv.key);
  }
  EXPECT_EQ(keys, (std::set<std::string>{"/mw/a", "/mw/b", "/mw/c"}));
}

TEST_P(StoreConformanceTest, WatchFromPastRevisionReplaysLaterChanges) {
  std::vector<int64_t> revs;
  for (int i = 0; i < 5; ++i) {
    auto r = store_->Create(absl::StrCat("/p/", i), "v");
    ASSERT_TRUE(r.ok());
    revs.push_back(*r);
  }
  auto watch = store_->WatchPrefix("/p/", revs[1]);
  ASSERT_TRUE(watch.ok()) << watch.status();
  auto events = CollectEvents(watch->get(), 3, kDeadline);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*events)[i].kv.key, absl::StrCat("/p/", i + 2));
    EXPECT_EQ((*events)[i].kv.resource_version, revs[i + 2]);
  }
}

TEST_P(StoreConformanceTest, ListAfterReadsOnePageAfterAKey) {
  for (const char* k : {"/p/a", "/p/b", "/p/b/x", "/p/c", "/pz", "/o/z"}) {
    ASSERT_TRUE(store_->Create(k, "v").ok());
  }
  auto keys = [&](const std::string& after, int64_t limit) {
    std::vector<std::string> out;
    auto page = store_->ListAfter("/p/", after, limit);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return out;
    EXPECT_EQ(page->resource_version, *store_->CurrentVersion());
    for (const auto& kv : page->items) out.push_back(kv.key);
    return out;
  };
  using ::testing::ElementsAre;
  EXPECT_THAT(keys("", 2), ElementsAre("/p/a", "/p/b"));
  // Strictly after the key: its own children come next.
  EXPECT_THAT(keys("/p/b", 2), ElementsAre("/p/b/x", "/p/c"));
  EXPECT_THAT(keys("/p/b/x", 0), ElementsAre("/p/c"));
  EXPECT_THAT(keys("/p/c", 5), ElementsAre());
  // A key before the prefix starts at the prefix; one after it gives none.
  EXPECT_THAT(keys("/a", 1), ElementsAre("/p/a"));
  EXPECT_THAT(keys("/q", 0), ElementsAre());
  EXPECT_TRUE(
      absl::IsInvalidArgument(store_->ListAfter("/p/", "", -1).status()));
}

TEST_P(StoreConformanceTest, ListThenWatchMissesNothing) {
  ASSERT_TRUE(store_->Create("/lw/a", "1").ok());
  auto list = store_->List("/lw/");
  ASSERT_TRUE(list.ok());
  auto r = store_->Create("/lw/b", "2");
  ASSERT_TRUE(r.ok());
  auto watch = store_->WatchPrefix("/lw/", list->resource_version);
  ASSERT_TRUE(watch.ok());
  auto events = CollectEvents(watch->get(), 1, kDeadline);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].kv.key, "/lw/b");
  EXPECT_EQ((*events)[0].kv.resource_version, *r);
}

TEST_P(StoreConformanceTest, WatchFromDiscardedRevisionIsOutOfRange) {
  auto r = store_->Create("/old/a", "1");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(env_->DiscardHistory(store_.get(), "/old/fill/").ok());
  absl::Status s = WatchError(store_.get(), "/old/", *r - 1, absl::Seconds(10));
  EXPECT_TRUE(absl::IsOutOfRange(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("re-list"));

  // From the current revision the watch works.
  const int64_t now = *store_->CurrentVersion();
  auto watch = store_->WatchPrefix("/old/", now);
  ASSERT_TRUE(watch.ok()) << watch.status();
  auto r2 = store_->Create("/old/b", "2");
  ASSERT_TRUE(r2.ok());
  auto events = CollectEvents(watch->get(), 1, kDeadline);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].kv.resource_version, *r2);
}

TEST_P(StoreConformanceTest, WatchAcrossReopen) {
  auto r1 = store_->Create("/ro/a", "1");
  auto r2 = store_->Create("/ro/b", "2");
  ASSERT_TRUE(r1.ok() && r2.ok());
  Reopen();
  if (env_->KeepsWatchHistoryAcrossReopen()) {
    auto watch = store_->WatchPrefix("/ro/", *r1);
    ASSERT_TRUE(watch.ok());
    auto events = CollectEvents(watch->get(), 1, kDeadline);
    ASSERT_TRUE(events.ok()) << events.status();
    ASSERT_EQ(events->size(), 1u);
    EXPECT_EQ((*events)[0].kv.resource_version, *r2);
  } else {
    absl::Status s = WatchError(store_.get(), "/ro/", *r1, absl::Seconds(5));
    EXPECT_TRUE(absl::IsOutOfRange(s)) << s;
  }
  // Watching from the reopened store's current revision always works.
  auto watch = store_->WatchPrefix("/ro/", *store_->CurrentVersion());
  ASSERT_TRUE(watch.ok());
  auto r3 = store_->Create("/ro/c", "3");
  ASSERT_TRUE(r3.ok());
  auto events = CollectEvents(watch->get(), 1, kDeadline);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].kv.resource_version, *r3);
}

TEST_P(StoreConformanceTest, SlowWatcherGetsOutOfRange) {
  auto watch = store_->WatchPrefix("/slow/", *store_->CurrentVersion());
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(env_->OverflowWatchers(store_.get(), "/slow/").ok());
  absl::Status s;
  const absl::Time end = absl::Now() + kDeadline;
  while (absl::Now() < end) {
    auto batch = (*watch)->Next(absl::Milliseconds(200));
    if (!batch.ok()) {
      s = batch.status();
      break;
    }
  }
  EXPECT_TRUE(absl::IsOutOfRange(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("re-list"));
  // The watch stays failed.
  EXPECT_TRUE(
      absl::IsOutOfRange((*watch)->Next(absl::Milliseconds(10)).status()));
}

TEST_P(StoreConformanceTest, NextTimesOutEmpty) {
  auto watch = store_->WatchPrefix("/quiet/", *store_->CurrentVersion());
  ASSERT_TRUE(watch.ok());
  const absl::Time start = absl::Now();
  auto batch = (*watch)->Next(absl::Milliseconds(100));
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE(batch->empty());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(90));
}

TEST_P(StoreConformanceTest, CancelUnblocksNext) {
  auto watch = store_->WatchPrefix("/cancel/", *store_->CurrentVersion());
  ASSERT_TRUE(watch.ok());
  absl::Mutex mu;
  bool started = false;
  absl::Status result;
  absl::Time returned;
  std::thread reader([&] {
    {
      absl::MutexLock lock(&mu);
      started = true;
    }
    auto batch = (*watch)->Next(absl::Seconds(60));
    absl::MutexLock lock(&mu);
    result = batch.status();
    returned = absl::Now();
  });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&started));
  }
  const absl::Time cancelled = absl::Now();
  (*watch)->Cancel();
  reader.join();
  EXPECT_TRUE(absl::IsCancelled(result)) << result;
  EXPECT_LT(returned - cancelled, absl::Seconds(5));
  EXPECT_TRUE(
      absl::IsCancelled((*watch)->Next(absl::Milliseconds(10)).status()));
}

TEST_P(StoreConformanceTest, ClosingStoreCancelsWatches) {
  auto watch = store_->WatchPrefix("/close/", *store_->CurrentVersion());
  ASSERT_TRUE(watch.ok());
  store_.reset();
  auto batch = (*watch)->Next(absl::Seconds(10));
  EXPECT_TRUE(absl::IsCancelled(batch.status())) << batch.status();
}

TEST_P(StoreConformanceTest, ConcurrentCasIncrementsNeverLoseUpdates) {
  ASSERT_TRUE(store_->Create("/counter", "0").ok());
  constexpr int kThreads = 4;
  constexpr int kIncrements = 50;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements;) {
        auto kv = store_->Get("/counter");
        ASSERT_TRUE(kv.ok());
        int n = std::stoi(kv->value);
        auto r = store_->Update("/counter", std::to_string(n + 1),
                                kv->resource_version);
        if (r.ok()) {
          ++i;
        } else {
          ASSERT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
          ++conflicts;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store_->Get("/counter")->value,
            std::to_string(kThreads * kIncrements));
}

TEST_P(StoreConformanceTest,
       ConcurrentWritersWatcherSeesEveryRevisionOnceInOrder) {
  const int64_t start = *store_->CurrentVersion();
  auto watch = store_->WatchPrefix("/cw/", start);
  ASSERT_TRUE(watch.ok());
  auto other =
      store_->WatchPrefix("/cw/t0/", start);  // a second, narrower watcher
  ASSERT_TRUE(other.ok());

  constexpr int kThreads = 4;
  constexpr int kPerThread = 100;
  absl::Mutex mu;
  std::set<int64_t> committed;
  std::map<int64_t, std::string> key_of;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string key = absl::StrCat("/cw/t", t, "/", i);
        auto r = store_->Create(key, "v");
        ASSERT_TRUE(r.ok()) << r.status();
        absl::MutexLock lock(&mu);
        committed.insert(*r);
        key_of[*r] = key;
      }
    });
  }
  auto events =
      CollectEvents(watch->get(), kThreads * kPerThread, kDeadline * 3);
  for (auto& t : threads) t.join();
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), static_cast<size_t>(kThreads * kPerThread));
  ASSERT_EQ(committed.size(), static_cast<size_t>(kThreads * kPerThread));
  int64_t expect = start;
  for (const auto& ev : *events) {
    ++expect;  // every revision exactly once, in order, no gaps
    ASSERT_EQ(ev.kv.resource_version, expect);
    EXPECT_EQ(ev.kv.key, key_of[expect]);
  }
  EXPECT_EQ(*committed.rbegin(), expect);

  auto narrow = CollectEvents(other->get(), kPerThread, kDeadline);
  ASSERT_TRUE(narrow.ok()) << narrow.status();
  ASSERT_EQ(narrow->size(), static_cast<size_t>(kPerThread));
  for (size_t i = 1; i < narrow->size(); ++i) {
    EXPECT_LT((*narrow)[i - 1].kv.resource_version,
              (*narrow)[i].kv.resource_version);
  }
}

}  // namespace
}  // namespace tidal::testing
