#pragma once

#include "portico/core/net.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

namespace portico::proxy {

/**
 * Work that other threads hand to a worker: a reload, a shutdown, a backend's name resolved
 * on a thread of its own. A worker's `io_context` takes no lock in its scheduler (decision
 * 0013), so no other thread may post to it; they leave the work here, an eventfd wakes the
 * worker, and the worker runs it on its own thread in the order it was left.
 */
class mailbox {
public:
    explicit mailbox(net::io_context& context);
    ~mailbox();
    mailbox(const mailbox&) = delete;
    mailbox& operator=(const mailbox&) = delete;

    /// Starts waiting for work. On the worker's thread, or before that thread runs.
    void open();

    /**
     * Leaves `work` for the worker's thread (from any thread). Returns false once the
     * mailbox is closed; `work` is then destroyed on the caller's thread.
     */
    template <typename F>
    bool post(F&& work)
    {
        return push(std::make_unique<item<std::decay_t<F>>>(std::forward<F>(work)));
    }

    /**
     * Refuses further work and stops waiting, so that the worker's context can run out of
     * work; what was left before still runs. On the worker's thread.
     */
    void close();

private:
    struct entry {
        virtual ~entry() = default;
        virtual void run() = 0;
    };
    template <typename F>
    struct item final : entry {
        explicit item(F f) : work(std::move(f)) {}
        void run() override { work(); }
        F work;
    };

    bool push(std::unique_ptr<entry> e);
    void wait();
    void drain();
    bool refuse_more(); ///< marks the mailbox closed; false if it already was
    bool is_closed();

    net::posix::stream_descriptor wake_;
    int wake_fd_ = -1; ///< the eventfd, as posting threads write it (never `wake_` itself)
    std::uint64_t wake_count_ = 0; ///< where the eventfd's counter is read (and reset)
    bool waiting_ = false;         ///< a read of the eventfd is pending
    bool running_ = false;         ///< inside the read's completion

    std::mutex mutex_; ///< guards what follows, shared with the posting threads
    std::vector<std::unique_ptr<entry>> queue_;
    bool closed_ = false;
};

} // namespace portico::proxy
