// TidalService: what is going on (Top, ListEvents, Watch).
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
#include "scaler/load_history.h"
#include "store/keys.h"

namespace tidal {

using namespace service_internal;  // NOLINT: the service's own helpers

absl::StatusOr<v1::TopResponse> TidalService::Top(const v1::TopRequest& req) {
  if (metrics_ == nullptr) {
    return absl::FailedPreconditionError(
        "this tidald serves no request metrics (no gateway)");
  }
  v1::ListRequest list_req;
  list_req.set_namespace_(req.namespace_());
  list_req.set_all_namespaces(req.all_namespaces());
  ASSIGN_OR_RETURN(v1::ListResponse apps, List(list_req));
  absl::Duration window =
      absl::Seconds(req.window_seconds() > 0 ? req.window_seconds() : 60);
  v1::TopResponse resp;
  for (const auto& app : apps.apps()) {
    if (!req.app().empty() && app.metadata().name() != req.app()) continue;
    RequestStats st = metrics_->Stats(app.metadata().namespace_(),
                                      app.metadata().name(), 0, window);
    auto* m = resp.add_apps();
    m->set_namespace_(app.metadata().namespace_());
    m->set_app(app.metadata().name());
    m->set_rps(st.rps);
    m->set_concurrency(st.concurrency);
    m->set_p50_ms(st.p50_ms);
    m->set_p90_ms(st.p90_ms);
    m->set_p99_ms(st.p99_ms);
    m->set_requests(st.requests);
    m->set_responses_2xx(st.responses_2xx);
    m->set_responses_3xx(st.responses_3xx);
    m->set_responses_4xx(st.responses_4xx);
    m->set_responses_5xx(st.responses_5xx);
    m->set_ready_replicas(app.status().ready_replicas());
    m->set_desired_replicas(app.status().desired_replicas());
  }
  if (!req.app().empty() && resp.apps().empty()) {
    return AppNotFound(NamespaceOr(req.namespace_()), req.app());
  }
  return resp;
}

absl::StatusOr<v1::HistoryResponse> TidalService::History(
    const v1::HistoryRequest& request,
    const std::function<bool(const std::string& ns)>& visible) {
  const LoadHistory* history = impl_->options.history;
  if (history == nullptr) {
    return absl::FailedPreconditionError("this tidald keeps no history");
  }
  // Points after a second still to come: none (and no overflow past it).
  v1::HistoryRequest req = request;
  req.set_after_unix(std::min(req.after_unix(), history->last_second()));
  if (req.window_seconds() < 0 || req.window_seconds() > 86400) {
    return absl::InvalidArgumentError(
        absl::StrCat("window_seconds: ", req.window_seconds(),
                     " is not between 1 and 86400 (24 hours)"));
  }
  if (req.step_seconds() != 0 && req.step_seconds() != 1 &&
      req.step_seconds() != 60) {
    return absl::InvalidArgumentError(
        absl::StrCat("step_seconds: ", req.step_seconds(), " is not 1 or 60"));
  }
  const std::string ns = NamespaceOr(req.namespace_());
  v1::HistoryResponse resp;
  resp.set_now_unix(history->last_second());
  // The history's own index: no store read, so a live view costs the store
  // nothing.
  for (const std::string& key : history->Keys()) {
    const size_t slash = key.find('/');
    const std::string app_ns = key.substr(0, slash);
    const std::string name = key.substr(slash + 1);
    if (!req.all_namespaces() && app_ns != ns) continue;
    if (!req.app().empty() && name != req.app()) continue;
    if (visible && !visible(app_ns)) continue;
    v1::AppHistory h;
    if (!history->Read(app_ns, name, req, &h)) continue;
    if (req.omit_idle() && h.scale_events().empty() &&
        std::all_of(h.rps().begin(), h.rps().end(),
                    [](double r) { return r == 0; })) {
      continue;
    }
    *resp.add_apps() = std::move(h);
  }
  // (Within one namespace only: across namespaces, the answer would say
  // whether an app exists where the caller may not look.)
  if (!req.app().empty() && resp.apps().empty() && !req.omit_idle() &&
      !req.all_namespaces()) {
    // An app too new to have a second recorded has an empty history.
    v1::GetRequest get;
    get.set_namespace_(ns);
    get.set_name(req.app());
    RETURN_IF_ERROR(Get(get).status());
    auto* h = resp.add_apps();
    h->set_namespace_(ns);
    h->set_app(req.app());
    h->set_step_seconds(req.step_seconds() == 60 ? 60 : 1);
    h->set_start_unix(resp.now_unix() + 1);
  }
  return resp;
}

absl::StatusOr<v1::ListEventsResponse> TidalService::ListEvents(
    const v1::ListEventsRequest& req) {
  std::string prefix;
  if (req.all_namespaces()) {
    prefix = "/events/";
  } else if (req.app().empty()) {
    prefix = absl::StrCat("/events/", NamespaceOr(req.namespace_()), "/");
  } else {
    prefix = keys::EventPrefix(NamespaceOr(req.namespace_()), req.app());
  }
  ASSIGN_OR_RETURN(ListResult list, impl_->store->List(prefix));
  std::vector<std::pair<v1::Event, int64_t>> events;
  for (const KeyValue& kv : list.items) {
    v1::Event e;
    if (!e.ParseFromString(kv.value)) {
      impl_->log->warn("cannot decode the event stored at {}", kv.key);
      continue;
    }
    if (req.all_namespaces() && !req.app().empty() &&
        e.involved().name() != req.app())
      continue;
    events.emplace_back(std::move(e), kv.resource_version);
  }
  auto when = [](const v1::Event& e) {
    return e.has_last_time() ? FromProtoTime(e.last_time())
                             : FromProtoTime(e.first_time());
  };
  std::stable_sort(events.begin(), events.end(),
                   [&](const auto& a, const auto& b) {
                     absl::Time ta = when(a.first), tb = when(b.first);
                     if (ta != tb) return ta < tb;
                     return a.second < b.second;
                   });
  size_t start = 0;
  if (req.limit() > 0 && events.size() > static_cast<size_t>(req.limit())) {
    start = events.size() - req.limit();
  }
  v1::ListEventsResponse resp;
  for (size_t i = start; i < events.size(); ++i)
    *resp.add_events() = std::move(events[i].first);
  return resp;
}

absl::Status TidalService::Watch(
    const v1::WatchRequest& req,
    const std::function<bool(const v1::WatchEvent&)>& send,
    const Cancelled& cancelled) {
  ASSIGN_OR_RETURN(LabelSelector sel,
                   LabelSelector::Parse(req.label_selector()));
  const std::string prefix =
      req.all_namespaces() ? keys::AppPrefix()
                           : keys::AppPrefix(NamespaceOr(req.namespace_()));
  // What this client has been told: key -> the app as last sent (matching
  // only).
  std::map<std::string, v1::App> known;
  auto done = [&] { return stopping() || (cancelled && cancelled()); };
  auto emit = [&](const char* type, const v1::App& app) {
    v1::WatchEvent ev;
    ev.set_type(type);
    *ev.mutable_app() = app;
    return send(ev);
  };
  // Lists the current state and sends the differences from `known`.
  auto relist = [&](int64_t* from) -> absl::Status {
    ASSIGN_OR_RETURN(ListResult list, impl_->store->List(prefix));
    std::map<std::string, v1::App> now;
    for (const KeyValue& kv : list.items) {
      v1::App app = DecodeOrDamaged(kv, *impl_->log);
      if (sel.Matches(ToStdMap(app.metadata().labels())))
        now.emplace(kv.key, std::move(app));
    }
    for (const auto& [key, app] : known) {
      if (!now.count(key) && !emit("DELETED", app))
        return absl::CancelledError("client gone");
    }
    for (const auto& [key, app] : now) {
      auto it = known.find(key);
      if (it == known.end()) {
        if (!emit("ADDED", app)) return absl::CancelledError("client gone");
      } else if (it->second.metadata().resource_version() !=
                 app.metadata().resource_version()) {
        if (!emit("MODIFIED", app)) return absl::CancelledError("client gone");
      }
    }
    known = std::move(now);
    *from = list.resource_version;
    return absl::OkStatus();
  };

  int64_t from = req.resource_version();
  const bool resumed = from > 0;
  if (!resumed) RETURN_IF_ERROR(relist(&from));
  std::unique_ptr<tidal::Watch> watch;
  while (!done()) {
    if (!watch) {
      auto w = impl_->store->WatchPrefix(prefix, from);
      if (absl::IsOutOfRange(w.status())) {
        RETURN_IF_ERROR(relist(&from));
        continue;
      }
      if (!w.ok()) return w.status();
      watch = std::move(*w);
    }
    auto events = watch->Next(impl_->options.poll_interval);
    if (absl::IsOutOfRange(events.status())) {
      impl_->log->info("watch {} fell behind; re-listing", prefix);
      watch.reset();
      RETURN_IF_ERROR(relist(&from));
      continue;
    }
    if (!events.ok()) {
      if (done()) break;
      return events.status();
    }
    for (const tidal::WatchEvent& e : *events) {
      from = std::max(from, e.kv.resource_version);
      auto it = known.find(e.kv.key);
      if (e.type == tidal::WatchEvent::Type::kDelete) {
        v1::App app;
        if (it != known.end()) {
          app = it->second;
        } else if (e.kv.value.empty() || !app.ParseFromString(e.kv.value)) {
          if (!sel.empty()) continue;
          auto [ns, name] = SplitAppKey(e.kv.key);
          app.mutable_metadata()->set_namespace_(ns);
          app.mutable_metadata()->set_name(name);
        } else if (!sel.Matches(ToStdMap(app.metadata().labels()))) {
          continue;
        }
        app.mutable_metadata()->set_resource_version(e.kv.resource_version);
        if (it != known.end()) known.erase(it);
        if (!emit("DELETED", app)) return absl::OkStatus();
        continue;
      }
      v1::App decoded = DecodeOrDamaged(e.kv, *impl_->log);
      const bool matches = sel.Matches(ToStdMap(decoded.metadata().labels()));
      const char* type = nullptr;
      if (matches) {
        if (it != known.end()) {
          type = "MODIFIED";
        } else if (e.prev_version != 0 && resumed) {
          type = "MODIFIED";  // the client may know it from its own list
        } else {
          type = "ADDED";  // new, or newly selected
        }
        known[e.kv.key] = decoded;
      } else if (it != known.end()) {
        type = "DELETED";  // no longer selected
        known.erase(it);
      }
      if (type != nullptr && !emit(type, decoded)) return absl::OkStatus();
    }
  }
  if (watch) watch->Cancel();
  return absl::OkStatus();
}

}  // namespace tidal
