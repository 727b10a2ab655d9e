#pragma once

// Request heads for backends, gathered over one turn of a worker's event loop and handed to
// the kernel together (decision 0020).

#include "portico/core/net.hpp"

#include "proxy/deadline_stream.hpp"

#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace portico::proxy {

/**
 * Sends on plain sockets, made after the work that was ready when the first of them was
 * asked for, all in one system call (an io_uring submission of `sendmsg`s; one `sendmsg`
 * each where the kernel offers no io_uring).
 *
 * A backend that shares the proxy's CPU (a dev server on a laptop with more busy processes
 * than cores) is woken by each request sent to it and, once it may run, takes the CPU at
 * the return from that send: sent one by one, requests reach it one or two at a time, and
 * proxy and backend switch for every few requests. Sent together, every request of the
 * turn is in the backend's socket before it runs, and it wakes once for all of them.
 *
 * One per worker, used only on its thread.
 */
class send_batch {
public:
    /// `use_ring`: false sends each gathered buffer with its own `sendmsg` (as on a kernel
    /// without io_uring, or one that refuses it, as container seccomp profiles do).
    explicit send_batch(net::io_context& context, bool use_ring = true);
    ~send_batch();
    send_batch(const send_batch&) = delete;
    send_batch& operator=(const send_batch&) = delete;

    /**
     * Queues a send of `buffers` on `stream` and returns the operation to await. When it
     * completes, `buffers` holds what the socket did not take at once (to be written with an
     * awaited write) and `ec` the error of a failed socket, as after `send_available`; a
     * stream cancelled (`deadline_stream::cancel`) or closed before the send is made gets
     * `operation_aborted` and sends nothing; one whose fate the ring could not report (it may
     * have gone) gets `io_error`. `buffers`, `ec` and `stream` must outlive the operation.
     */
    template <typename Protocol>
    auto send(deadline_stream<Protocol>& stream, std::array<net::const_buffer, 2>& buffers,
              boost::system::error_code& ec)
    {
        enqueue(queued{&descriptor_of<Protocol>, &cancellations_of<Protocol>, &stream,
                       stream.cancellations(), &buffers, &ec});
        // Posted after the flush (enqueue posts it for a turn's first send), so resumed after
        // it: a worker's context runs what its own thread posts in order.
        return net::post(context_.get_executor(), net::deferred);
    }

    /**
     * Whether this process may make an io_uring, so that gathered sends go in one system
     * call; when not, `why` says what the kernel answered (for `portico doctor`).
     */
    static bool ring_available(std::string& why);

    /// System calls made for gathered sends so far (io_uring submissions, or sendmsg calls).
    std::uint64_t system_calls() const noexcept { return system_calls_; }
    /// io_uring submissions made so far (a turn with a single send makes none).
    std::uint64_t submissions() const noexcept { return submissions_; }
    /// Sends made so far.
    std::uint64_t sends() const noexcept { return sends_; }
    /// Whether gathered sends go through an io_uring (known after the first turn with more
    /// than one send; one that could not be made for want of resources, or whose submission
    /// sent nothing, is asked for again a second later, then less and less often).
    bool uses_ring() const noexcept { return ring_ != nullptr; }

private:
    struct queued {
        int (*descriptor)(void* stream);
        unsigned (*cancellations)(void* stream);
        void* stream;
        unsigned cancellations_then;
        std::array<net::const_buffer, 2>* buffers;
        boost::system::error_code* ec;
    };

    template <typename Protocol>
    static int descriptor_of(void* stream)
    {
        return static_cast<deadline_stream<Protocol>*>(stream)->descriptor();
    }
    template <typename Protocol>
    static unsigned cancellations_of(void* stream)
    {
        return static_cast<deadline_stream<Protocol>*>(stream)->cancellations();
    }

    void enqueue(const queued& q);
    void flush();
    /// Sends `waiting_[first, first + count)` with one io_uring submission, and marks each
    /// one it dealt with (`descriptors_` -1); the others are to be sent one by one.
    void submit(std::size_t first, std::size_t count);
    /// Makes the ring unless it was refused, or failed too recently.
    void open_ring();
    void close_ring() noexcept;
    /// Delays the next ask for a ring, twice as long as the last delay in a run of failures.
    void ask_for_ring_later(std::chrono::steady_clock::time_point now) noexcept;
    /// Closes a ring whose submission sent nothing; a new one is asked for later, as after a
    /// refusal.
    void set_ring_aside() noexcept;
    /// Closes the ring for good: a new one could fail the same way, at the cost of requests.
    void give_up_ring() noexcept;

    /// At most this many sends per submission: a larger turn takes several.
    static constexpr unsigned ring_entries = 64;

    net::io_context& context_;
    /// The kernel will not make one, none is to be used, or a submission went only in part.
    bool ring_refused_;
    /// Before this, no ring is asked for: the last try failed for want of a descriptor or
    /// memory, or the last ring's submission sent nothing. A process gets descriptors back once
    /// its clients leave; locked memory (RLIMIT_MEMLOCK, which kernels before 5.12 charge
    /// rings to) it may never get, so each failure in a row doubles the wait, up to a
    /// minute, and a submission that works starts again from a second.
    std::chrono::steady_clock::time_point ring_retry_at_{};
    std::chrono::steady_clock::duration ring_retry_delay_ = std::chrono::seconds(1);
    bool flush_posted_ = false;
    std::vector<queued> waiting_;
    /// Descriptors looked up at the flush, for the queued sends; -1 for one not to make.
    std::vector<int> descriptors_;
    struct ring;
    std::unique_ptr<ring> ring_;
    std::uint64_t system_calls_ = 0;
    std::uint64_t sends_ = 0;
    std::uint64_t submissions_ = 0;
};

} // namespace portico::proxy
