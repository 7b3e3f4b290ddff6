#include "e2e/test_ca.h"

#include "absl/strings/str_join.h"
#include "e2e/e2e_util.h"

namespace tidal::e2e {
namespace {

constexpr const char* kOpenssl = "/usr/bin/openssl";

}  // namespace

bool TestCa::Available() { return Run({kOpenssl, "version"}).exit_code == 0; }

TestCa::TestCa(std::string dir, std::string name)
    : dir_(std::move(dir)), name_(std::move(name)) {
  Openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
           "-subj", "/CN=" + name_, "-keyout", key(), "-out", cert()});
}

bool TestCa::Openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kOpenssl};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = Run(argv);
  if (r.exit_code == 0) return true;
  error_ = "openssl " + absl::StrJoin(args, " ") + ": " + r.err;
  return false;
}

bool TestCa::Issue(const std::string& name, const std::string& cn,
                   const std::vector<std::string>& sans, bool client) {
  const std::string csr = Path(name, ".csr");
  const std::string ext = Path(name, ".ext");
  if (!Openssl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn,
                "-keyout", Path(name, ".key"), "-out", csr})) {
    return false;
  }
  std::string text;
  if (!sans.empty())
    text += "subjectAltName=" + absl::StrJoin(sans, ",") + "\n";
  if (client) text += "extendedKeyUsage=clientAuth\n";
  WriteFile(ext, text);
  std::vector<std::string> args = {"x509",
                                   "-req",
                                   "-in",
                                   csr,
                                   "-CA",
                                   cert(),
                                   "-CAkey",
                                   key(),
                                   "-CAcreateserial",
                                   "-days",
                                   "2",
                                   "-out",
                                   Path(name, ".crt")};
  if (!text.empty()) {
    args.push_back("-extfile");
    args.push_back(ext);
  }
  return Openssl(args);
}

}  // namespace tidal::e2e
