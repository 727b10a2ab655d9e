#pragma once

// Where a worker keeps plain client connections that wait for their second request, as
// little more than their descriptors (decision 0021).

#include "portico/core/net.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace portico::proxy {

/// What a parked connection keeps: its descriptor and what serving it again needs.
struct parked_connection {
    tcp::endpoint remote;
    int fd = -1;
    std::uint64_t id = 0;
    std::uint16_t local_port = 0;
    bool loopback_listener = true;
    bool tls_required = false;
    bool listener_serves_tls = true;
};

/**
 * Plain client connections waiting, after their first request, for a second one that may
 * never come: browsers open several connections per site and leave most of them idle. A
 * connection served by Asio holds, while it waits, its socket's and deadline's state, a
 * reactor entry and two pending operations, about 1 KB of heap; here it holds 64 bytes in
 * one array, and its descriptor waits in an epoll set of the lot's own, which the worker's
 * loop watches as one descriptor.
 *
 * A connection whose bytes arrive is handed to `resume`, no longer the lot's; one whose
 * client closes it, or that waits `timeouts.idle` (as configured now, not when it was
 * parked), is closed and reported to `closed`. One per worker, used only on its thread.
 */
class parking_lot {
public:
    using clock = std::chrono::steady_clock;

    parking_lot(net::io_context& context, clock::duration idle,
                std::function<void(const parked_connection&)> resume, std::function<void()> closed);
    /// Closes what is still parked, reporting nothing.
    ~parking_lot();
    parking_lot(const parking_lot&) = delete;
    parking_lot& operator=(const parking_lot&) = delete;

    /**
     * Takes `c` and its descriptor, which must have been given up by Asio (`release`), or
     * leaves both to the caller and sets `ec` (the kernel's limit of watched descriptors;
     * no descriptor for the lot's epoll set, which is made with the lot and, should that
     * fail or a `close_all` have closed it, at the next park).
     */
    void park(const parked_connection& c, boost::system::error_code& ec);

    /// How long a connection may wait from now on (a reload changed `timeouts.idle`).
    void set_idle(clock::duration idle);

    /// Closes every parked connection (shutdown) and stops watching; reports each to
    /// `closed`, and returns how many there were. Parking works again afterwards.
    std::size_t close_all();

    std::size_t size() const noexcept { return parked_; }

private:
    static constexpr std::uint32_t none = UINT32_MAX;

    struct slot {
        parked_connection conn;
        clock::time_point since;
        std::uint32_t older = none; ///< in use: the connection parked before; free: unused
        std::uint32_t newer = none; ///< in use: the one parked after; free: the next free slot
    };
    static_assert(sizeof(slot) <= 64, "a parked connection costs its slot: one cache line");

    bool open_watch(boost::system::error_code& ec);
    void watch();
    void take_ready();
    void unlink(std::uint32_t index);
    void arm_timer();
    void close_expired();

    clock::duration idle_;
    std::function<void(const parked_connection&)> resume_;
    std::function<void()> closed_;
    net::posix::stream_descriptor epoll_;
    bool watching_ = false;
    std::uint64_t watch_generation_ = 0; ///< tells a wait `close_all` ended from a newer one
    net::steady_timer timer_;
    std::uint64_t timer_generation_ = 0;
    bool timer_armed_ = false;
    std::vector<slot> slots_;
    std::uint32_t free_ = none;   ///< the first free slot
    std::uint32_t oldest_ = none; ///< the connection parked longest, which times out first
    std::uint32_t newest_ = none;
    std::size_t parked_ = 0;
};

} // namespace portico::proxy
