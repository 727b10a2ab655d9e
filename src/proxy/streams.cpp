#include "proxy/streams.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace portico::proxy {

std::size_t gather_parts(std::span<const net::const_buffer> buffers, std::span<iovec> parts)
{
    std::size_t count = 0;
    for (const auto& b : buffers) {
        if (b.size() > 0 && count < parts.size()) {
            parts[count++] = iovec{const_cast<void*>(b.data()), b.size()};
        }
    }
    return count;
}

void consume_sent(std::span<net::const_buffer> buffers, std::size_t sent)
{
    for (auto& b : buffers) {
        const auto n = std::min(sent, b.size());
        b += n;
        sent -= n;
    }
}

void send_available(int socket, std::span<net::const_buffer> buffers, boost::system::error_code& ec,
                    int flags)
{
    std::array<iovec, 8> parts{};
    const std::size_t count = gather_parts(buffers, parts);
    if (count == 0) {
        return;
    }
    msghdr message{};
    message.msg_iov = parts.data();
    message.msg_iovlen = count;
    ssize_t sent = -1;
    do {
        sent = ::sendmsg(socket, &message, MSG_DONTWAIT | MSG_NOSIGNAL | flags);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            ec.assign(errno, boost::system::system_category());
        }
        return;
    }
    consume_sent(buffers, static_cast<std::size_t>(sent));
}

} // namespace portico::proxy
