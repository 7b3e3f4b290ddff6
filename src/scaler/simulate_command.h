#pragma once

// `tidalctl simulate -f app.yaml --trace FILE [--plot out.svg]`: replays a
// trace through the app's scaling spec in the simulator and prints the
// figures and the scale events. Thread-compatible.

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tidal::scaler {

struct SimulateOptions {
  std::string spec_path;  // YAML; the first App document's spec.scaling is used
  std::string trace_path;  // any format ReadTrace() knows
  std::string plot_path;   // "" = no plot
  absl::Duration start_delay = absl::Seconds(1);
  int32_t concurrency =
      -1;  // per instance; -1: spec.template.concurrency, else 1
  absl::Duration request_timeout = absl::Minutes(5);
  uint64_t seed = 1;
  int max_apps = 0;        // 0: every app of the trace
  size_t max_events = 20;  // scale events printed
  std::string algorithm;   // "" = the spec's
};

// InvalidArgument for a bad spec or trace (naming the file), NotFound for a
// missing file.
absl::Status RunSimulateCommand(const SimulateOptions& opts, std::ostream& out);

}  // namespace tidal::scaler
