#include "proxy/streams.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace portico::proxy {

void send_available(int socket, std::span<net::const_buffer> buffers,
                    boost::system::error_code& ec)
{
    std::array<iovec, 8> parts{};
    std::size_t count = 0;
    for (const auto& b : buffers) {
        if (b.size() > 0 && count < parts.size()) {
            parts[count++] = iovec{const_cast<void*>(b.data()), b.size()};
        }
    }
    if (count == 0) {
        return;
    }
    msghdr message{};
    message.msg_iov = parts.data();
    message.msg_iovlen = count;
    ssize_t sent = -1;
    do {
        sent = ::sendmsg(socket, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            ec.assign(errno, boost::system::system_category());
        }
        return;
    }
    auto taken = static_cast<std::size_t>(sent);
    for (auto& b : buffers) {
        const auto n = std::min(taken, b.size());
        b += n;
        taken -= n;
    }
}

} // namespace portico::proxy
