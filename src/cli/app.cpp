#include "portico/cli/app.hpp"

#include "cli/ca.hpp"
#include "cli/doctor.hpp"
#include "cli/hosts.hpp"
#include "cli/route_listing.hpp"
#include "cli/run.hpp"
#include "portico/core/log.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#ifndef PORTICO_VERSION
#error "PORTICO_VERSION must be defined by the build (src/CMakeLists.txt)"
#endif

namespace portico::cli {
namespace {

constexpr std::string_view program = "portico";

/// Everything the command line can set; read once parsing succeeded.
struct arguments {
    std::string config_file; ///< `-c`; empty when absent (an empty value is refused)
    std::string log_level = "info";
    std::string log_format = "text";
    bool hosts_apply = false;
    bool hosts_remove = false;
};

/// The verbs, kept to dispatch on the one that was parsed.
struct verbs {
    CLI::App* run = nullptr;
    CLI::App* check = nullptr;
    CLI::App* routes = nullptr;
    CLI::App* ca = nullptr;
    std::vector<std::pair<CLI::App*, ca_action>> ca_actions; ///< `path`, `install`, `uninstall`
    CLI::App* hosts = nullptr;
    CLI::App* doctor = nullptr;
    CLI::App* version = nullptr;
};

void add_config_option(CLI::App& verb, arguments& args)
{
    verb.add_option("-c,--config", args.config_file,
                    "configuration file (default: see 'portico --help')")
        ->type_name("FILE")
        ->check([](const std::string& value) {
            return value.empty() ? std::string("must name a file") : std::string();
        });
}

verbs define_verbs(CLI::App& app, arguments& args)
{
    verbs v;
    v.run = app.add_subcommand("run", "serve the configuration (the default command)");
    add_config_option(*v.run, args);
    v.run->add_option("--log-level", args.log_level, "lowest level logged (default: info)")
        ->type_name("LEVEL")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
    v.run->add_option("--log-format", args.log_format, "log line encoding (default: text)")
        ->type_name("FORMAT")
        ->check(CLI::IsMember({"text", "json"}));

    v.check = app.add_subcommand("check", "validate the configuration and print the route table");
    add_config_option(*v.check, args);

    v.routes = app.add_subcommand("routes", "print the route table with each backend's state (host, path, target, state, flags)");
    add_config_option(*v.routes, args);

    v.ca = app.add_subcommand("ca", "the local certificate authority");
    v.ca->require_subcommand(1);
    for (const auto& [name, help, action] : {
             std::tuple{"path", "print the path of the CA certificate, creating the CA if needed",
                        ca_action::path},
             std::tuple{"install", "add the CA to the system and browser trust stores",
                        ca_action::install},
             std::tuple{"uninstall", "remove the CA from the trust stores", ca_action::uninstall},
         }) {
        auto* sub = v.ca->add_subcommand(name, help);
        add_config_option(*sub, args);
        v.ca_actions.emplace_back(sub, action);
    }

    v.hosts = app.add_subcommand("hosts", "print /etc/hosts lines for names not under .localhost");
    add_config_option(*v.hosts, args);
    auto* apply = v.hosts->add_flag("--apply", args.hosts_apply, "add the lines to /etc/hosts");
    auto* remove =
        v.hosts->add_flag("--remove", args.hosts_remove, "remove portico's lines from /etc/hosts");
    apply->excludes(remove);
    remove->excludes(apply);

    v.doctor =
        app.add_subcommand("doctor", "diagnose ports, privileges, CA trust and name resolution");
    add_config_option(*v.doctor, args);

    v.version = app.add_subcommand("version", "print the version");
    return v;
}

bool is_help_flag(std::string_view arg) { return arg == "-h" || arg == "--help"; }

/**
 * The arguments with `run` inserted when no verb is given: CLI11 2.1 has no default
 * subcommand, and defining run's options twice (on the app and on `run`) would let them
 * leak into every other verb.
 */
std::vector<const char*> with_default_verb(int argc, char** argv)
{
    std::vector<const char*> out(argv, argv + argc);
    if (argc < 2) {
        out.push_back("run");
    } else if (std::string_view(argv[1]) == "--version" && argc == 2) {
        out[1] = "version"; // what other tools answer to, beside the verb
    } else if (argv[1][0] == '-' && !is_help_flag(argv[1])) {
        out.insert(out.begin() + 1, "run");
    }
    return out;
}

/// The innermost verb selected so far (`path` in `portico ca path`), or the app itself.
const CLI::App& innermost(const CLI::App& app)
{
    const CLI::App* sub = &app;
    while (!sub->get_subcommands().empty()) {
        sub = sub->get_subcommands().front();
    }
    return *sub;
}

/// "portico ca path" for the verbs selected so far, to point at the right --help.
std::string selected_command(const CLI::App& app)
{
    std::string name(program);
    for (const auto* sub = &app; !sub->get_subcommands().empty();) {
        sub = sub->get_subcommands().front();
        name += ' ';
        name += sub->get_name();
    }
    return name;
}

/**
 * The problem in a failed parse, in words that name what the user typed. CLI11 lists
 * unexpected arguments in reverse and says only "A subcommand is required" for `portico ca`.
 */
std::string describe_parse_error(const CLI::ParseError& e, const CLI::App& app)
{
    const auto& verb = innermost(app);
    const auto unexpected = verb.remaining();
    const auto actions = verb.get_subcommands({});
    if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && !actions.empty()) {
        std::vector<std::string> names;
        for (const auto* action : actions) {
            names.push_back(action->get_name());
        }
        const auto command = selected_command(app);
        if (!unexpected.empty()) {
            return fmt::format("unknown command '{}' for '{}' (expected {})", unexpected.front(),
                               command, fmt::join(names, ", "));
        }
        return fmt::format("'{}' needs one of: {}", command, fmt::join(names, ", "));
    }
    if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr && !unexpected.empty()) {
        return fmt::format("unexpected {} '{}'", unexpected.size() == 1 ? "argument" : "arguments",
                           fmt::join(unexpected, " "));
    }
    return e.what();
}

int usage_error(std::string_view problem, std::string_view command)
{
    fmt::print(stderr, "{}: {}\nrun '{} --help' for usage\n", program, problem, command);
    return exit_usage;
}

std::optional<std::filesystem::path> config_path(const arguments& args)
{
    if (args.config_file.empty()) {
        return std::nullopt;
    }
    return std::filesystem::path(args.config_file);
}

int dispatch(const CLI::App& app, const verbs& v, const arguments& args)
{
    const auto selected = app.get_subcommands();
    if (selected.empty()) {
        return usage_error("no command given", program);
    }
    const CLI::App* verb = selected.front();
    if (verb == v.run) {
        // Both values were checked by CLI11 against the same names the facade parses.
        return run_command({config_path(args), log::parse_level(args.log_level).value(),
                            log::parse_format(args.log_format).value()});
    }
    if (verb == v.check) {
        return check_command(config_path(args));
    }
    if (verb == v.routes) {
        return routes_command(config_path(args));
    }
    if (verb == v.ca) {
        // require_subcommand(1) made sure exactly one action was parsed.
        for (const auto& [sub, action] : v.ca_actions) {
            if (sub->parsed()) {
                return ca_command(action, config_path(args));
            }
        }
    }
    if (verb == v.version) {
        fmt::print("{} {}\n", program, PORTICO_VERSION);
        return exit_ok;
    }
    if (verb == v.hosts) {
        return hosts_command(args.hosts_apply    ? hosts_action::apply
                             : args.hosts_remove ? hosts_action::remove
                                                 : hosts_action::print,
                             config_path(args));
    }
    if (verb == v.doctor) {
        return doctor_command(config_path(args));
    }
    return usage_error("unknown command", program);
}

int parse_and_dispatch(int argc, char** argv)
{
    CLI::App app("portico: a local development reverse proxy", std::string(program));
    app.require_subcommand(0, 1);
    arguments args;
    const verbs v = define_verbs(app, args);
    // Set after the verbs exist: CLI11 copies an app's footer into subcommands created later.
    app.footer("Without a command portico runs: 'portico -c FILE' is 'portico run -c FILE'.\n"
               "Without -c the configuration is $PORTICO_CONFIG, else ./portico.yaml, else\n"
               "./config/portico.yaml, else the built-in default.\n"
               "Run 'portico COMMAND --help' for the options of a command.");

    // CLI11 would call an unknown verb "an argument not expected"; name it for what it is.
    if (argc >= 2 && argv[1][0] != '-') {
        const std::string first = argv[1];
        const auto known = app.get_subcommands(
            [&first](const CLI::App* sub) { return sub->check_name(first); });
        if (known.empty()) {
            return usage_error(fmt::format("unknown command '{}'", first), program);
        }
    }

    const auto args_with_verb = with_default_verb(argc, argv);
    try {
        app.parse(static_cast<int>(args_with_verb.size()), args_with_verb.data());
    } catch (const CLI::CallForHelp& help) {
        return app.exit(help); // help of the selected verb, on stdout, exit 0
    } catch (const CLI::ParseError& e) {
        return usage_error(describe_parse_error(e, app), selected_command(app));
    }
    return dispatch(app, v, args);
}

} // namespace

int main(int argc, char** argv)
{
    try {
        return parse_and_dispatch(argc, argv);
    } catch (const std::exception& e) {
        // Modules report expected failures as values; reaching this is a bug, and a clear
        // line beats std::terminate's abort.
        fmt::print(stderr, "{}: unexpected error: {}\n", program, e.what());
        return exit_config;
    }
}

} // namespace portico::cli
