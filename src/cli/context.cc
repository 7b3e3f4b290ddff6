#include "cli/context.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/config_file.h"
#include "common/units.h"

namespace tidal::cli {

std::string ConfigPath() {
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg) {
    return absl::StrCat(xdg, "/tidal/config.yaml");
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return absl::StrCat(home, "/.config/tidal/config.yaml");
  }
  return "";
}

namespace {

bool LoopbackServer(const std::string& server) {
  std::string host = server;
  if (absl::StartsWith(host, "dns:")) host = host.substr(4);
  if (absl::StartsWith(host, "ipv4:")) host = host.substr(5);
  if (absl::StartsWith(host, "ipv6:")) host = host.substr(5);
  if (absl::StartsWith(host, "[")) return absl::StartsWith(host, "[::1]");
  host = host.substr(0, host.rfind(':'));
  return host == "localhost" || absl::StartsWith(host, "127.");
}

}  // namespace

std::string ResolveServer(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("TIDAL_SERVER"); env && *env) return env;
  auto config = LoadClientConfig(ConfigPath());
  if (config.ok()) {
    if (const ClientContext* c = config->Find(""); c && !c->server.empty()) {
      return c->server;
    }
    if (!config->server.empty()) return config->server;
  }
  return kDefaultServer;
}

absl::Status Context::Prepare() {
  // The context: --context, else the config file's current one.
  auto config = LoadClientConfig(ConfigPath());
  if (!config.ok()) return config.status();
  const ClientContext* cc = config->Find(context_flag);
  if (!context_flag.empty() && cc == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--context: there is no context \"", context_flag,
                     "\" in ", ConfigPath()));
  }
  if (cc) context_ = *cc;
  if (!server_flag.empty()) {
    server_ = server_flag;
  } else if (const char* env = std::getenv("TIDAL_SERVER"); env && *env) {
    server_ = env;
  } else if (cc && !cc->server.empty()) {
    server_ = cc->server;
  } else if (!config->server.empty()) {
    server_ = config->server;
  } else {
    server_ = kDefaultServer;
  }
  if (ns.empty() && cc) ns = cc->ns;
  // The token: --token, TIDAL_TOKEN, the context's, or (tidald on this
  // machine) the bootstrap admin token this user can read.
  if (!token_flag.empty()) {
    token_ = token_flag;
  } else if (const char* env = std::getenv("TIDAL_TOKEN"); env && *env) {
    token_ = env;
  } else if (cc) {
    auto t = ContextToken(*cc);
    if (!t.ok()) return t.status();
    token_ = *t;
  }
  if (token_.empty() && LoopbackServer(server_)) token_ = LocalBootstrapToken();
  if (timeout_flag.empty()) {
    // No --timeout: each request gets 30s, a wait (apply --wait, rollout
    // status, delete --wait) 10m, the default progressDeadline.
    timeout_ = absl::Seconds(30);
    wait_timeout_ = absl::Minutes(10);
    return absl::OkStatus();
  }
  auto ms = ParseDurationMs(timeout_flag);
  if (!ms.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout: ", ms.status().message()));
  }
  if (*ms <= 0) return absl::InvalidArgumentError("--timeout must be positive");
  timeout_ = absl::Milliseconds(*ms);
  wait_timeout_ = timeout_;
  return absl::OkStatus();
}

tidal::v1::Tidal::Stub& Context::Stub() {
  if (!stub_) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(
        server_, grpc::InsecureChannelCredentials(), args);
    stub_ = tidal::v1::Tidal::NewStub(channel_);
  }
  return *stub_;
}

std::unique_ptr<grpc::ClientContext> Context::Call(bool stream) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  if (!stream) ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  return ctx;
}

int Context::Error(const std::string& message, int code) {
  err_ << "error: " << message << "\n";
  return code;
}

namespace {

// A short reason from gRPC's connection error text.
std::string ConnectReason(absl::string_view msg) {
  std::string lower = absl::AsciiStrToLower(msg);
  if (absl::StrContains(lower, "connection refused"))
    return "connection refused";
  if (absl::StrContains(lower, "dns") || absl::StrContains(lower, "resolve")) {
    return "the host name does not resolve";
  }
  if (absl::StrContains(lower, "timed out") ||
      absl::StrContains(lower, "deadline")) {
    return "connection timed out";
  }
  if (absl::StrContains(lower, "no route")) return "no route to host";
  return std::string(msg);
}

}  // namespace

int Context::Fail(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kUnavailable:
      err_ << "error: cannot reach tidald at " << server_ << ": "
           << ConnectReason(s.message())
           << " \u2014 is it running? (start it with `tidald` or `make run`)\n";
      return kExitUnreachable;
    case absl::StatusCode::kResourceExhausted:
      err_ << "error: tidald at " << server_ << ": " << s.message() << "\n";
      // tidald's "the data directory is full: DIR ..." (gRPC also uses this
      // code for a message over its size limit).
      return absl::StrContains(s.message(), "data directory is full")
                 ? kExitStoreFull
                 : kExitFailure;
    case absl::StatusCode::kDeadlineExceeded:
      err_ << "error: tidald at " << server_ << " did not answer within "
           << absl::FormatDuration(timeout_) << " (raise it with --timeout)\n";
      return kExitTimeout;
    case absl::StatusCode::kUnauthenticated:
      err_ << "error: tidald at " << server_ << ": " << s.message()
           << (token_.empty() ? "" : " (docs/auth.md)") << "\n";
      return kExitFailure;
    case absl::StatusCode::kInvalidArgument: {
      std::vector<std::string> lines = absl::StrSplit(s.message(), '\n');
      if (lines.size() == 1) {
        err_ << "error: " << lines[0] << "\n";
      } else {
        for (const auto& l : lines) err_ << l << "\n";
        err_ << "error: " << lines.size() << " problems; nothing was changed\n";
      }
      return kExitUsage;
    }
    default:
      err_ << "error: " << s.message() << "\n";
      return kExitFailure;
  }
}

}  // namespace tidal::cli
