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
    busiest_ = std::max(busiest_, count);
    if (count != 0 || busiest_ < burst_ || armed_) {
        return;
    }
    armed_ = true;
    timer_.expires_after(delay_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
        armed_ = false;
        // Busy again: the next time the worker empties arms the wait anew.
        if (ec || serving_ != 0) {
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
