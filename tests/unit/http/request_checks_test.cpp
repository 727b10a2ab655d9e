// The raw-byte checks on request heads, at every position a defect can take relative to the
// eight-byte words the scan skips.

#include "portico/http/request_checks.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

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

TEST(RequestChecksTest, HeadEndsAtItsEmptyLineWhateverItsLinesEndWith)
{
    EXPECT_EQ(find_head_end(clean), clean.size());
    EXPECT_EQ(find_head_end(clean + "body"), clean.size());
    EXPECT_EQ(find_head_end(clean.substr(0, clean.size() - 1)), 0U);
    EXPECT_EQ(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n"), 0U);
    // Bare LFs end a head too, so that it is refused at once rather than waited on.
    const std::string bare = "GET / HTTP/1.1\nHost: a\n\n";
    EXPECT_EQ(find_head_end(bare), bare.size());
    EXPECT_EQ(check_head_bytes(bare), head_defect::bare_lf);
    const std::string mixed = "GET / HTTP/1.1\r\nHost: a\n\r\nrest";
    EXPECT_EQ(find_head_end(mixed), mixed.size() - 4);
    EXPECT_EQ(check_head_bytes(mixed.substr(0, find_head_end(mixed))), head_defect::bare_lf);
}

TEST(RequestChecksTest, RequestLineIsReadOnlyWhenSound)
{
    const auto line = read_request_line("\r\nGET /a?b=c HTTP/1.0\r\nHost: x\r\n");
    ASSERT_TRUE(line);
    EXPECT_EQ(line->method, "GET");
    EXPECT_EQ(line->target, "/a?b=c");
    EXPECT_EQ(line->version, 10U);
    EXPECT_EQ(read_request_line("OPTIONS * HTTP/1.1\r\n")->version, 11U);
    for (const std::string_view bad :
         {"GET /a HTTP/1.1", "GET /a HTTP/2.0\r\n", "PRI * HTTP/2.0\r\n", "GET  /a HTTP/1.1\r\n",
          "GET /a\x01 HTTP/1.1\r\n", "G(T /a HTTP/1.1\r\n", "GET HTTP/1.1\r\n", "\r\n",
          "GET /a b HTTP/1.1\r\n"}) {
        EXPECT_FALSE(read_request_line(bad)) << testing::PrintToString(std::string(bad));
    }
}

TEST(RequestChecksTest, ChunkedPrefixes)
{
    EXPECT_TRUE(is_chunked_prefix_valid("5\r\nhello\r\n0\r\n\r\n"));
    EXPECT_TRUE(is_chunked_prefix_valid("5;ext=1\r\nhel"));
    EXPECT_TRUE(is_chunked_prefix_valid("A\r\n"));
    EXPECT_FALSE(is_chunked_prefix_valid("5\r\nhelloXY\r\n")); // data longer than its size
    // Lines that cannot become valid are refused before they are whole.
    EXPECT_FALSE(is_chunked_prefix_valid("5\r\nhelloXY"));
    EXPECT_FALSE(is_chunked_prefix_valid("zz"));
    EXPECT_FALSE(is_chunked_prefix_valid("G"));
    EXPECT_FALSE(is_chunked_prefix_valid("5\r\nhello\r\nq"));
    EXPECT_FALSE(is_chunked_prefix_valid("ffffffffffffffffff"));
    EXPECT_TRUE(is_chunked_prefix_valid("000000000000000000ff"));
    EXPECT_TRUE(is_chunked_prefix_valid("5\r\nhello\r"));
    EXPECT_TRUE(is_chunked_prefix_valid("5\r\nhello\r\n0\r\nX-Trailer: 1"));
    EXPECT_FALSE(is_chunked_prefix_valid("zz\r\nhello\r\n"));
    EXPECT_FALSE(is_chunked_prefix_valid("11111111111111111\r\n"));
    // The largest sizes that 16 digits write are incomplete chunks, not an overflow.
    EXPECT_TRUE(is_chunked_prefix_valid("FFFFFFFFFFFFFFFF\r\nx\r\n"));
    EXPECT_TRUE(is_chunked_prefix_valid("FFFFFFFFFFFFFFFE\r\nx\r\n"));
    EXPECT_TRUE(is_chunked_prefix_valid("FFFFFFFFFFFFFFFD\r\nx\r\n"));
    EXPECT_TRUE(is_chunked_prefix_valid("1\r\nx"));
    EXPECT_TRUE(is_chunked_prefix_valid("1\r\nx\r"));
    EXPECT_FALSE(is_chunked_prefix_valid("5 \r\nhello\r\n")); // whitespace with no extension
    EXPECT_FALSE(is_chunked_prefix_valid("5\rhello\r\n"));      // CR without LF
    EXPECT_FALSE(is_chunked_prefix_valid("0\r\nBad Name: x\r\n\r\n"));
    // A bare LF ends no line for the parser, which would wait for more bytes after it.
    EXPECT_FALSE(is_chunked_prefix_valid("3\r\nabc\r\n0\n"));
    EXPECT_FALSE(is_chunked_prefix_valid("0\r\n\n"));
    EXPECT_FALSE(is_chunked_prefix_valid("0\r\nX-T: 1\n"));
}

TEST(RequestChecksTest, BareLineFeeds)
{
    EXPECT_FALSE(has_bare_lf(""));
    EXPECT_FALSE(has_bare_lf("0\r\nX-T: 1\r\n"));
    EXPECT_FALSE(has_bare_lf("\r"));
    EXPECT_TRUE(has_bare_lf("\n"));
    EXPECT_TRUE(has_bare_lf("0\r\n\n"));
    EXPECT_TRUE(has_bare_lf("0\r\nX-T: 1\n\r\n"));
    // From an offset: the bytes before it were looked at already, and the CR before a line
    // feed may be among them.
    EXPECT_FALSE(has_bare_lf("a\nb", 2));
    EXPECT_FALSE(has_bare_lf("a\r\n", 2));
    EXPECT_TRUE(has_bare_lf("a\r\n\n", 3));
}

TEST(RequestChecksTest, ValidChunkedBodiesAreValidWhereverTheyAreCut)
{
    // Where a segment ends is the sender's and the network's choice: each prefix of a body
    // that the parser accepts whole must pass, or a request gets 400 by chance.
    const std::vector<std::string> bodies = {
        "5\r\nhello\r\n0\r\n\r\n",
        "5 ;x\r\nhello\r\n0\r\n\r\n",
        "5\t; a = \"q;\\\"\" ;b\r\nhello\r\n0 ;end\r\n\r\n",
        "00000000000000005\r\nhello\r\n0000000000000000000\r\n\r\n",
        "a\r\n0123456789\r\n0\r\nChecksum: abc\r\nX-Other: 1\r\n\r\n",
    };
    for (const auto& body : bodies) {
        for (std::size_t cut = 0; cut <= body.size(); ++cut) {
            EXPECT_TRUE(is_chunked_prefix_valid(std::string_view(body).substr(0, cut)))
                << testing::PrintToString(body) << " cut at " << cut;
        }
    }
}

} // namespace
} // namespace portico::http
