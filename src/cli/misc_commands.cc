// logs, version and dashboard.

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <cstring>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/grpc_status.h"
#include "cli/cli.h"

namespace tidal::cli {
namespace {

struct LogsFlags {
  std::string app;
  bool follow = false;
  std::string instance;
  int64_t tail = 0;
  bool prefix = false;
  bool previous = false;
};

int DoLogs(Context& ctx, const LogsFlags& f) {
  tidal::v1::LogsRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_app(f.app);
  req.set_instance(f.instance);
  req.set_follow(f.follow);
  req.set_tail_lines(f.tail);
  req.set_previous(f.previous);
  auto call = ctx.Call(/*stream=*/f.follow);
  auto reader = ctx.Stub().Logs(call.get(), req);
  tidal::v1::LogChunk chunk;
  // With --prefix, each line starts with "[instance] "; partial lines wait
  // for their end.
  std::map<std::string, std::string> partial;
  int incomplete = 0;
  while (reader->Read(&chunk)) {
    if (!chunk.warning().empty()) {
      ctx.out().flush();
      ctx.err() << "warning: " << chunk.warning() << "\n";
      ++incomplete;
      continue;
    }
    if (!f.prefix) {
      ctx.out() << chunk.data();
    } else {
      std::string& buf = partial[chunk.instance()];
      buf += chunk.data();
      size_t start = 0, nl;
      while ((nl = buf.find('\n', start)) != std::string::npos) {
        ctx.out() << "[" << chunk.instance() << "] "
                  << buf.substr(start, nl - start + 1);
        start = nl + 1;
      }
      buf.erase(0, start);
    }
    ctx.out().flush();
  }
  for (const auto& [id, rest] : partial) {
    if (!rest.empty()) ctx.out() << "[" << id << "] " << rest << "\n";
  }
  absl::Status s = FromGrpc(reader->Finish());
  if (!s.ok()) return ctx.Fail(s);
  if (incomplete > 0) {
    ctx.err() << "error: the output is incomplete: " << incomplete
              << (incomplete == 1 ? " instance's log" : " instances' logs")
              << " could not be read (see the warnings above)\n";
    return kExitFailure;
  }
  return kExitOk;
}

struct VersionFlags {
  bool client_only = false;
};

int DoVersion(Context& ctx, const VersionFlags& f) {
  ctx.out() << "Client: tidalctl " << TIDAL_VERSION << "\n";
  if (f.client_only) return kExitOk;
  tidal::v1::VersionResponse v;
  auto call = ctx.Call();
  absl::Status s =
      FromGrpc(ctx.Stub().Version(call.get(), tidal::v1::VersionRequest(), &v));
  if (!s.ok()) return ctx.Fail(s);
  ctx.out() << "Server: tidald " << v.version() << " at " << ctx.server()
            << " (store " << v.store() << ", runtime " << v.runtime() << ")\n";
  return kExitOk;
}

struct DashboardFlags {
  bool no_open = false;
};

// The dashboard's URL on the host tidalctl reaches tidald at (a wildcard
// listen address means this machine).
std::string DashboardUrl(const std::string& server, int port,
                         const std::string& path) {
  std::string host = server;
  for (const char* scheme : {"https://", "http://"}) {
    if (absl::StartsWith(host, scheme)) host = host.substr(strlen(scheme));
  }
  if (!host.empty() && host.front() == '[') {
    host = host.substr(0, host.find(']') + 1);  // [::1]:7070
  } else if (const size_t colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") {
    host = "127.0.0.1";
  }
  return absl::StrCat("http://", host, ":", port, path);
}

int DoDashboard(Context& ctx, const DashboardFlags& f) {
  tidal::v1::VersionResponse v;
  auto call = ctx.Call();
  absl::Status s =
      FromGrpc(ctx.Stub().Version(call.get(), tidal::v1::VersionRequest(), &v));
  if (!s.ok()) return ctx.Fail(s);
  if (v.dashboard_port() <= 0) {
    return ctx.Error(
        absl::StrCat("tidald at ", ctx.server(),
                     " serves no dashboard (--dashboard-listen=off)"),
        kExitFailure);
  }
  const std::string url =
      DashboardUrl(ctx.server(), v.dashboard_port(), v.dashboard_path());
  ctx.out() << url << "\n";
  ctx.err() << "Sign in with a token (tidalctl auth create-token NAME -n NS "
               "--role viewer); the page keeps it in the tab only.\n";
  // A browser, where there is a desktop to show it on.
  const bool desktop =
      getenv("DISPLAY") != nullptr || getenv("WAYLAND_DISPLAY") != nullptr;
  if (!f.no_open && desktop && access("/usr/bin/xdg-open", X_OK) == 0) {
    pid_t pid = fork();
    if (pid == 0) {
      setsid();
      int null = open("/dev/null", O_RDWR);
      if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
      }
      execl("/usr/bin/xdg-open", "xdg-open", url.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  return kExitOk;
}

}  // namespace

void AddMiscCommands(CLI::App& root, Context& ctx) {
  auto lf = std::make_shared<LogsFlags>();
  CLI::App* logs = root.add_subcommand(
      "logs", "Print the logs (stdout and stderr) of an app");
  logs->add_option("app", lf->app, "app name")->required();
  logs->add_flag("-f,--follow", lf->follow,
                 "keep printing new output until interrupted");
  logs->add_option("--instance", lf->instance,
                   "only this instance (default: every instance)");
  logs->add_option("--tail", lf->tail,
                   "only the last N lines of each instance (0: all)")
      ->check(NonNegativeCount());
  logs->add_flag("--prefix", lf->prefix, "start each line with [instance]");
  logs->add_flag("-p,--previous", lf->previous,
                 "the output of the app's instances that have stopped "
                 "(crashed, replaced, scaled away), kept for a while (1h)");
  logs->callback([&ctx, lf] { Run(ctx, [&] { return DoLogs(ctx, *lf); }); });

  auto df = std::make_shared<DashboardFlags>();
  CLI::App* dashboard = root.add_subcommand(
      "dashboard",
      "Print the web dashboard's URL and open it in a browser (xdg-open)");
  dashboard->add_flag("--no-open", df->no_open,
                      "print the URL only, open no browser");
  dashboard->callback(
      [&ctx, df] { Run(ctx, [&] { return DoDashboard(ctx, *df); }); });

  auto vf = std::make_shared<VersionFlags>();
  CLI::App* version =
      root.add_subcommand("version", "Print the client and server versions");
  version->add_flag("--client", vf->client_only,
                    "the client version only (no server needed)");
  version->callback(
      [&ctx, vf] { Run(ctx, [&] { return DoVersion(ctx, *vf); }); });
}

}  // namespace tidal::cli
