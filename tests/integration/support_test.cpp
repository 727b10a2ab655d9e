// The test support itself: a peer that stops answering must not hold a test past the
// socket's bound.

#include "support/origin.hpp"

#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>

namespace portico::test {
namespace {

using namespace std::chrono_literals;

/// A backend that holds each connection open, reading and sending nothing, until released.
class silent_origin {
public:
    silent_origin()
        : server_([this](origin_connection&) {
              wait_until([this] { return released_.load(); }, std::chrono::seconds(10));
          })
    {
    }
    ~silent_origin() { released_ = true; }
    unsigned short port() const noexcept { return server_.port(); }

private:
    std::atomic<bool> released_{false};
    origin server_;
};

TEST(SupportTest, ReadFromAPeerThatSendsNothingEndsAtTheSocketBound)
{
    silent_origin peer;
    client c(peer.port());
    bound_socket_waits(c.socket.native_handle(), 300ms);
    c.write_raw("GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n");

    auto start = std::chrono::steady_clock::now();
    try {
        c.read_response();
        ADD_FAILURE() << "a response from a peer that sent nothing";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), net::error::timed_out) << e.code().message();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);

    // The connection is open and quiet: not closed, said within its second.
    start = std::chrono::steady_clock::now();
    EXPECT_FALSE(c.is_closed_by_peer());
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(SupportTest, WriteToAPeerThatReadsNothingEndsAtTheSocketBound)
{
    // A write gives up after a bound passes with no progress; the peer's socket takes some
    // megabytes first, in a few steps, so the bound is short.
    silent_origin peer;
    client c(peer.port());
    bound_socket_waits(c.socket.native_handle(), 100ms);
    const std::string bytes(64 * 1024 * 1024, 'x'); // far more than the sockets hold
    const auto start = std::chrono::steady_clock::now();
    boost::system::error_code ec;
    const auto written = net::write(c.stream, net::buffer(bytes), ec);
    EXPECT_EQ(ec, net::error::timed_out) << ec.message();
    EXPECT_LT(written, bytes.size());
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

} // namespace
} // namespace portico::test
