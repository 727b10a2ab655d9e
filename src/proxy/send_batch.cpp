#include "proxy/send_batch.hpp"

#include "proxy/streams.hpp"

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace portico::proxy {

struct send_batch::ring {
    io_uring uring{};
    // What the submitted `sendmsg`s point at, until their completions are reaped.
    std::array<msghdr, ring_entries> messages{};
    std::array<std::array<iovec, 2>, ring_entries> parts{};
};

send_batch::send_batch(net::io_context& context, bool use_ring)
    : context_(context), ring_refused_(!use_ring)
{
}

send_batch::~send_batch()
{
    close_ring();
}

void send_batch::enqueue(const queued& q)
{
    waiting_.push_back(q);
    if (!flush_posted_) {
        flush_posted_ = true;
        // The post goes behind the completions already queued, which are this turn's work:
        // the sends they ask for join this one.
        net::post(context_, [this] { flush(); });
    }
}

void send_batch::open_ring()
{
    if (ring_refused_) {
        return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now < ring_retry_at_) {
        return;
    }
    auto r = std::make_unique<ring>();
    // Small: a submission is made and reaped at once, so the ring never holds more than one
    // turn's sends, and its pages count in the worker's memory.
    io_uring_params params{};
    // Only this thread submits, and nothing here waits for a completion that needs the
    // kernel to interrupt it.
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    int result = io_uring_queue_init_params(ring_entries, &r->uring, &params);
    if (result == -EINVAL) {
        // Kernels before 6.0 do not know those flags.
        params = io_uring_params{};
        result = io_uring_queue_init_params(ring_entries, &r->uring, &params);
    }
    if (result == -EMFILE || result == -ENFILE || result == -ENOMEM) {
        // Out of descriptors or memory for now: giving up for good would leave the worker
        // sending one by one long after the clients that took them are gone.
        ask_for_ring_later(now);
        return;
    }
    if (result < 0) {
        ring_refused_ = true; // no io_uring here (ENOSYS, EPERM under seccomp, io_uring_disabled)
        return;
    }
    ring_ = std::move(r);
}

bool send_batch::ring_available(std::string& why)
{
    io_uring probe{};
    const int result = io_uring_queue_init(1, &probe, 0);
    if (result < 0) {
        why = std::system_category().message(-result);
        return false;
    }
    io_uring_queue_exit(&probe);
    return true;
}

void send_batch::ask_for_ring_later(std::chrono::steady_clock::time_point now) noexcept
{
    ring_retry_at_ = now + ring_retry_delay_;
    ring_retry_delay_ = std::min<std::chrono::steady_clock::duration>(ring_retry_delay_ * 2,
                                                                      std::chrono::minutes(1));
}

void send_batch::give_up_ring() noexcept
{
    ring_refused_ = true;
    close_ring();
}

void send_batch::set_ring_aside() noexcept
{
    close_ring();
    ask_for_ring_later(std::chrono::steady_clock::now());
}

void send_batch::close_ring() noexcept
{
    if (ring_) {
        io_uring_queue_exit(&ring_->uring);
        ring_.reset();
    }
}

void send_batch::flush()
{
    flush_posted_ = false;
    descriptors_.clear();
    std::size_t live = 0;
    for (auto& q : waiting_) {
        const int fd = q.descriptor(q.stream);
        const bool cancelled = q.cancellations(q.stream) != q.cancellations_then;
        if (fd < 0 || cancelled) {
            *q.ec = net::error::operation_aborted;
        }
        descriptors_.push_back(fd < 0 || cancelled ? -1 : fd);
        live += fd < 0 || cancelled ? 0 : 1;
    }
    // A turn with one send has nothing to gather: a plain sendmsg is the same one system
    // call, 0.3-0.5 us cheaper than a submission of one entry and the reaping of its
    // completion (the common turn when each request comes on a new connection).
    const bool gathered = live > 1;
    if (gathered && !ring_) {
        open_ring();
    }
    for (std::size_t first = 0; first < waiting_.size(); first += ring_entries) {
        const auto count = std::min<std::size_t>(ring_entries, waiting_.size() - first);
        if (gathered && ring_) {
            submit(first, count);
        }
        // What the ring did not send (none, unless there is no ring or it was just closed).
        for (std::size_t i = first; i < first + count; ++i) {
            if (descriptors_[i] >= 0 && net::buffer_size(*waiting_[i].buffers) > 0) {
                send_available(descriptors_[i], *waiting_[i].buffers, *waiting_[i].ec);
                ++system_calls_;
                ++sends_;
            }
        }
    }
    waiting_.clear();
}

void send_batch::submit(std::size_t first, std::size_t count)
{
    auto& r = *ring_;
    // Which queued send each prepared entry is.
    std::array<std::size_t, ring_entries> queued_index;
    unsigned prepared = 0;
    for (std::size_t i = first; i < first + count; ++i) {
        if (descriptors_[i] < 0) {
            continue;
        }
        auto& parts = r.parts[prepared];
        const std::size_t used = gather_parts(*waiting_[i].buffers, parts);
        if (used == 0) {
            descriptors_[i] = -1; // nothing to send
            continue;
        }
        auto& message = r.messages[prepared];
        message = msghdr{};
        message.msg_iov = parts.data();
        message.msg_iovlen = used;
        io_uring_sqe* sqe = io_uring_get_sqe(&r.uring);
        // MSG_DONTWAIT: a full socket completes with EAGAIN at once instead of the ring
        // waiting for room (the caller then awaits a write of what is left).
        io_uring_prep_sendmsg(sqe, descriptors_[i], &message, MSG_DONTWAIT | MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, prepared);
        queued_index[prepared++] = i;
    }
    if (prepared == 0) {
        return;
    }
    int submitted = 0;
    do {
        submitted = io_uring_submit(&r.uring);
    } while (submitted == -EINTR);
    ++system_calls_;
    ++submissions_;
    if (submitted <= 0) {
        // Nothing went (the kernel short of memory for the requests, say). What was
        // prepared would go with a later submission, after its buffers are gone: the ring
        // goes now, and these sends one by one.
        set_ring_aside();
        return;
    }
    // A send that may not wait completes during the submission: its completion is there.
    unsigned reaped = 0;
    while (reaped < static_cast<unsigned>(submitted)) {
        io_uring_cqe* cqe = nullptr;
        int waited = 0;
        do {
            waited = io_uring_wait_cqe(&r.uring, &cqe);
        } while (waited == -EINTR);
        if (waited < 0) {
            break;
        }
        const auto entry = static_cast<std::size_t>(io_uring_cqe_get_data64(cqe));
        const int result = cqe->res;
        io_uring_cqe_seen(&r.uring, cqe);
        ++reaped;
        ++sends_;
        auto& q = waiting_[queued_index[entry]];
        descriptors_[queued_index[entry]] = -1; // done
        if (result >= 0) {
            consume_sent(*q.buffers, static_cast<std::size_t>(result));
        } else if (result != -EAGAIN && result != -EWOULDBLOCK && result != -EINTR) {
            q.ec->assign(-result, boost::system::system_category());
        }
        // A send that took nothing (EAGAIN, EINTR) leaves its buffers for the caller's write.
    }
    if (static_cast<unsigned>(submitted) == prepared && reaped == prepared) {
        // A ring that works ends a run of failures: the next one waits a second again.
        ring_retry_delay_ = std::chrono::seconds(1);
        return;
    }
    // The kernel took only part of the batch, or a completion could not be waited for. A
    // send submitted and not reaped may have gone, so it is not made again: it fails with
    // EIO, which the exchange does not retry. The ones never submitted (kept from a later
    // submission by closing the ring) go one by one. The ring is given up for good: unlike
    // a submission that sent nothing, this one cost requests an error, and a new ring could
    // cost the same again.
    for (unsigned k = 0; k < static_cast<unsigned>(submitted); ++k) {
        const auto i = queued_index[k];
        if (descriptors_[i] >= 0) {
            waiting_[i].ec->assign(EIO, boost::system::system_category());
            descriptors_[i] = -1;
        }
    }
    give_up_ring();
}

} // namespace portico::proxy
