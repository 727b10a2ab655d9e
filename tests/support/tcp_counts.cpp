#include "support/tcp_counts.hpp"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

namespace portico::test {

std::optional<tcp_segment_counts> segment_counts(int fd)
{
    tcp_info info{};
    socklen_t length = sizeof(info);
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0 ||
        length < offsetof(tcp_info, tcpi_data_segs_in) + sizeof(info.tcpi_data_segs_in)) {
        return std::nullopt;
    }
    return tcp_segment_counts{info.tcpi_segs_in, info.tcpi_data_segs_in};
}

} // namespace portico::test
