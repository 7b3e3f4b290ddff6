// completion bash|zsh|fish: shell completion scripts, written from the
// command tree itself (every command, subcommand and flag), with app names
// asked of tidald (`tidalctl get apps -o name`) where a command takes APP.

#include <CLI/CLI.hpp>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/cli.h"

namespace tidal::cli {
namespace {

// A command's words: its subcommands and its flags.
struct Words {
  std::vector<std::string> subcommands;
  std::vector<std::string> flags;
  std::string description;
};

std::vector<std::string> FlagsOf(const CLI::App& app) {
  std::vector<std::string> out;
  for (const CLI::Option* o : app.get_options(
           [](const CLI::Option* o) { return !o->get_positional(); })) {
    for (const auto& l : o->get_lnames()) out.push_back("--" + l);
    for (const auto& s : o->get_snames()) out.push_back("-" + s);
  }
  return out;
}

// "" for the root, "get", "rollout status" ...: each command's words.
void Collect(const CLI::App& app, const std::string& path,
             std::map<std::string, Words>* out) {
  Words& w = (*out)[path];
  w.flags = FlagsOf(app);
  w.description = app.get_description();
  for (const CLI::App* s :
       app.get_subcommands([](const CLI::App*) { return true; })) {
    w.subcommands.push_back(s->get_name());
    Collect(*s, path.empty() ? s->get_name() : path + " " + s->get_name(), out);
  }
}

// Commands whose first argument is an app name.
bool TakesApp(const std::string& path) {
  static const std::set<std::string> kApp = {"scale",    "logs",   "edit",
                                             "describe", "delete", "get"};
  return kApp.count(path) > 0 || path.rfind("rollout ", 0) == 0;
}

std::string Bash(const std::map<std::string, Words>& tree) {
  std::ostringstream s;
  s << "# bash completion for tidalctl: source <(tidalctl completion bash)\n"
       "__tidalctl_apps() {\n"
       "  tidalctl get apps -o name 2>/dev/null | sed 's|^app.tidal.dev/||'\n"
       "}\n"
       "_tidalctl() {\n"
       "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" path=\"\" w i\n"
       "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
       "    w=\"${COMP_WORDS[i]}\"\n"
       "    case \"$w\" in\n"
       "      --server|--timeout|-n|--namespace|--token|--context|"
       "--certificate-authority|--client-certificate|--client-key|"
       "--tls-server-name) ((i++)) ;;\n"
       "      -*) ;;\n"
       "      *) case \" $(__tidalctl_subcommands \"$path\") \" in\n"
       "           *\" $w \"*) path=\"${path:+$path }$w\" ;;\n"
       "         esac ;;\n"
       "    esac\n"
       "  done\n"
       "  local words=\"$(__tidalctl_subcommands \"$path\") "
       "$(__tidalctl_flags \"$path\")\"\n"
       "  case \"$path\" in\n";
  for (const auto& [path, w] : tree) {
    if (!TakesApp(path) || !w.subcommands.empty()) continue;
    s << "    \"" << path << "\") words=\"$words $(__tidalctl_apps)\" ;;\n";
  }
  s << "  esac\n"
       "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
       "}\n"
       "__tidalctl_subcommands() {\n"
       "  case \"$1\" in\n";
  for (const auto& [path, w] : tree) {
    if (w.subcommands.empty()) continue;
    s << "    \"" << path << "\") echo \"" << absl::StrJoin(w.subcommands, " ")
      << "\" ;;\n";
  }
  s << "  esac\n"
       "}\n"
       "__tidalctl_flags() {\n"
       "  case \"$1\" in\n";
  for (const auto& [path, w] : tree) {
    s << "    \"" << path << "\") echo \"" << absl::StrJoin(w.flags, " ")
      << "\" ;;\n";
  }
  s << "  esac\n"
       "}\n"
       "complete -F _tidalctl tidalctl\n";
  return s.str();
}

std::string Fish(const std::map<std::string, Words>& tree) {
  std::ostringstream s;
  s << "# fish completion for tidalctl: tidalctl completion fish | source\n"
       "function __tidalctl_apps\n"
       "  tidalctl get apps -o name 2>/dev/null | string replace "
       "'app.tidal.dev/' ''\n"
       "end\n"
       "complete -c tidalctl -f\n";
  auto quote = [](const std::string& t) {
    return absl::StrCat("'", absl::StrReplaceAll(t, {{"'", "\\'"}}), "'");
  };
  for (const auto& [path, w] : tree) {
    // The condition: the words of `path` seen, and no subcommand after it.
    std::string cond;
    if (path.empty()) {
      cond = "__fish_use_subcommand";
    } else {
      cond = absl::StrCat("__fish_seen_subcommand_from ",
                          path.substr(path.rfind(' ') + 1));
    }
    for (const auto& sub : w.subcommands) {
      s << "complete -c tidalctl -n " << quote(cond) << " -a " << sub << "\n";
    }
    for (const auto& f : w.flags) {
      s << "complete -c tidalctl -n " << quote(cond) << " "
        << (f.rfind("--", 0) == 0 ? "-l " + f.substr(2) : "-s " + f.substr(1))
        << "\n";
    }
    if (TakesApp(path) && w.subcommands.empty()) {
      s << "complete -c tidalctl -n " << quote(cond)
        << " -a '(__tidalctl_apps)'\n";
    }
  }
  return s.str();
}

}  // namespace

void AddCompletionCommand(CLI::App& root, Context& ctx) {
  auto shell = std::make_shared<std::string>();
  CLI::App* c = root.add_subcommand(
      "completion",
      "Print a shell completion script: bash (source <(tidalctl completion "
      "bash)), zsh (source <(tidalctl completion zsh)) or fish (tidalctl "
      "completion fish | source)");
  c->add_option("shell", *shell, "bash | zsh | fish")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  c->callback([&ctx, &root, shell] {
    std::map<std::string, Words> tree;
    Collect(root, "", &tree);
    if (*shell == "fish") {
      ctx.out() << Fish(tree);
    } else if (*shell == "zsh") {
      ctx.out() << "#compdef tidalctl\n"
                   "autoload -U +X bashcompinit && bashcompinit\n"
                << Bash(tree);
    } else {
      ctx.out() << Bash(tree);
    }
    ctx.exit_code = kExitOk;
  });
}

}  // namespace tidal::cli
