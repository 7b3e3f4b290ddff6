#include "deployer/outbox.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/logging.h"

namespace tidal::deployer {
namespace {

constexpr char kPrefix[] = "/outbox/";

}  // namespace

NotificationOutbox::NotificationOutbox(Store* store, WebhookSender* sender)
    : store_(store), sender_(sender) {}

NotificationOutbox::~NotificationOutbox() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

std::string NotificationOutbox::Encode(const tidal::v1::Webhook& hook,
                                       const std::string& payload) {
  std::string h = hook.SerializeAsString();
  return absl::StrCat(h.size(), ":", h, payload);
}

bool NotificationOutbox::Decode(const std::string& value,
                                tidal::v1::Webhook* hook,
                                std::string* payload) {
  size_t colon = value.find(':');
  size_t n = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(value).substr(0, colon), &n) ||
      value.size() - colon - 1 < n) {
    return false;
  }
  if (!hook->ParseFromString(value.substr(colon + 1, n))) return false;
  *payload = value.substr(colon + 1 + n);
  return true;
}

Op NotificationOutbox::Stage(const std::string& ns, const std::string& app,
                             const tidal::v1::Webhook& hook,
                             const std::string& payload, std::string* key) {
  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    seq = ++seq_;
  }
  // Keys sort by the time they were made: delivered in that order.
  *key = absl::StrFormat("%s%020d-%06d-%s-%s", kPrefix,
                         absl::GetCurrentTimeNanos(), seq % 1000000, ns, app);
  return Op::Put(*key, Encode(hook, payload), 0);
}

void NotificationOutbox::Send(const std::string& key,
                              const tidal::v1::Webhook& hook,
                              const std::string& payload) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(Item{key, hook, payload});
}

absl::Status NotificationOutbox::Resume() {
  auto list = store_->List(kPrefix);
  if (!list.ok()) return list.status();
  auto log = GetLogger("deployer");
  absl::MutexLock lock(&mu_);
  absl::flat_hash_set<std::string> queued;
  for (const auto& item : queue_) queued.insert(item.key);
  for (const auto& kv : list->items) {
    if (queued.contains(kv.key)) continue;  // sent while stopped
    Item item;
    item.key = kv.key;
    if (!Decode(kv.value, &item.hook, &item.payload)) {
      log->warn("outbox: dropping unreadable notification {}", kv.key);
      (void)store_->Delete(kv.key);
      continue;
    }
    queue_.push_back(std::move(item));
  }
  if (!queue_.empty()) {
    log->info("outbox: {} notification(s) from before the restart to send",
              queue_.size());
  }
  return absl::OkStatus();
}

void NotificationOutbox::Start() {
  if (worker_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  worker_ = std::thread([this] { Loop(); });
}

void NotificationOutbox::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
  // What was not delivered stays in the store; Resume queues it again.
  absl::MutexLock lock(&mu_);
  queue_.clear();
}

size_t NotificationOutbox::pending() {
  absl::MutexLock lock(&mu_);
  return queue_.size() + in_flight_;
}

void NotificationOutbox::Loop() {
  auto log = GetLogger("deployer");
  while (true) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
      ++in_flight_;
    }
    absl::Status s = sender_->Call(item.hook, item.payload);
    if (!s.ok()) {
      log->warn("{} webhook {} failed: {}", item.hook.type(), item.hook.name(),
                s.ToString());
    }
    // Delivered, or given up after the hook's retries: either way it is
    // done (a notification never blocks a release).
    if (auto d = store_->Delete(item.key);
        !d.ok() && !absl::IsNotFound(d.status()))
      log->warn("outbox: deleting {}: {}", item.key, d.status().ToString());
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }
}

}  // namespace tidal::deployer
