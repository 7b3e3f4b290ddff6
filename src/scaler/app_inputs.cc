#include "scaler/app_inputs.h"

namespace tidal::scaler {

AppScalerInputs AppScalerInputsFor(const tidal::v1::AppSpec& spec) {
  AppScalerInputs in;
  in.scaling = spec.scaling();
  tidal::v1::Scaling& s = in.scaling;
  if (s.has_min_replicas() && s.min_replicas() == 0 && !s.has_initial_scale()) {
    s.set_initial_scale(0);
  }
  in.options.container_concurrency = spec.template_().concurrency();
  if (s.has_scale_to_zero_grace_period_ms()) {
    in.options.tidal_fallback_keep_alive =
        absl::Milliseconds(s.scale_to_zero_grace_period_ms());
    in.options.tidal_min_keep_alive = in.options.tidal_fallback_keep_alive;
  }
  return in;
}

}  // namespace tidal::scaler
