#pragma once

// Finding and loading the configuration for a verb, with every diagnostic reported the same
// way whichever verb asked.

#include "portico/config/config.hpp"

#include <filesystem>
#include <optional>
#include <string>

namespace portico::cli {

/// The configuration file as the user should read it, or "built-in default".
std::string display_name(const config::location& where);

/// A valid configuration and where it came from.
struct loaded_config {
    config::config value;
    config::location where;

    std::string display_name() const { return cli::display_name(where); }
};

/**
 * Applies the lookup order (`-c`, `PORTICO_CONFIG`, `./portico.yaml`,
 * `./config/portico.yaml`, built-in default) from the current directory and loads the file.
 *
 * Warnings go to stderr as `warning: file:line:col: ...`. When the file is missing or
 * invalid, every error goes to stderr, one per line, then a summary line
 * (`portico: 3 errors in portico.yaml`), and the result is empty: the verb exits 1.
 * Once `run` has configured JSON logging, the same reports are JSON log lines.
 * `for_serving` (run, check, and a reload through `load_again`) adds the checks that
 * serving the file needs beyond it: user certificates that load, the CA's names.
 */
std::optional<loaded_config> load_config(const std::optional<std::filesystem::path>& cli_file,
                                         bool for_serving = false);

/**
 * Loads the file at `where` again (a reload), reporting warnings and errors as
 * `load_config` does. On failure returns nothing and sets `errors` to the diagnostics, one
 * `file:line:col: message` per line.
 */
std::optional<config::config> load_again(const config::location& where, std::string& errors);

} // namespace portico::cli
