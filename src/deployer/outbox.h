#pragma once

// NotificationOutbox: notification webhooks (post-rollout, rollback) that
// survive a crash of tidald. The deployer records each notification in the
// store in the same transaction as the rollout state that caused it
// (Stage), hands it over once that transaction has committed (Send), and a
// background thread delivers it through the WebhookSender (Call: the hook's
// timeout and retries) and then deletes it. Resume() queues what an earlier
// tidald committed but did not deliver. Delivery is at least once: a
// receiver may see a notification twice when tidald died between sending it
// and deleting it. Thread-safe.

#include <deque>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "deployer/webhooks.h"
#include "store/store.h"
#include "tidal/v1/app.pb.h"

namespace tidal::deployer {

class NotificationOutbox {
 public:
  NotificationOutbox(Store* store, WebhookSender* sender);
  // Finishes the delivery in progress; the rest stay in the store for the
  // next start.
  ~NotificationOutbox();

  // The store write that records one notification of app ns/app; `key`
  // receives its key (for Send once the write has committed).
  Op Stage(const std::string& ns, const std::string& app,
           const tidal::v1::Webhook& hook, const std::string& payload,
           std::string* key);
  // Queues a committed notification for delivery.
  void Send(const std::string& key, const tidal::v1::Webhook& hook,
            const std::string& payload);
  // Queues every notification in the store that is not queued yet (before
  // each Start).
  absl::Status Resume();
  // Starts the delivery thread (no effect when it runs).
  void Start();
  // Finishes the delivery in progress and stops the thread; what is left
  // stays in the store for the next Resume. Start may follow.
  void Stop();
  // Notifications queued or being delivered.
  size_t pending();

  // The stored form: "<size of the Webhook proto>:<Webhook proto><payload>".
  static std::string Encode(const tidal::v1::Webhook& hook,
                            const std::string& payload);
  static bool Decode(const std::string& value, tidal::v1::Webhook* hook,
                     std::string* payload);

 private:
  struct Item {
    std::string key;
    tidal::v1::Webhook hook;
    std::string payload;
  };
  void Loop();

  // Constant after construction.
  Store* const store_;
  WebhookSender* const sender_;

  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace tidal::deployer
