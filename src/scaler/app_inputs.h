#pragma once

// What an app's AppScaler is built from, derived from its AppSpec by the rules
// tidald's planner applies (src/scaler/multi_scaler.cc) on top of
// ResolveConfig's defaults. The planner and `tidalctl simulate` both call
// AppScalerInputsFor, so a simulated spec behaves as it would in tidald.
// Pure; thread-safe.

#include "scaler/autoscaler.h"
#include "tidal/v1/app.pb.h"

namespace tidal::scaler {

struct AppScalerInputs {
  // spec.scaling with the planner's rules applied:
  //  - minReplicas 0 without initialScale: initialScale 0 (the app starts
  //    with no instance and the first request starts one).
  tidal::v1::Scaling scaling;
  // container_concurrency: template.concurrency;
  // tidal_fallback_keep_alive and tidal_min_keep_alive: an explicit
  // scaleToZeroGracePeriod (how long the tidal algorithm keeps an idle app
  // warm until it has learned the app's idle times, and at least after).
  // The instance counts (ready_at_start, current_at_start) are left at 0
  // for the caller to fill.
  AppScalerOptions options;
};

AppScalerInputs AppScalerInputsFor(const tidal::v1::AppSpec& spec);

}  // namespace tidal::scaler
