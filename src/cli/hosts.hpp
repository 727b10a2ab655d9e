#pragma once

// `portico hosts`: names that do not resolve to loopback by themselves (everything outside
// `.localhost`) as /etc/hosts lines, and adding or removing them as one marked block.

#include "portico/config/config.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico::cli {

/// What `hosts` does.
enum class hosts_action { print, apply, remove };

/// The exact names of `cfg` (routes and the admin host) that need a hosts entry: not under
/// `.localhost`, not `localhost`, not an IP literal; in file order, without duplicates.
std::vector<std::string> names_needing_hosts_entries(const config::config& cfg);

/// The wildcard route hosts, which a hosts file cannot express.
std::vector<std::string> wildcard_hosts(const config::config& cfg);

/// `text` (a hosts file) without portico's block; the rest is kept byte for byte. nullopt
/// with `error` set when a block begins and does not end.
std::optional<std::string> without_portico_block(std::string_view text, std::string& error);

/// `text` with portico's block (for `names`) replacing any earlier one, at the end; nullopt
/// as `without_portico_block`.
std::optional<std::string> with_portico_block(std::string_view text,
                                              const std::vector<std::string>& names,
                                              std::string& error);

/**
 * Runs `portico hosts`. `print` writes `127.0.0.1 NAME` lines to stdout; `apply` and `remove`
 * change the hosts file (PORTICO_HOSTS_FILE, default /etc/hosts) and say what they did.
 * @return 0, 1 when the configuration is invalid or the file cannot be changed.
 */
int hosts_command(hosts_action action, const std::optional<std::filesystem::path>& cli_file);

} // namespace portico::cli
