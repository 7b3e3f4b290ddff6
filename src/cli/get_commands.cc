// get and describe: reading apps, instances and events.

#include <CLI/CLI.hpp>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "api/grpc_status.h"
#include "api/label_selector.h"
#include "cli/cli.h"
#include "cli/jsonpath.h"
#include "cli/output.h"
#include "common/status_macros.h"

namespace tidal::cli {
namespace {

struct GetFlags {
  std::vector<std::string> args;  // TYPE [NAME]
  bool all_namespaces = false;
  std::string selector;
  std::string output;
  bool watch = false;
  bool show_labels = false;
  std::string sort_by;
  int64_t chunk_size = 500;
};

// -o jsonpath=TEMPLATE and -o custom-columns=SPEC (kubectl's).
bool Templated(const std::string& output) {
  return absl::StartsWith(output, "jsonpath=") ||
         absl::StartsWith(output, "custom-columns=");
}

// Prints by -o jsonpath= (over `doc`: the List, or the one object named)
// or -o custom-columns= (a row per item).
int PrintTemplated(Context& ctx, const std::string& output,
                   const std::string& doc,
                   const std::vector<std::string>& items) {
  absl::StatusOr<std::string> text =
      absl::StartsWith(output, "jsonpath=")
          ? JsonPathTemplate(doc, output.substr(strlen("jsonpath=")))
          : CustomColumns(items, output.substr(strlen("custom-columns=")));
  if (!text.ok())
    return ctx.Error(std::string(text.status().message()), kExitUsage);
  ctx.out() << *text;
  return kExitOk;
}

// --sort-by JSONPATH: reorders `items` by the value the path selects in
// each one's JSON.
template <typename T>
absl::Status SortItems(std::vector<T>* items, const std::string& path,
                       const std::function<std::string(const T&)>& json) {
  if (path.empty()) return absl::OkStatus();
  std::vector<std::string> docs;
  for (const auto& it : *items) docs.push_back(json(it));
  ASSIGN_OR_RETURN(std::vector<size_t> order, SortOrder(docs, path));
  std::vector<T> sorted;
  for (size_t i : order) sorted.push_back(std::move((*items)[i]));
  *items = std::move(sorted);
  return absl::OkStatus();
}

enum class Kind { kApps, kInstances, kEvents };

bool ParseKind(const std::string& s, Kind* k) {
  static const std::map<std::string, Kind> kinds = {
      {"app", Kind::kApps},           {"apps", Kind::kApps},
      {"application", Kind::kApps},   {"applications", Kind::kApps},
      {"instance", Kind::kInstances}, {"instances", Kind::kInstances},
      {"inst", Kind::kInstances},     {"event", Kind::kEvents},
      {"events", Kind::kEvents},      {"ev", Kind::kEvents}};
  auto it = kinds.find(s);
  if (it == kinds.end()) return false;
  *k = it->second;
  return true;
}

// Prints rows of a table whose header went out first, keeping the columns of
// the first print (as kubectl -w does).
class RowPrinter {
 public:
  RowPrinter(Context& ctx, std::vector<std::string> header)
      : ctx_(ctx), header_(header) {}
  void PrintFirst(const std::vector<std::vector<std::string>>& rows) {
    width_.assign(header_.size(), 0);
    auto measure = [&](const std::vector<std::string>& r) {
      for (size_t i = 0; i < r.size() && i < width_.size(); ++i) {
        width_[i] = std::max(width_[i], r[i].size());
      }
    };
    measure(header_);
    for (const auto& r : rows) measure(r);
    Print(header_);
    for (const auto& r : rows) Print(r);
  }
  void Print(const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size() && i < width_.size()) {
        line += std::string(
            width_[i] > row[i].size() ? width_[i] - row[i].size() + 3 : 3, ' ');
      }
    }
    ctx_.out() << line << "\n" << std::flush;
  }

 private:
  Context& ctx_;
  std::vector<std::string> header_;
  std::vector<size_t> width_;
};

// Apps in the context's namespace (or all) that match the selector, read in
// pages of `chunk_size` (0: in one answer), as kubectl's --chunk-size. The
// resource version is the first page's: a watch from it replays whatever
// changed while the later pages were read.
absl::StatusOr<tidal::v1::ListResponse> ListApps(Context& ctx, bool all,
                                                 const std::string& selector,
                                                 int64_t chunk_size = 500) {
  tidal::v1::ListRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_all_namespaces(all);
  req.set_label_selector(selector);
  req.set_limit(chunk_size);
  tidal::v1::ListResponse out;
  while (true) {
    tidal::v1::ListResponse page;
    auto call = ctx.Call();
    absl::Status s = FromGrpc(ctx.Stub().List(call.get(), req, &page));
    if (!s.ok()) return s;
    if (out.resource_version() == 0)
      out.set_resource_version(page.resource_version());
    for (auto& a : *page.mutable_apps()) *out.add_apps() = std::move(a);
    if (page.continue_().empty()) return out;
    if (page.continue_() == req.continue_()) {
      return absl::InternalError(
          "tidald answered a list page with the token it was given (the "
          "list would never end)");
    }
    req.set_continue_(page.continue_());
  }
}

// -l on instances and events selects by their app's labels (as kubectl's
// selectors select pods by their own labels, which an instance takes from
// its app): keeps the items of the apps that match, read afresh each call.
template <typename T>
absl::StatusOr<std::vector<T>> OfSelectedApps(
    Context& ctx, const GetFlags& f, absl::StatusOr<std::vector<T>> items,
    const std::function<std::string(const T&)>& app_key) {
  if (!items.ok() || f.selector.empty()) return items;
  ASSIGN_OR_RETURN(auto apps,
                   ListApps(ctx, f.all_namespaces, f.selector, f.chunk_size));
  std::set<std::string> keep;
  for (const auto& a : apps.apps())
    keep.insert(
        absl::StrCat(a.metadata().namespace_(), "/", a.metadata().name()));
  std::vector<T> out;
  for (auto& item : *items)
    if (keep.count(app_key(item))) out.push_back(std::move(item));
  return out;
}

int GetApps(Context& ctx, const GetFlags& f, const std::string& name) {
  TableOptions to;
  to.wide = f.output == "wide";
  to.show_namespace = f.all_namespaces;
  to.show_labels = f.show_labels;
  std::vector<tidal::v1::App> apps;
  int64_t rv = 0;
  if (!name.empty()) {
    tidal::v1::GetRequest req;
    req.set_namespace_(ctx.Namespace());
    req.set_name(name);
    tidal::v1::App app;
    auto call = ctx.Call();
    absl::Status s = FromGrpc(ctx.Stub().Get(call.get(), req, &app));
    if (!s.ok()) return ctx.Fail(s);
    rv = app.metadata().resource_version();
    apps.push_back(std::move(app));
  } else {
    auto resp = ListApps(ctx, f.all_namespaces, f.selector, f.chunk_size);
    if (!resp.ok()) return ctx.Fail(resp.status());
    rv = resp->resource_version();
    apps.assign(resp->apps().begin(), resp->apps().end());
  }
  auto app_json = [](const tidal::v1::App& a) { return AppsJson({a}, false); };
  if (absl::Status s = SortItems<tidal::v1::App>(&apps, f.sort_by, app_json);
      !s.ok())
    return ctx.Error(std::string(s.message()), kExitUsage);
  if (Templated(f.output)) {
    std::vector<std::string> items;
    for (const auto& a : apps) items.push_back(app_json(a));
    return PrintTemplated(ctx, f.output, AppsJson(apps, name.empty()), items);
  }
  const absl::Time now = absl::Now();
  // A watched app after the list: YAML has printed a document already (the
  // apps, or an empty List), so each one starts a new document.
  auto print_one = [&](const tidal::v1::App& app) {
    if (f.output == "yaml") {
      ctx.out() << "---\n";
      ctx.out() << AppsYaml({app});
    } else if (f.output == "json") {
      ctx.out() << AppsJson({app}, false);
    } else if (f.output == "name") {
      ctx.out() << AppName(app) << "\n";
    }
    ctx.out().flush();
  };
  RowPrinter rows(ctx, AppColumns(to));
  if (f.output == "yaml") {
    ctx.out() << AppsYaml(apps);
  } else if (f.output == "json") {
    ctx.out() << AppsJson(apps, name.empty());
  } else if (f.output == "name") {
    for (const auto& a : apps) ctx.out() << AppName(a) << "\n";
  } else if (f.watch) {
    std::vector<std::vector<std::string>> r;
    for (const auto& a : apps) r.push_back(AppRow(a, to, now));
    rows.PrintFirst(r);
  } else if (apps.empty()) {
    ctx.err() << (f.all_namespaces ? std::string("No apps found.")
                                   : absl::StrCat("No apps found in namespace ",
                                                  ctx.Namespace(), "."))
              << "\n";
  } else {
    ctx.out() << AppsTable(apps, to, now);
  }
  ctx.out().flush();
  if (!f.watch) return kExitOk;

  tidal::v1::WatchRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_all_namespaces(f.all_namespaces);
  req.set_label_selector(f.selector);
  req.set_resource_version(rv);
  auto call = ctx.Call(/*stream=*/true);
  auto reader = ctx.Stub().Watch(call.get(), req);
  tidal::v1::WatchEvent ev;
  while (reader->Read(&ev)) {
    if (!name.empty() && ev.app().metadata().name() != name) continue;
    if (f.output == "yaml" || f.output == "json" || f.output == "name") {
      print_one(ev.app());
      continue;
    }
    std::vector<std::string> row = AppRow(ev.app(), to, absl::Now());
    if (ev.type() == "DELETED") row[to.show_namespace ? 4 : 3] = "Deleted";
    rows.Print(row);
  }
  absl::Status s = FromGrpc(reader->Finish());
  if (!s.ok()) return ctx.Fail(s);
  // tidald ends a watch only when it stops: say why the rows stopped.
  return ctx.Error(absl::StrCat("the watch ended: tidald at ", ctx.server(),
                                " closed it (it is stopping)"),
                   kExitFailure);
}

absl::StatusOr<std::vector<tidal::v1::Instance>> ListInstances(
    Context& ctx, bool all, const std::string& app) {
  tidal::v1::ListInstancesRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_all_namespaces(all);
  req.set_app(app);
  tidal::v1::ListInstancesResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().ListInstances(call.get(), req, &resp));
  if (!s.ok()) return s;
  return std::vector<tidal::v1::Instance>(resp.instances().begin(),
                                          resp.instances().end());
}

absl::StatusOr<std::vector<tidal::v1::Event>> ListEvents(Context& ctx, bool all,
                                                         const std::string& app,
                                                         int limit) {
  tidal::v1::ListEventsRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_all_namespaces(all);
  req.set_app(app);
  req.set_limit(limit);
  tidal::v1::ListEventsResponse resp;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().ListEvents(call.get(), req, &resp));
  if (!s.ok()) return s;
  return std::vector<tidal::v1::Event>(resp.events().begin(),
                                       resp.events().end());
}

// Instances and events have no server-side watch: -w polls and prints the
// rows that changed.
template <typename T>
int GetPolled(
    Context& ctx, const GetFlags& f, const std::string& app,
    const std::function<absl::StatusOr<std::vector<T>>()>& list,
    const std::function<std::vector<std::string>(const TableOptions&)>& columns,
    const std::function<std::vector<std::string>(const T&, const TableOptions&,
                                                 absl::Time)>& row,
    const std::function<std::string(const T&)>& key, const char* kind_name) {
  TableOptions to;
  to.wide = f.output == "wide";
  to.show_namespace = f.all_namespaces;
  auto items = list();
  if (!items.ok()) return ctx.Fail(items.status());
  const std::function<std::string(const T&)> item_json = [](const T& it) {
    return MessageJson(it);
  };
  if (absl::Status s = SortItems<T>(&*items, f.sort_by, item_json); !s.ok())
    return ctx.Error(std::string(s.message()), kExitUsage);
  if (Templated(f.output)) {
    std::vector<std::string> docs;
    for (const auto& it : *items) docs.push_back(item_json(it));
    return PrintTemplated(
        ctx, f.output,
        absl::StrCat("{\"items\": [", absl::StrJoin(docs, ","), "]}"), docs);
  }
  auto print_machine = [&](const T& item) {
    if (f.output == "json") {
      ctx.out() << MessageJson(item);
    } else if (f.output == "yaml") {
      ctx.out() << MessageYaml(item);
    } else {
      ctx.out() << kind_name << "/" << key(item) << "\n";
    }
  };
  const bool machine =
      f.output == "json" || f.output == "yaml" || f.output == "name";
  std::map<std::string, std::string> seen;
  RowPrinter rp(ctx, columns(to));
  if (machine) {
    if (f.output == "json" && !f.watch) {
      ctx.out() << "{\n  \"items\": [\n";
      for (size_t i = 0; i < items->size(); ++i) {
        std::string j = MessageJson((*items)[i]);
        while (!j.empty() && j.back() == '\n') j.pop_back();
        ctx.out() << "    " << absl::StrReplaceAll(j, {{"\n", "\n    "}})
                  << (i + 1 < items->size() ? ",\n" : "\n");
      }
      ctx.out() << "  ]\n}\n";
    } else {
      bool first = true;
      for (const auto& it : *items) {
        if (f.output == "yaml" && !first) ctx.out() << "---\n";
        first = false;
        print_machine(it);
      }
    }
  } else if (f.watch) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& it : *items) rows.push_back(row(it, to, absl::Now()));
    rp.PrintFirst(rows);
  } else if (items->empty()) {
    ctx.err() << "No " << kind_name << "s found"
              << (app.empty() ? "" : absl::StrCat(" for app ", app)) << ".\n";
  } else {
    Table t(columns(to));
    for (const auto& it : *items) t.AddRow(row(it, to, absl::Now()));
    ctx.out() << t.Render();
  }
  ctx.out().flush();
  if (!f.watch) return kExitOk;
  for (const auto& it : *items) seen[key(it)] = it.SerializeAsString();
  while (true) {
    absl::SleepFor(absl::Seconds(1));
    auto next = list();
    if (!next.ok()) return ctx.Fail(next.status());
    for (const auto& it : *next) {
      std::string bytes = it.SerializeAsString();
      auto [pos, inserted] = seen.emplace(key(it), bytes);
      if (!inserted && pos->second == bytes) continue;
      pos->second = bytes;
      if (machine) {
        if (f.output == "yaml") ctx.out() << "---\n";
        print_machine(it);
        ctx.out().flush();
      } else {
        rp.Print(row(it, to, absl::Now()));
      }
    }
  }
}

int DoGet(Context& ctx, const GetFlags& f) {
  if (!f.args.empty() && (f.args[0] == "revisions" || f.args[0] == "revision" ||
                          f.args[0] == "rev")) {
    if (f.watch) return ctx.Error("get revisions: no --watch", kExitUsage);
    if (!f.output.empty() && f.output != "json" && f.output != "yaml")
      return ctx.Error(absl::StrCat("get revisions: -o ", f.output,
                                    " is not supported (json or yaml)"),
                       kExitUsage);
    return GetRevisions(ctx, f.args, f.output);  // rollout_commands.cc
  }
  if (!f.args.empty() &&
      (f.args[0] == "leader" || f.args[0] == "nodes" || f.args[0] == "node")) {
    if (f.watch)
      return ctx.Error(absl::StrCat("get ", f.args[0], ": no --watch"),
                       kExitUsage);
    return GetCluster(ctx, f.args, f.output);  // cluster_commands.cc
  }
  if (!f.args.empty() && (f.args[0] == "secrets" || f.args[0] == "secret")) {
    if (f.watch) return ctx.Error("get secrets: no --watch", kExitUsage);
    return GetSecrets(ctx, f.args, f.all_namespaces, f.selector,
                      f.output);  // secret_commands.cc
  }
  Kind kind;
  if (f.args.empty() || !ParseKind(f.args[0], &kind)) {
    return ctx.Error(
        absl::StrCat(
            f.args.empty() ? "get: what? "
                           : "get: unknown type \"" + f.args[0] + "\"; ",
            "use apps, instances, events, revisions, secrets, leader or nodes"),
        kExitUsage);
  }
  if (f.args.size() > 2)
    return ctx.Error("get: give at most one NAME", kExitUsage);
  if (f.watch && (Templated(f.output) || !f.sort_by.empty()))
    return ctx.Error(
        "get: -w does not go with -o jsonpath=, custom-columns= "
        "or --sort-by",
        kExitUsage);
  if (f.show_labels && kind != Kind::kApps)
    return ctx.Error(
        "get: --show-labels is for apps (instances and events "
        "take their app's labels: -l selects by them)",
        kExitUsage);
  const std::string name = f.args.size() > 1 ? f.args[1] : "";
  if (!f.selector.empty()) {
    auto sel = LabelSelector::Parse(f.selector);
    if (!sel.ok())
      return ctx.Error(std::string(sel.status().message()), kExitUsage);
  }
  switch (kind) {
    case Kind::kApps:
      return GetApps(ctx, f, name);
    case Kind::kInstances:
      return GetPolled<tidal::v1::Instance>(
          ctx, f, name,
          [&] {
            return OfSelectedApps<tidal::v1::Instance>(
                ctx, f, ListInstances(ctx, f.all_namespaces, name),
                [](const tidal::v1::Instance& i) {
                  return absl::StrCat(i.namespace_(), "/", i.app());
                });
          },
          InstanceColumns, InstanceRow,
          [](const tidal::v1::Instance& i) { return i.id(); }, "instance");
    case Kind::kEvents:
      return GetPolled<tidal::v1::Event>(
          ctx, f, name,
          [&] {
            return OfSelectedApps<tidal::v1::Event>(
                ctx, f, ListEvents(ctx, f.all_namespaces, name, 0),
                [](const tidal::v1::Event& e) {
                  return absl::StrCat(e.involved().namespace_(), "/",
                                      e.involved().name());
                });
          },
          EventColumns, EventRow,
          [](const tidal::v1::Event& e) {
            return e.id().empty()
                       ? absl::StrCat(e.involved().name(), "/", e.reason())
                       : e.id();
          },
          "event");
  }
  return kExitUsage;
}

struct DescribeFlags {
  std::vector<std::string> args;
  int events = 20;
};

int DoDescribe(Context& ctx, const DescribeFlags& f) {
  if (f.args.size() == 2 && (f.args[0] == "secret" || f.args[0] == "secrets"))
    return DescribeSecret(ctx, f.args[1]);  // secret_commands.cc
  Kind kind;
  if (f.args.size() != 2 || !ParseKind(f.args[0], &kind) ||
      kind != Kind::kApps) {
    return ctx.Error("usage: tidalctl describe app NAME | secret NAME",
                     kExitUsage);
  }
  tidal::v1::GetRequest req;
  req.set_namespace_(ctx.Namespace());
  req.set_name(f.args[1]);
  tidal::v1::App app;
  auto call = ctx.Call();
  absl::Status s = FromGrpc(ctx.Stub().Get(call.get(), req, &app));
  if (!s.ok()) return ctx.Fail(s);
  // Instances and events are best effort: a tidald without a runtime has none.
  std::vector<tidal::v1::Instance> instances;
  if (auto r = ListInstances(ctx, false, f.args[1]); r.ok())
    instances = std::move(*r);
  std::vector<tidal::v1::Event> events;
  if (auto r = ListEvents(ctx, false, f.args[1], f.events); r.ok())
    events = std::move(*r);
  // The load of the last hour, from tidald's history (best effort too).
  tidal::v1::HistoryRequest hreq;
  hreq.set_namespace_(ctx.Namespace());
  hreq.set_app(f.args[1]);
  hreq.set_window_seconds(3600);
  tidal::v1::HistoryResponse hist;
  auto hcall = ctx.Call();
  const bool loaded = ctx.Stub().History(hcall.get(), hreq, &hist).ok() &&
                      hist.apps_size() == 1;
  ctx.out() << DescribeApp(app, instances, events, absl::Now(),
                           loaded ? &hist.apps(0) : nullptr);
  return kExitOk;
}

}  // namespace

void AddGetCommands(CLI::App& root, Context& ctx) {
  auto gf = std::make_shared<GetFlags>();
  CLI::App* get =
      root.add_subcommand("get",
                          "List apps, instances or events: get apps|app [NAME] "
                          "| instances [APP] | events [APP] | revisions APP "
                          "| secrets [NAME] | leader | nodes");
  get->add_option("args", gf->args, "TYPE [NAME]")->required();
  get->add_flag("-A,--all-namespaces", gf->all_namespaces, "every namespace");
  get->add_option("-l,--selector", gf->selector,
                  "label selector: k=v, k!=v, k in (a,b), k notin (a), k, !k "
                  "(comma = and)");
  get->add_option("-o,--output", gf->output,
                  "wide | yaml | json | name | jsonpath=TEMPLATE | "
                  "custom-columns=HEADER:JSONPATH,...")
      ->transform(CLI::Validator(
          [](std::string& v) -> std::string {
            // kubectl's -o=FORMAT reaches here as "=FORMAT".
            if (!v.empty() && v[0] == '=') v.erase(0, 1);
            if (v == "wide" || v == "yaml" || v == "json" || v == "name" ||
                Templated(v))
              return "";
            return "must be wide, yaml, json, name, jsonpath=TEMPLATE or "
                   "custom-columns=SPEC, got " +
                   v;
          },
          "FORMAT", "OutputFormat"));
  get->add_flag("-w,--watch", gf->watch, "keep printing rows as they change");
  get->add_flag("--show-labels", gf->show_labels,
                "apps: a LABELS column with every label");
  get->add_option("--chunk-size", gf->chunk_size,
                  "read apps from tidald in pages of this many (0: in one "
                  "answer)")
      ->check(CLI::NonNegativeNumber);
  get->add_option("--sort-by", gf->sort_by,
                  "order the list by a JSONPath of each item, e.g. "
                  ".metadata.creationTimestamp or .status.readyReplicas");
  get->footer(
      "Resource types (aliases):\n"
      "  apps (app, application)      get apps [NAME]\n"
      "  instances (instance, inst)   get instances [APP]\n"
      "  events (event, ev)           get events [APP]\n"
      "  revisions (revision, rev)    get revisions APP\n"
      "  secrets (secret)             get secrets [NAME]\n"
      "  leader                       get leader (HA)\n"
      "  nodes (node)                 get nodes (HA)\n"
      "Field paths for -o jsonpath=, custom-columns= and --sort-by: "
      "`tidalctl get apps -o json`, `tidalctl explain app`.");
  get->callback([&ctx, gf] {
    RunOnResources(ctx, &gf->args, [&] { return DoGet(ctx, *gf); });
  });

  auto df = std::make_shared<DescribeFlags>();
  CLI::App* describe =
      root.add_subcommand("describe",
                          "Show an app in detail: spec, status, conditions, "
                          "instances, recent events");
  describe->add_option("args", df->args, "app NAME | secret NAME")->required();
  describe->add_option("--events", df->events, "how many recent events")
      ->capture_default_str();
  describe->callback([&ctx, df] {
    RunOnResources(ctx, &df->args, [&] { return DoDescribe(ctx, *df); });
  });
}

}  // namespace tidal::cli
