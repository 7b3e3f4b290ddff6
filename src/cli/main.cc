// tidalctl: the Tidal command-line client. See docs/cli.md.

#include <grpc/support/log.h>

#include <cstdlib>

#include "cli/cli.h"

int main(int argc, char** argv) {
  // gRPC logs failed connections (a TLS handshake refused, ...) to stderr in
  // its own format; tidalctl says what went wrong itself (Context::Fail).
  // GRPC_VERBOSITY=DEBUG (or any value) brings gRPC's log back.
  if (std::getenv("GRPC_VERBOSITY") == nullptr) {
    gpr_set_log_function([](gpr_log_func_args*) {});
  }
  return tidal::cli::Main(argc, argv);
}
