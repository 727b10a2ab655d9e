// Sends gathered over one turn of a worker's loop (`send_batch`, decision 0020), on real
// loopback sockets, through an io_uring and without one: what each socket takes, what it
// leaves, what a broken or cancelled one reports, and that a turn's sends cost one system
// call.

#include "proxy/send_batch.hpp"
#include "proxy/streams.hpp"
#include "support/descriptor_limit.hpp"
#include "support/origin.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace portico::test {
namespace {

using proxy::send_batch;
using proxy::tcp_stream;
using std::chrono::steady_clock;
using namespace std::chrono_literals;

/// `count` connected pairs on one context: `senders` as a worker holds its sockets,
/// `receivers` plain sockets the test reads.
struct connections {
    net::io_context context{1};
    std::vector<std::unique_ptr<tcp_stream>> senders;
    std::vector<tcp::socket> receivers;

    explicit connections(int count, int receive_buffer = 0)
    {
        auto acceptor = loopback_acceptor(context, receive_buffer);
        for (int i = 0; i < count; ++i) {
            senders.push_back(std::make_unique<tcp_stream>(executor(context.get_executor())));
            senders.back()->socket().connect(acceptor.local_endpoint());
            if (receive_buffer > 0) {
                senders.back()->socket().set_option(
                    net::socket_base::send_buffer_size(receive_buffer));
            }
            receivers.push_back(acceptor.accept());
        }
    }

    /// What has arrived on receiver `i`, waiting at most `wait_ms` for more after each read.
    std::string drain(std::size_t i, std::size_t expected, int wait_ms = 200)
    {
        std::string got;
        std::array<char, 65536> chunk{};
        while (got.size() < expected) {
            pollfd p{receivers[i].native_handle(), POLLIN, 0};
            if (::poll(&p, 1, wait_ms) <= 0) {
                break;
            }
            const auto n =
                ::recv(receivers[i].native_handle(), chunk.data(), chunk.size(), MSG_DONTWAIT);
            if (n <= 0) {
                break;
            }
            got.append(chunk.data(), static_cast<std::size_t>(n));
        }
        return got;
    }

    /// Runs the context until it has no work left, for at most `limit`.
    void run(std::chrono::milliseconds limit = std::chrono::seconds(10)) { context.run_for(limit); }
};

/// One send as a coroutine makes it: the buffers, and what the operation reported.
struct send_result {
    std::string head;
    std::string body;
    std::array<net::const_buffer, 2> buffers{};
    boost::system::error_code ec;
    bool completed = false;
    std::size_t left() const { return buffers[0].size() + buffers[1].size(); }
};

/// Starts a coroutine per sender that awaits one gathered send of `results[i]`, as the
/// worker's request path does, and (when `finish_with_write`) writes what was left.
void spawn_senders(connections& conns, send_batch& batch, std::vector<send_result>& results,
                   bool finish_with_write = false)
{
    for (std::size_t i = 0; i < results.size(); ++i) {
        auto& r = results[i];
        r.buffers = {net::buffer(r.head), net::buffer(r.body)};
        net::co_spawn(
            conns.context,
            [&conns, &batch, &r, i, finish_with_write]() -> net::awaitable<void> {
                co_await batch.send(*conns.senders[i], r.buffers, r.ec);
                r.completed = true;
                if (finish_with_write && !r.ec && r.left() > 0) {
                    conns.senders[i]->expires_after(std::chrono::seconds(10));
                    auto [ec, n] = co_await net::async_write(*conns.senders[i], r.buffers);
                    r.ec = ec;
                }
            },
            net::detached);
    }
}

/// Checks that every send of `results` completed, without error, leaving nothing for a
/// write, and that its receiver got its head and body whole.
void expect_each_sent_whole(connections& conns, const std::vector<send_result>& results)
{
    for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        ASSERT_TRUE(r.completed) << i;
        EXPECT_FALSE(r.ec) << i << ": " << r.ec.message();
        EXPECT_EQ(r.left(), 0U) << i;
        EXPECT_EQ(conns.drain(i, r.head.size() + r.body.size()), r.head + r.body) << i;
    }
}

class SendBatchTest : public ::testing::TestWithParam<bool> {
protected:
    bool use_ring() const { return GetParam(); }
};

TEST_P(SendBatchTest, ATurnsSendsAllArriveInOneSystemCall)
{
    constexpr int count = 40;
    connections conns(count);
    send_batch batch(conns.context, use_ring());
    std::vector<send_result> results(count);
    for (int i = 0; i < count; ++i) {
        results[i].head = "GET /" + std::to_string(i) + " HTTP/1.1\r\nHost: a\r\n\r\n";
        results[i].body = i % 2 == 0 ? std::string() : std::string(100 + i, 'b');
    }
    spawn_senders(conns, batch, results);
    conns.run();
    expect_each_sent_whole(conns, results);
    EXPECT_EQ(batch.sends(), static_cast<std::uint64_t>(count));
    if (use_ring() && batch.uses_ring()) {
        EXPECT_EQ(batch.system_calls(), 1U); // 40 sends fit one submission of 64
    } else {
        EXPECT_EQ(batch.system_calls(), static_cast<std::uint64_t>(count));
    }
}

TEST_P(SendBatchTest, MoreSendsThanTheRingHoldsTakeSeveralSubmissions)
{
    constexpr int count = 150;
    connections conns(count);
    send_batch batch(conns.context, use_ring());
    std::vector<send_result> results(count);
    for (int i = 0; i < count; ++i) {
        results[i].head = "request " + std::to_string(i) + "\n";
    }
    spawn_senders(conns, batch, results);
    conns.run();
    expect_each_sent_whole(conns, results);
    if (use_ring() && batch.uses_ring()) {
        EXPECT_EQ(batch.system_calls(), 3U); // 64 + 64 + 22
    }
}

TEST_P(SendBatchTest, WhatAFullSocketDidNotTakeIsLeftInOrderForAWrite)
{
    // Small socket buffers: 512 KiB cannot go at once; the rest goes by an awaited write
    // while the test reads, and arrives whole and in order.
    connections conns(2, 4096);
    send_batch batch(conns.context, use_ring());
    std::vector<send_result> results(2);
    std::string big(512 * 1024, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
    }
    results[0].head = "small";
    results[1].head = "head of a large one\r\n";
    results[1].body = big;
    spawn_senders(conns, batch, results, /*finish_with_write=*/true);
    // The first turn: both sends made; the large one left most of its body.
    for (int i = 0; i < 100 && !(results[0].completed && results[1].completed); ++i) {
        conns.context.run_one_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(results[1].completed);
    EXPECT_FALSE(results[1].ec);
    EXPECT_GT(results[1].left(), 0U);
    EXPECT_LT(results[1].left(), big.size() + results[1].head.size());
    std::string received;
    const auto expected = results[1].head + big;
    for (int round = 0; round < 100000 && received.size() < expected.size(); ++round) {
        conns.context.poll();
        received += conns.drain(1, expected.size() - received.size(), 5);
    }
    conns.run(std::chrono::seconds(2));
    EXPECT_FALSE(results[1].ec) << results[1].ec.message();
    EXPECT_TRUE(received == expected)
        << "received " << received.size() << " of " << expected.size();
    EXPECT_EQ(conns.drain(0, 5), "small");
}

TEST_P(SendBatchTest, AResetPeerIsAnErrorForItsSendOnly)
{
    connections conns(3);
    send_batch batch(conns.context, use_ring());
    // A reset, not a FIN; a first send may be needed before the socket knows.
    conns.receivers[1].set_option(net::socket_base::linger(true, 0));
    conns.receivers[1].close();
    boost::system::error_code reset;
    for (int attempt = 0; attempt < 100 && !reset; ++attempt) {
        std::vector<send_result> results(3);
        for (auto& r : results) {
            r.head = std::string(1024, 'x');
        }
        spawn_senders(conns, batch, results);
        conns.run();
        EXPECT_FALSE(results[0].ec);
        EXPECT_FALSE(results[2].ec);
        reset = results[1].ec;
        if (!reset) {
            ::poll(nullptr, 0, 10);
        }
    }
    EXPECT_TRUE(reset == boost::system::errc::connection_reset ||
                reset == boost::system::errc::broken_pipe)
        << reset.message();
    EXPECT_FALSE(conns.drain(0, 1024).empty());
    EXPECT_FALSE(conns.drain(2, 1024).empty());
}

TEST_P(SendBatchTest, AStreamCancelledOrClosedBeforeTheTurnEndsSendsNothing)
{
    connections conns(3);
    send_batch batch(conns.context, use_ring());
    std::vector<send_result> results(3);
    for (auto& r : results) {
        r.head = "request\n";
    }
    spawn_senders(conns, batch, results);
    // Started after the three, so it runs once they wait for the turn's flush and before
    // it: one stream cancelled and one closed, as a shutdown's deadline or a client's
    // leaving does meanwhile.
    net::co_spawn(
        conns.context,
        [&conns]() -> net::awaitable<void> {
            conns.senders[1]->cancel();
            conns.senders[2]->close();
            co_return;
        },
        net::detached);
    conns.run();
    for (auto& r : results) {
        ASSERT_TRUE(r.completed);
    }
    EXPECT_FALSE(results[0].ec);
    EXPECT_EQ(results[1].ec, net::error::operation_aborted) << results[1].ec.message();
    EXPECT_EQ(results[2].ec, net::error::operation_aborted) << results[2].ec.message();
    EXPECT_EQ(results[1].left(), results[1].head.size());
    EXPECT_EQ(conns.drain(0, 8), "request\n");
    EXPECT_EQ(conns.drain(1, 1, 50), "");
}

/// One turn of the loop: a send of each of `heads` (on connections 0, 1, ...), run until
/// done, each checked to have arrived whole.
void run_turn(connections& conns, send_batch& batch, const std::vector<std::string>& heads)
{
    std::vector<send_result> results(heads.size());
    for (std::size_t i = 0; i < heads.size(); ++i) {
        results[i].head = heads[i];
    }
    spawn_senders(conns, batch, results);
    conns.context.restart();
    conns.run();
    expect_each_sent_whole(conns, results);
}

TEST_P(SendBatchTest, SendsOfLaterTurnsGoInLaterSubmissions)
{
    connections conns(2);
    send_batch batch(conns.context, use_ring());
    for (int turn = 0; turn < 3; ++turn) {
        const std::string head = "turn " + std::to_string(turn) + "\n";
        run_turn(conns, batch, {head, head});
    }
    EXPECT_EQ(batch.sends(), 6U);
    if (use_ring() && batch.uses_ring()) {
        EXPECT_EQ(batch.system_calls(), 3U);
    }
}

TEST_P(SendBatchTest, ATurnWithOneSendMakesAPlainSendmsg)
{
    // Each request on a new connection is usually the only send of its turn: nothing to
    // gather, so no ring is made for it and no submission is paid for.
    connections conns(2);
    send_batch batch(conns.context, use_ring());
    for (int turn = 0; turn < 3; ++turn) {
        run_turn(conns, batch, {"alone " + std::to_string(turn) + "\n"});
    }
    EXPECT_EQ(batch.sends(), 3U);
    EXPECT_EQ(batch.system_calls(), 3U);
    EXPECT_EQ(batch.submissions(), 0U);
    EXPECT_FALSE(batch.uses_ring());

    // The first turn with two sends makes the ring, where the kernel gives one.
    run_turn(conns, batch, {"pair 0\n", "pair 1\n"});
    EXPECT_EQ(batch.sends(), 5U);
    if (use_ring() && batch.uses_ring()) {
        EXPECT_EQ(batch.submissions(), 1U);
        EXPECT_EQ(batch.system_calls(), 4U);
    } else {
        EXPECT_EQ(batch.submissions(), 0U);
        EXPECT_EQ(batch.system_calls(), 5U);
    }
}

/// Two connections and a batch that may make a ring, for the tests of when it is made;
/// they are skipped where this process may not make one.
class SendBatchRingTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        // The tests above run through the ring only where the kernel gives one; these say so
        // rather than let them pass through the fallback unnoticed.
        std::string why;
        if (!send_batch::ring_available(why)) {
            GTEST_SKIP() << "no io_uring here (kernel, seccomp or kernel.io_uring_disabled: " << why
                         << "): gathered sends go one sendmsg each";
        }
    }

    connections conns{2};
    send_batch batch{conns.context};
};

TEST_F(SendBatchRingTest, ThisKernelGivesARing)
{
    std::vector<send_result> results(2);
    results[0].head = "x";
    results[1].head = "y";
    spawn_senders(conns, batch, results);
    conns.run();
    ASSERT_TRUE(batch.uses_ring());
    EXPECT_EQ(batch.system_calls(), 1U);
    EXPECT_EQ(batch.submissions(), 1U);
}

/// Turns of two sends, 100 ms apart, until the batch has made its ring or `limit` has passed;
/// whether it made it.
bool pairs_until_ring(connections& conns, send_batch& batch, std::chrono::milliseconds limit)
{
    const auto give_up = steady_clock::now() + limit;
    for (int turn = 0; !batch.uses_ring() && steady_clock::now() < give_up; ++turn) {
        std::this_thread::sleep_for(100ms);
        const auto head = "later pair " + std::to_string(turn) + "\n";
        run_turn(conns, batch, {head, head});
    }
    return batch.uses_ring();
}

TEST_F(SendBatchRingTest, ARingRefusedForWantOfADescriptorIsAskedForAgainLater)
{
    PORTICO_SKIP_IF_SANITIZED_OUT_OF_DESCRIPTORS();
    const auto refused_at = steady_clock::now();
    {
        // The clients that took every descriptor leave later; the sends meanwhile go one
        // by one.
        const out_of_descriptors none_left;
        run_turn(conns, batch, {"pair 0\n", "pair 1\n"});
    }
    EXPECT_FALSE(batch.uses_ring());
    EXPECT_EQ(batch.system_calls(), 2U);
    // Not asked for again at every turn while it is still missing (unless this machine took
    // the whole second to get here)...
    run_turn(conns, batch, {"pair 2\n", "pair 3\n"});
    if (steady_clock::now() - refused_at < 900ms) {
        EXPECT_FALSE(batch.uses_ring());
    }
    // ...but once the second has passed.
    EXPECT_TRUE(pairs_until_ring(conns, batch, 1800ms));
}

TEST_F(SendBatchRingTest, EachRefusalInARowDoublesTheWaitForTheNextAsk)
{
    // Locked memory, which kernels before 5.12 charge rings to, may never come back: the
    // worker must not pay a failed ask every second for the rest of its life.
    PORTICO_SKIP_IF_SANITIZED_OUT_OF_DESCRIPTORS();
    auto second_refusal = steady_clock::now();
    {
        const out_of_descriptors none_left;
        run_turn(conns, batch, {"pair 0\n", "pair 1\n"}); // refused; asked again in 1 s
        std::this_thread::sleep_for(1100ms);
        second_refusal = steady_clock::now();
        run_turn(conns, batch, {"pair 2\n", "pair 3\n"}); // refused; asked again in 2 s
    }
    EXPECT_FALSE(batch.uses_ring());
    EXPECT_EQ(batch.system_calls(), 4U);
    std::this_thread::sleep_for(1200ms);
    run_turn(conns, batch, {"pair 4\n", "pair 5\n"});
    if (steady_clock::now() - second_refusal < 1900ms) {
        EXPECT_FALSE(batch.uses_ring()); // a wait of one second would have asked here
    }
    EXPECT_TRUE(pairs_until_ring(conns, batch, 2700ms));
}

/// What /proc names an io_uring's descriptor and mappings by.
constexpr std::string_view io_uring_inode = "anon_inode:[io_uring]";

/// The descriptors of this process's io_urings.
std::vector<int> ring_descriptors()
{
    std::vector<int> found;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = std::filesystem::read_symlink(entry.path(), ec);
        if (!ec && target.string() == io_uring_inode) {
            found.push_back(std::stoi(entry.path().filename().string()));
        }
    }
    return found;
}

/// Makes the next submission of the ring behind `descriptor` fail: the descriptor now names
/// /dev/null, which `io_uring_enter` refuses (EOPNOTSUPP), as a kernel short of memory for
/// the requests refuses a submission with EAGAIN. (This relies on liburing entering the
/// kernel with the ring's descriptor; a ring registered with `io_uring_register_ring_fd`
/// would not notice, and the test would fail at its first check, not pass unnoticed.)
void break_ring(int descriptor)
{
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(null, 0);
    const int replaced = ::dup2(null, descriptor);
    ::close(null);
    ASSERT_EQ(replaced, descriptor);
}

/// Whether `descriptor` is closed and no io_uring is mapped any more: the ring was closed,
/// not just left behind.
bool ring_closed(int descriptor)
{
    errno = 0;
    const bool closed = ::fcntl(descriptor, F_GETFD) == -1 && errno == EBADF;
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
        if (line.find(io_uring_inode) != std::string::npos) {
            return false;
        }
    }
    return closed;
}

TEST_F(SendBatchRingTest, AFailedSubmissionSetsTheRingAsideUntilLater)
{
    run_turn(conns, batch, {"pair 0\n", "pair 1\n"});
    ASSERT_TRUE(batch.uses_ring());
    const auto rings = ring_descriptors();
    ASSERT_EQ(rings.size(), 1U);

    // The turn whose submission fails still sends its requests, one by one, whole.
    ASSERT_NO_FATAL_FAILURE(break_ring(rings.front()));
    const auto failed_at = steady_clock::now();
    run_turn(conns, batch, {"pair 2\n", "pair 3\n"});
    EXPECT_FALSE(batch.uses_ring());
    EXPECT_EQ(batch.submissions(), 2U);
    EXPECT_EQ(batch.system_calls(), 4U); // two submissions, then two sendmsg
    EXPECT_TRUE(ring_closed(rings.front()));

    // Not made again at once (unless this machine took the whole second to get here)...
    run_turn(conns, batch, {"pair 4\n", "pair 5\n"});
    if (steady_clock::now() - failed_at < 900ms) {
        EXPECT_FALSE(batch.uses_ring());
    }
    // ...but a second later, and that one works.
    ASSERT_TRUE(pairs_until_ring(conns, batch, 1800ms));
    const auto submissions = batch.submissions();
    run_turn(conns, batch, {"pair 6\n", "pair 7\n"});
    EXPECT_TRUE(batch.uses_ring());
    EXPECT_EQ(batch.submissions(), submissions + 1);

    // A ring that worked ends the run of failures: after the next one, the wait is one
    // second again, not two.
    const auto again = ring_descriptors();
    ASSERT_EQ(again.size(), 1U);
    ASSERT_NO_FATAL_FAILURE(break_ring(again.front()));
    run_turn(conns, batch, {"pair 8\n", "pair 9\n"});
    EXPECT_FALSE(batch.uses_ring());
    EXPECT_TRUE(pairs_until_ring(conns, batch, 1800ms));
}

INSTANTIATE_TEST_SUITE_P(RingAndFallback, SendBatchTest, ::testing::Bool(),
                         [](const auto& param_info) {
                             return param_info.param ? "Ring" : "SendEach";
                         });

} // namespace
} // namespace portico::test
