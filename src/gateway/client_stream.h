#pragma once

// ClientStream: a gateway client connection, plain TCP or TLS over it, as
// one Asio/Beast stream type, so that one Session serves both listeners.
// Each read and write takes one branch on tls(); a plain connection carries
// nothing more than its socket and an empty pointer. The TLS layer (Asio's
// ssl::stream) and the operations' definitions are in client_stream_tls.h,
// which only the .cc files that run the operations include: this header
// (and session.h) stays free of OpenSSL's. Internal to the gateway; on the
// session's thread only.

#include <boost/asio/ip/tcp.hpp>
#include <memory>

namespace tidal::gateway {

class CertSet;
struct TlsLayer;

class ClientStream {
 public:
  using executor_type = boost::asio::ip::tcp::socket::executor_type;

  // Plain TCP, until StartTls().
  explicit ClientStream(boost::asio::ip::tcp::socket socket);
  ~ClientStream();
  // TLS over the socket with the certificates of `certs` (before any I/O;
  // the handshake is async_handshake).
  void StartTls(std::shared_ptr<const CertSet> certs);
  // After the handshake: ALPN chose HTTP/2.
  bool h2() const;
  ClientStream(const ClientStream&) = delete;
  ClientStream& operator=(const ClientStream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  // The TCP connection under TLS (close, wait, options, the address).
  boost::asio::ip::tcp::socket& socket() { return socket_; }
  bool tls() const { return tls_ != nullptr; }

  // AsyncReadStream and AsyncWriteStream (client_stream_tls.h).
  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler);
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler);
  // The server side of the TLS handshake; tls() only.
  template <class Handler>
  void async_handshake(Handler&& handler);

 private:
  boost::asio::ip::tcp::socket socket_;
  std::unique_ptr<TlsLayer> tls_;  // null: plain TCP
};

}  // namespace tidal::gateway
