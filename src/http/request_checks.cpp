#include "portico/http/request_checks.hpp"

#include "portico/core/net.hpp"

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

#include <array>
#include <bit>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>

namespace portico::http {

std::size_t find_head_end(std::string_view data) noexcept
{
    // The empty line ends the head; one written with bare LFs must end it too, so that
    // `check_head_bytes` refuses the head at once instead of its reader waiting for a CRLF
    // that never comes until `timeouts.header`.
    for (auto lf = data.find('\n'); lf != std::string_view::npos; lf = data.find('\n', lf + 1)) {
        const auto rest = data.substr(lf + 1);
        if (rest.starts_with('\n')) {
            return lf + 2;
        }
        if (rest.starts_with("\r\n")) {
            return lf + 3;
        }
    }
    return 0;
}

head_defect check_head_bytes(std::string_view head) noexcept
{
    // Skip the empty lines a client may send before the request line (RFC 9112 §2.2).
    std::size_t start = 0;
    while (head.substr(start).starts_with("\r\n")) {
        start += 2;
    }
    if (std::memchr(head.data(), '\0', head.size()) != nullptr) {
        return head_defect::nul;
    }
    // Only CR and LF need a look: eight bytes at a time, the scan jumps to the next one.
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t highs = 0x8080808080808080ULL;
    const auto bytes_equal = [](std::uint64_t w, unsigned char b) {
        const std::uint64_t x = w ^ (ones * b);
        // The lowest set bit marks the first byte equal to b (higher ones may be spurious).
        return (x - ones) & ~x & highs;
    };
    for (std::size_t i = start; i < head.size(); ++i) {
        // (The lowest bit is the first byte only where bytes load little-endian.)
        while (std::endian::native == std::endian::little && i + 8 <= head.size()) {
            std::uint64_t w;
            std::memcpy(&w, head.data() + i, 8);
            const auto found = bytes_equal(w, '\r') | bytes_equal(w, '\n');
            if (found != 0) {
                i += static_cast<std::size_t>(std::countr_zero(found)) / 8;
                break;
            }
            i += 8;
        }
        if (i >= head.size()) {
            break;
        }
        const char c = head[i];
        if (c == '\r' && (i + 1 >= head.size() || head[i + 1] != '\n')) {
            return head_defect::bare_cr;
        }
        if (c == '\n') {
            if (i == 0 || head[i - 1] != '\r') {
                return head_defect::bare_lf;
            }
            // A line that starts with whitespace continues the previous field: obs-fold,
            // which a recipient must reject or rewrite (RFC 9112 §5.2); portico rejects.
            if (i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t')) {
                return head_defect::obs_fold;
            }
        }
    }
    return head_defect::none;
}

std::optional<request_line> read_request_line(std::string_view head) noexcept
{
    while (head.starts_with("\r\n")) {
        head.remove_prefix(2);
    }
    const auto end = head.find("\r\n");
    if (end == std::string_view::npos) {
        return std::nullopt; // not all there
    }
    const auto line = head.substr(0, end);
    const auto first = line.find(' ');
    const auto last = line.rfind(' ');
    if (first == std::string_view::npos || first == 0 || last == first + 1 || last == first) {
        return std::nullopt;
    }
    request_line out;
    out.method = line.substr(0, first);
    out.target = line.substr(first + 1, last - first - 1);
    const auto version = line.substr(last + 1);
    if (version == "HTTP/1.0") {
        out.version = 10;
    } else if (version != "HTTP/1.1") {
        return std::nullopt;
    }
    constexpr std::string_view separators = "\"(),/:;<=>?@[\\]{}";
    for (const char c : out.method) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || separators.find(c) != std::string_view::npos) {
            return std::nullopt;
        }
    }
    for (const char c : out.target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) {
            return std::nullopt;
        }
    }
    return out;
}

bool is_chunked_prefix_valid(std::string_view body) noexcept
{
    // The bytes go through a parser of the kind that reads the body later, behind a head of
    // its own: the two then agree on every form (leading zeros, whitespace before an
    // extension, a line cut between CR and LF), so the answer does not depend on where
    // the client's segments happened to end.
    constexpr std::string_view head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    beast::http::request_parser<beast::http::buffer_body> parser;
    parser.eager(true);
    parser.body_limit(boost::none);
    parser.header_limit(std::numeric_limits<std::uint32_t>::max());
    std::array<char, 4096> discard; // chunk data is not looked at
    bool after_data = false;        // a chunk with data was read: its CRLF comes next
    auto on_chunk = [&after_data](std::uint64_t size, std::string_view, boost::system::error_code&) {
        after_data = size > 0;
    };
    parser.on_chunk_header(on_chunk);
    boost::system::error_code ec;
    try {
        parser.put(boost::asio::buffer(head.data(), head.size()), ec);
        while (!ec && !body.empty() && !parser.is_done()) {
            parser.get().body().data = discard.data();
            parser.get().body().size = discard.size();
            const auto used = parser.put(boost::asio::buffer(body.data(), body.size()), ec);
            if (ec == beast::http::error::need_buffer) {
                ec = {};
            }
            body.remove_prefix(used);
            if (used == 0 && !ec) {
                break; // waits for the rest of a line
            }
        }
    } catch (const std::exception&) {
        return false; // a trailer field longer than Beast holds
    }
    if (ec != beast::http::error::need_more || body.empty()) {
        return !ec || ec == beast::http::error::need_more;
    }
    if (has_bare_lf(body)) {
        return false;
    }
    // The parser judges a line only once it is whole; the start of one that cannot become
    // valid is refused now, before the head goes upstream. What it left is the next chunk
    // line, after the CRLF that ends a chunk's data.
    if (after_data) {
        if (body == "\r") {
            return true;
        }
        if (!body.starts_with("\r\n")) {
            return false; // the data was longer than its size said
        }
        body.remove_prefix(2);
    }
    std::size_t significant = 0;
    std::size_t i = 0;
    for (; i < body.size() && std::isxdigit(static_cast<unsigned char>(body[i])) != 0; ++i) {
        significant += significant > 0 || body[i] != '0' ? 1 : 0;
    }
    constexpr std::size_t max_size_digits = 16; // 64 bits
    return (i > 0 || body.empty()) && significant <= max_size_digits;
}

bool has_bare_lf(std::string_view framing, std::size_t from) noexcept
{
    for (auto lf = framing.find('\n', from); lf != std::string_view::npos;
         lf = framing.find('\n', lf + 1)) {
        if (lf == 0 || framing[lf - 1] != '\r') {
            return true;
        }
    }
    return false;
}

std::string_view describe(head_defect d) noexcept
{
    switch (d) {
    case head_defect::none: return "";
    case head_defect::bare_cr: return "a CR not followed by LF in the request head";
    case head_defect::bare_lf: return "a line ending without CR in the request head";
    case head_defect::nul: return "a NUL byte in the request head";
    case head_defect::obs_fold: return "obsolete line folding in a header field";
    }
    return "";
}

} // namespace portico::http
