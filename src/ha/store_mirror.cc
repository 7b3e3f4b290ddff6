#include "ha/store_mirror.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"

namespace tidal::ha {

StoreMirror::StoreMirror(Store* store, std::string prefix, Callbacks callbacks,
                         Options options)
    : store_(store),
      prefix_(std::move(prefix)),
      callbacks_(std::move(callbacks)),
      options_(options) {}

StoreMirror::~StoreMirror() { Stop(); }

absl::Status StoreMirror::Start(bool list_first) {
  if (thread_.joinable()) return absl::OkStatus();
  {
    absl::MutexLock l(&mu_);
    stopping_ = false;
  }
  int64_t from = 0;
  if (list_first) {
    absl::StatusOr<int64_t> rev = ListOnce(/*first=*/true);
    if (!rev.ok()) return rev.status();
    from = *rev;
  }
  thread_ = std::thread([this, list_first, from] { Run(list_first, from); });
  return absl::OkStatus();
}

void StoreMirror::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    if (watch_ != nullptr) watch_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

int64_t StoreMirror::lists() const {
  absl::MutexLock l(&mu_);
  return lists_;
}

int64_t StoreMirror::revision() const {
  absl::MutexLock l(&mu_);
  return revision_;
}

absl::StatusOr<int64_t> StoreMirror::ListOnce(bool first) {
  absl::StatusOr<ListResult> list = store_->List(prefix_);
  if (!list.ok()) return list.status();
  if (callbacks_.on_list) callbacks_.on_list(*list, first);
  absl::MutexLock l(&mu_);
  ++lists_;
  revision_ = list->resource_version;
  return list->resource_version;
}

bool StoreMirror::WaitOrStop(absl::Duration d) {
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
}

void StoreMirror::Run(bool listed, int64_t from) {
  auto log = GetLogger("cluster");
  bool first = !listed;
  absl::Duration backoff = options_.retry_min;
  std::unique_ptr<Watch> watch;
  auto fail = [&](const absl::Status& s, const char* what) {
    log->warn("cluster: {} of {} failed (retrying in {}): {}", what, prefix_,
              absl::FormatDuration(backoff), s.ToString());
    {
      absl::MutexLock l(&mu_);
      watch_ = nullptr;
    }
    watch.reset();
    listed = false;
    bool stop = WaitOrStop(backoff);
    backoff = std::min(backoff * 2, options_.retry_max);
    return stop;
  };
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (stopping_) break;
    }
    if (!listed) {
      absl::StatusOr<int64_t> rev = ListOnce(first);
      if (!rev.ok()) {
        if (fail(rev.status(), "list")) break;
        continue;
      }
      first = false;
      listed = true;
      from = *rev;
    }
    if (watch == nullptr) {
      absl::StatusOr<std::unique_ptr<Watch>> w =
          store_->WatchPrefix(prefix_, from);
      if (!w.ok()) {
        if (fail(w.status(), "watch")) break;
        continue;
      }
      watch = std::move(*w);
      absl::MutexLock l(&mu_);
      if (stopping_) break;
      watch_ = watch.get();
    }
    absl::StatusOr<std::vector<WatchEvent>> events = watch->Next(options_.poll);
    if (!events.ok()) {
      {
        absl::MutexLock l(&mu_);
        if (stopping_) break;
      }
      if (absl::IsOutOfRange(events.status())) {
        // Fell behind or compacted: the listing says what is now.
        log->info("cluster: watch of {} fell behind ({}); listing again",
                  prefix_, events.status().ToString());
        {
          absl::MutexLock l(&mu_);
          watch_ = nullptr;
        }
        watch.reset();
        listed = false;
        continue;
      }
      if (fail(events.status(), "watch")) break;
      continue;
    }
    backoff = options_.retry_min;
    if (events->empty()) continue;
    from = events->back().kv.resource_version;
    if (callbacks_.on_events) callbacks_.on_events(*events);
    absl::MutexLock l(&mu_);
    revision_ = from;
  }
  absl::MutexLock l(&mu_);
  watch_ = nullptr;
}

}  // namespace tidal::ha
