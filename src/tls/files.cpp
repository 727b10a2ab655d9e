#include "tls/files.hpp"

#include "portico/tls/certificates.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portico::tls {
namespace {

std::string errno_text(int err)
{
    return std::generic_category().message(err);
}

/// Closes a descriptor, retrying nothing: on Linux the descriptor is gone even on EINTR.
void close_fd(int fd) noexcept
{
    static_cast<void>(::close(fd));
}

} // namespace

std::string write_file_atomically(const std::filesystem::path& path, std::string_view data,
                                  unsigned mode, int* failed_errno)
{
    const auto failed = [failed_errno](int err) {
        if (failed_errno != nullptr) {
            *failed_errno = err;
        }
        return err;
    };
    // The temporary file lives in the target's directory so that rename(2) is atomic, and
    // starts with a dot so that a crash leaves no file that looks like a certificate.
    std::string temp =
        (path.parent_path() / fmt::format(".{}.XXXXXX", path.filename().string())).string();
    const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
    if (fd < 0) {
        return fmt::format("cannot create a temporary file for {}: {}", path.string(),
                           errno_text(failed(errno)));
    }
    const auto fail = [&](std::string_view step, int err) {
        close_fd(fd);
        ::unlink(temp.c_str());
        return fmt::format("cannot write {}: {}: {}", path.string(), step,
                           errno_text(failed(err)));
    };
    // The mode is set before any byte is written, so a key is never readable by others.
    if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {
        return fail("chmod", errno);
    }
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail("write", errno);
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    // fsync before rename: otherwise a crash may leave the new name pointing at an empty file.
    if (::fsync(fd) != 0) {
        return fail("fsync", errno);
    }
    if (::close(fd) != 0) {
        const int err = failed(errno);
        ::unlink(temp.c_str());
        return fmt::format("cannot write {}: close: {}", path.string(), errno_text(err));
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
        const int err = failed(errno);
        ::unlink(temp.c_str());
        return fmt::format("cannot write {}: rename: {}", path.string(), errno_text(err));
    }
    // Best effort: persist the rename itself, so that the CA's key and certificate (two
    // renames) survive a power loss together. The data is already in place if this fails.
    const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        static_cast<void>(::fsync(dir_fd));
        close_fd(dir_fd);
    }
    return {};
}

std::optional<std::string> read_file(const std::filesystem::path& path, std::string& error)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error = fmt::format("cannot read {}: {}", path.string(), errno_text(errno));
        return std::nullopt;
    }
    std::string text;
    char buffer[8192];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            error = fmt::format("cannot read {}: {}", path.string(), errno_text(errno));
            close_fd(fd);
            return std::nullopt;
        }
        if (n == 0) {
            break;
        }
        if (text.size() + static_cast<std::size_t>(n) > max_pem_file_bytes) {
            error = fmt::format("cannot read {}: larger than {} bytes, not a PEM file",
                                path.string(), max_pem_file_bytes);
            close_fd(fd);
            return std::nullopt;
        }
        text.append(buffer, static_cast<std::size_t>(n));
    }
    close_fd(fd);
    return text;
}

std::string restrict_key_file(const std::filesystem::path& path)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        return fmt::format("cannot stat {}: {}", path.string(),
                           std::generic_category().message(errno));
    }
    if ((st.st_mode & 077) == 0) {
        return {};
    }
    if (st.st_uid != ::geteuid() || ::chmod(path.c_str(), 0600) != 0) {
        return fmt::format("{} is readable by other users (mode {:o}) and cannot be made 0600",
                           path.string(), st.st_mode & 07777);
    }
    return {};
}

std::string make_private_directory(const std::filesystem::path& dir)
{
    std::error_code ec;
    if (dir.has_parent_path()) {
        std::filesystem::create_directories(dir.parent_path(), ec);
        if (ec) {
            return fmt::format("cannot create {}: {}", dir.parent_path().string(), ec.message());
        }
    }
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        return fmt::format("cannot create {}: {}", dir.string(), errno_text(errno));
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        return fmt::format("cannot use {}: {}", dir.string(), errno_text(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        return fmt::format("{} exists and is not a directory", dir.string());
    }
    if ((st.st_mode & 07777) == 0700) {
        return {};
    }
    // Private keys live here: the directory must not be readable or listable by others.
    // Someone else's directory is not ours to change (and not safe to keep keys in).
    if (st.st_uid != ::geteuid()) {
        return fmt::format("{} has mode {:o} and belongs to another user; it must be private "
                           "(0700) to hold private keys",
                           dir.string(), st.st_mode & 07777);
    }
    if (::chmod(dir.c_str(), 0700) != 0) {
        return fmt::format("cannot make {} private (chmod 0700): {}", dir.string(),
                           errno_text(errno));
    }
    return {};
}

directory_lock::directory_lock(const std::filesystem::path& dir)
{
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) {
        error_ = fmt::format("cannot open {}: {}", dir.string(), errno_text(errno));
        return;
    }
    while (::flock(fd_, LOCK_EX) != 0) {
        if (errno != EINTR) {
            error_ = fmt::format("cannot lock {}: {}", dir.string(), errno_text(errno));
            return;
        }
    }
}

directory_lock::~directory_lock()
{
    // Closing the descriptor releases the flock.
    if (fd_ >= 0) {
        close_fd(fd_);
    }
}

} // namespace portico::tls
