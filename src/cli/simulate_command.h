#pragma once

// `tidalctl simulate -f app.yaml --trace FILE [--app NAME] [--plot out.svg]
// [--compare]`: replays a trace through an app's scaling spec in the
// simulator and prints the figures and the scale events (--compare: the
// figures of every policy on that spec, side by side). The spec file is parsed
// and validated by the API's parser (spec::ParseApps, as `tidalctl apply`
// does), and the AppScaler is built from the parsed App by the planner's rules
// (AppScalerInputsFor), so a simulated spec behaves as it would in tidald.
// Lives in the CLI: the scaler library does not depend on the API parser.
// Thread-compatible.

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scaler/simulator.h"
#include "tidal/v1/app.pb.h"

namespace tidal::cli {

struct SimulateOptions {
  std::string spec_path;   // YAML App documents, as `tidalctl apply -f` takes
  std::string app;         // metadata.name; "" = the file's only app
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
  // Every policy side by side on the same spec and trace (the spec with its
  // algorithm replaced by tidal, kpa, hpa, keepalive and hybrid): one line
  // of figures each, the spec's own marked; the plot draws each policy's
  // ready replicas over the load. Exclusive with `algorithm`.
  bool compare = false;
};

// Reads and validates `path` and returns the app named `app_name` ("" = the
// only app of the file). A spec error is written to `err` exactly as
// `tidalctl apply` prints it ("FILE:LINE:COL: FIELD: message", one per line)
// and gives InvalidArgument "N problem(s) in the spec; nothing was
// simulated"; a missing file is NotFound; no app, an unknown --app or several
// apps without --app are InvalidArgument.
absl::StatusOr<tidal::v1::App> ReadSimulatedApp(const std::string& path,
                                                const std::string& app_name,
                                                std::ostream& err);

// The simulator's options for `app`: spec.scaling and the AppScaler options
// as the planner builds them (AppScalerInputsFor), the --algorithm override,
// and the instance model (per-instance concurrency: opts.concurrency when >=
// 0, else template.concurrency, else 1).
scaler::SimOptions SimOptionsFor(const tidal::v1::App& app,
                                 const SimulateOptions& opts);

// Runs the command. Spec errors go to `err` (see ReadSimulatedApp);
// InvalidArgument for a bad spec or trace (naming the file), NotFound for a
// missing file.
absl::Status RunSimulateCommand(const SimulateOptions& opts, std::ostream& out,
                                std::ostream& err);
// As above, with the spec errors prepended to the returned status's message
// (one per line).
absl::Status RunSimulateCommand(const SimulateOptions& opts, std::ostream& out);

}  // namespace tidal::cli
