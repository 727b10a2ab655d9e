// The in-place response head parser: what it accepts, what it leaves to Beast's parser, and
// that a head written from it is byte for byte the head written from Beast's parse.

#include "portico/http/header_policy.hpp"
#include "portico/http/response_head.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace portico::http {
namespace {

std::unique_ptr<beast::http::response_parser<beast::http::empty_body>>
beast_parse(std::string_view head)
{
    auto parser = std::make_unique<beast::http::response_parser<beast::http::empty_body>>();
    parser->eager(false);
    boost::system::error_code ec;
    parser->put(net::buffer(head.data(), head.size()), ec);
    EXPECT_FALSE(ec) << ec.message() << " for " << head;
    EXPECT_TRUE(parser->is_header_done()) << head;
    return parser;
}

TEST(SimpleResponseTest, ReadsStatusFieldsAndFraming)
{
    const std::string head = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type:  text/plain \r\n"
                             "Content-Length: 5\r\nConnection: keep-alive\r\n\r\n";
    simple_response r;
    ASSERT_TRUE(parse_simple_response(head, r));
    EXPECT_EQ(r.version, 11U);
    EXPECT_EQ(r.status, 200U);
    EXPECT_EQ(r.reason, "OK");
    EXPECT_EQ(r.content_length, 5U);
    EXPECT_TRUE(r.keep_alive);
    ASSERT_EQ(r.line_count, 4U);
    EXPECT_EQ(r.lines[1].name(), field::unknown); // not one framing or the policy acts on
    EXPECT_EQ(r.lines[2].name(), field::content_length);
    EXPECT_EQ(r.lines[3].name(), field::connection);
    EXPECT_EQ(r.lines[1].name_string(), "Content-Type");
    EXPECT_EQ(r.lines[1].value(), "text/plain");
}

TEST(SimpleResponseTest, KeepAliveFollowsVersionAndConnection)
{
    simple_response r;
    ASSERT_TRUE(parse_simple_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                      "Connection: upgrade, Close\r\n\r\n", r));
    EXPECT_FALSE(r.keep_alive);
    ASSERT_TRUE(parse_simple_response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", r));
    EXPECT_FALSE(r.keep_alive);
    ASSERT_TRUE(parse_simple_response("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n"
                                      "Connection: Keep-Alive\r\n\r\n", r));
    EXPECT_TRUE(r.keep_alive);
}

TEST(SimpleResponseTest, LeavesEverythingElseToTheFullParser)
{
    using namespace std::string_literals;
    const std::vector<std::string> refused = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",           // close-delimited
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a\r\n b\r\n\r\n", // obs-fold
        "HTTP/1.1 200 OK\nContent-Length: 5\n\n",                          // bare LF
        "HTTP/1.1 200 OK\r\nContent-Length: 5\rX: y\r\n\r\n",              // bare CR
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: a\0b\r\n\r\n"s,
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: a\x7f\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close;x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nProxy-Connection: close\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 600 Odd\r\nContent-Length: 5\r\n\r\n",
        "HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.2 200 OK\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 20x OK\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1  200 OK\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",                        // no empty line
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbody",                // bytes after it
    };
    for (const auto& head : refused) {
        simple_response r;
        EXPECT_FALSE(parse_simple_response(head, r)) << head;
    }
    std::string many = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n";
    for (std::size_t i = 0; i < simple_response::max_lines; ++i) {
        many += fmt::format("X-{}: {}\r\n", i, i);
    }
    many += "\r\n";
    simple_response r;
    EXPECT_FALSE(parse_simple_response(many, r));
}

/**
 * A written head with its field lines stably sorted by lower-case name: the order that
 * matters (RFC 9110 §5.3) is among lines of one name, and Beast's fields keep lines of one
 * name together where the wire had them apart.
 */
std::vector<std::string> canonical(const std::string& head)
{
    std::vector<std::string> lines;
    std::size_t pos = 0;
    while (pos < head.size()) {
        const auto end = head.find("\r\n", pos);
        lines.push_back(head.substr(pos, end - pos));
        pos = end + 2;
    }
    const auto key = [](const std::string& line) {
        auto name = line.substr(0, line.find(':'));
        for (auto& ch : name) {
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        return name;
    };
    std::stable_sort(lines.begin() + 1, lines.end(),
                     [&](const auto& a, const auto& b) { return key(a) < key(b); });
    return lines;
}

TEST(SimpleResponseTest, EveryByteOfLongNamesAndValuesIsChecked)
{
    // Names and values are scanned sixteen bytes at a time where the CPU allows: a byte that
    // decides is checked at every position of a block, across the block's end, and in the
    // bytes left over after the last whole block.
    const auto head_with = [](const std::string& name, const std::string& value) {
        return "HTTP/1.1 200 OK\r\n" + name + ": " + value + "\r\nContent-Length: 0\r\n\r\n";
    };
    for (std::size_t at = 0; at < 40; ++at) {
        simple_response r;
        std::string value(40, 'v');
        value[at] = '\x01';
        EXPECT_FALSE(parse_simple_response(head_with("X-Long", value), r)) << at;
        value[at] = '\x7f';
        EXPECT_FALSE(parse_simple_response(head_with("X-Long", value), r)) << at;
        value[at] = '\t';
        if (at == 0 || at == 39) {
            continue; // leading and trailing whitespace is not part of the value
        }
        // The parse gives views into the head, which must outlive them.
        auto head = head_with("X-Long", value);
        ASSERT_TRUE(parse_simple_response(head, r)) << at;
        EXPECT_EQ(r.lines[0].value(), value) << at;
        value[at] = '\xe9'; // obs-text
        head = head_with("X-Long", value);
        ASSERT_TRUE(parse_simple_response(head, r)) << at;
        EXPECT_EQ(r.lines[0].value(), value) << at;

        std::string name(40, 'n');
        name[at] = '_';
        head = head_with(name, "v");
        ASSERT_TRUE(parse_simple_response(head, r)) << at;
        EXPECT_EQ(r.lines[0].name_string(), name) << at;
        name[at] = '~';
        head = head_with(name, "v");
        ASSERT_TRUE(parse_simple_response(head, r)) << at;
        EXPECT_EQ(r.lines[0].name_string(), name) << at;
        for (const char separator : std::string_view("(@[{ \x80", 6)) {
            name[at] = separator;
            EXPECT_FALSE(parse_simple_response(head_with(name, "v"), r))
                << at << " " << static_cast<int>(separator);
        }
    }
}

TEST(SimpleResponseTest, WrittenHeadEqualsTheOneWrittenFromBeastsParse)
{
    const std::vector<std::string> heads = {
        "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 13:00:00 GMT\r\n"
        "Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
        "HTTP/1.1 404 \r\nContent-Length: 9\r\n\r\n",
        "HTTP/1.0 200 Fine\r\nContent-Length: 2\r\nConnection: keep-alive, X-Secret\r\n"
        "X-Secret: hop\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n",
        "HTTP/1.1 201 Created\r\nVia: 1.0 cache\r\nSet-Cookie: a=1\r\nContent-Length: 0\r\n"
        "set-cookie: b=2\r\nvia: 1.1 edge\r\nTE: trailers, gzip\r\nTrailer: X\r\n"
        "Proxy-Authenticate: Basic\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After:\t10\t\r\nX-Remove-Me: 1\r\n"
        "X-Set-Me: old\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: a, b, c, d, e, f\r\nA: 1\r\nF: 6\r\n"
        "G: 7\r\n\r\n",
        // Lines as long as "name: value" CRLF without being written so, and a dropped last line:
        // each must be written anew, not copied.
        "HTTP/1.1 200 OK\r\nX-A:1 \r\nX-B:\t2\r\nX-C: \r\nX-D:  \r\nContent-Length: 0\r\n"
        "Keep-Alive: timeout=5\r\n\r\n",
    };
    const std::vector<std::pair<std::string, std::string>> set_rules = {{"X-Set-Me", "new"},
                                                                        {"Via", "mine"}};
    const std::vector<std::string> remove_rules = {"X-Remove-Me"};
    const std::vector<header_rule_view> rule_sets = {
        {}, {std::span(set_rules).first(1), std::span(remove_rules)}, {set_rules, {}}};
    for (const auto& head : heads) {
        simple_response simple;
        ASSERT_TRUE(parse_simple_response(head, simple)) << head;
        const auto parser = beast_parse(head);
        EXPECT_EQ(simple.keep_alive, parser->keep_alive()) << head;
        EXPECT_EQ(simple.content_length, parser->content_length().value_or(99)) << head;
        for (const auto& rules : rule_sets) {
            for (const unsigned version : {10U, 11U}) {
                for (const bool keep_alive : {false, true}) {
                    std::string from_beast;
                    std::string from_simple;
                    append_downstream_response(from_beast, parser->get().base(), version,
                                               keep_alive, rules);
                    append_downstream_response(from_simple, simple, version, keep_alive, rules);
                    EXPECT_EQ(canonical(from_simple), canonical(from_beast)) << head;
                }
            }
        }
    }
}

} // namespace
} // namespace portico::http
