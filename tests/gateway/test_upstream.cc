#include "test_upstream.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"

namespace tidal::gateway::testing {
namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// The integer query parameter `key` within [lo, hi]; `def` when it is
// missing, not a number or out of range (the gateway fuzzer sends anything).
int64_t QueryInt(beast::string_view target, const std::string& key, int64_t def,
                 int64_t lo = 0,
                 int64_t hi = std::numeric_limits<int64_t>::max()) {
  auto q = target.find('?');
  if (q == beast::string_view::npos) return def;
  std::string query(target.substr(q + 1));
  size_t pos = query.find(key + "=");
  if (pos == std::string::npos) return def;
  const std::string text = query.substr(pos + key.size() + 1);
  int64_t v = 0;
  if (!absl::SimpleAtoi(text.substr(0, text.find('&')), &v) || v < lo || v > hi)
    return def;
  return v;
}

}  // namespace

uint64_t Checksum(uint64_t sum, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i)
    sum = sum * 131 + static_cast<unsigned char>(data[i]);
  return sum;
}

struct TestUpstream::Impl {
  std::string name;
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  std::atomic<int64_t> connections{0}, requests{0}, in_flight{0},
      max_in_flight{0}, holds{0};
  std::mutex holds_mu;
  std::list<std::weak_ptr<asio::steady_timer>> hold_timers;
  bool stopped = false;

  void Accept();
};

namespace {

class UpSession : public std::enable_shared_from_this<UpSession> {
 public:
  UpSession(TestUpstream::Impl* up, tcp::socket s)
      : up_(up),
        s_(std::move(s)),
        timer_(std::make_shared<asio::steady_timer>(s_.get_executor())) {
    s_.set_option(tcp::no_delay(true));
  }
  void Read() {
    parser_.emplace();
    parser_->body_limit(boost::none);
    http::async_read_header(
        s_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->Close();
          self->counted_ = true;
          int64_t now = ++self->up_->in_flight;
          int64_t prev = self->up_->max_in_flight.load();
          while (now > prev &&
                 !self->up_->max_in_flight.compare_exchange_weak(prev, now)) {
          }
          ++self->up_->requests;
          self->body_bytes_ = 0;
          self->body_sum_ = 0;
          self->ReadBody();
        });
  }

 private:
  void ReadBody() {
    if (parser_->is_done()) return Handle();
    auto& b = parser_->get().body();
    b.data = scratch_;
    b.size = sizeof(scratch_);
    http::async_read_some(
        s_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec == http::error::need_buffer) ec = {};
          if (ec) {
            self->Finish();
            return self->Close();
          }
          size_t n = sizeof(self->scratch_) - self->parser_->get().body().size;
          self->body_bytes_ += n;
          self->body_sum_ = Checksum(self->body_sum_, self->scratch_, n);
          self->ReadBody();
        });
  }

  void Handle() {
    auto& req = parser_->get();
    beast::string_view target = req.target();
    beast::string_view path = target.substr(0, target.find('?'));
    keep_alive_ = req.keep_alive();
    head_request_ = req.method() == http::verb::head;
    if (path == "/sleep") {
      timer_->expires_after(
          std::chrono::milliseconds(QueryInt(target, "ms", 0, 0, 60000)));
      timer_->async_wait([self = shared_from_this()](beast::error_code) {
        self->Reply(200, self->up_->name);
      });
      return;
    }
    if (path == "/hold") {
      {
        std::lock_guard<std::mutex> lock(up_->holds_mu);
        if (up_->stopped) return Reply(503, "stopped");
        up_->hold_timers.push_back(timer_);
      }
      ++up_->holds;
      timer_->expires_at(asio::steady_timer::time_point::max());
      timer_->async_wait([self = shared_from_this()](beast::error_code) {
        --self->up_->holds;
        self->Reply(200, self->up_->name);
      });
      return;
    }
    if (path == "/first-then-hold") return FirstThenHold();
    if (path == "/status")
      return Reply(static_cast<int>(QueryInt(target, "code", 200, 100, 599)),
                   "status\n");
    if (path == "/upload") {
      // Trailer fields of a chunked body are appended to the header's by the
      // parser: X-T-* ones are echoed in X-Trailers.
      std::string trailers;
      for (auto& f : req) {
        std::string name(f.name_string());
        if (name.size() > 4 && beast::iequals(name.substr(0, 4), "x-t-"))
          trailers += name + "=" + std::string(f.value()) + ";";
      }
      return Reply(
          200, std::to_string(body_bytes_) + " " + std::to_string(body_sum_),
          false, trailers);
    }
    if (path == "/chunked")
      return StreamChunked(
          static_cast<uint64_t>(QueryInt(target, "n", 0)),
          static_cast<size_t>(QueryInt(target, "chunk", 1000, 1, 1 << 20)),
          QueryInt(target, "trailers", 0) != 0);
    if (path == "/eof")
      return StreamUntilClose(static_cast<uint64_t>(QueryInt(target, "n", 0)));
    if (path == "/echo-headers") {
      std::string out;
      for (auto& f : req)
        out +=
            std::string(f.name_string()) + ": " + std::string(f.value()) + "\n";
      return Reply(200, out, true);
    }
    if (path == "/bytes")
      return StreamBytes(static_cast<uint64_t>(QueryInt(target, "n", 0)));
    Reply(200, up_->name);
  }

  void Reply(int status, std::string body, bool hop_headers = false,
             const std::string& trailers = "") {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(status), 11);
    res->set("X-Instance", up_->name);
    if (!trailers.empty()) res->set("X-Trailers", trailers);
    res->set(http::field::content_type, "text/plain");
    res->body() = std::move(body);
    res->keep_alive(keep_alive_);
    if (hop_headers) {
      res->set(http::field::connection, keep_alive_
                                            ? "keep-alive, X-Upstream-Hop"
                                            : "close, X-Upstream-Hop");
      res->set("X-Upstream-Hop", "secret");
      res->set(http::field::keep_alive, "timeout=5");
    }
    res->prepare_payload();
    // Off the in-flight count before the response can reach the gateway: the
    // gateway may hand this instance its next request as soon as it reads it.
    Finish();
    http::async_write(s_, *res,
                      [self = shared_from_this(), res](
                          beast::error_code ec, size_t) { self->Done(ec); });
  }

  void StreamBytes(uint64_t n) {
    res_.emplace(http::status::ok, 11);
    res_->set("X-Instance", up_->name);
    res_->content_length(n);
    res_->keep_alive(keep_alive_);
    sr_.emplace(*res_);
    remaining_ = n;
    offset_ = 0;
    WriteChunk();
  }

  void WriteChunk() {
    size_t n =
        static_cast<size_t>(std::min<uint64_t>(remaining_, sizeof(scratch_)));
    for (size_t i = 0; i < n; ++i) scratch_[i] = PatternByte(offset_ + i);
    offset_ += n;
    remaining_ -= n;
    auto& b = res_->body();
    b.data = n ? scratch_ : nullptr;
    b.size = n;
    b.more = remaining_ > 0;
    if (!b.more) Finish();
    http::async_write(
        s_, *sr_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec == http::error::need_buffer) ec = {};
          if (ec) return self->Done(ec);
          if (self->sr_->is_done()) {
            self->sr_.reset();
            self->res_.reset();
            return self->Done(ec);
          }
          self->WriteChunk();
        });
  }

  // A chunked response written raw, each chunk's size line, data and CRLF in
  // separate writes (the gateway sees them in pieces), then the last chunk
  // with trailer fields X-Checksum and X-Chunks when `trailers`.
  void StreamChunked(uint64_t n, size_t chunk, bool trailers) {
    pieces_.clear();
    std::string head = "HTTP/1.1 200 OK\r\nX-Instance: " + up_->name +
                       "\r\nTransfer-Encoding: chunked\r\n";
    if (trailers) head += "Trailer: X-Checksum, X-Chunks\r\n";
    if (!keep_alive_) head += "Connection: close\r\n";
    pieces_.push_back(head + "\r\n");
    if (head_request_) n = 0, trailers = false;
    uint64_t sum = 0, offset = 0;
    int chunks = 0;
    chunk = std::max<size_t>(chunk, 1);
    while (offset < n) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(chunk, n - offset));
      std::string data(len, '\0');
      for (size_t i = 0; i < len; ++i) data[i] = PatternByte(offset + i);
      sum = Checksum(sum, data.data(), len);
      offset += len;
      char line[32];
      snprintf(line, sizeof(line), "%zx%s\r\n", len,
               chunks % 3 == 1 ? ";ext=1" : "");
      pieces_.push_back(line);
      pieces_.push_back(std::move(data));
      pieces_.push_back("\r\n");
      ++chunks;
    }
    std::string last = head_request_ ? "" : "0\r\n";
    if (trailers) {
      last += "X-Checksum: " + std::to_string(sum) +
              "\r\nX-Chunks: " + std::to_string(chunks) + "\r\n";
    }
    if (!head_request_) pieces_.push_back(last + "\r\n");
    next_piece_ = 0;
    WritePieces(false);
  }

  // A chunked response whose first chunk ("first\n") goes out at once and
  // whose last ("last\n") waits for ReleaseHolds(): an event stream.
  void FirstThenHold() {
    const std::string first =
        "HTTP/1.1 200 OK\r\nX-Instance: " + up_->name +
        "\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n";
    auto piece = std::make_shared<std::string>(first);
    asio::async_write(
        s_, asio::buffer(*piece),
        [self = shared_from_this(), piece](beast::error_code ec, size_t) {
          if (ec) return self->Done(ec);
          {
            std::lock_guard<std::mutex> lock(self->up_->holds_mu);
            self->up_->hold_timers.push_back(self->timer_);
          }
          ++self->up_->holds;
          self->timer_->expires_at(asio::steady_timer::time_point::max());
          self->timer_->async_wait([self](beast::error_code) {
            --self->up_->holds;
            self->pieces_ = {"5\r\nlast\n\r\n0\r\n\r\n"};
            self->next_piece_ = 0;
            self->WritePieces(false);
          });
        });
  }

  // A response framed by closing the connection (no Content-Length, not
  // chunked).
  void StreamUntilClose(uint64_t n) {
    pieces_.clear();
    pieces_.push_back("HTTP/1.1 200 OK\r\nX-Instance: " + up_->name +
                      "\r\nConnection: close\r\n\r\n");
    for (uint64_t offset = 0; offset < n; offset += 10000) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(10000, n - offset));
      std::string data(len, '\0');
      for (size_t i = 0; i < len; ++i) data[i] = PatternByte(offset + i);
      pieces_.push_back(std::move(data));
    }
    next_piece_ = 0;
    WritePieces(true);
  }

  void WritePieces(bool close_after) {
    if (next_piece_ == pieces_.size()) {
      pieces_.clear();
      if (close_after) {
        Finish();
        return Close();
      }
      return Done({});
    }
    if (next_piece_ + 1 == pieces_.size()) Finish();
    const std::string& piece = pieces_[next_piece_++];
    asio::async_write(
        s_, asio::buffer(piece),
        [self = shared_from_this(), close_after](beast::error_code ec, size_t) {
          if (ec) return self->Done(ec);
          self->WritePieces(close_after);
        });
  }

  // Ends this request's share of in_flight, once.
  void Finish() {
    if (counted_) --up_->in_flight;
    counted_ = false;
  }

  void Done(beast::error_code ec) {
    Finish();
    if (ec || !keep_alive_) return Close();
    Read();
  }

  void Close() {
    beast::error_code ignored;
    s_.shutdown(tcp::socket::shutdown_send, ignored);
    s_.close(ignored);
  }

  TestUpstream::Impl* up_;
  tcp::socket s_;
  std::shared_ptr<asio::steady_timer> timer_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::buffer_body>> parser_;
  std::optional<http::response<http::buffer_body>> res_;
  std::optional<http::serializer<false, http::buffer_body>> sr_;
  char scratch_[64 * 1024];
  std::vector<std::string> pieces_;
  size_t next_piece_ = 0;
  uint64_t body_bytes_ = 0, body_sum_ = 0, remaining_ = 0, offset_ = 0;
  bool keep_alive_ = true;
  bool head_request_ = false;
  bool counted_ = false;  // this request is in in_flight
};

}  // namespace

void TestUpstream::Impl::Accept() {
  acceptor.async_accept(ioc, [this](beast::error_code ec, tcp::socket s) {
    if (ec) return;
    ++connections;
    std::make_shared<UpSession>(this, std::move(s))->Read();
    Accept();
  });
}

TestUpstream::TestUpstream(std::string name, int threads, int port)
    : impl_(std::make_unique<Impl>()) {
  impl_->name = std::move(name);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"),
                   static_cast<uint16_t>(port));
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  impl_->Accept();
  for (int i = 0; i < threads; ++i)
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

TestUpstream::~TestUpstream() { Stop(); }

void TestUpstream::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->holds_mu);
    impl_->stopped = true;
  }
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

int TestUpstream::port() const {
  return impl_->acceptor.local_endpoint().port();
}
const std::string& TestUpstream::name() const { return impl_->name; }

void TestUpstream::ReleaseHolds() {
  std::lock_guard<std::mutex> lock(impl_->holds_mu);
  for (auto& w : impl_->hold_timers) {
    if (auto t = w.lock()) asio::post(impl_->ioc, [t] { t->cancel(); });
  }
  impl_->hold_timers.clear();
}

int64_t TestUpstream::connections() const { return impl_->connections; }
int64_t TestUpstream::requests() const { return impl_->requests; }
int64_t TestUpstream::in_flight() const { return impl_->in_flight; }
int64_t TestUpstream::max_in_flight() const { return impl_->max_in_flight; }
int64_t TestUpstream::holds() const { return impl_->holds; }

}  // namespace tidal::gateway::testing
