#include "config/syntax.hpp"
#include "portico/core/uri.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <array>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace portico::config::detail {
namespace {

/// What the C library makes of `text` as an IPv4 literal: its canonical text, or nullopt.
std::optional<std::string> libc_ipv4(const std::string& text)
{
    in_addr binary{};
    if (::inet_pton(AF_INET, text.c_str(), &binary) != 1) {
        return std::nullopt;
    }
    std::array<char, INET_ADDRSTRLEN> out{};
    if (::inet_ntop(AF_INET, &binary, out.data(), out.size()) == nullptr) {
        return std::nullopt;
    }
    return std::string(out.data());
}

TEST(ConfigSyntaxTest, Ipv4LiteralsAreReadAsInetPtonReadsThem)
{
    const std::vector<std::string> cases = {
        "127.0.0.1",     "0.0.0.0",      "255.255.255.255", "1.2.3.4",       "10.0.0.255",
        "127.0.0.01",    "01.2.3.4",     "256.0.0.1",       "1.2.3.256",     "1.2.3",
        "1.2.3.4.5",     "1.2.3.4.",     ".1.2.3.4",        "1..2.3",        "1.2.3.",
        "",              "1",            "127.1",           "1.2.3.4 ",      " 1.2.3.4",
        "1.2.3.0004",    "1.2.3.1000",   "999.1.1.1",       "1.2.3.-4",      "1.2.3.+4",
        "0x7f.0.0.1",    "1.2.3.4/8",    "1.2.3.4:80",      "localhost",     "::1",
        "00.0.0.0",      "0.0.0.00",     "1.2.3.4a",        "a1.2.3.4",      "1.2..3.4",
    };
    for (const auto& text : cases) {
        EXPECT_EQ(canonical_ipv4(text), libc_ipv4(text)) << "'" << text << "'";
        EXPECT_EQ(uri::is_dotted_quad(text), libc_ipv4(text).has_value()) << "'" << text << "'";
    }
}

TEST(ConfigSyntaxTest, Ipv4LiteralsAgreeWithInetPtonOnGeneratedText)
{
    // Texts of the characters an address is made of, weighted towards near misses: every
    // one must get the answer the C library gives.
    std::mt19937 random(20261128);
    constexpr std::string_view alphabet = "0123456789.....25";
    std::uniform_int_distribution<std::size_t> length(0, 17);
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    int accepted = 0;
    for (int i = 0; i < 200000; ++i) {
        std::string text(length(random), ' ');
        for (auto& c : text) {
            c = alphabet[pick(random)];
        }
        const auto expected = libc_ipv4(text);
        ASSERT_EQ(canonical_ipv4(text), expected) << "'" << text << "'";
        accepted += expected.has_value() ? 1 : 0;
    }
    // The generator must reach both answers for the comparison to mean anything.
    EXPECT_GT(accepted, 100);
}

TEST(ConfigSyntaxTest, Ipv6LiteralsAreReadAsInetPtonReadsThem)
{
    const std::vector<std::string> cases = {
        "::1", "::", "1::", "FE80::0001", "2001:db8:0:0:0:0:0:1", "::ffff:1.2.3.4", ":", "1:2",
        "1:2:3:4:5:6:7:8:9", "app.localhost", "1.2.3.4", "", "[::1]", "::1%eth0", "g::1",
    };
    for (const auto& text : cases) {
        std::array<unsigned char, 16> binary{};
        std::optional<std::string> expected;
        if (::inet_pton(AF_INET6, text.c_str(), binary.data()) == 1) {
            std::array<char, INET6_ADDRSTRLEN> out{};
            expected = ::inet_ntop(AF_INET6, binary.data(), out.data(), out.size());
        }
        EXPECT_EQ(canonical_ipv6(text), expected) << "'" << text << "'";
    }
    EXPECT_EQ(canonical_ipv6("FE80::0001"), "fe80::1");
}

TEST(ConfigSyntaxTest, LoopbackIsTheWhole127Block)
{
    EXPECT_TRUE(is_loopback("127.0.0.1"));
    EXPECT_TRUE(is_loopback("127.255.255.254"));
    EXPECT_TRUE(is_loopback("localhost"));
    EXPECT_TRUE(is_loopback("::1"));
    EXPECT_FALSE(is_loopback("127.0.0.256"));
    EXPECT_FALSE(is_loopback("127.0.0"));
    EXPECT_FALSE(is_loopback("127.example"));
    EXPECT_FALSE(is_loopback("128.0.0.1"));
    EXPECT_FALSE(is_loopback("0.0.0.0"));
    EXPECT_TRUE(is_ip_literal("10.1.2.3"));
    EXPECT_TRUE(is_ip_literal("::1"));
    EXPECT_FALSE(is_ip_literal("10.1.2"));
}

} // namespace
} // namespace portico::config::detail
