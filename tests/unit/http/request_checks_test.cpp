// The raw-byte checks on request heads, at every position a defect can take relative to the
// eight-byte words the scan skips.

#include "portico/http/request_checks.hpp"

#include <gtest/gtest.h>

#include <string>

namespace portico::http {
namespace {

const std::string clean = "GET /some/longer/path?query=1 HTTP/1.1\r\nHost: app.localhost\r\n"
                          "User-Agent: test-agent/1.0\r\nAccept: */*\r\n\r\n";

TEST(RequestChecksTest, CleanHeadsPass)
{
    EXPECT_EQ(check_head_bytes(clean), head_defect::none);
    EXPECT_EQ(check_head_bytes("\r\n\r\n" + clean), head_defect::none);
    EXPECT_EQ(check_head_bytes("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n"), head_defect::none);
}

TEST(RequestChecksTest, FindsEachDefectWhereverItIs)
{
    // Inside the request line or a field value, from the first byte to the last line.
    const auto last = clean.size() - 4;
    for (std::size_t at = 1; at < last; ++at) {
        if (clean[at] == '\r' || clean[at] == '\n' || clean[at - 1] == '\n') {
            continue;
        }
        auto with_nul = clean;
        with_nul[at] = '\0';
        EXPECT_EQ(check_head_bytes(with_nul), head_defect::nul) << at;
        auto with_cr = clean;
        with_cr[at] = '\r';
        EXPECT_EQ(check_head_bytes(with_cr), head_defect::bare_cr) << at;
        auto with_lf = clean;
        with_lf[at] = '\n';
        EXPECT_EQ(check_head_bytes(with_lf), head_defect::bare_lf) << at;
    }
    // A field line that starts with whitespace, after every line break.
    for (std::size_t at = 1; at + 2 < last; ++at) {
        if (clean[at - 1] != '\n') {
            continue;
        }
        auto folded = clean;
        folded[at] = ' ';
        EXPECT_EQ(check_head_bytes(folded), head_defect::obs_fold) << at;
        folded[at] = '\t';
        EXPECT_EQ(check_head_bytes(folded), head_defect::obs_fold) << at;
    }
}

TEST(RequestChecksTest, LineEndsWithoutTheirPair)
{
    EXPECT_EQ(check_head_bytes("GET / HTTP/1.1\nHost: a\r\n\r\n"), head_defect::bare_lf);
    EXPECT_EQ(check_head_bytes("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), head_defect::bare_cr);
    EXPECT_EQ(check_head_bytes("GET / HTTP/1.1\r\nHost: a\r\n\r"), head_defect::bare_cr);
}

} // namespace
} // namespace portico::http
