#include "portico/core/utf8.hpp"

#include <cstddef>
#include <utility>

namespace portico::utf8 {
namespace {

constexpr std::string_view replacement = "\xEF\xBF\xBD";

bool is_continuation(unsigned char c) noexcept { return (c & 0xC0) == 0x80; }

} // namespace

std::size_t sequence_length(std::string_view s, std::size_t i) noexcept
{
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char lead = byte(0);
    if (lead < 0x80) {
        return 1;
    }
    std::size_t length = 0;
    // The second byte's range excludes overlong forms (E0, F0), surrogates (ED) and code
    // points above U+10FFFF (F4).
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        low = lead == 0xE0 ? 0xA0 : 0x80;
        high = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        low = lead == 0xF0 ? 0x90 : 0x80;
        high = lead == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (s.size() - i < length || byte(1) < low || byte(1) > high) {
        return 0;
    }
    for (std::size_t k = 2; k < length; ++k) {
        if (!is_continuation(byte(k))) {
            return 0;
        }
    }
    return length;
}

bool is_valid(std::string_view s) noexcept
{
    for (std::size_t i = 0; i < s.size();) {
        const auto n = sequence_length(s, i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

void append_valid(std::string& out, std::string_view s)
{
    std::size_t run = 0; // start of the well-formed bytes not yet appended
    for (std::size_t i = 0; i < s.size();) {
        const auto n = sequence_length(s, i);
        if (n > 0) {
            i += n;
            continue;
        }
        out.append(s.substr(run, i - run));
        out.append(replacement);
        run = ++i;
    }
    out.append(s.substr(run));
}

void make_valid(std::string& s)
{
    if (is_valid(s)) {
        return;
    }
    std::string valid;
    valid.reserve(s.size() + 8);
    append_valid(valid, s);
    s = std::move(valid);
}

} // namespace portico::utf8
