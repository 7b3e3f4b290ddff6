#include "controller/events.h"

#include <vector>

#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/proto_time.h"
#include "store/keys.h"

namespace tidal {

EventRecorder::EventRecorder(Store* store, Clock* clock, int max_per_app)
    : store_(store), clock_(clock), max_per_app_(max_per_app) {}

void EventRecorder::LoadLocked(const std::string& ns, const std::string& app,
                               AppEvents* events) {
  events->loaded = true;
  auto list = store_->List(keys::EventPrefix(ns, app));
  if (!list.ok()) return;
  for (const auto& kv : list->items) {
    tidal::v1::Event ev;
    if (!ev.ParseFromString(kv.value)) continue;
    events->recent.push_back(Recent{kv.key, ev.reason(), ev.message()});
  }
}

void EventRecorder::Record(const std::string& ns, const std::string& app,
                           const std::string& type, const std::string& reason,
                           const std::string& message,
                           const std::string& source) {
  absl::MutexLock lock(&mu_);
  AppEvents& events = apps_[absl::StrCat(ns, "/", app)];
  if (!events.loaded) LoadLocked(ns, app, &events);
  absl::Time now = clock_->Now();
  std::vector<Op> ops;
  tidal::v1::Event ev;
  if (!events.recent.empty() && events.recent.back().reason == reason &&
      events.recent.back().message == message) {
    // A repeat: bump the count of the last event.
    auto kv = store_->Get(events.recent.back().key);
    if (kv.ok() && ev.ParseFromString(kv->value)) {
      ev.set_count(ev.count() + 1);
      *ev.mutable_last_time() = ToProtoTime(now);
      ops.push_back(Op::Put(kv->key, ev.SerializeAsString()));
    }
  }
  if (ops.empty()) {
    std::string id =
        absl::StrFormat("%020d-%06d", absl::ToUnixNanos(now), seq_++ % 1000000);
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
    ops.push_back(Op::Put(key, ev.SerializeAsString()));
    events.recent.push_back(Recent{key, reason, message});
    while (static_cast<int>(events.recent.size()) > max_per_app_) {
      ops.push_back(Op::Delete(events.recent.front().key));
      events.recent.pop_front();
    }
  }
  auto st = store_->Txn(ops);
  if (!st.ok()) {
    GetLogger("controller")
        ->warn("app={}/{} recording event {} failed: {}", ns, app, reason,
               st.status().ToString());
  }
}

void EventRecorder::Purge(const std::string& ns, const std::string& app) {
  absl::MutexLock lock(&mu_);
  apps_.erase(absl::StrCat(ns, "/", app));
  auto list = store_->List(keys::EventPrefix(ns, app));
  if (!list.ok() || list->items.empty()) return;
  std::vector<Op> ops;
  for (const auto& kv : list->items) ops.push_back(Op::Delete(kv.key));
  (void)store_->Txn(ops);
}

}  // namespace tidal
