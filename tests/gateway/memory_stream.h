#pragma once

// Reading a client's request as the gateway's session does, without a
// socket: MemoryStream is a SyncReadStream over a string (its bytes, then
// EOF, as a client that sent them and shut its side), and ReadHeader /
// ReadBody run Beast's own read algorithms over it: the header whole, then
// the body through a 64 KiB buffer_body window. The session runs the same
// algorithms asynchronously on its socket (http::async_read_header,
// http::async_read_some). For unit tests and fuzz targets.

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/system/system_error.hpp>
#include <cstddef>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/request_policy.h"

namespace tidal::gateway::testing {

class MemoryStream {
 public:
  // `max_read`: at most this many bytes per read (a client's bytes may
  // arrive in small pieces).
  explicit MemoryStream(std::string_view data,
                        size_t max_read = std::numeric_limits<size_t>::max())
      : data_(data), max_read_(max_read) {}

  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers,
                   boost::system::error_code& ec) {
    if (pos_ == data_.size()) {
      ec = boost::asio::error::eof;
      return 0;
    }
    ec = {};
    size_t n = boost::asio::buffer_copy(
        buffers, boost::asio::buffer(data_.data() + pos_,
                                     std::min(max_read_, data_.size() - pos_)));
    pos_ += n;
    return n;
  }
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  std::string_view data_;
  size_t max_read_;
  size_t pos_ = 0;
};

// The session's body window.
inline constexpr size_t kBodyWindow = 64 * 1024;

// Reads a request header into `parser` (limited with LimitRequestParser);
// `buf` keeps what was read beyond it (the body, pipelined requests).
template <class Stream>
boost::system::error_code ReadHeader(Stream& stream,
                                     boost::beast::flat_buffer& buf,
                                     RequestParser& parser) {
  boost::system::error_code ec;
  boost::beast::http::read_header(stream, buf, parser, ec);
  return ec;
}

// Reads the next piece of the body (after ReadHeader) into `window` (of
// kBodyWindow bytes), as the session's relay does; sets `*n` to the bytes
// read (0 for a chunk header or a chunk's CRLF). A full window is no error.
template <class Stream>
boost::system::error_code ReadBodyPiece(Stream& stream,
                                        boost::beast::flat_buffer& buf,
                                        RequestParser& parser, char* window,
                                        size_t* n) {
  auto& body = parser.get().body();
  body.data = window;
  body.size = kBodyWindow;
  boost::system::error_code ec;
  boost::beast::http::read_some(stream, buf, parser, ec);
  if (ec == boost::beast::http::error::need_buffer) ec = {};
  *n = kBodyWindow - parser.get().body().size;
  return ec;
}

// Reads the whole body into `*out`; returns the first error.
template <class Stream>
boost::system::error_code ReadBody(Stream& stream,
                                   boost::beast::flat_buffer& buf,
                                   RequestParser& parser, std::string* out) {
  auto window = std::make_unique<char[]>(kBodyWindow);
  while (!parser.is_done()) {
    size_t n = 0;
    auto ec = ReadBodyPiece(stream, buf, parser, window.get(), &n);
    if (ec) return ec;
    out->append(window.get(), n);
  }
  return {};
}

}  // namespace tidal::gateway::testing
