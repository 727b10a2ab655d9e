#include "support/descriptor_limit.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace portico::test {

out_of_descriptors::out_of_descriptors()
{
    EXPECT_EQ(::getrlimit(RLIMIT_NOFILE, &saved_), 0);
    // open(2) takes the lowest free number, whatever is open below it.
    const int lowest_free = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    EXPECT_GE(lowest_free, 0) << std::strerror(errno);
    ::close(lowest_free);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(lowest_free);
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0) << std::strerror(errno);
}

out_of_descriptors::~out_of_descriptors()
{
    ::setrlimit(RLIMIT_NOFILE, &saved_);
}

} // namespace portico::test
