// An HTTP/2 client's stream relayed to an instance that speaks HTTP/1.1: one
// exchange on a pooled keep-alive connection (or a new one), the request
// body framed by its content-length or chunked, the response relayed as it
// comes, held back while the client's stream window is full.

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway/clocks.h"
#include "gateway/gateway_impl.h"
#include "gateway/h2_stream.h"
#include "gateway/request_policy.h"

namespace tidal::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr size_t kChunk = 64 * 1024;
// Response bytes held for a client that does not take them yet: then the
// instance's connection is not read (TCP pushes back on it).
constexpr size_t kMaxHeld = 256 * 1024;

// HTTP/1.1 fields that are about one connection and must not cross into
// HTTP/2 (RFC 9113 section 8.2.2).
bool ConnectionSpecific(absl::string_view name) {
  for (const char* n : {"connection", "keep-alive", "proxy-connection",
                        "transfer-encoding", "upgrade", "te", "trailer"}) {
    if (absl::EqualsIgnoreCase(name, n)) return true;
  }
  return false;
}

class Http1Exchange : public StreamUpstream,
                      public std::enable_shared_from_this<Http1Exchange> {
 public:
  Http1Exchange(Worker* w, H2Stream* s) : w_(w), s_(s), sock_(w->ioc) {}
  ~Http1Exchange() override {
    if (reserved_) w_->gw->budget.Unreserve(1);
  }

  void Start() {
    if (!w_->gw->budget.Reserve(1)) return Failed(/*connect=*/false);
    reserved_ = true;
    if (auto pooled = w_->pool.Take(s_->lease->uid)) {
      sock_ = std::move(*pooled);
      reused_ = true;
      return Begin();
    }
    Connect();
  }

  void Resume(H2Stream*) override { WriteMore(); }

  void Consume(H2Stream*, size_t) override {
    if (paused_ && s_ != nullptr && s_->res.size() < kMaxHeld) {
      paused_ = false;
      ReadBody();
    }
  }

  void Detach(H2Stream* s, bool) override {
    if (s != s_) return;
    auto self = shared_from_this();  // s->up may hold the last reference
    s_ = nullptr;
    s->up = nullptr;  // may release this: the handlers hold it
    if (!done_) Close();
  }

 private:
  H2Conn* Conn() const {
    if (s_ == nullptr) return nullptr;
    auto c = s_->conn.lock();
    return c.get();  // the stream's connection outlives its upstream calls
  }

  void Connect() {
    reused_ = false;
    beast::error_code ec;
    auto address = asio::ip::make_address(s_->lease->host, ec);
    if (ec) return Failed(true);
    sock_ = tcp::socket(w_->ioc);
    sock_.async_connect(
        tcp::endpoint(address, static_cast<uint16_t>(s_->lease->port)),
        [self = shared_from_this()](beast::error_code ec) {
          if (self->s_ == nullptr) return;
          if (ec) return self->Failed(true);
          self->sock_.set_option(tcp::no_delay(true), ec);
          self->Begin();
        });
  }

  // Writes the request header (and what there is of the body) and reads the
  // response at the same time (an instance may answer early).
  void Begin() {
    H2Stream& s = *s_;
    begun_ = true;
    buf_.clear();
    out_.clear();
    absl::StrAppend(&out_, s.method, " ", s.path, " HTTP/1.1\r\nHost: ",
                    s.authority.empty() ? s.host_field : s.authority, "\r\n");
    bool has_length = false;
    for (const auto& [n, v] : s.headers) {
      if (n == "host" || ConnectionSpecific(n)) continue;
      if (n == "content-length") has_length = true;
      absl::StrAppend(&out_, n, ": ", v, "\r\n");
    }
    chunked_ = false;
    if (!has_length) {
      if (s.req_ended && s.req.empty()) {
        if (s.method == "POST" || s.method == "PUT" || s.method == "PATCH") {
          out_ += "Content-Length: 0\r\n";
        }
      } else {
        chunked_ = true;
        out_ += "Transfer-Encoding: chunked\r\n";
      }
    }
    out_ += "\r\n";
    req_done_ = false;
    writing_ = false;
    WriteMore(/*header=*/true);
    ReadHeader();
  }

  void WriteMore(bool header = false) {
    if (s_ == nullptr || !begun_ || writing_ || req_done_ || done_) return;
    if (!header) out_.clear();
    H2Stream& s = *s_;
    size_t n = std::min(s.req.size(), kChunk);
    if (n > 0) {
      if (chunked_) absl::StrAppend(&out_, absl::Hex(n), "\r\n");
      size_t at = out_.size();
      out_.resize(at + n);
      s.req.Take(reinterpret_cast<uint8_t*>(&out_[at]), n);
      body_sent_ += n;
      if (chunked_) out_ += "\r\n";
      if (auto* c = Conn()) c->Consume(&s, n);
    }
    if (s.req.empty() && s.req_ended) {
      if (chunked_) out_ += "0\r\n\r\n";
      req_done_ = true;
    }
    if (out_.empty()) return;
    writing_ = true;
    asio::async_write(
        sock_, asio::buffer(out_),
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->writing_ = false;
          if (self->s_ == nullptr || self->done_) return;
          if (ec) {
            // The instance closed early: a response it sent
            // first still counts; the read tells.
            self->req_done_ = true;
            self->write_failed_ = true;
            return;
          }
          self->WriteMore();
        });
  }

  void ReadHeader() {
    parser_.emplace();
    // --gateway-max-response-body, as over HTTP/1.1: a longer Content-Length
    // is a 502, a longer chunked body is cut (the stream reset).
    const uint64_t limit = w_->gw->opts.max_response_body_bytes;
    if (limit > 0) {
      parser_->body_limit(limit);
    } else {
      parser_->body_limit(boost::none);
    }
    parser_->header_limit(
        static_cast<std::uint32_t>(w_->gw->opts.max_header_bytes));
    if (s_->method == "HEAD") parser_->skip(true);
    http::async_read_header(
        sock_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->OnHeader(ec);
        });
  }

  void OnHeader(beast::error_code ec) {
    if (s_ == nullptr) return;
    if (ec == http::error::body_limit) return Failed(false);  // 502
    if (ec) {
      // Nothing of a response: a pooled connection the instance had closed
      // is retried on a fresh one when that is safe.
      if (reused_ && body_sent_ == 0 &&
          Idempotent(http::string_to_verb(s_->method))) {
        Close();
        return Connect();
      }
      return Failed(!reused_ && !got_bytes_);
    }
    got_bytes_ = true;
    auto& res = parser_->get();
    const int status = res.result_int();
    if (status >= 100 && status < 200) return ReadHeader();  // interim
    H2Stream& s = *s_;
    s.status = status;
    s.res_headers.clear();
    s.res_headers.emplace_back(":status", absl::StrCat(status));
    std::vector<std::string> listed;  // fields named by Connection
    for (absl::string_view t :
         absl::StrSplit(absl::string_view(res[http::field::connection].data(),
                                          res[http::field::connection].size()),
                        ',')) {
      t = absl::StripAsciiWhitespace(t);
      if (!t.empty()) listed.push_back(absl::AsciiStrToLower(t));
    }
    for (const auto& f : res) {
      std::string name = absl::AsciiStrToLower(
          absl::string_view(f.name_string().data(), f.name_string().size()));
      if (ConnectionSpecific(name)) continue;
      if (std::find(listed.begin(), listed.end(), name) != listed.end()) {
        continue;
      }
      s.res_headers.emplace_back(
          std::move(name), std::string(f.value().data(), f.value().size()));
    }
    s.res_headers_done = true;
    keep_alive_ = res.keep_alive();
    const bool end = parser_->is_done();
    if (end) s.res_ended = true;
    if (auto* c = Conn()) c->OnResponseHeaders(&s, end);
    if (end) return Finish();
    ReadBody();
  }

  void ReadBody() {
    if (s_ == nullptr || done_) return;
    if (s_->res.size() >= kMaxHeld) {
      paused_ = true;
      return;
    }
    auto& body = parser_->get().body();
    body.data = body_;
    body.size = sizeof(body_);
    // What has come, at once (an event stream's event, a chunk): a whole
    // read would wait until the buffer is full or the response ends.
    http::async_read_some(
        sock_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->OnBody(ec);
        });
  }

  void OnBody(beast::error_code ec) {
    if (s_ == nullptr) return;
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return Failed(false);
    H2Stream& s = *s_;
    size_t n = sizeof(body_) - parser_->get().body().size;
    if (n > 0) s.res.Append(reinterpret_cast<const uint8_t*>(body_), n);
    if (parser_->is_done()) s.res_ended = true;
    if (auto* c = Conn()) c->OnResponseData(&s);
    if (s.res_ended) return Finish();
    ReadBody();
  }

  // The response is complete: the connection goes back to the pool when
  // the request was sent whole and both sides keep it.
  void Finish() {
    done_ = true;
    if (keep_alive_ && req_done_ && !writing_ && !write_failed_ &&
        buf_.size() == 0 && s_ != nullptr &&
        w_->pool.Put(s_->lease, sock_,
                     w_->gw->opts.max_idle_upstream_per_instance)) {
      return;
    }
    Close();
  }

  // `connect`: the instance could not be reached (nothing was sent: the
  // stream may go to another instance).
  void Failed(bool connect) {
    done_ = true;
    Close();
    H2Stream* s = s_;
    if (s == nullptr) return;
    auto c = s->conn.lock();
    if (!c) return;
    if (connect) {
      s_ = nullptr;
      return c->OnUpstreamConnectFailed(s->shared_from_this());
    }
    s_ = nullptr;
    s->up = nullptr;
    c->OnUpstreamClosed(s, 2 /* INTERNAL_ERROR */);
  }

  void Close() {
    beast::error_code ignored;
    sock_.close(ignored);
  }

  Worker* const w_;
  H2Stream* s_;  // null once detached
  tcp::socket sock_;
  bool reserved_ = false;
  bool begun_ = false;  // connected: the request is being written
  bool reused_ = false;
  bool chunked_ = false;
  bool writing_ = false;
  bool write_failed_ = false;
  bool req_done_ = false;
  bool got_bytes_ = false;
  bool keep_alive_ = false;
  bool paused_ = false;
  bool done_ = false;
  size_t body_sent_ = 0;
  std::string out_;
  beast::flat_buffer buf_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  char body_[16 * 1024];
};

}  // namespace

std::shared_ptr<StreamUpstream> StartHttp1Exchange(
    Worker* w, const std::shared_ptr<H2Stream>& s) {
  auto x = std::make_shared<Http1Exchange>(w, s.get());
  // Start may fail at once and hand the stream back (s->up is then reset):
  // the caller's assignment comes first.
  s->up = x;
  x->Start();
  return s->up;
}

}  // namespace tidal::gateway
