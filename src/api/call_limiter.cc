#include "api/call_limiter.h"

#include "absl/strings/str_cat.h"

namespace tidal {

namespace {

struct KindInfo {
  const char* what;  // for messages
  const char* flag;
};

constexpr KindInfo kKinds[] = {
    {"apply", "--api-max-applies"},
    {"read", "--api-max-reads"},
    {"watch/logs stream", "--api-max-streams"},
};

}  // namespace

absl::Status CallLimiter::Acquire(Kind kind, const std::string& client,
                                  Slot* slot) {
  *slot = Slot();  // a slot held before goes first, outside mu_
  int total_limit = 0, client_limit = 0;
  switch (kind) {
    case kApply:
      total_limit = limits_.max_applies;
      client_limit = limits_.max_applies_per_client;
      break;
    case kRead:
      total_limit = limits_.max_reads;
      client_limit = limits_.max_reads_per_client;
      break;
    case kStream:
      total_limit = limits_.max_streams;
      client_limit = limits_.max_streams_per_client;
      break;
  }
  const KindInfo& info = kKinds[kind];
  const std::string retry = absl::FormatDuration(limits_.retry_after);
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client);
  const int32_t mine = it == clients_.end() ? 0 : it->second[kind];
  if (client_limit > 0 && mine >= client_limit) {
    ++refused_[kind];
    return absl::ResourceExhaustedError(
        absl::StrCat("too many ", info.what,
                     " calls in flight from this client (", client_limit,
                     ", tidald ", info.flag, "-per-client); retry in ", retry));
  }
  if (total_limit > 0 && total_[kind] >= total_limit) {
    ++refused_[kind];
    return absl::ResourceExhaustedError(
        absl::StrCat("too many ", info.what, " calls in flight (", total_limit,
                     ", tidald ", info.flag, "); retry in ", retry));
  }
  ++total_[kind];
  if (it == clients_.end())
    it = clients_.emplace(client, std::array<int32_t, 3>{}).first;
  ++it->second[kind];
  // Filled in place (it is empty): nothing is released here under mu_.
  slot->owner_ = this;
  slot->kind_ = kind;
  slot->client_ = client;
  return absl::OkStatus();
}

void CallLimiter::Release(Kind kind, const std::string& client) {
  absl::MutexLock lock(&mu_);
  --total_[kind];
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  if (--it->second[kind] <= 0 && it->second[0] <= 0 && it->second[1] <= 0 &&
      it->second[2] <= 0) {
    clients_.erase(it);
  }
}

int64_t CallLimiter::in_flight(Kind kind) const {
  absl::MutexLock lock(&mu_);
  return total_[kind];
}

int64_t CallLimiter::refused(Kind kind) const {
  absl::MutexLock lock(&mu_);
  return refused_[kind];
}

}  // namespace tidal
