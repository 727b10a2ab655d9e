// `send_available` on real loopback sockets: what a socket takes at once, what it leaves.

#include "proxy/streams.hpp"
#include "support/origin.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <array>
#include <string>

namespace portico::test {
namespace {

using proxy::send_available;
using proxy::tcp_stream;

/// A connected pair: `sender` as portico holds a client connection, `receiver` a plain socket.
struct connected_pair {
    net::io_context context;
    tcp_stream sender{executor(context.get_executor())};
    tcp::socket receiver{context};

    /**
     * `small_buffers`: the receiver's SO_RCVBUF (set before the connection is made) and the
     * sender's SO_SNDBUF at 4 KiB, so that a large send fills them.
     */
    explicit connected_pair(bool small_buffers = false)
    {
        constexpr int small = 4096;
        const int receive_buffer = small_buffers ? small : 0;
        auto acceptor = loopback_acceptor(context, receive_buffer);
        sender.socket().connect(acceptor.local_endpoint());
        acceptor.accept(receiver);
        if (small_buffers) {
            sender.socket().set_option(net::socket_base::send_buffer_size(small));
        }
    }

    /// Reads what has arrived, waiting at most `wait_ms` for the first byte.
    std::string read_some(int wait_ms = 100)
    {
        pollfd p{receiver.native_handle(), POLLIN, 0};
        if (::poll(&p, 1, wait_ms) <= 0) {
            return {};
        }
        std::array<char, 65536> chunk{};
        const auto n = ::recv(receiver.native_handle(), chunk.data(), chunk.size(), MSG_DONTWAIT);
        return n > 0 ? std::string(chunk.data(), static_cast<std::size_t>(n)) : std::string();
    }
};

/// `size` bytes of a pattern that does not repeat within a few hundred bytes.
std::string patterned(std::size_t size)
{
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) {
        s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    }
    return s;
}

std::size_t left_in(const std::array<net::const_buffer, 2>& buffers)
{
    return buffers[0].size() + buffers[1].size();
}

TEST(SendAvailableTest, AnIdleSocketTakesEveryBuffer)
{
    connected_pair pair;
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    const std::string body = "hello";
    std::array<net::const_buffer, 2> buffers{net::buffer(head), net::buffer(body)};
    boost::system::error_code ec;
    send_available(pair.sender, buffers, ec);
    EXPECT_FALSE(ec);
    EXPECT_EQ(left_in(buffers), 0U);
    std::string received;
    for (int i = 0; i < 50 && received.size() < head.size() + body.size(); ++i) {
        received += pair.read_some();
    }
    EXPECT_EQ(received, head + body);
}

TEST(SendAvailableTest, AFullSocketKeepsWhatItDidNotTakeInOrder)
{
    connected_pair pair(/*small_buffers=*/true);
    const std::string source = patterned(1024 * 1024);
    const std::string_view all(source);
    std::array<net::const_buffer, 2> buffers{net::buffer(all.substr(0, 100)),
                                             net::buffer(all.substr(100))};
    boost::system::error_code ec;
    send_available(pair.sender, buffers, ec);
    ASSERT_FALSE(ec);
    const auto taken = source.size() - left_in(buffers);
    ASSERT_GT(taken, 0U);
    ASSERT_LT(taken, source.size()) << "a 1 MiB send into a 4 KiB window cannot all be taken";
    // What is left is exactly the rest of the source, in order.
    EXPECT_EQ(buffers[0].size(), 0U);
    EXPECT_EQ(static_cast<const char*>(buffers[1].data()), source.data() + taken);

    // Sending on while a full socket takes nothing leaves the buffers as they are; reading
    // on makes room, until everything has arrived, byte for byte.
    std::string received;
    for (int round = 0; round < 100000 && received.size() < source.size(); ++round) {
        const auto before = left_in(buffers);
        send_available(pair.sender, buffers, ec);
        ASSERT_FALSE(ec);
        ASSERT_LE(left_in(buffers), before);
        received += pair.read_some();
    }
    EXPECT_EQ(left_in(buffers), 0U);
    EXPECT_TRUE(received == source) << "received " << received.size() << " bytes";
}

TEST(SendAvailableTest, WhatAFullSocketLeftGoesByAnAsyncWrite)
{
    // As the proxy does: a direct send first, then an awaited write of the rest on the same
    // stream, with its deadline, while the peer reads.
    connected_pair pair(/*small_buffers=*/true);
    const std::string source = patterned(512 * 1024);
    std::array<net::const_buffer, 2> buffers{net::buffer(source.data(), 40),
                                             net::buffer(source.data() + 40, source.size() - 40)};
    boost::system::error_code ec;
    send_available(pair.sender, buffers, ec);
    ASSERT_FALSE(ec);
    ASSERT_GT(left_in(buffers), 0U);
    pair.sender.expires_after(std::chrono::seconds(10));
    bool done = false;
    boost::system::error_code write_ec;
    std::size_t written = 0;
    net::async_write(pair.sender, buffers,
                     [&](boost::system::error_code e, std::size_t n) {
                         done = true;
                         write_ec = e;
                         written = n;
                     });
    std::string received;
    for (int round = 0; round < 100000 && received.size() < source.size(); ++round) {
        pair.context.poll();
        received += pair.read_some(10);
    }
    for (int round = 0; round < 1000 && !done; ++round) {
        pair.context.run_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(done);
    EXPECT_FALSE(write_ec) << write_ec.message();
    EXPECT_EQ(written, left_in(buffers));
    EXPECT_TRUE(received == source) << "received " << received.size() << " bytes";
}

/**
 * Runs `send` with SIGPIPE blocked, so that a send that raises it leaves it pending instead
 * of ending the test (or being ignored, as a proxy run earlier in this process may have set
 * it); returns whether it was raised.
 */
template <typename Send>
bool raises_sigpipe(const Send& send)
{
    sigset_t pipe_only;
    sigset_t previous;
    ::sigemptyset(&pipe_only);
    ::sigaddset(&pipe_only, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
    send();
    sigset_t pending;
    ::sigemptyset(&pending);
    ::sigpending(&pending);
    const bool raised = ::sigismember(&pending, SIGPIPE) == 1;
    if (raised) {
        int taken = 0;
        ::sigwait(&pipe_only, &taken);
    }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return raised;
}

TEST(SendAvailableTest, ASocketShutForSendingIsAnErrorNotASignal)
{
    connected_pair pair;
    ASSERT_EQ(::shutdown(pair.sender.socket().native_handle(), SHUT_WR), 0);
    const std::string bytes(1024, 'x');
    boost::system::error_code ec;
    std::array<net::const_buffer, 2> buffers{net::buffer(bytes), net::const_buffer{}};
    EXPECT_FALSE(raises_sigpipe([&] { send_available(pair.sender, buffers, ec); }));
    EXPECT_EQ(ec, boost::system::errc::broken_pipe) << ec.message();
    EXPECT_EQ(left_in(buffers), bytes.size());
}

TEST(SendAvailableTest, AResetPeerIsAnError)
{
    connected_pair pair;
    pair.receiver.set_option(net::socket_base::linger(true, 0));
    pair.receiver.close(); // a reset, not a FIN
    const std::string bytes(1024, 'x');
    boost::system::error_code ec;
    // The reset may arrive only after a first send.
    EXPECT_FALSE(raises_sigpipe([&] {
        for (int i = 0; i < 100 && !ec; ++i) {
            std::array<net::const_buffer, 2> buffers{net::buffer(bytes), net::const_buffer{}};
            send_available(pair.sender, buffers, ec);
            if (!ec) {
                ::poll(nullptr, 0, 10);
            }
        }
    }));
    EXPECT_TRUE(ec == boost::system::errc::connection_reset ||
                ec == boost::system::errc::broken_pipe)
        << ec.message();
}

} // namespace
} // namespace portico::test
