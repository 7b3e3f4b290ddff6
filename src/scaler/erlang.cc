#include "scaler/erlang.h"

#include <algorithm>
#include <cmath>

namespace tidal::scaler {

namespace {

// Erlang B for n servers by the stable recursion B(k) = a B(k-1) / (k + a
// B(k-1)), B(0) = 1.
double ErlangB(int64_t n, double a) {
  double b = 1;
  for (int64_t k = 1; k <= n; ++k) b = a * b / (k + a * b);
  return b;
}

double CFromB(int64_t n, double a, double b) {
  if (n <= a) return 1;
  return n * b / (n - a * (1 - b));
}

}  // namespace

double ErlangC(int64_t servers, double offered) {
  if (offered <= 0) return 0;
  if (servers <= offered) return 1;
  return CFromB(servers, offered, ErlangB(servers, offered));
}

double ProbWaitOver(int64_t servers, double offered, double service_s,
                    double wait_s) {
  const double c = ErlangC(servers, offered);
  if (c >= 1 || service_s <= 0) return c;
  return c * std::exp(-(servers - offered) * wait_s / service_s);
}

int64_t ErlangServers(double offered, double service_s, double wait_s,
                      double eps) {
  if (!(offered > 0)) return 0;
  const double ratio = service_s > 0 ? wait_s / service_s : 0;
  int64_t n = static_cast<int64_t>(std::floor(offered)) + 1;
  double b = ErlangB(n, offered);
  // The answer is within a + 10 sqrt(a) + 20 for any eps >= 1e-9.
  const int64_t limit = n + static_cast<int64_t>(10 * std::sqrt(offered)) + 20;
  for (; n < limit; ++n) {
    const double p = CFromB(n, offered, b) * std::exp(-(n - offered) * ratio);
    if (p <= eps) return n;
    b = offered * b / (n + 1 + offered * b);
  }
  return limit;
}

}  // namespace tidal::scaler
