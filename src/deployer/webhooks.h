#pragma once

// Webhooks of a release (spec.webhooks): `pre-rollout` and
// `confirm-promotion` gate a step (Call: a non-2xx answer or a timeout,
// after the retries, fails it); `post-rollout` and `rollback` are
// notifications (Notify: sent in the background, failures only logged).
// Requests are POSTs of a JSON payload with the headers X-Tidal-Event and,
// when the hook has a secret, X-Tidal-Signature: sha256=<hex HMAC-SHA256 of
// the body>.

#include <deque>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tidal/v1/app.pb.h"

namespace tidal::deployer {

// The seam for tests. Thread-safe.
class WebhookSender {
 public:
  virtual ~WebhookSender() = default;
  // Sends `payload` and waits for the answer: OK on 2xx, else the last
  // error after 1 + hook.retries() attempts.
  virtual absl::Status Call(const tidal::v1::Webhook& hook,
                            const std::string& payload) = 0;
  // Sends in the background; returns at once.
  virtual void Notify(const tidal::v1::Webhook& hook,
                      const std::string& payload) = 0;
};

// What the deployer tells a webhook.
struct WebhookEvent {
  std::string
      type;  // pre-rollout | confirm-promotion | post-rollout | rollback
  std::string ns, app;
  int64_t from_revision = 0;  // stable
  int64_t to_revision = 0;    // the new one
  std::string phase;
  int32_t step = 0, total_steps = 0;
  std::string reason, message;
  absl::Time time;
};
std::string WebhookPayload(const WebhookEvent& ev);

// Lower-case hex of HMAC-SHA256(key, body).
std::string HmacSha256Hex(const std::string& key, const std::string& body);

struct WebhookSenderOptions {
  // Whether webhooks may reach private, loopback, link-local, unique-local,
  // multicast, unspecified and reserved addresses (tidald
  // --allow-private-webhooks). When not, the address curl is about to
  // connect to (after DNS) is checked, so a name that resolves to such an
  // address is refused too, and no proxy is used.
  bool allow_private = false;
};

// WebhookSender over libcurl (http and https). One background thread sends
// notifications in order; the destructor sends what is queued, then joins.
// A refused target is PermissionDenied ("... refused: 127.0.0.1 is a
// loopback address ..."), not retried.
class CurlWebhookSender : public WebhookSender {
 public:
  explicit CurlWebhookSender(WebhookSenderOptions options = {});
  ~CurlWebhookSender() override;
  absl::Status Call(const tidal::v1::Webhook& hook,
                    const std::string& payload) override;
  void Notify(const tidal::v1::Webhook& hook,
              const std::string& payload) override;

 private:
  absl::Status Once(const tidal::v1::Webhook& hook, const std::string& payload);
  void Loop();

  const WebhookSenderOptions options_;
  absl::Mutex mu_;
  std::deque<std::pair<tidal::v1::Webhook, std::string>> queue_
      ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace tidal::deployer
