#include "gateway/gateway.h"

#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/port_check.h"
#include "common/status_macros.h"
#include "gateway/clocks.h"
#include "gateway/gateway_impl.h"
#include "gateway/prometheus_text.h"
#include "gateway/session.h"
#include "gateway/tls_certs.h"
#include "gateway/worker.h"

namespace tidal::gateway {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Opens, binds (SO_REUSEPORT: one acceptor per thread on one port) and
// listens; a `*port` of 0 becomes the port bound.
absl::Status Listen(tcp::acceptor& acceptor, const asio::ip::address& address,
                    int* port) {
  boost::system::error_code ec;
  tcp::endpoint ep(address, static_cast<uint16_t>(*port));
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) {
    using reuse_port =
        asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
    acceptor.set_option(reuse_port(true), ec);
  }
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("gateway: cannot listen on ",
                                               address.to_string(), ":", *port,
                                               ": ", ec.message()));
  }
  if (*port == 0) *port = acceptor.local_endpoint().port();
  return absl::OkStatus();
}

// A copy of `t` (copy-on-write) whose shard of `key` is a copy that `edit`
// changed; the other shards are shared.
template <typename F>
std::shared_ptr<RouteTable> WithShardEdited(const RouteTable& t,
                                            const std::string& key, F edit) {
  auto table = std::make_shared<RouteTable>(t);
  const size_t i = RouteTable::ShardOf(key);
  auto shard = std::make_shared<RouteTable::Shard>(*table->shards[i]);
  edit(*shard);
  table->shards[i] = std::move(shard);
  return table;
}

}  // namespace

Gateway::Impl::Impl(GatewayOptions o)
    : opts(std::move(o)),
      log(GetLogger("gateway")),
      budget(opts.max_connections),
      client_counts(opts.max_connections_per_client) {
  if (opts.threads <= 0)
    opts.threads = std::max(1u, std::thread::hardware_concurrency());
  config.shards = opts.threads;
  config.queue_size = opts.queue_size;
  config.on_demand = opts.on_demand;
  config.drain_mu = &drain_mu;
  config.drain_cv = &drain_cv;
  table_ = std::make_shared<RouteTable>();
}

Gateway::Impl::~Impl() = default;

absl::Status Gateway::Impl::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_)
      return absl::FailedPreconditionError("gateway already started");
    started_ = true;
  }
  boost::system::error_code ec;
  auto address = asio::ip::make_address(opts.listen_address, ec);
  if (ec)
    return absl::InvalidArgumentError(
        absl::StrCat("bad listen address ", opts.listen_address));
  const bool https = opts.tls_port >= 0;
  asio::ip::address tls_address;
  if (https) {
    tls_address = asio::ip::make_address(opts.tls_listen_address, ec);
    if (ec)
      return absl::InvalidArgumentError(
          absl::StrCat("bad HTTPS listen address ", opts.tls_listen_address));
    auto certs = TlsCerts::Load(opts.tls_certs, log);
    if (!certs.ok()) return certs.status();
    tls_certs = std::move(*certs);
  }
  int bind_port = opts.port;
  int bind_tls_port = opts.tls_port;
  // SO_REUSEPORT would let another program share a port in use.
  RETURN_IF_ERROR(
      common::CheckPortFree(address.to_string(), bind_port, "gateway"));
  if (https) {
    RETURN_IF_ERROR(common::CheckPortFree(tls_address.to_string(),
                                          bind_tls_port, "gateway"));
  }
  for (int i = 0; i < opts.threads; ++i) {
    auto w = std::make_unique<Worker>(this, i);
    absl::Status st = Listen(w->acceptor, address, &bind_port);
    if (st.ok() && https)
      st = Listen(w->tls_acceptor, tls_address, &bind_tls_port);
    if (!st.ok()) {
      workers.clear();
      return st;
    }
    workers.push_back(std::move(w));
  }
  port = bind_port;
  tls_port = https ? bind_tls_port : -1;
  int n = 0;
  for (auto& w : workers) {
    Worker* wp = w.get();
    wp->Accept();
    if (https) wp->Accept(/*tls=*/true);
    wp->Sweep();
    wp->thread = std::thread([wp] { wp->ioc.run(); });
    // Named for `top -H` and ps (at most 15 characters).
    pthread_setname_np(wp->thread.native_handle(),
                       absl::StrCat("tidal-gw-", n++).c_str());
  }
  ticker_ = std::thread([this] { TickLoop(); });
  log->info("gateway listening on {}:{} with {} threads, domain {}",
            opts.listen_address, port, opts.threads, opts.domain);
  if (https) {
    log->info("gateway listening for HTTPS on {}:{} with {} certificate(s){}",
              opts.tls_listen_address, tls_port, opts.tls_certs.size(),
              opts.https_redirect ? "; plain HTTP is redirected to it" : "");
  }
  return absl::OkStatus();
}

void Gateway::Impl::Stop() {
  {
    absl::MutexLock lock(&tick_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
  for (auto& w : workers) w->ioc.stop();
  for (auto& w : workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  // Release held requests (their handlers die with the io_contexts).
  auto table = CurrentTable();
  table->ForEach([](const RouteTable::Entry& e) { e.state->Remove(); });
  workers.clear();
  absl::MutexLock lock(&mu_);
  table_ = std::make_shared<RouteTable>();
}

void Gateway::Impl::TickLoop() {
  absl::MutexLock lock(&tick_mu_);
  absl::Time next_reload = absl::Now() + opts.tls_reload_interval;
  while (!stopping_) {
    absl::Time now = absl::Now();
    absl::Time next = absl::FromUnixSeconds(absl::ToUnixSeconds(now) + 1);
    if (tick_mu_.AwaitWithDeadline(absl::Condition(&stopping_), next)) break;
    int64_t now_ns = NowNs();
    auto table = CurrentTable();
    table->ForEach([&](const RouteTable::Entry& e) {
      e.state->Tick(next - absl::Seconds(1), now_ns);
    });
    ExpireProvisional();
    if (tls_certs && absl::Now() >= next_reload) {
      tls_certs->Reload();
      next_reload = absl::Now() + opts.tls_reload_interval;
    }
  }
}

void Gateway::Impl::PublishLocked(std::shared_ptr<RouteTable> t) {
  t->version = table_->version + 1;
  std::atomic_store(&table_, std::shared_ptr<const RouteTable>(std::move(t)));
  table_version.store(table_->version, std::memory_order_release);
}

void Gateway::Impl::SetRoute(const Route& in) {
  Route route = in;
  for (auto& rev : route.revisions) {
    for (auto& e : rev.endpoints) {
      boost::system::error_code ec;
      asio::ip::make_address(e.host, ec);
      if (!ec) continue;
      // Names are resolved once here (the controller's thread), not per
      // request.
      asio::io_context ioc;
      tcp::resolver resolver(ioc);
      auto results = resolver.resolve(e.host, std::to_string(e.port), ec);
      if (!ec && !results.empty()) {
        e.host = results.begin()->endpoint().address().to_string();
      } else {
        log->warn("app={}/{} instance {}: cannot resolve {}", route.ns,
                  route.app, e.instance_id, e.host);
      }
    }
  }
  std::string key = absl::StrCat(route.app, ".", route.ns);
  absl::MutexLock lock(&mu_);
  // The table is copied (copy-on-write) only when an app is added; a route
  // change of a known app swaps the snapshot inside its AppState, so updates
  // cost the same with 10 apps or 10,000.
  const RouteTable::Entry* found = table_->Find(key);
  std::shared_ptr<AppState> state =
      found != nullptr
          ? found->state
          : std::make_shared<AppState>(route.ns, route.app, &config, NowNs());
  std::vector<std::shared_ptr<EndpointState>> added;
  state->Update(route, &next_uid, &added);
  for (auto& e : added) instances_[e->instance_id] = e;
  for (auto i = instances_.begin(); i != instances_.end();) {
    if (i->second.expired()) {
      instances_.erase(i++);
    } else {
      ++i;
    }
  }
  provisional_.erase(key);
  if (found == nullptr) {
    PublishLocked(WithShardEdited(*table_, key, [&](RouteTable::Shard& shard) {
      shard[key].state = std::move(state);
    }));
  }
}

std::shared_ptr<AppState> Gateway::Impl::EraseLocked(const std::string& key) {
  provisional_.erase(key);
  const RouteTable::Entry* found = table_->Find(key);
  if (found == nullptr) return nullptr;
  std::shared_ptr<AppState> state = found->state;
  PublishLocked(WithShardEdited(
      *table_, key, [&](RouteTable::Shard& shard) { shard.erase(key); }));
  return state;
}

void Gateway::Impl::RemoveRoute(const std::string& ns, const std::string& app) {
  std::shared_ptr<AppState> state;
  {
    absl::MutexLock lock(&mu_);
    state = EraseLocked(absl::StrCat(app, ".", ns));
  }
  if (state) state->Remove();
}

std::shared_ptr<AppState> Gateway::Impl::Provisional(const std::string& key) {
  if (!opts.app_exists) return nullptr;
  // Names are DNS labels: the first dot ends the app's.
  size_t dot = key.find('.');
  if (dot == std::string::npos) return nullptr;
  std::string app = key.substr(0, dot), ns = key.substr(dot + 1);
  if (app.empty() || ns.empty() || !opts.app_exists(ns, app)) return nullptr;
  absl::MutexLock lock(&mu_);
  // The route may have come since the caller's snapshot.
  if (const RouteTable::Entry* found = table_->Find(key)) return found->state;
  auto state = std::make_shared<AppState>(ns, app, &config, NowNs());
  PublishLocked(WithShardEdited(*table_, key, [&](RouteTable::Shard& shard) {
    shard[key].state = state;
  }));
  provisional_[key] = MonoMs();
  log->info("app={}/{}: no route yet; requests wait for it", ns, app);
  return state;
}

void Gateway::Impl::ExpireProvisional() {
  // A second past the queue timeout, every request it held has had its 504.
  const int64_t before = MonoMs() - absl::ToInt64Milliseconds(
                                        opts.queue_timeout + absl::Seconds(1));
  std::vector<std::shared_ptr<AppState>> gone;
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> expired;
    for (const auto& [key, since] : provisional_) {
      if (since < before) expired.push_back(key);
    }
    for (const auto& key : expired) {
      if (auto state = EraseLocked(key)) gone.push_back(std::move(state));
    }
  }
  for (auto& state : gone) {
    log->warn("app={}/{}: no route came for its waiting requests", state->ns,
              state->app);
    state->Remove();
  }
}

std::shared_ptr<AppState> Gateway::Impl::FindApp(const std::string& ns,
                                                 const std::string& app) const {
  auto table = CurrentTable();
  const RouteTable::Entry* e = table->Find(absl::StrCat(app, ".", ns));
  return e == nullptr ? nullptr : e->state;
}

std::shared_ptr<EndpointState> Gateway::Impl::FindInstance(
    const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = instances_.find(id);
  return it == instances_.end() ? nullptr : it->second.lock();
}

std::string Gateway::Impl::PrometheusText() const {
  auto table = CurrentTable();
  std::vector<const AppState*> apps;
  table->ForEach(
      [&](const RouteTable::Entry& e) { apps.push_back(e.state.get()); });
  GatewayCounters c;
  c.unknown_host_total = unknown_host_total.load();
  c.client_closed_total = client_closed_total.load();
  c.connections_refused_total = connections_refused_total.load();
  c.client_connections_refused_total = client_refused_total.load();
  c.idle_connections = idle_connections.load();
  c.idle_connections_closed_total = idle_closed_total.load();
  c.accept_errors_total = accept_errors_total.load();
  c.tls_handshake_errors_total = tls_handshake_errors_total.load();
  c.tunnels_total = tunnels_total.load();
  c.tunnels_open = tunnels_open.load();
  c.tunnels_going_away_total = tunnels_going_away_total.load();
  c.connection_slots = budget.held();
  c.max_connections = opts.max_connections;
  return RenderPrometheusText(std::move(apps), c, NowNs());
}

Gateway::Gateway(GatewayOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Gateway::~Gateway() { impl_->Stop(); }
absl::Status Gateway::Start() { return impl_->Start(); }
void Gateway::Stop() { impl_->Stop(); }
int Gateway::port() const { return impl_->port; }
int Gateway::tls_port() const { return impl_->tls_port; }
void Gateway::SetRoute(const Route& route) { impl_->SetRoute(route); }
void Gateway::RemoveRoute(const std::string& ns, const std::string& app) {
  impl_->RemoveRoute(ns, app);
}

int Gateway::InFlight(const std::string& instance_id) const {
  auto e = impl_->FindInstance(instance_id);
  return e ? e->outstanding.load() : 0;
}

int Gateway::Tunnels(const std::string& instance_id) const {
  auto e = impl_->FindInstance(instance_id);
  return e ? e->tunnels.load() : 0;
}

void Gateway::CloseTunnels(const std::string& instance_id) {
  for (auto& w : impl_->workers) {
    Worker* worker = w.get();
    asio::post(worker->ioc, [worker, instance_id] {
      // GoAway may end a session: walk a copy, holding each one.
      std::vector<std::shared_ptr<Session>> tunnels;
      for (Session* s : worker->sessions) {
        if (s->TunnelTo(instance_id)) tunnels.push_back(s->shared_from_this());
      }
      for (auto& s : tunnels) s->GoAway();
    });
  }
}

bool Gateway::WaitDrained(const std::string& instance_id,
                          absl::Time deadline) const {
  auto e = impl_->FindInstance(instance_id);
  if (!e) return true;
  absl::MutexLock lock(&impl_->drain_mu);
  while (e->outstanding.load() > 0) {
    if (impl_->drain_cv.WaitWithDeadline(&impl_->drain_mu, deadline)) {
      return e->outstanding.load() == 0;
    }
  }
  return true;
}

absl::Time Gateway::LastRequestTime(const std::string& ns,
                                    const std::string& app) const {
  auto s = impl_->FindApp(ns, app);
  if (!s) return absl::InfinitePast();
  int64_t ns_time = s->last_request_ns.load(std::memory_order_relaxed);
  return ns_time == 0 ? absl::InfinitePast() : absl::FromUnixNanos(ns_time);
}

int Gateway::Queued(const std::string& ns, const std::string& app) const {
  auto s = impl_->FindApp(ns, app);
  return s ? s->queued() : 0;
}

std::vector<MetricSample> Gateway::Samples(const std::string& ns,
                                           const std::string& app,
                                           int64_t revision, absl::Time after) {
  auto s = impl_->FindApp(ns, app);
  if (!s) return {};
  if (revision == 0) return s->metrics.Samples(after);
  auto m = s->RevisionMetrics(revision);
  return m ? m->Samples(after) : std::vector<MetricSample>{};
}

RequestStats Gateway::Stats(const std::string& ns, const std::string& app,
                            int64_t revision, absl::Duration window) {
  auto s = impl_->FindApp(ns, app);
  if (!s) return {};
  if (revision == 0) return s->metrics.Stats(window, NowNs());
  auto m = s->RevisionMetrics(revision);
  return m ? m->Stats(window, NowNs()) : RequestStats{};
}

std::vector<CumulativeTraffic> Gateway::Traffic() const {
  std::vector<CumulativeTraffic> out;
  const int64_t now = NowNs();
  auto add = [&](const AppState& s, int64_t revision, const TrafficMetrics& m) {
    Totals t = m.Read(now);
    CumulativeTraffic c;
    c.ns = s.ns;
    c.app = s.app;
    c.revision = revision;
    c.requests = t.started;
    c.classes = t.classes;
    c.latency_buckets.assign(t.buckets.begin(), t.buckets.end());
    c.area = t.area;
    c.in_flight = t.in_flight;
    out.push_back(std::move(c));
  };
  impl_->CurrentTable()->ForEach([&](const RouteTable::Entry& e) {
    add(*e.state, 0, e.state->metrics);
    for (const auto& [revision, m] : e.state->RevisionMetrics()) {
      add(*e.state, revision, *m);
    }
  });
  return out;
}

std::string Gateway::PrometheusText() const { return impl_->PrometheusText(); }

}  // namespace tidal::gateway
