#include "portico/http/header_policy.hpp"

#include "portico/http/head_text.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::http {
namespace {

/// Every value of `name`, in order, to check that nothing is appended or duplicated.
std::vector<std::string> values(const fields& f, std::string_view name)
{
    std::vector<std::string> out;
    for (auto [line, last] = f.equal_range(name); line != last; ++line) {
        out.emplace_back(line->value());
    }
    return out;
}

request_head make_request(unsigned version = 11)
{
    request_head req;
    req.method(verb::get);
    req.target("/api/users?x=1");
    req.version(version);
    req.set(field::host, "app.localhost:7080");
    return req;
}

bool is_tunnel_upgrade(const request_head& req)
{
    return scan_request_lines(req).tunnel_upgrade;
}

forward_facts default_facts()
{
    forward_facts facts;
    facts.client_ip = "127.0.0.1";
    facts.original_host = "app.localhost:7080";
    facts.upstream_host = "app.localhost:7080";
    facts.target = "/users?x=1";
    return facts;
}

const header_rule_view no_rules{};

/// Turns `req` into the head sent to the backend for a protocol switch (`facts.upgrade`).
void prepare_upgrade(request_head& req)
{
    auto facts = default_facts();
    facts.upgrade = true;
    prepare_upstream_request(req, facts, no_rules);
}

TEST(HeaderPolicyTest, FixedHopByHopFieldsRemoved)
{
    fields f;
    f.set(field::connection, "keep-alive");
    f.set(field::keep_alive, "timeout=5");
    f.set(field::proxy_connection, "keep-alive");
    f.set(field::proxy_authenticate, "Basic");
    f.set(field::proxy_authorization, "Basic Zm9vOmJhcg==");
    f.set(field::trailer, "Expires");
    f.set(field::transfer_encoding, "chunked");
    f.set(field::te, "gzip");
    f.set(field::upgrade, "websocket");
    f.set(field::content_type, "text/plain");
    f.set(field::authorization, "Bearer x");

    remove_hop_by_hop(f, false);

    for (const auto name : {field::connection, field::keep_alive, field::proxy_connection,
                            field::proxy_authenticate, field::proxy_authorization,
                            field::trailer, field::transfer_encoding, field::te,
                            field::upgrade}) {
        EXPECT_EQ(f.count(name), 0U) << beast::http::to_string(name);
    }
    EXPECT_EQ(f[field::content_type], "text/plain");
    EXPECT_EQ(f[field::authorization], "Bearer x");
}

TEST(HeaderPolicyTest, ConnectionNamedFieldsRemoved)
{
    fields f;
    f.insert(field::connection, "X-Secret ,  x-other");
    f.insert(field::connection, "X-Third");
    f.set("X-Secret", "1");
    f.set("X-Other", "2");
    f.set("X-Third", "3");
    f.set("X-Kept", "4");

    remove_hop_by_hop(f, false);

    EXPECT_EQ(f.count("X-Secret"), 0U);
    EXPECT_EQ(f.count("X-Other"), 0U);
    EXPECT_EQ(f.count("X-Third"), 0U);
    EXPECT_EQ(f["X-Kept"], "4");
}

TEST(HeaderPolicyTest, ConnectionCannotRemoveHostOrContentLength)
{
    fields f;
    f.set(field::connection, "Host, Content-Length");
    f.set(field::host, "app.localhost");
    f.set(field::content_length, "5");

    remove_hop_by_hop(f, false);

    EXPECT_EQ(f[field::host], "app.localhost");
    EXPECT_EQ(f[field::content_length], "5");
}

TEST(HeaderPolicyTest, ChunkedAloneIsTheOnlyTransferCodingTaken)
{
    EXPECT_TRUE(is_chunked_alone("chunked"));
    EXPECT_TRUE(is_chunked_alone(" Chunked\t"));
    EXPECT_FALSE(is_chunked_alone("gzip"));
    EXPECT_FALSE(is_chunked_alone("gzip, chunked"));
    EXPECT_FALSE(is_chunked_alone("chunked, chunked"));
    EXPECT_FALSE(is_chunked_alone(""));
}

TEST(HeaderPolicyTest, TeTrailersKept)
{
    fields f;
    f.set(field::connection, "TE");
    f.set(field::te, "trailers");

    remove_hop_by_hop(f, false);

    EXPECT_EQ(values(f, "TE"), std::vector<std::string>{"trailers"});
}

TEST(HeaderPolicyTest, TeCodingsRemoved)
{
    fields f;
    f.set(field::te, "gzip;q=0.5, deflate");

    remove_hop_by_hop(f, false);

    EXPECT_EQ(f.count(field::te), 0U);
}

TEST(HeaderPolicyTest, TeReducedToTrailersWhenNamedAmongCodings)
{
    fields f;
    f.insert(field::te, "deflate");
    f.insert(field::te, "Trailers, gzip;q=0.5");

    remove_hop_by_hop(f, false);

    EXPECT_EQ(values(f, "TE"), std::vector<std::string>{"trailers"});
}

TEST(HeaderPolicyTest, UpgradeRemovedUnlessKept)
{
    fields dropped;
    dropped.set(field::connection, "upgrade");
    dropped.set(field::upgrade, "websocket");
    remove_hop_by_hop(dropped, false);
    EXPECT_EQ(dropped.count(field::upgrade), 0U);
    EXPECT_EQ(dropped.count(field::connection), 0U);

    fields kept;
    kept.set(field::connection, "Upgrade");
    kept.set(field::upgrade, "websocket");
    remove_hop_by_hop(kept, true);
    EXPECT_EQ(kept[field::upgrade], "websocket");
    EXPECT_EQ(kept.count(field::connection), 0U);
}

TEST(HeaderPolicyTest, RulesRemoveThenSet)
{
    fields f;
    f.set(field::cookie, "session=1");
    f.set("X-Env", "prod");
    const std::vector<std::pair<std::string, std::string>> set{{"X-Env", "dev"}};
    const std::vector<std::string> remove{"cookie", "x-env"};

    apply_header_rules(f, {set, remove});

    EXPECT_EQ(f.count(field::cookie), 0U);
    // A field both removed and set ends up set: removal runs first.
    EXPECT_EQ(values(f, "X-Env"), std::vector<std::string>{"dev"});
}

TEST(HeaderPolicyTest, RuleSetReplacesDuplicates)
{
    fields f;
    f.insert("X-Tag", "a");
    f.insert("x-tag", "b");
    const std::vector<std::pair<std::string, std::string>> set{{"X-Tag", "c"}};

    apply_header_rules(f, {set, {}});

    EXPECT_EQ(values(f, "X-Tag"), std::vector<std::string>{"c"});
}

TEST(HeaderPolicyTest, UpstreamRequestSetsHostTargetAndVersion)
{
    auto req = make_request(10);
    req.set(field::content_length, "3");
    auto facts = default_facts();
    facts.upstream_host = "127.0.0.1:8000";

    prepare_upstream_request(req, facts, no_rules);

    EXPECT_EQ(req.version(), 11U);
    EXPECT_EQ(req.method(), verb::get);
    EXPECT_EQ(req.target(), "/users?x=1");
    EXPECT_EQ(values(req, "Host"), std::vector<std::string>{"127.0.0.1:8000"});
    EXPECT_EQ(req[field::content_length], "3");
}

TEST(HeaderPolicyTest, UpstreamRequestReplacesSpoofedForwardingFields)
{
    auto req = make_request();
    req.insert("X-Forwarded-For", "6.6.6.6");
    req.insert("x-forwarded-for", "7.7.7.7");
    req.set("X-Forwarded-Proto", "https");
    req.set("X-Forwarded-Host", "evil.example");
    req.set("X-Forwarded-Port", "443");
    req.set(field::forwarded, "for=6.6.6.6;proto=https");
    // CGI, WSGI and Rack read these as X-Forwarded-For and X-Forwarded-Proto.
    req.set("X_Forwarded_For", "8.8.8.8");
    req.set("x-forwarded_proto", "https");

    prepare_upstream_request(req, default_facts(), no_rules);

    EXPECT_EQ(req.count("X_Forwarded_For"), 0U);
    EXPECT_EQ(req.count("x-forwarded_proto"), 0U);
    EXPECT_EQ(values(req, "X-Forwarded-For"), std::vector<std::string>{"127.0.0.1"});
    EXPECT_EQ(values(req, "X-Forwarded-Proto"), std::vector<std::string>{"http"});
    EXPECT_EQ(values(req, "X-Forwarded-Host"), std::vector<std::string>{"app.localhost:7080"});
    EXPECT_EQ(req.count("X-Forwarded-Port"), 0U);
    EXPECT_EQ(req.count(field::forwarded), 0U);
}

TEST(HeaderPolicyTest, UpstreamRequestForwardedProtoHttpsOverTls)
{
    auto req = make_request();
    auto facts = default_facts();
    facts.client_tls = true;

    prepare_upstream_request(req, facts, no_rules);

    EXPECT_EQ(req["X-Forwarded-Proto"], "https");
}

TEST(HeaderPolicyTest, UpstreamRequestOmitsEmptyForwardedHost)
{
    auto req = make_request(10);
    req.erase(field::host);
    req.set("X-Forwarded-Host", "evil.example");
    auto facts = default_facts();
    facts.original_host = "";

    prepare_upstream_request(req, facts, no_rules);

    EXPECT_EQ(req.count("X-Forwarded-Host"), 0U);
}

TEST(HeaderPolicyTest, UpstreamRequestSetsVia)
{
    auto req = make_request();

    prepare_upstream_request(req, default_facts(), no_rules);

    EXPECT_EQ(values(req, "Via"), std::vector<std::string>{"1.1 portico"});
}

TEST(HeaderPolicyTest, UpstreamRequestAppendsToExistingVia)
{
    auto req = make_request();
    req.insert(field::via, "1.0 fred");
    req.insert(field::via, "1.1 p.example.net");

    prepare_upstream_request(req, default_facts(), no_rules);

    EXPECT_EQ(values(req, "Via"),
              std::vector<std::string>{"1.0 fred, 1.1 p.example.net, 1.1 portico"});
}

TEST(HeaderPolicyTest, UpstreamRequestViaNamesReceivedVersion)
{
    auto req = make_request(10);

    prepare_upstream_request(req, default_facts(), no_rules);

    EXPECT_EQ(req[field::via], "1.0 portico");
}

TEST(HeaderPolicyTest, UpstreamRequestHasNoConnectionField)
{
    auto req = make_request();
    req.set(field::connection, "close, X-Hop");
    req.set("X-Hop", "1");

    prepare_upstream_request(req, default_facts(), no_rules);

    EXPECT_EQ(req.count(field::connection), 0U);
    EXPECT_EQ(req.count("X-Hop"), 0U);
}

TEST(HeaderPolicyTest, UpstreamRequestUpgradeKeepsUpgrade)
{
    auto req = make_request();
    req.set(field::connection, "keep-alive, Upgrade");
    req.set(field::upgrade, "websocket");
    req.set(field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");

    prepare_upgrade(req);

    EXPECT_EQ(values(req, "Connection"), std::vector<std::string>{"upgrade"});
    EXPECT_EQ(req[field::upgrade], "websocket");
    EXPECT_EQ(req[field::sec_websocket_key], "dGhlIHNhbXBsZSBub25jZQ==");
}

TEST(HeaderPolicyTest, UpstreamRequestH2cUpgradeDropped)
{
    auto req = make_request();
    req.set(field::connection, "Upgrade, HTTP2-Settings");
    req.set(field::upgrade, "h2c");
    req.set("HTTP2-Settings", "AAMAAABkAAQAAP__");
    ASSERT_FALSE(is_tunnel_upgrade(req));

    prepare_upstream_request(req, default_facts(), no_rules);

    EXPECT_EQ(req.count(field::connection), 0U);
    EXPECT_EQ(req.count(field::upgrade), 0U);
    EXPECT_EQ(req.count("HTTP2-Settings"), 0U);
}

TEST(HeaderPolicyTest, UpstreamRequestRouteRulesAppliedLast)
{
    auto req = make_request();
    req.set(field::cookie, "session=1");
    const std::vector<std::pair<std::string, std::string>> set{{"X-Env", "dev"},
                                                               {"Host", "override.test"}};
    const std::vector<std::string> remove{"Cookie", "X-Forwarded-For"};

    prepare_upstream_request(req, default_facts(), {set, remove});

    EXPECT_EQ(req.count(field::cookie), 0U);
    EXPECT_EQ(req.count("X-Forwarded-For"), 0U);
    EXPECT_EQ(req["X-Env"], "dev");
    EXPECT_EQ(values(req, "Host"), std::vector<std::string>{"override.test"});
}

TEST(HeaderPolicyTest, DownstreamResponseRemovesHopByHopAndAppendsVia)
{
    response_head res;
    res.result(status::ok);
    res.version(11);
    res.set(field::connection, "keep-alive, X-Backend-Hop");
    res.set(field::keep_alive, "timeout=5");
    res.set(field::transfer_encoding, "chunked");
    res.set("X-Backend-Hop", "1");
    res.set(field::content_length, "42");
    res.set(field::via, "1.1 vite");

    prepare_downstream_response(res, false, no_rules);

    EXPECT_EQ(res.count(field::connection), 0U);
    EXPECT_EQ(res.count(field::keep_alive), 0U);
    EXPECT_EQ(res.count(field::transfer_encoding), 0U);
    EXPECT_EQ(res.count("X-Backend-Hop"), 0U);
    EXPECT_EQ(res[field::content_length], "42");
    EXPECT_EQ(values(res, "Via"), std::vector<std::string>{"1.1 vite, 1.1 portico"});
}

TEST(HeaderPolicyTest, DownstreamSwitchingProtocolsKeepsUpgrade)
{
    response_head res;
    res.result(status::switching_protocols);
    res.version(11);
    res.set(field::connection, "Upgrade");
    res.set(field::upgrade, "websocket");
    res.set(field::sec_websocket_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    prepare_downstream_response(res, true, no_rules);

    EXPECT_EQ(values(res, "Connection"), std::vector<std::string>{"upgrade"});
    EXPECT_EQ(res[field::upgrade], "websocket");
    EXPECT_EQ(res[field::sec_websocket_accept], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(HeaderPolicyTest, DownstreamRefusedUpgradeDropsUpgrade)
{
    response_head res;
    res.result(status::ok);
    res.version(11);
    res.set(field::connection, "Upgrade");
    res.set(field::upgrade, "websocket");

    prepare_downstream_response(res, true, no_rules);

    EXPECT_EQ(res.count(field::connection), 0U);
    EXPECT_EQ(res.count(field::upgrade), 0U);
}

TEST(HeaderPolicyTest, DownstreamResponseRouteRulesAppliedLast)
{
    response_head res;
    res.result(status::ok);
    res.version(11);
    res.set(field::cache_control, "max-age=600");
    res.set(field::server, "vite");
    const std::vector<std::pair<std::string, std::string>> set{{"Cache-Control", "no-store"}};
    const std::vector<std::string> remove{"Server", "Via"};

    prepare_downstream_response(res, false, {set, remove});

    EXPECT_EQ(values(res, "Cache-Control"), std::vector<std::string>{"no-store"});
    EXPECT_EQ(res.count(field::server), 0U);
    EXPECT_EQ(res.count(field::via), 0U);
}

TEST(HeaderPolicyTest, WebSocketIsTunnelUpgrade)
{
    auto req = make_request();
    req.set(field::connection, "keep-alive, Upgrade");
    req.set(field::upgrade, "WebSocket");
    EXPECT_TRUE(is_tunnel_upgrade(req));
}

TEST(HeaderPolicyTest, OtherProtocolsAreTunnelUpgrades)
{
    auto req = make_request();
    req.insert(field::connection, "keep-alive");
    req.insert(field::connection, "upgrade");
    req.set(field::upgrade, "foo/2, bar");
    EXPECT_TRUE(is_tunnel_upgrade(req));
}

TEST(HeaderPolicyTest, H2cIsNotTunnelUpgrade)
{
    auto req = make_request();
    req.set(field::connection, "Upgrade, HTTP2-Settings");
    req.set(field::upgrade, "H2C");
    EXPECT_FALSE(is_tunnel_upgrade(req));
}

TEST(HeaderPolicyTest, UpgradeWithoutConnectionTokenIsNotTunnel)
{
    auto req = make_request();
    req.set(field::connection, "keep-alive");
    req.set(field::upgrade, "websocket");
    EXPECT_FALSE(is_tunnel_upgrade(req));

    req.erase(field::connection);
    EXPECT_FALSE(is_tunnel_upgrade(req));
}

TEST(HeaderPolicyTest, ConnectionTokenWithoutUpgradeFieldIsNotTunnel)
{
    auto req = make_request();
    req.set(field::connection, "upgrade");
    EXPECT_FALSE(is_tunnel_upgrade(req));
}

TEST(HeaderPolicyTest, Http10UpgradeIsIgnored)
{
    auto req = make_request(10);
    req.set(field::connection, "upgrade");
    req.set(field::upgrade, "websocket");
    EXPECT_FALSE(is_tunnel_upgrade(req));
}

TEST(HeaderPolicyTest, UpgradeLinesAreOneListOfOffers)
{
    auto req = make_request();
    req.set(field::connection, "upgrade");
    req.insert(field::upgrade, "h2c");
    req.insert(field::upgrade, "websocket");
    EXPECT_TRUE(is_tunnel_upgrade(req));

    req.erase(field::upgrade);
    req.insert(field::upgrade, "h2c");
    req.insert(field::upgrade, "H2C/1.0 , ");
    EXPECT_FALSE(is_tunnel_upgrade(req));

    req.set(field::upgrade, "h2c, websocket");
    EXPECT_TRUE(is_tunnel_upgrade(req));
    req.set(field::upgrade, "websocket/13, h2c");
    EXPECT_TRUE(is_tunnel_upgrade(req));

    // Items that name no protocol (RFC 9110 §7.8: token ["/" token]) offer nothing.
    for (const char* value : {"h2c, \"\"", "h2c, ;", "h2c, websocket/", "/13", "a b"}) {
        req.set(field::upgrade, value);
        EXPECT_FALSE(is_tunnel_upgrade(req)) << value;
    }
}

TEST(HeaderPolicyTest, UpstreamUpgradeOffersOnlyWhatIsTunnelled)
{
    auto req = make_request();
    req.set(field::connection, "Upgrade, HTTP2-Settings");
    req.insert(field::upgrade, "h2c, websocket");
    req.insert(field::upgrade, "H2C/1.0, foo/2");
    req.set("HTTP2-Settings", "AAMAAABkAAQAAP__");
    ASSERT_TRUE(is_tunnel_upgrade(req));

    prepare_upgrade(req);

    EXPECT_EQ(values(req, "Upgrade"), (std::vector<std::string>{"websocket", "foo/2"}));
    EXPECT_EQ(values(req, "Connection"), std::vector<std::string>{"upgrade"});
    EXPECT_EQ(req.count("HTTP2-Settings"), 0U);
}

TEST(HeaderPolicyTest, UpstreamUpgradeWithoutH2cIsForwardedAsItCame)
{
    auto req = make_request();
    req.set(field::connection, "Upgrade");
    req.set(field::upgrade, "websocket,foo/2");

    prepare_upgrade(req);

    EXPECT_EQ(values(req, "Upgrade"), std::vector<std::string>{"websocket,foo/2"});
}

TEST(HeaderPolicyTest, UpstreamUpgradeDropsH2cSettingsTheClientDidNotName)
{
    auto req = make_request();
    req.set(field::connection, "Upgrade");
    req.set(field::upgrade, "h2c, websocket");
    req.set("HTTP2-Settings", "AAMAAABkAAQAAP__");

    prepare_upgrade(req);

    EXPECT_EQ(values(req, "Upgrade"), std::vector<std::string>{"websocket"});
    EXPECT_EQ(req.count("HTTP2-Settings"), 0U);
}

TEST(HeaderPolicyTest, UpstreamUpgradeLineNeverGrowsPastTheLongestAField)
{
    // Beast refuses a field value over 65,533 bytes with an exception: a line of bare
    // commas the parser took must not come out longer.
    std::string value = "h2c";
    while (value.size() < 65'000) {
        value += ",a";
    }
    auto req = make_request();
    req.set(field::connection, "Upgrade");
    req.set(field::upgrade, value);
    ASSERT_TRUE(is_tunnel_upgrade(req));

    ASSERT_NO_THROW(prepare_upgrade(req));

    const auto forwarded = values(req, "Upgrade");
    ASSERT_EQ(forwarded.size(), 1U);
    EXPECT_EQ(forwarded[0].size(), value.size() - 4); // "h2c," gone
    EXPECT_TRUE(forwarded[0].starts_with("a,a,"));
}

TEST(HeaderPolicyTest, ScanOfRequestLinesGivesEachFact)
{
    auto req = make_request();
    req.erase(field::host);
    req.insert("hOST", "first.localhost");
    req.insert(field::host, "second.localhost");
    req.insert("transfer-encoding", "gzip");
    req.insert(field::transfer_encoding, "chunked");
    req.insert("EXPECT", "100-continue");
    req.insert(field::expect, "other");
    req.insert(field::connection, "keep-alive");
    req.insert("connection", "Upgrade");
    req.insert(field::upgrade, "websocket");
    req.insert(field::accept, "application/json");
    req.insert("Accept", "text/html;q=0.5");

    const auto lines = scan_request_lines(req);
    EXPECT_EQ(lines.hosts, 2U);
    EXPECT_EQ(lines.host, "first.localhost");
    EXPECT_EQ(lines.transfer_encodings, 2U);
    EXPECT_EQ(lines.transfer_encoding, "chunked");
    EXPECT_TRUE(lines.has_expect);
    EXPECT_EQ(lines.expect, "100-continue");
    EXPECT_TRUE(lines.tunnel_upgrade);
    EXPECT_FALSE(lines.prefers_json); // text/html on the second Accept line

    const auto bare = scan_request_lines(make_request(10));
    EXPECT_EQ(bare.transfer_encodings, 0U);
    EXPECT_FALSE(bare.has_expect);
    EXPECT_TRUE(bare.expect.empty());
    EXPECT_FALSE(bare.tunnel_upgrade);
    EXPECT_FALSE(bare.prefers_json);
}

bool prefers_json_for(std::initializer_list<std::string_view> accept_lines)
{
    auto req = make_request();
    for (const auto line : accept_lines) {
        req.insert(field::accept, line);
    }
    return scan_request_lines(req).prefers_json;
}

TEST(HeaderPolicyTest, PrefersJsonForApplicationJson)
{
    EXPECT_TRUE(prefers_json_for({"application/json"}));
    EXPECT_TRUE(prefers_json_for({"Application/JSON"}));
    EXPECT_TRUE(prefers_json_for({"application/json;q=0.9, text/plain;q=0.5"}));
    EXPECT_TRUE(prefers_json_for({"application/json ; charset=utf-8"}));
}

TEST(HeaderPolicyTest, HtmlWinsOverJson)
{
    EXPECT_FALSE(prefers_json_for({"text/html,application/json"}));
    EXPECT_FALSE(prefers_json_for({"application/json, text/html;q=0.1"}));
}

TEST(HeaderPolicyTest, WildcardOrMissingAcceptGetsHtml)
{
    EXPECT_FALSE(prefers_json_for({}));
    EXPECT_FALSE(prefers_json_for({"*/*"}));
    EXPECT_FALSE(prefers_json_for({"application/*"}));
    EXPECT_FALSE(prefers_json_for({"text/html,application/xhtml+xml,*/*;q=0.8"}));
}

TEST(HeaderPolicyTest, ZeroQualityIsNotNaming)
{
    EXPECT_FALSE(prefers_json_for({"application/json;q=0"}));
    EXPECT_FALSE(prefers_json_for({"application/json; q=0.000, */*"}));
    EXPECT_TRUE(prefers_json_for({"application/json;q=0.001"}));
    EXPECT_TRUE(prefers_json_for({"application/json, text/html;q=0"}));
}

TEST(HeaderPolicyTest, SeveralAcceptFieldsCombine)
{
    EXPECT_TRUE(prefers_json_for({"image/png", "application/json"}));
    EXPECT_FALSE(prefers_json_for({"application/json", "text/html"}));
}

TEST(HeaderPolicyTest, RawHeadsAreWeighedAsParsedOnes)
{
    EXPECT_TRUE(prefers_json_in_raw_head("GET / HTTP/1.1\r\nACCEPT: application/json\r\n"));
    EXPECT_TRUE(prefers_json_in_raw_head("GET / HTTP/1.1\r\nAccept:application/json\r\nX: y"));
    EXPECT_FALSE(prefers_json_in_raw_head("GET / HTTP/1.1\r\nAccept: application/json\r\n"
                                          "Accept: text/html\r\n\r\n"));
    EXPECT_FALSE(prefers_json_in_raw_head("GET / HTTP/1.1\r\nX-Accept: application/json\r\n"));
    EXPECT_FALSE(prefers_json_in_raw_head("GET /accept:application/json HTTP/1.1\r\n\r\n"));
    EXPECT_FALSE(prefers_json_in_raw_head(""));
}

TEST(HeaderPolicyTest, QuotedCommaDoesNotSplitAcceptList)
{
    // The comma inside the quoted parameter must not start a new media range "text/html".
    EXPECT_TRUE(prefers_json_for({R"(application/json;note="a, text/html")"}));
}

/// The fields of a serialised head as (lower-case name, value) pairs, ordered by name with
/// the lines of one name in their order, plus its first line: what a recipient can tell apart.
std::pair<std::string, std::vector<std::pair<std::string, std::string>>>
wire_fields(std::string_view text)
{
    const auto eol = text.find("\r\n");
    std::pair<std::string, std::vector<std::pair<std::string, std::string>>> out;
    out.first = std::string(text.substr(0, eol));
    auto rest = text.substr(eol + 2);
    while (!rest.starts_with("\r\n")) {
        const auto end = rest.find("\r\n");
        const auto line = rest.substr(0, end);
        const auto colon = line.find(':');
        std::string name(line.substr(0, colon));
        for (auto& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        auto value = line.substr(colon + 1);
        while (value.starts_with(' ')) {
            value.remove_prefix(1);
        }
        out.second.emplace_back(std::move(name), std::string(value));
        rest = rest.substr(end + 2);
    }
    std::stable_sort(out.second.begin(), out.second.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    return out;
}

/// The upstream head written directly, against the rewrite-then-serialise path.
void expect_same_upstream_head(const request_head& original, const forward_facts& facts,
                               const header_rule_view& rules, bool drop_expect)
{
    std::string direct;
    append_upstream_request(direct, original, facts, rules, drop_expect);
    request_head rewritten = original;
    prepare_upstream_request(rewritten, facts, rules);
    if (drop_expect) {
        rewritten.erase(field::expect);
    }
    std::string reference;
    append_head(reference, rewritten);
    EXPECT_EQ(wire_fields(direct), wire_fields(reference)) << direct << "\n---\n" << reference;
}

void expect_same_downstream_head(const response_head& original, unsigned version,
                                 bool keep_alive, const header_rule_view& rules)
{
    std::string direct;
    append_downstream_response(direct, original, version, keep_alive, rules);
    beast::http::response<beast::http::empty_body> rewritten{response_head(original)};
    prepare_downstream_response(rewritten.base(), false, rules);
    rewritten.version(version);
    rewritten.keep_alive(keep_alive);
    std::string reference;
    append_head(reference, rewritten.base());
    EXPECT_EQ(wire_fields(direct), wire_fields(reference)) << direct << "\n---\n" << reference;
}

TEST(HeaderPolicyTest, DirectUpstreamHeadMatchesRewrite)
{
    const std::vector<std::pair<std::string, std::string>> set{{"X-Env", "dev"},
                                                               {"Via", "ruled"}};
    const std::vector<std::string> remove{"Cookie", "X-Forwarded-Host"};
    const header_rule_view rules{set, remove};
    const std::vector<std::pair<std::string, std::string>> set_twice{{"X-A", "1"},
                                                                     {"x-a", "2"}};
    const header_rule_view twice{set_twice, {}};

    auto plain = make_request();
    plain.set(field::user_agent, "wrk");
    expect_same_upstream_head(plain, default_facts(), no_rules, false);

    auto busy = make_request(10);
    busy.insert(field::connection, "keep-alive, X-Secret, close");
    busy.insert(field::connection, "Host, Content-Length");
    busy.insert("X-Secret", "1");
    busy.insert(field::keep_alive, "timeout=5");
    busy.insert(field::te, "gzip, trailers;q=1");
    busy.insert(field::upgrade, "websocket");
    busy.insert(field::via, "1.0 fred");
    busy.insert(field::via, "1.1 p.example");
    busy.insert("X-Forwarded-For", "6.6.6.6");
    busy.insert("X_FORWARDED_HOST", "evil.example");
    busy.insert("X-Forwardedx", "kept");
    busy.insert(field::forwarded, "for=6.6.6.6");
    busy.insert(field::expect, "100-continue");
    busy.insert(field::content_length, "12");
    busy.insert(field::cookie, "a=1");
    busy.insert(field::accept, "*/*");
    busy.insert(field::accept, "text/html");
    for (const auto& r : {no_rules, rules, twice}) {
        expect_same_upstream_head(busy, default_facts(), r, false);
        expect_same_upstream_head(busy, default_facts(), r, true);
    }
    auto named_via = make_request();
    named_via.insert(field::connection, "via");
    named_via.insert(field::via, "1.1 hidden");
    auto facts = default_facts();
    facts.client_ip = "";
    facts.original_host = "";
    facts.client_tls = true;
    expect_same_upstream_head(named_via, facts, no_rules, false);
}

TEST(HeaderPolicyTest, DirectDownstreamHeadMatchesRewrite)
{
    const std::vector<std::pair<std::string, std::string>> set{{"X-Frame-Options", "DENY"}};
    const std::vector<std::string> remove{"Server"};
    const header_rule_view rules{set, remove};

    response_head res;
    res.result(status::ok);
    res.version(11);
    res.set(field::server, "nginx");
    res.set(field::content_type, "text/plain");
    res.set(field::content_length, "5");
    res.set(field::connection, "keep-alive");
    for (const auto& r : {no_rules, rules}) {
        for (const unsigned version : {10U, 11U}) {
            expect_same_downstream_head(res, version, true, r);
            expect_same_downstream_head(res, version, false, r);
        }
    }

    response_head old;
    old.result(404);
    old.reason("Gone Fishing");
    old.version(10);
    old.insert(field::connection, "X-Hop");
    old.insert("X-Hop", "1");
    old.insert(field::via, "1.0 cache");
    old.insert(field::proxy_authenticate, "Basic");
    old.insert(field::trailer, "Expires");
    old.insert(field::set_cookie, "a=1");
    old.insert(field::set_cookie, "b=2");
    old.insert(field::content_length, "0");
    for (const auto& r : {no_rules, rules}) {
        expect_same_downstream_head(old, 11, true, r);
        expect_same_downstream_head(old, 10, true, r);
    }
}

} // namespace
} // namespace portico::http
