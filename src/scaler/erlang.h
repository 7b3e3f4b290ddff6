#pragma once

// Erlang-C sizing: the fewest servers for which an M/M/N queue with offered
// load `a` (erlangs: arrival rate x mean service time) keeps
// P(wait > t) = C(N, a) x exp(-(N - a) t / S) at or under `eps`. The `tidal`
// algorithm sizes busy apps with it (docs/scaling.md, "Sizing for a waiting
// time"). Pure functions; thread-safe.

#include <cstdint>

namespace tidal::scaler {

// Erlang's C formula: the probability that an arrival waits, N servers,
// offered load a (N > a; 1 when N <= a).
double ErlangC(int64_t servers, double offered);

// P(wait > wait_s) for N servers, offered load a, mean service service_s.
double ProbWaitOver(int64_t servers, double offered, double service_s,
                    double wait_s);

// The fewest servers N > a with ProbWaitOver(N, a, service_s, wait_s) <= eps;
// 0 for a <= 0.
int64_t ErlangServers(double offered, double service_s, double wait_s,
                      double eps);

}  // namespace tidal::scaler
