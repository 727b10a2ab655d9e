#include "portico/tls/client_hello.hpp"

#include "tls/openssl.hpp"
#include "unit/tls/tls_test_support.hpp"

#include <openssl/err.h>

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace portico::tls {
namespace {

using testing::real_client_hello;

constexpr std::size_t record_header = 5;

std::string u16(std::size_t n)
{
    return {static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)};
}

std::string u24(std::size_t n)
{
    std::string out(1, static_cast<char>((n >> 16) & 0xff));
    return out.append(u16(n));
}

// Built with append(): g++ 12 at -O3 reports a false -Wrestrict on `"literal" + string`.

/// A handshake message header: ClientHello (type 1) announcing `body_size` bytes.
std::string hello_header(std::size_t body_size)
{
    return std::string(1, '\x01').append(u24(body_size));
}

/// Wraps handshake bytes in TLS records, cutting them at `cuts` (offsets into `handshake`).
std::string frame(const std::string& handshake, const std::vector<std::size_t>& cuts = {})
{
    std::string out;
    std::size_t start = 0;
    auto bounds = cuts;
    bounds.push_back(handshake.size());
    for (const std::size_t end : bounds) {
        out.append("\x16\x03\x01").append(u16(end - start)).append(handshake, start, end - start);
        start = end;
    }
    return out;
}

/// The handshake message inside a single-record flight.
std::string handshake_of(const std::string& flight)
{
    return flight.substr(record_header);
}

/// A ClientHello message built by hand, with the given extensions block (or none).
std::string handmade_hello(const std::string* extensions, std::size_t session_id = 0)
{
    std::string body("\x03\x03");
    body.append(32, 'r').append(1, static_cast<char>(session_id)).append(session_id, 's');
    body.append(u16(2)).append("\x13\x01", 2).append("\x01\x00", 2);
    if (extensions != nullptr) {
        body.append(u16(extensions->size())).append(*extensions);
    }
    return hello_header(body.size()).append(body);
}

std::string server_name_extension(const std::string& name)
{
    const std::string entry = std::string(1, '\0').append(u16(name.size())).append(name);
    const std::string list = u16(entry.size()).append(entry);
    return std::string("\0\0", 2).append(u16(list.size())).append(list);
}

TEST(ClientHelloTest, RealHelloYieldsLowerCaseServerName)
{
    const auto result = parse_client_hello(real_client_hello("App.Localhost"));
    EXPECT_EQ(result.status, hello_status::complete);
    EXPECT_EQ(result.server_name, "app.localhost");
}

TEST(ClientHelloTest, Tls12HelloYieldsServerName)
{
    const auto result = parse_client_hello(real_client_hello("db.localhost", TLS1_2_VERSION));
    EXPECT_EQ(result.status, hello_status::complete);
    EXPECT_EQ(result.server_name, "db.localhost");
}

TEST(ClientHelloTest, EveryPrefixIsIncomplete)
{
    const std::string hello = real_client_hello("app.localhost");
    for (std::size_t n = 0; n < hello.size(); ++n) {
        const auto result = parse_client_hello(std::string_view(hello).substr(0, n));
        ASSERT_EQ(result.status, hello_status::incomplete) << "prefix " << n;
    }
    EXPECT_EQ(parse_client_hello(hello).server_name, "app.localhost");
}

TEST(ClientHelloTest, HelloSplitAcrossTwoRecords)
{
    const std::string handshake = handshake_of(real_client_hello("split.localhost"));
    for (const std::size_t cut : {std::size_t{1}, std::size_t{3}, std::size_t{4}, std::size_t{40},
                                  handshake.size() / 2, handshake.size() - 1}) {
        const std::string flight = frame(handshake, {cut});
        const auto result = parse_client_hello(flight);
        EXPECT_EQ(result.status, hello_status::complete) << "cut " << cut;
        EXPECT_EQ(result.server_name, "split.localhost") << "cut " << cut;
        // And split over TCP segments anywhere in the two records.
        for (std::size_t n = 0; n < flight.size(); ++n) {
            ASSERT_EQ(parse_client_hello(std::string_view(flight).substr(0, n)).status,
                      hello_status::incomplete)
                << "cut " << cut << " prefix " << n;
        }
    }
}

TEST(ClientHelloTest, HelloInManySmallRecords)
{
    const std::string handshake = handshake_of(real_client_hello("tiny.localhost"));
    std::vector<std::size_t> cuts;
    for (std::size_t i = 7; i < handshake.size(); i += 7) {
        cuts.push_back(i);
    }
    const auto result = parse_client_hello(frame(handshake, cuts));
    EXPECT_EQ(result.status, hello_status::complete);
    EXPECT_EQ(result.server_name, "tiny.localhost");
}

TEST(ClientHelloTest, ParserFedAsBytesArriveAgreesWithAWholeParseAtEveryLength)
{
    // One parser, given the connection's bytes as they grow (here a hello in 1-byte records,
    // one byte more each time), reads each record once and says at every length what a
    // parse of the whole prefix says: incomplete, then complete at the last byte.
    const std::string handshake = handshake_of(real_client_hello("tiny.localhost"));
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < handshake.size(); ++i) {
        cuts.push_back(i);
    }
    const std::string records = frame(handshake, cuts);
    hello_parser parser;
    for (std::size_t size = 1; size <= records.size(); ++size) {
        const auto prefix = std::string_view(records).substr(0, size);
        const auto fed = parser.parse(prefix);
        const auto whole = parse_client_hello(prefix);
        ASSERT_EQ(fed.status, whole.status) << size;
        ASSERT_EQ(fed.status, size == records.size() ? hello_status::complete
                                                     : hello_status::incomplete)
            << size;
        EXPECT_EQ(fed.server_name, whole.server_name) << size;
    }
}

TEST(ClientHelloTest, GarbageAfterAWholeRecordIsMalformedAtOnce)
{
    const std::string handshake = handshake_of(real_client_hello("app.localhost"));
    const std::string first_record = frame(handshake, {7}).substr(0, 5 + 7);
    hello_parser parser;
    EXPECT_EQ(parser.parse(first_record).status, hello_status::incomplete);
    EXPECT_EQ(parser.parse(first_record + "\x17").status, hello_status::malformed);
    EXPECT_EQ(parse_client_hello(std::string("\x16") + '\x00').status, hello_status::malformed);
}

TEST(ClientHelloTest, BytesAfterTheHelloAreIgnored)
{
    const std::string hello = real_client_hello("app.localhost");
    const auto result = parse_client_hello(hello + "\x17\x03\x03\x00\x05hello");
    EXPECT_EQ(result.status, hello_status::complete);
    EXPECT_EQ(result.server_name, "app.localhost");
}

TEST(ClientHelloTest, NoSniCompletesWithEmptyName)
{
    const auto result = parse_client_hello(real_client_hello(nullptr));
    EXPECT_EQ(result.status, hello_status::complete);
    EXPECT_EQ(result.server_name, "");
}

TEST(ClientHelloTest, HelloWithoutExtensionsCompletes)
{
    const auto result = parse_client_hello(frame(handmade_hello(nullptr)));
    EXPECT_EQ(result.status, hello_status::complete);
    EXPECT_EQ(result.server_name, "");
}

TEST(ClientHelloTest, HandmadeHelloYieldsServerName)
{
    const std::string extensions = std::string("\x00\x17\x00\x00", 4) // extended master secret
                                       .append(server_name_extension("Handmade.Test"));
    const auto result = parse_client_hello(frame(handmade_hello(&extensions, 32)));
    EXPECT_EQ(result.status, hello_status::complete);
    EXPECT_EQ(result.server_name, "handmade.test");
}

TEST(ClientHelloTest, HttpRequestIsMalformed)
{
    EXPECT_EQ(parse_client_hello("GET / HTTP/1.1\r\nHost: a\r\n\r\n").status,
              hello_status::malformed);
    EXPECT_EQ(parse_client_hello("G").status, hello_status::malformed);
}

TEST(ClientHelloTest, GarbageIsMalformed)
{
    EXPECT_EQ(parse_client_hello(std::string("\x16\x05", 2)).status, hello_status::malformed);
    EXPECT_EQ(parse_client_hello(std::string("\x15\x03\x01\x00\x02\x02\x28", 7)).status,
              hello_status::malformed);
    EXPECT_EQ(parse_client_hello(std::string("\x00\x00\x00\x00\x00", 5)).status,
              hello_status::malformed);
}

TEST(ClientHelloTest, OversizedRecordLengthIsMalformed)
{
    EXPECT_EQ(parse_client_hello(std::string("\x16\x03\x01\x40\x01", 5)).status,
              hello_status::malformed);
    EXPECT_EQ(parse_client_hello(std::string("\x16\x03\x01\xff\xff", 5)).status,
              hello_status::malformed);
}

TEST(ClientHelloTest, ZeroLengthRecordIsMalformed)
{
    EXPECT_EQ(parse_client_hello(std::string("\x16\x03\x01\x00\x00", 5)).status,
              hello_status::malformed);
}

TEST(ClientHelloTest, OversizedHelloIsMalformed)
{
    // A handshake header announcing a 64 KiB + 1 body.
    EXPECT_EQ(parse_client_hello(frame(hello_header(64 * 1024 + 1))).status,
              hello_status::malformed);
    // Exactly 64 KiB is still waited for.
    EXPECT_EQ(parse_client_hello(frame(hello_header(64 * 1024))).status, hello_status::incomplete);
}

TEST(ClientHelloTest, OtherHandshakeTypeIsMalformed)
{
    std::string handshake = handshake_of(real_client_hello("app.localhost"));
    handshake[0] = 2; // ServerHello
    EXPECT_EQ(parse_client_hello(frame(handshake)).status, hello_status::malformed);
}

TEST(ClientHelloTest, NonHandshakeRecordInTheMiddleIsMalformed)
{
    const std::string handshake = handshake_of(real_client_hello("app.localhost"));
    std::string flight = frame(handshake, {20});
    const std::size_t second = record_header + 20;
    flight[second] = 0x17; // application data
    EXPECT_EQ(parse_client_hello(flight).status, hello_status::malformed);
    // Detected as soon as the byte arrives.
    EXPECT_EQ(parse_client_hello(std::string_view(flight).substr(0, second + 1)).status,
              hello_status::malformed);
}

TEST(ClientHelloTest, LengthsThatOverrunAreMalformed)
{
    const std::string handshake = handshake_of(real_client_hello("app.localhost"));
    const std::size_t session_id_length = 4 + 2 + 32;
    ASSERT_EQ(static_cast<unsigned char>(handshake[session_id_length]), 32u);

    std::string long_session_id = handshake;
    long_session_id[session_id_length] = 33;
    EXPECT_EQ(parse_client_hello(frame(long_session_id)).status, hello_status::malformed);

    std::string huge_ciphers = handshake;
    huge_ciphers[session_id_length + 33] = '\xff';
    EXPECT_EQ(parse_client_hello(frame(huge_ciphers)).status, hello_status::malformed);

    // The body claims one byte more than the extensions use.
    const std::string extensions = server_name_extension("a.test");
    std::string hello = handmade_hello(&extensions);
    hello += 'x';
    hello.replace(1, 3, u24(hello.size() - 4));
    EXPECT_EQ(parse_client_hello(frame(hello)).status, hello_status::malformed);

    // An extension longer than the extensions block.
    std::string bad_ext = server_name_extension("a.test");
    bad_ext.replace(2, 2, u16(200));
    EXPECT_EQ(parse_client_hello(frame(handmade_hello(&bad_ext))).status, hello_status::malformed);
}

TEST(ClientHelloTest, BadServerNameExtensionsAreMalformed)
{
    const std::string twice =
        server_name_extension("a.test").append(server_name_extension("b.test"));
    EXPECT_EQ(parse_client_hello(frame(handmade_hello(&twice))).status, hello_status::malformed);

    const std::string empty_name = server_name_extension("");
    EXPECT_EQ(parse_client_hello(frame(handmade_hello(&empty_name))).status,
              hello_status::malformed);

}

TEST(ClientHelloTest, NameNoHostHasRoutesNowhereButTheHelloIsWellFormed)
{
    // The handshake then refuses the name with an alert, instead of a bare close.
    for (const std::string& name : {std::string("a\0b", 3), std::string("a b.localhost"),
                                    std::string("b\xc3\xbc" "cher.localhost")}) {
        const std::string extension = server_name_extension(name);
        const auto result = parse_client_hello(frame(handmade_hello(&extension)));
        EXPECT_EQ(result.status, hello_status::complete);
        EXPECT_EQ(result.server_name, "");
    }
}

TEST(ClientHelloTest, TlsRecordStartIsDetected)
{
    EXPECT_TRUE(is_tls_record_start(0x16));
    EXPECT_FALSE(is_tls_record_start('G'));
}

} // namespace
} // namespace portico::tls
