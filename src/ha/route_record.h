#pragma once

// Conversions between the gateway's Route and the stored RouteRecord.

#include "gateway/gateway.h"
#include "tidal/v1/traffic.pb.h"

namespace tidal::ha {

inline tidal::v1::RouteRecord ToRecord(const gateway::Route& route) {
  tidal::v1::RouteRecord r;
  r.set_namespace_(route.ns);
  r.set_app(route.app);
  r.set_concurrency(route.concurrency);
  for (int64_t live : route.live_revisions) r.add_live_revisions(live);
  r.set_timeout_ms(absl::ToInt64Milliseconds(route.timeout));
  r.set_response_start_timeout_ms(
      absl::ToInt64Milliseconds(route.response_start_timeout));
  r.set_idle_timeout_ms(absl::ToInt64Milliseconds(route.idle_timeout));
  r.set_h2(route.h2);
  for (const auto& rev : route.revisions) {
    auto* out = r.add_revisions();
    out->set_revision(rev.revision);
    out->set_weight_percent(rev.weight_percent);
    for (const auto& e : rev.endpoints) {
      if (e.draining) continue;  // a drain takes it out of the route
      auto* ep = out->add_endpoints();
      ep->set_instance_id(e.instance_id);
      ep->set_host(e.host);
      ep->set_port(e.port);
    }
  }
  return r;
}

inline gateway::Route FromRecord(const tidal::v1::RouteRecord& r) {
  gateway::Route route;
  route.ns = r.namespace_();
  route.app = r.app();
  route.concurrency = r.concurrency();
  route.live_revisions.assign(r.live_revisions().begin(),
                              r.live_revisions().end());
  route.timeout = absl::Milliseconds(r.timeout_ms());
  route.response_start_timeout =
      absl::Milliseconds(r.response_start_timeout_ms());
  route.idle_timeout = absl::Milliseconds(r.idle_timeout_ms());
  route.h2 = r.h2();
  for (const auto& rev : r.revisions()) {
    gateway::RevisionRoute out;
    out.revision = rev.revision();
    out.weight_percent = rev.weight_percent();
    for (const auto& ep : rev.endpoints()) {
      gateway::Endpoint e;
      e.instance_id = ep.instance_id();
      e.host = ep.host().empty() ? "127.0.0.1" : ep.host();
      e.port = ep.port();
      out.endpoints.push_back(std::move(e));
    }
    route.revisions.push_back(std::move(out));
  }
  if (route.revisions.empty()) route.revisions.emplace_back();
  return route;
}

}  // namespace tidal::ha
