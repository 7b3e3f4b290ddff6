#include "ha/compactor.h"

#include "common/logging.h"

namespace tidal {

Compactor::Compactor(EtcdStore* store, Options options)
    : store_(store), options_(options) {}

Compactor::~Compactor() { Stop(); }

void Compactor::Start() {
  absl::MutexLock thread_lock(&thread_mu_);
  if (thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    running_ = true;
  }
  thread_ = std::thread([this] { Run(); });
}

void Compactor::Stop() {
  absl::MutexLock thread_lock(&thread_mu_);
  {
    absl::MutexLock lock(&mu_);
    running_ = false;
    cv_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

int64_t Compactor::compacted() const {
  absl::MutexLock lock(&mu_);
  return compacted_;
}

absl::StatusOr<int64_t> Compactor::CompactOnce() {
  auto current = store_->CurrentVersion();
  if (!current.ok()) return current.status();
  const int64_t target = *current - options_.keep;
  {
    absl::MutexLock lock(&mu_);
    if (target <= 0 || target <= compacted_) return 0;
  }
  absl::Status s = store_->Compact(target);
  // OutOfRange: compacted at or past `target` already (another leader).
  if (!s.ok() && !absl::IsOutOfRange(s)) return s;
  absl::MutexLock lock(&mu_);
  if (target > compacted_) compacted_ = target;
  return s.ok() ? target : 0;
}

void Compactor::Run() {
  auto log = GetLogger("election");
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time until = absl::Now() + options_.interval;
      while (running_) {
        if (cv_.WaitWithDeadline(&mu_, until)) break;
      }
      if (!running_) return;
    }
    auto rev = CompactOnce();
    if (!rev.ok()) {
      log->warn("etcd compaction failed: {}", rev.status().ToString());
    } else if (*rev > 0) {
      log->info("etcd history compacted up to revision {} (keeping {})", *rev,
                options_.keep);
    }
  }
}

}  // namespace tidal
