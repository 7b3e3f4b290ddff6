#pragma once

// The TLS layer of ClientStream and the definitions of its operations:
// included by the .cc files that construct ClientStreams or run their
// operations (session.cc), and by no header but this one.

#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <utility>

#include "gateway/client_stream.h"
#include "gateway/tls_certs.h"

namespace tidal::gateway {

struct TlsLayer {
  TlsLayer(boost::asio::ip::tcp::socket& socket,
           std::shared_ptr<const CertSet> set)
      : certs(std::move(set)), stream(socket, certs->initial()) {
    certs->Attach(stream.native_handle());
  }
  // The certificates the handshake chooses from (SNI): kept alive for it.
  std::shared_ptr<const CertSet> certs;
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket&> stream;
};

template <class MutableBuffers, class Handler>
void ClientStream::async_read_some(const MutableBuffers& buffers,
                                   Handler&& handler) {
  if (tls_) {
    tls_->stream.async_read_some(buffers, std::forward<Handler>(handler));
  } else {
    socket_.async_read_some(buffers, std::forward<Handler>(handler));
  }
}

template <class ConstBuffers, class Handler>
void ClientStream::async_write_some(const ConstBuffers& buffers,
                                    Handler&& handler) {
  if (tls_) {
    tls_->stream.async_write_some(buffers, std::forward<Handler>(handler));
  } else {
    socket_.async_write_some(buffers, std::forward<Handler>(handler));
  }
}

template <class Handler>
void ClientStream::async_handshake(Handler&& handler) {
  tls_->stream.async_handshake(boost::asio::ssl::stream_base::server,
                               std::forward<Handler>(handler));
}

}  // namespace tidal::gateway
