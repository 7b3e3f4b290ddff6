#include "controller/informer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "store/keys.h"

namespace tidal {

std::string AppKeyFromStoreKey(const std::string& store_key) {
  // "/apps/<ns>/<name>"
  std::vector<std::string> parts = absl::StrSplit(store_key, '/');
  if (parts.size() != 4) return "";
  return absl::StrCat(parts[2], "/", parts[3]);
}

bool SameDesiredState(const tidal::v1::App& a, const tidal::v1::App& b) {
  const auto& ma = a.metadata();
  const auto& mb = b.metadata();
  if (ma.generation() != mb.generation() || ma.uid() != mb.uid() ||
      ma.has_deletion_timestamp() != mb.has_deletion_timestamp() ||
      ma.has_deletion_grace_period_seconds() !=
          mb.has_deletion_grace_period_seconds() ||
      ma.deletion_grace_period_seconds() !=
          mb.deletion_grace_period_seconds()) {
    return false;
  }
  if (ma.labels_size() != mb.labels_size() ||
      ma.annotations_size() != mb.annotations_size()) {
    return false;
  }
  for (const auto& [k, v] : ma.labels()) {
    auto it = mb.labels().find(k);
    if (it == mb.labels().end() || it->second != v) return false;
  }
  for (const auto& [k, v] : ma.annotations()) {
    auto it = mb.annotations().find(k);
    if (it == mb.annotations().end() || it->second != v) return false;
  }
  return true;
}

namespace {

// An app whose stored value cannot be decoded is left out of the cache (its
// instances are left as they are: the reconciler fails on it with DataLoss);
// the rest are reconciled.
void LogDamaged(const KeyValue& kv) {
  GetLogger("controller")
      ->error(
          "app={} is damaged in the store: its value ({} bytes, revision "
          "{}) cannot be decoded, so it is not reconciled; delete it and "
          "apply it again, or restore a backup (docs/store.md)",
          AppKeyFromStoreKey(kv.key), kv.value.size(), kv.resource_version);
}

}  // namespace

AppInformer::AppInformer(Store* store, Handler handler)
    : store_(store), handler_(std::move(handler)) {}

AppInformer::~AppInformer() { Stop(); }

absl::Status AppInformer::Relist() {
  // A store may report a compacted start revision from WatchPrefix itself
  // (SQLite, the tests' MemoryStore) rather than from Next (etcd): the history
  // moved on between the list and the watch, so list again.
  absl::Status st;
  for (int attempt = 0; attempt < 3; ++attempt) {
    st = ListAndWatch();
    if (!absl::IsOutOfRange(st)) return st;
    GetLogger("controller")
        ->warn("app watch could not start ({}); listing again", st.ToString());
  }
  return st;
}

absl::Status AppInformer::ListAndWatch() {
  auto list = store_->List(keys::AppPrefix());
  if (!list.ok()) return list.status();
  absl::flat_hash_map<std::string, tidal::v1::App> fresh;
  for (const auto& kv : list->items) {
    tidal::v1::App app;
    if (!app.ParseFromString(kv.value)) {
      LogDamaged(kv);
      continue;
    }
    app.mutable_metadata()->set_resource_version(kv.resource_version);
    fresh[AppKeyFromStoreKey(kv.key)] = std::move(app);
  }
  std::vector<std::pair<std::string, std::optional<tidal::v1::App>>> changes;
  auto watch = store_->WatchPrefix(keys::AppPrefix(), list->resource_version);
  if (!watch.ok()) return watch.status();
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, app] : cache_) {
      if (!fresh.contains(key)) changes.emplace_back(key, std::nullopt);
    }
    for (const auto& [key, app] : fresh) {
      auto it = cache_.find(key);
      if (it == cache_.end() || it->second.metadata().resource_version() !=
                                    app.metadata().resource_version()) {
        changes.emplace_back(key, app);
      }
    }
    cache_ = std::move(fresh);
    version_ = list->resource_version;
    watch_ = std::move(*watch);
  }
  for (const auto& [key, app] : changes) handler_(key, app ? &*app : nullptr);
  return absl::OkStatus();
}

absl::Status AppInformer::Start() {
  if (thread_.joinable()) return absl::OkStatus();  // started already
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  absl::Status st = Relist();
  if (!st.ok()) return st;
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void AppInformer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    if (watch_) watch_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

void AppInformer::Run() {
  auto log = GetLogger("controller");
  // After a failed re-list: 200 ms, doubling to 5 s while the store stays
  // down (it logged ten lines a second), back to 200 ms once one succeeds.
  constexpr absl::Duration kFirstRetry = absl::Milliseconds(200);
  absl::Duration retry = kFirstRetry;
  while (true) {
    Watch* watch;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      watch = watch_.get();
    }
    auto events = watch->Next(absl::Seconds(1));
    if (!events.ok()) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      log->warn("app watch ended ({}); listing again",
                events.status().ToString());
      absl::Status st = Relist();
      if (!st.ok()) {
        log->error("re-listing apps failed (retrying in {}): {}",
                   absl::FormatDuration(retry), st.ToString());
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), retry);
        retry = std::min(retry * 2, absl::Seconds(5));
      } else {
        retry = kFirstRetry;
      }
      continue;
    }
    for (const auto& ev : *events) {
      std::string key = AppKeyFromStoreKey(ev.kv.key);
      if (key.empty()) continue;
      if (ev.type == WatchEvent::Type::kDelete) {
        {
          absl::MutexLock lock(&mu_);
          cache_.erase(key);
          version_ = ev.kv.resource_version;
        }
        handler_(key, nullptr);
        continue;
      }
      tidal::v1::App app;
      if (!app.ParseFromString(ev.kv.value)) {
        LogDamaged(ev.kv);
        continue;
      }
      app.mutable_metadata()->set_resource_version(ev.kv.resource_version);
      bool spec_changed = true;
      {
        absl::MutexLock lock(&mu_);
        auto it = cache_.find(key);
        if (it != cache_.end())
          spec_changed = !SameDesiredState(it->second, app);
        cache_[key] = app;
        version_ = ev.kv.resource_version;
      }
      // A write of status alone (the controller's own) needs no reconcile.
      if (spec_changed) handler_(key, &app);
    }
  }
}

std::optional<tidal::v1::App> AppInformer::Get(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  return it->second;
}

bool AppInformer::Live(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(key);
  return it != cache_.end() && !it->second.metadata().has_deletion_timestamp();
}

std::vector<std::string> AppInformer::Keys() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> keys;
  keys.reserve(cache_.size());
  for (const auto& [key, app] : cache_) keys.push_back(key);
  return keys;
}

void AppInformer::ForEach(
    const std::function<void(const tidal::v1::App&)>& visit) {
  absl::MutexLock lock(&mu_);
  for (const auto& [key, app] : cache_) visit(app);
}

size_t AppInformer::Size() {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

}  // namespace tidal
