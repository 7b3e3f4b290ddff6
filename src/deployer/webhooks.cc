#include "deployer/webhooks.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>

#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "api/addresses.h"
#include "common/json_string.h"
#include "common/logging.h"

namespace tidal::deployer {
namespace {

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

// Checks each address curl is about to connect to (after its DNS lookup, so
// a name that resolves, or re-resolves, to a private address is caught on
// the exact address used).
struct TargetGuard {
  bool allow_private = false;
  std::string refused;  // why the last address was refused
};

curl_socket_t OpenSocket(void* clientp, curlsocktype purpose,
                         struct curl_sockaddr* addr) {
  auto* guard = static_cast<TargetGuard*>(clientp);
  if (purpose == CURLSOCKTYPE_IPCXN && !guard->allow_private) {
    AddressClass c = ClassifySockaddr(&addr->addr);
    if (c != AddressClass::kPublic) {
      guard->refused = absl::StrCat(SockaddrText(&addr->addr), " is ",
                                    AddressClassName(c), " address");
      return CURL_SOCKET_BAD;
    }
  }
  return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string WebhookPayload(const WebhookEvent& ev) {
  return absl::StrCat(
      "{\"type\":", common::JsonQuoted(ev.type),
      ",\"namespace\":", common::JsonQuoted(ev.ns),
      ",\"app\":", common::JsonQuoted(ev.app),
      ",\"fromRevision\":", ev.from_revision,
      ",\"toRevision\":", ev.to_revision,
      ",\"phase\":", common::JsonQuoted(ev.phase), ",\"step\":", ev.step,
      ",\"totalSteps\":", ev.total_steps,
      ",\"reason\":", common::JsonQuoted(ev.reason),
      ",\"message\":", common::JsonQuoted(ev.message), ",\"time\":",
      common::JsonQuoted(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", ev.time,
                                          absl::UTCTimeZone())),
      "}");
}

std::string HmacSha256Hex(const std::string& key, const std::string& body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest,
       &len);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

CurlWebhookSender::CurlWebhookSender(WebhookSenderOptions options)
    : options_(options) {
  GlobalInit();
  worker_ = std::thread([this] { Loop(); });
}

CurlWebhookSender::~CurlWebhookSender() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  worker_.join();
}

absl::Status CurlWebhookSender::Once(const tidal::v1::Webhook& hook,
                                     const std::string& payload) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  struct curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(
      headers, absl::StrCat("X-Tidal-Event: ", hook.type()).c_str());
  if (!hook.secret().empty()) {
    headers = curl_slist_append(
        headers, absl::StrCat("X-Tidal-Signature: sha256=",
                              HmacSha256Hex(hook.secret(), payload))
                     .c_str());
  }
  const int64_t timeout_ms = hook.timeout_ms() > 0 ? hook.timeout_ms() : 10000;
  curl_easy_setopt(curl, CURLOPT_URL, hook.url().c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                   static_cast<long>(payload.size()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "tidal-deployer");
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  TargetGuard guard;
  guard.allow_private = options_.allow_private;
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, OpenSocket);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &guard);
  if (!options_.allow_private) {
    // A proxy would make the connection for us, to an address not checked.
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
  }
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK && !guard.refused.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "webhook ", hook.name(), " (", hook.url(), ") refused: ", guard.refused,
        "; tidald sends webhooks only to public addresses unless started "
        "with --allow-private-webhooks"));
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return absl::DeadlineExceededError(
        absl::StrCat("webhook ", hook.name(), " (", hook.url(),
                     ") timed out after ", timeout_ms, "ms"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("webhook ", hook.name(), " (",
                                               hook.url(),
                                               "): ", curl_easy_strerror(rc)));
  }
  if (code < 200 || code > 299) {
    return absl::FailedPreconditionError(absl::StrCat(
        "webhook ", hook.name(), " (", hook.url(), ") answered ", code));
  }
  return absl::OkStatus();
}

absl::Status CurlWebhookSender::Call(const tidal::v1::Webhook& hook,
                                     const std::string& payload) {
  absl::Status last;
  for (int attempt = 0; attempt <= std::max(0, hook.retries()); ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(200 * attempt));
    last = Once(hook, payload);
    if (last.ok() || absl::IsPermissionDenied(last)) return last;
    GetLogger("deployer")
        ->warn("webhook {} attempt {}: {}", hook.name(), attempt + 1,
               last.ToString());
  }
  return last;
}

void CurlWebhookSender::Notify(const tidal::v1::Webhook& hook,
                               const std::string& payload) {
  absl::MutexLock lock(&mu_);
  queue_.emplace_back(hook, payload);
}

void CurlWebhookSender::Loop() {
  while (true) {
    std::pair<tidal::v1::Webhook, std::string> item;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::Status st = Call(item.first, item.second);
    if (!st.ok()) {
      GetLogger("deployer")
          ->warn("notification webhook {} failed: {}", item.first.name(),
                 st.ToString());
    }
  }
}

}  // namespace tidal::deployer
