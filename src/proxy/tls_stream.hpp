#pragma once

// The server side of TLS on a client connection, with OpenSSL reading and writing the socket
// itself. Asio's ssl::stream runs OpenSSL against a BIO pair and moves every byte between
// that pair and the socket through buffers of its own: two copies more per byte than needed
// and about 68 KiB held for the life of each connection. Here OpenSSL's socket BIO does the
// system calls; when it would block, the operation waits for readiness on the deadline
// stream, so deadlines, cancellation and timeouts behave as for a plain connection.
//
// Readiness waits are started only after OpenSSL saw EAGAIN, so with Asio's edge-triggered
// reactor no readiness change is missed.

#include "portico/core/net.hpp"

#include "proxy/deadline_stream.hpp"

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/system/system_error.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

namespace portico::proxy {

template <typename NextLayer>
class tls_server_stream {
public:
    using executor_type = typename NextLayer::executor_type;
    using next_layer_type = NextLayer;

    /**
     * `initial` holds bytes already read from the socket (the ClientHello that was sniffed);
     * OpenSSL reads them before the socket.
     */
    tls_server_stream(NextLayer& next, SSL_CTX* ctx, net::const_buffer initial)
        : next_(next), ssl_(::SSL_new(ctx))
    {
        if (ssl_ == nullptr) {
            throw boost::system::system_error(
                boost::system::error_code(static_cast<int>(::ERR_get_error()),
                                          net::error::get_ssl_category()),
                "SSL_new");
        }
        next_.make_descriptor_non_blocking(); // OpenSSL reads and writes it itself
        // Partial writes let a large write return what went out before the socket filled up;
        // released buffers let an idle connection hold no record buffers.
        ::SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
        BIO* socket_bio = ::BIO_new_socket(next_.descriptor(), BIO_NOCLOSE);
        BIO* read_bio = socket_bio;
        if (initial.size() > 0) {
            BIO* prefix = ::BIO_new(::BIO_s_mem());
            if (prefix != nullptr) {
                ::BIO_write(prefix, initial.data(), static_cast<int>(initial.size()));
                // Empty means "no more yet", not end of stream: the socket takes over then.
                BIO_set_mem_eof_return(prefix, -1);
                read_bio = prefix;
                on_prefix_ = true;
            }
        }
        // Without read-ahead OpenSSL reads a record's 5-byte header and then its body: two
        // system calls per record. With it, one read takes whatever the socket holds.
        ::SSL_set_read_ahead(ssl_, 1);
        ::SSL_set_bio(ssl_, read_bio, socket_bio);
        ::SSL_set_accept_state(ssl_);
    }

    ~tls_server_stream()
    {
        if (ssl_ != nullptr) {
            ::SSL_free(ssl_);
        }
    }

    tls_server_stream(const tls_server_stream&) = delete;
    tls_server_stream& operator=(const tls_server_stream&) = delete;

    executor_type get_executor() noexcept { return next_.get_executor(); }
    NextLayer& next_layer() noexcept { return next_; }
    SSL* native_handle() noexcept { return ssl_; }

    /// Server handshake; OpenSSL takes all of `initial`.
    template <typename Token = default_token>
    auto async_handshake(Token&& token = default_token{})
    {
        return start<void(boost::system::error_code)>(handshake_action{}, std::forward<Token>(token));
    }

    template <typename MutableBuffers, typename Token = default_token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token = default_token{})
    {
        return start<void(boost::system::error_code, std::size_t)>(
            read_action{first_of<net::mutable_buffer>(buffers)}, std::forward<Token>(token));
    }

    template <typename ConstBuffers, typename Token = default_token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token = default_token{})
    {
        return start<void(boost::system::error_code, std::size_t)>(gather(buffers),
                                                                   std::forward<Token>(token));
    }

    /// Sends close_notify and, if `wait_for_peer`, waits for the peer's (bounded by the
    /// caller's deadline).
    template <typename Token = default_token>
    auto async_shutdown(bool wait_for_peer = true, Token&& token = default_token{})
    {
        return start<void(boost::system::error_code)>(shutdown_action{wait_for_peer},
                                                      std::forward<Token>(token));
    }

private:
    enum class outcome { done, want_read, want_write, failed };

    /// One OpenSSL call; `n` is what it transferred.
    struct read_action {
        net::mutable_buffer b;
        int operator()(SSL* ssl, std::size_t& n) const { return ::SSL_read_ex(ssl, b.data(), b.size(), &n); }
        bool empty() const { return b.size() == 0; }
    };
    struct write_action {
        net::const_buffer b;
        /// Holds `b`'s bytes when they were gathered from several buffers. OpenSSL accepts
        /// a retry from a moved copy (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
        std::string gathered;
        int operator()(SSL* ssl, std::size_t& n) const
        {
            const void* data = gathered.empty() ? b.data() : gathered.data();
            return ::SSL_write_ex(ssl, data, b.size(), &n);
        }
        bool empty() const { return b.size() == 0; }
    };

    /// Largest write put together from several buffers: one TLS record's worth.
    static constexpr std::size_t max_gathered = 16 * 1024;

    /**
     * The write for `buffers`: the first non-empty buffer, or, when it is small and others
     * follow (a head written field by field, a chunk's size line, data and CRLF), the bytes
     * of as many as fit in one record, copied together. Each SSL_write is a record and a
     * system call of its own: an event stream over TLS went out as three of each per event.
     */
    template <typename ConstBuffers>
    static write_action gather(const ConstBuffers& buffers)
    {
        write_action w{first_of<net::const_buffer>(buffers), {}};
        if (w.b.size() >= max_gathered / 4) {
            return w;
        }
        std::size_t pieces = 0;
        for (auto it = net::buffer_sequence_begin(buffers);
             it != net::buffer_sequence_end(buffers) && pieces < 2; ++it) {
            pieces += net::const_buffer(*it).size() > 0 ? 1 : 0;
        }
        if (pieces < 2) {
            return w; // one buffer: written from where it is
        }
        w.gathered.reserve(std::min(net::buffer_size(buffers), max_gathered));
        for (auto it = net::buffer_sequence_begin(buffers);
             it != net::buffer_sequence_end(buffers) && w.gathered.size() < max_gathered; ++it) {
            const net::const_buffer b(*it);
            w.gathered.append(static_cast<const char*>(b.data()),
                              std::min(b.size(), max_gathered - w.gathered.size()));
        }
        w.b = net::const_buffer(w.gathered.data(), w.gathered.size());
        return w;
    }
    struct handshake_action {
        int operator()(SSL* ssl, std::size_t&) const { return ::SSL_do_handshake(ssl); }
        bool empty() const { return false; }
    };
    struct shutdown_action {
        bool wait_for_peer = true;
        int operator()(SSL* ssl, std::size_t&) const
        {
            // 0: our close_notify is out; the second call waits for the peer's.
            int r = ::SSL_shutdown(ssl);
            if (r == 0) {
                r = wait_for_peer ? ::SSL_shutdown(ssl) : 1;
            }
            return r;
        }
        bool empty() const { return false; }
    };

    template <typename Buffer, typename Buffers>
    static Buffer first_of(const Buffers& buffers)
    {
        // As Asio's TLS stream does: one buffer per operation, the first non-empty one.
        for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers);
             ++it) {
            Buffer b(*it);
            if (b.size() > 0) {
                return b;
            }
        }
        return Buffer();
    }

    /// Runs `action` once; on success or failure sets `ec`/`n`.
    template <typename Action>
    outcome attempt(const Action& action, boost::system::error_code& ec, std::size_t& n)
    {
        for (;;) {
            n = 0;
            // SSL_get_error reads the thread's error queue, so it must start empty; clearing
            // an empty queue costs OpenSSL 3 a pass over all its slots, looking does not.
            if (::ERR_peek_error() != 0) {
                ::ERR_clear_error();
            }
            const int r = action(ssl_, n);
            if (r > 0) {
                return outcome::done;
            }
            const int sys = errno;
            const int error = ::SSL_get_error(ssl_, r);
            switch (error) {
            case SSL_ERROR_WANT_READ:
                if (on_prefix_) {
                    // The sniffed bytes are used up: read the socket from now on.
                    on_prefix_ = false;
                    BIO* socket_bio = ::SSL_get_wbio(ssl_);
                    ::BIO_up_ref(socket_bio);
                    ::SSL_set0_rbio(ssl_, socket_bio);
                    continue;
                }
                return outcome::want_read;
            case SSL_ERROR_WANT_WRITE:
                return outcome::want_write;
            case SSL_ERROR_ZERO_RETURN:
                ec = net::error::eof;
                return outcome::failed;
            case SSL_ERROR_SYSCALL: {
                const unsigned long queued = ::ERR_get_error();
                if (queued != 0) {
                    ec = boost::system::error_code(static_cast<int>(queued), net::error::get_ssl_category());
                } else if (sys != 0) {
                    ec = boost::system::error_code(sys, boost::system::system_category());
                } else {
                    ec = net::ssl::error::stream_truncated;
                }
                return outcome::failed;
            }
            default: {
                const unsigned long queued = ::ERR_get_error();
                if (ERR_GET_LIB(queued) == ERR_LIB_SSL &&
                    ERR_GET_REASON(queued) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
                    ec = net::ssl::error::stream_truncated;
                } else {
                    ec = boost::system::error_code(static_cast<int>(queued),
                                                   net::error::get_ssl_category());
                }
                return outcome::failed;
            }
            }
        }
    }

    template <typename Signature, typename Action, typename Handler>
    class op {
    public:
        op(tls_server_stream& s, Action a, Handler h)
            : s_(&s), action_(std::move(a)), handler_(std::move(h))
        {
        }

        using executor_type = net::associated_executor_t<Handler, io_executor>;
        executor_type get_executor() const noexcept
        {
            return net::get_associated_executor(handler_, io_executor(s_->next_.get_executor()));
        }
        using allocator_type = net::associated_allocator_t<Handler>;
        allocator_type get_allocator() const noexcept { return net::get_associated_allocator(handler_); }
        using cancellation_slot_type = net::associated_cancellation_slot_t<Handler>;
        cancellation_slot_type get_cancellation_slot() const noexcept
        {
            return net::get_associated_cancellation_slot(handler_);
        }

        /**
         * Runs the action once. When OpenSSL would block, hands this operation to a readiness
         * wait and returns true: the caller must return without touching it again.
         */
        bool attempt_or_wait(boost::system::error_code& ec, std::size_t& n)
        {
            switch (s_->attempt(action_, ec, n)) {
            case outcome::want_read:
                s_->next_.async_wait_readable(std::move(*this));
                return true;
            case outcome::want_write:
                s_->next_.async_wait_writable(std::move(*this));
                return true;
            default:
                return false;
            }
        }

        /// First step: a result available at once is posted, never delivered inside the
        /// initiating call.
        void begin()
        {
            boost::system::error_code ec;
            std::size_t n = 0;
            if (!action_.empty() && s_->next_.is_open()) {
                if (attempt_or_wait(ec, n)) {
                    return;
                }
            } else if (!action_.empty()) {
                // A socket the deadline closed: the wait fails at once, reporting the timeout
                // as the stream's own operations do. No OpenSSL call goes to a descriptor
                // number that may already belong to another connection.
                s_->next_.async_wait_readable(std::move(*this));
                return;
            }
            auto ex = get_executor();
            net::post(ex, beast::bind_front_handler(std::move(*this), finished{ec, n}));
        }

        /// A readiness wait completed.
        void operator()(boost::system::error_code ec)
        {
            std::size_t n = 0;
            if (!ec) {
                if (!s_->next_.is_open()) {
                    ec = net::error::bad_descriptor;
                } else if (attempt_or_wait(ec, n)) {
                    return;
                }
            }
            complete(ec, n);
        }

        struct finished {
            boost::system::error_code ec;
            std::size_t n;
        };
        void operator()(finished f) { complete(f.ec, f.n); }

    private:
        void complete(boost::system::error_code ec, std::size_t n)
        {
            if constexpr (std::is_same_v<Signature, void(boost::system::error_code)>) {
                (void)n;
                std::move(handler_)(ec);
            } else {
                std::move(handler_)(ec, n);
            }
        }

        tls_server_stream* s_;
        Action action_;
        Handler handler_;
    };

    template <typename Signature, typename Action, typename Token>
    auto start(Action action, Token&& token)
    {
        return net::async_initiate<Token, Signature>(
            [](auto handler, tls_server_stream* self, Action a) {
                op<Signature, Action, std::decay_t<decltype(handler)>>(*self, std::move(a),
                                                                       std::move(handler))
                    .begin();
            },
            token, this, std::move(action));
    }

    NextLayer& next_;
    SSL* ssl_;
    bool on_prefix_ = false;
};

} // namespace portico::proxy
