#include "fakes/fake_runtime.h"

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
    if (fail_starts_)
      return absl::UnavailableError("fake runtime refuses to start instances");
    inst.set_id(absl::StrCat(req.app, "-", next_id_++));
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

absl::StatusOr<std::string> FakeRuntime::LogPath(const std::string& id) {
  return absl::NotFoundError("fake runtime keeps no logs");
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
