// What a connection costs in heap while it waits: for its backend, or for its next request.
// The proxy runs in-process, so glibc's count of bytes in use covers it exactly; the backend
// and the clients here are raw sockets that allocate nothing while the count is taken.

#include "support/origin.hpp"
#include "support/proxy_harness.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

namespace portico::test {
namespace {

constexpr std::size_t most_connections = 400;

/**
 * A backend on a raw socket that reads request heads on up to `most_connections`
 * connections at once and either answers each at once or holds it unanswered. Its storage
 * is allocated up front, so that it adds nothing to the heap while a test measures.
 */
class raw_backend {
public:
    explicit raw_backend(bool answer) : answer_(answer)
    {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(addr);
        if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
            ::listen(listener_, 512) != 0 ||
            ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error("raw_backend: cannot listen on loopback");
        }
        port_ = ntohs(addr.sin_port);
        polled_.reserve(most_connections + 1);
        filled_.assign(most_connections + 1, 0);
        heads_ = std::make_unique<std::array<char, 2048>[]>(most_connections + 1);
        thread_ = std::thread([this] { serve(); });
    }
    ~raw_backend() { hang_up(); }
    raw_backend(const raw_backend&) = delete;
    raw_backend& operator=(const raw_backend&) = delete;

    unsigned short port() const { return port_; }
    /// Stops serving and closes every connection.
    void hang_up()
    {
        if (thread_.joinable()) {
            stop_ = true;
            thread_.join();
            for (const auto& p : polled_) {
                ::close(p.fd);
            }
        }
    }

    /// Complete request heads read so far.
    std::size_t heads() const { return heads_seen_.load(); }

private:
    void serve()
    {
        polled_.push_back({listener_, POLLIN, 0});
        while (!stop_) {
            if (::poll(polled_.data(), polled_.size(), 50) <= 0) {
                continue;
            }
            for (std::size_t i = 0; i < polled_.size(); ++i) {
                if ((polled_[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                    continue;
                }
                if (i == 0) {
                    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
                    if (fd >= 0 && polled_.size() < polled_.capacity()) {
                        polled_.push_back({fd, POLLIN, 0});
                    } else if (fd >= 0) {
                        ::close(fd);
                    }
                    continue;
                }
                read_from(i);
            }
        }
    }

    void read_from(std::size_t i)
    {
        auto& head = heads_[i];
        const auto n = ::recv(polled_[i].fd, head.data() + filled_[i], head.size() - filled_[i],
                              MSG_DONTWAIT);
        if (n <= 0) {
            polled_[i].events = 0; // closed or reset: nothing more to read there
            return;
        }
        filled_[i] += static_cast<std::size_t>(n);
        const std::string_view seen(head.data(), filled_[i]);
        if (seen.find("\r\n\r\n") == std::string_view::npos && filled_[i] < head.size()) {
            return;
        }
        filled_[i] = 0;
        heads_seen_.fetch_add(1);
        if (answer_) {
            static constexpr std::string_view ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            (void)::send(polled_[i].fd, ok.data(), ok.size(), MSG_NOSIGNAL);
        }
    }

    bool answer_;
    int listener_ = -1;
    unsigned short port_ = 0;
    std::vector<pollfd> polled_;
    std::vector<std::size_t> filled_;
    std::unique_ptr<std::array<char, 2048>[]> heads_;
    std::atomic<std::size_t> heads_seen_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// Bytes the process's heap has in use (every arena).
std::int64_t heap_in_use() { return static_cast<std::int64_t>(::mallinfo2().uordblks); }

/// A blocking loopback connection to `port` whose reads give up after five seconds, or -1.
int connect_to(unsigned short port)
{
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const timeval limit{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

constexpr std::string_view get_request = "GET /poll HTTP/1.1\r\nHost: app.localhost\r\n\r\n";

/// Waits (at most five seconds) until `done` holds.
template <typename Condition>
bool wait_until(Condition done)
{
    for (int i = 0; i < 500 && !done(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
}

/// Closes every descriptor in `fds` when it goes.
struct closing_all {
    std::vector<int> fds;
    ~closing_all()
    {
        for (const int fd : fds) {
            ::close(fd);
        }
    }
};

/// One worker, so that the requests measured share one thread's heap, and one route.
std::string single_worker_route_to(unsigned short port)
{
    return fmt::format("workers: 1\nroutes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
                       port);
}

/// Connects to `port` and sends a GET on the new connection, which joins `clients`.
bool send_get_on_new_connection(unsigned short port, closing_all& clients)
{
    const int fd = connect_to(port);
    if (fd < 0) {
        return false;
    }
    clients.fds.push_back(fd);
    return ::send(fd, get_request.data(), get_request.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(get_request.size());
}

class MemoryTest : public ::testing::Test {
protected:
    void SetUp() override
    {
#if defined(PORTICO_SANITIZE)
        GTEST_SKIP() << "the sanitizers replace malloc, whose count this reads";
#endif
    }
};

TEST_F(MemoryTest, RequestWaitingForItsBackendHoldsNoReadBuffer)
{
    // A long poll, an event stream or a slow backend keeps a request waiting for its answer.
    // The connection's 4 KiB first-read buffer is empty then and is given up; what stays is
    // the request's coroutine frames, its parsed fields, and both connections' objects.
    raw_backend backend(false);
    proxy_harness proxy(single_worker_route_to(backend.port()));
    // Each waiting request holds four descriptors in this process (client, portico's two
    // sockets, the backend's): 680 in all, under the common limit of 1,024.
    constexpr std::size_t warm = 20;
    constexpr std::size_t measured = 150;
    closing_all clients;
    clients.fds.reserve(warm + measured);
    const auto open_waiting = [&](std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) {
            ASSERT_TRUE(send_get_on_new_connection(proxy.port(), clients));
        }
        const auto expected = clients.fds.size();
        ASSERT_TRUE(wait_until([&] { return backend.heads() == expected; }))
            << backend.heads() << " of " << expected << " requests reached the backend";
        // The proxy lets the buffer go right after the head is out; give it that moment.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    };
    open_waiting(warm);
    const auto before = heap_in_use();
    open_waiting(measured);
    const auto per_request = (heap_in_use() - before) / static_cast<std::int64_t>(measured);
    // About 7.3 KB, of which 3.4 KB are coroutine frames; 11.4 KB with the buffer held.
    EXPECT_LT(per_request, 9 * 1024) << per_request << " bytes of heap per waiting request";
    backend.hang_up(); // the waiting requests end (502), so the proxy stops at once
}

TEST_F(MemoryTest, ConnectionIdleAfterItsFirstRequestHoldsLittleHeap)
{
    // Browsers open connections and leave most of them idle after one request. Such a
    // connection is parked (decision 0021): its descriptor waits in the worker's parking
    // lot, with no coroutine frame, buffer, socket state or pending operation.
    raw_backend backend(true);
    proxy_harness proxy(single_worker_route_to(backend.port()));
    constexpr std::size_t warm = 20;
    constexpr std::size_t measured = 300;
    closing_all clients;
    clients.fds.reserve(warm + measured);
    std::array<char, 512> answer{};
    const auto open_idle = [&](std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) {
            ASSERT_TRUE(send_get_on_new_connection(proxy.port(), clients));
            const int fd = clients.fds.back();
            // One at a time, so that one pooled backend connection serves them all.
            std::size_t got = 0;
            while (got < answer.size()) {
                const auto n = ::recv(fd, answer.data() + got, answer.size() - got, 0);
                ASSERT_GT(n, 0);
                got += static_cast<std::size_t>(n);
                if (std::string_view(answer.data(), got).ends_with("\r\n\r\nok")) {
                    break;
                }
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    };
    open_idle(warm);
    const auto before = heap_in_use();
    open_idle(measured);
    const auto per_connection = (heap_in_use() - before) / static_cast<std::int64_t>(measured);
    // About 100 bytes (a 64-byte slot, and the slack of the array that holds the slots);
    // 1.0 KB when a parked connection kept its Asio socket and a pending wait, 2.9 KB when
    // it waited in its coroutine.
    EXPECT_LT(per_connection, 300) << per_connection << " bytes of heap per idle connection";
}

} // namespace
} // namespace portico::test
