#pragma once

// `portico doctor`: what stands between this machine and a working portico, each finding
// with the command that fixes it.

#include <filesystem>
#include <optional>

namespace portico::cli {

/**
 * Checks the configuration, the listen addresses (free, held by a running portico, or taken
 * by another program; privileged ports), the local CA and whether the system store trusts
 * it, how each routed name resolves, and each backend's state. Prints one line per finding
 * (`ok`, `warn`, `fail`) to stdout.
 * @return 0 when nothing failed, 1 otherwise (warnings do not fail).
 */
int doctor_command(const std::optional<std::filesystem::path>& cli_file);

} // namespace portico::cli
