#include "cli/route_listing.hpp"

#include "cli/config_source.hpp"
#include "portico/cli/app.hpp"
#include "portico/routing/route_table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdio>

namespace portico::cli {
namespace {

constexpr std::size_t column_count = 4;
using row = std::array<std::string, column_count>;

/// Loads the configuration, builds the table the proxy would use and prints it to stdout.
int list_routes(const std::optional<std::filesystem::path>& cli_file, bool show_origin)
{
    const auto loaded = load_config(cli_file);
    if (!loaded) {
        return exit_config;
    }
    const routing::route_table table(loaded->value);
    if (show_origin) {
        const auto count = table.routes().size();
        fmt::print("config: {} ({} {})\n", loaded->display_name(), count,
                   count == 1 ? "route" : "routes");
    }
    for (const auto& line : format_route_table(table.routes())) {
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

std::vector<std::string> format_route_table(const std::vector<config::route>& routes)
{
    std::vector<row> rows;
    rows.reserve(routes.size() + 1);
    rows.push_back({"HOST", "PATH", "TARGET", "FLAGS"});
    for (const auto& r : routes) {
        rows.push_back({r.host, r.path.empty() ? std::string("/") : r.path, r.to.text,
                        route_flags(r)});
    }

    std::array<std::size_t, column_count> widths{};
    for (const auto& cells : rows) {
        for (std::size_t i = 0; i < column_count; ++i) {
            widths[i] = std::max(widths[i], cells[i].size());
        }
    }

    std::vector<std::string> lines;
    lines.reserve(rows.size());
    for (const auto& cells : rows) {
        // The last column is not padded: no trailing blanks.
        lines.push_back(fmt::format("{:<{}}  {:<{}}  {:<{}}  {}", cells[0], widths[0], cells[1],
                                    widths[1], cells[2], widths[2], cells[3]));
    }
    return lines;
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
