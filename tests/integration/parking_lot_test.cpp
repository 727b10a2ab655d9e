// The parking lot (decision 0021) on real loopback connections: which connections it hands
// back, which it closes and when, and that it keeps working after a shutdown emptied it.

#include "proxy/parking_lot.hpp"
#include "support/descriptor_limit.hpp"
#include "support/origin.hpp"

#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <string_view>
#include <vector>

namespace portico::test {
namespace {

using proxy::parked_connection;
using proxy::parking_lot;
using namespace std::chrono_literals;

bool is_open_descriptor(int fd)
{
    return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/// A lot on its own context, the connections it was given, and what it reported of them.
struct lot_fixture {
    net::io_context context{1};
    std::vector<parked_connection> resumed;
    int closed = 0;
    parking_lot lot;
    tcp::acceptor acceptor = loopback_acceptor(context);
    std::vector<tcp::socket> clients;
    std::uint64_t next_id = 1;

    explicit lot_fixture(std::chrono::steady_clock::duration idle = 10s)
        : lot(
              context, idle, [this](const parked_connection& c) { resumed.push_back(c); },
              [this] { ++closed; })
    {
    }

    ~lot_fixture()
    {
        // What the lot handed back is the test's to close.
        for (const auto& c : resumed) {
            ::close(c.fd);
        }
    }

    /// Connects a client; returns the proxy's end as it would be parked.
    parked_connection connect_new()
    {
        clients.emplace_back(context);
        clients.back().connect(acceptor.local_endpoint());
        tcp::endpoint remote;
        auto server = acceptor.accept(remote);
        parked_connection p;
        p.remote = remote;
        p.id = next_id++;
        p.local_port = acceptor.local_endpoint().port();
        p.fd = server.release();
        return p;
    }

    /// Connects a client and parks the proxy's end; returns that end's descriptor.
    int park_new()
    {
        const auto p = connect_new();
        boost::system::error_code ec;
        lot.park(p, ec);
        EXPECT_FALSE(ec) << ec.message();
        return p.fd;
    }

    /// Runs the context until `done` holds, at most two seconds.
    template <typename Condition> bool run_until(Condition done)
    {
        for (int i = 0; i < 200 && !done(); ++i) {
            context.run_for(10ms);
        }
        return done();
    }

    /// Whether client `i` reads the end of its connection (waiting at most a second).
    bool client_sees_close(std::size_t i)
    {
        char byte = 0;
        timeval limit{1, 0};
        ::setsockopt(clients[i].native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
        return ::recv(clients[i].native_handle(), &byte, 1, 0) == 0;
    }

    void send(std::size_t i, std::string_view bytes)
    {
        net::write(clients[i], net::buffer(bytes.data(), bytes.size()));
    }
};

TEST(ParkingLotTest, ConnectionWhoseBytesArriveIsHandedBackWhole)
{
    lot_fixture f;
    const int first = f.park_new();
    const int second = f.park_new();
    EXPECT_EQ(f.lot.size(), 2U);
    f.send(1, "GET / HTTP/1.1\r\n");
    ASSERT_TRUE(f.run_until([&] { return f.resumed.size() == 1; }));
    const auto& back = f.resumed.front();
    EXPECT_EQ(back.fd, second);
    EXPECT_EQ(back.id, 2U);
    EXPECT_EQ(back.remote, f.clients[1].local_endpoint());
    EXPECT_EQ(back.local_port, f.acceptor.local_endpoint().port());
    EXPECT_EQ(f.lot.size(), 1U);
    EXPECT_EQ(f.closed, 0);
    // The bytes are still there for whoever serves it.
    char buf[32];
    EXPECT_EQ(::recv(back.fd, buf, sizeof(buf), 0), 16);
    EXPECT_TRUE(is_open_descriptor(first));
}

TEST(ParkingLotTest, ClientThatClosesIsClosedWithoutBeingHandedBack)
{
    lot_fixture f;
    const int fd = f.park_new();
    f.clients[0].close();
    ASSERT_TRUE(f.run_until([&] { return f.closed == 1; }));
    EXPECT_TRUE(f.resumed.empty());
    EXPECT_EQ(f.lot.size(), 0U);
    EXPECT_FALSE(is_open_descriptor(fd));
}

TEST(ParkingLotTest, RequestFollowedByAHalfCloseIsHandedBack)
{
    // A client may send its request and shut down its writing side at once: the hang-up
    // comes with bytes to read, and the request is served.
    lot_fixture f;
    f.park_new();
    f.send(0, "GET / HTTP/1.1\r\n\r\n");
    f.clients[0].shutdown(tcp::socket::shutdown_send);
    ASSERT_TRUE(f.run_until([&] { return f.resumed.size() + f.closed > 0; }));
    EXPECT_EQ(f.resumed.size(), 1U);
    EXPECT_EQ(f.closed, 0);
}

TEST(ParkingLotTest, ConnectionIdleForTheIdleTimeIsClosed)
{
    lot_fixture f(150ms);
    const auto start = std::chrono::steady_clock::now();
    const int fd = f.park_new();
    ASSERT_TRUE(f.run_until([&] { return f.closed == 1; }));
    const auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_GE(waited, 150ms);
    EXPECT_LT(waited, 1s);
    EXPECT_FALSE(is_open_descriptor(fd));
    EXPECT_TRUE(f.client_sees_close(0));
    EXPECT_TRUE(f.resumed.empty());
}

TEST(ParkingLotTest, ConnectionsParkedLaterAreClosedLater)
{
    lot_fixture f(300ms);
    f.park_new();
    f.context.run_for(200ms);
    f.park_new();
    ASSERT_TRUE(f.run_until([&] { return f.closed == 1; }));
    EXPECT_EQ(f.lot.size(), 1U) << "the second connection has waited only about 100 ms";
    ASSERT_TRUE(f.run_until([&] { return f.closed == 2; }));
    EXPECT_TRUE(f.client_sees_close(0));
    EXPECT_TRUE(f.client_sees_close(1));
}

TEST(ParkingLotTest, ShorterIdleTimeAppliesToConnectionsAlreadyParked)
{
    // A reload that shortens timeouts.idle: connections parked before it are closed by the
    // new limit, not kept for the old one.
    lot_fixture f(30s);
    f.park_new();
    f.context.run_for(20ms);
    f.lot.set_idle(100ms);
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(f.run_until([&] { return f.closed == 1; }));
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    EXPECT_TRUE(f.client_sees_close(0));
}

TEST(ParkingLotTest, CloseAllClosesEveryConnectionAndParkingWorksAfterwards)
{
    lot_fixture f;
    std::vector<int> fds;
    for (int i = 0; i < 3; ++i) {
        fds.push_back(f.park_new());
    }
    EXPECT_EQ(f.lot.close_all(), 3U);
    EXPECT_EQ(f.closed, 3);
    EXPECT_EQ(f.lot.size(), 0U);
    for (std::size_t i = 0; i < fds.size(); ++i) {
        EXPECT_FALSE(is_open_descriptor(fds[i]));
        EXPECT_TRUE(f.client_sees_close(i));
    }
    // Parked again at once, before the ended wait has completed: the new wait must not be
    // mistaken for it.
    f.park_new();
    f.send(3, "GET");
    ASSERT_TRUE(f.run_until([&] { return f.resumed.size() == 1; }));
    EXPECT_EQ(f.resumed.front().id, 4U);
}

TEST(ParkingLotTest, ManyConnectionsReadyTogetherAreAllHandedBack)
{
    // More than one epoll_wait takes: the lot's descriptor is watched edge-triggered, so
    // everything ready must be taken before the next wait, or the rest would wait for a
    // new edge that may never come.
    // The lot's slots grow meanwhile: each connection is handed back with its own descriptor
    // and number.
    lot_fixture f;
    constexpr std::size_t count = 300;
    std::map<int, std::uint64_t> parked; // descriptor -> connection number
    for (std::size_t i = 0; i < count; ++i) {
        const int fd = f.park_new();
        parked[fd] = f.next_id - 1;
    }
    for (std::size_t i = 0; i < count; ++i) {
        f.send(i, "x");
    }
    ASSERT_TRUE(f.run_until([&] { return f.resumed.size() == count; }))
        << f.resumed.size() << " of " << count;
    EXPECT_EQ(f.lot.size(), 0U);
    for (const auto& c : f.resumed) {
        const auto it = parked.find(c.fd);
        ASSERT_NE(it, parked.end()) << "descriptor " << c.fd << " was not parked";
        EXPECT_EQ(c.id, it->second) << "descriptor " << c.fd;
        parked.erase(it);
    }
    // Freed slots are used again, and a connection parked now is still watched.
    f.park_new();
    f.send(count, "x");
    ASSERT_TRUE(f.run_until([&] { return f.resumed.size() == count + 1; }));
}

TEST(ParkingLotTest, DescriptorTheEpollSetRefusesIsLeftToTheCallerAndTheLotGoesOn)
{
    lot_fixture f;
    // epoll refuses what cannot be polled (EPERM), as it refuses any descriptor once the
    // kernel's limit of watched descriptors is reached (ENOSPC): the caller keeps it.
    const int unpollable = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(unpollable, 0);
    parked_connection refused;
    refused.fd = unpollable;
    refused.id = 99;
    boost::system::error_code ec;
    f.lot.park(refused, ec);
    EXPECT_EQ(ec, boost::system::errc::operation_not_permitted) << ec.message();
    EXPECT_EQ(f.lot.size(), 0U);
    EXPECT_TRUE(is_open_descriptor(unpollable));
    ::close(unpollable);
    // The slot it was given is free again, and the next connection is watched as usual.
    f.park_new();
    EXPECT_EQ(f.lot.size(), 1U);
    f.send(0, "GET");
    ASSERT_TRUE(f.run_until([&] { return f.resumed.size() == 1; }));
    EXPECT_EQ(f.resumed.front().id, 1U);
    EXPECT_EQ(f.closed, 0);
}

TEST(ParkingLotTest, ConnectionsAreParkedWhileTheProcessIsOutOfDescriptors)
{
    // A worker out of descriptors still parks what it served: closing those connections
    // instead would free a descriptor for the next accept, whose connection would in turn
    // be closed, and so on, each client paying a new connection per request.
    PORTICO_SKIP_IF_SANITIZED_OUT_OF_DESCRIPTORS();
    lot_fixture f;
    const auto first = f.connect_new();
    const auto second = f.connect_new();
    {
        const out_of_descriptors none_left;
        ASSERT_LT(::dup(first.fd), 0);
        ASSERT_EQ(errno, EMFILE);
        for (const auto& p : {first, second}) {
            boost::system::error_code ec;
            f.lot.park(p, ec);
            EXPECT_FALSE(ec) << ec.message();
        }
        EXPECT_EQ(f.lot.size(), 2U);
        f.send(1, "GET");
        EXPECT_TRUE(f.run_until([&] { return f.resumed.size() == 1; }));
    }
    ASSERT_EQ(f.resumed.size(), 1U);
    EXPECT_EQ(f.resumed.front().id, second.id);
    EXPECT_TRUE(is_open_descriptor(first.fd));
    EXPECT_EQ(f.closed, 0);
}

TEST(ParkingLotTest, SlotFreedInTheMiddleIsReusedWithoutDisturbingTheOthers)
{
    lot_fixture f(400ms);
    f.park_new();
    f.park_new();
    f.park_new();
    f.send(1, "x");
    ASSERT_TRUE(f.run_until([&] { return f.resumed.size() == 1; }));
    EXPECT_EQ(f.resumed.front().id, 2U);
    f.park_new(); // takes the middle slot
    f.send(3, "y");
    ASSERT_TRUE(f.run_until([&] { return f.resumed.size() == 2; }));
    EXPECT_EQ(f.resumed.back().id, 4U);
    // The first and third, parked at the start, still time out together.
    ASSERT_TRUE(f.run_until([&] { return f.closed == 2; }));
    EXPECT_TRUE(f.client_sees_close(0));
    EXPECT_TRUE(f.client_sees_close(2));
}

} // namespace
} // namespace portico::test
