#include "cli/context.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "api/grpc_status.h"
#include "api/spec.h"
#include "cli/config_file.h"
#include "common/status_macros.h"
#include "common/tls_files.h"
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

// kubectl's --server is a URL: "https://" (TLS) or "http://" (plaintext)
// before HOST:PORT, maybe a "/" after. Leaves HOST:PORT in *server and
// returns the scheme ("https", "http", or "" without one).
std::string TakeScheme(std::string* server) {
  std::string scheme;
  for (const char* s : {"https", "http"}) {
    const std::string prefix = absl::StrCat(s, "://");
    if (absl::StartsWith(*server, prefix)) {
      server->erase(0, prefix.size());
      scheme = s;
      break;
    }
  }
  if (absl::EndsWith(*server, "/")) server->pop_back();
  return scheme;
}

bool LoopbackServer(const std::string& server) {
  std::string host = server;
  TakeScheme(&host);
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

absl::Status Context::PrepareTls(const ClientContext* cc) {
  auto env = [](std::string* field, const char* name) {
    if (!field->empty()) return;
    if (const char* v = std::getenv(name); v && *v) *field = v;
  };
  env(&ca_file, "TIDAL_CA");
  env(&cert_file, "TIDAL_CLIENT_CERT");
  env(&key_file, "TIDAL_CLIENT_KEY");
  env(&tls_server_name, "TIDAL_TLS_SERVER_NAME");
  if (cc) {  // then the context's (docs/auth.md)
    auto from = [](std::string* field, const std::string& value) {
      if (field->empty()) *field = value;
    };
    from(&ca_file, cc->certificate_authority);
    from(&cert_file, cc->client_certificate);
    from(&key_file, cc->client_key);
    from(&tls_server_name, cc->tls_server_name);
  }
  const std::string scheme = TakeScheme(&server_);
  const bool https = scheme == "https";
  const bool http = scheme == "http";
  tls_ = https || !ca_file.empty() || !cert_file.empty() || !key_file.empty() ||
         !tls_server_name.empty();
  if (http && tls_) {
    return absl::InvalidArgumentError(
        "--server http://... is plaintext, but TLS files or a TLS server "
        "name are set: use https://");
  }
  if (!tls_) {
    credentials_ = grpc::InsecureChannelCredentials();
    return absl::OkStatus();
  }
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        "--client-certificate and --client-key go together");
  }
  grpc::SslCredentialsOptions opts;
  if (!ca_file.empty()) {
    RETURN_IF_ERROR(CheckCaFile(ca_file, "--certificate-authority"));
    ASSIGN_OR_RETURN(opts.pem_root_certs,
                     ReadFlagFile(ca_file, "--certificate-authority"));
  }
  if (!cert_file.empty()) {
    RETURN_IF_ERROR(CheckKeyPairFiles(cert_file, "--client-certificate",
                                      key_file, "--client-key"));
    ASSIGN_OR_RETURN(opts.pem_cert_chain,
                     ReadFlagFile(cert_file, "--client-certificate"));
    ASSIGN_OR_RETURN(opts.pem_private_key,
                     ReadFlagFile(key_file, "--client-key"));
  }
  credentials_ = grpc::SslCredentials(opts);
  return absl::OkStatus();
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
  ns_given_ = !ns.empty();
  if (ns_given_) {
    if (std::string why = spec::NamespaceProblem(ns); !why.empty())
      return absl::InvalidArgumentError(absl::StrCat("-n: ", why));
  }
  if (ns.empty() && cc) ns = cc->ns;
  // The token: --token, TIDAL_TOKEN, the context's, or (tidald on this
  // machine) the bootstrap admin token this user can read.
  if (token_flag.empty() && token_given && token_given()) {
    return absl::InvalidArgumentError(
        "--token is empty (an unset variable?): give a token, or leave the "
        "flag out to use $TIDAL_TOKEN, the context's or the local one");
  }
  if (!token_flag.empty()) {
    token_ = token_flag;
  } else if (const char* env = std::getenv("TIDAL_TOKEN"); env && *env) {
    token_ = env;
  } else if (cc) {
    auto t = ContextToken(*cc);
    if (!t.ok()) return t.status();
    token_ = *t;
  }
  if (token_.empty() && LoopbackServer(server_)) {
    // Only to a tidald its owner runs: any process may listen on a loopback
    // port (an instance on 7070 while tidald is elsewhere or restarting).
    if (std::optional<LocalToken> local = LocalBootstrapToken()) {
      int port = 0;
      std::string host = server_;
      TakeScheme(&host);
      std::vector<uid_t> users;
      if (absl::SimpleAtoi(host.substr(host.rfind(':') + 1), &port)) {
        users = ListenerUids(port);
      }
      if (!users.empty() &&
          std::all_of(users.begin(), users.end(),
                      [&](uid_t u) { return u == local->owner; })) {
        token_ = local->token;
      } else if (!users.empty()) {
        err_ << "warning: not sending the bootstrap admin token of "
             << local->file << " to " << server_ << ": another user (uid "
             << users[0] << ") listens there, not the token's owner (uid "
             << local->owner << "); pass --token to use it there\n";
      }
    }
  }
  RETURN_IF_ERROR(PrepareTls(cc));
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
    // Without gRPC's retry filter, which aborts the process on a stream
    // ended without a status, as tidald being stopped can end a `logs -f`
    // (grpc/grpc#34683; src/store/etcd_store.cc). tidalctl's waits retry.
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    if (!tls_server_name.empty()) {
      args.SetSslTargetNameOverride(tls_server_name);
    }
    channel_ = grpc::CreateCustomChannel(server_, credentials_, args);
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

// What a failed TLS connection says, for a person; empty when `msg` is not
// about TLS. `tls`: tidalctl spoke TLS; `client_cert`: it had a client
// certificate to show.
std::string TlsReason(absl::string_view msg, bool tls, bool client_cert) {
  std::string lower = absl::AsciiStrToLower(msg);
  auto has = [&](absl::string_view s) { return absl::StrContains(lower, s); };
  if (has("certificate required") || has("peer did not return a certificate")) {
    return "the TLS handshake failed: tidald requires a client certificate "
           "(--client-certificate and --client-key)";
  }
  if (has("certificate verify failed") || has("unknown ca") ||
      has("unable to get local issuer")) {
    return "the TLS handshake failed: tidald's certificate is not signed by "
           "a trusted CA (give its CA with --certificate-authority)";
  }
  if (has("bad certificate") || has("unsupported certificate") ||
      has("certificate unknown") || has("decrypt error")) {
    return "the TLS handshake failed: tidald refused the client certificate "
           "(not signed by its --tls-client-ca?)";
  }
  if (has("wrong version number") || has("packet length too long") ||
      has("record layer failure")) {
    return "the TLS handshake failed: tidald does not speak TLS on this "
           "address (drop --certificate-authority and https://)";
  }
  if (has("peer name") || has("hostname") || has("subject alternative")) {
    return "the TLS handshake failed: tidald's certificate is not for this "
           "name (see --tls-server-name)";
  }
  if (has("handshake") || has("ssl") || has("tls")) {
    return absl::StrCat("the TLS handshake failed: ", msg);
  }
  if (has("socket closed") || has("connection reset")) {
    if (!tls) {
      return "the connection was closed at once: does tidald require TLS? "
             "(give --certificate-authority, or https:// in --server)";
    }
    // TLS 1.3: the server checks the client's certificate after the
    // client has finished its handshake, and just closes the connection.
    return client_cert
               ? "the TLS connection was closed during the handshake: "
                 "tidald refused the client certificate (not signed by its "
                 "--tls-client-ca?)"
               : "the TLS connection was closed during the handshake: "
                 "tidald requires a client certificate "
                 "(--client-certificate and --client-key)";
  }
  return "";
}

}  // namespace

int Context::Fail(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kUnavailable:
      if (AnsweredByTidald(s)) {
        // tidald answered: it cannot do it now (its store does not answer,
        // no node is live). Worth a retry, as an unreachable tidald is.
        err_ << "error: tidald at " << server_ << ": " << s.message() << "\n";
        return kExitUnreachable;
      }
      if (std::string why = TlsReason(s.message(), tls_, !cert_file.empty());
          !why.empty()) {
        err_ << "error: cannot reach tidald at " << server_ << ": " << why
             << "\n";
        return kExitUnreachable;
      }
      // Starting it is advice for this machine; elsewhere, the address and
      // the network are as likely.
      err_ << "error: cannot reach tidald at " << server_ << ": "
           << ConnectReason(s.message())
           << (LoopbackServer(server_)
                   ? " \u2014 is it running? (start it with `tidald` or "
                     "`make run`)\n"
                   : " \u2014 is it running there, and does this machine "
                     "reach it (--server, firewall)?\n");
      return kExitUnreachable;
    case absl::StatusCode::kResourceExhausted:
      err_ << "error: tidald at " << server_ << ": " << s.message() << "\n";
      if (absl::StrContains(s.message(), "Received message larger than max")) {
        err_ << "That is more than tidald takes in one request (tidald "
                "--api-max-message-size): send the files in parts.\n";
      }
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
        // tidald lists the first errors, then "... and K more errors".
        int64_t problems = static_cast<int64_t>(lines.size());
        int64_t more = 0;
        if (absl::StartsWith(lines.back(), "... and ") &&
            absl::SimpleAtoi(absl::string_view(lines.back())
                                 .substr(8, lines.back().find(' ', 8) - 8),
                             &more)) {
          problems += more - 1;
        }
        err_ << "error: " << problems << " problems; nothing was changed\n";
      }
      return kExitUsage;
    }
    default:
      err_ << "error: " << s.message() << "\n";
      return kExitFailure;
  }
}

int Context::FailWrite(const absl::Status& s) {
  const int rc = Fail(s);
  if (absl::IsDeadlineExceeded(s)) {
    err_ << "The change may have been made all the same: check with `tidalctl "
            "get` (or `tidalctl diff -f FILE`) before trying again.\n";
  }
  return rc;
}

}  // namespace tidal::cli
