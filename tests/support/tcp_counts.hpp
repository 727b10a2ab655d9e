#pragma once

// Segment counts the kernel keeps for a TCP socket. glibc's `tcp_info` stops before them,
// and the kernel's own definition (<linux/tcp.h>) clashes with glibc's, which Asio
// includes: one translation unit of its own reads them.

#include <cstdint>
#include <optional>

namespace portico::test {

struct tcp_segment_counts {
    std::uint32_t received = 0;           ///< every segment in, the SYN-ACK and bare ACKs too
    std::uint32_t received_with_data = 0; ///< segments that carried payload
};

/// The counts for socket `fd`; none on a kernel older than Linux 4.6, which keeps none.
std::optional<tcp_segment_counts> segment_counts(int fd);

} // namespace portico::test
