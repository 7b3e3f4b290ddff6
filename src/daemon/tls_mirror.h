#pragma once

// TlsPairMirror: the API's certificate and key as gRPC reads them, copies of
// --tls-cert and --tls-key in a private directory (<data dir>/api-tls/),
// replaced only by a pair whose key matches its certificate.
//
// gRPC's file watcher re-reads its files every interval and, given a key and
// a certificate that do not match (a rotation with one file written, not
// yet the other), stops completing handshakes; tidald's stuck-listener
// watchdog then restarted the API, which refused the pair: the API was down
// until both files were written. Through the mirror gRPC only ever sees
// matching pairs, so the previous certificate is served meanwhile.
//
// Thread-safe; the watching thread runs between Start() and Stop().

#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tidal {

class TlsPairMirror {
 public:
  TlsPairMirror(std::string cert_file, std::string key_file, std::string dir,
                absl::Duration period);
  ~TlsPairMirror();
  TlsPairMirror(const TlsPairMirror&) = delete;
  TlsPairMirror& operator=(const TlsPairMirror&) = delete;

  // Copies the pair (InvalidArgument naming --tls-cert/--tls-key when it
  // cannot be read or does not match), then checks it every period.
  absl::Status Start();
  void Stop();

  // Reads the source files once: true when a new matching pair was copied;
  // a pair that does not match is logged (once per content) and left.
  bool SyncOnce();

  std::string cert_path() const { return dir_ + "/tls.crt"; }
  std::string key_path() const { return dir_ + "/tls.key"; }

 private:
  void Loop();

  const std::string cert_file_;
  const std::string key_file_;
  const std::string dir_;
  const absl::Duration period_;

  absl::Mutex mu_;
  std::string copied_ ABSL_GUARDED_BY(mu_);   // cert + key last copied
  std::string refused_ ABSL_GUARDED_BY(mu_);  // cert + key last refused
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tidal
