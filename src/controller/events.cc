#include "controller/events.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "store/keys.h"

namespace tidal {

EventRecorder::EventRecorder(Store* store, Clock* clock, int max_per_app)
    : store_(store), clock_(clock), max_per_app_(max_per_app) {}

EventRecorder::~EventRecorder() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (flusher_.joinable()) flusher_.join();
  Flush();
}

void EventRecorder::StartFlusher(absl::Duration flush_interval) {
  absl::MutexLock lock(&mu_);
  if (async_) return;
  async_ = true;
  flusher_ = std::thread([this, flush_interval] { FlushLoop(flush_interval); });
}

void EventRecorder::FlushLoop(absl::Duration interval) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval);
      if (stopping_) return;
    }
    Flush();
  }
}

void EventRecorder::Flush() {
  absl::MutexLock flush_lock(&flush_mu_);
  std::vector<Op> ops;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, op] : pending_) ops.push_back(std::move(op));
    pending_.clear();
    created_in_pending_.clear();
  }
  if (ops.empty()) return;
  if (store_->Txn(ops).ok()) return;
  // One bad op (say, a delete of an event already gone) must not lose the
  // others: write them one by one.
  for (const Op& op : ops) {
    auto st = store_->Txn({op});
    if (!st.ok() && !absl::IsNotFound(st.status())) {
      GetLogger("controller")
          ->warn("writing event {} failed: {}", op.key, st.status().ToString());
    }
  }
}

void EventRecorder::LoadLocked(const std::string& ns, const std::string& app,
                               AppEvents* events) {
  events->loaded = true;
  auto list = store_->List(keys::EventPrefix(ns, app));
  if (!list.ok()) return;
  for (const auto& kv : list->items) {
    tidal::v1::Event ev;
    if (!ev.ParseFromString(kv.value)) continue;
    events->recent.emplace_back(kv.key, std::move(ev));
  }
}

void EventRecorder::PutLocked(const std::string& key,
                              const tidal::v1::Event& ev) {
  pending_[key] = Op::Put(key, ev.SerializeAsString());
}

void EventRecorder::DeleteLocked(const std::string& key) {
  if (created_in_pending_.erase(key) > 0) {
    pending_.erase(key);  // never reached the store
    return;
  }
  pending_[key] = Op::Delete(key);
}

void EventRecorder::Record(const std::string& ns, const std::string& app,
                           const std::string& type, const std::string& reason,
                           const std::string& message,
                           const std::string& source) {
  bool write_now;
  {
    absl::MutexLock lock(&mu_);
    AppEvents& events = apps_[absl::StrCat(ns, "/", app)];
    if (!events.loaded) LoadLocked(ns, app, &events);
    const absl::Time now = clock_->Now();
    if (!events.recent.empty() &&
        events.recent.back().second.reason() == reason &&
        events.recent.back().second.message() == message) {
      // A repeat: bump the count of the last event.
      auto& [key, ev] = events.recent.back();
      ev.set_count(ev.count() + 1);
      *ev.mutable_last_time() = ToProtoTime(now);
      PutLocked(key, ev);
    } else {
      tidal::v1::Event ev;
      std::string id = absl::StrFormat("%020d-%06d", absl::ToUnixNanos(now),
                                       seq_++ % 1000000);
      ev.set_id(id);
      ev.mutable_involved()->set_kind("App");
      ev.mutable_involved()->set_namespace_(ns);
      ev.mutable_involved()->set_name(app);
      ev.set_type(type);
      ev.set_reason(reason);
      ev.set_message(message);
      *ev.mutable_first_time() = ToProtoTime(now);
      *ev.mutable_last_time() = ToProtoTime(now);
      ev.set_count(1);
      ev.set_source(source);
      std::string key = keys::Event(ns, app, id);
      PutLocked(key, ev);
      created_in_pending_.insert(key);
      events.recent.emplace_back(key, std::move(ev));
      while (static_cast<int>(events.recent.size()) > max_per_app_) {
        DeleteLocked(events.recent.front().first);
        events.recent.pop_front();
      }
    }
    write_now = !async_;
  }
  if (write_now) Flush();
}

void EventRecorder::Purge(const std::string& ns, const std::string& app) {
  absl::MutexLock flush_lock(&flush_mu_);
  {
    absl::MutexLock lock(&mu_);
    apps_.erase(absl::StrCat(ns, "/", app));
    std::string prefix = keys::EventPrefix(ns, app);
    for (auto it = pending_.lower_bound(prefix);
         it != pending_.end() &&
         it->first.compare(0, prefix.size(), prefix) == 0;) {
      created_in_pending_.erase(it->first);
      it = pending_.erase(it);
    }
  }
  auto list = store_->List(keys::EventPrefix(ns, app));
  if (!list.ok() || list->items.empty()) return;
  std::vector<Op> ops;
  for (const auto& kv : list->items) ops.push_back(Op::Delete(kv.key));
  (void)store_->Txn(ops);
}

}  // namespace tidal
