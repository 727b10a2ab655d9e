#include "portico/http/head_text.hpp"

#include <string_view>

namespace portico::http {
namespace {

/// Writes "HTTP/x.y" (`version` 10 or 11) at `out`; returns the end.
char* write_version(char* out, unsigned version) noexcept
{
    for (const char c : std::string_view("HTTP/")) {
        *out++ = c;
    }
    *out++ = static_cast<char>('0' + version / 10 % 10);
    *out++ = '.';
    *out++ = static_cast<char>('0' + version % 10);
    return out;
}

void append_version(std::string& out, unsigned version)
{
    char text[8];
    out.append(text, write_version(text, version));
}

void append_fields(std::string& out, const fields& f)
{
    for (const auto& line : f) {
        append_field(out, line);
    }
    out += "\r\n";
}

} // namespace

std::string_view stored_line(const fields::value_type& line) noexcept
{
    const auto name = line.name_string();
    const auto value = line.value();
    const char* start = name.data();
    // Beast writes ": " between name and value and CRLF after it in the element it
    // allocates; that the value starts two bytes after the name is checked first, so the
    // bytes read around it are the element's own.
    if (value.data() != start + name.size() + 2 || start[name.size()] != ':' ||
        start[name.size() + 1] != ' ' || value.data()[value.size()] != '\r' ||
        value.data()[value.size() + 1] != '\n') {
        return {};
    }
    return {start, name.size() + value.size() + 4};
}

void append_field(std::string& out, const fields::value_type& line)
{
    if (const auto text = stored_line(line); !text.empty()) {
        out.append(text);
    } else {
        append_field(out, line.name_string(), line.value());
    }
}

void append_field(std::string& out, std::string_view name, std::string_view value)
{
    out.append(name);
    out += ": ";
    out.append(value);
    out += "\r\n";
}

void append_head(std::string& out, const request_head& req)
{
    const auto method = req.method_string();
    const auto target = req.target();
    out.append(method.data(), method.size());
    out += ' ';
    out.append(target.data(), target.size());
    out += ' ';
    append_version(out, req.version());
    out += "\r\n";
    append_fields(out, req);
}

void append_status_line(std::string& out, unsigned version, unsigned code,
                        std::string_view reason)
{
    // One append for "HTTP/x.y nnn ": each append checks capacity and calls memcpy.
    char start[13];
    char* end = write_version(start, version);
    *end++ = ' ';
    *end++ = static_cast<char>('0' + code / 100 % 10);
    *end++ = static_cast<char>('0' + code / 10 % 10);
    *end++ = static_cast<char>('0' + code % 10);
    *end++ = ' ';
    out.append(start, end);
    out.append(reason.data(), reason.size());
    out += "\r\n";
}

std::string_view standard_reason(unsigned code) noexcept
{
    if (code == 103) {
        return "Early Hints"; // RFC 8297, newer than Beast's table
    }
    const auto known = beast::http::int_to_status(code);
    if (known == beast::http::status::unknown) {
        return {};
    }
    const auto reason = beast::http::obsolete_reason(known);
    return {reason.data(), reason.size()};
}

std::string_view reason_of(const response_head& res) noexcept
{
    // Beast's reason() is the received phrase, or the standard one when none came.
    const auto reason = res.reason();
    if (res.result() == beast::http::status::unknown &&
        reason == beast::http::obsolete_reason(beast::http::status::unknown)) {
        return standard_reason(res.result_int());
    }
    return {reason.data(), reason.size()};
}

void append_head(std::string& out, const response_head& res)
{
    append_status_line(out, res.version(), res.result_int(), reason_of(res));
    append_fields(out, res);
}

} // namespace portico::http
