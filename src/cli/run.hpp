#pragma once

// `portico run`: the long-running verb. Everything it needs arrives parsed in `run_options`,
// so the command line and the serving code stay apart.

#include "portico/core/log.hpp"

#include <filesystem>
#include <optional>

namespace portico::cli {

/// What `portico run` was asked to do.
struct run_options {
    std::optional<std::filesystem::path> config_file; ///< `-c`; empty: apply the lookup
    log::level log_level = log::level::info;
    log::format log_format = log::format::text;
};

/**
 * Configures logging, loads the configuration and serves it. Everything goes to stderr.
 * @return 0 after a clean stop, 1 when the configuration is missing or invalid,
 *         3 when portico could not bind or start.
 */
int run_command(const run_options& options);

} // namespace portico::cli
