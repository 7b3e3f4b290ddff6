#include "scaler/simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <queue>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tidal::scaler {

namespace {

constexpr double kEps = 1e-9;

struct Instance {
  double ready_at = 0;
  int32_t active = 0;
  bool ready = false;
  bool draining = false;
  bool alive = false;
  uint32_t gen = 0;
  uint64_t seq = 0;  // creation order: lower is older
};

// Simulates one app; adds to `stats`, `res` and the aggregated series.
class AppSim {
 public:
  AppSim(const AppTrace& app, const Trace& trace, const SimOptions& opts,
         const ScalerConfig& config, SimResult* res,
         std::vector<SeriesPoint>* series, std::vector<int32_t>* replicas,
         SimStats* stats, std::vector<float>* waits)
      : app_(app),
        trace_(trace),
        opts_(opts),
        res_(res),
        series_(series),
        replicas_(replicas),
        stats_(stats),
        waits_(waits),
        delay_(absl::ToDoubleSeconds(opts.model.start_delay)),
        timeout_(absl::ToDoubleSeconds(opts.model.request_timeout)),
        measure_from_(opts.measure_from_s),
        cap_(opts.model.concurrency) {
    AppScalerOptions so = opts.scaler;
    so.container_concurrency = opts.model.concurrency;
    const int32_t initial =
        opts.initial_instances >= 0
            ? opts.initial_instances
            : std::max(config.initial_scale, config.min_replicas);
    so.ready_at_start = initial;
    so.current_at_start = initial;
    so.start_duration = opts.model.start_delay;
    scaler_ = std::make_unique<AppScaler>(config, trace.start, so);
    for (int i = 0; i < initial; ++i) {
      int idx = NewInstance();
      insts_[idx].ready = true;
      ++ready_;
    }
    tick_ = absl::ToDoubleSeconds(scaler_->tick());
  }

  void Run() {
    const auto& reqs = app_.requests;
    size_t next_req = 0;
    double next_tick = 0;
    const int64_t seconds = static_cast<int64_t>(std::ceil(trace_.duration_s));
    for (int64_t sec = 0; sec < seconds; ++sec) {
      const double end = sec + 1.0;
      sec_start_ = sec;
      conc_integral_ = 0;
      arrivals_this_sec_ = 0;
      for (;;) {
        // The next event in [now, end): arrival, completion, ready, tick.
        double t_arr =
            next_req < reqs.size() ? reqs[next_req].arrival_s : 1e300;
        double t_done = done_.empty() ? 1e300 : done_.top().first;
        double t_ready = starting_.empty() ? 1e300 : starting_.top().first;
        double t = std::min({t_arr, t_done, t_ready, next_tick});
        if (t >= end) break;
        Advance(t);
        if (t == t_done) {
          auto [when, idx] = done_.top();
          done_.pop();
          Complete(idx);
        } else if (t == t_ready) {
          auto [when, key] = starting_.top();
          starting_.pop();
          BecomeReady(key);
        } else if (t == t_arr) {
          Arrive(reqs[next_req]);
          ++next_req;
        } else {
          Tick(t);
          next_tick += tick_;
        }
      }
      Advance(end);
      ExpireWaiting(end);
      MetricSample s;
      s.time = trace_.start + absl::Seconds(sec);
      s.concurrency = conc_integral_;
      s.requests = arrivals_this_sec_;
      scaler_->Record(s);
      if (series_ != nullptr) {
        SeriesPoint& p = (*series_)[sec];
        p.load += conc_integral_;
        p.desired += desired_;
        p.ready += ready_;
      }
      (*replicas_)[sec] += Current();
    }
    Advance(trace_.duration_s);
  }

 private:
  int NewInstance() {
    int idx;
    if (!free_.empty()) {
      idx = free_.back();
      free_.pop_back();
    } else {
      idx = static_cast<int>(insts_.size());
      insts_.emplace_back();
    }
    Instance& in = insts_[idx];
    uint32_t gen = in.gen + 1;
    in = Instance{};
    in.gen = gen;
    in.seq = ++next_seq_;
    in.alive = true;
    ++alive_;
    return idx;
  }
  void Kill(int idx) {
    Instance& in = insts_[idx];
    if (in.ready && !in.draining) --ready_;
    if (!in.ready && !in.draining) --starting_count_;
    in.alive = false;
    --alive_;
    free_.push_back(idx);
  }
  int32_t Current() const { return ready_ + starting_count_; }

  void Advance(double t) {
    if (t > now_) {
      if (t > measure_from_)
        stats_->instance_seconds +=
            alive_ * (t - std::max(now_, measure_from_));
      const double from = std::max(now_, static_cast<double>(sec_start_));
      if (t > from)
        conc_integral_ += (in_flight_ + waiting_.size()) * (t - from);
      now_ = t;
    }
  }

  bool HasSlot(const Instance& in) const {
    return cap_ <= 0 || in.active < cap_;
  }

  // The gateway's choice (route_table.cc): with a concurrency limit, the
  // oldest ready instance with a free slot (instances are filled in order,
  // so the newest ones go idle first and scale-downs stop them at no cost);
  // without one, the least loaded.
  int FindSlot() const {
    int best = -1;
    for (size_t i = 0; i < insts_.size(); ++i) {
      const Instance& in = insts_[i];
      if (!in.alive || !in.ready || in.draining || !HasSlot(in)) continue;
      if (best < 0 || (cap_ > 0 ? in.seq < insts_[best].seq
                                : in.active < insts_[best].active))
        best = static_cast<int>(i);
    }
    return best;
  }

  void Serve(int idx, const TraceRequest& r, double wait) {
    Instance& in = insts_[idx];
    ++in.active;
    ++in_flight_;
    if (r.arrival_s >= measure_from_) {
      waits_->push_back(static_cast<float>(wait));
      if (wait > kEps) ++stats_->waited;
    }
    done_.push({now_ + r.service_s, idx});
  }

  void Arrive(const TraceRequest& r) {
    ++arrivals_this_sec_;
    if (r.arrival_s >= measure_from_) {
      ++stats_->requests;
      if (ready_ == 0) ++stats_->cold_starts;
    }
    int idx = FindSlot();
    if (idx >= 0 && waiting_.empty()) {
      Serve(idx, r, 0);
      return;
    }
    waiting_.push_back(r);
    if (Current() == 0) {
      // The gateway wakes the scaler at once (the activator's poke).
      scaler_->SetInstances(ready_, Current());
      scaler_->SetWaiting(trace_.start + absl::Seconds(now_),
                          static_cast<int32_t>(waiting_.size()));
      Apply(scaler_->Decide(trace_.start + absl::Seconds(now_)));
    }
  }

  void Complete(int idx) {
    Instance& in = insts_[idx];
    --in.active;
    --in_flight_;
    if (in.draining) {
      if (in.active == 0) Kill(idx);
      return;
    }
    Drain(idx);
  }

  void BecomeReady(int64_t key) {
    int idx = static_cast<int>(key & 0xffffffff);
    uint32_t gen = static_cast<uint32_t>(key >> 32);
    Instance& in = insts_[idx];
    if (!in.alive || in.gen != gen || in.ready) return;
    in.ready = true;
    --starting_count_;
    ++ready_;
    scaler_->ObserveStartDuration(opts_.model.start_delay);
    Drain(idx);
  }

  // Serves waiting requests on instance `idx` while it has slots.
  void Drain(int idx) {
    while (!waiting_.empty() && HasSlot(insts_[idx])) {
      TraceRequest r = waiting_.front();
      waiting_.pop_front();
      Serve(idx, r, now_ - r.arrival_s);
    }
  }

  void ExpireWaiting(double t) {
    while (!waiting_.empty() && t - waiting_.front().arrival_s > timeout_) {
      if (waiting_.front().arrival_s >= measure_from_) ++stats_->dropped;
      waiting_.pop_front();
    }
  }

  void Tick(double t) {
    const absl::Time now = trace_.start + absl::Seconds(t);
    scaler_->SetInstances(ready_, Current());
    scaler_->SetWaiting(now, static_cast<int32_t>(waiting_.size()));
    Apply(scaler_->Decide(now));
  }

  void Apply(const Decision& d) {
    desired_ = d.desired_replicas;
    const int32_t cur = Current();
    if (d.desired_replicas == cur) return;
    ++res_->scale_events;
    if (res_->events.size() < opts_.max_events) {
      res_->events.push_back(
          {now_, app_.name, cur, d.desired_replicas, d.reason});
    }
    if (d.desired_replicas > cur) {
      for (int32_t i = cur; i < d.desired_replicas; ++i) {
        int idx = NewInstance();
        ++starting_count_;
        insts_[idx].ready_at = now_ + delay_;
        starting_.push({now_ + delay_,
                        (static_cast<int64_t>(insts_[idx].gen) << 32) | idx});
      }
      return;
    }
    int32_t remove = cur - d.desired_replicas;
    // Starting instances first, then idle, then busy (drained); newest first
    // in each, as the controller's StopFirst (app_reconciler.cc).
    std::vector<int> order;
    for (size_t i = 0; i < insts_.size(); ++i) {
      if (insts_[i].alive && !insts_[i].draining)
        order.push_back(static_cast<int>(i));
    }
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return insts_[a].seq > insts_[b].seq; });
    for (int pass = 0; pass < 3 && remove > 0; ++pass) {
      for (int i : order) {
        if (remove == 0) break;
        Instance& in = insts_[i];
        if (!in.alive || in.draining) continue;
        if (pass == 0 && !in.ready) {
          Kill(i);
          --remove;
        } else if (pass == 1 && in.ready && in.active == 0) {
          Kill(i);
          --remove;
        } else if (pass == 2 && in.ready) {
          in.draining = true;
          --ready_;
          --remove;
        }
      }
    }
  }

  const AppTrace& app_;
  const Trace& trace_;
  const SimOptions& opts_;
  SimResult* res_;
  std::vector<SeriesPoint>* series_;
  std::vector<int32_t>* replicas_;
  SimStats* stats_;
  std::vector<float>* waits_;
  const double delay_;
  const double timeout_;
  const double measure_from_;
  const int32_t cap_;
  std::unique_ptr<AppScaler> scaler_;
  double tick_ = 2;

  std::vector<Instance> insts_;
  std::vector<int> free_;
  std::priority_queue<std::pair<double, int>,
                      std::vector<std::pair<double, int>>, std::greater<>>
      done_;
  std::priority_queue<std::pair<double, int64_t>,
                      std::vector<std::pair<double, int64_t>>, std::greater<>>
      starting_;
  std::deque<TraceRequest> waiting_;
  int32_t alive_ = 0;
  int32_t ready_ = 0;
  int32_t starting_count_ = 0;
  int32_t in_flight_ = 0;
  int32_t desired_ = 0;
  double now_ = 0;
  uint64_t next_seq_ = 0;
  int64_t sec_start_ = 0;
  double conc_integral_ = 0;
  int64_t arrivals_this_sec_ = 0;
};

double Percentile(std::vector<float>* v, double q) {
  if (v->empty()) return 0;
  size_t k = static_cast<size_t>(std::ceil(q * v->size())) - 1;
  k = std::min(k, v->size() - 1);
  std::nth_element(v->begin(), v->begin() + k, v->end());
  return (*v)[k];
}

}  // namespace

Trace RepeatTrace(const Trace& trace, int times) {
  Trace out;
  out.start = trace.start;
  out.duration_s = trace.duration_s * std::max(1, times);
  for (const AppTrace& app : trace.apps) {
    AppTrace a;
    a.name = app.name;
    a.requests.reserve(app.requests.size() * std::max(1, times));
    for (int k = 0; k < std::max(1, times); ++k) {
      for (TraceRequest r : app.requests) {
        r.arrival_s += k * trace.duration_s;
        a.requests.push_back(r);
      }
    }
    out.apps.push_back(std::move(a));
  }
  return out;
}

absl::StatusOr<SimResult> Simulate(const Trace& trace,
                                   const SimOptions& options) {
  absl::StatusOr<ScalerConfig> config =
      ResolveConfig(options.scaling, options.model.concurrency);
  if (!config.ok()) return config.status();
  SimResult res;
  const size_t seconds = static_cast<size_t>(std::ceil(trace.duration_s));
  if (options.record_series) res.series.assign(seconds, SeriesPoint{});
  std::vector<int32_t> replicas(seconds, 0);
  std::vector<float> waits_all, waits_sparse;
  std::vector<float> cold_all, cold_sparse;  // per-app cold-start rates
  const double days = std::max(trace.duration_s / 86400.0, 1.0 / 24);
  for (const AppTrace& app : trace.apps) {
    const bool sparse = app.requests.size() / days < 1440.0;
    SimStats st;
    std::vector<float> waits;
    AppSim sim(app, trace, options, *config, &res,
               options.record_series ? &res.series : nullptr, &replicas, &st,
               &waits);
    sim.Run();
    for (SimStats* t : {&res.all, sparse ? &res.sparse : nullptr}) {
      if (t == nullptr) continue;
      ++t->apps;
      t->requests += st.requests;
      t->cold_starts += st.cold_starts;
      t->waited += st.waited;
      t->dropped += st.dropped;
      t->instance_seconds += st.instance_seconds;
    }
    AppSimStats a;
    a.name = app.name;
    a.sparse = sparse;
    a.requests = st.requests;
    a.cold_starts = st.cold_starts;
    a.waited = st.waited;
    a.instance_seconds = st.instance_seconds;
    double service = 0;
    for (const TraceRequest& r : app.requests) service += r.service_s;
    a.mean_service_s = app.requests.empty() ? 0 : service / app.requests.size();
    if (st.requests > 0) {
      const float rate = static_cast<float>(st.ColdStartRate());
      cold_all.push_back(rate);
      if (sparse) cold_sparse.push_back(rate);
    }
    waits_all.insert(waits_all.end(), waits.begin(), waits.end());
    if (sparse)
      waits_sparse.insert(waits_sparse.end(), waits.begin(), waits.end());
    a.p99_wait_s = Percentile(&waits, 0.99);
    res.apps.push_back(std::move(a));
  }
  for (auto [t, w, c] :
       {std::tuple{&res.all, &waits_all, &cold_all},
        std::tuple{&res.sparse, &waits_sparse, &cold_sparse}}) {
    t->p50_wait_s = Percentile(w, 0.50);
    t->p99_wait_s = Percentile(w, 0.99);
    t->p999_wait_s = Percentile(w, 0.999);
    t->app_cold_rate_p75 = Percentile(c, 0.75);
  }
  for (int32_t r : replicas) res.peak_replicas = std::max(res.peak_replicas, r);
  return res;
}

namespace {

// Text for an SVG (XML) element: &, <, >, " and ' escaped.
std::string XmlEscape(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// One plotted line: a value per second.
struct SvgLine {
  std::string label;
  const char* color;
  std::vector<double> values;
};

// The lines over time (each bucket of at most 1,000 takes its seconds'
// maximum) with a legend, as a self-contained SVG.
std::string RenderLines(const std::vector<SvgLine>& lines,
                        const std::string& title) {
  const int W = 1000, H = 420, L = 60, R = 20, T = 40, B = 40;
  size_t n = 0;
  for (const SvgLine& l : lines) n = std::max(n, l.values.size());
  const size_t buckets = std::min<size_t>(n, 1000);
  std::vector<std::vector<double>> pts(lines.size(),
                                       std::vector<double>(buckets, 0));
  double ymax = 1;
  for (size_t k = 0; k < lines.size(); ++k) {
    const std::vector<double>& v = lines[k].values;
    for (size_t b = 0; b < buckets; ++b) {
      size_t from = b * n / buckets,
             to = std::max(from + 1, (b + 1) * n / buckets);
      for (size_t i = from; i < to && i < v.size(); ++i)
        pts[k][b] = std::max(pts[k][b], v[i]);
      ymax = std::max(ymax, pts[k][b]);
    }
  }
  auto x = [&](size_t b) {
    return L + (W - L - R) * (buckets > 1 ? double(b) / (buckets - 1) : 0);
  };
  auto y = [&](double v) { return T + (H - T - B) * (1 - v / ymax); };
  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
      "height=\"100%%\" "
      "fill=\"white\"/>\n<text x=\"%d\" y=\"20\" font-size=\"14\">%s</text>\n",
      W, H, L, XmlEscape(title));
  absl::StrAppend(
      &out,
      absl::StrFormat(
          "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n"
          "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n",
          L, H - B, W - R, H - B, L, T, L, H - B));
  for (int i = 0; i <= 4; ++i) {
    double v = ymax * i / 4;
    absl::StrAppend(
        &out, absl::StrFormat(
                  "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
                  L - 5, y(v) + 4, v));
  }
  absl::StrAppend(
      &out, absl::StrFormat(
                "<text x=\"%d\" y=\"%d\">0 s</text><text x=\"%d\" y=\"%d\" "
                "text-anchor=\"end\">%d s</text>\n",
                L, H - B + 16, W - R, H - B + 16, static_cast<int>(n)));
  for (size_t k = 0; k < lines.size(); ++k) {
    absl::StrAppend(&out, "<polyline fill=\"none\" stroke=\"", lines[k].color,
                    "\" stroke-width=\"1.2\" points=\"");
    for (size_t b = 0; b < buckets; ++b) {
      absl::StrAppend(&out, absl::StrFormat("%.1f,%.1f ", x(b), y(pts[k][b])));
    }
    absl::StrAppend(&out, "\"/>\n");
  }
  // The legend, under the time axis.
  int lx = L;
  std::string legend;
  for (const SvgLine& l : lines) {
    absl::StrAppend(
        &legend,
        absl::StrFormat("<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>", lx,
                        H - 4, l.color, XmlEscape(l.label)));
    lx += 16 + 7 * static_cast<int>(l.label.size());
  }
  absl::StrAppend(&out, legend, "\n</svg>\n");
  return out;
}

}  // namespace

std::string RenderSvg(const std::vector<SeriesPoint>& series,
                      const std::string& title) {
  SvgLine load{"load (concurrency)", "#999999", {}};
  SvgLine desired{"desired", "#d62728", {}};
  SvgLine ready{"ready", "#1f77b4", {}};
  for (const SeriesPoint& p : series) {
    load.values.push_back(p.load);
    desired.values.push_back(p.desired);
    ready.values.push_back(p.ready);
  }
  return RenderLines({std::move(load), std::move(desired), std::move(ready)},
                     title);
}

std::string RenderCompareSvg(const std::vector<SeriesPoint>& load,
                             const std::vector<std::string>& names,
                             const std::vector<std::vector<SeriesPoint>>& runs,
                             const std::string& title) {
  static const char* const kColors[] = {"#d62728", "#1f77b4", "#2ca02c",
                                        "#ff7f0e", "#9467bd", "#8c564b"};
  std::vector<SvgLine> lines;
  SvgLine l{"load (concurrency)", "#999999", {}};
  for (const SeriesPoint& p : load) l.values.push_back(p.load);
  lines.push_back(std::move(l));
  for (size_t k = 0; k < runs.size() && k < names.size(); ++k) {
    SvgLine r{names[k], kColors[k % 6], {}};
    for (const SeriesPoint& p : runs[k]) r.values.push_back(p.ready);
    lines.push_back(std::move(r));
  }
  return RenderLines(lines, title);
}

}  // namespace tidal::scaler
