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
#include <cstddef>
#include <string>
#include <vector>

namespace tidal::gateway {

class BodyOut {
 public:
  // Starts a message: `sr` (a split serializer, kept alive by the caller
  // until the first write completes) gives the header; `fields` are the
  // message's fields as parsed so far. `has_body` is false when the message
  // ends with its header (HEAD, 204, 304, Content-Length: 0); `chunked_out`:
  // the body goes out chunked; `chunked_in`: it came in chunked (trailer
  // fields may be appended to `fields` while it is read).
  template <class Serializer>
  void Begin(Serializer& sr, const boost::beast::http::fields& fields,
             bool has_body, bool chunked_out, bool chunked_in) {
    bufs_.clear();
    sr.split(true);
    boost::beast::error_code ec;
    sr.next(ec, [&](boost::beast::error_code&, const auto& buffers) {
      for (auto b : boost::beast::buffers_range_ref(buffers))
        bufs_.push_back(b);
    });
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
  std::vector<boost::asio::const_buffer> bufs_;
  std::vector<const void*> header_fields_;  // sorted
  std::string tail_;
  char size_line_[20];
  bool header_pending_ = false;
  bool body_ = false;
  bool chunked_ = false;
};

}  // namespace tidal::gateway
