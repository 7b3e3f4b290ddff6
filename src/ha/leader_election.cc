#include "ha/leader_election.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "google/protobuf/timestamp.pb.h"

namespace tidal {
namespace {

using SteadyClock = std::chrono::steady_clock;

SteadyClock::duration ToSteady(absl::Duration d) {
  return std::chrono::duration_cast<SteadyClock::duration>(
      absl::ToChronoNanoseconds(d));
}

absl::Duration FromSteady(SteadyClock::duration d) {
  return absl::FromChrono(
      std::chrono::duration_cast<std::chrono::nanoseconds>(d));
}

}  // namespace

absl::StatusOr<LeaderInfo> CurrentLeader(Store* store, const std::string& key) {
  LeaderInfo info;
  auto kv = store->Get(key);
  if (absl::IsNotFound(kv.status())) return info;
  if (!kv.ok()) return kv.status();
  if (!info.record.ParseFromString(kv->value)) {
    return absl::DataLossError(
        absl::StrCat("leader key \"", key, "\" does not hold a LeaderRecord"));
  }
  info.present = true;
  info.token = kv->create_version;
  return info;
}

LeaderElector::LeaderElector(EtcdStore* store, Options options,
                             Callbacks callbacks)
    : store_(store),
      options_(std::move(options)),
      callbacks_(std::move(callbacks)) {
  renew_interval_ = options_.renew_interval > absl::ZeroDuration()
                        ? options_.renew_interval
                        : options_.ttl / 3;
  margin_ = options_.safety_margin > absl::ZeroDuration()
                ? options_.safety_margin
                : std::max(options_.ttl / 10, absl::Milliseconds(100));
}

LeaderElector::~LeaderElector() { Resign(); }

absl::Status LeaderElector::Start() {
  if (options_.key.empty())
    return absl::InvalidArgumentError("leader election needs a key");
  if (options_.ttl < absl::Seconds(1) || margin_ >= options_.ttl ||
      renew_interval_ >= options_.ttl - margin_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "leader election: ttl ", absl::FormatDuration(options_.ttl),
        " must be at least 1s and exceed the renew interval (",
        absl::FormatDuration(renew_interval_), ") plus the safety margin (",
        absl::FormatDuration(margin_), ")"));
  }
  if (options_.retry_period <= absl::ZeroDuration())
    return absl::InvalidArgumentError("leader election: retry period <= 0");
  absl::MutexLock join(&join_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (started_ || exit_ != Exit::kNone)
      return absl::FailedPreconditionError("leader election started already");
    started_ = true;
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void LeaderElector::Resign() {
  {
    absl::MutexLock lock(&mu_);
    if (exit_ == Exit::kNone) exit_ = Exit::kResign;
    if (watch_) watch_->Cancel();
    cv_.SignalAll();
  }
  absl::MutexLock join(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

void LeaderElector::Abandon() {
  {
    absl::MutexLock lock(&mu_);
    if (exit_ == Exit::kNone) exit_ = Exit::kAbandon;
    if (watch_) watch_->Cancel();
    cv_.SignalAll();
  }
  absl::MutexLock join(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

bool LeaderElector::IsLeader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

int64_t LeaderElector::token() const {
  absl::MutexLock lock(&mu_);
  return token_;
}

int64_t LeaderElector::lease() const {
  absl::MutexLock lock(&mu_);
  return lease_id_;
}

int64_t LeaderElector::elections() const {
  absl::MutexLock lock(&mu_);
  return elections_;
}

int64_t LeaderElector::depositions() const {
  absl::MutexLock lock(&mu_);
  return depositions_;
}

bool LeaderElector::stopping() const {
  absl::MutexLock lock(&mu_);
  return exit_ != Exit::kNone;
}

void LeaderElector::Run() {
  auto log = GetLogger("election");
  log->info("node {} campaigning for {} (ttl {})", options_.identity,
            options_.key, absl::FormatDuration(options_.ttl));
  while (!stopping()) {
    if (Campaign()) {
      Lead();
      // Deposed: give the standbys (who campaign as soon as the key goes)
      // one retry period before campaigning again, so leadership moves
      // rather than flapping back to a node that just lost its lease.
      absl::MutexLock lock(&mu_);
      if (exit_ == Exit::kNone)
        cv_.WaitWithTimeout(&mu_, options_.retry_period);
      continue;
    }
    // Standby: campaign again when the key goes, or after retry_period.
    const auto until = SteadyClock::now() + ToSteady(options_.retry_period);
    while (true) {
      const auto now = SteadyClock::now();
      if (now >= until) break;
      KeyEvent ev = WaitForKey(FromSteady(until - now), 0);
      if (ev == KeyEvent::kGone || ev == KeyEvent::kStopped) break;
    }
  }
  DropWatch();
  Exit exit;
  {
    absl::MutexLock lock(&mu_);
    exit = exit_;
  }
  if (exit == Exit::kResign && lease_ != 0) {
    // Bounded: after a TTL the lease is gone anyway.
    absl::Status s = store_->RevokeLease(lease_, options_.ttl);
    if (!s.ok() && !absl::IsNotFound(s)) {
      log->warn("node {}: revoking lease {} failed: {}", options_.identity,
                lease_, s.ToString());
    } else {
      log->info("node {}: lease {} revoked", options_.identity, lease_);
    }
  }
  lease_ = 0;
}

bool LeaderElector::Campaign() {
  auto log = GetLogger("election");
  // A read first: while someone leads, a campaign would only grant and
  // revoke a lease (two raft proposals) for nothing.
  auto current = store_->Get(options_.key);
  if (!absl::IsNotFound(current.status())) {
    if (!current.ok()) {
      log->warn("node {}: reading {} failed: {}", options_.identity,
                options_.key, current.status().ToString());
    }
    return false;
  }
  const auto sent = SteadyClock::now();
  auto lease = store_->GrantLease(options_.ttl);
  if (!lease.ok()) {
    log->warn("node {}: lease grant failed: {}", options_.identity,
              lease.status().ToString());
    return false;
  }
  tidal::v1::LeaderRecord record = options_.record;
  if (record.node().empty()) record.set_node(options_.identity);
  Clock* clock = options_.clock ? options_.clock : RealClock::Get();
  const absl::Time now = clock->Now();
  record.mutable_since()->set_seconds(absl::ToUnixSeconds(now));
  record.mutable_since()->set_nanos(static_cast<int32_t>(
      (now - absl::FromUnixSeconds(absl::ToUnixSeconds(now))) /
      absl::Nanoseconds(1)));
  const std::string value = record.SerializeAsString();
  Op put = Op::Put(options_.key, value, 0);
  put.lease = *lease;
  auto rev = store_->Txn({put});
  int64_t token = 0;
  if (rev.ok()) {
    token = *rev;
  } else if (!absl::IsFailedPrecondition(rev.status())) {
    // The txn may have been applied (etcd semantics): look.
    auto kv = store_->Get(options_.key);
    if (kv.ok() && kv->value == value) token = kv->create_version;
  }
  if (token == 0) {
    if (!absl::IsFailedPrecondition(rev.status())) {
      log->warn("node {}: campaign failed: {}", options_.identity,
                rev.status().ToString());
    }
    absl::Status s = store_->RevokeLease(*lease, options_.ttl);
    if (!s.ok() && !absl::IsNotFound(s)) {
      log->debug("node {}: revoking unused lease: {}", options_.identity,
                 s.ToString());
    }
    return false;
  }
  lease_ = *lease;
  deadline_ = sent + ToSteady(options_.ttl - margin_);
  DropWatch();
  watch_from_ = token;
  {
    absl::MutexLock lock(&mu_);
    leader_ = true;
    token_ = token;
    lease_id_ = lease_;
    ++elections_;
  }
  log->info("node {} leads (token {}, lease {})", options_.identity, token,
            lease_);
  if (callbacks_.on_elected) callbacks_.on_elected(token);
  return true;
}

void LeaderElector::Lead() {
  auto log = GetLogger("election");
  int64_t token;
  {
    absl::MutexLock lock(&mu_);
    token = token_;
  }
  const auto renew = ToSteady(renew_interval_);
  const auto retry = ToSteady(std::clamp(
      renew_interval_ / 4, absl::Milliseconds(50), absl::Seconds(1)));
  auto next_renew = SteadyClock::now() + renew;
  while (true) {
    Exit exit;
    {
      absl::MutexLock lock(&mu_);
      exit = exit_;
    }
    if (exit == Exit::kResign) {
      Deposed("resigning");
      return;
    }
    if (exit == Exit::kAbandon) {
      absl::MutexLock lock(&mu_);  // a crash: no callback, no revoke
      leader_ = false;
      token_ = 0;
      lease_id_ = 0;
      return;
    }
    auto now = SteadyClock::now();
    if (now >= deadline_) {
      Deposed("the local lease deadline passed without a renewal");
      return;
    }
    if (now >= next_renew) {
      auto ttl = store_->KeepAliveOnce(lease_, FromSteady(deadline_ - now));
      if (ttl.ok()) {
        deadline_ = now + ToSteady(*ttl - margin_);
        next_renew = now + renew;
      } else if (absl::IsNotFound(ttl.status())) {
        Deposed(absl::StrCat("lease ", lease_, " is gone"));
        return;
      } else if (SteadyClock::now() < deadline_) {
        log->warn(
            "node {}: lease renewal failed ({}); {} left", options_.identity,
            ttl.status().ToString(),
            absl::FormatDuration(FromSteady(deadline_ - SteadyClock::now())));
        next_renew = SteadyClock::now() + retry;
      }
      continue;  // (a failure past the deadline: deposed at the top)
    }
    KeyEvent ev =
        WaitForKey(FromSteady(std::min(next_renew, deadline_) - now), token);
    if (ev == KeyEvent::kGone) {
      Deposed("the leader key was deleted");
      return;
    }
    if (ev == KeyEvent::kChanged) {
      Deposed("the leader key was created again by another node");
      return;
    }
  }
}

void LeaderElector::Deposed(const std::string& why) {
  auto log = GetLogger("election");
  {
    absl::MutexLock lock(&mu_);
    leader_ = false;
    token_ = 0;
    lease_id_ = 0;
    ++depositions_;
  }
  if (callbacks_.on_deposed) callbacks_.on_deposed();
  log->warn("node {} no longer leads: {}", options_.identity, why);
  DropWatch();
  watch_from_ = 0;
  bool resigning;
  {
    absl::MutexLock lock(&mu_);
    resigning = exit_ == Exit::kResign;
  }
  // Run revokes the lease on Resign. Otherwise it is gone (keepalive said
  // so, or its key was deleted) or unreachable (the local deadline): let it
  // expire rather than block on etcd.
  if (!resigning) lease_ = 0;
}

absl::Status LeaderElector::OpenWatch(int64_t from, absl::Duration timeout) {
  auto watch = store_->WatchPrefixWithin(options_.key, from, timeout);
  if (!watch.ok()) return watch.status();
  absl::MutexLock lock(&mu_);
  if (exit_ != Exit::kNone) return absl::CancelledError("stopping");
  watch_ = std::move(*watch);
  return absl::OkStatus();
}

void LeaderElector::DropWatch() {
  std::unique_ptr<Watch> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::move(watch_);
  }
}

LeaderElector::KeyEvent LeaderElector::WaitForKey(absl::Duration timeout,
                                                  int64_t token) {
  auto pause = [&] {
    absl::MutexLock lock(&mu_);
    if (exit_ == Exit::kNone) cv_.WaitWithTimeout(&mu_, timeout);
    return exit_ != Exit::kNone ? KeyEvent::kStopped : KeyEvent::kNone;
  };
  Watch* watch;
  {
    absl::MutexLock lock(&mu_);
    if (exit_ != Exit::kNone) return KeyEvent::kStopped;
    watch = watch_.get();
  }
  if (watch == nullptr && token != 0) {
    // Leading: nothing here may block past the local deadline, so no list:
    // resume the watch from the last revision seen, within `timeout`. When
    // that history is gone, go on without a watch (keepalives decide).
    if (watch_from_ < 0) return pause();
    absl::Status s = OpenWatch(watch_from_, timeout);
    if (!s.ok()) {
      if (absl::IsOutOfRange(s)) watch_from_ = -1;
      return pause();
    }
    absl::MutexLock lock(&mu_);
    watch = watch_.get();
    if (watch == nullptr) return KeyEvent::kStopped;
  } else if (watch == nullptr) {
    if (watch_from_ == 0) {
      // Where the key stands now, and a revision to watch from.
      auto list = store_->List(options_.key);
      if (!list.ok()) return pause();
      const KeyValue* kv = nullptr;
      for (const auto& item : list->items) {
        if (item.key == options_.key) kv = &item;
      }
      if (kv == nullptr) return KeyEvent::kGone;
      if (token != 0 && kv->create_version != token) return KeyEvent::kChanged;
      watch_from_ = list->resource_version;
    }
    absl::Status s = OpenWatch(watch_from_, options_.ttl);
    if (!s.ok()) {
      watch_from_ = 0;
      return pause();
    }
    absl::MutexLock lock(&mu_);
    watch = watch_.get();
    if (watch == nullptr) return KeyEvent::kStopped;
  }
  auto events = watch->Next(timeout);
  if (!events.ok()) {
    if (stopping()) return KeyEvent::kStopped;
    GetLogger("election")
        ->info("node {}: watch on {} ended ({}); reopening", options_.identity,
               options_.key, events.status().ToString());
    DropWatch();
    if (token == 0) {
      watch_from_ = 0;  // list again: events may have been missed
    } else if (absl::IsOutOfRange(events.status())) {
      watch_from_ = -1;  // that history is gone (see above)
    }
    return KeyEvent::kNone;
  }
  KeyEvent result = KeyEvent::kNone;
  for (const auto& ev : *events) {
    if (ev.kv.key != options_.key) continue;
    watch_from_ = ev.kv.resource_version;
    if (ev.type == WatchEvent::Type::kDelete) {
      result = KeyEvent::kGone;
    } else if (token != 0 && ev.kv.create_version != token) {
      result = KeyEvent::kChanged;
    } else if (result == KeyEvent::kGone) {
      result = token == 0 ? KeyEvent::kNone : KeyEvent::kChanged;
    }
  }
  return result;
}

}  // namespace tidal
