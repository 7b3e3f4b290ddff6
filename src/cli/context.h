#pragma once

// Shared state of one tidalctl invocation: global flags, the resolved server
// address, the gRPC stub, output streams and the exit code. Every command
// group registers its subcommands with a function taking (CLI::App&,
// Context&) and reports through Context. Not thread-safe (one per process).

#include <grpcpp/grpcpp.h>

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cli/config_file.h"
#include "tidal/v1/api.grpc.pb.h"

namespace tidal::cli {

// Exit codes (docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // the operation failed, or diff found differences
  kExitUsage = 2,    // bad flags or arguments, unreadable files, invalid specs
  kExitUnreachable = 3,  // tidald cannot be reached
  kExitTimeout = 4,      // tidald did not answer within --timeout
  kExitStoreFull = 5,    // tidald's data directory (its store) is full
};

constexpr const char* kDefaultServer = "127.0.0.1:7070";

// Where the server address comes from, highest first: --server, the
// TIDAL_SERVER environment variable, the current context's `server:` in the
// config file ($XDG_CONFIG_HOME or ~/.config, then tidal/config.yaml; see
// config_file.h), its top-level `server:`, kDefaultServer.
std::string ResolveServer(const std::string& flag);
// The config file path ResolveServer reads.
std::string ConfigPath();

class Context {
 public:
  Context(std::ostream& out, std::ostream& err) : out_(out), err_(err) {}

  // Global flags, bound by Main.
  std::string server_flag;
  std::string timeout_flag;  // empty: 30s per request, 10m per wait
  std::string ns;            // -n; empty = the context's, else "default"
  std::string token_flag;    // --token
  // Whether --token was given at all (an empty one is an error, not
  // "none": a script's unset variable must not fall back to another token).
  std::function<bool()> token_given;
  std::string context_flag;  // --context
  // TLS (docs/tls.md), bound by Main; each falls back to its environment
  // variable (TIDAL_CA, TIDAL_CLIENT_CERT, TIDAL_CLIENT_KEY,
  // TIDAL_TLS_SERVER_NAME). Any of them, or a server given as
  // https://host:port, means TLS.
  std::string ca_file;          // --certificate-authority: PEM CA bundle
  std::string cert_file;        // --client-certificate (mutual TLS)
  std::string key_file;         // --client-key
  std::string tls_server_name;  // --tls-server-name: the name to verify

  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }
  int exit_code = kExitOk;

  // The resolved address (after Prepare()).
  const std::string& server() const { return server_; }
  absl::Duration timeout() const { return timeout_; }
  // The bearer token sent with every call ("" for none), and the context
  // the config file gave (empty without one).
  const std::string& token() const { return token_; }
  const ClientContext& client_context() const { return context_; }
  // How long apply --wait, rollout status and delete --wait wait in all.
  absl::Duration wait_timeout() const { return wait_timeout_; }
  std::string Namespace() const { return ns.empty() ? "default" : ns; }
  // Whether -n/--namespace was given (not the context's namespace): files
  // that set another namespace are then an error, as in kubectl.
  bool NamespaceGiven() const { return ns_given_; }

  // Resolves the address and parses --timeout. Called once before a command.
  absl::Status Prepare();
  // Whether the channel speaks TLS (after Prepare()).
  bool tls() const { return tls_; }

  // The stub (created on first use).
  tidal::v1::Tidal::Stub& Stub();
  // A call context with the --timeout deadline (none for streams).
  std::unique_ptr<grpc::ClientContext> Call(bool stream = false);

  // Prints `status` for a person and returns the exit code for it.
  int Fail(const absl::Status& status);
  // Fail for a call that changes something: a deadline passed while the
  // call was out may still have made the change, and the user is told so.
  int FailWrite(const absl::Status& status);
  // Prints "error: <message>" and returns `code`.
  int Error(const std::string& message, int code = kExitFailure);

 private:
  std::ostream& out_;
  std::ostream& err_;
  std::string server_;
  std::string token_;
  ClientContext context_;
  absl::Duration timeout_ = absl::Seconds(30);
  absl::Duration wait_timeout_ = absl::Minutes(10);
  // TLS: resolves the fields above (and an https:// server) into
  // credentials, reading the files (an error names the flag and the file).
  absl::Status PrepareTls(const ClientContext* cc);
  bool tls_ = false;
  bool ns_given_ = false;  // -n given (set by Prepare)
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<tidal::v1::Tidal::Stub> stub_;
};

}  // namespace tidal::cli
