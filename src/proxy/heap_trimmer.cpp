#include "proxy/heap_trimmer.hpp"

#include <malloc.h>

#include <algorithm>
#include <utility>

namespace portico::proxy {

heap_trimmer::heap_trimmer(net::io_context& context, std::function<void()> trim,
                           std::size_t burst, clock::duration delay)
    : timer_(context), trim_(std::move(trim)), burst_(burst), delay_(delay)
{
}

void heap_trimmer::serving(std::size_t count)
{
    serving_ = count;
    if (count != 0) {
        busiest_ = std::max(busiest_, count);
        return;
    }
    // Without a burst since the last trim no wait is armed, and none is to be: the clock
    // need not be read on every quiet moment.
    if (busiest_ < burst_ || cancelled_) {
        return;
    }
    quiet_since_ = clock::now();
    // A wait already armed is for an earlier quiet moment: when it ends it waits on for this
    // one's full delay.
    if (!armed_) {
        wait_until(quiet_since_ + delay_);
    }
}

void heap_trimmer::cancel()
{
    cancelled_ = true;
    timer_.cancel();
}

void heap_trimmer::wait_until(clock::time_point when)
{
    armed_ = true;
    timer_.expires_at(when);
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) {
            return;
        }
        armed_ = false;
        // Busy again: the next time the worker empties arms the wait anew.
        if (serving_ != 0 || cancelled_) {
            return;
        }
        if (const auto due = quiet_since_ + delay_; clock::now() < due) {
            wait_until(due);
            return;
        }
        busiest_ = 0;
        trim_();
    });
}

void heap_trimmer::release_free_heap() noexcept
{
    ::malloc_trim(0);
}

} // namespace portico::proxy
