#pragma once

// Keeps a running server in step with its configuration file: reloads on SIGHUP and when the
// file (or a file it names) is saved, and probes the backends for the admin pages. Runs on
// its own thread so that loading and validating never delays a request.

#include "cli/config_source.hpp"

#include "portico/proxy/server.hpp"

#include <filesystem>
#include <memory>
#include <vector>

namespace portico::cli {

class reloader {
public:
    /**
     * Prepares reloading the file at `where` into `server`, which serves what it held;
     * `referenced_files` are the files that configuration names (certificates), which
     * are watched beside it. Nothing runs before `start()`.
     */
    reloader(proxy::server& server, config::location where,
             std::vector<std::filesystem::path> referenced_files);
    ~reloader();
    reloader(const reloader&) = delete;
    reloader& operator=(const reloader&) = delete;

    /// Starts the control thread: SIGHUP, the file watch and the backend probe.
    void start();

    /// Stops and joins the control thread.
    void stop();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace portico::cli
