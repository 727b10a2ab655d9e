#pragma once

// The route table as people and scripts read it, and the verbs that print it.

#include "portico/admin/observatory.hpp"
#include "portico/config/config.hpp"

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace portico::cli {

/// A route's non-default options, comma-separated (`strip_prefix,redirect_https`), or "-".
std::string route_flags(const config::route& r);

/**
 * The route table as lines without newlines: a header (`HOST PATH TARGET FLAGS`, with STATE
 * before FLAGS when `states` is given), then one line per route in file order, columns
 * aligned and separated by at least two spaces. TARGET is `to` as written in the file;
 * STATE is the backend's state word (`up`, `down`, `exposed`) keyed by that text.
 */
std::vector<std::string>
format_route_table(const std::vector<config::route>& routes,
                   const std::map<std::string, admin::backend_state>* states = nullptr);

/**
 * Logs where the configuration came from and its route table (`run` at start and after a
 * reload): text lines for a person, one object per route in JSON; beyond 100 routes only
 * their number.
 */
void log_route_table(const config::location& where, const std::vector<config::route>& routes);

/**
 * `portico check`: validates the configuration and prints `config: FILE (N routes)` and the
 * table to stdout.
 * @return 0, or 1 when the configuration is missing or invalid.
 */
int check_command(const std::optional<std::filesystem::path>& cli_file);

/**
 * `portico routes`: probes each backend (bounded) and prints the table with its state
 * (header and rows only) to stdout.
 * @return 0, or 1 when the configuration is missing or invalid.
 */
int routes_command(const std::optional<std::filesystem::path>& cli_file);

} // namespace portico::cli
