// When a worker gives the free heap back (decision 0024): after a burst, once it has served
// nothing for the whole delay; never under load, for a few connections or once shutting down.
// The policy on a real io_context's timers, then a worker's trims after real connections
// through an in-process portico, and that the default trim does return whole free pages
// inside the heap.

#include "proxy/heap_trimmer.hpp"
#include "support/origin.hpp"
#include "support/proxy_harness.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <malloc.h>

#include <atomic>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

/// Trims the workers of this test process made, counted here and passed on to the C library:
/// this definition comes before the C library's for the whole test binary.
std::atomic<int> trims_made{0};

extern "C" int malloc_trim(size_t pad) noexcept
{
    trims_made.fetch_add(1);
    using trim_function = int (*)(size_t);
    static const auto next = reinterpret_cast<trim_function>(dlsym(RTLD_NEXT, "malloc_trim"));
    return next != nullptr ? next(pad) : 0;
}

namespace portico::test {
namespace {

using proxy::heap_trimmer;
using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

constexpr auto delay = 50ms;
constexpr std::size_t burst = 4;

struct trimmer_fixture {
    net::io_context context{1};
    int trims = 0;
    clock::time_point trimmed_at{};
    heap_trimmer trimmer{context,
                         [this] {
                             ++trims;
                             trimmed_at = clock::now();
                         },
                         burst, delay};

    /// The worker serves a burst's worth of connections, then none.
    void burst_then_quiet()
    {
        trimmer.serving(burst);
        trimmer.serving(0);
    }

    /// Runs the context for `d`, or until the trim count reaches `until`.
    void run_for(clock::duration d, int until = -1)
    {
        const auto end = clock::now() + d;
        while (clock::now() < end && trims != until) {
            context.run_for(5ms);
            context.restart();
        }
    }
};

TEST(HeapTrimmerTest, TrimsOnceWhenABurstHasBeenOverForTheDelay)
{
    trimmer_fixture f;
    for (std::size_t n = 1; n <= burst + 2; ++n) {
        f.trimmer.serving(n);
    }
    f.trimmer.serving(0);
    const auto quiet_since = clock::now();
    f.run_for(2s, 1);
    ASSERT_EQ(f.trims, 1);
    EXPECT_GE(f.trimmed_at - quiet_since, delay - 5ms);
    f.run_for(4 * delay);
    EXPECT_EQ(f.trims, 1) << "a trim without a new burst";
}

TEST(HeapTrimmerTest, FewerConnectionsThanABurstNeverTrim)
{
    trimmer_fixture f;
    for (int round = 0; round < 3; ++round) {
        f.trimmer.serving(burst - 1);
        f.trimmer.serving(0);
        f.run_for(2 * delay);
    }
    EXPECT_EQ(f.trims, 0);
}

TEST(HeapTrimmerTest, ServingAgainBeforeTheDelayPutsTheTrimOffUntilTheNextQuiet)
{
    trimmer_fixture f;
    f.burst_then_quiet();
    f.trimmer.serving(1);
    f.run_for(3 * delay);
    EXPECT_EQ(f.trims, 0) << "trimmed while serving";
    f.trimmer.serving(0);
    f.run_for(2s, 1);
    EXPECT_EQ(f.trims, 1) << "the burst was forgotten";
}

TEST(HeapTrimmerTest, TheDelayCountsFromTheLastTimeTheWorkerEmptied)
{
    trimmer_fixture f;
    f.burst_then_quiet();
    f.run_for(delay * 6 / 10);
    f.trimmer.serving(1);
    f.trimmer.serving(0);
    const auto quiet_since = clock::now();
    f.run_for(2s, 1);
    ASSERT_EQ(f.trims, 1);
    EXPECT_GE(f.trimmed_at - quiet_since, delay - 5ms) << "trimmed before a full delay of quiet";
}

TEST(HeapTrimmerTest, AWorkerThatEmptiesOftenButNeverForTheDelayDoesNotTrimUntilLoadEnds)
{
    trimmer_fixture f;
    const auto start = clock::now();
    // A connection-per-request load: the worker empties for moments, many times per delay.
    while (clock::now() - start < 6 * delay) {
        f.trimmer.serving(burst);
        f.context.run_for(1ms);
        f.context.restart();
        f.trimmer.serving(0);
        f.context.run_for(1ms);
        f.context.restart();
    }
    EXPECT_EQ(f.trims, 0) << "trimmed under load";
    f.run_for(2s, 1);
    EXPECT_EQ(f.trims, 1) << "no trim once the load ended";
}

TEST(HeapTrimmerTest, CancelledTrimmerNeitherTrimsNorHoldsItsLoop)
{
    trimmer_fixture f;
    f.burst_then_quiet();
    f.trimmer.cancel();
    const auto start = clock::now();
    f.context.run(); // returns once nothing is left to wait for
    EXPECT_LT(clock::now() - start, delay / 2);
    f.burst_then_quiet();
    f.context.restart();
    f.context.run();
    EXPECT_EQ(f.trims, 0);
}

/// Keep-alive connections through an in-process portico: `count` open at once, each with one
/// request answered, then left idle (parked). Returns whether all were answered.
bool burst_of_idle_connections(std::size_t count, proxy_harness& proxy,
                               std::vector<std::unique_ptr<client>>& clients)
{
    for (std::size_t i = 0; i < count; ++i) {
        clients.push_back(std::make_unique<client>(proxy.port()));
    }
    // Every one accepted and waiting for its request: the worker serves them all at once.
    if (!wait_until([&] {
            return proxy.observatory().active_connections() == static_cast<std::int64_t>(count);
        })) {
        return false;
    }
    for (auto& c : clients) {
        if (c->get("app.localhost", "/").result_int() != 200) {
            return false;
        }
    }
    return true;
}

std::string route_to(unsigned short port)
{
    // One worker, so that the connections of a burst all go to the same one.
    return fmt::format("workers: 1\nroutes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
                       port);
}

TEST(HeapTrimmerTest, WorkerTrimsOnceABurstOfRealConnectionsHasGoneIdle)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    const int before = trims_made.load();
    std::vector<std::unique_ptr<client>> clients;
    ASSERT_TRUE(burst_of_idle_connections(heap_trimmer::default_burst + 4, proxy, clients));
    EXPECT_TRUE(wait_until([&] { return trims_made.load() > before; }, 2s))
        << "no trim after the burst went idle";
}

TEST(HeapTrimmerTest, WorkerLeavesTheHeapAloneAfterAFewRealConnections)
{
    origin backend;
    proxy_harness proxy(route_to(backend.port()));
    const int before = trims_made.load();
    std::vector<std::unique_ptr<client>> clients;
    ASSERT_TRUE(burst_of_idle_connections(heap_trimmer::default_burst / 4, proxy, clients));
    EXPECT_FALSE(wait_until([&] { return trims_made.load() > before; },
                            4 * std::chrono::duration_cast<std::chrono::milliseconds>(
                                    heap_trimmer::default_delay)))
        << "trimmed after fewer connections than a burst";
}

#ifndef PORTICO_SANITIZE
std::size_t resident_anonymous_kib()
{
    std::ifstream status("/proc/self/status");
    for (std::string key; status >> key;) {
        std::size_t value = 0;
        if (key == "RssAnon:" && status >> value) {
            return value;
        }
    }
    return 0;
}

// glibc's side of the bargain: free chunks between live blocks stay resident until a trim,
// which gives back the whole pages inside them (not the parts of pages they share with live
// blocks, which a trim cannot return). Sanitizer builds replace malloc.
TEST(HeapTrimmerTest, DefaultTrimReturnsFreePagesPinnedBetweenLiveBlocks)
{
    constexpr std::size_t blocks = 256;
    constexpr std::size_t transient_size = 12 * 1024;
    constexpr std::size_t transient_kib = blocks * transient_size / 1024;
    heap_trimmer::release_free_heap(); // what earlier tests left free is not counted below
    std::vector<std::unique_ptr<char[]>> transient;
    std::vector<std::unique_ptr<char[]>> lasting;
    for (std::size_t i = 0; i < blocks; ++i) {
        transient.push_back(std::make_unique<char[]>(transient_size)); // touches its pages
        lasting.push_back(std::make_unique<char[]>(64));
    }
    const auto allocated = resident_anonymous_kib();
    transient.clear();
    const auto before = resident_anonymous_kib();
    ASSERT_GT(before, 0U);
    if (allocated - std::min(allocated, before) >= transient_kib / 2) {
        // The small blocks found room in free chunks earlier tests left, so nothing pinned
        // the large ones and glibc returned them itself. A process of its own (ctest runs
        // each test so) starts from a heap where this does not happen.
        GTEST_SKIP() << "no free memory pinned: " << allocated << " -> " << before << " KiB";
    }
    heap_trimmer::release_free_heap();
    const auto after = resident_anonymous_kib();
    // Each freed block holds two whole pages: 2 MiB in all, of which at least half must go.
    EXPECT_GE(before - std::min(before, after), blocks * 8 / 2)
        << before << " -> " << after;
}
#endif

} // namespace
} // namespace portico::test
