#pragma once

// Name resolution that never leaves the machine: a process started through `launcher` sees
// an /etc/resolv.conf and /etc/hosts of the test's own (in a mount namespace), whose name
// server is on a loopback address.

#include <filesystem>
#include <string>
#include <vector>

namespace portico::test {

/**
 * A name server on `address` (a loopback address of the test's own: tests run side by side)
 * that never answers (`silent`: it needs root, for port 53), or none there, so that every
 * query is refused at once (`absent`: an address no silent server uses); and the launcher
 * that runs a process in a mount namespace of its own (a user namespace too, when not root)
 * whose /etc/resolv.conf names it (5 s a try, one try), whose /etc/hosts names localhost and
 * fast-dev.portico-test and whose /etc/nsswitch.conf looks names up there and nowhere else.
 * `unusable` says why not, where this cannot be set up.
 */
class test_name_server {
public:
    enum kind { silent, absent };

    explicit test_name_server(const std::string& address, kind what = silent);
    ~test_name_server();
    test_name_server(const test_name_server&) = delete;
    test_name_server& operator=(const test_name_server&) = delete;

    /// The hosts file the launched process sees (it may be rewritten meanwhile).
    std::filesystem::path hosts_file() const { return dir_ / "hosts"; }

    std::string unusable;              ///< why it cannot be used here; empty when it can
    std::vector<std::string> launcher; ///< put before a command's argv

private:
    std::filesystem::path dir_;
    int fd_ = -1;
};

} // namespace portico::test
