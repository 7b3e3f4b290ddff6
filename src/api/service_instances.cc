// TidalService: instances and their logs (ListInstances, Logs), from the
// Runtime; logs only through its LogStreams.
#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "api/label_selector.h"
#include "api/limits.h"
#include "api/service.h"
#include "api/service_internal.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "store/keys.h"

namespace tidal {

using namespace service_internal;  // NOLINT: the service's own helpers

namespace {

// The largest LogChunk sent.
constexpr int64_t kLogChunk = 64 * 1024;
// Without follow: how long a log stream's next piece is waited for.
constexpr absl::Duration kRemoteLogWait = absl::Seconds(10);

}  // namespace

absl::StatusOr<v1::ListInstancesResponse> TidalService::ListInstances(
    const v1::ListInstancesRequest& req) {
  if (impl_->runtime == nullptr) {
    return absl::FailedPreconditionError(
        "this tidald runs no runtime, so it has no instances");
  }
  std::string ns = req.all_namespaces() ? "" : NamespaceOr(req.namespace_());
  v1::ListInstancesResponse resp;
  std::vector<v1::Instance> list = impl_->runtime->List(ns, req.app());
  std::sort(list.begin(), list.end(),
            [](const v1::Instance& a, const v1::Instance& b) {
              return std::tie(a.namespace_(), a.app(), a.id()) <
                     std::tie(b.namespace_(), b.app(), b.id());
            });
  for (auto& inst : list) *resp.add_instances() = std::move(inst);
  return resp;
}

absl::Status TidalService::Logs(
    const v1::LogsRequest& req,
    const std::function<bool(const v1::LogChunk&)>& send,
    const Cancelled& cancelled) {
  if (impl_->runtime == nullptr) {
    return absl::FailedPreconditionError(
        "this tidald runs no runtime, so it has no logs");
  }
  const std::string ns = NamespaceOr(req.namespace_());
  if (req.app().empty())
    return absl::InvalidArgumentError("app name is required");
  auto list_instances = [&]() {
    std::vector<v1::Instance> out;
    for (auto& inst : impl_->runtime->List(ns, req.app())) {
      if (req.instance().empty() || inst.id() == req.instance())
        out.push_back(std::move(inst));
    }
    std::sort(out.begin(), out.end(),
              [](const v1::Instance& a, const v1::Instance& b) {
                return a.id() < b.id();
              });
    return out;
  };
  // Instances that have stopped and whose output the runtime keeps: all
  // of them with `previous` (kubectl logs --previous), or the one named.
  auto stopped_instances = [&]() {
    std::vector<v1::Instance> out;
    for (auto& s : impl_->runtime->StoppedInstances(ns, req.app())) {
      if (!req.instance().empty() && s.id != req.instance()) continue;
      v1::Instance inst;
      inst.set_id(std::move(s.id));
      out.push_back(std::move(inst));
    }
    return out;
  };
  bool stopped_only = req.previous();
  std::vector<v1::Instance> instances =
      stopped_only ? stopped_instances() : list_instances();
  if (instances.empty() && !stopped_only && !req.instance().empty()) {
    instances = stopped_instances();
    stopped_only = !instances.empty();
  }
  if (instances.empty()) {
    if (!req.instance().empty()) {
      return absl::NotFoundError(absl::StrCat(
          req.previous() ? "no log kept of a stopped instance \""
                         : "instance \"",
          req.instance(), "\" of app \"", req.app(),
          "\" not found in namespace \"", ns,
          "\" (tidald keeps the logs of stopped instances for a while: "
          "see `tidalctl get events ",
          req.app(), "`)"));
    }
    if (req.previous()) {
      auto app = impl_->store->Get(keys::App(ns, req.app()));
      if (absl::IsNotFound(app.status())) return AppNotFound(ns, req.app());
      return absl::NotFoundError(absl::StrCat(
          "app \"", req.app(), "\" in namespace \"", ns,
          "\" has no stopped instance whose log tidald still keeps"));
    }
    auto app = impl_->store->Get(keys::App(ns, req.app()));
    if (absl::IsNotFound(app.status())) return AppNotFound(ns, req.app());
    if (!req.follow()) return absl::OkStatus();
  }
  // One stream per instance, opened once (nullptr: ended or unreadable).
  std::map<std::string, std::unique_ptr<LogStream>> streams;
  auto send_data = [&](const std::string& instance, const std::string& data) {
    for (size_t pos = 0; pos < data.size(); pos += kLogChunk) {
      v1::LogChunk chunk;
      chunk.set_instance(instance);
      chunk.set_data(data.substr(pos, kLogChunk));
      if (!send(chunk)) return false;
    }
    return true;
  };
  // Sends what the instance's stream has now; false when the client is
  // gone. A stream that ended is dropped. Without follow every stream ends,
  // so it is read to its end (one from another node's API comes with a
  // delay: each piece is waited for).
  // A stopped instance's log has nothing more to come: never followed.
  const bool follow = req.follow() && !stopped_only;
  const absl::Duration wait = follow ? absl::ZeroDuration() : kRemoteLogWait;
  // An instance whose log is left out, or breaks off: the client is told,
  // not just tidald's log (an operator reading logs in an incident must
  // know a node's output is missing).
  auto warn = [&](const std::string& id, const absl::Status& why) {
    impl_->log->warn("logs app={}/{} instance {}: {}", ns, req.app(), id,
                     why.ToString());
    v1::LogChunk chunk;
    chunk.set_instance(id);
    chunk.set_warning(absl::StrCat("the log of instance ", id,
                                   " cannot be read: ", why.message()));
    return send(chunk);
  };
  auto drain = [&](const std::string& id) {
    std::unique_ptr<LogStream>& stream = streams[id];
    while (stream != nullptr) {
      absl::StatusOr<std::string> data = stream->Next(wait);
      if (!data.ok()) {
        stream.reset();
        if (!absl::IsOutOfRange(data.status()) &&
            !absl::IsCancelled(data.status()) && !warn(id, data.status())) {
          return false;
        }
        break;
      }
      if (data->empty()) break;
      if (!send_data(id, *data)) return false;
    }
    return true;
  };
  // Starts reading an instance: its current output (the last tail_lines of
  // it at first), then, with follow, what it writes.
  auto open = [&](const v1::Instance& inst, bool initial) -> absl::Status {
    LogOptions options;
    options.tail_lines = initial ? req.tail_lines() : 0;
    options.follow = follow;
    options.local_only = req.from_node();
    options.previous = stopped_only;
    auto stream = impl_->runtime->OpenLogs(inst.id(), options);
    if (!stream.ok()) {
      // An instance found while following may have no output yet (NotFound
      // until it writes): asked again at the next poll, not given up.
      if (!initial) return absl::OkStatus();
      streams[inst.id()] = nullptr;
      // All of an app's instances: one on another node (HA) whose logs
      // cannot be had from here (asked by another node: from_node) is left
      // out rather than failing the rest; asked for by name, the error says
      // which node's API has it.
      if (req.instance().empty() &&
          absl::IsFailedPrecondition(stream.status())) {
        if (req.from_node()) {
          // The asking node reads its own and asks the others itself.
          impl_->log->info("logs app={}/{}: {}", ns, req.app(),
                           std::string(stream.status().message()));
          return absl::OkStatus();
        }
        if (!warn(inst.id(), stream.status())) {
          return absl::CancelledError("client gone");
        }
        return absl::OkStatus();
      }
      return stream.status();
    }
    streams[inst.id()] = *std::move(stream);
    if (!drain(inst.id())) return absl::CancelledError("client gone");
    return absl::OkStatus();
  };
  for (const auto& inst : instances) {
    absl::Status s = open(inst, true);
    if (absl::IsCancelled(s)) return absl::OkStatus();
    if (!s.ok()) return s;
  }
  if (!follow) return absl::OkStatus();
  auto done = [&] { return stopping() || (cancelled && cancelled()); };
  while (!done()) {
    impl_->clock->SleepFor(impl_->options.poll_interval);
    for (const auto& inst : list_instances()) {
      if (!streams.count(inst.id())) {
        absl::Status s = open(inst, false);
        if (absl::IsCancelled(s)) return absl::OkStatus();
      }
    }
    for (auto& [id, stream] : streams) {
      if (!drain(id)) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace tidal
