#include "controller/controller.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace tidal {

Controller::Controller(Store* store, Runtime* runtime,
                       AppReconciler* reconciler, EventRecorder* events,
                       WorkQueue* queue, Options options)
    : runtime_(runtime),
      reconciler_(reconciler),
      events_(events),
      queue_(queue),
      options_(options),
      informer_(store, [this](const std::string& key, const tidal::v1::App*) {
        Enqueue(key);
      }) {}

Controller::~Controller() { Stop(); }

void Controller::OnInstanceChange(const InstanceChange& change) {
  const auto& inst = change.instance;
  if (!change.event_reason.empty()) {
    events_->Record(inst.namespace_(), inst.app(),
                    change.event_type.empty() ? "Normal" : change.event_type,
                    change.event_reason, change.event_message, "runtime");
  }
  Enqueue(absl::StrCat(inst.namespace_(), "/", inst.app()));
}

absl::Status Controller::Start() {
  if (running_) return absl::OkStatus();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  queue_->Resume();
  runtime_->SetListener(
      [this](const InstanceChange& c) { OnInstanceChange(c); });
  absl::Status st = informer_.Start();
  if (!st.ok()) {
    runtime_->SetListener(nullptr);
    queue_->ShutDown();
    return st;
  }
  running_ = true;
  EnqueueAll();
  for (int i = 0; i < options_.workers; ++i)
    threads_.emplace_back([this] { Worker(); });
  threads_.emplace_back([this] { Resync(); });
  GetLogger("controller")
      ->info("controller started: {} apps, {} workers", informer_.Size(),
             options_.workers);
  return absl::OkStatus();
}

void Controller::Stop() {
  if (!running_) return;
  running_ = false;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  queue_->ShutDown();
  for (auto& t : threads_) t.join();
  threads_.clear();
  informer_.Stop();
  runtime_->SetListener(nullptr);
}

void Controller::Enqueue(const std::string& key) { queue_->Add(key); }

void Controller::EnqueueAll() {
  for (const auto& key : informer_.Keys()) queue_->Add(key);
  for (const auto& inst : runtime_->List()) {
    queue_->Add(absl::StrCat(inst.namespace_(), "/", inst.app()));
  }
}

void Controller::Resync() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.resync)) {
        return;
      }
    }
    EnqueueAll();
  }
}

void Controller::Worker() {
  auto log = GetLogger("controller");
  while (auto key = queue_->Get()) {
    auto result = reconciler_->Reconcile(*key);
    if (result.ok()) {
      queue_->Forget(*key);
      if (result->requeue_after != absl::InfiniteDuration()) {
        queue_->AddAfter(*key, result->requeue_after);
      }
    } else if (absl::IsInvalidArgument(result.status()) ||
               absl::IsFailedPrecondition(result.status()) ||
               absl::IsDataLoss(result.status())) {
      log->error("app={} reconcile failed permanently: {}", *key,
                 result.status().ToString());
      queue_->Forget(*key);
    } else {
      int failures = queue_->Failures(*key);
      auto level = failures < 3 ? spdlog::level::debug : spdlog::level::warn;
      log->log(level, "app={} reconcile failed (retry {}): {}", *key,
               failures + 1, result.status().ToString());
      queue_->AddRateLimited(*key);
    }
    queue_->Done(*key);
  }
}

}  // namespace tidal
