#include "cli/route_listing.hpp"

#include "cli/config_source.hpp"
#include "portico/cli/app.hpp"
#include "portico/core/log.hpp"
#include "portico/routing/route_table.hpp"
#include "portico/tls/certificates.hpp"

#include <fmt/format.h>

#include "portico/admin/probe.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

namespace portico::cli {
namespace {

using row = std::vector<std::string>;

// `run` logs the route table line by line up to this many routes, and a count beyond.
constexpr std::size_t max_logged_routes = 100;

// `routes` waits at most this long for a backend to accept a connection.
constexpr auto probe_timeout = std::chrono::milliseconds(500);

/// Loads the configuration, builds the table the proxy would use and prints it to stdout.
int list_routes(const std::optional<std::filesystem::path>& cli_file, bool show_origin)
{
    // `check` answers whether `run` would start: it runs the same checks.
    const auto loaded = load_config(cli_file, /*for_serving=*/show_origin);
    if (!loaded) {
        return exit_config;
    }
    if (show_origin) {
        // `run` could not start on a damaged CA (it exits 3); `check` says so, as a failed
        // check.
        if (const auto problem = tls::damaged_ca(loaded->value.tls.ca_dir); !problem.empty()) {
            fmt::print(stderr, "portico: cannot use the local CA: {}\n", problem);
            return exit_config;
        }
    }
    const routing::route_table table(loaded->value);
    if (show_origin) {
        const auto count = table.routes().size();
        fmt::print("config: {} ({} {})\n", loaded->display_name(), count,
                   count == 1 ? "route" : "routes");
    }
    std::optional<std::map<std::string, admin::backend_state>> states;
    if (!show_origin) {
        states = admin::probe_backends_now(admin::backends_of(table.routes()), probe_timeout);
    }
    for (const auto& line : format_route_table(table.routes(), states ? &*states : nullptr)) {
        fmt::print("{}\n", line);
    }
    return exit_ok;
}

} // namespace

std::string route_flags(const config::route& r)
{
    std::vector<std::string> flags;
    if (r.strip_prefix) {
        flags.emplace_back("strip_prefix");
    }
    if (r.host_header == config::host_header_policy::backend) {
        flags.emplace_back("host_header=backend");
    } else if (r.host_header == config::host_header_policy::literal) {
        flags.push_back("host_header=" + r.host_header_value);
    }
    if (!r.request_headers.empty() || !r.response_headers.empty()) {
        flags.emplace_back("headers");
    }
    if (r.insecure_skip_verify) {
        flags.emplace_back("insecure_skip_verify");
    }
    if (r.redirect_https) {
        flags.emplace_back("redirect_https");
    }
    if (r.tls_passthrough) {
        flags.emplace_back("tls_passthrough");
    }
    // "-" keeps the column count fixed, so `awk '{print $4}'` still works.
    return flags.empty() ? std::string("-") : fmt::format("{}", fmt::join(flags, ","));
}

std::vector<std::string>
format_route_table(const std::vector<config::route>& routes,
                   const std::map<std::string, admin::backend_state>* states)
{
    std::vector<row> rows;
    rows.reserve(routes.size() + 1);
    rows.push_back(states != nullptr ? row{"HOST", "PATH", "TARGET", "STATE", "FLAGS"}
                                     : row{"HOST", "PATH", "TARGET", "FLAGS"});
    for (const auto& r : routes) {
        // A socket path as resolved (`~`, `${VAR}`, relative to the file), which is where
        // portico connects; other targets as written.
        row cells{r.host, r.path.empty() ? std::string("/") : r.path,
                  r.to.scheme == config::backend_scheme::unix_socket
                      ? "unix:" + r.to.socket_path.string()
                      : r.to.text};
        if (states != nullptr) {
            const auto it = states->find(r.to.text);
            cells.emplace_back(admin::to_string(it == states->end() ? admin::backend_state::unknown
                                                                    : it->second));
        }
        cells.push_back(route_flags(r));
        rows.push_back(std::move(cells));
    }

    std::vector<std::size_t> widths(rows.front().size(), 0);
    for (const auto& cells : rows) {
        for (std::size_t i = 0; i < cells.size(); ++i) {
            widths[i] = std::max(widths[i], cells[i].size());
        }
    }

    std::vector<std::string> lines;
    lines.reserve(rows.size());
    for (const auto& cells : rows) {
        std::string line;
        for (std::size_t i = 0; i + 1 < cells.size(); ++i) {
            fmt::format_to(std::back_inserter(line), "{:<{}}  ", cells[i], widths[i]);
        }
        // The last column is not padded: no trailing blanks.
        line += cells.back();
        lines.push_back(std::move(line));
    }
    return lines;
}

/// The configuration line and the table: text lines for a person, one object per route in JSON.
void log_route_table(const config::location& where, const std::vector<config::route>& routes)
{
    const auto name = display_name(where);
    log::notice("config",
                fmt::format("config: {} ({} {})", name, routes.size(),
                            routes.size() == 1 ? "route" : "routes"),
                {{"file", name}, {"routes", routes.size()}});

    // A generated configuration can hold thousands of routes: formatting them and writing a
    // line each to unbuffered stderr then costs more than the rest of start-up, and such a
    // table is read with `portico routes`, not in a log.
    if (routes.size() > max_logged_routes) {
        log::notice("routes_not_listed",
                    fmt::format("{} routes; 'portico routes' lists them", routes.size()),
                    {{"routes", routes.size()}});
        return;
    }
    const auto lines = format_route_table(routes);
    if (log::current_format() == log::format::text) {
        log::notice("route_header", lines.front(), {});
    }
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const auto& r = routes[i];
        log::notice("route", lines[i + 1],
                    {{"host", r.host}, {"path", r.path}, {"to", r.to.text},
                     {"flags", route_flags(r)}});
    }
}

int check_command(const std::optional<std::filesystem::path>& cli_file)
{
    return list_routes(cli_file, true);
}

int routes_command(const std::optional<std::filesystem::path>& cli_file)
{
    return list_routes(cli_file, false);
}

} // namespace portico::cli
