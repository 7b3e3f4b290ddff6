#include "gateway/worker.h"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gateway/clocks.h"
#include "gateway/h2_relay.h"
#include "gateway/session.h"
#include "gateway/tls_certs.h"

namespace tidal::gateway {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr int64_t kSweepMs = 50;
constexpr int64_t kAcceptBackoffMs = 50;

}  // namespace

Worker::Worker(Gateway::Impl* gw, int index)
    : gw(gw),
      index(index),
      pool(&gw->budget),
      h2_pool(std::make_unique<H2UpstreamPool>(this)),
      rng(0x5851f42d4c957f2dull * (index + 1) ^ NowNs()) {}

Worker::~Worker() = default;

const RouteTable& Worker::Table() {
  if (gw->table_version.load(std::memory_order_acquire) != table_version) {
    table = gw->CurrentTable();
    table_version = table->version;
  }
  return *table;
}

std::shared_ptr<AppState> Worker::FindApp(const std::string& key) {
  if (key.empty()) return nullptr;
  if (const RouteTable::Entry* e = Table().Find(key)) return e->state;
  return gw->Provisional(key);
}

void Worker::Accept(bool tls) {
  (tls ? tls_acceptor : acceptor)
      .async_accept(
          ioc, [this, tls](boost::system::error_code ec, tcp::socket socket) {
            OnAccept(ec, std::move(socket), tls);
          });
}

void Worker::OnAccept(boost::system::error_code ec, tcp::socket socket,
                      bool tls) {
  if (ec == asio::error::operation_aborted ||
      !(tls ? tls_acceptor : acceptor).is_open()) {
    return;
  }
  int64_t now = MonoMs();
  if (ec) {
    gw->accept_errors_total.fetch_add(1, std::memory_order_relaxed);
    ++accept_errors_unlogged;
    if (now - accept_error_logged_ms >= 10'000) {
      gw->log->error(
          "gateway: accepting connections failed {} time(s): {}; retrying "
          "(tidal_gateway_accept_errors_total)",
          accept_errors_unlogged, ec.message());
      accept_error_logged_ms = now;
      accept_errors_unlogged = 0;
    }
    // Out of descriptors or memory: the connection stays in the backlog.
    // Accepting again at once would spin; wait a little, as nginx does.
    if (ec == asio::error::no_descriptors || ec.value() == ENFILE ||
        ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
      auto& timer = tls ? tls_accept_timer : accept_timer;
      timer.expires_after(std::chrono::milliseconds(kAcceptBackoffMs));
      timer.async_wait([this, tls](boost::system::error_code ec) {
        if (!ec) Accept(tls);
      });
      return;
    }
    return Accept(tls);  // ECONNABORTED and the like: the next one
  }
  boost::system::error_code addr_ec;
  auto remote = socket.remote_endpoint(addr_ec);
  const std::string address = addr_ec ? "" : remote.address().to_string();
  bool per_client = false;  // refused by the per-address limit
  if (gw->budget.Reserve(2) ||
      (pool.DropIdle(2) > 0 && gw->budget.Reserve(2))) {
    if (gw->client_counts.Add(address)) {
      CapIdle();
      std::shared_ptr<const CertSet> certs;
      if (tls) certs = gw->tls_certs->Current();
      std::make_shared<Session>(this, std::move(socket), std::move(certs),
                                address)
          ->Start();
      return Accept(tls);
    }
    gw->budget.Unreserve(2);
    per_client = true;
  }
  // At the connection limit: refuse rather than take the process's last
  // descriptors (the API, the store and the instances need them); at the
  // address's limit: refuse so that one client cannot take them all.
  (per_client ? gw->client_refused_total : gw->connections_refused_total)
      .fetch_add(1, std::memory_order_relaxed);
  ++refused_unlogged;
  if (now - refused_logged_ms >= 10'000) {
    if (per_client) {
      gw->log->warn(
          "gateway: {} holds {} connections "
          "(--gateway-max-connections-per-client): refused {} connection(s)",
          address, gw->opts.max_connections_per_client, refused_unlogged);
    } else {
      gw->log->warn(
          "gateway: at its limit of {} connections "
          "(--gateway-max-connections): refused {} connection(s) "
          "(tidal_gateway_connections_refused_total)",
          gw->opts.max_connections, refused_unlogged);
    }
    refused_logged_ms = now;
    refused_unlogged = 0;
  }
  static const char kBusy[] =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
      "Retry-After: 1\r\nConnection: close\r\nContent-Length: 29\r\n\r\n"
      "gateway at connection limit\r\n";
  static const char kClientBusy[] =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
      "Retry-After: 1\r\nConnection: close\r\nContent-Length: 41\r\n\r\n"
      "too many connections from this address\r\n";
  // (A TLS client gets the connection closed: no plain answer reaches it.)
  if (!tls) {
    const char* msg = per_client ? kClientBusy : kBusy;
    const size_t len = per_client ? sizeof(kClientBusy) - 1 : sizeof(kBusy) - 1;
    (void)!::send(socket.native_handle(), msg, len,
                  MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  socket.close(ignored);
  Accept(tls);
}

void Worker::CapIdle() {
  const int64_t cap = gw->opts.max_idle_connections;
  if (cap <= 0 || gw->idle_connections.load(std::memory_order_relaxed) < cap) {
    return;
  }
  // The longest idle connection of this thread makes room; without one
  // here, the next thread's (on its own thread).
  if (CloseOldestIdle()) return;
  const auto& all = gw->workers;
  if (all.size() < 2) return;
  Worker* next = all[(index + 1) % all.size()].get();
  asio::post(next->ioc, [next] { next->CloseOldestIdle(); });
}

bool Worker::CloseOldestIdle() {
  Session* oldest = nullptr;
  for (Session* s : sessions) {
    if (s->idle_since_ms() != 0 &&
        (oldest == nullptr || s->idle_since_ms() < oldest->idle_since_ms()) &&
        !s->ClientBytesWaiting()) {
      oldest = s;
    }
  }
  if (oldest == nullptr) return false;
  oldest->CloseIdle();
  return true;
}

void Worker::Sweep() {
  sweep_timer.expires_after(std::chrono::milliseconds(kSweepMs));
  sweep_timer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    int64_t now = MonoMs();
    std::vector<std::shared_ptr<Session>> due;
    for (Session* s : sessions) {
      if (s->deadline_ms() != 0 && s->deadline_ms() <= now)
        due.push_back(s->shared_from_this());
    }
    for (auto& s : due) s->OnDeadline();
    due.clear();
    // Idle upstream connections: expire, and drop pools of removed endpoints.
    pool.Expire(now, absl::ToInt64Milliseconds(gw->opts.upstream_idle_timeout));
    h2_pool->Expire(now,
                    absl::ToInt64Milliseconds(gw->opts.upstream_idle_timeout));
    Sweep();
  });
}

}  // namespace tidal::gateway
