#include "proxy/mailbox.hpp"

#include <boost/system/system_error.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace portico::proxy {

mailbox::mailbox(net::io_context& context) : wake_(context)
{
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
        throw boost::system::system_error(errno, boost::system::system_category(),
                                          "eventfd");
    }
    boost::system::error_code ec;
    wake_.assign(fd, ec);
    if (ec) {
        ::close(fd);
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
    bool first = false;
    {
        std::lock_guard lock(mutex_);
        if (closed_) {
            return false;
        }
        first = queue_.empty();
        queue_.push_back(std::move(e));
    }
    if (first) {
        // One wake-up per batch: the worker takes the whole queue when it wakes. A failed
        // write means the counter is full, so a wake-up is pending anyway.
        const std::uint64_t one = 1;
        [[maybe_unused]] const auto written = ::write(wake_.native_handle(), &one, sizeof one);
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
                              bool closed = false;
                              {
                                  std::lock_guard lock(mutex_);
                                  closed = closed_;
                              }
                              if (closed || (ec && ec != net::error::operation_aborted)) {
                                  boost::system::error_code ignored;
                                  wake_.close(ignored);
                                  return;
                              }
                              wait();
                          });
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
            e->run();
        }
        batch.clear();
    }
}

void mailbox::close()
{
    {
        std::lock_guard lock(mutex_);
        if (closed_) {
            return;
        }
        closed_ = true;
    }
    if (waiting_) {
        // The read completes as aborted, runs what is left and closes the eventfd.
        wake_.cancel();
    } else if (!running_) {
        drain();
        boost::system::error_code ignored;
        wake_.close(ignored);
    }
}

} // namespace portico::proxy
