#include "portico/http/response_head.hpp"

#include "portico/core/uri.hpp"

#include <array>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace portico::http {
namespace {

/// The longest field value the full parser (Beast's, 16-bit offsets) can hold.
constexpr std::size_t max_parsed_field_value = 65'533;

using uri::token_chars;

/// VCHAR, obs-text, SP and HTAB: what a field value or reason phrase may hold.
constexpr auto text_chars = [] {
    std::array<bool, 256> t{};
    for (unsigned c = 0x20; c < 256; ++c) {
        t[c] = c != 0x7f;
    }
    t['\t'] = true;
    return t;
}();

/**
 * The index of the first byte from `i` that is not field-value text; sixteen bytes at a time
 * where SSE2 is there (every x86-64), eight otherwise, while none is a control character (a
 * byte below 0x20 or 0x7f; bytes from 0x80 are obs-text and allowed).
 */
std::size_t skip_text(std::string_view s, std::size_t i) noexcept
{
#if defined(__SSE2__)
    // Most values are shorter than sixteen bytes and end in the block they start in: the
    // mask of the block's control bytes gives the end at once, with no byte loop after it.
    // HTAB is text; a block with one goes on byte by byte below.
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i delete_byte = _mm_set1_epi8(0x7f);
    const __m128i tab = _mm_set1_epi8('\t');
    const __m128i zero = _mm_setzero_si128();
    while (i + 16 <= s.size()) {
        const __m128i block =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
        // Signed compares: bytes from 0x80 are negative, below 0x20 but not controls.
        const __m128i below_space =
            _mm_andnot_si128(_mm_cmplt_epi8(block, zero), _mm_cmplt_epi8(block, space));
        const __m128i control = _mm_or_si128(below_space, _mm_cmpeq_epi8(block, delete_byte));
        const auto mask = static_cast<unsigned>(_mm_movemask_epi8(control));
        if (mask == 0) {
            i += 16;
            continue;
        }
        const auto tabs = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(block, tab)));
        const auto first = static_cast<unsigned>(__builtin_ctz(mask));
        if ((tabs & (1U << first)) == 0) {
            return i + first;
        }
        break; // an HTAB before the end: the byte loop decides
    }
#endif
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t highs = 0x8080808080808080ULL;
    while (i + 8 <= s.size()) {
        std::uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        const std::uint64_t below_space = (w - ones * 0x20) & ~w & highs;
        const std::uint64_t x = w ^ (ones * 0x7f);
        const std::uint64_t del = (x - ones) & ~x & highs;
        if ((below_space | del) != 0) {
            break; // a control byte (or HTAB) in this word: look byte by byte
        }
        i += 8;
    }
    while (i < s.size() && text_chars[static_cast<unsigned char>(s[i])]) {
        ++i;
    }
    return i;
}

/**
 * The index of the first byte from `i` that is not a tchar. Where SSE2 is there, sixteen
 * bytes at a time while all are letters, digits or '-', which field names are made of.
 */
std::size_t skip_token(std::string_view s, std::size_t i) noexcept
{
#if defined(__SSE2__)
    const __m128i case_bit = _mm_set1_epi8(0x20);
    const __m128i before_a = _mm_set1_epi8('a' - 1);
    const __m128i after_z = _mm_set1_epi8('z' + 1);
    const __m128i before_0 = _mm_set1_epi8('0' - 1);
    const __m128i after_9 = _mm_set1_epi8('9' + 1);
    const __m128i dash = _mm_set1_epi8('-');
    while (i + 16 <= s.size()) {
        const __m128i block =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
        // Setting 0x20 maps 'A'-'Z' onto 'a'-'z' and no other byte into that range (bytes
        // from 0x80 are negative to these signed compares).
        const __m128i folded = _mm_or_si128(block, case_bit);
        const __m128i letter =
            _mm_and_si128(_mm_cmpgt_epi8(folded, before_a), _mm_cmplt_epi8(folded, after_z));
        const __m128i digit =
            _mm_and_si128(_mm_cmpgt_epi8(block, before_0), _mm_cmplt_epi8(block, after_9));
        const __m128i usual =
            _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(block, dash));
        const auto other = ~static_cast<unsigned>(_mm_movemask_epi8(usual)) & 0xffffU;
        if (other == 0) {
            i += 16;
            continue;
        }
        i += static_cast<unsigned>(__builtin_ctz(other));
        break; // the table decides that byte (':' as a rule) and what follows
    }
#endif
    while (i < s.size() && token_chars[static_cast<unsigned char>(s[i])]) {
        ++i;
    }
    return i;
}

bool iequal(std::string_view a, std::string_view lower) noexcept
{
    if (a.size() != lower.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if ((static_cast<unsigned char>(a[i]) | 0x20) != static_cast<unsigned char>(lower[i])) {
            return false;
        }
    }
    return true;
}

/**
 * The field, among those that framing and the header policy act on (hop-by-hop fields, Via,
 * Content-Length), that `name` is; `field::unknown` for any other. Comparing by length first
 * is cheaper than Beast's lookup among all registered names. (`| 0x20` folds case for the
 * letters and '-' that these names are made of, and maps no other token byte onto them.)
 */
field classify(std::string_view name) noexcept
{
    switch (name.size()) {
    case 2:
        return iequal(name, "te") ? field::te : field::unknown;
    case 3:
        return iequal(name, "via") ? field::via : field::unknown;
    case 7:
        if (iequal(name, "trailer")) {
            return field::trailer;
        }
        return iequal(name, "upgrade") ? field::upgrade : field::unknown;
    case 10:
        if (iequal(name, "connection")) {
            return field::connection;
        }
        return iequal(name, "keep-alive") ? field::keep_alive : field::unknown;
    case 14:
        return iequal(name, "content-length") ? field::content_length : field::unknown;
    case 16:
        return iequal(name, "proxy-connection") ? field::proxy_connection : field::unknown;
    case 17:
        return iequal(name, "transfer-encoding") ? field::transfer_encoding : field::unknown;
    case 18:
        return iequal(name, "proxy-authenticate") ? field::proxy_authenticate : field::unknown;
    case 19:
        return iequal(name, "proxy-authorization") ? field::proxy_authorization
                                                    : field::unknown;
    default:
        return field::unknown;
    }
}

std::string_view trim_ows(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool parse_length(std::string_view digits, std::uint64_t& out) noexcept
{
    if (digits.empty() || digits.size() > 18) { // 18 digits cannot overflow
        return false;
    }
    std::uint64_t v = 0;
    for (const char c : digits) {
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    out = v;
    return true;
}

/// Reads the Connection options that decide persistence; false when the value is not a
/// plain list of tokens (RFC 9110 §7.6.1).
bool read_connection(std::string_view value, bool& close, bool& keep_alive) noexcept
{
    std::size_t i = 0;
    while (i < value.size()) {
        while (i < value.size() && (value[i] == ' ' || value[i] == '\t' || value[i] == ',')) {
            ++i;
        }
        const auto start = i;
        while (i < value.size() && token_chars[static_cast<unsigned char>(value[i])]) {
            ++i;
        }
        const auto option = value.substr(start, i - start);
        if (iequal(option, "close")) {
            close = true;
        } else if (iequal(option, "keep-alive")) {
            keep_alive = true;
        }
        if (i < value.size() && value[i] != ' ' && value[i] != '\t' && value[i] != ',') {
            return false;
        }
    }
    return true;
}

} // namespace

bool parse_simple_response(std::string_view head, simple_response& out)
{
    out.line_count = 0;
    // "HTTP/1.1 200 OK\r\n": version, SP, three digits, SP, reason (text up to the CRLF).
    const auto status_end = skip_text(head, 0);
    if (status_end < 13 || status_end + 1 >= head.size() || head[status_end] != '\r' ||
        head[status_end + 1] != '\n') {
        return false;
    }
    const auto status_line = head.substr(0, status_end);
    if (!status_line.starts_with("HTTP/1.") || status_line[8] != ' ' || status_line[12] != ' ') {
        return false;
    }
    if (status_line[7] != '0' && status_line[7] != '1') {
        return false;
    }
    out.version = status_line[7] == '1' ? 11 : 10;
    unsigned code = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        const char c = status_line[i];
        if (c < '0' || c > '9') {
            return false;
        }
        code = code * 10 + static_cast<unsigned>(c - '0');
    }
    if (code < 200 || code > 599 || code == 204 || code == 304) {
        return false; // interim, bodiless or out of range: the full parser's cases
    }
    out.status = code;
    out.reason = status_line.substr(13);
    const std::size_t next = status_end + 2;

    bool has_length = false;
    bool close = false;
    bool keep_alive_token = false;
    std::size_t pos = next;
    for (;;) {
        if (pos + 1 < head.size() && head[pos] == '\r' && head[pos + 1] == '\n') {
            pos += 2; // the empty line that ends the head
            break;
        }
        if (out.line_count == simple_response::max_lines) {
            return false;
        }
        // field-name ":" OWS field-value OWS CRLF; a line that starts with whitespace
        // (obs-fold) has no name and is refused here.
        const auto name_start = pos;
        pos = skip_token(head, pos);
        if (pos == name_start || pos >= head.size() || head[pos] != ':') {
            return false;
        }
        const auto name = head.substr(name_start, pos - name_start);
        const auto value_start = pos + 1;
        pos = skip_text(head, value_start);
        if (pos + 1 >= head.size() || head[pos] != '\r' || head[pos + 1] != '\n') {
            return false;
        }
        const auto value = trim_ows(head.substr(value_start, pos - value_start));
        pos += 2;
        if (value.size() > max_parsed_field_value) {
            return false; // as the full parser must refuse it, so that HEAD answers as GET
        }
        const auto known = classify(name);
        switch (known) {
        case field::content_length:
            if (has_length || !parse_length(value, out.content_length)) {
                return false;
            }
            has_length = true;
            break;
        case field::transfer_encoding:
        case field::proxy_connection: // Beast reads it as Connection: its rules, then
            return false;
        case field::connection:
            if (!read_connection(value, close, keep_alive_token)) {
                return false;
            }
            break;
        default:
            break;
        }
        out.lines[out.line_count++] =
            head_line(known, name, value, head.substr(name_start, pos - name_start));
    }
    if (!has_length || pos != head.size()) {
        return false;
    }
    out.keep_alive = !close && (out.version >= 11 || keep_alive_token);
    return true;
}

} // namespace portico::http
