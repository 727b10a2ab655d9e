#pragma once

// Private file helpers of the tls module: bounded whole-file reads, private directories and
// an advisory lock on a directory. `write_file_atomically` is public (certificates.hpp).

#include <filesystem>
#include <optional>
#include <string>

namespace portico::tls {

/// Largest PEM file read (a certificate chain is a few KiB; anything bigger is a mistake).
constexpr std::size_t max_pem_file_bytes = 1024 * 1024;

/// Reads a whole file of at most `max_pem_file_bytes`; nullopt with `error` set on failure.
std::optional<std::string> read_file(const std::filesystem::path& path, std::string& error);

/// Tightens a private key file to 0600 when this user owns it; "" then or when it was
/// private already, else an error message.
std::string restrict_key_file(const std::filesystem::path& path);

/**
 * Creates `dir` (and missing parents) with mode 0700 for the last component. An existing
 * directory with group or other permissions is tightened to 0700 when this user owns it,
 * else it is an error.
 * @return "" on success, else an error message.
 */
std::string make_private_directory(const std::filesystem::path& dir);

/**
 * Holds an exclusive advisory lock (`flock`) on a directory for its lifetime, so that two
 * processes starting at once do not both create the CA. Locking the directory itself leaves
 * no lock file behind.
 */
class directory_lock {
public:
    /// Blocks until the lock on `dir` is held; check `error()` afterwards.
    explicit directory_lock(const std::filesystem::path& dir);
    ~directory_lock();
    directory_lock(const directory_lock&) = delete;
    directory_lock& operator=(const directory_lock&) = delete;

    /// "" when the lock is held, else why it is not.
    const std::string& error() const noexcept { return error_; }

private:
    int fd_ = -1;
    std::string error_;
};

} // namespace portico::tls
