#include "portico/core/uri.hpp"

#include <gtest/gtest.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace portico::uri {
namespace {

// --- normalize_path --------------------------------------------------------------------

TEST(UriTest, NormalizePathKeepsCanonicalPaths)
{
    for (const std::string_view path : {"/", "/a", "/a/b/", "/a//b", "/~user", "/a-b_c.d"}) {
        EXPECT_EQ(normalize_path(path), std::string(path)) << path;
    }
}

TEST(UriTest, NormalizePathRemovesDotSegments)
{
    // RFC 3986 §5.2.4 and §5.4.
    EXPECT_EQ(normalize_path("/a/b/c/./../../g"), "/a/g");
    EXPECT_EQ(normalize_path("/mid/content=5/../6"), "/mid/6");
    EXPECT_EQ(normalize_path("/a/./b"), "/a/b");
    EXPECT_EQ(normalize_path("/a/."), "/a/");
    EXPECT_EQ(normalize_path("/a/.."), "/");
    EXPECT_EQ(normalize_path("/."), "/");
    EXPECT_EQ(normalize_path("/.."), "/");
    EXPECT_EQ(normalize_path("/../../x"), "/x");
    EXPECT_EQ(normalize_path("/a/..b/c"), "/a/..b/c");
    EXPECT_EQ(normalize_path("/a/.b"), "/a/.b");
}

TEST(UriTest, NormalizePathDecodesUnreservedOnly)
{
    EXPECT_EQ(normalize_path("/%7Euser"), "/~user");
    EXPECT_EQ(normalize_path("/%7euser"), "/~user");
    EXPECT_EQ(normalize_path("/%41%7a%30%2D%2E%5F"), "/Az0-._");
    EXPECT_EQ(normalize_path("/a%2Fb"), "/a%2Fb");
    EXPECT_EQ(normalize_path("/a%2fb"), "/a%2Fb");
    EXPECT_EQ(normalize_path("/a%20b"), "/a%20b");
    EXPECT_EQ(normalize_path("/%e2%82%ac"), "/%E2%82%AC");
    EXPECT_EQ(normalize_path("/%25"), "/%25");
}

// Decoding comes first (RFC 3986 §6.2.2), so encoded dots cannot smuggle a "..".
TEST(UriTest, NormalizePathRemovesEncodedDotSegments)
{
    EXPECT_EQ(normalize_path("/a/%2e%2e/b"), "/b");
    EXPECT_EQ(normalize_path("/a/%2E/b"), "/a/b");
    EXPECT_EQ(normalize_path("/a/.%2e/.%2E/b"), "/b");
}

TEST(UriTest, NormalizePathRejectsMalformedInput)
{
    for (const std::string_view path : std::initializer_list<std::string_view>{
             "", "a", "*", "http://h/", "/%", "/%4", "/%4g", "/%g4", "/a%", "/a b", "/a\tb",
             "/a\r\n", "/a\x7f", std::string_view("/a\0b", 4)}) {
        EXPECT_EQ(normalize_path(path), std::nullopt) << path;
    }
}

TEST(UriTest, NormalizePathKeepsNonAsciiBytes)
{
    EXPECT_EQ(normalize_path("/caf\xc3\xa9"), "/caf\xc3\xa9");
}

// --- normalize_prefix ------------------------------------------------------------------

TEST(UriTest, NormalizePrefixDropsTrailingSlashes)
{
    EXPECT_EQ(normalize_prefix("/api/"), "/api");
    EXPECT_EQ(normalize_prefix("/api"), "/api");
    EXPECT_EQ(normalize_prefix("/api//"), "/api");
    EXPECT_EQ(normalize_prefix("/"), "/");
    EXPECT_EQ(normalize_prefix("//"), "/");
    EXPECT_EQ(normalize_prefix("/a/../b/"), "/b");
    EXPECT_EQ(normalize_prefix("/%7Ex/"), "/~x");
    EXPECT_EQ(normalize_prefix("api"), std::nullopt);
    EXPECT_EQ(normalize_prefix("/%zz"), std::nullopt);
}

// --- to_lower --------------------------------------------------------------------------

TEST(UriTest, ToLowerChangesAsciiLettersOnly)
{
    EXPECT_EQ(to_lower("App.LOCALHOST-1_Z"), "app.localhost-1_z");
    EXPECT_EQ(to_lower("\xc3\x89"), "\xc3\x89");
    EXPECT_EQ(to_lower(""), "");
}

// --- normalize_host --------------------------------------------------------------------

TEST(UriTest, NormalizeHostLowerCasesAndDropsPortAndTrailingDot)
{
    EXPECT_EQ(normalize_host("App.LocalHost"), "app.localhost");
    EXPECT_EQ(normalize_host("app.localhost."), "app.localhost");
    EXPECT_EQ(normalize_host("app.localhost:7080"), "app.localhost");
    EXPECT_EQ(normalize_host("APP.localhost.:443"), "app.localhost");
    EXPECT_EQ(normalize_host("localhost"), "localhost");
    EXPECT_EQ(normalize_host("my_app-1.localhost"), "my_app-1.localhost");
    EXPECT_EQ(normalize_host("127.0.0.1:8080"), "127.0.0.1");
}

TEST(UriTest, NormalizeHostUnbracketsIpv6)
{
    EXPECT_EQ(normalize_host("[::1]"), "::1");
    EXPECT_EQ(normalize_host("[::1]:7080"), "::1");
    EXPECT_EQ(normalize_host("[FD00::A]:1"), "fd00::a");
    EXPECT_EQ(normalize_host("[::ffff:127.0.0.1]"), "::ffff:127.0.0.1");
    // Each address has one form, whichever spelling the client used.
    EXPECT_EQ(normalize_host("[0:0:0:0:0:0:0:1]"), "::1");
    EXPECT_EQ(normalize_host("[0000::0001]:80"), "::1");
    EXPECT_EQ(normalize_host("[FD00:0:0::A]"), "fd00::a");
}

TEST(UriTest, NormalizeHostKeepsLeadingWildcardLabel)
{
    EXPECT_EQ(normalize_host("*.App.localhost."), "*.app.localhost");
}

TEST(UriTest, NormalizeHostRejectsMalformedHosts)
{
    for (const std::string_view host :
         {"", ":80", "app.localhost:abc", "app.localhost:123456",
          "app.localhost:80:80", "a b", "a/b", "a@b", "a%41", "::1", "[::1", "[]", "[::1]x",
          "[g::1]", "[::1%25eth0]", "[1:2]", "[1::2::3]", "[:::]", "caf\xc3\xa9.localhost"}) {
        EXPECT_EQ(normalize_host(host), std::nullopt) << host;
    }
}

TEST(UriTest, NormalizeHostTakesAnEmptyPort)
{
    // port = *DIGIT (RFC 3986 §3.2.3): "host:" names the host.
    EXPECT_EQ(normalize_host("app.localhost:"), "app.localhost");
    EXPECT_EQ(normalize_host("[::1]:"), "::1");
}

// Bug fix: the port after an IPv6 literal was not checked.
TEST(UriTest, NormalizeHostChecksPortAfterIpv6)
{
    EXPECT_EQ(normalize_host("[::1]:abc"), std::nullopt);
    EXPECT_EQ(normalize_host("[::1]:123456"), std::nullopt);
    EXPECT_EQ(normalize_host("[::1]:1:2"), std::nullopt);
}

// Bug fix: empty labels passed ("..", ".a", "a..b"), so ".." normalised to ".".
TEST(UriTest, NormalizeHostRejectsEmptyLabels)
{
    for (const std::string_view host : {".", "..", ".a", "a..b", "a..", ".a.:80", "*..a"}) {
        EXPECT_EQ(normalize_host(host), std::nullopt) << host;
    }
}

// Bug fix: '*' passed anywhere in a name; it is only meaningful as a whole first label.
TEST(UriTest, NormalizeHostRejectsMisplacedWildcard)
{
    for (const std::string_view host :
         {"*", "*.", "a*.localhost", "a.*.localhost", "*a.localhost", "app.*", "*.*.localhost"}) {
        EXPECT_EQ(normalize_host(host), std::nullopt) << host;
    }
}

TEST(UriTest, TokenIsTcharsOnly)
{
    for (const char* token : {"websocket", "X-Env", "h2c", "!#$%&'*+-.^_`|~09azAZ"}) {
        EXPECT_TRUE(is_token(token)) << token;
    }
    for (const char* other : {"", "a b", "a/b", "\"q\"", "a:b", "caf\xc3\xa9", "a\tb"}) {
        EXPECT_FALSE(is_token(other)) << other;
    }
}

} // namespace
} // namespace portico::uri
