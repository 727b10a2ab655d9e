#pragma once

// A socket with one deadline that every operation on it shares. It keeps the contract of
// beast::basic_stream that the data plane relies on (expires_after/expires_never before an
// operation; when the deadline passes while an operation is pending the socket is closed and
// the operation fails with beast::error::timeout), but not its cost: basic_stream arms and
// cancels a timer for each read and write, three or more per proxied request. Here one timer
// per connection is armed only when the deadline moves earlier than the time it is already
// set for; a deadline pushed later (each request pushes the idle deadline) costs a clock read,
// and the timer, when it fires early, re-arms itself for the new deadline.

#include "portico/core/log.hpp"
#include "portico/core/net.hpp"

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <boost/version.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace portico::proxy {

// Asio's flags, and what they mean, are those of the Boost this is built with: re-check
// `accepted_socket_access` when it changes.
static_assert(BOOST_VERSION == 108100, "re-check accepted_socket_access for this Boost");

/**
 * Reaches the state flags Asio keeps for a socket, to describe one that `accept4` returned:
 * non-blocking already, and the only descriptor of its socket. Asio assumes neither for an
 * adopted descriptor, and would spend an `ioctl(FIONBIO)` before the first operation and an
 * `epoll_ctl(EPOLL_CTL_DEL)` before closing (closing the only descriptor removes it from the
 * epoll set anyway): two of the dozen system calls a connection costs. `portico run` starts
 * no child process, so no copy of the descriptor outlives the close. (Where one could, as
 * in a test process that forks, a copy held between fork and exec keeps the registration
 * until the exec; an event in that window reaches a recycled reactor entry as a spurious
 * wake-up, which every wait here tolerates.)
 */
template <typename Socket>
struct accepted_socket_access : Socket {
    static void mark_fresh_non_blocking(Socket& s)
    {
        auto& state = (s.*(&accepted_socket_access::impl_)).get_implementation().state_;
        state = static_cast<net::detail::socket_ops::state_type>(
            (state | net::detail::socket_ops::internal_non_blocking) &
            ~net::detail::socket_ops::possible_dup);
    }
};

template <typename Protocol>
class deadline_stream {
    using clock = std::chrono::steady_clock;

public:
    using socket_type = typename Protocol::socket::template rebind_executor<executor>::other;
    using executor_type = executor;
    using lowest_layer_type = deadline_stream;
    using endpoint_type = typename Protocol::endpoint;

    explicit deadline_stream(const executor& ex) : s_(new state(socket_type(ex))) {}
    explicit deadline_stream(socket_type socket) : s_(new state(std::move(socket))) {}

    /**
     * Takes `fd`, a socket that `accept4` made non-blocking and that has no other
     * descriptor, without registering it with the reactor: that waits for the first
     * operation that needs it (`socket()`, a read, write or wait through the stream). A
     * connection whose request is there when it is accepted and whose response the socket
     * takes at once (a client that opens a connection per request) then never costs an
     * `epoll_ctl(EPOLL_CTL_ADD)`, nor the kernel's removal from the epoll set at its close:
     * 3-4 us of a connection's 11-16 us of socket calls in isolation.
     */
    deadline_stream(const executor& ex, const Protocol& protocol, int fd)
        : s_(new state(socket_type(ex)))
    {
        s_->adopted = fd;
        s_->family = protocol.family();
    }
    deadline_stream(deadline_stream&&) noexcept = default;
    deadline_stream& operator=(deadline_stream&&) = delete;
    deadline_stream(const deadline_stream&) = delete;
    deadline_stream& operator=(const deadline_stream&) = delete;

    ~deadline_stream()
    {
        if (s_) {
            // The pending wait (if any) holds the state; cancelling lets it go now.
            s_->timer.cancel();
            close();
        }
    }

    executor_type get_executor() noexcept { return s_->socket.get_executor(); }
    /// Whether a write (or a wait to write) is in flight.
    bool writing() const noexcept { return s_->writes > 0; }
    /// The socket, registered with the reactor (an adopted descriptor is, from now on).
    socket_type& socket() { return registered(s_.get()); }
    /// The descriptor, registered or not; -1 once closed.
    int descriptor() const noexcept
    {
        return s_->adopted >= 0 ? s_->adopted
               : s_->socket.is_open() ? static_cast<int>(s_->socket.native_handle())
                                      : -1;
    }
    bool is_open() const noexcept { return descriptor() >= 0; }

    /// Shuts down one or both directions, registered or not.
    void shutdown(net::socket_base::shutdown_type what, boost::system::error_code& ec)
    {
        if (s_->adopted < 0) {
            s_->socket.shutdown(what, ec);
        } else if (::shutdown(s_->adopted, static_cast<int>(what)) != 0) {
            ec.assign(errno, boost::system::system_category());
        } else {
            ec = {};
        }
    }

    /// Makes the close a reset rather than a FIN (decision 0019), registered or not.
    void reset_on_close() noexcept { reset_at_close(descriptor()); }

    /// Gives up the descriptor (out of the reactor, when it was in it) to the caller.
    int release(boost::system::error_code& ec)
    {
        if (s_->adopted >= 0) {
            ec = {};
            return std::exchange(s_->adopted, -1);
        }
        return s_->socket.release(ec);
    }
    deadline_stream& lowest_layer() noexcept { return *this; }

    /// Operations pending or started from now on fail with `beast::error::timeout` once `d`
    /// has passed.
    void expires_after(clock::duration d) { expires_at(clock::now() + d); }

    void expires_at(clock::time_point t)
    {
        s_->at = t;
        if (s_->pending > 0 && t < s_->armed) {
            arm(s_.get());
        }
    }

    /// No deadline until the next `expires_after`.
    void expires_never() noexcept { s_->at = clock::time_point::max(); }

    /// For code that reads and writes the descriptor itself (OpenSSL's socket BIO, splice):
    /// makes it non-blocking, with no ioctl when Asio (or accept4) already has.
    void make_descriptor_non_blocking()
    {
        if (s_->adopted < 0 && !s_->socket.native_non_blocking()) {
            boost::system::error_code ignored;
            s_->socket.native_non_blocking(true, ignored);
        }
    }

    /// Cancels pending operations (they complete with `operation_aborted`).
    void cancel()
    {
        boost::system::error_code ignored;
        ++s_->cancels;
        s_->socket.cancel(ignored);
    }

    /// How many times `cancel` was called: work queued outside the socket (a gathered send)
    /// compares it to tell that it was cancelled meanwhile.
    unsigned cancellations() const noexcept { return s_->cancels; }

    void close()
    {
        if (s_->adopted >= 0) {
            ::close(std::exchange(s_->adopted, -1));
            return;
        }
        boost::system::error_code ignored;
        s_->socket.close(ignored);
    }

    template <typename MutableBuffers, typename Token = default_token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token = default_token{})
    {
        return net::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [](auto handler, const state_ref& s, const MutableBuffers& b) {
                start(s.get());
                registered(s.get()).async_read_some(b, guarded(std::move(handler), s.get()));
            },
            token, s_, buffers);
    }

    template <typename ConstBuffers, typename Token = default_token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token = default_token{})
    {
        return net::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [](auto handler, const state_ref& s, const ConstBuffers& b) {
                start(s.get(), true);
                registered(s.get()).async_write_some(b, guarded(std::move(handler), s.get(), true));
            },
            token, s_, buffers);
    }

    /// Completes when the socket has bytes to read (or EOF), without reading them: a wait
    /// that needs no buffer, for connections that are idle most of the time.
    template <typename Token = default_token>
    auto async_wait_readable(Token&& token = default_token{})
    {
        return async_wait(net::socket_base::wait_read, std::forward<Token>(token));
    }

    /// Completes when the socket can take more bytes, without writing any.
    template <typename Token = default_token>
    auto async_wait_writable(Token&& token = default_token{})
    {
        return async_wait(net::socket_base::wait_write, std::forward<Token>(token));
    }

    template <typename Token = default_token>
    auto async_connect(const endpoint_type& ep, Token&& token = default_token{})
    {
        return net::async_initiate<Token, void(boost::system::error_code)>(
            [](auto handler, const state_ref& s, const endpoint_type& to) {
                start(s.get());
                registered(s.get()).async_connect(to, guarded(std::move(handler), s.get()));
            },
            token, s_, ep);
    }

private:
    template <typename Token>
    auto async_wait(net::socket_base::wait_type what, Token&& token)
    {
        return net::async_initiate<Token, void(boost::system::error_code)>(
            [](auto handler, const state_ref& s, net::socket_base::wait_type w) {
                const bool write = w == net::socket_base::wait_write;
                start(s.get(), write);
                registered(s.get()).async_wait(w, guarded(std::move(handler), s.get(), write));
            },
            token, s_, what);
    }

    using timer_type = net::steady_timer::rebind_executor<io_executor>::other;

    struct state {
        explicit state(socket_type s) : socket(std::move(s)), timer(socket.get_executor()) {}

        socket_type socket;
        timer_type timer;
        clock::time_point at = clock::time_point::max();    ///< the deadline
        clock::time_point armed = clock::time_point::max(); ///< what the timer waits for
        std::uint64_t generation = 0; ///< tells a wait from one a re-arm replaced
        unsigned pending = 0;         ///< operations in flight
        unsigned writes = 0;          ///< of those, writes (and waits to write)
        bool expired = false;         ///< the deadline closed the socket
        unsigned cancels = 0;         ///< calls of `cancel`
        int adopted = -1;             ///< a descriptor not yet registered with the reactor
        int family = 0;               ///< the adopted descriptor's address family
        /// Held by the stream, by each operation from its creation (a deferred one may
        /// start after the stream is gone) and by each timer wait. Not atomic: a stream
        /// and its operations live on one worker's thread, and the atomic increments and
        /// decrements of a shared_ptr, several per operation, cost about 1 % of a small
        /// request's CPU time.
        unsigned refs = 0;

        friend void intrusive_ptr_add_ref(state* s) noexcept { ++s->refs; }
        // The count drops at every completion; the delete, with the socket's and timer's
        // teardown behind it, is out of line so that the drop itself is inlined there.
        friend void intrusive_ptr_release(state* s) noexcept
        {
            if (--s->refs == 0) [[unlikely]] {
                destroy(s);
            }
        }
        [[gnu::noinline, gnu::cold]] static void destroy(state* s) noexcept { delete s; }
    };
    using state_ref = boost::intrusive_ptr<state>;

    /// Completes an operation: the deadline's closing of the socket reads as a timeout.
    template <typename Handler>
    class guarded_handler {
    public:
        guarded_handler(Handler h, state* s, bool write) : handler_(std::move(h)), s_(s), write_(write)
        {
        }

        using executor_type = net::associated_executor_t<Handler, io_executor>;
        executor_type get_executor() const noexcept
        {
            return net::get_associated_executor(handler_, s_->socket.get_executor());
        }
        using allocator_type = net::associated_allocator_t<Handler>;
        allocator_type get_allocator() const noexcept
        {
            return net::get_associated_allocator(handler_);
        }
        using cancellation_slot_type = net::associated_cancellation_slot_t<Handler>;
        cancellation_slot_type get_cancellation_slot() const noexcept
        {
            return net::get_associated_cancellation_slot(handler_);
        }

        template <typename... Args>
        void operator()(boost::system::error_code ec, Args&&... args)
        {
            --s_->pending;
            s_->writes -= write_ ? 1 : 0;
            if (ec && s_->expired) {
                ec = beast::error::timeout;
            }
            s_.reset();
            std::move(handler_)(ec, std::forward<Args>(args)...);
        }

    private:
        Handler handler_;
        state_ref s_;
        bool write_;
    };

    template <typename Handler>
    static guarded_handler<Handler> guarded(Handler h, state* s, bool write = false)
    {
        return guarded_handler<Handler>(std::move(h), s, write);
    }

    static socket_type& registered(state* s)
    {
        if (s->adopted >= 0) [[unlikely]] {
            register_adopted(s);
        }
        return s->socket;
    }

    static Protocol protocol_of(int family)
    {
        if constexpr (std::is_same_v<Protocol, tcp>) {
            return family == AF_INET6 ? tcp::v6() : tcp::v4();
        } else {
            return Protocol(family, 0);
        }
    }

    [[gnu::noinline]] static void register_adopted(state* s)
    {
        const int fd = std::exchange(s->adopted, -1);
        boost::system::error_code ec;
        s->socket.assign(protocol_of(s->family), fd, ec);
        if (ec) {
            // The reactor could not take it (no memory for the epoll entry, or
            // max_user_watches reached): the operation fails on the closed socket, and the
            // connection ends; with a reset if a write is cut, as at a deadline.
            if (s->writes > 0) {
                reset_at_close(fd);
            }
            ::close(fd);
            PORTICO_LOG(log::level::warn, "register_failed", {"error", ec.message()});
            return;
        }
        accepted_socket_access<socket_type>::mark_fresh_non_blocking(s->socket);
    }

    static void start(state* s, bool write = false)
    {
        ++s->pending;
        s->writes += write ? 1 : 0;
        if (s->at < s->armed) {
            arm(s);
        }
    }

    static void arm(state* s)
    {
        s->armed = s->at;
        const auto generation = ++s->generation;
        s->timer.expires_at(s->at);
        s->timer.async_wait([s = state_ref(s), generation](const boost::system::error_code& ec) {
            if (ec || generation != s->generation) {
                return;
            }
            s->armed = clock::time_point::max();
            if (s->at == clock::time_point::max()) {
                return;
            }
            if (clock::now() < s->at) {
                arm(s.get());
                return;
            }
            // A deadline that passes with nothing pending is not a timeout yet: the next
            // operation arms the timer for the past deadline and fails at once.
            if (s->pending > 0) {
                s->expired = true;
                close_cutting(s->socket, s->writes > 0);
            }
        });
    }

    /**
     * Closes a socket whose deadline passed. A write still waiting means a message was cut (a
     * peer that stopped reading): the close is then a reset, so that the peer does not take a
     * FIN for the end of a body delimited by the close (decision 0019). Otherwise (an idle
     * keep-alive connection, a head that never came) it is the usual FIN, which lets a
     * client that paused take the whole response still queued for it.
     */
    [[gnu::cold]] static void close_cutting(socket_type& socket, bool writing)
    {
        boost::system::error_code ignored;
        if (writing) {
            socket.set_option(net::socket_base::linger(true, 0), ignored);
        }
        socket.close(ignored);
    }

    /// SO_LINGER with a zero time on the descriptor; Asio's close of a socket it did not
    /// set linger on itself does not touch it.
    static void reset_at_close(int fd) noexcept
    {
        if (fd >= 0) {
            const ::linger reset{1, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
        }
    }

    state_ref s_;
};

} // namespace portico::proxy
