#pragma once

// InFlightView: what a drain asks of the gateways that may still send
// requests to an instance (highly available mode, docs/ha.md). The local
// node's RouteWatcher answers for its own gateway; ClusterMetrics answers for
// the other live nodes' gateways from their metrics reports.

#include <string>

namespace tidal::ha {

// Thread-safe.
class InFlightView {
 public:
  virtual ~InFlightView() = default;
  // Requests in flight to `instance_id` on the gateways this view covers,
  // once every one of them has applied the routes written at or before
  // store revision `routes_version` (so none sends it new requests); -1
  // while some has not (or has not said so yet).
  virtual int InFlight(const std::string& instance_id,
                       int64_t routes_version) = 0;
};

}  // namespace tidal::ha
