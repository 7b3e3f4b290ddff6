#include "fakes/fake_runtime.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tidal::testing {

void FakeRuntime::Notify(const InstanceChange& change) {
  Listener l;
  {
    absl::MutexLock lock(&mu_);
    l = listener_;
  }
  if (l) l(change);
}

absl::StatusOr<tidal::v1::Instance> FakeRuntime::Start(
    const InstanceRequest& req) {
  tidal::v1::Instance inst;
  {
    absl::MutexLock lock(&mu_);
    if (!start_error_.ok()) return start_error_;
    if (!req.id.empty() && instances_.count(req.id) > 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("instance ", req.id, " already exists"));
    }
    const int n = next_id_++;
    inst.set_id(req.id.empty() ? absl::StrCat(req.app, "-", n) : req.id);
    inst.set_namespace_(req.namespace_);
    inst.set_app(req.app);
    inst.set_template_hash(req.template_hash);
    inst.set_revision(req.revision);
    inst.set_phase(auto_ready_ ? "Running" : "Starting");
    inst.set_ready(auto_ready_);
    inst.set_host("127.0.0.1");
    inst.set_port(30000 + next_id_);
    instances_[inst.id()] = inst;
    ++starts_;
  }
  InstanceChange c;
  c.instance = inst;
  c.event_type = "Normal";
  c.event_reason = "Started";
  c.event_message = absl::StrCat("Started instance ", inst.id());
  Notify(c);
  return inst;
}

absl::Status FakeRuntime::Stop(const std::string& id, absl::Duration grace) {
  InstanceChange c;
  {
    absl::MutexLock lock(&mu_);
    auto it = instances_.find(id);
    if (it == instances_.end())
      return absl::NotFoundError(absl::StrCat("no instance ", id));
    if (it->second.phase() == "Terminating") return absl::OkStatus();
    ++stops_;
    it->second.set_phase("Terminating");
    it->second.set_ready(false);
    c.instance = it->second;
    if (instant_stop_) {
      stopped_.emplace_back(it->second.namespace_(), it->second.app(),
                            it->second.id());
      instances_.erase(it);
      c.removed = true;
    }
  }
  Notify(c);
  return absl::OkStatus();
}

std::vector<tidal::v1::Instance> FakeRuntime::List(const std::string& ns,
                                                   const std::string& app) {
  absl::MutexLock lock(&mu_);
  std::vector<tidal::v1::Instance> out;
  for (const auto& [id, inst] : instances_) {
    if (!ns.empty() && inst.namespace_() != ns) continue;
    if (!app.empty() && inst.app() != app) continue;
    out.push_back(inst);
  }
  return out;
}

void FakeRuntime::SetListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

struct FakeRuntime::Log {
  absl::Mutex mu;
  std::string data ABSL_GUARDED_BY(mu);
  absl::Status broken ABSL_GUARDED_BY(mu);  // BreakLog
};

namespace {

// Reads a FakeRuntime::Log from memory (a template parameter, as the type is
// private to FakeRuntime).
template <typename Log>
class MemoryLogStream : public LogStream {
 public:
  MemoryLogStream(std::shared_ptr<Log> log, const LogOptions& options)
      : log_(std::move(log)), follow_(options.follow) {
    absl::MutexLock l(&log_->mu);
    const std::string& data = log_->data;
    pending_ = TailLines(data, options.tail_lines);
    offset_ = data.size();
  }

  absl::StatusOr<std::string> Next(absl::Duration wait) override {
    absl::MutexLock l(&log_->mu);
    if (cancelled_) return absl::CancelledError("log stream cancelled");
    if (!pending_.empty()) return std::exchange(pending_, std::string());
    if (!log_->broken.ok()) return log_->broken;
    if (!follow_) return absl::OutOfRangeError("end of log");
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(log_->mu) {
      return cancelled_ || log_->data.size() > offset_;
    };
    log_->mu.AwaitWithTimeout(absl::Condition(&ready), wait);
    if (cancelled_) return absl::CancelledError("log stream cancelled");
    std::string out = log_->data.substr(offset_);
    offset_ = log_->data.size();
    return out;
  }

  void Cancel() override {
    absl::MutexLock l(&log_->mu);
    cancelled_ = true;
  }

 private:
  const std::shared_ptr<Log> log_;
  const bool follow_;
  std::string pending_ ABSL_GUARDED_BY(log_->mu);
  size_t offset_ ABSL_GUARDED_BY(log_->mu) = 0;
  bool cancelled_ ABSL_GUARDED_BY(log_->mu) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LogStream>> FakeRuntime::OpenLogs(
    const std::string& id, const LogOptions& options) {
  std::shared_ptr<Log> log;
  {
    absl::MutexLock lock(&mu_);
    auto it = logs_.find(id);
    if (it == logs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("the fake runtime has no logs of instance ", id));
    }
    log = it->second;
  }
  return std::unique_ptr<LogStream>(
      std::make_unique<MemoryLogStream<Log>>(std::move(log), options));
}

std::vector<StoppedInstance> FakeRuntime::StoppedInstances(
    const std::string& ns, const std::string& app) {
  absl::MutexLock lock(&mu_);
  std::vector<StoppedInstance> out;
  const bool all = ns.empty() && app.empty();
  for (const auto& [n, a, id] : stopped_) {
    StoppedInstance s{id, n, a};
    if ((all || (n == ns && a == app)) && logs_.count(id) > 0 &&
        instances_.count(id) == 0 &&
        std::find(out.begin(), out.end(), s) == out.end())
      out.push_back(std::move(s));
  }
  return out;
}

void FakeRuntime::AppendLog(const std::string& id, const std::string& data) {
  std::shared_ptr<Log> log;
  {
    absl::MutexLock lock(&mu_);
    auto& slot = logs_[id];
    if (slot == nullptr) slot = std::make_shared<Log>();
    log = slot;
  }
  absl::MutexLock l(&log->mu);
  log->data += data;
}

void FakeRuntime::BreakLog(const std::string& id, absl::Status why) {
  AppendLog(id, "");
  std::shared_ptr<Log> log;
  {
    absl::MutexLock lock(&mu_);
    log = logs_[id];
  }
  absl::MutexLock l(&log->mu);
  log->broken = std::move(why);
}

void FakeRuntime::SetReady(const std::string& id, bool ready) {
  InstanceChange c;
  {
    absl::MutexLock lock(&mu_);
    auto it = instances_.find(id);
    if (it == instances_.end()) return;
    it->second.set_ready(ready);
    it->second.set_phase("Running");
    c.instance = it->second;
  }
  Notify(c);
}

void FakeRuntime::SetPhase(const std::string& id, const std::string& phase,
                           const std::string& message) {
  InstanceChange c;
  {
    absl::MutexLock lock(&mu_);
    auto it = instances_.find(id);
    if (it == instances_.end()) return;
    it->second.set_phase(phase);
    it->second.set_message(message);
    it->second.set_ready(false);
    c.instance = it->second;
  }
  Notify(c);
}

void FakeRuntime::Update(
    const std::string& id,
    const std::function<void(tidal::v1::Instance*)>& change) {
  InstanceChange c;
  {
    absl::MutexLock lock(&mu_);
    auto it = instances_.find(id);
    if (it == instances_.end()) return;
    change(&it->second);
    c.instance = it->second;
  }
  Notify(c);
}

void FakeRuntime::SetAllReady() {
  for (const auto& inst : List()) {
    if (!inst.ready() && inst.phase() != "Terminating")
      SetReady(inst.id(), true);
  }
}

void FakeRuntime::FinishStops() {
  std::vector<InstanceChange> changes;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = instances_.begin(); it != instances_.end();) {
      if (it->second.phase() == "Terminating") {
        InstanceChange c;
        c.instance = it->second;
        c.removed = true;
        changes.push_back(c);
        stopped_.emplace_back(it->second.namespace_(), it->second.app(),
                              it->second.id());
        it = instances_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& c : changes) Notify(c);
}

std::vector<InstanceUsage> FakeRuntime::Usage(const std::string& ns,
                                              const std::string& app) {
  absl::MutexLock lock(&mu_);
  ++usage_calls_;
  std::vector<InstanceUsage> out;
  for (const auto& [id, u] : usage_) {
    auto it = instances_.find(id);
    if (it == instances_.end()) continue;
    if (!ns.empty() && it->second.namespace_() != ns) continue;
    if (!app.empty() && it->second.app() != app) continue;
    out.push_back(u);
  }
  return out;
}

void FakeRuntime::SetUsage(const std::string& id, double cpu_seconds,
                           int64_t memory_bytes, absl::Time sampled_at) {
  absl::MutexLock lock(&mu_);
  InstanceUsage& u = usage_[id];
  u.instance_id = id;
  u.cpu_seconds = cpu_seconds;
  u.memory_bytes = memory_bytes;
  u.sampled_at = sampled_at;
}

}  // namespace tidal::testing
