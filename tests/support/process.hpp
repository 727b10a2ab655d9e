#pragma once

// Running the built binary and other tools from tests: a fresh temporary directory per test,
// a hermetic environment, and the product's own subprocess runner (no shell, both outputs
// captured, bounded time).

#include "cli/subprocess.hpp"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace portico::cli {

/// Exit code, signal and both outputs, for assertion messages (found by ADL).
std::ostream& operator<<(std::ostream& os, const subprocess_result& r);

} // namespace portico::cli

namespace portico::test {

/// What a finished child process left behind.
using process_result = cli::subprocess_result;

/// Environment changes for a child: a value sets the variable, nullopt removes it.
using env_overrides = std::map<std::string, std::optional<std::string>>;

/// The default bound on a child process (tests wait at most this long).
inline constexpr std::chrono::milliseconds process_deadline = std::chrono::seconds(5);

/// The current environment with `overrides` applied.
std::vector<std::string> child_environment(const env_overrides& overrides);

/// Runs `argv` in `cwd` with exactly `env`; the child is killed after `deadline`.
process_result run_process(const std::vector<std::string>& argv, const std::filesystem::path& cwd,
                           const std::vector<std::string>& env,
                           std::chrono::milliseconds deadline = process_deadline);

/// Runs `argv` in the current directory with the test's own environment.
process_result run_process(const std::vector<std::string>& argv,
                           std::chrono::milliseconds deadline = std::chrono::seconds(20));

/// `text` split into lines, without their newlines.
std::vector<std::string> lines_of(const std::string& text);

/// True when `needle` occurs in `haystack`.
bool contains(std::string_view haystack, std::string_view needle);

/**
 * A test that runs the built portico binary in a fresh temporary directory, which is also
 * its HOME and holds its XDG data directory, so nothing outside it is read or written.
 * A test file derives its fixture and names the binary, which its target knows as
 * PORTICO_BINARY.
 */
class binary_test : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;

    /// Writes `content` to `relative` inside the test directory; returns the full path.
    std::filesystem::path write_file(const std::filesystem::path& relative,
                                     std::string_view content);

    /// The whole content of a file (a path relative to the test directory, or absolute).
    std::string read_file(const std::filesystem::path& path) const;

    /**
     * Runs portico with `args` in the test directory. No PORTICO_CONFIG is inherited, HOME is
     * the test directory and XDG_DATA_HOME is `data/` inside it, unless `env` says otherwise.
     */
    process_result portico(const std::vector<std::string>& args, env_overrides env = {},
                           std::chrono::milliseconds deadline = process_deadline);

    /// The binary under test.
    virtual const char* binary() const = 0;

    std::filesystem::path dir_;
    /// Put before the binary in `portico`'s command line (e.g. a `test_name_server`'s).
    std::vector<std::string> launcher_;
};

/**
 * Lowers this process's file-size limit (RLIMIT_FSIZE) and ignores SIGXFSZ while it lives,
 * so that children started meanwhile inherit both: a write past `bytes` then fails with
 * EFBIG, as on a full disk, instead of killing the writer. Both are put back afterwards.
 */
class file_size_limit {
public:
    explicit file_size_limit(rlim_t bytes)
    {
        EXPECT_EQ(::getrlimit(RLIMIT_FSIZE, &before_), 0);
        rlimit lowered = before_;
        lowered.rlim_cur = bytes;
        EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &lowered), 0);
        previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    }
    ~file_size_limit()
    {
        ::setrlimit(RLIMIT_FSIZE, &before_);
        std::signal(SIGXFSZ, previous_handler_);
    }
    file_size_limit(const file_size_limit&) = delete;
    file_size_limit& operator=(const file_size_limit&) = delete;

private:
    rlimit before_{};
    void (*previous_handler_)(int) = SIG_DFL;
};

} // namespace portico::test
