#pragma once

// A blocking stream over a socket's descriptor whose every wait ends.
//
// Why it exists: a socket timeout (SO_RCVTIMEO/SO_SNDTIMEO, set by bound_socket_waits) bounds
// nothing through an Asio socket. Asio's blocking read_some/write_some take the EAGAIN that
// the timeout produces as "not ready yet", poll the descriptor with no time limit and try
// again (socket_ops::sync_recv1 and friends), so a test reading from a peer that never answers
// waits until ctest kills it. This stream calls recvmsg/sendmsg itself: a timeout ends the
// call with `timed_out`, and Beast's and Asio's free functions (http::read, net::write, ...)
// and websocket/ssl streams built on it inherit the bound.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <type_traits>

namespace portico::test {

/**
 * A SyncReadStream and SyncWriteStream on a socket it does not own: the socket must stay
 * open, in blocking mode, for the stream's life. Reads end with `net::error::eof` when the
 * peer closes and with `net::error::timed_out` when the socket's timeout passes first.
 */
class bounded_stream {
public:
    using executor_type = boost::asio::any_io_executor;
    using lowest_layer_type = bounded_stream;

    /// A stream on `socket`'s descriptor (any Asio socket, already open).
    template <class Socket>
        requires(!std::is_same_v<std::remove_cv_t<Socket>, bounded_stream>)
    explicit bounded_stream(Socket& socket)
        : fd_(socket.native_handle()), executor_(socket.get_executor())
    {
    }

    int native_handle() const noexcept { return fd_; }
    /// The socket's executor; only for layers (websocket, ssl) that ask for one.
    executor_type get_executor() const noexcept { return executor_; }
    lowest_layer_type& lowest_layer() noexcept { return *this; }
    const lowest_layer_type& lowest_layer() const noexcept { return *this; }

    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers, boost::system::error_code& ec)
    {
        io_vectors iov;
        const auto count = gather<boost::asio::mutable_buffer>(buffers, iov);
        return receive(iov.data(), count, ec);
    }

    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers)
    {
        boost::system::error_code ec;
        return checked(read_some(buffers, ec), ec, "bounded_stream::read_some");
    }

    template <class ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers, boost::system::error_code& ec)
    {
        io_vectors iov;
        const auto count = gather<boost::asio::const_buffer>(buffers, iov);
        return send(iov.data(), count, ec);
    }

    template <class ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers)
    {
        boost::system::error_code ec;
        return checked(write_some(buffers, ec), ec, "bounded_stream::write_some");
    }

private:
    /// `n`, or the exception the throwing overloads report `ec` with.
    static std::size_t checked(std::size_t n, const boost::system::error_code& ec,
                               const char* what)
    {
        if (ec) {
            throw boost::system::system_error(ec, what);
        }
        return n;
    }

    // As many buffers as Asio itself hands to one system call.
    using io_vectors = std::array<iovec, 64>;

    template <class Buffer, class Sequence>
    static std::size_t gather(const Sequence& buffers, io_vectors& iov)
    {
        std::size_t count = 0;
        const auto end = boost::asio::buffer_sequence_end(buffers);
        for (auto it = boost::asio::buffer_sequence_begin(buffers);
             it != end && count < iov.size(); ++it) {
            const Buffer buffer(*it);
            if (buffer.size() != 0) {
                iov[count].iov_base = const_cast<void*>(static_cast<const void*>(buffer.data()));
                iov[count].iov_len = buffer.size();
                ++count;
            }
        }
        return count;
    }

    std::size_t receive(iovec* iov, std::size_t count, boost::system::error_code& ec);
    std::size_t send(iovec* iov, std::size_t count, boost::system::error_code& ec);

    int fd_;
    executor_type executor_;
};

/**
 * Ends a WebSocket's connection as Beast does for a socket (the server shuts its sending
 * side first; both read to EOF), with bounded reads, then shuts the socket down both ways;
 * closing it is left to its owner.
 */
void teardown(boost::beast::role_type role, bounded_stream& stream, boost::system::error_code& ec);

} // namespace portico::test
