#pragma once

// Gives a worker's free heap back to the system once a burst of connections is over
// (decision 0024).

#include "portico/core/net.hpp"

#include <chrono>
#include <cstddef>
#include <functional>

namespace portico::proxy {

/**
 * A burst of connections leaves free memory in the heap between the few blocks that outlive
 * it (pooled backend connections, the reactor's per-descriptor records), and glibc keeps that
 * memory resident: by itself it returns only the top of the heap. So once a worker that had
 * at least `burst` connections being served at once has served none for `delay`, this calls
 * `trim`, by default `malloc_trim(0)`, which also releases the whole free pages inside the
 * heap. Parked connections are not being served. A worker under steady load never gets
 * there; one that empties often trims at most once per `delay`.
 *
 * One per worker, used only on its thread.
 */
class heap_trimmer {
public:
    using clock = std::chrono::steady_clock;
    static constexpr std::size_t default_burst = 16;
    static constexpr std::chrono::milliseconds default_delay{100};

    explicit heap_trimmer(net::io_context& context, std::function<void()> trim = release_free_heap,
                          std::size_t burst = default_burst, clock::duration delay = default_delay);

    /// The worker now serves `count` connections.
    void serving(std::size_t count);

    /// `malloc_trim(0)`.
    static void release_free_heap() noexcept;

private:
    steady_timer timer_;
    std::function<void()> trim_;
    std::size_t burst_;
    clock::duration delay_;
    std::size_t serving_ = 0;
    std::size_t busiest_ = 0; ///< the most connections served at once since the last trim
    bool armed_ = false;
};

} // namespace portico::proxy
