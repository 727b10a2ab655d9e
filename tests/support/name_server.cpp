#include "support/name_server.hpp"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <system_error>

namespace portico::test {

test_name_server::test_name_server(const std::string& address, kind what)
{
    const bool root = ::geteuid() == 0;
    if (what == silent && !root) {
        unusable = "a name server on port 53 needs root";
        return;
    }
    if (what == silent) {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in server{};
        server.sin_family = AF_INET;
        server.sin_port = htons(53);
        ::inet_pton(AF_INET, address.c_str(), &server.sin_addr);
        if (fd_ < 0 ||
            ::bind(fd_, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
            unusable = address + ":53 is taken: " + std::strerror(errno);
            return;
        }
    }

    std::string dir_template =
        (std::filesystem::temp_directory_path() / "portico-dns-XXXXXX").string();
    if (::mkdtemp(dir_template.data()) == nullptr) {
        unusable = std::string("no temporary directory: ") + std::strerror(errno);
        return;
    }
    dir_ = dir_template;
    const auto resolv_conf = dir_ / "resolv.conf";
    const auto nsswitch_conf = dir_ / "nsswitch.conf";
    std::ofstream(resolv_conf) << "nameserver " << address << "\noptions timeout:5 attempts:1\n";
    std::ofstream(hosts_file()) << "127.0.0.1 localhost\n127.0.0.1 fast-dev.portico-test\n";
    // Only the hosts file and DNS: a system that asks systemd-resolved or myhostname
    // would answer (or ask its own servers) without the files above.
    std::ofstream(nsswitch_conf) << "hosts: files dns\n";
    const std::string mounts = R"(mount --bind "$0" /etc/resolv.conf && )"
                               R"(mount --bind "$1" /etc/hosts && )"
                               R"(mount --bind "$2" /etc/nsswitch.conf)";
    const std::string namespaces = root ? "-m" : "-rm";
    const auto try_mounts =
        fmt::format("/usr/bin/unshare {} /bin/sh -c '{}' '{}' '{}' '{}' 2>/dev/null", namespaces,
                    mounts, resolv_conf.string(), hosts_file().string(), nsswitch_conf.string());
    if (std::system(try_mounts.c_str()) != 0) {
        unusable = "no mount namespace with files of its own here";
        return;
    }
    launcher = {"/usr/bin/unshare", namespaces, "/bin/sh", "-c",
                mounts + R"( && shift 2 && exec "$@")", resolv_conf.string(),
                hosts_file().string(), nsswitch_conf.string()};
}

test_name_server::~test_name_server()
{
    if (fd_ >= 0) {
        ::close(fd_);
    }
    if (!dir_.empty()) {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
}

} // namespace portico::test
