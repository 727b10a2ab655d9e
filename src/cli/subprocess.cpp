#include "cli/subprocess.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace portico::cli {
namespace {

namespace fs = std::filesystem;
using steady_clock = std::chrono::steady_clock;

/// A file descriptor closed when it goes out of scope.
class owned_fd {
public:
    owned_fd() = default;
    explicit owned_fd(int fd) noexcept : fd_(fd) {}
    owned_fd(owned_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    owned_fd& operator=(owned_fd&& other) noexcept
    {
        reset(std::exchange(other.fd_, -1));
        return *this;
    }
    ~owned_fd() { reset(); }

    int get() const noexcept { return fd_; }
    void reset(int fd = -1) noexcept
    {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

/// A pipe whose ends are closed on exec, so that children never inherit each other's pipes.
bool make_pipe(owned_fd& read_end, owned_fd& write_end)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        return false;
    }
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
    return true;
}

/// Appends what is available on `fd` to `sink`; false at end of file or on error.
bool drain(int fd, std::string& sink)
{
    std::array<char, 4096> buf;
    const auto n = ::read(fd, buf.data(), buf.size());
    if (n > 0) {
        sink.append(buf.data(), static_cast<std::size_t>(n));
        return true;
    }
    return n < 0 && (errno == EINTR || errno == EAGAIN);
}

int remaining_ms(steady_clock::time_point deadline)
{
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
    return static_cast<int>(std::clamp<long long>(left.count(), 0, 60 * 60 * 1000));
}

std::vector<char*> c_strings(const std::vector<std::string>& strings)
{
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (const auto& s : strings) {
        out.push_back(const_cast<char*>(s.c_str()));
    }
    out.push_back(nullptr);
    return out;
}

/// Runs in the child between fork and exec: only async-signal-safe calls. On failure the
/// errno goes through `status_fd` (closed by a successful exec) so the parent can say why.
[[noreturn]] void exec_child(char* const* argv, char* const* envp, const char* cwd, int out_fd,
                             int err_fd, int status_fd)
{
    // Close-on-exec: the program keeps only the copy on stdin.
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    bool ok = null_fd >= 0 && ::dup2(null_fd, STDIN_FILENO) >= 0 &&
              ::dup2(out_fd, STDOUT_FILENO) >= 0 && ::dup2(err_fd, STDERR_FILENO) >= 0;
    if (ok && cwd != nullptr) {
        ok = ::chdir(cwd) == 0;
    }
    if (ok) {
        if (envp != nullptr) {
            ::execvpe(argv[0], argv, envp);
        } else {
            ::execvp(argv[0], argv);
        }
    }
    const int e = errno;
    [[maybe_unused]] const auto n = ::write(status_fd, &e, sizeof e);
    ::_exit(127);
}

/// Reads both output pipes until they close or the deadline passes.
void collect_output(int out_fd, int err_fd, steady_clock::time_point deadline, subprocess_result& r)
{
    std::array<pollfd, 2> fds = {{{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}}};
    const std::array<std::string*, 2> sinks = {&r.out, &r.err};
    int open_fds = 2;
    while (open_fds > 0) {
        const int ready = ::poll(fds.data(), fds.size(), remaining_ms(deadline));
        if (ready == 0) {
            r.timed_out = true;
            return;
        }
        if (ready < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0 &&
                !drain(fds[i].fd, *sinks[i])) {
                fds[i].fd = -1; // poll ignores negative descriptors
                --open_fds;
            }
        }
    }
}

/// Reaps the child, killing it once the deadline has passed; returns its wait status.
int reap(pid_t pid, steady_clock::time_point deadline, subprocess_result& r)
{
    int status = 0;
    for (;;) {
        if (r.timed_out) {
            // Killed before the blocking wait below, which would otherwise wait for a child
            // that never ends.
            ::kill(pid, SIGKILL);
        }
        const pid_t done = ::waitpid(pid, &status, r.timed_out ? 0 : WNOHANG);
        if (done == pid) {
            return status;
        }
        if (done < 0 && errno != EINTR) {
            return status;
        }
        if (remaining_ms(deadline) == 0) {
            r.timed_out = true;
        } else if (!r.timed_out) {
            // Both pipes are closed, so the child is exiting; a short sleep beats spinning.
            ::poll(nullptr, 0, 5);
        }
    }
}

bool is_executable_file(const fs::path& p)
{
    std::error_code ec;
    return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

bool needs_quotes(std::string_view arg)
{
    return arg.empty() ||
           arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789@%+=:,./_-") != std::string_view::npos;
}

} // namespace

std::string subprocess_result::describe() const
{
    if (!error.empty()) {
        return error;
    }
    if (timed_out) {
        return "timed out and was killed";
    }
    if (exit_code) {
        return fmt::format("exit status {}", *exit_code);
    }
    return fmt::format("killed by signal {}", signal);
}

subprocess_result run_subprocess(const std::vector<std::string>& argv,
                                 const subprocess_options& options)
{
    subprocess_result r;
    if (argv.empty()) {
        r.error = "no program to run";
        return r;
    }
    const auto c_argv = c_strings(argv);
    const auto c_env = options.environment ? c_strings(*options.environment) : std::vector<char*>{};
    const std::string cwd = options.working_directory.string();

    owned_fd out_read;
    owned_fd out_write;
    owned_fd err_read;
    owned_fd err_write;
    owned_fd status_read;
    owned_fd status_write;
    if (!make_pipe(out_read, out_write) || !make_pipe(err_read, err_write) ||
        !make_pipe(status_read, status_write)) {
        r.error = fmt::format("cannot run {}: pipe: {}", argv[0], std::strerror(errno));
        return r;
    }
    const auto deadline = steady_clock::now() + options.timeout;
    const pid_t pid = ::fork();
    if (pid < 0) {
        r.error = fmt::format("cannot run {}: fork: {}", argv[0], std::strerror(errno));
        return r;
    }
    if (pid == 0) {
        exec_child(c_argv.data(), options.environment ? c_env.data() : nullptr,
                   cwd.empty() ? nullptr : cwd.c_str(), out_write.get(), err_write.get(),
                   status_write.get());
    }
    out_write.reset();
    err_write.reset();
    status_write.reset();

    collect_output(out_read.get(), err_read.get(), deadline, r);
    const int status = reap(pid, deadline, r);

    // The status pipe reads end-of-file when exec succeeded (it is close-on-exec).
    int exec_errno = 0;
    if (::read(status_read.get(), &exec_errno, sizeof exec_errno) ==
        static_cast<ssize_t>(sizeof exec_errno)) {
        r.error = fmt::format("cannot run {}: {}", argv[0], std::strerror(exec_errno));
    }
    if (WIFEXITED(status)) {
        r.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r.signal = WTERMSIG(status);
    }
    return r;
}

std::optional<fs::path> find_program(std::string_view name)
{
    if (name.find('/') != std::string_view::npos) {
        return is_executable_file(fs::path(name)) ? std::optional<fs::path>(name) : std::nullopt;
    }
    std::vector<std::string> dirs;
    if (const char* path = std::getenv("PATH")) {
        std::string_view rest(path);
        while (!rest.empty()) {
            const auto colon = rest.find(':');
            dirs.emplace_back(rest.substr(0, colon));
            rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
        }
    }
    for (const auto* sbin : {"/usr/local/sbin", "/usr/sbin", "/sbin"}) {
        dirs.emplace_back(sbin);
    }
    for (const auto& dir : dirs) {
        // An empty PATH entry means the current directory; looking there is a classic way to
        // run a planted binary, so it is ignored.
        if (dir.empty() || dir.front() != '/') {
            continue;
        }
        auto candidate = fs::path(dir) / name;
        if (is_executable_file(candidate)) {
            return candidate;
        }
    }
    return std::nullopt;
}

std::string format_command(const std::vector<std::string>& argv)
{
    std::string line;
    for (const auto& arg : argv) {
        if (!line.empty()) {
            line += ' ';
        }
        if (!needs_quotes(arg)) {
            line += arg;
            continue;
        }
        line += '\'';
        for (const char c : arg) {
            line += c == '\'' ? std::string("'\\''") : std::string(1, c);
        }
        line += '\'';
    }
    return line;
}

} // namespace portico::cli
