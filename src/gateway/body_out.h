#pragma once

// The outgoing side of one relayed message's body. Beast's chunked
// serializer cannot relay a body read piece by piece (it turns an empty
// piece into the last chunk "0\r\n\r\n", and writes no trailers), so the
// serializer writes the header only and the body is framed here: raw bytes
// (Content-Length, or until close) or chunks, ending with the last chunk and
// the trailer fields the parser appended to the message after its header
// (but those ForbiddenTrailer names). Internal to the gateway: one per
// session and direction, used from the session's thread only.

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <cstddef>
#include <string>
#include <vector>

namespace tidal::gateway {

class BodyOut {
 public:
  // Starts a message: `header` (its start line and fields as parsed so far,
  // written out here in one piece, with no serializer). `has_body` is false
  // when the message ends with its header (HEAD, 204, 304, Content-Length:
  // 0); `chunked_out`: the body goes out chunked; `chunked_in`: it came in
  // chunked (trailer fields may be appended to the fields while it is read).
  template <bool isRequest>
  void Begin(const boost::beast::http::header<isRequest>& header, bool has_body,
             bool chunked_out, bool chunked_in) {
    const boost::beast::http::fields& fields = header;
    head_.clear();
    AppendStartLine(header);
    for (const auto& f : fields) {
      // Beast keeps each field as one "name: value\r\n" (its own writer
      // sends them so): copied in one piece when laid out so.
      const char* name = f.name_string().data();
      const size_t n = f.name_string().size();
      const char* value = f.value().data();
      if (value == name + n + 2 && value[f.value().size()] == '\r') {
        head_.append(name, n + 2 + f.value().size() + 2);
      } else {
        head_.append(name, n);
        head_.append(": ", 2);
        head_.append(value, f.value().size());
        head_.append("\r\n", 2);
      }
    }
    head_.append("\r\n", 2);
    bufs_.clear();
    bufs_.emplace_back(head_.data(), head_.size());
    header_pending_ = true;
    body_ = has_body;
    chunked_ = has_body && chunked_out;
    header_fields_.clear();
    if (chunked_ && chunked_in) {
      // Trailer fields arrive in the same field list: remember which
      // fields were the header's.
      for (const auto& f : fields) header_fields_.push_back(&f);
      std::sort(header_fields_.begin(), header_fields_.end());
    }
  }

  // Buffers for one write: the header if not yet written, then `n` bytes at
  // `data` (n may be 0), then the end of the body if `last` (with the
  // trailer fields now in `fields`). The buffers stay valid until the next
  // call, and `data` until the write completes.
  const std::vector<boost::asio::const_buffer>& Frame(
      const char* data, size_t n, bool last,
      const boost::beast::http::fields& fields);

 private:
  void AppendStartLine(
      const boost::beast::http::header<true>& h);  // "GET / HTTP/1.1"
  void AppendStartLine(
      const boost::beast::http::header<false>& h);  // "HTTP/1.1 200 OK"

  std::string head_;  // the header, written out
  std::vector<boost::asio::const_buffer> bufs_;
  std::vector<const void*> header_fields_;  // sorted
  std::string tail_;
  char size_line_[20];
  bool header_pending_ = false;
  bool body_ = false;
  bool chunked_ = false;
};

}  // namespace tidal::gateway
