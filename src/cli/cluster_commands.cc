// get leader | nodes: the highly available control plane (docs/ha.md).

#include "absl/strings/str_cat.h"
#include "api/grpc_status.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "common/proto_time.h"

namespace tidal::cli {
int GetCluster(Context& ctx, const std::vector<std::string>& args,
               const std::string& output) {
  const bool leader = args[0] == "leader";
  if (args.size() > 1) {
    return ctx.Error(absl::StrCat("usage: tidalctl get ", args[0]), kExitUsage);
  }
  tidal::v1::GetClusterResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(
      ctx.Stub().GetCluster(call.get(), tidal::v1::GetClusterRequest(), &resp));
  if (!s.ok()) return ctx.Fail(s);
  if (output == "json") {
    ctx.out() << ResponseJson(resp);
    return kExitOk;
  }
  if (output == "yaml") {
    ctx.out() << ResponseYaml(resp);
    return kExitOk;
  }
  const absl::Time now = absl::Now();
  if (!resp.ha()) {
    // `-o name` prints names only: a single node has none to print.
    if (output == "name") return kExitOk;
    ctx.out() << "single node (the embedded store): this tidald reconciles, "
                 "scales and rolls out; no election runs (docs/ha.md)\n";
    return kExitOk;
  }
  if (leader) {
    if (resp.leader().node().empty()) {
      // `-o name` prints names only: none here (scripts test for empty).
      if (output == "name") return kExitOk;
      ctx.out() << "no leader at the moment (an election is under way, or "
                   "no tidald runs)\n";
      return kExitOk;
    }
    if (output == "name") {
      ctx.out() << resp.leader().node() << "\n";
      return kExitOk;
    }
    Table t({"NODE", "API", "TOKEN", "SINCE"});
    t.AddRow({resp.leader().node(), resp.leader().api_address(),
              absl::StrCat(resp.fencing_token()),
              AgeOf(resp.leader().since(), now)});
    ctx.out() << t.Render();
    return kExitOk;
  }
  Table t(output == "wide"
              ? std::vector<std::string>{"NAME", "STATUS", "ROLE", "ADDRESS",
                                         "API", "GATEWAY", "HEARTBEAT", "AGE",
                                         "HEARTBEATS"}
              : std::vector<std::string>{"NAME", "STATUS", "ROLE", "ADDRESS",
                                         "API", "HEARTBEAT", "AGE"});
  for (int i = 0; i < resp.nodes_size(); ++i) {
    const auto& n = resp.nodes(i);
    if (output == "name") {
      ctx.out() << "node/" << n.name() << "\n";
      continue;
    }
    // A tidald older than node_status sends none.
    const std::string status =
        i < resp.node_status_size() ? resp.node_status(i) : "<unknown>";
    // A lost node is no standby: it does nothing until it is back.
    std::string role = n.name() == resp.leader().node() ? "leader"
                       : status == "Ready"              ? "standby"
                                                        : "-";
    std::vector<std::string> row = {n.name(), status, role, n.address(),
                                    n.api_address()};
    if (output == "wide") row.push_back(absl::StrCat(n.gateway_port()));
    row.push_back(AgeOf(n.heartbeat(), now));
    row.push_back(AgeOf(n.started(), now));
    if (output == "wide") row.push_back(absl::StrCat(n.heartbeats()));
    t.AddRow(std::move(row));
  }
  if (output != "name") ctx.out() << t.Render();
  return kExitOk;
}

int DeleteNodes(Context& ctx, const std::vector<std::string>& args,
                const std::string& dry_run) {
  if (args.size() < 2) {
    return ctx.Error("delete node: give at least one NAME", kExitUsage);
  }
  int rc = kExitOk;
  for (size_t i = 1; i < args.size(); ++i) {
    tidal::v1::DeleteNodeRequest req;
    req.set_name(args[i]);
    // A client dry run reads only: the server's dry run deletes nothing.
    req.set_dry_run(dry_run != "none");
    tidal::v1::DeleteNodeResponse resp;
    auto call = ctx.Call();
    absl::Status s = FromGrpc(ctx.Stub().DeleteNode(call.get(), req, &resp));
    if (!s.ok()) {
      rc = ctx.FailWrite(s);
      continue;
    }
    ctx.out() << "node \"" << args[i] << "\" deleted"
              << (dry_run == "server"   ? " (server dry run)"
                  : dry_run == "client" ? " (dry run)"
                                        : "")
              << " (" << resp.records()
              << (resp.records() == 1 ? " record" : " records") << ")\n";
  }
  return rc;
}

}  // namespace tidal::cli
