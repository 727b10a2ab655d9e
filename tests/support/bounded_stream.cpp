#include "support/bounded_stream.hpp"

#include <boost/asio/error.hpp>

#include <sys/socket.h>

#include <cerrno>

namespace portico::test {

namespace {

/// The error a failed recvmsg/sendmsg stands for: its timeout is `timed_out`.
boost::system::error_code failure(int error)
{
    if (error == EAGAIN || error == EWOULDBLOCK) {
        return boost::asio::error::timed_out;
    }
    return {error, boost::system::system_category()};
}

} // namespace

std::size_t bounded_stream::receive(iovec* iov, std::size_t count, boost::system::error_code& ec)
{
    ec = {};
    if (count == 0) {
        return 0; // as for an Asio stream socket: reading nothing is not an error
    }
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = count;
    for (;;) {
        const auto n = ::recvmsg(fd_, &message, 0);
        if (n > 0) {
            return static_cast<std::size_t>(n);
        }
        if (n == 0) {
            ec = boost::asio::error::eof;
            return 0;
        }
        if (errno != EINTR) {
            ec = failure(errno);
            return 0;
        }
    }
}

std::size_t bounded_stream::send(iovec* iov, std::size_t count, boost::system::error_code& ec)
{
    ec = {};
    if (count == 0) {
        return 0;
    }
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = count;
    for (;;) {
        const auto n = ::sendmsg(fd_, &message, MSG_NOSIGNAL);
        if (n >= 0) {
            return static_cast<std::size_t>(n);
        }
        if (errno != EINTR) {
            ec = failure(errno);
            return 0;
        }
    }
}

void teardown(boost::beast::role_type role, bounded_stream& stream, boost::system::error_code& ec)
{
    ec = {};
    if (role == boost::beast::role_type::server &&
        ::shutdown(stream.native_handle(), SHUT_WR) != 0) {
        ec = failure(errno);
        return;
    }
    for (;;) {
        char buf[2048];
        stream.read_some(boost::asio::buffer(buf), ec);
        if (ec) {
            if (ec != boost::asio::error::eof) {
                return;
            }
            ec = {};
            break;
        }
    }
    ::shutdown(stream.native_handle(), SHUT_RDWR);
}

} // namespace portico::test
