#include "portico/http/error_page.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::http {
namespace {

constexpr errc all_errors[] = {
    errc::no_route,         errc::upstream_refused, errc::upstream_connect_timeout,
    errc::upstream_timeout, errc::upstream_tls,     errc::upstream_protocol,
    errc::bad_request,      errc::header_too_large, errc::body_too_large,
    errc::header_timeout,   errc::tls_required,     errc::forbidden_origin,
    errc::tls_handshake_failed,
};

bool contains(std::string_view haystack, std::string_view needle)
{
    return haystack.find(needle) != std::string_view::npos;
}

error_details refused_details(const std::vector<std::string>& tried)
{
    error_details d;
    d.error = errc::upstream_refused;
    d.host = "app.localhost";
    d.route = "app.localhost";
    d.backend = "127.0.0.1:5173";
    d.tried = tried;
    return d;
}

TEST(ErrorPageTest, StatusForEveryCondition)
{
    const std::pair<errc, status> expected[] = {
        {errc::no_route, status::not_found},
        {errc::upstream_refused, status::bad_gateway},
        {errc::upstream_connect_timeout, status::gateway_timeout},
        {errc::upstream_timeout, status::gateway_timeout},
        {errc::upstream_tls, status::bad_gateway},
        {errc::upstream_protocol, status::bad_gateway},
        {errc::bad_request, status::bad_request},
        {errc::header_too_large, status::request_header_fields_too_large},
        {errc::body_too_large, status::payload_too_large},
        {errc::header_timeout, status::request_timeout},
        {errc::tls_required, status::bad_request},
        {errc::forbidden_origin, status::forbidden},
        {errc::tls_handshake_failed, status::bad_request},
    };
    static_assert(std::size(expected) == std::size(all_errors));
    for (const auto& [e, code] : expected) {
        EXPECT_EQ(status_for(e), code) << to_string(e);
    }
}

TEST(ErrorPageTest, EveryResponseCarriesReasonAndCommonFields)
{
    for (const auto e : all_errors) {
        for (const bool json : {false, true}) {
            error_details d;
            d.error = e;
            const auto res = make_error_response(d, json, 11);
            EXPECT_EQ(res.result(), status_for(e));
            EXPECT_EQ(res["X-Portico-Error"], to_string(e));
            EXPECT_EQ(res[field::cache_control], "no-store");
            EXPECT_EQ(res[field::connection], "close");
            EXPECT_EQ(res[field::content_length], std::to_string(res.body().size()));
            EXPECT_FALSE(error_message(d).empty()) << to_string(e);
        }
    }
}

TEST(ErrorPageTest, ContentTypeFollowsFormat)
{
    error_details d;
    d.error = errc::no_route;
    EXPECT_EQ(make_error_response(d, true, 11)[field::content_type], "application/json");
    EXPECT_EQ(make_error_response(d, false, 11)[field::content_type],
              "text/html; charset=utf-8");
}

TEST(ErrorPageTest, JsonBodyHasDocumentedFields)
{
    const std::vector<std::string> tried{"127.0.0.1:5173"};
    const auto d = refused_details(tried);

    const auto res = make_error_response(d, true, 11);
    const auto body = boost::json::parse(res.body()).as_object();

    EXPECT_EQ(body.size(), 6U);
    EXPECT_EQ(body.at("status").to_number<int>(), 502);
    EXPECT_EQ(body.at("error").as_string(), "upstream_refused");
    EXPECT_EQ(body.at("message").as_string(), error_message(d));
    EXPECT_EQ(body.at("host").as_string(), "app.localhost");
    EXPECT_EQ(body.at("route").as_string(), "app.localhost");
    EXPECT_EQ(body.at("backend").as_string(), "127.0.0.1:5173");
}

TEST(ErrorPageTest, JsonOmitsFieldsThatDoNotApply)
{
    error_details d;
    d.error = errc::header_too_large;

    const auto body = boost::json::parse(make_error_response(d, true, 11).body()).as_object();

    EXPECT_EQ(body.size(), 3U);
    EXPECT_TRUE(body.contains("status"));
    EXPECT_TRUE(body.contains("error"));
    EXPECT_TRUE(body.contains("message"));
}

TEST(ErrorPageTest, JsonSurvivesHostileStrings)
{
    const std::string hostile = "a\"b\\c\n</script><x y='z'>\x01";
    error_details d;
    d.error = errc::no_route;
    d.host = hostile;

    const auto body = boost::json::parse(make_error_response(d, true, 11).body()).as_object();

    EXPECT_EQ(body.at("host").as_string(), hostile);
}

TEST(ErrorPageTest, JsonIsUtf8WhateverBytesTheClientSent)
{
    error_details d;
    d.error = errc::bad_request;
    d.host = "ev\xFFil.localhost";

    const auto body = boost::json::parse(make_error_response(d, true, 11).body()).as_object();

    EXPECT_EQ(body.at("host").as_string(), "ev\xEF\xBF\xBDil.localhost");
}

TEST(ErrorPageTest, HtmlTitleNamesStatusAndPortico)
{
    const std::vector<std::string> tried{"127.0.0.1:5173"};
    const auto res = make_error_response(refused_details(tried), false, 11);
    EXPECT_TRUE(contains(res.body(), "<title>502 Bad Gateway — portico</title>"));
}

TEST(ErrorPageTest, HtmlLoadsNothingExternal)
{
    error_details d;
    d.error = errc::no_route;
    const auto body = make_error_response(d, false, 11).body();
    EXPECT_FALSE(contains(body, "<script"));
    EXPECT_FALSE(contains(body, "<link"));
    EXPECT_FALSE(contains(body, "src="));
    EXPECT_FALSE(contains(body, "url("));
}

TEST(ErrorPageTest, NoRouteMessageNamesHost)
{
    error_details d;
    d.error = errc::no_route;
    d.host = "x.localhost";
    EXPECT_EQ(error_message(d), "No route for 'x.localhost'.");
}

TEST(ErrorPageTest, NoRouteLinksExactHostsWithSchemeAndPort)
{
    const std::vector<std::string> exact{"app.localhost", "api.localhost"};
    error_details d;
    d.error = errc::no_route;
    d.host = "x.localhost:7443";
    d.exact_hosts = exact;
    d.scheme = "https";
    d.port = "7443";

    const auto body = make_error_response(d, false, 11).body();

    EXPECT_TRUE(contains(body, R"(<a href="https://app.localhost:7443/">app.localhost</a>)"));
    EXPECT_TRUE(contains(body, R"(<a href="https://api.localhost:7443/">api.localhost</a>)"));
}

TEST(ErrorPageTest, NoRouteLinkOmitsDefaultPort)
{
    const std::vector<std::string> exact{"app.localhost"};
    error_details d;
    d.error = errc::no_route;
    d.exact_hosts = exact;

    const auto body = make_error_response(d, false, 11).body();

    EXPECT_TRUE(contains(body, R"(<a href="http://app.localhost/">app.localhost</a>)"));
}

TEST(ErrorPageTest, NoRouteShowsWildcardsAsText)
{
    const std::vector<std::string> wildcard{"*.app.localhost"};
    error_details d;
    d.error = errc::no_route;
    d.wildcard_hosts = wildcard;

    const auto body = make_error_response(d, false, 11).body();

    EXPECT_TRUE(contains(body, "<code>*.app.localhost</code>"));
    EXPECT_FALSE(contains(body, "://*.app.localhost"));
}

TEST(ErrorPageTest, NoRouteWithoutRoutesExplainsHowToAddOne)
{
    error_details d;
    d.error = errc::no_route;
    const auto body = make_error_response(d, false, 11).body();
    EXPECT_TRUE(contains(body, "No routes are configured yet"));
    // On the built-in default there is no file to save: the page says to write one and
    // start again; with a file, it names that file.
    EXPECT_TRUE(contains(body, "built-in default")) << body;
    EXPECT_TRUE(contains(body, "start it again")) << body;
    d.config_file = "config/dev<1>.yaml";
    const auto named = make_error_response(d, false, 11).body();
    EXPECT_TRUE(contains(named, "Add one to <code>config/dev&lt;1&gt;.yaml</code> and save"))
        << named;
}

TEST(ErrorPageTest, HtmlEscapesHostileValues)
{
    const std::string hostile = R"(<script>alert("x'y")</script>&)";
    const std::vector<std::string> exact{hostile};
    const std::vector<std::string> wildcard{"*." + hostile};
    error_details d;
    d.error = errc::no_route;
    d.host = hostile;
    d.route = hostile;
    d.backend = hostile;
    d.detail = hostile;
    d.exact_hosts = exact;
    d.wildcard_hosts = wildcard;
    d.port = R"("><script>)";

    const auto body = make_error_response(d, false, 11).body();

    EXPECT_FALSE(contains(body, "<script"));
    EXPECT_FALSE(contains(body, R"("x'y")"));
    EXPECT_TRUE(contains(body, "&lt;script&gt;alert(&quot;x&#39;y&quot;)&lt;/script&gt;&amp;"));
}

TEST(ErrorPageTest, RefusedMessageNamesAddressAndRoute)
{
    const std::vector<std::string> tried{"127.0.0.1:5173"};
    EXPECT_EQ(error_message(refused_details(tried)),
              "Nothing is listening on 127.0.0.1:5173 for app.localhost: start your dev server "
              "on 127.0.0.1:5173.");
}

TEST(ErrorPageTest, UnresolvedNameIsNotCalledNothingListening)
{
    // Nothing was tried: the name had no address, and the page says so instead of asking
    // for a dev server to be started.
    const std::vector<std::string> tried{"dev-box.lan:8080"};
    auto d = refused_details(tried);
    d.backend = "http://dev-box.lan:8080";
    d.name_unresolved = true;
    d.detail = "Host not found (authoritative)";
    EXPECT_EQ(error_message(d),
              "The name in dev-box.lan:8080 for app.localhost did not resolve to an address: "
              "check the host name in the route's `to`, or give it a line in /etc/hosts. Host "
              "not found (authoritative).");
}

TEST(ErrorPageTest, RefusedMessageNamesEveryAddressTried)
{
    const std::vector<std::string> tried{"127.0.0.1:5173", "[::1]:5173"};
    auto d = refused_details(tried);
    d.backend = "localhost:5173";

    const auto message = error_message(d);
    const auto body = make_error_response(d, false, 11).body();

    EXPECT_TRUE(contains(message, "tried 127.0.0.1:5173 and [::1]:5173"));
    EXPECT_TRUE(contains(message, "start your dev server on localhost:5173"));
    EXPECT_TRUE(contains(body, "tried 127.0.0.1:5173 and [::1]:5173"));
}

TEST(ErrorPageTest, RefusedPageHasStartHint)
{
    const std::vector<std::string> tried{"127.0.0.1:5173"};
    const auto body = make_error_response(refused_details(tried), false, 11).body();
    EXPECT_TRUE(
        contains(body, "Start your dev server on 127.0.0.1:5173, then reload this page."));
}

TEST(ErrorPageTest, UpstreamTlsNamesInsecureSkipVerify)
{
    error_details d;
    d.error = errc::upstream_tls;
    d.route = "secure.localhost";
    d.backend = "https://127.0.0.1:3443";
    d.detail = "certificate verify failed (self-signed certificate)";
    d.certificate_rejected = true;

    const auto message = error_message(d);

    EXPECT_TRUE(contains(message, "insecure_skip_verify: true"));
    EXPECT_TRUE(contains(message, "https://127.0.0.1:3443"));
    EXPECT_TRUE(contains(message, "Certificate verify failed (self-signed certificate)."));
    EXPECT_TRUE(contains(make_error_response(d, false, 11).body(), "insecure_skip_verify"));
}

TEST(ErrorPageTest, UpstreamTlsHandshakeFailureSaysToCheckTheScheme)
{
    error_details d;
    d.error = errc::upstream_tls;
    d.backend = "https://127.0.0.1:5173";
    d.detail = "wrong version number";
    const auto message = error_message(d);
    EXPECT_TRUE(contains(message, "check that it serves https")) << message;
    EXPECT_TRUE(contains(message, "http:// in the route's `to`")) << message;
    EXPECT_TRUE(contains(message, "Wrong version number.")) << message;
    EXPECT_FALSE(contains(message, "insecure_skip_verify")) << message;
}

TEST(ErrorPageTest, MessagesNameTheSettingToChange)
{
    const std::pair<errc, std::string_view> expected[] = {
        {errc::upstream_connect_timeout, "timeouts.connect"},
        {errc::upstream_timeout, "timeouts.upstream"},
        {errc::header_timeout, "timeouts.header"},
        {errc::header_too_large, "limits.header_bytes"},
        {errc::body_too_large, "limits.body_bytes"},
    };
    for (const auto& [e, setting] : expected) {
        error_details d;
        d.error = e;
        EXPECT_TRUE(contains(error_message(d), setting)) << to_string(e);
    }
}

TEST(ErrorPageTest, BackendNotReadingTheBodyIsToldApartFromNoAnswer)
{
    error_details d;
    d.error = errc::upstream_timeout;
    d.backend = "127.0.0.1:8000";
    d.body_not_taken = true;
    const auto message = error_message(d);
    EXPECT_TRUE(contains(message, "took none of it within timeouts.idle")) << message;
    EXPECT_TRUE(contains(message, "127.0.0.1:8000")) << message;
    EXPECT_FALSE(contains(message, "timeouts.upstream")) << message;
}

TEST(ErrorPageTest, TlsRequiredSaysToUseHttps)
{
    error_details d;
    d.error = errc::tls_required;
    d.host = "app.localhost:7080";
    d.https_url = "https://app.localhost:7443/x";
    EXPECT_EQ(error_message(d),
              "This address only serves HTTPS: use https://app.localhost:7443/x instead.");
}

TEST(ErrorPageTest, TlsRequiredForAPassthroughHostSaysWhy)
{
    error_details d;
    d.error = errc::tls_required;
    d.passthrough = true;
    d.host = "db.localhost";
    d.https_url = "https://db.localhost:7443/";
    const auto plain = error_message(d);
    EXPECT_TRUE(contains(plain, "db.localhost is passed through to its backend as TLS")) << plain;
    EXPECT_TRUE(contains(plain, "use https://db.localhost:7443/.")) << plain;
    EXPECT_FALSE(contains(plain, "only serves HTTPS")) << plain;

    d.scheme = "https";
    const auto over_tls = error_message(d);
    EXPECT_TRUE(contains(over_tls, "handshake named another host or none")) << over_tls;
    EXPECT_TRUE(contains(over_tls, "open https://db.localhost:7443/ in a connection")) << over_tls;

    d.scheme = "http";
    d.https_url = {};
    const auto nowhere = error_message(d);
    EXPECT_TRUE(contains(nowhere, "no listener serves TLS")) << nowhere;
}

TEST(ErrorPageTest, BadRequestAppendsDetail)
{
    error_details d;
    d.error = errc::bad_request;
    EXPECT_FALSE(contains(error_message(d), "Host"));

    d.detail = "an HTTP/1.1 request must carry a Host header";
    EXPECT_TRUE(
        contains(error_message(d), " An HTTP/1.1 request must carry a Host header."));
}

TEST(ErrorPageTest, ResponseUsesRequestVersion)
{
    error_details d;
    d.error = errc::bad_request;
    const auto res = make_error_response(d, false, 10);
    EXPECT_EQ(res.version(), 10U);
    EXPECT_EQ(res[field::connection], "close");
    EXPECT_EQ(make_error_response(d, true, 11).version(), 11U);
}

} // namespace
} // namespace portico::http
