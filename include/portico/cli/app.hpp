#pragma once

namespace portico::cli {

/// Exit codes of every verb (SPEC.md).
enum exit_code : int {
    exit_ok = 0,         ///< success
    exit_config = 1,     ///< invalid configuration, missing file, or failed check
    exit_usage = 2,      ///< unknown verb, option or option value
    exit_start = 3,      ///< could not bind or start
};

/// Parses the command line and runs the verb; returns the process exit code.
int main(int argc, char** argv);

} // namespace portico::cli
