#pragma once

// Runs portico in-process on a configuration written as YAML, on an ephemeral loopback port.

#include "support/origin.hpp"

#include "portico/proxy/server.hpp"

#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace portico::test {

/// A running proxy; stopped gracefully (and joined) by the destructor.
class proxy_harness {
public:
    /**
     * Parses `yaml` (it must be valid; `listen` defaults to 127.0.0.1:0 when absent) and
     * starts serving it.
     */
    explicit proxy_harness(const std::string& yaml);
    ~proxy_harness();

    /// The port of the first listener.
    unsigned short port() const noexcept { return port_; }
    /// The ports of every listener, in configuration order.
    std::vector<unsigned short> ports() const;
    /**
     * Applies `yaml` to the running proxy as a reload does (same defaults as the
     * constructor); throws when it is invalid YAML or fails validation.
     */
    proxy::reload_result reload(const std::string& yaml);
    /// The running server's statistics and backend states.
    admin::observatory& observatory() { return server_->observatory(); }
    /// Starts a graceful shutdown without waiting for it.
    void stop();
    /// Waits (bounded) for `run` to return after a stop; returns whether it did.
    bool wait_stopped(std::chrono::milliseconds limit = std::chrono::seconds(15));

private:
    config::config prepare(const std::string& yaml);

    temp_dir dir_;
    std::unique_ptr<proxy::server> server_;
    std::thread thread_;
    std::atomic<bool> stopped_{false};
    unsigned short port_ = 0;
};

} // namespace portico::test
