#pragma once

// TestCa: a throwaway certificate authority for tests of TLS, made with the
// openssl command in a directory: DIR/NAME.crt and DIR/NAME.key, and the
// certificates it issues (DIR/<name>.crt and .key), each with a serial of
// its own. Not thread-safe.

#include <string>
#include <vector>

namespace tidal::e2e {

class TestCa {
 public:
  // Whether the openssl command is installed (skip the test if not).
  static bool Available();

  // Makes a self-signed CA "CN=<name>" valid for two days. ok() says
  // whether it worked, error() why not.
  TestCa(std::string dir, std::string name = "test-ca");

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  std::string cert() const { return Path(name_, ".crt"); }
  std::string key() const { return Path(name_, ".key"); }
  std::string Path(const std::string& name, const std::string& ext) const {
    return dir_ + "/" + name + ext;
  }

  // Issues DIR/<name>.crt and .key signed by this CA, subject "CN=<cn>",
  // with the subjectAltName entries `sans` ("DNS:api.example",
  // "IP:127.0.0.1"), for a server; or for a client (extendedKeyUsage
  // clientAuth) when `client`. Returns false (and error() says why) on
  // failure.
  bool Issue(const std::string& name, const std::string& cn,
             const std::vector<std::string>& sans, bool client = false);

 private:
  bool Openssl(const std::vector<std::string>& args);

  std::string dir_;
  std::string name_;
  std::string error_;
};

}  // namespace tidal::e2e
