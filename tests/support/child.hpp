#pragma once

// A long-running child process (the built portico binary) whose stderr a test reads line by
// line, with bounded waits.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace portico::test {

/// A child process with its stderr captured; killed by the destructor if still running.
class child {
public:
    /// Starts argv with the current environment plus `env` (no shell).
    explicit child(const std::vector<std::string>& argv,
                   const std::map<std::string, std::string>& env = {});
    ~child();
    child(const child&) = delete;
    child& operator=(const child&) = delete;

    /// The process id.
    int pid() const noexcept { return pid_; }

    /// Reads stderr until a line containing `needle` arrives; returns it, or nullopt on
    /// timeout or EOF.
    std::optional<std::string> wait_for_line(const std::string& needle,
                                             std::chrono::milliseconds limit =
                                                 std::chrono::seconds(10));

    /// Every stderr line read so far.
    const std::vector<std::string>& lines() const noexcept { return lines_; }

    /// Sends a signal.
    void signal(int sig);

    /// Waits for the exit code (-1 when killed by a signal or still running at the limit).
    int wait(std::chrono::milliseconds limit = std::chrono::seconds(15));

    /// The peak resident set size (VmHWM) in KiB, while the process runs.
    long peak_rss_kib() const;

private:
    bool read_more(std::chrono::milliseconds limit);

    int pid_ = -1;
    int err_fd_ = -1;
    std::string pending_;
    std::vector<std::string> lines_;
    std::optional<int> exit_code_;
};

/// The port in a ready line such as "portico ready: http on 127.0.0.1:40123 (1 route)".
unsigned short port_from_ready_line(const std::string& line);

} // namespace portico::test
