#pragma once

// Gives the process's free heap back to the system once a worker's burst of connections is
// over (decision 0024).

#include "portico/core/net.hpp"

#include <chrono>
#include <cstddef>
#include <functional>

namespace portico::proxy {

/**
 * A burst of connections leaves free memory in the heap between the few blocks that outlive
 * it (pooled backend connections, the reactor's per-descriptor records), and glibc keeps that
 * memory resident: by itself it returns only the top of the heap. So once a worker that had
 * at least `burst` connections being served at once has served none for `delay` on end, this
 * calls `trim`, by default `malloc_trim(0)`, which also releases the whole free pages inside
 * the heap. Parked connections are not being served, so a burst of keep-alive connections
 * that all went idle counts as over. A worker under steady load, even one that empties for
 * moments between connections, never gets there.
 *
 * `malloc_trim` trims every arena of the process, other workers' too. One per worker, used
 * only on its thread.
 */
class heap_trimmer {
public:
    using clock = std::chrono::steady_clock;
    static constexpr std::size_t default_burst = 16;
    static constexpr std::chrono::milliseconds default_delay{100};

    explicit heap_trimmer(net::io_context& context, std::function<void()> trim = release_free_heap,
                          std::size_t burst = default_burst, clock::duration delay = default_delay);
    heap_trimmer(const heap_trimmer&) = delete;
    heap_trimmer& operator=(const heap_trimmer&) = delete;

    /// The worker now serves `count` connections.
    void serving(std::size_t count);

    /// Trims nothing more: the worker is shutting down, and its loop should not wait for this.
    void cancel();

    /// The trim a worker makes; tests give the trimmer one that counts instead.
    static void release_free_heap() noexcept;

private:
    void wait_until(clock::time_point when);

    steady_timer timer_;
    std::function<void()> trim_;
    std::size_t burst_;
    clock::duration delay_;
    std::size_t serving_ = 0;
    std::size_t busiest_ = 0; ///< the most connections served at once since the last trim
    clock::time_point quiet_since_{};
    bool armed_ = false;
    bool cancelled_ = false;
};

} // namespace portico::proxy
