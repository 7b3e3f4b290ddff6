#pragma once

// StatuslessH2Server: an HTTP/2 (h2c) server on 127.0.0.1 that answers every
// gRPC call trailers-only (`:status 200`, `content-type: application/grpc`,
// end of stream) with no grpc-status, as an etcd member being stopped was
// seen to. gRPC 1.51's retry filter aborts the process on such trailers
// (grpc/grpc#34683); Tidal's channels run without it, and tests point a
// client here to show the call fails instead. Frames are written by hand:
// only the preface, SETTINGS (and its ack), PING acks and each new stream's
// HEADERS are read; the rest is ignored.

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace tidal::testing {

class StatuslessH2Server {
 public:
  StatuslessH2Server();  // listening once constructed; port() 0 on failure
  ~StatuslessH2Server();

  StatuslessH2Server(const StatuslessH2Server&) = delete;
  StatuslessH2Server& operator=(const StatuslessH2Server&) = delete;

  int port() const { return port_; }
  // Calls answered so far.
  int answered() const { return answered_.load(); }

 private:
  void Serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> answered_{0};
  std::thread acceptor_;
  std::vector<std::thread> connections_;  // joined at destruction
  std::vector<int> fds_;                  // shut down at destruction
};

}  // namespace tidal::testing
