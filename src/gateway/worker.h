#pragma once

// One I/O thread of the gateway: its io_context, its SO_REUSEPORT acceptors
// (plain and HTTPS; client connections within the connection budget, a 503
// beyond it, a short pause after EMFILE and the like), its pool of idle
// upstream connections, its sessions and the sweep that fires their deadlines.
// Everything here is touched only by the worker's thread, except `ioc` (post
// from anywhere). Internal to the gateway.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <list>
#include <memory>
#include <thread>

#include "gateway/gateway_impl.h"
#include "gateway/route_table.h"
#include "gateway/upstream_pool.h"

namespace tidal::gateway {

class Session;
class H2UpstreamPool;

struct Worker {
  Worker(Gateway::Impl* gw, int index);
  ~Worker();

  // The current route table (refreshed when the gateway published a new
  // one).
  const RouteTable& Table();
  // The app routed at `key` ("<app>.<ns>", empty: none), or a provisional
  // route for an app whose route is not set yet (Gateway::Impl::Provisional);
  // null: 404.
  std::shared_ptr<AppState> FindApp(const std::string& key);
  // Accepts the next connection of the plain listener, or of the HTTPS one
  // (`tls`).
  void Accept(bool tls = false);
  void OnAccept(boost::system::error_code ec,
                boost::asio::ip::tcp::socket socket, bool tls);
  // At GatewayOptions::max_idle_connections: closes this thread's longest
  // idle client connection, to make room for a new one.
  void CapIdle();
  // Closes this thread's longest idle client connection; false: none.
  bool CloseOldestIdle();
  // Every kSweepMs: fires due session deadlines, expires idle upstream
  // connections.
  void Sweep();

  Gateway::Impl* const gw;
  const int index;
  std::list<Session*> sessions;  // declared before ioc: sessions die with it
  // One thread runs it and does all I/O on its sockets (others only post):
  // the reactor's per-socket locking is off (half a microsecond a request).
  boost::asio::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  boost::asio::ip::tcp::acceptor acceptor{ioc};
  boost::asio::steady_timer sweep_timer{ioc};
  boost::asio::steady_timer accept_timer{ioc};  // backoff after EMFILE &c.
  // The HTTPS listener (open when GatewayOptions::tls_port >= 0).
  boost::asio::ip::tcp::acceptor tls_acceptor{ioc};
  boost::asio::steady_timer tls_accept_timer{ioc};
  int64_t accept_error_logged_ms = 0;
  uint64_t accept_errors_unlogged = 0;
  int64_t refused_logged_ms = 0;
  uint64_t refused_unlogged = 0;
  UpstreamPool pool;
  // HTTP/2 connections to h2c instances (h2_relay.h).
  std::unique_ptr<H2UpstreamPool> h2_pool;
  std::shared_ptr<const RouteTable> table;
  uint64_t table_version = ~uint64_t{0};
  uint64_t rng;
  std::thread thread;
};

}  // namespace tidal::gateway
