#include "support/portico_process.hpp"

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <stdexcept>

namespace portico::test {

running_portico::running_portico(const std::string& routes_yaml,
                                 std::vector<std::string> extra_args,
                                 std::vector<std::string> launcher)
{
    std::ofstream(dir.path() / "portico.yaml")
        << "listen: [127.0.0.1:0]\nworkers: 1\ntls: { ca_dir: " << ca_dir().string() << " }\n"
        << routes_yaml;
    std::vector<std::string> argv{PORTICO_BINARY, "run", "-c",
                                  (dir.path() / "portico.yaml").string()};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    argv.insert(argv.begin(), launcher.begin(), launcher.end());
    process = std::make_unique<child>(
        argv, std::map<std::string, std::string>{{"ASAN_OPTIONS", "quarantine_size_mb=16"}});
    const auto ready = process->wait_for_line("ready");
    if (!ready) {
        std::string all;
        for (const auto& l : process->lines()) {
            all += l + "\n";
        }
        throw std::runtime_error("portico did not start:\n" + all);
    }
    ready_line = *ready;
    if (ready_line.starts_with("{")) {
        const auto at = ready_line.find("\"listen\":\"");
        const auto end = ready_line.find('"', at + 10);
        const auto listen = ready_line.substr(at + 10, end - at - 10);
        port = static_cast<unsigned short>(std::stoi(listen.substr(listen.rfind(':') + 1)));
    } else {
        port = port_from_ready_line(ready_line);
    }
}

std::filesystem::path running_portico::ca_dir() const
{
    return dir.path() / "ca";
}

std::string route_to(unsigned short port)
{
    return fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n", port);
}

} // namespace portico::test
