#pragma once

// The built portico binary as users run it: `portico run` on a configuration file written into
// a temporary directory, on an ephemeral loopback port read back from its ready line. Shared by
// the test targets that run the binary; each names it with PORTICO_BINARY at build time.

#include "support/child.hpp"
#include "support/origin.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace portico::test {

/// Writes a configuration file and starts `portico run` on it with an ephemeral port.
struct running_portico {
    /**
     * @param routes_yaml appended to a configuration that listens on 127.0.0.1:0 with one
     *        worker and keeps its local CA in `ca_dir()`.
     * @param extra_args appended to `portico run -c FILE`.
     * @param launcher a command that runs portico, which is appended to it (for example,
     *        in a namespace of its own); empty for none.
     * @throws std::runtime_error with everything portico printed when no ready line arrives.
     */
    explicit running_portico(const std::string& routes_yaml,
                             std::vector<std::string> extra_args = {},
                             std::vector<std::string> launcher = {});

    /// The `tls.ca_dir` of this instance; portico creates `ca.pem` and `ca-key.pem` there.
    std::filesystem::path ca_dir() const;

    temp_dir dir;
    std::unique_ptr<child> process;
    std::string ready_line;
    unsigned short port = 0;
};

/// A `routes:` block that sends `app.localhost` to 127.0.0.1:`port`.
std::string route_to(unsigned short port);

} // namespace portico::test
