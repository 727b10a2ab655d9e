#include "proxy/mailbox.hpp"

#include "portico/core/log.hpp"

#include <boost/system/system_error.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <exception>

namespace portico::proxy {

mailbox::mailbox(net::io_context& context) : wake_(context)
{
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
        throw boost::system::system_error(errno, boost::system::system_category(),
                                          "eventfd");
    }
    boost::system::error_code ec;
    wake_.assign(wake_fd_, ec);
    if (ec) {
        ::close(wake_fd_);
        throw boost::system::system_error(ec, "eventfd");
    }
}

mailbox::~mailbox() = default;

void mailbox::open()
{
    if (!waiting_ && !running_ && wake_.is_open()) {
        wait();
    }
}

bool mailbox::push(std::unique_ptr<entry> e)
{
    std::lock_guard lock(mutex_);
    if (closed_) {
        return false;
    }
    const bool first = queue_.empty();
    queue_.push_back(std::move(e));
    if (first) {
        // One wake-up per batch: the worker takes the whole queue when it wakes. Written
        // under the lock: the worker closes the eventfd only after marking the mailbox
        // closed under it, so the descriptor cannot be closed (or its number reused) here.
        // The counter cannot overflow: each wake-up's read resets it.
        const std::uint64_t one = 1;
        [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
    }
    return true;
}

void mailbox::wait()
{
    waiting_ = true;
    wake_.async_read_some(net::buffer(&wake_count_, sizeof wake_count_),
                          [this](const boost::system::error_code& ec, std::size_t) {
                              waiting_ = false;
                              running_ = true;
                              drain();
                              running_ = false;
                              if (ec && ec != net::error::operation_aborted) {
                                  // The eventfd failed: no wake-up would come, so reloads
                                  // and shutdown would no longer reach this worker. Said
                                  // once, loudly, and later posts are refused.
                                  PORTICO_LOG(log::level::error, "worker_mailbox_failed",
                                              {"error", ec.message()});
                                  refuse_more();
                              }
                              if (is_closed()) {
                                  drain(); // what came before the close was marked
                                  boost::system::error_code ignored;
                                  wake_.close(ignored);
                                  return;
                              }
                              wait();
                          });
}

bool mailbox::refuse_more()
{
    std::lock_guard lock(mutex_);
    const bool was_closed = closed_;
    closed_ = true;
    return !was_closed;
}

bool mailbox::is_closed()
{
    std::lock_guard lock(mutex_);
    return closed_;
}

void mailbox::drain()
{
    std::vector<std::unique_ptr<entry>> batch;
    for (;;) {
        {
            std::lock_guard lock(mutex_);
            if (queue_.empty()) {
                return;
            }
            batch.swap(queue_);
        }
        for (auto& e : batch) {
            // A failed item must not take the mailbox (and the items after it) down with
            // it: the worker would no longer hear of reloads or of shutdown.
            try {
                e->run();
            } catch (const std::exception& ex) {
                PORTICO_LOG(log::level::error, "worker_task_failed", {"what", ex.what()});
            }
        }
        batch.clear();
    }
}

void mailbox::close()
{
    if (!refuse_more()) {
        return;
    }
    if (waiting_) {
        // The read completes as aborted, runs what is left and closes the eventfd.
        boost::system::error_code ignored;
        wake_.cancel(ignored);
    } else if (!running_) {
        drain();
        boost::system::error_code ignored;
        wake_.close(ignored);
    }
}

} // namespace portico::proxy
