#pragma once

// TestUpstream: a small HTTP/1.1 server (Boost.Beast) standing in for an app
// instance in gateway tests and benchmarks. Routes:
//   /            -> body = instance name
//   /echo-headers-> body = "name: value\n" per request header
//   /sleep?ms=N  -> instance name after N ms
//   /status?code=N
//   /bytes?n=N   -> N bytes of a fixed pattern, streamed
//   /upload      -> reads the body streaming, replies "<bytes> <checksum>"
//                   and echoes trailer fields X-T-* as X-Trailers: "n=v;..."
//   /chunked?n=N&chunk=C&trailers=1
//                -> N pattern bytes in chunks of C, written piece by piece,
//                   trailers X-Checksum and X-Chunks
//   /eof?n=N     -> N pattern bytes framed by closing the connection
//   /hold        -> replies when ReleaseHolds() is called
//   /first-then-hold
//                -> chunked: "first\n" at once, "last\n" and the end when
//                   ReleaseHolds() is called (an event stream)
// Every response carries "X-Instance: <name>". Thread-safe; runs its own
// threads; Stop() or the destructor ends them.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace tidal::gateway::testing {

// Checksum used by /upload and by clients checking /bytes.
uint64_t Checksum(uint64_t sum, const char* data, size_t n);
// Byte i of the /bytes and upload pattern.
inline char PatternByte(uint64_t i) {
  return static_cast<char>((i * 2654435761u) >> 11);
}

class TestUpstream {
 public:
  explicit TestUpstream(std::string name, int threads = 1, int port = 0);
  ~TestUpstream();
  int port() const;
  const std::string& name() const;
  void ReleaseHolds();
  void Stop();

  int64_t connections() const;
  int64_t requests() const;
  int64_t in_flight() const;
  int64_t max_in_flight() const;
  int64_t holds() const;  // requests waiting in /hold

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidal::gateway::testing
