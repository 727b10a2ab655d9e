// The mailbox through which other threads hand work to a worker whose io_context takes no
// scheduler lock: every item runs on the worker's thread, once, in the order each thread left
// it, and closing it lets the context run out of work.

#include "proxy/mailbox.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <set>
#include <string>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace portico::test {
namespace {

using namespace std::chrono_literals;

/// A context configured as a worker's: no scheduler lock, no per-socket locks.
constexpr int unlocked_hint = static_cast<int>(
    BOOST_ASIO_CONCURRENCY_HINT_ID | BOOST_ASIO_CONCURRENCY_HINT_LOCKING_REACTOR_REGISTRATION);

/// Runs `context` on a thread of its own; `finished` tells when `run` returned.
struct running_context {
    explicit running_context(net::io_context& context)
        : thread([&context, this] {
              id_promise.set_value(std::this_thread::get_id());
              context.run();
              done.set_value();
          })
    {
        worker_id = id_promise.get_future().get();
    }
    ~running_context() { thread.join(); }

    bool finishes_within(std::chrono::milliseconds limit)
    {
        return finished.wait_for(limit) == std::future_status::ready;
    }

    std::promise<std::thread::id> id_promise;
    std::promise<void> done;
    std::future<void> finished = done.get_future();
    std::thread::id worker_id;
    std::thread thread;
};

TEST(MailboxTest, WorkFromManyThreadsRunsOnTheWorkersThreadInOrder)
{
    net::io_context context(unlocked_hint);
    proxy::mailbox inbox(context);
    inbox.open();

    constexpr int posters = 4;
    constexpr int per_poster = 5000;
    // Plain (not atomic) state, touched only by the items: a race between two threads
    // running items would lose counts or break the order.
    std::vector<int> last_seen(posters, -1);
    int ran = 0;
    int out_of_order = 0;
    int off_thread = 0;
    std::thread::id worker_id;

    running_context runner(context);
    worker_id = runner.worker_id;
    {
        std::vector<std::jthread> threads;
        for (int p = 0; p < posters; ++p) {
            threads.emplace_back([&, p] {
                for (int i = 0; i < per_poster; ++i) {
                    const bool taken = inbox.post([&, p, i] {
                        if (std::this_thread::get_id() != worker_id) {
                            ++off_thread;
                        }
                        if (last_seen[p] != i - 1) {
                            ++out_of_order;
                        }
                        last_seen[p] = i;
                        ++ran;
                    });
                    ASSERT_TRUE(taken);
                }
            });
        }
    }
    ASSERT_TRUE(inbox.post([&] { inbox.close(); }));
    ASSERT_TRUE(runner.finishes_within(10s)) << "the context kept waiting after close";
    EXPECT_EQ(ran, posters * per_poster);
    EXPECT_EQ(out_of_order, 0);
    EXPECT_EQ(off_thread, 0);
    EXPECT_FALSE(inbox.post([] {})) << "a closed mailbox takes no more work";
}

TEST(MailboxTest, WorkLeftBeforeTheContextRunsIsDone)
{
    net::io_context context(unlocked_hint);
    proxy::mailbox inbox(context);
    int ran = 0;
    ASSERT_TRUE(inbox.post([&] { ++ran; }));
    ASSERT_TRUE(inbox.post([&] { ++ran; }));
    inbox.open();
    ASSERT_TRUE(inbox.post([&] { inbox.close(); }));
    running_context runner(context);
    ASSERT_TRUE(runner.finishes_within(10s));
    EXPECT_EQ(ran, 2);
}

TEST(MailboxTest, ClosedWhileWaitingRunsWhatWasLeftAndLetsTheContextFinish)
{
    net::io_context context(unlocked_hint);
    proxy::mailbox inbox(context);
    inbox.open();
    // Closed from the worker's own thread while the mailbox waits: from a timer, as the
    // worker closes it when its last connection ends. Work left just before, whose wake-up
    // the wait has not yet seen, still runs.
    int ran = 0;
    net::steady_timer timer(context, 50ms);
    timer.async_wait([&](const boost::system::error_code&) {
        ASSERT_TRUE(inbox.post([&] { ++ran; }));
        inbox.close();
    });
    running_context runner(context);
    ASSERT_TRUE(runner.finishes_within(10s)) << "the pending wait kept the context running";
    EXPECT_EQ(ran, 1);
    EXPECT_FALSE(inbox.post([] {}));
}

TEST(MailboxTest, FailedWorkDoesNotStopTheWorkAfterIt)
{
    net::io_context context(unlocked_hint);
    proxy::mailbox inbox(context);
    inbox.open();
    int ran = 0;
    ASSERT_TRUE(inbox.post([] { throw std::runtime_error("reload could not be applied"); }));
    ASSERT_TRUE(inbox.post([&] { ++ran; }));
    running_context runner(context);
    // Work left after the failure, in a later wake-up, still reaches the worker.
    ASSERT_TRUE(inbox.post([&] {
        ++ran;
        inbox.close();
    }));
    ASSERT_TRUE(runner.finishes_within(10s)) << "the mailbox stopped after a failed item";
    EXPECT_EQ(ran, 2);
}

TEST(MailboxTest, RefusedWorkIsDestroyedOnThePostingThread)
{
    net::io_context context(unlocked_hint);
    proxy::mailbox inbox(context);
    inbox.close();
    auto token = std::make_shared<int>(0);
    std::weak_ptr<int> watch = token;
    EXPECT_FALSE(inbox.post([t = std::move(token)] { ++*t; }));
    EXPECT_TRUE(watch.expired());
}

/// The process's eventfd descriptors, from /proc/self/fd.
std::set<int> eventfds()
{
    std::set<int> found;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
        const auto target = std::filesystem::read_symlink(e.path(), ec);
        if (!ec && target.string() == "anon_inode:[eventfd]") {
            found.insert(std::stoi(e.path().filename().string()));
        }
    }
    return found;
}

TEST(MailboxTest, UnreadableWakeUpIsLoggedAndRefusesLaterWork)
{
    // A worker whose wake-up descriptor fails would no longer hear of reloads or shutdown:
    // that is said in the log, and later posts are refused rather than lost unseen. The
    // mailbox's eventfd is swapped for a directory, whose read fails (EISDIR).
    net::io_context context(unlocked_hint);
    // The reactor, and the eventfd it wakes itself with, come with the first timer.
    net::steady_timer reactor_made(context);
    const auto before = eventfds();
    proxy::mailbox inbox(context);
    std::set<int> added;
    for (const int fd : eventfds()) {
        if (!before.contains(fd)) {
            added.insert(fd);
        }
    }
    ASSERT_EQ(added.size(), 1u) << "the mailbox's own eventfd";
    const int dir = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dir, 0);
    ASSERT_EQ(::dup2(dir, *added.begin()), *added.begin());
    ::close(dir);

    testing::internal::CaptureStderr();
    inbox.open();
    running_context runner(context);
    const bool finished = runner.finishes_within(10s);
    const auto logged = testing::internal::GetCapturedStderr();
    ASSERT_TRUE(finished) << "a failed mailbox kept the context waiting";
    EXPECT_NE(logged.find("worker_mailbox_failed"), std::string::npos) << logged;
    EXPECT_FALSE(inbox.post([] {})) << "posts after the failure are refused";
}

} // namespace
} // namespace portico::test
