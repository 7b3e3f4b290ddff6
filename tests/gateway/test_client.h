#pragma once

// Blocking HTTP/1.1 client for gateway tests (Boost.Beast over loopback).

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tidal::gateway::testing {

struct Reply {
  int status = 0;  // 0: transport error
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string error;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// One keep-alive connection.
class Client {
 public:
  explicit Client(int port) : socket_(ioc_) {
    boost::system::error_code ec;
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"),
                     static_cast<uint16_t>(port)},
                    ec);
    connected_ = !ec;
  }
  bool connected() const { return connected_; }

  Reply Send(
      const std::string& host, const std::string& target,
      const std::vector<std::pair<std::string, std::string>>& headers = {},
      boost::beast::http::verb method = boost::beast::http::verb::get,
      std::string body = "") {
    namespace http = boost::beast::http;
    Reply r;
    http::request<http::string_body> req(method, target, 11);
    req.set(http::field::host, host);
    for (auto& [k, v] : headers) req.set(k, v);
    req.body() = std::move(body);
    if (!req.body().empty() || method == http::verb::post ||
        method == http::verb::put)
      req.prepare_payload();
    boost::system::error_code ec;
    http::write(socket_, req, ec);
    if (ec) {
      r.error = ec.message();
      return r;
    }
    http::response_parser<http::string_body> p;
    p.body_limit(boost::none);
    if (method == http::verb::head) p.skip(true);
    http::read(socket_, buf_, p, ec);
    if (ec) {
      r.error = ec.message();
      return r;
    }
    auto& res = p.get();
    r.status = res.result_int();
    r.body = res.body();
    for (auto& f : res) {
      std::string name(f.name_string());
      for (auto& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = std::string(f.value());
    }
    return r;
  }

  boost::asio::ip::tcp::socket& socket() { return socket_; }
  boost::beast::flat_buffer& buffer() { return buf_; }

 private:
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buf_;
  bool connected_ = false;
};

inline Reply Fetch(
    int port, const std::string& host, const std::string& target,
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    boost::beast::http::verb method = boost::beast::http::verb::get,
    std::string body = "") {
  Client c(port);
  if (!c.connected()) {
    Reply r;
    r.error = "connect failed";
    return r;
  }
  return c.Send(host, target, headers, method, std::move(body));
}

}  // namespace tidal::gateway::testing
