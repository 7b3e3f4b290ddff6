#include "cli/config_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/private_file.h"

namespace tidal::cli {

const ClientContext* ClientConfig::Find(const std::string& name) const {
  const std::string& want = name.empty() ? current_context : name;
  for (const auto& c : contexts) {
    if (c.name == want) return &c;
  }
  return nullptr;
}

ClientContext* ClientConfig::FindOrAdd(const std::string& name) {
  for (auto& c : contexts) {
    if (c.name == name) return &c;
  }
  contexts.push_back(ClientContext{});
  contexts.back().name = name;
  return &contexts.back();
}

namespace {

struct Field {
  const char* key;
  std::string ClientContext::*member;
};
const Field kFields[] = {
    {"server", &ClientContext::server},
    {"token", &ClientContext::token},
    {"token-file", &ClientContext::token_file},
    {"namespace", &ClientContext::ns},
    {"certificate-authority", &ClientContext::certificate_authority},
    {"client-certificate", &ClientContext::client_certificate},
    {"client-key", &ClientContext::client_key},
    {"tls-server-name", &ClientContext::tls_server_name},
};

std::string Scalar(const YAML::Node& n, const std::string& path,
                   const std::string& where) {
  if (!n.IsScalar()) {
    throw std::runtime_error(absl::StrCat(where, ":", n.Mark().line + 1, ": ",
                                          path, ": must be a string"));
  }
  return n.as<std::string>();
}

}  // namespace

absl::StatusOr<ClientConfig> LoadClientConfig(const std::string& path) {
  ClientConfig config;
  if (path.empty() || !std::filesystem::exists(path)) return config;
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (root.IsNull()) return config;
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": must be a mapping"));
    }
    if (root["server"]) config.server = Scalar(root["server"], "server", path);
    if (root["current-context"]) {
      config.current_context =
          Scalar(root["current-context"], "current-context", path);
    }
    if (YAML::Node list = root["contexts"]) {
      if (!list.IsSequence()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", list.Mark().line + 1, ": contexts: must be a list"));
      }
      for (size_t i = 0; i < list.size(); ++i) {
        const YAML::Node item = list[i];
        const std::string at = absl::StrCat("contexts[", i, "]");
        if (!item.IsMap()) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ":", item.Mark().line + 1, ": ", at,
                           ": must be a mapping"));
        }
        ClientContext c;
        if (item["name"]) c.name = Scalar(item["name"], at + ".name", path);
        if (c.name.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              path, ":", item.Mark().line + 1, ": ", at, ".name: required"));
        }
        for (const Field& f : kFields) {
          if (item[f.key]) {
            c.*f.member = Scalar(item[f.key], at + "." + f.key, path);
          }
        }
        config.contexts.push_back(std::move(c));
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return config;
}

absl::Status SaveClientConfig(const std::string& path,
                              const ClientConfig& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  if (!config.current_context.empty()) {
    out << YAML::Key << "current-context" << YAML::Value
        << config.current_context;
  }
  if (!config.server.empty()) {
    out << YAML::Key << "server" << YAML::Value << config.server;
  }
  out << YAML::Key << "contexts" << YAML::Value << YAML::BeginSeq;
  for (const auto& c : config.contexts) {
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << c.name;
    for (const Field& f : kFields) {
      if (!(c.*f.member).empty()) {
        out << YAML::Key << f.key << YAML::Value << c.*f.member;
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;

  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(),
                                      ec);
  return WritePrivateFile(path, std::string(out.c_str()) + "\n");
}

namespace {

absl::StatusOr<std::string> ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string line;
  std::getline(in, line);
  return std::string(absl::StripAsciiWhitespace(line));
}

}  // namespace

absl::StatusOr<std::string> ContextToken(const ClientContext& c) {
  if (!c.token.empty()) return c.token;
  if (c.token_file.empty()) return std::string();
  auto t = ReadFirstLine(c.token_file);
  if (!t.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "context \"", c.name, "\": token-file: ", t.status().message()));
  }
  return *t;
}

std::optional<LocalToken> LocalBootstrapToken() {
  std::vector<std::string> dirs;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) {
    dirs.push_back(absl::StrCat(xdg, "/tidal"));
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    dirs.push_back(absl::StrCat(home, "/.local/share/tidal"));
  }
  dirs.push_back("/var/lib/tidal");
  for (const auto& d : dirs) {
    const std::string file = d + "/admin.token";
    if (::access(file.c_str(), R_OK) != 0) continue;
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) continue;
    auto t = ReadFirstLine(file);
    if (t.ok() && !t->empty()) return LocalToken{*t, file, st.st_uid};
  }
  return std::nullopt;
}

std::vector<uid_t> ListenerUids(int port) {
  std::vector<uid_t> uids;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
      std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 8 || f[3] != "0A") continue;  // LISTEN
      const size_t colon = f[1].rfind(':');
      int local_port = 0;
      uint32_t owner = 0;
      if (colon == std::string::npos ||
          !absl::SimpleHexAtoi(f[1].substr(colon + 1), &local_port) ||
          !absl::SimpleAtoi(f[7], &owner)) {
        continue;
      }
      if (local_port == port) uids.push_back(owner);
    }
  }
  return uids;
}

}  // namespace tidal::cli
