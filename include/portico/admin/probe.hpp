#pragma once

// Backend health: is each dev server listening, and is it also reachable from the network?
// Probes are TCP (or unix socket) connects, bounded in time, made off the request path.

#include "portico/admin/observatory.hpp"
#include "portico/config/config.hpp"
#include "portico/core/net.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace portico {
class name_resolver;
}

namespace portico::admin {

/**
 * Ports on which some socket listens at a non-loopback address (0.0.0.0, ::, or a LAN
 * address), from the text of /proc/net/tcp and /proc/net/tcp6.
 */
std::set<std::uint16_t> exposed_ports(std::string_view proc_net_tcp, std::string_view proc_net_tcp6);

/// A listening TCP socket of this machine.
struct tcp_listener {
    std::uint16_t port = 0;
    bool loopback = false; ///< bound to 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104
};

/**
 * The machine's listening TCP sockets (IPv4 and IPv6), asked of the kernel's socket
 * diagnostics over netlink, which filters by state; nullopt where that is unavailable.
 */
std::optional<std::vector<tcp_listener>> read_tcp_listeners();

/**
 * `exposed_ports` of this machine now: from `read_tcp_listeners`, else from /proc/net;
 * empty where neither is available.
 */
std::set<std::uint16_t> read_exposed_ports();

/// Probes every backend concurrently; each connect gives up after `timeout`. Keyed by `to`;
/// a backend no socket could be made for (no descriptor left) is left out: nothing is known.
task<std::map<std::string, backend_state>>
probe_backends(std::vector<config::backend> backends, std::chrono::milliseconds timeout);

/// `probe_backends` on a private event loop, for the command line.
std::map<std::string, backend_state> probe_backends_now(std::vector<config::backend> backends,
                                                        std::chrono::milliseconds timeout);

/// The distinct backends of a set of routes (passthrough ones included), in file order.
std::vector<config::backend> backends_of(const std::vector<config::route>& routes);

/**
 * Probes the current backends every `interval` and records the states in an observatory.
 * Runs on the event loop it is started on until `stop()`.
 */
class backend_monitor {
public:
    using backend_source = std::function<std::vector<config::backend>()>;

    backend_monitor(executor ex, observatory& obs, backend_source source,
                    std::chrono::milliseconds interval = std::chrono::seconds(2),
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(500));
    ~backend_monitor();

    /// Starts probing at once, then every interval.
    void start();
    /// Probes now (after a reload) instead of at the next tick; during a round, right after
    /// it, since the round may have asked for the backends before the reload.
    void poke();
    /// Ends the loop.
    void stop();

private:
    task<void> loop();

    executor executor_;
    observatory& observatory_;
    backend_source source_;
    std::chrono::milliseconds interval_;
    std::chrono::milliseconds timeout_;
    steady_timer timer_;
    std::shared_ptr<name_resolver> resolver_; ///< for backends named by host
    bool stopped_ = false;
    bool poked_ = false; ///< a poke came while no wait was pending
};

} // namespace portico::admin
