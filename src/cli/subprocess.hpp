#pragma once

// Running another program to completion: no shell (an argv vector, so no quoting or
// injection), stdout and stderr captured separately, and a deadline. The verbs use it for the
// tools that own the trust stores (update-ca-certificates, certutil, ...), and the tests use it
// to run the built binary.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico::cli {

/// How to run a program; the defaults inherit everything but stdin.
struct subprocess_options {
    /// Killed with SIGKILL when still running after this long.
    std::chrono::milliseconds timeout{std::chrono::seconds(60)};
    /// The whole environment as `NAME=value` entries; nullopt inherits ours.
    std::optional<std::vector<std::string>> environment;
    /// Where the program starts; empty keeps our working directory.
    std::filesystem::path working_directory;
};

/// What a finished program left behind.
struct subprocess_result {
    std::optional<int> exit_code; ///< set when the program exited normally
    int signal = 0;               ///< the signal that ended it, 0 if none
    bool timed_out = false;       ///< killed after the deadline
    std::string out;              ///< everything written to stdout
    std::string err;              ///< everything written to stderr
    std::string error;            ///< why it could not be started; empty when it ran

    /// True when the program ran and exited with status 0.
    bool succeeded() const noexcept { return error.empty() && exit_code == 0; }

    /// How it ended, for messages: "exit status 1", "timed out after 60s", ...
    std::string describe() const;
};

/**
 * Runs `argv` (argv[0] looked up in PATH when it has no slash) with stdin on /dev/null and
 * waits for it, at most `options.timeout`. Never throws for a failure to start: that is
 * reported in `error`.
 */
subprocess_result run_subprocess(const std::vector<std::string>& argv,
                                 const subprocess_options& options = {});

/**
 * The executable named `name` in PATH, then in the sbin directories: Debian leaves
 * `/usr/sbin` out of a normal user's PATH, yet tools such as update-ca-certificates live
 * there and are run through sudo. nullopt when there is none.
 */
std::optional<std::filesystem::path> find_program(std::string_view name);

/// `argv` as one line for messages, with arguments that need it in single quotes.
std::string format_command(const std::vector<std::string>& argv);

} // namespace portico::cli
