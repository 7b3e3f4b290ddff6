#include "daemon/admin_server.h"

#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/units.h"

namespace tidal {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class AdminServer::Impl {
 public:
  Impl(std::function<std::string()> metrics,
       std::function<absl::Status()> ready,
       std::function<std::string()> ready_detail)
      : metrics_(std::move(metrics)),
        ready_(std::move(ready)),
        ready_detail_(std::move(ready_detail)),
        acceptor_(io_) {}

  absl::Status Start(const std::string& address) {
    std::vector<std::string> hp =
        absl::StrSplit(address, absl::MaxSplits(':', 1));
    int port = 0;
    if (hp.size() != 2 || !absl::SimpleAtoi(hp[1], &port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad admin address \"", address, "\""));
    }
    beast::error_code ec;
    auto addr = asio::ip::make_address(hp[0], ec);
    if (ec)
      return absl::InvalidArgumentError(
          absl::StrCat("bad admin host: ", ec.message()));
    tcp::endpoint ep(addr, static_cast<uint16_t>(port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(64, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", address,
                                                 " (admin): ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return absl::OkStatus();
  }

  void Stop() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }

 private:
  void Accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) {
        Serve(std::make_shared<tcp::socket>(std::move(socket)));
        return Accept();
      }
      // Out of descriptors (EMFILE, ENFILE) or memory: the connection waits
      // in the backlog; retrying at once would spin. Pause, as nginx does.
      auto now = std::chrono::steady_clock::now();
      if (now - last_error_log_ >= std::chrono::seconds(10)) {
        GetLogger("admin")->error(
            "admin: accepting connections failed: {}; retrying", ec.message());
        last_error_log_ = now;
      }
      if (ec == asio::error::no_descriptors || ec.value() == ENFILE ||
          ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
        backoff_.expires_after(std::chrono::milliseconds(50));
        backoff_.async_wait([this](beast::error_code ec) {
          if (!ec) Accept();
        });
        return;
      }
      Accept();
    });
  }

  void Serve(std::shared_ptr<tcp::socket> socket) {
    auto buffer = std::make_shared<beast::flat_buffer>();
    auto req = std::make_shared<http::request<http::string_body>>();
    http::async_read(
        *socket, *buffer, *req,
        [this, socket, buffer, req](beast::error_code ec, size_t) {
          if (ec) return;
          if (takes_ && takes_(std::string(req->target()))) {
            std::ostringstream os;
            os << *req;
            std::string consumed = os.str();
            consumed += beast::buffers_to_string(buffer->data());
            beast::error_code rec;
            int fd = socket->release(rec);
            if (!rec) adopt_(fd, std::move(consumed));
            return;
          }
          auto res = std::make_shared<http::response<http::string_body>>();
          Handle(*req, res.get());
          http::async_write(
              *socket, *res,
              [this, socket, buffer, req, res](beast::error_code ec, size_t) {
                if (ec || res->need_eof()) return;
                req->clear();
                req->body().clear();
                Serve(socket);
              });
        });
  }

  void Handle(const http::request<http::string_body>& req,
              http::response<http::string_body>* res) {
    res->version(req.version());
    res->keep_alive(req.keep_alive());
    res->set(http::field::server, "tidald");
    std::string target(req.target());
    if (target == "/metrics") {
      res->result(http::status::ok);
      res->set(http::field::content_type, "text/plain; version=0.0.4");
      res->body() = metrics_();
    } else if (target == "/healthz") {
      res->result(http::status::ok);
      res->body() = "ok\n";
    } else if (target == "/readyz" ||
               (target == "/readyz/gateway" && gateway_ready_)) {
      const bool whole = target == "/readyz";
      absl::Status ready = whole ? ready_() : gateway_ready_();
      res->result(ready.ok() ? http::status::ok
                             : http::status::service_unavailable);
      res->body() = ready.ok()
                        ? "ready\n"
                        : absl::StrCat("not ready: ", ready.message(), "\n");
      if (whole && ready_detail_) res->body() += ready_detail_();
    } else {
      res->result(http::status::not_found);
      res->body() =
          "not found: try /metrics, /healthz, /readyz or /readyz/gateway\n";
    }
    res->prepare_payload();
  }

  std::function<std::string()> metrics_;
  std::function<absl::Status()> ready_;
  std::function<std::string()> ready_detail_;

 public:
  std::function<absl::Status()> gateway_ready_;  // set before Start
  std::function<bool(const std::string&)> takes_;
  std::function<void(int, std::string)> adopt_;

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer backoff_{io_};
  std::chrono::steady_clock::time_point last_error_log_{};
  std::thread thread_;
  int port_ = 0;
};

AdminServer::AdminServer(std::function<std::string()> metrics,
                         std::function<absl::Status()> ready,
                         std::function<std::string()> ready_detail)
    : impl_(std::make_unique<Impl>(std::move(metrics), std::move(ready),
                                   std::move(ready_detail))) {}
AdminServer::~AdminServer() { Stop(); }
void AdminServer::set_handoff(
    std::function<bool(const std::string& target)> takes,
    std::function<void(int fd, std::string consumed)> adopt) {
  impl_->takes_ = std::move(takes);
  impl_->adopt_ = std::move(adopt);
}
void AdminServer::set_gateway_ready(std::function<absl::Status()> ready) {
  impl_->gateway_ready_ = std::move(ready);
}
absl::Status AdminServer::Start(const std::string& address) {
  return impl_->Start(address);
}
void AdminServer::Stop() { impl_->Stop(); }
int AdminServer::port() const { return impl_->port(); }

std::string ProcessMetricsText() {
  std::string out;
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  auto rp = line.rfind(')');
  if (rp != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(line.substr(rp + 2), ' ');
    // Fields after ")" start at field 3 (state): utime=14, stime=15,
    // threads=20, rss=24.
    auto field = [&](int n) -> double {
      double v = 0;
      if (n - 3 < static_cast<int>(f.size()))
        (void)absl::SimpleAtod(f[n - 3], &v);
      return v;
    };
    double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    absl::StrAppend(
        &out, "# HELP process_cpu_seconds_total User and system CPU time.\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "process_cpu_seconds_total ",
        FormatDouble((field(14) + field(15)) / ticks), "\n",
        "# HELP process_resident_memory_bytes Resident memory.\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "process_resident_memory_bytes ",
        static_cast<int64_t>(field(24) * page), "\n",
        "# HELP process_threads OS threads of tidald.\n",
        "# TYPE process_threads gauge\n", "process_threads ", field(20), "\n");
  }
  std::error_code ec;
  int fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  absl::StrAppend(&out,
                  "# HELP process_open_fds Open file descriptors of tidald.\n"
                  "# TYPE process_open_fds gauge\nprocess_open_fds ",
                  fds, "\n");
  return out;
}

std::string AppMetricsText(const std::vector<tidal::v1::App>& apps) {
  struct Series {
    const char* name;
    const char* help;
    std::function<double(const tidal::v1::App&)> value;
  };
  const std::vector<Series> series = {
      {"tidal_app_desired_replicas",
       "Instances the app should have (the scaler's decision, or its fixed "
       "count)",
       [](const tidal::v1::App& a) { return a.status().desired_replicas(); }},
      {"tidal_app_ready_replicas", "Ready instances of the app",
       [](const tidal::v1::App& a) { return a.status().ready_replicas(); }},
      {"tidal_app_scaler_panic",
       "1 while the app's scaler is in panic mode (a burst over its panic "
       "threshold)",
       [](const tidal::v1::App& a) {
         return a.status().scaling().panic() ? 1 : 0;
       }},
  };
  auto labels = [](const tidal::v1::App& a) {
    return absl::StrCat("namespace=\"", a.metadata().namespace_(), "\",app=\"",
                        a.metadata().name(), "\"");
  };
  std::string out;
  for (const Series& s : series) {
    absl::StrAppend(&out, "# HELP ", s.name, " ", s.help, "\n# TYPE ", s.name,
                    " gauge\n");
    for (const auto& a : apps)
      absl::StrAppend(&out, s.name, "{", labels(a), "} ", s.value(a), "\n");
  }
  absl::StrAppend(&out,
                  "# HELP tidal_app_rollbacks_total Automatic rollbacks of "
                  "the app's releases by reason (status.rollout.rollbacks)\n"
                  "# TYPE tidal_app_rollbacks_total counter\n");
  for (const auto& a : apps) {
    // In reason order (a proto map has none).
    std::map<std::string, int64_t> by_reason(
        a.status().rollout().rollbacks().begin(),
        a.status().rollout().rollbacks().end());
    for (const auto& [reason, n] : by_reason) {
      absl::StrAppend(&out, "tidal_app_rollbacks_total{", labels(a),
                      ",reason=\"", reason, "\"} ", n, "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP tidal_app_rollout_phase The phase of the app's "
                  "release: 1 for the current one, 0 for the others\n"
                  "# TYPE tidal_app_rollout_phase gauge\n");
  for (const auto& a : apps) {
    for (const char* phase :
         {"Progressing", "Paused", "Succeeded", "RolledBack", "Failed"}) {
      absl::StrAppend(&out, "tidal_app_rollout_phase{", labels(a), ",phase=\"",
                      phase, "\"} ",
                      a.status().rollout().phase() == phase ? 1 : 0, "\n");
    }
  }
  return out;
}

}  // namespace tidal
