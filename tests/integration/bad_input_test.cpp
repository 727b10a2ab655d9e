// Hostile and malformed input: every case gets a clear error page and nothing reaches the
// backend (request smuggling defences, RFC 9112 §6.3, §5.2).

#include "support/origin.hpp"
#include "support/proxy_harness.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace portico::test {
namespace {

using namespace std::string_view_literals;

struct bad_request_case {
    const char* name;
    std::string_view bytes;
    int status;
    const char* error;
};

// Names the case in ctest's listing instead of dumping its bytes.
void PrintTo(const bad_request_case& c, std::ostream* os) { *os << c.name; }

class BadInputTest : public ::testing::TestWithParam<bad_request_case> {};

TEST_P(BadInputTest, RefusedAndNotForwarded)
{
    origin backend;
    proxy_harness proxy(fmt::format(
        "limits: {{ header_bytes: 2048 }}\nroutes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
        backend.port()));
    const auto raw = raw_exchange(proxy.port(), GetParam().bytes);
    // HTTP/1.0 clients are answered in HTTP/1.0; the status is what matters.
    EXPECT_TRUE(raw.starts_with("HTTP/1.")) << raw;
    EXPECT_EQ(raw.substr(8, 5), fmt::format(" {} ", GetParam().status)) << raw;
    EXPECT_NE(raw.find(fmt::format("X-Portico-Error: {}", GetParam().error)), std::string::npos)
        << raw;
    EXPECT_TRUE(backend.seen().empty());
    EXPECT_EQ(backend.connections(), 0);
}

const std::string huge_header = "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Big: " +
                                std::string(4096, 'a') + "\r\n\r\n";

INSTANTIATE_TEST_SUITE_P(
    Smuggling, BadInputTest,
    ::testing::Values(
        bad_request_case{"ContentLengthWithTransferEncoding",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                         400, "bad_request"},
        bad_request_case{"DifferingContentLengths",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5\r\n"
                         "Content-Length: 6\r\n\r\nhello!",
                         400, "bad_request"},
        bad_request_case{"BadChunkSize",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n"
                         "\r\nzz\r\nhello\r\n0\r\n\r\n",
                         400, "bad_request"},
        // Beast waits for CRLF after these lines; they must not hang until the idle timeout.
        bad_request_case{"LastChunkLineEndingInABareLf",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n"
                         "\r\n3\r\nabc\r\n0\n\r\n",
                         400, "bad_request"},
        bad_request_case{"EmptyLineAfterTheLastChunkAsABareLf",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n"
                         "\r\n3\r\nabc\r\n0\r\n\n",
                         400, "bad_request"},
        bad_request_case{"TrailerLineEndingInABareLf",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n"
                         "\r\n0\r\nX-T: 1\n\r\n",
                         400, "bad_request"},
        bad_request_case{"ObsFold",
                         "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-A: one\r\n two\r\n\r\n", 400,
                         "bad_request"},
        bad_request_case{"BareCr", "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-A: a\rb\r\n\r\n",
                         400, "bad_request"},
        bad_request_case{"NulByte",
                         "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-A: a\0b\r\n\r\n"sv, 400,
                         "bad_request"},
        bad_request_case{"InvalidHeaderName",
                         "GET / HTTP/1.1\r\nHost: app.localhost\r\nBad Name: x\r\n\r\n", 400,
                         "bad_request"},
        bad_request_case{"TransferEncodingNotChunked",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: gzip\r\n"
                         "\r\nabc",
                         400, "bad_request"},
        bad_request_case{"ChunkedNotLast",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked, "
                         "identity\r\n\r\n0\r\n\r\n",
                         400, "bad_request"},
        bad_request_case{"TransferEncodingOnTwoLines",
                         "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: gzip\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                         400, "bad_request"},
        bad_request_case{"TwoHostHeadersInOtherCases",
                         "GET / HTTP/1.1\r\nhost: app.localhost\r\nHOST: other.localhost\r\n\r\n",
                         400, "bad_request"},
        bad_request_case{"TransferEncodingInHttp10",
                         "POST / HTTP/1.0\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n"
                         "\r\n0\r\n\r\n",
                         400, "bad_request"},
        bad_request_case{"TwoHostHeaders",
                         "GET / HTTP/1.1\r\nHost: app.localhost\r\nHost: other.localhost\r\n\r\n",
                         400, "bad_request"},
        bad_request_case{"MissingHostInHttp11", "GET / HTTP/1.1\r\n\r\n", 400, "bad_request"},
        // Refused at once: its head has no CRLFCRLF to wait for (raw_exchange waits 5 s,
        // timeouts.header is 10 s).
        bad_request_case{"BareLfLineEndsThroughout", "GET / HTTP/1.1\nHost: app.localhost\n\n",
                         400, "bad_request"},
        bad_request_case{"BareLfBeforeTheEmptyLine",
                         "GET / HTTP/1.1\r\nHost: app.localhost\n\r\n", 400, "bad_request"},
        bad_request_case{"GarbageRequestLine", "HELLO\r\n\r\n", 400, "bad_request"},
        bad_request_case{"BadPercentEncoding",
                         "GET /%zz HTTP/1.1\r\nHost: app.localhost\r\n\r\n", 400, "bad_request"},
        bad_request_case{"HeaderTooLarge", std::string_view(huge_header), 431, "header_too_large"},
        bad_request_case{"HostWithABadPort",
                         "GET / HTTP/1.1\r\nHost: app.localhost:abc\r\n\r\n", 400,
                         "bad_request"},
        bad_request_case{"HostAsAList",
                         "GET / HTTP/1.1\r\nHost: app.localhost, evil.example\r\n\r\n", 400,
                         "bad_request"},
        bad_request_case{"HostWithUserinfo",
                         "GET / HTTP/1.1\r\nHost: app.localhost@evil.example\r\n\r\n", 400,
                         "bad_request"},
        bad_request_case{"UnroutedHost", "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", 404,
                         "no_route"}),
    [](const ::testing::TestParamInfo<bad_request_case>& param_info) { return std::string(param_info.param.name); });

TEST(BadInputJsonTest, HeadsRefusedBeforeParsingStillGetJsonWhenAskedFor)
{
    origin backend;
    proxy_harness proxy(fmt::format(
        "limits: {{ header_bytes: 2048 }}\nroutes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
        backend.port()));
    const std::string too_large = "GET / HTTP/1.1\r\nHost: app.localhost\r\naccept: application/json\r\n"
                                  "Cookie: " + std::string(4096, 'c') + "\r\n\r\n";
    const std::string folded = "GET / HTTP/1.1\r\nHost: app.localhost\r\nAccept: application/json\r\n"
                               "X-A: one\r\n two\r\n\r\n";
    const std::string browser = "GET / HTTP/1.1\r\nHost: app.localhost\r\n"
                                "Accept: text/html,application/json\r\nX-A: one\r\n two\r\n\r\n";
    for (const auto& [bytes, status, type] :
         {std::tuple{too_large, 431, "application/json"}, std::tuple{folded, 400, "application/json"},
          std::tuple{browser, 400, "text/html"}}) {
        const auto raw = raw_exchange(proxy.port(), bytes);
        EXPECT_EQ(raw.substr(9, 3), std::to_string(status)) << raw;
        EXPECT_NE(raw.find(fmt::format("Content-Type: {}", type)), std::string::npos) << raw;
    }
    EXPECT_TRUE(backend.seen().empty());
}

TEST(BadInputTimeoutTest, SlowHeadGets408)
{
    origin backend;
    proxy_harness proxy(fmt::format("timeouts: {{ header: 300ms }}\nroutes:\n  - host: "
                                    "app.localhost\n    to: 127.0.0.1:{}\n",
                                    backend.port()));
    const auto raw = raw_exchange(proxy.port(), "GET / HTTP/1.1\r\nHost: app.loc");
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 408 ")) << raw;
    EXPECT_NE(raw.find("X-Portico-Error: header_timeout"), std::string::npos);
    EXPECT_TRUE(backend.seen().empty());
    // Its log line counts the wait for the head, not the instant after it.
    std::vector<admin::request_sample> recent;
    ASSERT_TRUE(wait_until([&] { return !(recent = proxy.observatory().recent()).empty(); }));
    EXPECT_EQ(recent.front().status, 408U);
    EXPECT_GE(recent.front().duration_ms, 250.0);
}

TEST(BadInputLogTest, RefusedRequestsAreLoggedByTheirRequestLine)
{
    // As nginx logs them: what was asked, though the head around it was refused; and no
    // protocol the client never sent.
    origin backend;
    proxy_harness proxy(fmt::format("limits: {{ header_bytes: 4096 }}\nroutes:\n  - host: "
                                    "app.localhost\n    to: 127.0.0.1:{}\n",
                                    backend.port()));
    const auto logged = [&](std::string_view bytes, unsigned status) {
        const auto raw = raw_exchange(proxy.port(), bytes);
        EXPECT_EQ(raw.substr(8, 5), fmt::format(" {} ", status)) << raw; // HTTP/1.x NNN
        admin::request_sample found;
        EXPECT_TRUE(wait_until([&] {
            const auto recent = proxy.observatory().recent();
            if (recent.empty() || recent.front().status != status) {
                return false;
            }
            found = recent.front();
            return true;
        }));
        return found;
    };
    auto r = logged("GET /x?q=1 HTTP/1.0\r\nHost: a b\x01\r\n\r\n", 400);
    EXPECT_EQ(r.method, "GET");
    EXPECT_EQ(r.target, "/x?q=1");
    EXPECT_EQ(r.proto, "HTTP/1.0");
    r = logged("GET /big HTTP/1.1\r\nHost: app.localhost\r\nX-Pad: " + std::string(8000, 'p') +
                   "\r\n\r\n",
               431);
    EXPECT_EQ(r.method, "GET");
    EXPECT_EQ(r.target, "/big");
    EXPECT_EQ(r.proto, "HTTP/1.1");
    r = logged("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400);
    EXPECT_EQ(r.method, "");
    EXPECT_EQ(r.proto, "-");
    EXPECT_TRUE(backend.seen().empty());
}

TEST(BadInputTimeoutTest, SilentClientIsClosedAfterHeaderTimeout)
{
    proxy_harness proxy("timeouts: { header: 200ms }\n");
    const auto start = std::chrono::steady_clock::now();
    const auto raw = raw_exchange(proxy.port(), "");
    EXPECT_TRUE(raw.empty()) << raw;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(BodyLimitTest, DeclaredLengthOverLimitGets413BeforeForwarding)
{
    origin backend;
    proxy_harness proxy(fmt::format(
        "limits: {{ body_bytes: 10 }}\nroutes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
        backend.port()));
    const auto raw = raw_exchange(
        proxy.port(),
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 11\r\n\r\nhello world");
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 413 ")) << raw;
    EXPECT_NE(raw.find("X-Portico-Error: body_too_large"), std::string::npos);
    EXPECT_EQ(backend.connections(), 0);
}

TEST(BodyLimitTest, ChunkedBodyOverLimitGets413)
{
    origin backend;
    proxy_harness proxy(fmt::format(
        "limits: {{ body_bytes: 10 }}\nroutes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
        backend.port()));
    const auto raw = raw_exchange(proxy.port(),
                                  "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: "
                                  "chunked\r\n\r\n6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n");
    EXPECT_TRUE(raw.starts_with("HTTP/1.1 413 ")) << raw;
    EXPECT_TRUE(backend.seen().empty());
}

TEST(BadInputChunkTest, LargestChunkSizesAreStreamedNotACrash)
{
    origin backend;
    proxy_harness proxy(fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
                                    backend.port()));
    for (const auto* size : {"FFFFFFFFFFFFFFFF", "FFFFFFFFFFFFFFFE"}) {
        // A chunk that could never end: the client leaves, and the proxy goes on serving.
        const auto raw = raw_exchange(
            proxy.port(),
            fmt::format("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: "
                        "chunked\r\n\r\n{}\r\nx\r\n",
                        size),
            std::chrono::milliseconds(300));
        EXPECT_EQ(raw, "") << size;
        client c(proxy.port());
        EXPECT_EQ(c.get("app.localhost", "/after").result_int(), 200) << size;
    }
}

/// A route to `backend` with heads of up to 1 MiB allowed: more than one field can hold.
std::string large_heads_route(unsigned short backend)
{
    return fmt::format("limits: {{ header_bytes: 1048576 }}\nroutes:\n  - host: app.localhost\n"
                       "    to: 127.0.0.1:{}\n",
                       backend);
}

TEST(HugeFieldTest, ResponseFieldLongerThanAFieldHoldsGets502AndTheProxyServesOn)
{
    const std::string value(100000, 'a');
    origin backend([&value](origin_connection& c) {
        while (auto req = c.read_request()) {
            if (req->target() == "/head") {
                c.write_raw(fmt::format("HTTP/1.1 200 OK\r\nX-Big: {}\r\nTransfer-Encoding: "
                                        "chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
                                        value));
            } else if (req->target() == "/length") {
                c.write_raw(fmt::format("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n"
                                        "\r\nhi",
                                        value));
            } else if (req->target() == "/trailer") {
                c.write_raw(fmt::format("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        "2\r\nhi\r\n0\r\nX-Big: {}\r\n\r\n",
                                        value));
            } else {
                c.write_raw("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        }
    });
    proxy_harness proxy(large_heads_route(backend.port()));
    {
        client c(proxy.port());
        const auto res = c.get("app.localhost", "/head");
        EXPECT_EQ(res.result_int(), 502);
        EXPECT_EQ(res["X-Portico-Error"], "upstream_protocol");
        EXPECT_NE(res.body().find("longer than"), std::string::npos) << res.body();
    }
    for (const auto* method : {"GET", "HEAD"}) {
        // Whichever reader takes the head (the one for Content-Length responses, or the
        // full parser for HEAD), the answer is the same.
        const auto raw = raw_exchange(proxy.port(),
                                      fmt::format("{} /length HTTP/1.1\r\nHost: app.localhost\r\n"
                                                  "Connection: close\r\n\r\n",
                                                  method),
                                      std::chrono::seconds(3));
        EXPECT_TRUE(raw.starts_with("HTTP/1.1 502 ")) << method << raw.substr(0, 100);
    }
    {
        // The head went out; what is left is to end the response short.
        const auto raw = raw_exchange(proxy.port(),
                                      "GET /trailer HTTP/1.1\r\nHost: app.localhost\r\n"
                                      "TE: trailers\r\n\r\n",
                                      std::chrono::seconds(3));
        EXPECT_TRUE(raw.starts_with("HTTP/1.1 200 ")) << raw.substr(0, 200);
        EXPECT_EQ(raw.find(value), std::string::npos);
        EXPECT_FALSE(raw.ends_with("0\r\n\r\n")) << "a cut body must not end whole";
    }
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/after").body(), "ok");
}

TEST(HugeFieldTest, RequestFieldLongerThanAFieldHoldsGets431AndTheProxyServesOn)
{
    origin backend;
    proxy_harness proxy(large_heads_route(backend.port()));
    const std::string value(70000, 'a');
    const auto head = raw_exchange(
        proxy.port(),
        fmt::format("GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Big: {}\r\n\r\n", value));
    EXPECT_TRUE(head.starts_with("HTTP/1.1 431 ")) << head.substr(0, 200);
    EXPECT_NE(head.find("X-Portico-Error: header_too_large"), std::string::npos);
    EXPECT_NE(head.find("longer than"), std::string::npos) << head;

    const auto trailer = raw_exchange(
        proxy.port(),
        fmt::format("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n"
                    "\r\n2\r\nhi\r\n0\r\nX-Big: {}\r\n\r\n",
                    value));
    EXPECT_TRUE(trailer.starts_with("HTTP/1.1 4")) << trailer.substr(0, 200);
    // Beast sets no bound on a trailer section: one that never ends is cut off, not buffered.
    const auto endless = raw_exchange(
        proxy.port(),
        fmt::format("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n"
                    "\r\n2\r\nhi\r\n0\r\nX-Big: {}{}",
                    value, value),
        std::chrono::seconds(3));
    EXPECT_TRUE(endless.starts_with("HTTP/1.1 4")) << endless.substr(0, 200);
    client c(proxy.port());
    EXPECT_EQ(c.get("app.localhost", "/after").result_int(), 200);
}

TEST(ContentLengthTest, RepeatedValuesGoUpstreamAsOne)
{
    origin backend;
    proxy_harness proxy(fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
                                    backend.port()));
    // Agreeing values are one length (RFC 9110 §8.6), but a strict backend refuses the
    // list or the second line, so exactly one line goes upstream.
    for (const auto* lengths : {"Content-Length: 3, 3\r\n", "Content-Length: 3\r\nContent-Length: 3\r\n"}) {
        client c(proxy.port());
        c.write_raw(fmt::format("POST /upload HTTP/1.1\r\nHost: app.localhost\r\n{}\r\nabc",
                                lengths));
        EXPECT_EQ(c.read_response().result_int(), 200) << lengths;
    }
    const auto seen = backend.seen_requests();
    ASSERT_EQ(seen.size(), 2U);
    for (const auto& req : seen) {
        EXPECT_EQ(req.count(beast::http::field::content_length), 1U);
        EXPECT_EQ(req[beast::http::field::content_length], "3");
        EXPECT_EQ(req.body(), "abc");
    }
}

} // namespace
} // namespace portico::test
