#include "proxy/parking_lot.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <new>

namespace portico::proxy {
namespace {

/// Whether the client of a connection that reported a hang-up has left: it closed (or reset)
/// its side with nothing unread. One that sent a request and then shut down its writing side
/// has not: that request is served.
bool client_left(int fd)
{
    char byte = 0;
    const auto n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

} // namespace

parking_lot::parking_lot(net::io_context& context, clock::duration idle,
                         std::function<void(const parked_connection&)> resume,
                         std::function<void()> closed)
    : idle_(idle), resume_(std::move(resume)), closed_(std::move(closed)), epoll_(context),
      timer_(context)
{
    // The set is made now, while descriptors are to be had: a lot that made it at its first
    // connection would, with the process out of descriptors, close every connection it was
    // given, and each close would let one more accept through to be closed in turn. Failing
    // here, it is tried again at each park until it is made.
    boost::system::error_code ignored;
    open_watch(ignored);
}

parking_lot::~parking_lot()
{
    for (auto i = oldest_; i != none; i = slots_[i].newer) {
        ::close(slots_[i].conn.fd);
    }
}

bool parking_lot::open_watch(boost::system::error_code& ec)
{
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) {
        ec.assign(errno, boost::system::system_category());
        return false;
    }
    epoll_.assign(fd, ec);
    if (ec) {
        ::close(fd);
        return false;
    }
    return true;
}

void parking_lot::park(const parked_connection& c, boost::system::error_code& ec)
{
    ec.clear();
    if (!epoll_.is_open() && !open_watch(ec)) {
        return;
    }
    std::uint32_t index = free_;
    if (index != none) {
        free_ = slots_[index].newer;
    } else {
        try {
            slots_.emplace_back();
        } catch (const std::bad_alloc&) {
            ec = make_error_code(boost::system::errc::not_enough_memory);
            return;
        }
        index = static_cast<std::uint32_t>(slots_.size() - 1);
    }
    epoll_event interest{};
    // Level-triggered: a descriptor leaves the set as soon as it reports, so it reports once.
    interest.events = EPOLLIN | EPOLLRDHUP;
    // The descriptor rides along with the slot, so that an event that names a slot no
    // longer its own can still take its descriptor out of the set.
    interest.data.u64 = (std::uint64_t{static_cast<std::uint32_t>(c.fd)} << 32) | index;
    if (::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_ADD, c.fd, &interest) != 0) {
        ec.assign(errno, boost::system::system_category());
        slots_[index].newer = free_;
        free_ = index;
        return;
    }
    auto& s = slots_[index];
    s.conn = c;
    s.since = clock::now();
    s.older = newest_;
    s.newer = none;
    if (newest_ != none) {
        slots_[newest_].newer = index;
    } else {
        oldest_ = index;
    }
    newest_ = index;
    ++parked_;
    // Started before this handler returns to the loop: a descriptor that was readable when it
    // was added makes the lot's epoll set readable, and the loop then sees that edge.
    if (!watching_) {
        watch();
    }
    if (!timer_armed_) {
        arm_timer();
    }
}

void parking_lot::set_idle(clock::duration idle)
{
    idle_ = idle;
    if (parked_ > 0) {
        arm_timer();
    }
}

std::size_t parking_lot::close_all()
{
    const auto count = parked_;
    for (auto i = oldest_; i != none; i = slots_[i].newer) {
        ::close(slots_[i].conn.fd);
    }
    slots_.clear();
    slots_.shrink_to_fit();
    free_ = oldest_ = newest_ = none;
    parked_ = 0;
    ++timer_generation_;
    timer_armed_ = false;
    timer_.cancel();
    ++watch_generation_;
    watching_ = false;
    boost::system::error_code ignored;
    epoll_.close(ignored);
    for (std::size_t i = 0; i < count; ++i) {
        closed_();
    }
    return count;
}

void parking_lot::watch()
{
    watching_ = true;
    const auto generation = ++watch_generation_;
    epoll_.async_wait(net::posix::descriptor_base::wait_read,
                      [this, generation](const boost::system::error_code& ec) {
                          if (generation != watch_generation_) {
                              return; // a close_all ended this wait
                          }
                          watching_ = false;
                          if (ec) {
                              return;
                          }
                          take_ready();
                          watch();
                      });
}

void parking_lot::take_ready()
{
    // Asio watches the set edge-triggered: everything ready is taken before the next wait.
    // Each descriptor taken leaves the set, so this ends.
    std::array<epoll_event, 64> events{};
    const int epfd = epoll_.native_handle();
    for (;;) {
        const int n = ::epoll_wait(epfd, events.data(), static_cast<int>(events.size()), 0);
        if (n <= 0) {
            return;
        }
        for (int i = 0; i < n; ++i) {
            const auto index = static_cast<std::uint32_t>(events[i].data.u64);
            const auto fd = static_cast<int>(events[i].data.u64 >> 32);
            if (index >= slots_.size() || slots_[index].conn.fd != fd) {
                // Not reachable as the lot is written (each descriptor leaves the set before
                // its slot is freed), but a registration left behind would otherwise be
                // reported at every wait, and this loop would not end.
                ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
                continue;
            }
            const auto conn = slots_[index].conn;
            ::epoll_ctl(epfd, EPOLL_CTL_DEL, conn.fd, nullptr);
            unlink(index);
            if ((events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0 &&
                client_left(conn.fd)) {
                // Most idle connections end so: the browser closes them. Nothing is made
                // for them.
                ::close(conn.fd);
                closed_();
                continue;
            }
            resume_(conn);
        }
        if (static_cast<std::size_t>(n) < events.size()) {
            return;
        }
    }
}

void parking_lot::unlink(std::uint32_t index)
{
    auto& s = slots_[index];
    if (s.older != none) {
        slots_[s.older].newer = s.newer;
    } else {
        oldest_ = s.newer;
    }
    if (s.newer != none) {
        slots_[s.newer].older = s.older;
    } else {
        newest_ = s.older;
    }
    s.conn.fd = -1;
    s.older = none;
    s.newer = free_;
    free_ = index;
    --parked_;
    if (parked_ == 0) {
        // A burst's slots go with it; the timer has nothing left to wait for.
        slots_.clear();
        slots_.shrink_to_fit();
        free_ = none;
        ++timer_generation_;
        timer_armed_ = false;
        timer_.cancel();
    }
}

void parking_lot::arm_timer()
{
    if (oldest_ == none) {
        return;
    }
    timer_armed_ = true;
    const auto generation = ++timer_generation_;
    timer_.expires_at(slots_[oldest_].since + idle_);
    timer_.async_wait([this, generation](const boost::system::error_code& ec) {
        if (ec || generation != timer_generation_) {
            return;
        }
        timer_armed_ = false;
        close_expired();
        if (parked_ > 0) {
            arm_timer();
        }
    });
}

void parking_lot::close_expired()
{
    const auto now = clock::now();
    while (oldest_ != none && slots_[oldest_].since + idle_ <= now) {
        const int fd = slots_[oldest_].conn.fd;
        // Out of the set before the close: a copy of the descriptor in a child between fork
        // and exec would keep it registered, and its events would name a reused slot.
        ::epoll_ctl(epoll_.native_handle(), EPOLL_CTL_DEL, fd, nullptr);
        unlink(oldest_);
        ::close(fd);
        closed_();
    }
}

} // namespace portico::proxy
