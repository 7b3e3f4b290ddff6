#include "gateway/worker.h"

#include <sys/socket.h>

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
  if (gw->budget.Reserve(2) ||
      (pool.DropIdle(2) > 0 && gw->budget.Reserve(2))) {
    std::shared_ptr<const CertSet> certs;
    if (tls) certs = gw->tls_certs->Current();
    std::make_shared<Session>(this, std::move(socket), std::move(certs))
        ->Start();
    return Accept(tls);
  }
  // At the connection limit: refuse rather than take the process's last
  // descriptors (the API, the store and the instances need them).
  gw->connections_refused_total.fetch_add(1, std::memory_order_relaxed);
  ++refused_unlogged;
  if (now - refused_logged_ms >= 10'000) {
    gw->log->warn(
        "gateway: at its limit of {} connections (--gateway-max-connections): "
        "refused {} connection(s) (tidal_gateway_connections_refused_total)",
        gw->opts.max_connections, refused_unlogged);
    refused_logged_ms = now;
    refused_unlogged = 0;
  }
  static const char kBusy[] =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
      "Retry-After: 1\r\nConnection: close\r\nContent-Length: 29\r\n\r\n"
      "gateway at connection limit\r\n";
  // (A TLS client gets the connection closed: no plain answer reaches it.)
  if (!tls) {
    (void)!::send(socket.native_handle(), kBusy, sizeof(kBusy) - 1,
                  MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  socket.close(ignored);
  Accept(tls);
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
