#include "support/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace portico::test {

child::child(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env)
{
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe failed");
    }
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string entry = *e;
        if (!env.contains(entry.substr(0, entry.find('=')))) {
            environment.push_back(entry);
        }
    }
    for (const auto& [key, value] : env) {
        environment.push_back(key + "=" + value);
    }
    pid_ = ::fork();
    if (pid_ == 0) {
        ::dup2(pipe_fds[1], 2);
        const int devnull = ::open("/dev/null", O_RDWR);
        ::dup2(devnull, 0);
        ::dup2(devnull, 1);
        std::vector<char*> args;
        for (const auto& a : argv) {
            args.push_back(const_cast<char*>(a.c_str()));
        }
        args.push_back(nullptr);
        std::vector<char*> envp;
        for (auto& e : environment) {
            envp.push_back(e.data());
        }
        envp.push_back(nullptr);
        ::execve(args[0], args.data(), envp.data());
        ::_exit(127);
    }
    ::close(pipe_fds[1]);
    err_fd_ = pipe_fds[0];
}

child::~child()
{
    if (!exit_code_ && pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
    }
    if (err_fd_ >= 0) {
        ::close(err_fd_);
    }
}

bool child::read_more(std::chrono::milliseconds limit)
{
    pollfd p{err_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) {
        return false;
    }
    std::array<char, 4096> chunk{};
    const auto n = ::read(err_fd_, chunk.data(), chunk.size());
    if (n <= 0) {
        return false;
    }
    pending_.append(chunk.data(), static_cast<std::size_t>(n));
    for (auto nl = pending_.find('\n'); nl != std::string::npos; nl = pending_.find('\n')) {
        lines_.push_back(pending_.substr(0, nl));
        pending_.erase(0, nl + 1);
    }
    return true;
}

std::optional<std::string> child::wait_for_line(const std::string& needle,
                                                std::chrono::milliseconds limit)
{
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::size_t checked = 0;
    for (;;) {
        for (; checked < lines_.size(); ++checked) {
            if (lines_[checked].find(needle) != std::string::npos) {
                return lines_[checked];
            }
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !read_more(left)) {
            if (std::chrono::steady_clock::now() >= deadline) {
                return std::nullopt;
            }
            // EOF: the process closed stderr.
            if (checked == lines_.size()) {
                return std::nullopt;
            }
        }
    }
}

void child::signal(int sig) { ::kill(pid_, sig); }

int child::wait(std::chrono::milliseconds limit)
{
    if (exit_code_) {
        return *exit_code_;
    }
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        // Keep draining stderr so the child never blocks on a full pipe.
        read_more(std::chrono::milliseconds(10));
        int status = 0;
        const auto r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            while (read_more(std::chrono::milliseconds(0))) {
            }
            exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            return *exit_code_;
        }
    }
    return -1;
}

long child::peak_rss_kib() const
{
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("VmHWM:")) {
            return std::stol(line.substr(6));
        }
    }
    return -1;
}

unsigned short port_from_ready_line(const std::string& line)
{
    const auto on = line.find(" on ");
    const auto space = line.find(' ', on + 4);
    const auto address = line.substr(on + 4, space - on - 4);
    return static_cast<unsigned short>(std::stoi(address.substr(address.rfind(':') + 1)));
}

} // namespace portico::test
