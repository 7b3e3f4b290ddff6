#include "common/clock.h"

namespace tidal {

RealClock* RealClock::Get() {
  static RealClock* clock = new RealClock();
  return clock;
}

}  // namespace tidal
