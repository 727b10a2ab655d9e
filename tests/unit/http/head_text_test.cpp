#include "portico/http/head_text.hpp"

#include <boost/beast/http/write.hpp>
#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace portico::http {
namespace {

/// The head as Beast's own serializer writes it: the reference for the bytes.
template <typename Head>
std::string beast_text(const Head& h)
{
    std::ostringstream os;
    os << h;
    return os.str();
}

TEST(head_text, request_matches_beast)
{
    request_head req;
    req.method(verb::post);
    req.target("/api/items?x=1");
    req.version(11);
    req.set(field::host, "app.localhost:7080");
    req.insert("X-Custom", "a, b");
    req.insert(field::via, "1.1 portico");
    req.set(field::content_length, "12");
    std::string out = "prefix";
    append_head(out, req);
    EXPECT_EQ(out, "prefix" + beast_text(req));
    EXPECT_EQ(out.substr(6, 33), "POST /api/items?x=1 HTTP/1.1\r\nHos");
}

TEST(head_text, unknown_method_keeps_its_spelling)
{
    request_head req;
    req.method_string("PURGE");
    req.target("/");
    req.version(10);
    std::string out;
    append_head(out, req);
    EXPECT_EQ(out, "PURGE / HTTP/1.0\r\n\r\n");
    EXPECT_EQ(out, beast_text(req));
}

TEST(head_text, response_matches_beast)
{
    for (const auto code : {status::ok, status::not_modified, status::not_found,
                            status::switching_protocols, status::bad_gateway}) {
        response_head res;
        res.result(code);
        res.version(11);
        res.set(field::content_type, "text/plain");
        res.set(field::content_length, "5");
        res.set(field::connection, "close");
        std::string out;
        append_head(out, res);
        EXPECT_EQ(out, beast_text(res));
    }
}

TEST(head_text, response_keeps_an_unknown_code_and_its_reason)
{
    response_head res;
    res.result(599);
    res.reason("Custom Thing");
    res.version(10);
    std::string out;
    append_head(out, res);
    EXPECT_EQ(out, "HTTP/1.0 599 Custom Thing\r\n\r\n");
    EXPECT_EQ(out, beast_text(res));
}

TEST(head_text, a_code_without_a_reason_gets_the_standard_one_or_none)
{
    // Beast would write "<unknown-status>" for a code it does not know.
    EXPECT_EQ(standard_reason(200), "OK");
    EXPECT_EQ(standard_reason(103), "Early Hints");
    EXPECT_EQ(standard_reason(299), "");
    response_head res;
    res.result(299);
    res.version(11);
    std::string out;
    append_head(out, res);
    EXPECT_EQ(out, "HTTP/1.1 299 \r\n\r\n");
    res.result(404);
    EXPECT_EQ(reason_of(res), "Not Found");
}

TEST(head_text, parsed_field_lines_are_copied_as_stored)
{
    request_head req;
    req.insert(field::host, "app.localhost:7080");
    req.insert("X-Empty", "");
    req.insert("x-lower", "v, w");
    for (const auto& line : req) {
        std::string one_copy;
        std::string piecewise;
        append_field(one_copy, line);
        append_field(piecewise, line.name_string(), line.value());
        EXPECT_EQ(one_copy, piecewise);
        EXPECT_EQ(stored_line(line), piecewise); // one piece, as the serializer writes it
    }
}

} // namespace
} // namespace portico::http
