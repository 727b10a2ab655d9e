#pragma once

// `portico ca path|install|uninstall`: where the local CA lives, and trusting it.

#include <filesystem>
#include <optional>

namespace portico::cli {

/// The `ca` actions.
enum class ca_action {
    path,      ///< print the absolute path of ca.pem
    install,   ///< add the CA to the trust stores
    uninstall, ///< remove it from them again
};

/**
 * Runs `portico ca ACTION` on the configuration found from `cli_file` (its `tls.ca_dir` and
 * `tls.ca_permitted_names`). `path` and `install` create the CA when it does not exist yet;
 * `uninstall` never creates or deletes it. Results go to stdout, errors to stderr.
 *
 * `install` and `uninstall` print one line per trust store (`installed:`, `already
 * installed:`, `removed:`, `not installed:`, `skipped: ... (reason)`); the stores to touch
 * can be narrowed with PORTICO_TRUST_STORES (`system`, `nss`).
 * @return 0; 1 when the configuration or the CA is unusable, or a store that was attempted
 *         failed (its command and stderr are printed).
 */
int ca_command(ca_action action, const std::optional<std::filesystem::path>& cli_file);

} // namespace portico::cli
