#pragma once

// LoadHistory: a bounded per-app history of load and replicas, what the
// dashboard plots and `tidalctl top`/`describe` summarise (docs/dashboard.md,
// "History"): one point a second for the last hour and one a minute for the
// last 24 hours, plus the changes of the desired replicas with the scaler's
// reason. Memory follows change, not time: a point equal to the one before
// is not stored, so an idle app costs a few dozen bytes.
//
// HistoryRecorder fills it once a second from the request metrics (a
// MetricsSource: the gateway's, or every gateway's in HA) and the apps'
// status (through a function: it knows nothing of the store or the API).
//
// Thread-safe: Record/Retain (the recorder's thread) and Read (API calls)
// may run concurrently.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "scaler/metrics_source.h"
#include "tidal/v1/api.pb.h"

namespace tidal {

// One second (or minute) of one app.
struct LoadPoint {
  double rps = 0;
  double concurrency = 0;
  double p99_ms = 0;
  int32_t desired = 0;
  int32_t ready = 0;
};

class LoadHistory {
 public:
  struct Options {
    absl::Duration fine = absl::Hours(1);     // kept at one point a second
    absl::Duration coarse = absl::Hours(24);  // kept at one point a minute
    size_t max_scale_events = 512;            // per app, newest kept
  };
  LoadHistory() : LoadHistory(Options()) {}
  explicit LoadHistory(Options options) : options_(options) {}
  LoadHistory(const LoadHistory&) = delete;
  LoadHistory& operator=(const LoadHistory&) = delete;

  // Records the second that starts at `second` (Unix seconds) of app
  // ns/name. Seconds of one app must increase; a second at or before the
  // last recorded one is ignored. `scale_reason` names why the desired
  // replicas changed, if they did since the last second (the counts it may
  // end with, ": 1 → 4", are dropped: the marker has them).
  void Record(const std::string& ns, const std::string& name, int64_t second,
              const LoadPoint& point, const std::string& scale_reason);
  // Forgets every app whose "ns/name" is not in `keys` (deleted apps).
  void Retain(const absl::flat_hash_set<std::string>& keys);

  // The points of ns/name the request asks for (window, step, after,
  // rps_only; namespace, app and omit_idle are the caller's). False when the
  // app has no history.
  bool Read(const std::string& ns, const std::string& name,
            const v1::HistoryRequest& req, v1::AppHistory* out) const;
  // Apps with a history, as "ns/name".
  std::vector<std::string> Keys() const;
  // The last second recorded for any app (0: none yet), and for ns/name.
  int64_t last_second() const;
  int64_t LastSecond(const std::string& ns, const std::string& name) const;
  // Points stored (fine and coarse) over every app: what memory follows.
  size_t stored_points() const;

 private:
  struct Change {
    int64_t time;  // the point holds from this second (or minute) on
    LoadPoint point;
  };
  struct Marker {
    int64_t time;
    int32_t from, to;
    std::string reason;
  };
  struct Series {
    std::string ns, name;
    int64_t first = 0;  // first second recorded
    int64_t last = 0;   // last second recorded
    std::deque<Change> fine;
    // The minute being summed, and the minutes closed (first_minute: the
    // first minute that holds a closed point).
    int64_t minute = 0;
    int count = 0;
    LoadPoint sum;
    int64_t first_minute = 0;
    int64_t last_minute = 0;  // last closed minute (0: none)
    std::deque<Change> coarse;
    std::deque<Marker> markers;
  };
  static void Append(std::deque<Change>* changes, int64_t time,
                     const LoadPoint& p, int64_t horizon);
  static LoadPoint At(const std::deque<Change>& changes, int64_t time);

  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Series> apps_ ABSL_GUARDED_BY(mu_);
  int64_t last_second_ ABSL_GUARDED_BY(mu_) = 0;
};

// Fills a LoadHistory once a second. Start/Stop from one owner thread;
// RunOnce is what the thread calls (tests call it with a fake clock).
class HistoryRecorder {
 public:
  // An app as the recorder sees it: its replicas now and, when the desired
  // replicas changed, why (the scaler's last reason).
  struct AppNow {
    std::string ns, name;
    int32_t desired = 0;
    int32_t ready = 0;
    std::string reason;
  };
  // Calls `visit` for every app (not being deleted) of the store.
  using AppsFn =
      std::function<void(const std::function<void(const AppNow&)>& visit)>;

  // None owned; all outlive the recorder. `metrics` may be null (load is
  // then zero).
  HistoryRecorder(LoadHistory* history, MetricsSource* metrics, AppsFn apps,
                  Clock* clock);
  ~HistoryRecorder();
  HistoryRecorder(const HistoryRecorder&) = delete;
  HistoryRecorder& operator=(const HistoryRecorder&) = delete;

  void Start();
  void Stop();
  // Records every second completed at clock->Now() and not yet recorded
  // (at most the last minute of them, after a stall).
  void RunOnce();

 private:
  void Loop();

  LoadHistory* const history_;
  MetricsSource* const metrics_;
  const AppsFn apps_;
  Clock* const clock_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tidal
