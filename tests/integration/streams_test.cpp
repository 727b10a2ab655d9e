// `send_available` on real loopback sockets: what a socket takes at once, what it leaves.

#include "proxy/streams.hpp"
#include "support/origin.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <fstream>
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

/**
 * Whether `fd` is in one of this process's epoll sets, as the kernel lists them in
 * /proc/self/fdinfo (a `tfd:` line per registered descriptor).
 */
bool in_an_epoll_set(int fd)
{
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        ADD_FAILURE() << "no /proc/self/fd";
        return false;
    }
    bool found = false;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string name = entry->d_name;
        std::array<char, 64> target{};
        const auto n = ::readlink(("/proc/self/fd/" + name).c_str(), target.data(), target.size());
        if (n <= 0 || std::string(target.data(), static_cast<std::size_t>(n)) !=
                          "anon_inode:[eventpoll]") {
            continue;
        }
        std::ifstream info("/proc/self/fdinfo/" + name);
        std::string word;
        while (info >> word) {
            if (word == "tfd:" && info >> word && word == std::to_string(fd)) {
                found = true;
            }
        }
    }
    ::closedir(dir);
    return found;
}

/// A connection accepted as the worker accepts one: with accept4, and handed to a stream
/// that adopts its descriptor.
struct adopted_pair {
    net::io_context context;
    tcp::socket client{context};
    int fd = -1;
    std::unique_ptr<tcp_stream> stream;

    adopted_pair()
    {
        auto acceptor = loopback_acceptor(context);
        client.connect(acceptor.local_endpoint());
        fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        EXPECT_GE(fd, 0);
        stream = std::make_unique<tcp_stream>(executor(context.get_executor()), tcp::v4(), fd);
    }
};

TEST(AdoptedDescriptorTest, EntersTheReactorOnlyWhenAnOperationWaits)
{
    adopted_pair pair;
    EXPECT_EQ(pair.stream->descriptor(), pair.fd);
    EXPECT_TRUE(pair.stream->is_open());
    EXPECT_FALSE(in_an_epoll_set(pair.fd));

    // A request that is there, and a response the socket takes: no epoll_ctl.
    net::write(pair.client, net::buffer("ping", 4));
    std::array<char, 16> got{};
    ::poll(nullptr, 0, 20);
    EXPECT_EQ(::recv(pair.stream->descriptor(), got.data(), got.size(), 0), 4);
    std::array<net::const_buffer, 2> buffers{net::buffer("pong", 4), net::const_buffer{}};
    boost::system::error_code ec;
    send_available(*pair.stream, buffers, ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(left_in(buffers), 0U);
    EXPECT_FALSE(in_an_epoll_set(pair.fd));

    // A read that finds nothing waits in the reactor, and completes when bytes come.
    bool done = false;
    std::size_t read = 0;
    pair.stream->expires_after(std::chrono::seconds(10));
    pair.stream->async_read_some(net::buffer(got), [&](boost::system::error_code e, std::size_t n) {
        done = true;
        ec = e;
        read = n;
    });
    pair.context.poll();
    EXPECT_FALSE(done);
    EXPECT_TRUE(in_an_epoll_set(pair.fd));
    EXPECT_EQ(pair.stream->descriptor(), pair.fd);
    net::write(pair.client, net::buffer("again", 5));
    for (int round = 0; round < 1000 && !done; ++round) {
        pair.context.run_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(done);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string(got.data(), read), "again");
}

TEST(AdoptedDescriptorTest, ADeadlineStillCutsAWaitThatRegisteredIt)
{
    adopted_pair pair;
    bool done = false;
    boost::system::error_code ec;
    std::array<char, 16> got{};
    EXPECT_FALSE(in_an_epoll_set(pair.fd));
    pair.stream->expires_after(std::chrono::milliseconds(30));
    pair.stream->async_read_some(net::buffer(got), [&](boost::system::error_code e, std::size_t) {
        done = true;
        ec = e;
    });
    EXPECT_TRUE(in_an_epoll_set(pair.fd));
    for (int round = 0; round < 5000 && !done; ++round) {
        pair.context.run_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(done);
    EXPECT_EQ(ec, beast::error::timeout) << ec.message();
    EXPECT_FALSE(pair.stream->is_open());
}

TEST(AdoptedDescriptorTest, ShutdownReleaseAndCloseWorkOnTheBareDescriptor)
{
    {
        // Shut for sending: the peer reads the end of the stream.
        adopted_pair pair;
        boost::system::error_code ec;
        pair.stream->shutdown(net::socket_base::shutdown_send, ec);
        EXPECT_FALSE(ec) << ec.message();
        std::array<char, 4> got{};
        boost::system::error_code read_ec;
        pair.client.read_some(net::buffer(got), read_ec);
        EXPECT_EQ(read_ec, net::error::eof);
        EXPECT_FALSE(in_an_epoll_set(pair.fd));
    }
    {
        // Released: the descriptor is the caller's, open, in no epoll set.
        adopted_pair pair;
        boost::system::error_code ec;
        const int fd = pair.stream->release(ec);
        EXPECT_FALSE(ec);
        EXPECT_EQ(fd, pair.fd);
        EXPECT_FALSE(pair.stream->is_open());
        pair.stream.reset();
        EXPECT_NE(::fcntl(fd, F_GETFD), -1) << "the stream closed a released descriptor";
        EXPECT_FALSE(in_an_epoll_set(fd));
        ::close(fd);
    }
    {
        // Destroyed: the descriptor is closed, and the peer sees the end.
        adopted_pair pair;
        pair.stream.reset();
        std::array<char, 4> got{};
        boost::system::error_code read_ec;
        pair.client.read_some(net::buffer(got), read_ec);
        EXPECT_EQ(read_ec, net::error::eof);
    }
}

} // namespace
} // namespace portico::test
